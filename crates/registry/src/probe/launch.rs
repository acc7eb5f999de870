//! Starting one probe program: the crate's only `unsafe` code (the crate
//! root denies it; this module allows it, for the one call below).
//!
//! A probe is started with [`Command`], whose [`pre_exec`] closure runs in
//! the forked child just before the exec. For a private probe the closure
//! first enters a new user and mount namespace and mounts a new, empty
//! binfmt_misc instance on [`DEFAULT_ROOT`]: the child has one thread, so
//! it may unshare a user namespace even when this process has several (a
//! multithreaded process cannot: `EINVAL`).
//!
//! The closure then execs the probe itself, with `execve`, so `Command`'s
//! own exec is never reached: that one is `execvp`, which in glibc runs a
//! file the kernel refuses with `ENOEXEC` as a shell script (`/bin/sh
//! FILE`), and the kernel's `ENOEXEC` is the very answer a probe is for.
//!
//! A failed step comes back as the spawn's error: std hands the OS error
//! code the closure returns to the parent ("whose OS error code will be
//! communicated back to the parent", [`pre_exec`]'s documentation), and the
//! code here carries the step above the errno ([`Launched::Failed`]).
//!
//! [`pre_exec`]: std::os::unix::process::CommandExt::pre_exec
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::ptr;

use nix::errno::Errno;
use nix::libc;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::binfmt::DEFAULT_ROOT;

/// A step of starting a probe, done in the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
    Unshare = 1,
    /// Mounting binfmt_misc on [`DEFAULT_ROOT`] in the new namespaces.
    Mount = 2,
    /// `execve` of the probe.
    Exec = 3,
}

/// How starting a probe went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Launched {
    /// The probe ran; how it ended.
    Ended(ExitStatus),
    /// A step failed with this errno; the probe did not run.
    Failed(Step, Errno),
}

/// The error code the child reports for `step` failing with `errno`: the
/// step above the errno's bits (errnos are below 4096).
fn code(step: Step, errno: Errno) -> i32 {
    (step as i32) << 16 | errno as i32
}

/// The step and errno of a spawn error the child reported, or `None` for
/// an error of the spawn itself (fork, the standard streams).
fn decode(code: i32) -> Option<(Step, Errno)> {
    let step = match code >> 16 {
        1 => Step::Unshare,
        2 => Step::Mount,
        3 => Step::Exec,
        _ => return None,
    };
    Some((step, Errno::from_raw(code & 0xffff)))
}

/// Runs `probe` (argv `[probe]`, an empty environment, the standard streams
/// on /dev/null) and waits for it; with `private`, in new user and mount
/// namespaces with an empty binfmt_misc instance, so that only the CPU can
/// answer. An `Err` is a failure to start a child at all.
pub(super) fn launch(probe: &Path, private: bool) -> io::Result<Launched> {
    // Everything the child uses is made here, before the fork.
    let path = CString::new(probe.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let root = CString::new(DEFAULT_ROOT).expect("no NUL byte in DEFAULT_ROOT");
    let mut command = Command::new(probe);
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs between fork and exec in a copy of this
    // (maybe multithreaded) process, where only async-signal-safe work is
    // sound. `in_child` makes system calls (unshare, mount, execve) on the
    // C strings made above and on arrays on its own stack: it allocates
    // nothing, takes no lock and touches no state shared with other
    // threads.
    unsafe {
        command.pre_exec(move || in_child(&path, &root, private));
    }
    match command.status() {
        Ok(status) => Ok(Launched::Ended(status)),
        Err(e) => match e.raw_os_error().and_then(decode) {
            Some((step, errno)) => Ok(Launched::Failed(step, errno)),
            None => Err(e),
        },
    }
}

/// The child's part: the namespaces (with `private`), then the exec of
/// `path`. Returns only on failure, with [`code`] as the OS error.
fn in_child(path: &CStr, root: &CStr, private: bool) -> io::Result<()> {
    let failed = |step, errno| io::Error::from_raw_os_error(code(step, errno));
    if private {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
            .map_err(|e| failed(Step::Unshare, e))?;
        mount(
            Some(c"binfmt_misc"),
            root,
            Some(c"binfmt_misc"),
            MsFlags::empty(),
            None::<&CStr>,
        )
        .map_err(|e| failed(Step::Mount, e))?;
    }
    let argv = [path.as_ptr(), ptr::null()];
    let envp: [*const libc::c_char; 1] = [ptr::null()];
    // SAFETY: `path` is a NUL-terminated string and both arrays end with a
    // null pointer, all alive across the call. execve returns only when it
    // failed.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(failed(Step::Exec, Errno::last()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_the_step_and_the_errno() {
        for step in [Step::Unshare, Step::Mount, Step::Exec] {
            for errno in [Errno::EPERM, Errno::ENOEXEC, Errno::EHWPOISON] {
                assert_eq!(decode(code(step, errno)), Some((step, errno)));
            }
        }
        // The spawn's own errors are plain errnos.
        assert_eq!(decode(Errno::EAGAIN as i32), None);
    }
}
