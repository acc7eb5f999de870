//! The binfmt.d file `install --persist` writes so systemd-binfmt registers
//! qemu-shim's entries again at every boot.
//!
//! systemd-binfmt first removes every entry (`-1` to `status`), then
//! registers the lines of every `*.conf` in `/etc/binfmt.d`, `/run/binfmt.d`
//! and `/usr/lib/binfmt.d`, the files taken in order of their names. An
//! entry registered later is tried first by the kernel, so our file is
//! named to sort after the distros' (`qemu-aarch64.conf`,
//! `qemu-user-static.conf`, …): our entries are then the newest and win.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use qemu_shim_registry::binfmt;
use qemu_shim_registry::format::{parse_binfmt_d, RegisterLine};

use crate::error::{Error, Result};

/// The file's name: `zz-` sorts after every distro's qemu file.
pub const FILE_NAME: &str = "zz-qemu-shim.conf";

/// The comment the file opens with: why it is there and why its name.
const HEADER: &str = "\
# Written by `qemu-shim install --persist`; `qemu-shim uninstall` removes it.
# Do not edit: the next install rewrites it.
#
# systemd-binfmt removes every binfmt_misc entry at start, then registers the
# lines of all binfmt.d files in the order of their names; the entry
# registered last is tried first. This file is named zz-qemu-shim.conf so it
# comes after the distributions' files (qemu-aarch64.conf, …) and
# qemu-shim's entries win for the arches they serve.
";

/// The file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The file's text for `lines`, in their order.
pub fn render(lines: &[RegisterLine]) -> String {
    let mut text = HEADER.to_string();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    text
}

/// The file's current text, `None` if there is none (also when a
/// directory on its path is missing or is a file).
pub fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io("cannot read", path, &e)),
    }
}

/// The register lines of the file's text (lines that do not parse are
/// left out: the file is ours, and rewritten whole).
pub fn lines_of(text: &str) -> Vec<RegisterLine> {
    parse_binfmt_d(text).into_iter().flatten().collect()
}

/// Whether a file's text registers one of our entries with `interpreter`:
/// install keeps such a file in step even without `--persist`.
pub fn names_interpreter(text: &str, interpreter: &str) -> bool {
    lines_of(text)
        .iter()
        .any(|l| l.name.starts_with(binfmt::OWNED_PREFIX) && l.interpreter == interpreter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::register_line;
    use qemu_shim_registry::arch;

    #[test]
    fn rendered_file_parses_back_to_the_same_lines() {
        let a = register_line(arch::by_name("aarch64").unwrap(), "/i/qemu-shim-interp");
        let b = register_line(arch::by_name("s390x").unwrap(), "/i/qemu-shim-interp");
        let text = render(&[a.clone(), b.clone()]);
        assert!(text.starts_with("# Written by `qemu-shim install --persist`"));
        assert_eq!(lines_of(&text), vec![a, b]);
        assert!(names_interpreter(&text, "/i/qemu-shim-interp"));
        assert!(!names_interpreter(&text, "/other/qemu-shim-interp"));
    }

    #[test]
    fn name_sorts_after_distro_files() {
        for distro in [
            "qemu-aarch64.conf",
            "qemu-user-static.conf",
            "python3.11.conf",
            "wine.conf",
            "z-last.conf",
        ] {
            assert!(FILE_NAME > distro, "{distro}");
        }
    }
}
