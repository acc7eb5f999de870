//! binfmt_misc registry I/O against a root directory (default /proc/sys/fs/binfmt_misc).
//!
//! [`Binfmt`] reads and changes the table under one root: list entries in
//! the kernel's match order, read one, register a [`RegisterLine`], enable,
//! disable or remove an entry, and tell which entry the kernel would run a
//! file with ([`Binfmt::winner`]). The root is a parameter so that tests can
//! point it at a directory of captured entry files or at a private
//! binfmt_misc instance.
//!
//! # Match order
//!
//! The kernel keeps its entries in a list and adds each new one at the
//! head (`list_add` in `bm_register_write`); an exec walks that list from
//! the head and takes the first enabled match. So the **newest** entry wins.
//!
//! The kernel does not print that list, but the directory shows the same
//! order: each entry's dentry is created when it is registered, and a new
//! dentry is put at the head of its parent's children, which `readdir` on
//! binfmt_misc (`dcache_readdir`) walks from the head. Checked on kernel
//! 6.18 in a private instance (`tests/binfmt_io.rs`): registering A, B, C
//! lists C B A; removing B and registering it again lists B C A; and the
//! winner for a file both match is the first listed. [`Binfmt::list`]
//! therefore returns entries in `readdir` order.
//!
//! Limits: this holds on a real binfmt_misc mount only (a plain directory
//! used as a root lists in its own order). One race is possible in
//! principle: a lookup of a not-yet-registered name that is still in flight
//! when another entry is registered, then the name being registered, can
//! leave that name's dentry behind the other entry. Failed lookups are not
//! cached on binfmt_misc (its negative dentries are dropped when released),
//! so this needs three concurrent operations on the same names.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::format::{EntryFile, Flags, Kind, ParseError, RegisterLine};

/// Where binfmt_misc is mounted on every current Linux system.
pub const DEFAULT_ROOT: &str = "/proc/sys/fs/binfmt_misc";

/// Names of qemu-shim's own entries start with this; entries with other
/// names belong to someone else and are never changed by qemu-shim. (The
/// arch table's, so that `arch::lookup` takes entry names back.)
pub const OWNED_PREFIX: &str = crate::arch::ENTRY_PREFIX;

/// The name of qemu-shim's entry for `arch` (qemu's target name):
/// `qemu-shim-<arch>`.
pub fn entry_name(arch: &str) -> String {
    format!("{OWNED_PREFIX}{arch}")
}

/// The register line of qemu-shim's entry for `a`: named
/// [`entry_name`], matching `a`'s magic under its mask at its offset, and
/// running `interpreter` with `flags`. The one place the lines `install`,
/// `run` and the tests register are built.
pub fn register_line(a: &crate::arch::Arch, interpreter: &str, flags: Flags) -> RegisterLine {
    RegisterLine {
        name: entry_name(a.name),
        kind: Kind::Magic {
            offset: a.offset,
            magic: a.magic.to_vec(),
            mask: Some(a.mask.to_vec()),
        },
        interpreter: interpreter.to_owned(),
        flags,
    }
}

/// The two files of binfmt_misc that are not entries.
const CONTROL_FILES: [&str; 2] = ["register", "status"];

/// A binfmt_misc table, reached through the directory it is mounted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binfmt {
    root: PathBuf,
}

impl Binfmt {
    /// The table mounted at `root` (usually [`DEFAULT_ROOT`]). Nothing is
    /// read until a method is called.
    pub fn new(root: impl Into<PathBuf>) -> Binfmt {
        Binfmt { root: root.into() }
    }

    /// The directory this table is read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether binfmt_misc is mounted at the root: its `register` file
    /// exists.
    pub fn is_mounted(&self) -> bool {
        self.root.join("register").exists()
    }

    /// Mounts binfmt_misc at [`DEFAULT_ROOT`] as systemd does
    /// (`mount -t binfmt_misc -o nosuid,nodev,noexec binfmt_misc
    /// /proc/sys/fs/binfmt_misc`). Does nothing if it is mounted already.
    ///
    /// For the host's table only: in a new user and mount namespace the
    /// path still shows the instance mounted outside it, so "already
    /// mounted" may well be the host's. Whatever needs a private instance
    /// mounts one unconditionally and checks it is empty.
    pub fn mount_default() -> Result<(), Error> {
        use nix::mount::{mount, MsFlags};
        let root = Path::new(DEFAULT_ROOT);
        if Binfmt::new(root).is_mounted() {
            return Ok(());
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(
            Some("binfmt_misc"),
            root,
            Some("binfmt_misc"),
            flags,
            None::<&str>,
        )
        .map_err(|errno| {
            let io = io::Error::from(errno);
            let (kind, hint) = match errno {
                // No mount point: the kernel creates the directory only
                // when binfmt_misc is built in or its module is loaded.
                nix::errno::Errno::ENOENT | nix::errno::Errno::ENODEV => (
                    ErrorKind::NotMounted,
                    Some("the kernel has no binfmt_misc: load it with `modprobe binfmt_misc`"),
                ),
                nix::errno::Errno::EPERM | nix::errno::Errno::EACCES => {
                    (ErrorKind::PermissionDenied, Some("run as root"))
                }
                nix::errno::Errno::EROFS => (ErrorKind::ReadOnly, None),
                _ => (ErrorKind::Io, None),
            };
            Error {
                kind,
                path: root.to_owned(),
                message: format!(
                    "cannot mount binfmt_misc at {}: {}",
                    root.display(),
                    io_reason(&io)
                ),
                hint: hint.map(str::to_string),
                source: Some(Box::new(io)),
            }
        })
    }

    /// Whether the whole table is enabled (its `status` file reads
    /// `enabled`). When it is disabled, no entry is used.
    pub fn status_enabled(&self) -> Result<bool, Error> {
        self.require_mounted()?;
        let path = self.root.join("status");
        let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
        match text.trim_end() {
            "enabled" => Ok(true),
            "disabled" => Ok(false),
            other => Err(Error::malformed(
                &path,
                format!(
                    "{} reads {other:?}, not enabled or disabled",
                    path.display()
                ),
                None,
            )),
        }
    }

    /// Every entry with its name, in the kernel's match order: newest
    /// first (see the module documentation for why `readdir` order is that
    /// order). A name that is not UTF-8 is shown with replacement
    /// characters; an entry removed while listing is left out.
    pub fn list(&self) -> Result<Vec<(String, EntryFile)>, Error> {
        self.require_mounted()?;
        let dir = fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        let mut entries = Vec::new();
        for item in dir {
            let item = item.map_err(|e| Error::io("list", &self.root, e))?;
            let os_name = item.file_name();
            let name = os_name.to_string_lossy().into_owned();
            if CONTROL_FILES.contains(&name.as_str()) {
                continue;
            }
            if let Some(entry) = self.read_path(&item.path())? {
                entries.push((name, entry));
            }
        }
        Ok(entries)
    }

    /// The entry named `name`, or `None` if there is none.
    pub fn read(&self, name: &str) -> Result<Option<EntryFile>, Error> {
        self.require_mounted()?;
        let path = self.entry_path(name)?;
        self.read_path(&path)
    }

    fn read_path(&self, path: &Path) -> Result<Option<EntryFile>, Error> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        // An interpreter path need not be UTF-8; the entry is still worth
        // listing (it may be the one that wins).
        let text = String::from_utf8_lossy(&bytes);
        EntryFile::parse(&text).map(Some).map_err(|e| {
            let message = format!("cannot parse binfmt_misc entry {}: {e}", path.display());
            Error::malformed(path, message, Some(e))
        })
    }

    /// Registers `line`: one `write()` of the whole line to `register`.
    ///
    /// The line is first checked with [`RegisterLine::validate`], so a line
    /// the kernel would refuse gives an [`ErrorKind::Invalid`] naming the
    /// bad field. With flag `F` the kernel opens the interpreter now; if it
    /// cannot, the error is [`ErrorKind::NotFound`] (or
    /// [`ErrorKind::PermissionDenied`]) naming the interpreter.
    pub fn register(&self, line: &RegisterLine) -> Result<(), Error> {
        let path = self.root.join("register");
        if let Err(e) = line.validate() {
            let message = format!(
                "cannot register {:?} in {}: {e}",
                line.name,
                self.root.display()
            );
            return Err(Error {
                kind: ErrorKind::Invalid,
                path,
                message,
                hint: None,
                source: Some(Box::new(e)),
            });
        }
        self.require_mounted()?;
        let text = line.to_string();
        let result = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write(text.as_bytes()));
        match result {
            Ok(n) if n == text.len() => Ok(()),
            Ok(n) => Err(Error {
                kind: ErrorKind::Io,
                path: path.clone(),
                message: format!(
                    "cannot register {:?}: {} took {n} of {} bytes",
                    line.name,
                    path.display(),
                    text.len()
                ),
                hint: None,
                source: None,
            }),
            Err(e) => Err(self.register_error(line, &path, e)),
        }
    }

    /// The error for a failed write of `line` to `register`, with what the
    /// kernel's errno means there.
    fn register_error(&self, line: &RegisterLine, path: &Path, e: io::Error) -> Error {
        let root = self.root.display();
        let name = &line.name;
        let (kind, message) = match e.raw_os_error() {
            Some(nix::libc::EEXIST) => (
                ErrorKind::Exists,
                format!("cannot register {name:?}: {root} already has an entry of that name"),
            ),
            Some(nix::libc::EINVAL) | Some(nix::libc::ENAMETOOLONG) => (
                ErrorKind::Invalid,
                format!(
                    "the kernel refused the register line for {name:?} written to {} ({})",
                    path.display(),
                    io_reason(&e)
                ),
            ),
            // With F the kernel opens the interpreter at registration.
            Some(nix::libc::ENOENT) if self.is_mounted() => (
                ErrorKind::NotFound,
                format!(
                    "cannot register {name:?}: the kernel cannot open the interpreter {} ({})",
                    line.interpreter,
                    io_reason(&e)
                ),
            ),
            _ => return Error::io("write", path, e),
        };
        let hint = (kind == ErrorKind::Exists).then(|| "remove it first".to_string());
        Error {
            kind,
            path: path.to_owned(),
            message,
            hint,
            source: Some(Box::new(e)),
        }
    }

    /// Enables (`on`) or disables the entry `name`; a disabled entry stays
    /// registered but is never used.
    pub fn set_enabled(&self, name: &str, on: bool) -> Result<(), Error> {
        self.command(name, if on { "1" } else { "0" })
    }

    /// Removes the entry `name` (writes `-1` to it).
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        self.command(name, "-1")
    }

    fn command(&self, name: &str, command: &str) -> Result<(), Error> {
        self.require_mounted()?;
        let path = self.entry_path(name)?;
        // No O_CREAT: a missing entry must not become a file (on a root
        // that is a plain directory it would).
        let result = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(command.as_bytes()));
        result.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error {
                kind: ErrorKind::NotFound,
                path: path.clone(),
                message: format!("no binfmt_misc entry {name:?} in {}", self.root.display()),
                hint: None,
                source: Some(Box::new(e)),
            },
            _ => Error::io("write", &path, e),
        })
    }

    /// The entry the kernel would run a file with, given the file's first
    /// bytes (up to [`BINPRM_BUF_SIZE`](crate::format::BINPRM_BUF_SIZE)):
    /// the first enabled magic entry in match order that matches, or `None`
    /// when none does or the table is disabled. Extension entries are not
    /// considered (they match on the file's name; see
    /// [`EntryFile::matches`]).
    pub fn winner(&self, header: &[u8]) -> Result<Option<(String, EntryFile)>, Error> {
        if !self.status_enabled()? {
            return Ok(None);
        }
        Ok(self
            .list()?
            .into_iter()
            .find(|(_, e)| e.enabled && e.matches(header)))
    }

    fn require_mounted(&self) -> Result<(), Error> {
        if self.is_mounted() {
            return Ok(());
        }
        let root = self.root.display();
        Err(Error {
            kind: ErrorKind::NotMounted,
            path: self.root.clone(),
            message: format!("binfmt_misc is not mounted at {root} (no register file)"),
            hint: Some(format!(
                "mount it with `mount -t binfmt_misc binfmt_misc {root}`"
            )),
            source: None,
        })
    }

    /// The path of entry `name`, refusing names that are not entries (a
    /// path, or one of binfmt_misc's own files).
    fn entry_path(&self, name: &str) -> Result<PathBuf, Error> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\0'])
            || CONTROL_FILES.contains(&name)
        {
            return Err(Error {
                kind: ErrorKind::Invalid,
                path: self.root.clone(),
                message: format!(
                    "{name:?} is not a binfmt_misc entry name (in {})",
                    self.root.display()
                ),
                hint: None,
                source: None,
            });
        }
        Ok(self.root.join(name))
    }
}

/// A failed binfmt_misc operation: what was done to which path, and why.
///
/// Its `Display` is one line that names the path and, where there is one,
/// what to do about it.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    path: PathBuf,
    message: String,
    /// What to do about it, apart from the message, so that callers print
    /// it in their one format (`… (hint: …)`).
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// binfmt_misc is not mounted at the root (or the kernel lacks it).
    NotMounted,
    /// Not allowed (`EACCES`/`EPERM`): usually not root.
    PermissionDenied,
    /// The table is mounted read-only (`EROFS`), as in most containers.
    ReadOnly,
    /// An entry of that name exists already (`EEXIST` from `register`).
    Exists,
    /// No entry of that name, or (registering with `F`) the interpreter
    /// cannot be found.
    NotFound,
    /// A register line or entry name the kernel refuses (`EINVAL`), caught
    /// before writing or reported by the kernel.
    Invalid,
    /// What the kernel printed could not be parsed (an entry or `status`
    /// file in a format this code does not know).
    Malformed,
    /// Any other I/O error.
    Io,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file or directory the failed operation was on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What failed, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do about it, if known.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// An I/O error from `op` ("read", "write", "list") on `path`, its kind
    /// from the errno.
    fn io(op: &str, path: &Path, e: io::Error) -> Error {
        let (kind, hint) = match e.raw_os_error() {
            Some(nix::libc::EACCES) | Some(nix::libc::EPERM) => {
                (ErrorKind::PermissionDenied, Some("run as root"))
            }
            Some(nix::libc::EROFS) => (
                ErrorKind::ReadOnly,
                Some(
                    "binfmt_misc is mounted read-only, as in most containers: run this on the host",
                ),
            ),
            Some(nix::libc::ENOENT) => (ErrorKind::NotFound, None),
            Some(nix::libc::EINVAL) => (ErrorKind::Invalid, None),
            _ => (ErrorKind::Io, None),
        };
        Error {
            kind,
            path: path.to_owned(),
            message: format!("cannot {op} {}: {}", path.display(), io_reason(&e)),
            hint: hint.map(str::to_string),
            source: Some(Box::new(e)),
        }
    }

    fn malformed(path: &Path, message: String, source: Option<ParseError>) -> Error {
        Error {
            kind: ErrorKind::Malformed,
            path: path.to_owned(),
            message,
            hint: None,
            source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        }
    }
}

/// `message (hint: hint)`: the CLI's one error format.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// An I/O error's reason without Rust's ` (os error N)` suffix, in lower
/// case, as part of a sentence (the same wording as the interpreter-file
/// library's `io_reason`, which the CLI uses for its own errors).
fn io_reason(err: &io::Error) -> String {
    let s = err.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Flags, Kind};

    /// A fresh directory standing in for a binfmt_misc root, with
    /// `register` and `status` files and the given captured entries;
    /// removed when dropped.
    struct FakeRoot(tempfile::TempDir);

    impl std::ops::Deref for FakeRoot {
        type Target = Path;
        fn deref(&self) -> &Path {
            self.0.path()
        }
    }

    fn fake_root(entries: &[&str]) -> FakeRoot {
        let root = FakeRoot(
            tempfile::Builder::new()
                .prefix("qemu-shim-binfmt-test-")
                .tempdir()
                .unwrap(),
        );
        fs::write(root.join("register"), "").unwrap();
        fs::write(root.join("status"), "enabled\n").unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/entries");
        for name in entries {
            fs::copy(fixtures.join(name), root.join(name)).unwrap();
        }
        root
    }

    #[test]
    fn entry_name_has_prefix() {
        assert_eq!(entry_name("aarch64"), "qemu-shim-aarch64");
        assert!(entry_name("x").starts_with(OWNED_PREFIX));
    }

    #[test]
    fn not_mounted_without_register_file() {
        let root = fake_root(&[]);
        fs::remove_file(root.join("register")).unwrap();
        let b = Binfmt::new(&*root);
        assert!(!b.is_mounted());
        let e = b.list().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotMounted);
        assert!(e.to_string().contains(&root.display().to_string()), "{e}");
        assert!(e.to_string().contains("mount -t binfmt_misc"), "{e}");
        assert_eq!(
            b.status_enabled().unwrap_err().kind(),
            ErrorKind::NotMounted
        );
    }

    #[test]
    fn lists_entries_without_control_files() {
        let root = fake_root(&["magic-offset", "extension", "disabled"]);
        let mut names: Vec<String> = Binfmt::new(&*root)
            .list()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        assert_eq!(names, ["disabled", "extension", "magic-offset"]);
    }

    #[test]
    fn reads_one_entry_or_none() {
        let root = fake_root(&["magic-offset"]);
        let b = Binfmt::new(&*root);
        let e = b.read("magic-offset").unwrap().unwrap();
        assert_eq!(e.offset, Some(8));
        assert_eq!(b.read("absent").unwrap(), None);
    }

    #[test]
    fn refuses_names_that_are_not_entries() {
        let root = fake_root(&[]);
        let b = Binfmt::new(&*root);
        for name in ["", ".", "..", "a/b", "register", "status"] {
            assert_eq!(
                b.read(name).unwrap_err().kind(),
                ErrorKind::Invalid,
                "{name:?}"
            );
            assert_eq!(
                b.remove(name).unwrap_err().kind(),
                ErrorKind::Invalid,
                "{name:?}"
            );
        }
    }

    #[test]
    fn malformed_entry_is_an_error_naming_it() {
        let root = fake_root(&[]);
        fs::write(root.join("weird"), "maybe\n").unwrap();
        let e = Binfmt::new(&*root).read("weird").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert!(e.to_string().contains("weird"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn status_disabled() {
        let root = fake_root(&[]);
        fs::write(root.join("status"), "disabled\n").unwrap();
        assert!(!Binfmt::new(&*root).status_enabled().unwrap());
    }

    #[test]
    fn register_writes_the_line_once() {
        let root = fake_root(&[]);
        let line: RegisterLine = r":t:M::\x41::/bin/true:PF".parse().unwrap();
        Binfmt::new(&*root).register(&line).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("register")).unwrap(),
            line.to_string()
        );
    }

    #[test]
    fn register_refuses_invalid_line_before_writing() {
        let root = fake_root(&[]);
        let line = RegisterLine {
            name: "t".into(),
            kind: Kind::Magic {
                offset: 0,
                magic: b"AB".to_vec(),
                mask: Some(b"\xff".to_vec()),
            },
            interpreter: "/bin/true".into(),
            flags: Flags::NONE,
        };
        let e = Binfmt::new(&*root).register(&line).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("mask"), "{e}");
        assert_eq!(fs::read_to_string(root.join("register")).unwrap(), "");
    }

    #[test]
    fn commands_write_to_the_entry_and_never_create_one() {
        let root = fake_root(&["magic-offset"]);
        let b = Binfmt::new(&*root);
        b.set_enabled("magic-offset", false).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("magic-offset"))
                .unwrap()
                .get(..1),
            Some("0")
        );
        let e = b.remove("absent").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("\"absent\""), "{e}");
        assert!(!root.join("absent").exists());
    }

    #[test]
    fn winner_skips_disabled_and_extension_entries() {
        let root = fake_root(&["magic-nomask", "extension", "disabled"]);
        let b = Binfmt::new(&*root);
        let (name, _) = b.winner(b"MZ\x90\0").unwrap().unwrap();
        assert_eq!(name, "magic-nomask");
        // `disabled` matches a file starting with 06 but is disabled.
        assert_eq!(b.winner(b"\x06").unwrap(), None);
    }

    #[test]
    fn winner_none_when_table_disabled() {
        let root = fake_root(&["magic-nomask"]);
        fs::write(root.join("status"), "disabled\n").unwrap();
        assert_eq!(Binfmt::new(&*root).winner(b"MZ").unwrap(), None);
    }

    #[test]
    fn errno_kinds() {
        let p = Path::new("/x");
        let kind = |errno| Error::io("write", p, io::Error::from_raw_os_error(errno)).kind();
        assert_eq!(kind(nix::libc::EACCES), ErrorKind::PermissionDenied);
        assert_eq!(kind(nix::libc::EPERM), ErrorKind::PermissionDenied);
        assert_eq!(kind(nix::libc::EROFS), ErrorKind::ReadOnly);
        assert_eq!(kind(nix::libc::ENOENT), ErrorKind::NotFound);
        assert_eq!(kind(nix::libc::EINVAL), ErrorKind::Invalid);
        assert_eq!(kind(nix::libc::EIO), ErrorKind::Io);
        let e = Error::io("write", p, io::Error::from_raw_os_error(nix::libc::EACCES));
        assert_eq!(
            e.to_string(),
            "cannot write /x: permission denied (hint: run as root)"
        );
    }
}
