//! The interpreter file as the CLI uses it: the library
//! (`qemu-shim-interpfile`) builds and reads it; here is what depends on the
//! running machine — where the built interpreter is found, the host it is
//! built for, and the table flags the running kernel needs.

use std::path::{Path, PathBuf};

/// The whole file in memory: for tests.
#[cfg(test)]
pub use qemu_shim_interpfile::build;
use qemu_shim_interpfile::Target;
pub use qemu_shim_interpfile::{
    prepare, prepare_with, read_head, read_spec, read_spec_file, region, Prepared, Spec, Stamp,
};
use qemu_shim_registry::dispatch;

use crate::error::{Error, Result};

/// File name of the interpreter, both next to the CLI and once installed.
pub const FILE_NAME: &str = "qemu-shim-interp";

/// The host this CLI runs on, which its interpreter files are built for.
pub fn target() -> Target {
    Target::default()
}

/// A fresh fixed address for a pre-relocated interpreter file on this host.
pub fn random_base() -> Result<u64> {
    Ok(target().random_base()?)
}

/// The interpreter to install when none is named: `qemu-shim-interp` next to
/// the running `qemu-shim` (so a `cargo build` tree works as is), or in
/// the build's `QEMU_SHIM_LIBEXEC_DIR` (a package's).
pub fn default_source() -> Result<PathBuf> {
    if let Some(dir) = crate::cli::LIBEXEC_DIR {
        return Ok(Path::new(dir).join(FILE_NAME));
    }
    let exe = std::env::current_exe().map_err(|e| {
        Error::io(
            "cannot find the running executable",
            Path::new("qemu-shim"),
            &e,
        )
        .hint("pass the interpreter with --interpreter")
    })?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    Ok(dir.join(FILE_NAME))
}

/// Whether the interpreter must assume the `P` argv layout without the
/// kernel's `AT_FLAGS` bit, which Linux sets only from 5.12 on.
///
/// A release that cannot be parsed also answers yes: every entry qemu-shim
/// registers has `P`, so the kernel hands over the `P` layout whatever
/// `AT_FLAGS` says, and assuming it is never wrong for our entries.
pub fn needs_assume_p(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|s| s.parse::<u32>().ok());
    let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) < (5, 12),
        _ => true,
    }
}

/// The table flags for the running kernel.
pub fn flags_for_running_kernel() -> u16 {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if needs_assume_p(&release) {
        dispatch::FLAG_ASSUME_P
    } else {
        0
    }
}

/// The CPU model an entry of the table holds, as the reports show it
/// (`status`, `which`): `None` for qemu's default (no model).
pub fn cpu_model(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_5_12_need_assume_p() {
        assert!(needs_assume_p("5.11.22-generic"));
        assert!(needs_assume_p("4.19.0-27-amd64"));
        assert!(!needs_assume_p("5.12.0"));
        assert!(!needs_assume_p("6.18.0-1-amd64"));
        assert!(!needs_assume_p("10.0"));
        assert!(needs_assume_p("garbage"));
        assert!(needs_assume_p(""));
    }
}
