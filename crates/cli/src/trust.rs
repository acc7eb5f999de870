//! Whether a privileged caller can trust a path: nobody but trusted owners
//! can change the file or directory it names, any directory on the way to
//! it, or any symbolic link followed on the way.
//!
//! Why: `install` runs as root and reads, writes and registers files that
//! every user's foreign programs run through, setuid ones included (issue
//! 10). Whoever can replace any component of such a path chooses what runs
//! as root. [`check`] walks the path as the kernel resolves it, from `/`
//! down, following symbolic links, and judges each component:
//!
//! - it must be owned by one of the [`Owners`];
//! - it must not be writable by its group or by others, except a directory
//!   with the sticky bit on the way (not the target): others may add
//!   entries to it but not rename or remove the owner's, so `/tmp` (root,
//!   1777) may hold a root-owned directory that is then trusted. The target
//!   itself is never accepted sticky and writable, unless the caller only
//!   creates a new entry in it ([`Role::Parent`]): its existing entries
//!   are what the caller reads, writes or runs. (With an ACL, the mode's
//!   group bits show the ACL's mask, so an ACL entry granting write shows
//!   as group-writable.)
//! - a symbolic link is judged by the directory that holds it (its own
//!   mode means nothing and it cannot be changed, only replaced); its target
//!   is then walked like the rest of the path.
//!
//! In a user namespace that does not map the host's root (an unprivileged
//! user's `unshare --map-root-user`), the host root's files and those of
//! every other unmapped user show as the overflow uid (65534), and so does
//! `/`. They cannot be told apart there, and nothing on any path is safer
//! than `/` itself, so whoever owns `/` is a trusted owner ([`Owners::system`]).
//! An install in such a namespace changes only its own binfmt_misc
//! instance and can grant no credentials beyond those of the user who made
//! it (the kernel ignores setuid bits of unmapped owners).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{io_reason, Error};

/// Symbolic links followed before giving up, as the kernel (`ELOOP`).
const MAX_LINKS: usize = 40;

/// The uids whose files and directories are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    uids: Vec<u32>,
}

impl Owners {
    /// Root, and whoever owns `/` here (see the module's doc).
    pub fn system() -> Owners {
        let owners = Owners { uids: vec![0] };
        match fs::metadata("/") {
            Ok(m) => owners.and(m.uid()),
            Err(_) => owners,
        }
    }

    /// The same owners and `uid` (say, the caller's own).
    pub fn and(mut self, uid: u32) -> Owners {
        if !self.uids.contains(&uid) {
            self.uids.push(uid);
        }
        self
    }

    /// Whether `uid` is one of them.
    pub fn allows(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// `root`, or `root or uid 1000`, for messages.
    fn describe(&self) -> String {
        let names: Vec<String> = self
            .uids
            .iter()
            .map(|&u| {
                if u == 0 {
                    "root".to_string()
                } else {
                    format!("uid {u}")
                }
            })
            .collect();
        names.join(" or ")
    }
}

/// What the checked path is to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// What the caller reads, writes into or runs: nobody untrusted may be
    /// able to change it, sticky bit or not.
    Target,
    /// The directory holding the entry the caller uses, where that entry
    /// is one it creates (the directory above one it will make) or one
    /// whose owner and mode it checks itself: a sticky directory is
    /// accepted, as on the way to a target, since others cannot rename or
    /// remove that entry.
    Parent,
}

/// Why a component is not trusted.
#[derive(Debug)]
pub enum Reason {
    /// Owned by a uid not among the trusted owners (described).
    Owner { uid: u32, mode: u32, owners: String },
    /// Writable by group or others.
    Writable { uid: u32, mode: u32 },
    /// It could not be examined (missing, not a directory on the way, …).
    Io(io::Error),
    /// More than [`MAX_LINKS`] symbolic links on the way.
    Loop,
}

/// A component of a path that is not trusted, and why.
#[derive(Debug)]
pub struct Untrusted {
    /// The component, as walked (symbolic links before it resolved).
    pub path: PathBuf,
    pub reason: Reason,
}

impl Untrusted {
    /// Whether the path does not exist (a component is missing or is not a
    /// directory): nothing there to trust or distrust.
    pub fn is_missing(&self) -> bool {
        match &self.reason {
            Reason::Io(e) => {
                e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENOTDIR)
            }
            _ => false,
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        let p = self.path.display();
        match &self.reason {
            Reason::Owner { .. } => {
                format!("chown root {p}, or use a path only root can change")
            }
            // A sticky directory (/tmp) is shared on purpose.
            Reason::Writable { mode, .. } if mode & 0o1000 != 0 => {
                "choose a directory only root can write".to_string()
            }
            Reason::Writable { .. } => format!("chmod go-w {p}"),
            Reason::Io(_) | Reason::Loop => "give a path that exists".to_string(),
        }
    }

    /// One line: `WHAT TARGET: COMPONENT is …: refusing it (…)` with
    /// [`Untrusted::hint`]; `WHAT TARGET is …` when the component is the
    /// target itself. `what` names the target's use ("the emulator for
    /// aarch64"); `target` is the path as the caller was given it.
    pub fn error(&self, what: &str, target: &Path) -> Error {
        let subject = if self.path == target {
            format!("{what} {}", target.display())
        } else {
            format!("{what} {}: {}", target.display(), self.path.display())
        };
        let subject = subject.trim_start();
        let owner = |uid: u32| {
            if uid == 0 {
                "root".to_string()
            } else {
                format!("uid {uid}")
            }
        };
        let msg = match &self.reason {
            Reason::Owner { uid, mode, owners } => format!(
                "{subject} is owned by uid {uid}, not {owners}: refusing it (mode {:04o})",
                mode & 0o7777
            ),
            Reason::Writable { uid, mode } => format!(
                "{subject} is writable by {}: refusing it (mode {:04o}, owner {})",
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o7777,
                owner(*uid)
            ),
            Reason::Io(e) => format!("{subject}: cannot examine it: {}", io_reason(e)),
            Reason::Loop => format!("{subject}: too many symbolic links"),
        };
        Error::new(msg).hint(self.hint())
    }
}

/// Judges one component by its owner and mode (`st_mode`, file type
/// included); `target`: it is the end of the path and not a
/// [`Role::Parent`].
pub fn judge(
    path: &Path,
    uid: u32,
    mode: u32,
    owners: &Owners,
    target: bool,
) -> Result<(), Untrusted> {
    let is_dir = mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
    let reason = if !owners.allows(uid) {
        Some(Reason::Owner {
            uid,
            mode,
            owners: owners.describe(),
        })
    } else if mode & 0o022 != 0 && (target || !is_dir || mode & 0o1000 == 0) {
        Some(Reason::Writable { uid, mode })
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Untrusted {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

/// One step of the walk.
enum Step {
    Root,
    Up,
    Name(OsString),
}

/// Pushes `p`'s components onto `todo`, last first (so the first pops
/// first).
fn push_components(todo: &mut Vec<Step>, p: &Path) {
    let steps: Vec<Step> = p
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Step::Root),
            Component::CurDir => None,
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_os_string())),
        })
        .collect();
    todo.extend(steps.into_iter().rev());
}

/// Checks `path` (made absolute from the current directory if relative)
/// and every component on the way to it, symbolic links followed, as the
/// module's doc says; returns the path resolved. The first component not
/// trusted is the error. A relative symbolic link is resolved from the
/// directory holding it, `..` from the directory reached so far (which
/// holds no link), as the kernel does.
pub fn check(path: &Path, owners: &Owners, role: Role) -> Result<PathBuf, Untrusted> {
    let io_err = |p: &Path, e: io::Error| Untrusted {
        path: p.to_path_buf(),
        reason: Reason::Io(e),
    };
    let mut todo = Vec::new();
    if path.is_relative() {
        let cwd = std::env::current_dir().map_err(|e| io_err(Path::new("."), e))?;
        push_components(&mut todo, &cwd.join(path));
    } else {
        push_components(&mut todo, path);
    }
    // Every directory on the way is judged as such (a sticky one passes);
    // the end, once known, is judged again as the target.
    let root = Path::new("/");
    let meta = fs::metadata(root).map_err(|e| io_err(root, e))?;
    judge(root, meta.uid(), meta.mode(), owners, false)?;
    let mut at = root.to_path_buf();
    let mut links = 0;
    while let Some(step) = todo.pop() {
        let name = match step {
            Step::Root => {
                at = root.to_path_buf();
                continue;
            }
            Step::Up => {
                at.pop();
                continue;
            }
            Step::Name(n) => n,
        };
        let next = at.join(&name);
        let meta = fs::symlink_metadata(&next).map_err(|e| io_err(&next, e))?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Untrusted {
                    path: next,
                    reason: Reason::Loop,
                });
            }
            let target = fs::read_link(&next).map_err(|e| io_err(&next, e))?;
            push_components(&mut todo, &target);
            continue;
        }
        if !todo.is_empty() && !meta.is_dir() {
            let e = io::Error::from_raw_os_error(nix::libc::ENOTDIR);
            return Err(io_err(&next, e));
        }
        judge(&next, meta.uid(), meta.mode(), owners, false)?;
        at = next;
    }
    if role == Role::Target {
        let meta = fs::metadata(&at).map_err(|e| io_err(&at, e))?;
        judge(&at, meta.uid(), meta.mode(), owners, true)?;
    }
    Ok(at)
}

/// Creates the directory `path` with exactly `mode`: the umask could take
/// bits away (or, at `000`, leave a mode asked as `0777` open to all) and a
/// setgid parent would add `S_ISGID`, so the mode is set again once it
/// exists. A directory that cannot be given its mode is removed again.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)?;
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        let _ = fs::remove_dir(path);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    fn me() -> Owners {
        Owners::system().and(nix::unistd::geteuid().as_raw())
    }

    /// A fresh directory whose own mode is 0755 (its parent is the system
    /// temp dir, sticky as /tmp is, or trusted).
    fn scratch() -> TempDir {
        let t = TempDir::new();
        set(t.path(), 0o755);
        t
    }

    fn set(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mkdir(p: &Path, mode: u32) -> PathBuf {
        fs::create_dir(p).unwrap();
        set(p, mode);
        p.to_path_buf()
    }

    fn file(p: &Path, mode: u32) -> PathBuf {
        fs::write(p, b"x").unwrap();
        set(p, mode);
        p.to_path_buf()
    }

    /// The component refused and its reason's text.
    fn refused(r: Result<PathBuf, Untrusted>) -> (PathBuf, String) {
        let u = r.expect_err("expected a refusal");
        let text = u.error("the thing", Path::new("/given")).to_string();
        (u.path, text)
    }

    #[test]
    fn a_trusted_chain_passes_and_is_resolved() {
        let t = scratch();
        let d = mkdir(&t.path().join("d"), 0o755);
        let f = file(&d.join("f"), 0o755);
        let real = fs::canonicalize(&f).unwrap();
        assert_eq!(check(&f, &me(), Role::Target).unwrap(), real);
        let dotted = d.join("../d/./f");
        assert_eq!(check(&dotted, &me(), Role::Target).unwrap(), real);
        assert_eq!(
            check(Path::new("/"), &me(), Role::Target).unwrap(),
            PathBuf::from("/")
        );
    }

    #[test]
    fn a_group_or_world_writable_component_is_refused() {
        let t = scratch();
        let d = mkdir(&t.path().join("d"), 0o775);
        let f = file(&d.join("f"), 0o755);
        let (p, text) = refused(check(&f, &me(), Role::Target));
        assert_eq!(p, fs::canonicalize(&d).unwrap());
        assert!(
            text.contains("is writable by its group: refusing it (mode 0775, owner"),
            "{text}"
        );
        set(&d, 0o755);
        set(&f, 0o757);
        let (p, text) = refused(check(&f, &me(), Role::Target));
        assert_eq!(p, fs::canonicalize(&f).unwrap());
        assert!(text.contains("is writable by everyone"), "{text}");
        assert!(text.contains(&format!("(hint: chmod go-w {})", p.display())));
    }

    #[test]
    fn a_sticky_directory_passes_on_the_way_not_as_the_target() {
        let t = scratch();
        let sticky = mkdir(&t.path().join("sticky"), 0o1777);
        let d = mkdir(&sticky.join("d"), 0o755);
        assert!(check(&d, &me(), Role::Target).is_ok());
        let (p, text) = refused(check(&sticky, &me(), Role::Target));
        assert_eq!(p, fs::canonicalize(&sticky).unwrap());
        assert!(text.contains("(mode 1777, owner"), "{text}");
        assert!(
            text.ends_with("(hint: choose a directory only root can write)"),
            "{text}"
        );
        // A new entry of the caller's own in it: as /tmp/NEW.
        assert!(check(&sticky, &me(), Role::Parent).is_ok());
        // Sticky means nothing on a file.
        let f = file(&d.join("f"), 0o1777);
        assert!(check(&f, &me(), Role::Parent).is_err());
        // A group-writable sticky directory passes on the way too.
        let g = mkdir(&t.path().join("g"), 0o1775);
        assert!(check(&mkdir(&g.join("x"), 0o755), &me(), Role::Target).is_ok());
    }

    #[test]
    fn an_owner_outside_the_trusted_ones_is_refused() {
        let t = scratch();
        let f = file(&t.path().join("f"), 0o755);
        let strangers = Owners { uids: vec![12345] };
        let (p, text) = refused(check(&f, &strangers, Role::Target));
        // `/` itself comes first.
        assert_eq!(p, PathBuf::from("/"));
        assert!(text.contains("is owned by uid"), "{text}");
        assert!(
            text.contains(", not uid 12345: refusing it (mode 0"),
            "{text}"
        );
        let uid = fs::metadata("/").unwrap().uid();
        assert_eq!(
            Owners { uids: vec![0] }.and(uid).and(uid),
            Owners::system(),
            "root and the owner of /, once each"
        );
        assert_eq!(
            Owners {
                uids: vec![0, 1000]
            }
            .describe(),
            "root or uid 1000"
        );
    }

    #[test]
    fn symbolic_links_are_followed_and_their_directories_checked() {
        let t = scratch();
        let open = mkdir(&t.path().join("open"), 0o777);
        let real = mkdir(&t.path().join("real"), 0o755);
        let f = file(&real.join("f"), 0o755);
        // A link in a trusted directory to a trusted file: fine, and the
        // relative target is taken from the link's directory.
        let ok = mkdir(&t.path().join("ok"), 0o755);
        symlink("../real/f", ok.join("l")).unwrap();
        assert_eq!(
            check(&ok.join("l"), &me(), Role::Target).unwrap(),
            fs::canonicalize(&f).unwrap()
        );
        // A link in a directory anyone can write: anyone could re-point it.
        symlink(&f, open.join("l")).unwrap();
        let (p, _) = refused(check(&open.join("l"), &me(), Role::Target));
        assert_eq!(p, fs::canonicalize(&open).unwrap());
        // A trusted link that leads through a directory anyone can write.
        let inside = file(&open.join("g"), 0o755);
        symlink(&inside, ok.join("to-open")).unwrap();
        let (p, _) = refused(check(&ok.join("to-open"), &me(), Role::Target));
        assert_eq!(p, fs::canonicalize(&open).unwrap());
        // A link to a directory, then a name in it.
        symlink("real", t.path().join("dl")).unwrap();
        assert!(check(&t.path().join("dl/f"), &me(), Role::Target).is_ok());
    }

    #[test]
    fn loops_and_missing_components_are_errors_not_hangs() {
        let t = scratch();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let u = check(&t.path().join("a"), &me(), Role::Target).unwrap_err();
        assert!(matches!(u.reason, Reason::Loop) && !u.is_missing());
        let u = check(&t.path().join("none/x"), &me(), Role::Target).unwrap_err();
        assert!(u.is_missing(), "{u:?}");
        assert!(u
            .error("the thing", &t.path().join("none/x"))
            .to_string()
            .contains(": cannot examine it: no such file or directory"));
        let f = file(&t.path().join("f"), 0o755);
        let u = check(&f.join("x"), &me(), Role::Target).unwrap_err();
        assert!(u.is_missing(), "a file on the way: {u:?}");
    }

    #[test]
    fn the_message_names_what_the_path_and_the_component() {
        let u = Untrusted {
            path: PathBuf::from("/o"),
            reason: Reason::Writable {
                uid: 0,
                mode: 0o40777,
            },
        };
        assert_eq!(
            u.error("the emulator for aarch64", Path::new("/o/q"))
                .to_string(),
            "the emulator for aarch64 /o/q: /o is writable by everyone: refusing it \
             (mode 0777, owner root) (hint: chmod go-w /o)"
        );
        let u = Untrusted {
            path: PathBuf::from("/o/q"),
            reason: Reason::Owner {
                uid: 1000,
                mode: 0o100755,
                owners: "root".into(),
            },
        };
        assert_eq!(
            u.error("", Path::new("/o/q")).to_string(),
            "/o/q is owned by uid 1000, not root: refusing it (mode 0755) \
             (hint: chown root /o/q, or use a path only root can change)"
        );
    }

    #[test]
    fn create_dir_gives_exactly_the_mode_asked() {
        let t = scratch();
        // A setgid parent would pass S_ISGID on.
        let parent = mkdir(&t.path().join("p"), 0o2755);
        let d = parent.join("d");
        create_dir(&d, 0o755).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o755);
        let e = create_dir(&d, 0o755).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    }
}
