//! Opening the binfmt_misc directory a command works on.
//!
//! binfmt_misc instances belong to user namespaces: mounting it in the
//! initial user namespace shows the host's table (whatever the mount
//! namespace), mounting it anywhere else makes a new, private, empty
//! instance that vanishes with that namespace (Linux >= 6.7).
//!
//! - `install` mounts the default root when it is not mounted, as systemd
//!   does at boot — but not in a user namespace of its own (a rootless
//!   container): a registration there would land in a private instance and
//!   vanish, so it refuses.
//! - The other commands never change the host's mounts: when the default
//!   root is not mounted (these VMs boot so; a fresh container starts so),
//!   they mount it in a mount namespace of their own, which shows the same
//!   table and is gone when they exit.
//! - A directory given with `--binfmt-dir` is used as is, never mounted: it
//!   may be a test instance or a path the user mistyped, and mounting there
//!   would hide what is there.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use qemu_shim_registry::binfmt::{self, Binfmt};

use crate::error::{Error, Result};

/// The inode of the initial user namespace's `/proc/self/ns/user`
/// (`PROC_USER_INIT_INO`, fixed by the kernel since Linux 3.8): the one
/// namespace whose binfmt_misc instance is the host's.
const PROC_USER_INIT_INO: u64 = 0xEFFF_FFFD;

/// Whether this process is in the initial user namespace. `None` when it
/// cannot tell (no /proc).
pub fn in_initial_user_namespace() -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/user")
        .ok()
        .map(|m| m.ino() == PROC_USER_INIT_INO)
}

/// The root to change entries in: the default one mounted if needed; and
/// whether this call mounted it.
pub fn open_for_change(dir: Option<&Path>) -> Result<(Binfmt, bool)> {
    match dir {
        Some(d) => {
            let bf = Binfmt::new(d);
            if bf.is_mounted() {
                Ok((bf, false))
            } else {
                Err(not_mounted(d))
            }
        }
        None => {
            let bf = Binfmt::new(binfmt::DEFAULT_ROOT);
            if bf.is_mounted() {
                return Ok((bf, false));
            }
            if in_initial_user_namespace() == Some(false) {
                return Err(private_instance());
            }
            Binfmt::mount_default().map_err(|e| match e.kind() {
                binfmt::ErrorKind::PermissionDenied => Error::new(format!(
                    "cannot mount binfmt_misc at {}: operation not permitted",
                    binfmt::DEFAULT_ROOT
                ))
                .hint(NEEDS_PRIVILEGE),
                _ => Error::from(e),
            })?;
            Ok((bf, true))
        }
    }
}

/// The note for an install that mounted binfmt_misc itself (`mounted`,
/// as [`open_for_change`] tells) inside a
/// container (podman's /run/.containerenv, docker's /.dockerenv), or
/// `None`. On Linux >= 6.7 the kernel drops the host's entries when the
/// last mount of binfmt_misc goes, and the container's mount goes with the
/// container: the entries outlive it only where the host keeps its own
/// mount, as systemd does at boot. From inside, the two cannot be told
/// apart (the container's /proc never shows the host's mount), so it is
/// said, not refused.
pub fn mount_lifetime_note(mounted: bool) -> Option<String> {
    (mounted && in_container()).then(|| {
        format!(
            "binfmt_misc was not mounted in this container, so install mounted it: the entries \
             outlive the container only if the host keeps binfmt_misc mounted (systemd does at \
             boot; Linux >= 6.7 drops them with its last mount) (hint: on a host without \
             systemd, first run there: mount -t binfmt_misc binfmt_misc {})",
            binfmt::DEFAULT_ROOT
        )
    })
}

/// Whether this process runs in a container, as the engines mark it:
/// podman's /run/.containerenv, docker's /.dockerenv.
pub fn in_container() -> bool {
    Path::new("/run/.containerenv").exists() || Path::new("/.dockerenv").exists()
}

/// What mounting binfmt_misc takes.
const NEEDS_PRIVILEGE: &str =
    "run as root; in a container, run it privileged: podman run --privileged …";

/// The error for a registration that would land in a private instance.
fn private_instance() -> Error {
    Error::new(format!(
        "binfmt_misc is not mounted at {}, and this process runs in a user namespace of its own \
         (a rootless container?): a binfmt_misc mounted here is a private instance that vanishes \
         with it, so nothing would be registered for the host",
        binfmt::DEFAULT_ROOT
    ))
    .hint(
        "install on the host, or from a rootful privileged container (sudo podman run \
         --privileged …); for one program without root, use `qemu-shim run`",
    )
}

/// The root to read (or remove entries from). The default root, when it is
/// not mounted, is mounted in a mount namespace of this process's own (the
/// host's table, the host's mounts untouched); if that cannot be done, it is
/// returned unmounted and [`unmounted_why`] says why.
pub fn open_for_read(dir: Option<&Path>) -> Binfmt {
    let bf = Binfmt::new(dir.unwrap_or(Path::new(binfmt::DEFAULT_ROOT)));
    if dir.is_none() && !bf.is_mounted() && in_initial_user_namespace() == Some(true) {
        // Best effort: without the privilege the caller reports the table
        // as not mounted, as before.
        let _ = mount_privately();
    }
    bf
}

/// Enters a new mount namespace, private from the host's (so nothing
/// mounted here propagates back), and mounts binfmt_misc at the default
/// root there. Needs CAP_SYS_ADMIN and a single-threaded process (the CLI
/// is one).
fn mount_privately() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("binfmt_misc"),
        binfmt::DEFAULT_ROOT,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// Why the default root is not mounted for a reading command, in words for
/// a report line.
pub fn unmounted_why() -> &'static str {
    match in_initial_user_namespace() {
        Some(false) => {
            "this process runs in a user namespace of its own, a rootless container perhaps, where \
             the host's table is not visible"
        }
        _ if !nix::unistd::geteuid().is_root() => "mounting it needs root",
        _ => "it cannot be mounted here (in a container, run it privileged: --privileged)",
    }
}

/// The error for a root that is not a mounted binfmt_misc.
pub fn not_mounted(dir: &Path) -> Error {
    Error::new(format!(
        "{} is not a mounted binfmt_misc (no register file)",
        dir.display()
    ))
    .hint(format!(
        "--binfmt-dir must name a mounted binfmt_misc (without it: {}); to mount one there: \
         mount -t binfmt_misc binfmt_misc {}",
        binfmt::DEFAULT_ROOT,
        dir.display()
    ))
}
