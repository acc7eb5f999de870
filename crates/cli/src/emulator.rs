//! Finding the qemu-user emulator for an arch on this machine.
//!
//! Distros ship qemu-user under two names. Static builds are what a
//! binfmt_misc interpreter wants (a dynamic emulator cannot start inside a
//! foreign chroot, whose libraries are for another arch):
//!
//! - `qemu-<name>-static`: Debian up to 12 and Ubuntu (`qemu-user-static`),
//!   Fedora (`qemu-user-static-*`), Arch (`qemu-user-static`), all in /usr/bin.
//! - `qemu-<name>`: Debian 13 and later (`qemu-user`, now static; the
//!   `-static` names are gone since 10.0.3), Alpine (`qemu-<name>`),
//!   openSUSE, Gentoo, a build from source (/usr/local/bin), and the dynamic
//!   `qemu-user` packages of Fedora, Arch and older Debian.
//!
//! So every directory is searched for the `-static` name first, then every
//! directory for the plain name. /usr/local/bin comes before /usr/bin, as in
//! `PATH`, so a local build of the same name wins over the distro's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::Arch;

use crate::error::{Error, Result};

/// Directories searched when no `--emulator-dir` is given, in order.
pub const DEFAULT_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin"];

/// The package that provides the emulators, for hints.
pub const PACKAGE_HINT: &str = "install qemu-user-static (Debian 12, Ubuntu, Fedora, Arch; \
     qemu-user on Debian 13 and later) or pass --emulator-dir";

/// The hint when `--emulator-dir` was given and none of its directories
/// holds the emulator (passing the flag again would not help).
pub const GIVEN_DIRS_HINT: &str = "none of the directories given with --emulator-dir holds it: \
     name the one that does, or install qemu-user-static and leave --emulator-dir out";

/// Where to look for emulators.
#[derive(Debug, Clone)]
pub struct Search {
    dirs: Vec<PathBuf>,
    /// Named with `--emulator-dir`, rather than the default path.
    given: bool,
}

impl Search {
    /// The default search path.
    pub fn default_dirs() -> Search {
        Search {
            dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
            given: false,
        }
    }

    /// How to get an emulator this search did not find.
    pub fn hint(&self) -> &'static str {
        if self.given {
            GIVEN_DIRS_HINT
        } else {
            PACKAGE_HINT
        }
    }

    /// A search of `dirs` only (`--emulator-dir`), in the order given.
    /// Relative directories are taken from the current directory: the
    /// emulator's path is written into the interpreter and must be absolute.
    /// Each must be a directory: a missing one, or a file (the emulator
    /// itself, say), is refused here rather than reported later as "no
    /// emulator" (issue 18, item 5).
    pub fn new(dirs: &[PathBuf]) -> Result<Search> {
        if dirs.is_empty() {
            return Ok(Search::default_dirs());
        }
        let cwd = std::env::current_dir();
        let mut out = Vec::with_capacity(dirs.len());
        for d in dirs {
            if d.is_absolute() {
                out.push(d.clone());
            } else {
                let cwd = cwd.as_ref().map_err(|e| {
                    Error::io("cannot resolve --emulator-dir", d, e)
                        .hint("give an absolute directory")
                })?;
                out.push(cwd.join(d));
            }
        }
        for (given, dir) in dirs.iter().zip(&out) {
            check_dir(given, dir)?;
        }
        Ok(Search {
            dirs: out,
            given: true,
        })
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every path tried for `arch`, in the order tried.
    pub fn candidates(&self, arch: &Arch) -> Vec<PathBuf> {
        let names = [
            format!("{}-static", arch.emulator),
            arch.emulator.to_string(),
        ];
        names
            .iter()
            .flat_map(|n| self.dirs.iter().map(move |d| d.join(n)))
            .collect()
    }

    /// The emulator for `arch`: the first candidate that is an executable
    /// regular file (symlinks followed; the path found is kept, not the
    /// link's target, so a distro re-pointing its link keeps working).
    pub fn find(&self, arch: &Arch) -> Option<PathBuf> {
        self.candidates(arch)
            .into_iter()
            .find(|p| is_executable_file(p))
    }
}

/// Refuses an `--emulator-dir` (`given` as typed, `dir` absolute) that is
/// not a directory.
fn check_dir(given: &Path, dir: &Path) -> Result<()> {
    let shown = given.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            let e = Error::new(format!("--emulator-dir {shown}: not a directory"));
            Err(match dir.parent() {
                Some(parent) => e.hint(format!(
                    "give the directory that holds the emulators: --emulator-dir {}",
                    parent.display()
                )),
                None => e,
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Error::new(format!(
            "--emulator-dir {shown}: no such directory"
        ))
        .hint(
            "name the directory that holds qemu-<arch>-static or qemu-<arch> (Debian: /usr/bin)",
        )),
        Err(err) => Err(Error::new(format!(
            "--emulator-dir {shown}: {}",
            crate::error::io_reason(&err)
        ))),
    }
}

/// Whether `path` is a regular file with an execute bit set.
pub fn is_executable_file(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file() && m.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// A one-line description of where emulators for `arch` were looked for.
pub fn looked_for(search: &Search, arch: &Arch) -> String {
    let names = format!("{0}-static or {0}", arch.emulator);
    let dirs: Vec<String> = search
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    format!("looked for {names} in {}", dirs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use qemu_shim_registry::arch;

    fn aarch64() -> &'static Arch {
        arch::by_name("aarch64").unwrap()
    }

    fn exe(path: &Path) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn static_name_in_any_dir_beats_plain_name_in_an_earlier_dir() {
        let t = TempDir::new();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        exe(&a.join("qemu-aarch64"));
        exe(&b.join("qemu-aarch64-static"));
        let s = Search::new(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(s.find(aarch64()), Some(b.join("qemu-aarch64-static")));
    }

    #[test]
    fn earlier_dir_wins_for_the_same_name() {
        let t = TempDir::new();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        exe(&a.join("qemu-aarch64"));
        exe(&b.join("qemu-aarch64"));
        let s = Search::new(&[a.clone(), b]).unwrap();
        assert_eq!(s.find(aarch64()), Some(a.join("qemu-aarch64")));
    }

    #[test]
    fn plain_name_is_the_fallback() {
        let t = TempDir::new();
        exe(&t.path().join("qemu-aarch64"));
        let s = Search::new(&[t.path().to_path_buf()]).unwrap();
        assert_eq!(s.find(aarch64()), Some(t.path().join("qemu-aarch64")));
    }

    #[test]
    fn non_executable_files_and_directories_are_skipped() {
        let t = TempDir::new();
        std::fs::write(t.path().join("qemu-aarch64-static"), b"x").unwrap();
        std::fs::create_dir(t.path().join("qemu-aarch64")).unwrap();
        let s = Search::new(&[t.path().to_path_buf()]).unwrap();
        assert_eq!(s.find(aarch64()), None);
    }

    #[test]
    fn symlink_path_is_kept_not_resolved() {
        let t = TempDir::new();
        exe(&t.path().join("qemu-aarch64"));
        std::os::unix::fs::symlink("qemu-aarch64", t.path().join("qemu-aarch64-static")).unwrap();
        let s = Search::new(&[t.path().to_path_buf()]).unwrap();
        assert_eq!(
            s.find(aarch64()),
            Some(t.path().join("qemu-aarch64-static"))
        );
    }

    #[test]
    fn relative_dirs_become_absolute() {
        // Tests run in the crate's directory, which holds src/.
        let s = Search::new(&[PathBuf::from("src")]).unwrap();
        assert!(s.dirs()[0].is_absolute());
        assert!(s.dirs()[0].ends_with("src"));
    }

    /// Issue 18, item 5: a missing directory or a file is named as such,
    /// and a search of given directories does not hint to pass the flag.
    #[test]
    fn a_missing_directory_or_a_file_is_refused_as_such() {
        let t = TempDir::new();
        let missing = t.path().join("nonexistent");
        let e = Search::new(std::slice::from_ref(&missing)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--emulator-dir {}: no such directory (hint: name the directory that holds \
                 qemu-<arch>-static or qemu-<arch> (Debian: /usr/bin))",
                missing.display()
            )
        );
        let file = t.path().join("qemu-aarch64-static");
        exe(&file);
        let e = Search::new(std::slice::from_ref(&file)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--emulator-dir {}: not a directory (hint: give the directory that holds the \
                 emulators: --emulator-dir {})",
                file.display(),
                t.path().display()
            )
        );
        let s = Search::new(&[t.path().to_path_buf()]).unwrap();
        assert_eq!(s.hint(), GIVEN_DIRS_HINT);
        assert!(!s.hint().contains("pass --emulator-dir"));
        assert_eq!(Search::default_dirs().hint(), PACKAGE_HINT);
    }

    #[test]
    fn no_dirs_means_the_default_path() {
        let s = Search::new(&[]).unwrap();
        assert_eq!(
            s.candidates(aarch64())[0],
            PathBuf::from("/usr/local/bin/qemu-aarch64-static")
        );
        assert_eq!(s.candidates(aarch64()).len(), 2 * DEFAULT_DIRS.len());
    }

    #[test]
    fn looked_for_names_both_files_and_every_dir() {
        let s = Search::default_dirs();
        assert_eq!(
            looked_for(&s, aarch64()),
            "looked for qemu-aarch64-static or qemu-aarch64 in /usr/local/bin, /usr/bin"
        );
    }
}
