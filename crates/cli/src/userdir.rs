//! A directory where one user keeps files that later run with that user's
//! rights (the cache of `qemu-shim run`): made private, and refused, with
//! every directory above it, when another user could change what is in it.
//!
//! Whoever can write a directory on the path, or owns one (and so can
//! chmod it), can swap what lies below it. `run` takes its cache from
//! `$HOME` or `$XDG_CACHE_HOME`, which `sudo -E` hands root from the user
//! who called it: without this check, a file that user planted in their
//! cache was registered and ran as root (issue 10, item 2).
//!
//! The rule, for a caller of effective uid `me`:
//! - the directory itself must be `me`'s, not a symbolic link, and not
//!   writable by its group or others;
//! - each directory above must be `me`'s or root's, and not writable by
//!   group or others — unless root's and sticky, like `/tmp`: there only
//!   an entry's owner may rename or remove it.
//!
//! Root itself trusts only root's directories. Inside a user namespace
//! that does not map root, root's directories show as the overflow uid
//! (65534) and are refused: from there they cannot be told apart from a
//! stranger's.
//!
//! The path is resolved (symbolic links followed) before it is checked,
//! and the resolved path is the one to use afterwards: a link on the way
//! could live in a directory the check never saw. Once every component
//! passed, none can change under the caller but by the caller or root.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Mode of the directories this module makes.
pub const DIR_MODE: u32 = 0o700;

/// What a component of the path is to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The directory whose files are the caller's: must be the caller's.
    Holder,
    /// A directory above it: the caller's or root's.
    Ancestor,
}

/// Why `path`, with this owner and mode, cannot be trusted by uid `me` in
/// `role`; `None` when it can. Pure: the rule of the module doc.
fn distrust(path: &Path, uid: u32, mode: u32, me: u32, role: Role) -> Option<Error> {
    let kind = mode & nix::libc::S_IFMT;
    if kind == nix::libc::S_IFLNK {
        return Some(Error::new(format!(
            "{} is a symbolic link: refusing it",
            path.display()
        )));
    }
    if kind != nix::libc::S_IFDIR {
        return Some(Error::new(format!("{} is not a directory", path.display())));
    }
    let trusted = uid == me || (role == Role::Ancestor && uid == 0);
    if !trusted {
        let want = match (role, me) {
            (_, 0) => "root (the caller)".to_string(),
            (Role::Holder, _) => format!("uid {me} (the caller)"),
            (Role::Ancestor, _) => format!("uid {me} (the caller) or root"),
        };
        let e = Error::new(format!(
            "{} is owned by uid {uid}, not by {want}: refusing it",
            path.display()
        ));
        // Otherwise no hint: which directory to use instead is the
        // caller's to say.
        return Some(if uid == overflow_uid() && in_user_namespace() {
            e.hint(format!(
                "this user namespace shows every owner it does not map, root included, as uid {uid}: run qemu-shim outside it"
            ))
        } else {
            e
        });
    }
    let sticky_roots = role == Role::Ancestor && uid == 0 && mode & nix::libc::S_ISVTX != 0;
    if mode & 0o022 != 0 && !sticky_roots {
        return Some(
            Error::new(format!(
                "{} is writable by {}: refusing it",
                path.display(),
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                }
            ))
            .hint(format!("chmod go-w {}", path.display())),
        );
    }
    None
}

/// The uid a user namespace shows for an owner it does not map.
fn overflow_uid() -> u32 {
    fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// Whether this process is in a user namespace other than the initial one,
/// whose uid map is the identity over every uid.
fn in_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// Checks `dir` (resolved: absolute, no symbolic links) as the holder of
/// the caller's files and every directory above it, by `lstat`.
pub fn check(dir: &Path, me: u32) -> Result<()> {
    check_as(dir, me, Role::Holder)
}

fn check_as(dir: &Path, me: u32, role: Role) -> Result<()> {
    for (i, p) in dir.ancestors().enumerate() {
        let m = fs::symlink_metadata(p).map_err(|e| Error::io("cannot read", p, &e))?;
        let role = if i == 0 { role } else { Role::Ancestor };
        if let Some(e) = distrust(p, m.uid(), m.mode(), me, role) {
            return Err(e);
        }
    }
    Ok(())
}

/// `dir`, resolved, made if missing (each directory made here mode
/// [`DIR_MODE`], whatever the umask), and [`check`]ed for uid `me`. What
/// exists of it is checked before anything is made below it. Use the path
/// returned, not `dir`.
pub fn private_dir(dir: &Path, me: u32) -> Result<PathBuf> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        let cwd = std::env::current_dir().map_err(|e| Error::io("cannot resolve", dir, &e))?;
        cwd.join(dir)
    };
    // The deepest part that exists, resolved; the rest is made below it.
    let mut missing: Vec<OsString> = Vec::new();
    let mut p = abs.as_path();
    let mut base = loop {
        match fs::canonicalize(p) {
            Ok(c) => break c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match (p.file_name(), p.parent()) {
                (Some(name), Some(parent)) => {
                    missing.push(name.to_os_string());
                    p = parent;
                }
                // A `..` below what exists: which directory it names
                // depends on links not made yet.
                _ => {
                    return Err(Error::new(format!(
                        "{}: does not exist, and has `..` in its missing part",
                        abs.display()
                    )))
                }
            },
            Err(e) => return Err(Error::io("cannot resolve", p, &e)),
        }
    };
    if missing.is_empty() {
        check(&base, me)?;
        return Ok(base);
    }
    check_as(&base, me, Role::Ancestor)?;
    for name in missing.iter().rev() {
        base.push(name);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&base) {
            // The umask may have taken bits of the mode asked for. By path:
            // its parent passed the check, so the name is still ours.
            Ok(()) => fs::set_permissions(&base, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::io("cannot chmod", &base, &e))?,
            // Another run of the caller's made it meanwhile: the check
            // below says whether it is fit.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("cannot create", &base, &e)),
        }
    }
    check(&base, me)?;
    Ok(base)
}

/// Creates `path` anew for writing, mode `mode` (set explicitly, whatever
/// the umask): `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing already at the name
/// — a symbolic link above all — is opened or written through. Meant for
/// temporary names in a [`check`]ed directory.
pub fn create_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .mode(mode)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: u32 = nix::libc::S_IFDIR;

    fn why(uid: u32, mode: u32, me: u32, role: Role) -> Option<String> {
        distrust(Path::new("/p"), uid, mode, me, role).map(|e| e.to_string())
    }

    #[test]
    fn the_holder_must_be_the_callers_and_not_writable_by_others() {
        assert_eq!(why(1000, DIR | 0o700, 1000, Role::Holder), None);
        assert_eq!(why(1000, DIR | 0o755, 1000, Role::Holder), None);
        assert_eq!(why(0, DIR | 0o700, 0, Role::Holder), None);
        let e = why(0, DIR | 0o700, 1000, Role::Holder).unwrap();
        assert!(
            e.contains("/p is owned by uid 0, not by uid 1000 (the caller): refusing it"),
            "{e}"
        );
        let e = why(65534, DIR | 0o700, 0, Role::Holder).unwrap();
        assert!(
            e.contains("owned by uid 65534, not by root (the caller)"),
            "{e}"
        );
        let e = why(1000, DIR | 0o770, 1000, Role::Holder).unwrap();
        assert!(
            e.contains("/p is writable by its group: refusing it"),
            "{e}"
        );
        assert!(e.contains("chmod go-w /p"), "{e}");
        let e = why(1000, DIR | 0o1777, 1000, Role::Holder).unwrap();
        assert!(e.contains("writable by everyone"), "{e}");
        let e = why(1000, nix::libc::S_IFREG | 0o700, 1000, Role::Holder).unwrap();
        assert!(e.contains("is not a directory"), "{e}");
        let e = why(1000, nix::libc::S_IFLNK | 0o777, 1000, Role::Holder).unwrap();
        assert!(e.contains("is a symbolic link"), "{e}");
    }

    #[test]
    fn ancestors_may_be_roots_and_a_roots_sticky_one_may_be_open() {
        assert_eq!(why(0, DIR | 0o755, 1000, Role::Ancestor), None);
        assert_eq!(why(1000, DIR | 0o700, 1000, Role::Ancestor), None);
        // /tmp.
        assert_eq!(why(0, DIR | 0o1777, 1000, Role::Ancestor), None);
        // Sticky spares only root's: the caller's own open one is refused,
        // as is root's without the sticky bit.
        assert!(why(1000, DIR | 0o1777, 1000, Role::Ancestor).is_some());
        assert!(why(0, DIR | 0o777, 1000, Role::Ancestor).is_some());
        assert!(why(0, DIR | 0o775, 1000, Role::Ancestor).is_some());
        // Another user's, even closed: its owner may chmod it.
        let e = why(1001, DIR | 0o755, 1000, Role::Ancestor).unwrap();
        assert!(
            e.contains("owned by uid 1001, not by uid 1000 (the caller) or root"),
            "{e}"
        );
        let e = why(1001, DIR | 0o755, 0, Role::Ancestor).unwrap();
        assert!(e.contains("not by root (the caller)"), "{e}");
    }

    #[test]
    fn private_dir_makes_the_missing_part_0700_and_resolves_links() {
        let me = nix::unistd::geteuid().as_raw();
        let t = crate::testutil::TempDir::new();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let want = t.path().join("a/b");
        let got = private_dir(&want, me).unwrap();
        assert_eq!(got, fs::canonicalize(&want).unwrap());
        for d in [t.path().join("a"), want.clone()] {
            let m = fs::symlink_metadata(&d).unwrap();
            assert_eq!(m.mode() & 0o7777, DIR_MODE, "{}", d.display());
        }
        // Existing, and through a link: the link's target comes back.
        std::os::unix::fs::symlink(&want, t.path().join("link")).unwrap();
        assert_eq!(private_dir(&t.path().join("link"), me).unwrap(), got);
        // A directory of its own left group-writable is refused, not fixed.
        fs::set_permissions(&want, fs::Permissions::from_mode(0o770)).unwrap();
        let e = private_dir(&want, me).unwrap_err();
        assert!(e.message().contains("writable by its group"), "{e}");
        // Nothing is made below a refused directory.
        let e = private_dir(&want.join("c/d"), me).unwrap_err();
        assert!(e.message().contains("writable by its group"), "{e}");
        assert!(!want.join("c").exists());
        // A `..` below what exists.
        assert!(private_dir(&t.path().join("x/../y"), me).is_err());
    }

    #[test]
    fn private_dir_refuses_another_users_directory() {
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 {
            // Only root can give a directory away; the end-to-end tests
            // (tests/integration/run.rs) cover the unprivileged side.
            return;
        }
        let t = crate::testutil::TempDir::new();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let theirs = t.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = private_dir(&theirs, me).unwrap_err();
        assert!(e.message().contains("is owned by uid 65534"), "{e}");
        let e = private_dir(&theirs.join("below"), me).unwrap_err();
        assert!(e.message().contains("is owned by uid 65534"), "{e}");
        assert!(!theirs.join("below").exists(), "made below another user's");
    }

    #[test]
    fn create_new_never_opens_what_is_at_the_name() {
        let t = crate::testutil::TempDir::new();
        let victim = t.path().join("victim");
        fs::write(&victim, b"kept").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = create_new(&link, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // A dangling link too: O_CREAT alone would create its target.
        let dangling = t.path().join("dangling");
        std::os::unix::fs::symlink(t.path().join("made"), &dangling).unwrap();
        assert!(create_new(&dangling, 0o600).is_err());
        assert!(!t.path().join("made").exists());
        assert_eq!(fs::read(&victim).unwrap(), b"kept");
        let f = t.path().join("new");
        create_new(&f, 0o640).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    }
}
