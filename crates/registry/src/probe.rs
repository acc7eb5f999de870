//! Probing which arches the host runs natively.
//!
//! binfmt_misc is consulted before the kernel's own ELF loader, so an entry
//! for an arch the host runs natively takes over the host's own programs
//! (and, for the host's own arch, the interpreter itself: the exec loops
//! until `ELOOP`). So what is native must be measured, not guessed from the
//! CPU name: an x86_64 kernel runs i386 programs unless it was booted with
//! `ia32_emulation=0`, an arm64 kernel runs arm programs only with 32-bit
//! EL0 support, and so on.
//!
//! [`probe`] measures it: for every row of the arch table it has a program
//! for, it writes a tiny `exit(0)` program for that arch ([`exit_program`]:
//! an ELF header, one loadable segment and three instructions) and has the
//! kernel execute it. The host's own arch ([`host_arch`]) is native by
//! definition and not probed.
//!
//! # Where the exec happens
//!
//! The exec must not be answered by an existing binfmt_misc entry (say a
//! distro's `qemu-i386`) instead of the CPU. So each probe runs in a new user
//! and mount namespace with its own, empty binfmt_misc instance (Linux 6.7
//! and later allow this): the child process [`std::process::Command`] forks
//! calls `unshare(CLONE_NEWUSER | CLONE_NEWNS)`, mounts binfmt_misc on
//! `/proc/sys/fs/binfmt_misc` and `execve`s the probe itself (the `launch`
//! module: the crate's one `unsafe` block, `pre_exec`), and a failed step
//! comes back with its errno. The child has one thread, so this works from
//! a multithreaded program (a multithreaded process cannot unshare a user
//! namespace itself); it runs no shell (whose fallback of running an
//! unrunnable file as a script would blur the answer) and no external tool.
//! If the host's arch has no probe program, only it is reported.
//!
//! If no private instance can be made (an older kernel, user namespaces
//! disabled), the probe falls back to the host's table: a probe that an
//! enabled host entry matches is not run and is reported
//! [`Outcome::Unknown`] (so not native); the others are executed directly.
//! Limits of the fallback: an entry registered between that check and the
//! exec is not seen; and when binfmt_misc is not mounted on the host, it is
//! taken to have no entries (kernels before 6.7 keep entries registered
//! before an unmount).
//!
//! Probe files are written to a fresh private directory (mode 0700) under
//! the given directory ([`std::env::temp_dir`] by default) and removed
//! afterwards; that directory must allow exec (not mounted `noexec`).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use crate::arch::{self, Arch, ARCHES};
use crate::binfmt::{Binfmt, DEFAULT_ROOT};
use crate::programs::{self, Kind};

mod launch;
use launch::{Launched, Step};

// ---------------------------------------------------------------------------
// Tiny programs

/// A tiny static program for the arch table row named `arch` that exits
/// with status 0, or `None` if there is none (a name not in the table, or
/// a row without programs). See [`crate::programs`].
pub fn exit_program(arch: &str) -> Option<Vec<u8>> {
    exit_program_with_status(arch, 0)
}

/// Like [`exit_program`], exiting with `status` instead of 0 (for checks
/// that the program really ran, not just something that exits 0).
pub fn exit_program_with_status(arch: &str, status: u8) -> Option<Vec<u8>> {
    programs::program(arch, Kind::Exit(status))
}

// ---------------------------------------------------------------------------
// Probing

/// The table row for the arch this program was built for (which the host
/// runs natively by definition), or `None` if the table has none.
pub fn host_arch() -> Option<&'static Arch> {
    let big = cfg!(target_endian = "big");
    let wide = cfg!(target_pointer_width = "64");
    let name = match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "x86" => "i386",
        "aarch64" if big => "aarch64_be",
        "aarch64" => "aarch64",
        "arm" if big => "armeb",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        "loongarch64" => "loongarch64",
        "powerpc64" if big => "ppc64",
        "powerpc64" => "ppc64le",
        "powerpc" => "ppc",
        "s390x" => "s390x",
        "mips64" | "mips64r6" if !wide && big => "mipsn32",
        "mips64" | "mips64r6" if !wide => "mipsn32el",
        "mips64" | "mips64r6" if big => "mips64",
        "mips64" | "mips64r6" => "mips64el",
        "mips" | "mips32r6" if big => "mips",
        "mips" | "mips32r6" => "mipsel",
        "sparc64" => "sparc64",
        "sparc" => "sparc",
        "m68k" => "m68k",
        "hexagon" => "hexagon",
        "xtensa" if big => "xtensaeb",
        "xtensa" => "xtensa",
        _ => return None,
    };
    arch::by_name(name)
}

/// What probing one arch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel ran the program and it exited 0: the host runs this arch
    /// natively. Never register it.
    Native,
    /// The kernel refused to run it (`ENOEXEC`): it needs an emulator.
    NotNative,
    /// The probe could not tell (the reason says why). Treated as not
    /// native: registering an arch the host could run only costs speed,
    /// while treating a foreign arch as native leaves it unrunnable.
    Unknown(String),
}

/// How the probes were run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// In a private, empty binfmt_misc instance: the CPU answered.
    PrivateInstance,
    /// Directly, after checking that no enabled entry of the host's table
    /// matches the probe (fallback: no private instance could be made).
    HostTable,
    /// Not at all: no probe program for this host's arch, or the host's
    /// arch is not in the table. Only the host's own arch is known native.
    HostArchOnly,
}

/// Which step of making a private binfmt_misc instance failed, and its
/// errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoInstance {
    pub step: InstanceStep,
    pub errno: i32,
}

/// A step of making a private binfmt_misc instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStep {
    /// `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
    Unshare,
    /// Mounting binfmt_misc in the new namespaces.
    Mount,
}

/// Everything [`probe`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The host's own row ([`host_arch`]), native by definition.
    pub host: Option<&'static Arch>,
    /// How the probes were run.
    pub method: Method,
    /// Why the method is not [`Method::PrivateInstance`], if it is not.
    pub note: Option<String>,
    /// The step that failed when a private instance could not be made
    /// ([`Method::HostTable`] not forced), for callers that need one
    /// themselves: `qemu-shim run` would fail at the same step.
    pub no_instance: Option<NoInstance>,
    /// Every probed row (all rows with a program except the host's), in
    /// table order.
    pub probes: Vec<(&'static Arch, Outcome)>,
}

impl Report {
    /// The host's own arch, then every probed arch that is
    /// [`Outcome::Native`].
    pub fn native(&self) -> Vec<&'static Arch> {
        self.host
            .into_iter()
            .chain(
                self.probes
                    .iter()
                    .filter(|(_, o)| *o == Outcome::Native)
                    .map(|(a, _)| *a),
            )
            .collect()
    }
}

/// Why probing failed as a whole (the files could not be written or no
/// process started). Its `Display` is one line naming the path.
#[derive(Debug)]
pub struct Error {
    message: String,
    source: io::Error,
    host_not_native: bool,
}

impl Error {
    fn new(message: String, source: io::Error) -> Error {
        Error {
            message,
            source,
            host_not_native: false,
        }
    }

    /// Whether probing stopped because the kernel does not run this
    /// program's own arch natively: it runs under an emulator, and the
    /// build for the machine's arch is needed.
    pub fn host_not_native(&self) -> bool {
        self.host_not_native
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The arches the host runs natively: its own ([`host_arch`]) and every
/// arch whose probe the kernel ran ([`probe`]). An arch that could not be
/// probed is not included.
pub fn native_arches() -> Result<Vec<&'static Arch>, Error> {
    Ok(probe()?.native())
}

/// Probes every arch with a program, writing the probe files under
/// [`std::env::temp_dir`] (`TMPDIR`).
pub fn probe() -> Result<Report, Error> {
    probe_in(&std::env::temp_dir())
}

/// Probes every arch with a program, writing the probe files in a new
/// private directory under `dir` (which must allow exec).
pub fn probe_in(dir: &Path) -> Result<Report, Error> {
    run(dir, host_arch(), true, &Binfmt::new(DEFAULT_ROOT))
}

/// Removes what a killed earlier run left in `parent`: directories named
/// `PREFIX<pid>…` (the pid in decimal, then anything not a digit) owned by
/// this user, unchanged for [`STALE_AFTER`], whose pid no longer exists. A
/// pid reused by a live process keeps its directory until that process is
/// gone too; the age spares a live run whose pid means another process here
/// (one in another pid namespace sharing the directory). Errors are
/// ignored: this is tidying, not a step anything depends on.
pub fn remove_stale_dirs(parent: &Path, prefix: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(pid) = rest[..digits].parse::<i32>() else {
            continue;
        };
        // Not a symlink, ours: never follow or remove what another user made.
        let path = e.path();
        match fs::symlink_metadata(&path) {
            Ok(m)
                if m.is_dir()
                    && m.uid() == me
                    && m.modified()
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= STALE_AFTER) => {}
            _ => continue,
        }
        if pid_gone(pid) {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Whether no process of this pid namespace has pid `pid`: the test before
/// removing what a run left under its pid. A process of another user, or a
/// zombie, still counts as there.
pub fn pid_gone(pid: i32) -> bool {
    pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}

/// How long a work directory must have been left alone before it may be
/// taken for a killed run's: far longer than any probe takes.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// The name prefix of the probe's work directories.
const WORK_PREFIX: &str = "qemu-shim-probe-";

/// A directory for the probe files, removed with its contents when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(parent: &Path) -> Result<WorkDir, Error> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        remove_stale_dirs(parent, WORK_PREFIX);
        let mut last = None;
        for _ in 0..16 {
            let path = parent.join(format!(
                "{WORK_PREFIX}{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(WorkDir(path)),
                // Left behind by an earlier process of the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(Error::new(
                        format!(
                            "cannot create a probe directory in {}: {e}",
                            parent.display()
                        ),
                        e,
                    ))
                }
            }
        }
        let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
        Err(Error::new(
            format!(
                "cannot create a probe directory in {}: {e}",
                parent.display()
            ),
            e,
        ))
    }

    /// Writes an executable file `name` (mode 0700) holding `bytes`.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let path = self.0.join(name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, bytes))
            .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What one run of a probe said.
enum Run {
    /// An outcome for the probe.
    Done(Outcome),
    /// The private instance could not be made (the message says why).
    NoInstance(String, NoInstance),
}

/// Starts `probe` (see the `launch` module), retrying while its exec fails
/// with `ETXTBSY`: a thread of this process that forks while a probe file
/// is still open for writing makes the file busy for a moment.
fn launch(probe: &Path, private: bool) -> Result<Launched, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let launched = launch::launch(probe, private).map_err(|e| {
            Error::new(
                format!("cannot start a process to run {}: {e}", probe.display()),
                e,
            )
        })?;
        if launched != Launched::Failed(Step::Exec, Errno::ETXTBSY) || attempt >= 50 {
            return Ok(launched);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What starting a probe says about its arch.
fn decode(launched: Launched) -> Run {
    let status = match launched {
        Launched::Ended(status) => status,
        Launched::Failed(Step::Exec, Errno::ENOEXEC) => return Run::Done(Outcome::NotNative),
        Launched::Failed(Step::Exec, errno) => {
            return Run::Done(Outcome::Unknown(format!(
                "the kernel did not run the probe: {errno:?}"
            )))
        }
        Launched::Failed(Step::Mount, errno) => {
            return Run::NoInstance(
                format!(
                    "cannot mount a private binfmt_misc instance ({errno:?}; Linux 6.7 or later needed)"
                ),
                NoInstance {
                    step: InstanceStep::Mount,
                    errno: errno as i32,
                },
            )
        }
        Launched::Failed(Step::Unshare, errno) => {
            return Run::NoInstance(
                format!("cannot create a user and mount namespace ({errno:?})"),
                NoInstance {
                    step: InstanceStep::Unshare,
                    errno: errno as i32,
                },
            )
        }
    };
    match status.code() {
        Some(0) => Run::Done(Outcome::Native),
        Some(code) => Run::Done(Outcome::Unknown(format!(
            "the probe ran but exited with status {code}"
        ))),
        None => Run::Done(Outcome::Unknown(format!(
            "the probe was killed by signal {}",
            status.signal().unwrap_or(0)
        ))),
    }
}

/// Probes as [`probe_in`] says, for `host`; with `try_private` false, only
/// the fallback against `host_table` is used (for tests).
fn run(
    dir: &Path,
    host: Option<&'static Arch>,
    try_private: bool,
    host_table: &Binfmt,
) -> Result<Report, Error> {
    let only_host = |note: String| Report {
        host,
        method: Method::HostArchOnly,
        note: Some(note),
        no_instance: None,
        probes: Vec::new(),
    };
    let Some(host_row) = host else {
        return Ok(only_host(format!(
            "this host's arch ({}) is not in the arch table",
            std::env::consts::ARCH
        )));
    };
    let Some(control) = exit_program(host_row.name) else {
        return Ok(only_host(format!(
            "cannot probe on a {} host (no probe program for it)",
            host_row.name
        )));
    };

    let work = WorkDir::new(dir)?;
    // The host's own arch goes first, as a control: the kernel must run
    // it natively. It does not when this program itself runs under an
    // emulator (an arm64 build under qemu on an x86_64 machine), and then
    // every other answer means nothing: the real host arch would come out
    // foreign, and registering it would send every native program to an
    // emulator.
    let mut candidates = vec![(host_row, work.write("exit-host", &control)?, control)];
    for row in ARCHES.iter().filter(|a| a.name != host_row.name) {
        if let Some(program) = exit_program(row.name) {
            // No dot in the name: binfmt_misc's extension entries match
            // the text after the last dot of the path.
            let path = work.write(&format!("exit-{}", row.name.replace('.', "-")), &program)?;
            candidates.push((row, path, program));
        }
    }

    let mut method = Method::PrivateInstance;
    let mut note = None;
    let mut no_instance = None;
    let mut probes = Vec::new();
    for (row, path, program) in &candidates {
        if method == Method::PrivateInstance && try_private {
            match decode(launch(path, true)?) {
                Run::Done(outcome) => {
                    probes.push((*row, outcome));
                    continue;
                }
                Run::NoInstance(why, failed) => {
                    note = Some(why);
                    no_instance = Some(failed);
                }
            }
        }
        if method == Method::PrivateInstance {
            method = Method::HostTable;
            note.get_or_insert_with(|| "probed against the host's table (forced)".into());
        }
        let outcome = match host_answers(host_table, program) {
            Ok(Some(name)) => Outcome::Unknown(format!(
                "the host's binfmt_misc entry {name:?} matches the probe and would answer instead of the CPU"
            )),
            Ok(None) => match decode(launch(path, false)?) {
                Run::Done(outcome) => outcome,
                // Not private: neither unshares nor mounts.
                Run::NoInstance(why, _) => Outcome::Unknown(why),
            },
            Err(e) => Outcome::Unknown(format!("cannot check the host's binfmt_misc table: {e}")),
        };
        probes.push((*row, outcome));
    }
    if let Some(pos) = probes.iter().position(|(r, _)| r.name == host_row.name) {
        let (_, control) = probes.remove(pos);
        if control != Outcome::Native {
            let why = match control {
                Outcome::Unknown(why) => why,
                _ => "the kernel refused it (exec format error)".into(),
            };
            return Err(Error {
                message: format!(
                    "this qemu-shim is built for {0}, but this kernel does not run {0} programs natively ({why}): is it running under an emulator?",
                    host_row.name
                ),
                source: io::Error::from_raw_os_error(nix::libc::ENOEXEC),
                host_not_native: true,
            });
        }
    }
    Ok(Report {
        host,
        method,
        note,
        no_instance,
        probes,
    })
}

/// The enabled entry of the host's table that would run `program`, if any.
/// An unmounted table has none (see the module documentation for the limit).
fn host_answers(table: &Binfmt, program: &[u8]) -> Result<Option<String>, crate::binfmt::Error> {
    if !table.is_mounted() {
        return Ok(None);
    }
    Ok(table.winner(program)?.map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        assert_in_private_instance, run_ignored_after, run_in_private_instance,
    };
    use std::process::{Command, ExitStatus};

    /// [`launch`] of the file `name` holding `bytes` in `work`.
    fn launched(work: &WorkDir, name: &str, bytes: &[u8], private: bool) -> Launched {
        let path = work.0.join(name);
        if !path.exists() {
            work.write(name, bytes).unwrap();
        }
        launch(&path, private).unwrap()
    }

    /// A foreign arch's exit program: no kernel runs both s390x and
    /// aarch64 natively.
    fn foreign_program() -> Vec<u8> {
        let host = host_arch().map(|a| a.name);
        let arch = if host == Some("s390x") {
            "aarch64"
        } else {
            "s390x"
        };
        exit_program(arch).unwrap()
    }

    /// Both ways of starting a probe: the exit status passes through, and a
    /// failed exec is the kernel's own answer — never a shell's guess, the
    /// fallback of execvp that runs a file the kernel refused as a script.
    #[test]
    fn launch_reports_the_exit_status_or_the_kernels_exec_error() {
        let Some(host) = host_arch() else { return };
        let work = WorkDir::new(&std::env::temp_dir()).unwrap();
        let native = exit_program_with_status(host.name, 42).unwrap();
        for private in [true, false] {
            let ran = launched(&work, "native-42", &native, private);
            assert!(
                matches!(ran, Launched::Ended(s) if s.code() == Some(42)),
                "private {private}: {ran:?}"
            );
            assert_eq!(
                launch(&work.0.join("absent"), private).unwrap(),
                Launched::Failed(Step::Exec, Errno::ENOENT)
            );
            // A script without `#!`: sh would run it and exit 7.
            assert_eq!(
                launched(&work, "script", b"exit 7\n", private),
                Launched::Failed(Step::Exec, Errno::ENOEXEC),
                "private {private}"
            );
        }
        // In a private, empty instance nothing but the CPU answers.
        assert_eq!(
            launched(&work, "foreign", &foreign_program(), true),
            Launched::Failed(Step::Exec, Errno::ENOEXEC)
        );
    }

    /// Marks a test that [`run_ignored_after`] starts after `setup`: panics
    /// unless the setup exported `QEMU_SHIM_TEST_SETUP=setup`.
    fn assert_after_setup(setup: &str) {
        assert_eq!(
            std::env::var("QEMU_SHIM_TEST_SETUP").as_deref(),
            Ok(setup),
            "this test runs only after its setup, through the test of the same name without inside_"
        );
    }

    /// In a chroot the kernel refuses to create a user namespace (EPERM):
    /// the private launch says which step failed and why.
    #[test]
    fn launch_reports_a_failed_unshare() {
        run_ignored_after(
            r#"d=$(mktemp -d)
mount --rbind / "$d"
rc=0
QEMU_SHIM_TEST_SETUP=chroot chroot "$d" "$@" || rc=$?
umount -l "$d"
rmdir "$d"
exit $rc"#,
            concat!(module_path!(), "::inside_launch_reports_a_failed_unshare"),
        );
    }

    #[test]
    #[ignore = "runs in a chroot via launch_reports_a_failed_unshare"]
    fn inside_launch_reports_a_failed_unshare() {
        assert_after_setup("chroot");
        let work = WorkDir::new(&std::env::temp_dir()).unwrap();
        assert_eq!(
            launched(&work, "foreign", &foreign_program(), true),
            Launched::Failed(Step::Unshare, Errno::EPERM)
        );
        let report = probe_in(&work.0).unwrap();
        assert_eq!(report.method, Method::HostTable);
        assert_eq!(
            report.no_instance,
            Some(NoInstance {
                step: InstanceStep::Unshare,
                errno: Errno::EPERM as i32
            })
        );
    }

    /// With /proc/sys covered, binfmt_misc's mount point is gone (ENOENT):
    /// the private launch says which step failed and why.
    #[test]
    fn launch_reports_a_failed_mount() {
        run_ignored_after(
            r#"mount -t tmpfs qemu-shim-test /proc/sys
QEMU_SHIM_TEST_SETUP=no-proc-sys exec "$@""#,
            concat!(module_path!(), "::inside_launch_reports_a_failed_mount"),
        );
    }

    #[test]
    #[ignore = "runs without /proc/sys via launch_reports_a_failed_mount"]
    fn inside_launch_reports_a_failed_mount() {
        assert_after_setup("no-proc-sys");
        let work = WorkDir::new(&std::env::temp_dir()).unwrap();
        assert_eq!(
            launched(&work, "foreign", &foreign_program(), true),
            Launched::Failed(Step::Mount, Errno::ENOENT)
        );
        let report = probe_in(&work.0).unwrap();
        assert_eq!(report.method, Method::HostTable);
        assert_eq!(
            report.no_instance,
            Some(NoInstance {
                step: InstanceStep::Mount,
                errno: Errno::ENOENT as i32
            })
        );
    }

    #[test]
    fn stale_dirs_of_dead_processes_are_removed_and_no_others() {
        let parent = WorkDir::new(&std::env::temp_dir()).unwrap();
        let dead = {
            let mut c = Command::new("true").spawn().unwrap();
            c.wait().unwrap();
            c.id()
        };
        let me = std::process::id();
        let old = std::time::SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        let made = |name: &str, aged: bool| {
            let p = parent.0.join(name);
            fs::create_dir(&p).unwrap();
            fs::write(p.join("probe"), b"x").unwrap();
            if aged {
                fs::File::open(&p).unwrap().set_modified(old).unwrap();
            }
        };
        made(&format!("t-{dead}-0"), true);
        made(&format!("t-{dead}-1"), false);
        made(&format!("t-{me}-0"), true);
        made("t-x", true);
        made(&format!("other-{dead}"), true);
        fs::write(parent.0.join(format!("t-{dead}.file")), b"").unwrap();
        // Another user's, otherwise stale (issue 10, item 5: never remove
        // what another user made). Only root can give it away.
        let theirs = format!("t-{dead}-theirs");
        made(&theirs, true);
        let root = nix::unistd::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(parent.0.join(&theirs), Some(65534), Some(65534)).unwrap();
        }
        remove_stale_dirs(&parent.0, "t-");
        let mut left: Vec<String> = fs::read_dir(&parent.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            format!("other-{dead}"),
            format!("t-{dead}.file"),
            format!("t-{dead}-1"),
            format!("t-{me}-0"),
            "t-x".to_string(),
        ];
        if root {
            want.push(theirs);
        }
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn decodes_what_starting_a_probe_said() {
        let ended = |raw: i32| decode(Launched::Ended(ExitStatus::from_raw(raw)));
        let failed = |step, errno| decode(Launched::Failed(step, errno));
        assert!(matches!(ended(0), Run::Done(Outcome::Native)));
        assert!(matches!(
            failed(Step::Exec, Errno::ENOEXEC),
            Run::Done(Outcome::NotNative)
        ));
        assert!(
            matches!(failed(Step::Exec, Errno::ENOENT), Run::Done(Outcome::Unknown(m)) if m.contains("ENOENT"))
        );
        assert!(matches!(ended(3 << 8), Run::Done(Outcome::Unknown(m)) if m.contains("status 3")));
        assert!(
            matches!(failed(Step::Mount, Errno::EPERM), Run::NoInstance(m, NoInstance { step: InstanceStep::Mount, errno: 1 }) if m.contains("EPERM"))
        );
        assert!(
            matches!(failed(Step::Unshare, Errno::ENOSPC), Run::NoInstance(m, NoInstance { step: InstanceStep::Unshare, errno: 28 }) if m.contains("ENOSPC"))
        );
        // Killed by SIGILL.
        assert!(matches!(ended(4), Run::Done(Outcome::Unknown(m)) if m.contains("signal 4")));
    }

    #[cfg(target_arch = "x86_64")]
    mod on_x86_64 {
        use super::*;

        #[test]
        fn host_is_x86_64() {
            assert_eq!(host_arch().map(|a| a.name), Some("x86_64"));
        }

        /// Needs a kernel with ia32 emulation on (the default): this
        /// machine's kernel.
        #[test]
        fn native_arches_on_this_machine() {
            let report = probe().unwrap();
            assert_eq!(report.method, Method::PrivateInstance, "{:?}", report.note);
            let names: Vec<&str> = report.native().iter().map(|a| a.name).collect();
            assert_eq!(names, ["x86_64", "i386", "i486"], "{report:#?}");
            let outcome = |n: &str| &report.probes.iter().find(|(a, _)| a.name == n).unwrap().1;
            assert_eq!(outcome("aarch64"), &Outcome::NotNative);
            assert_eq!(outcome("arm"), &Outcome::NotNative);
            assert!(report.probes.iter().all(|(a, _)| a.name != "x86_64"));
            assert_eq!(native_arches().unwrap().len(), 3);
        }

        /// A fake host table for the fallback: a `register` file, `status`
        /// and one entry matching i386 programs.
        fn fake_table(dir: &Path, status: &str) -> Binfmt {
            fs::create_dir_all(dir).unwrap();
            fs::write(dir.join("register"), "").unwrap();
            fs::write(dir.join("status"), status).unwrap();
            let row = arch::by_name("i386").unwrap();
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            fs::write(
                dir.join("qemu-i386"),
                format!(
                    "enabled\ninterpreter /usr/bin/qemu-i386\nflags: F\noffset 0\nmagic {}\nmask {}\n",
                    hex(row.magic),
                    hex(row.mask)
                ),
            )
            .unwrap();
            Binfmt::new(dir)
        }

        // The fallback tests hand `run` a fake host table to check, but the
        // probes they run directly are still looked up by the kernel in the
        // binfmt_misc table of this process: on the host, its entries (say
        // qemu-shim's own aarch64 one) would answer for the CPU. So they run
        // in a private, empty instance, where only the CPU answers.

        #[test]
        fn fallback_skips_what_a_host_entry_answers() {
            run_in_private_instance(concat!(
                module_path!(),
                "::inside_fallback_skips_what_a_host_entry_answers"
            ));
        }

        #[test]
        #[ignore = "runs in a private binfmt_misc instance via fallback_skips_what_a_host_entry_answers"]
        fn inside_fallback_skips_what_a_host_entry_answers() {
            assert_in_private_instance();
            let work = WorkDir::new(&std::env::temp_dir()).unwrap();
            let table = fake_table(&work.0.join("table"), "enabled\n");
            let report = run(&work.0, host_arch(), false, &table).unwrap();
            assert_eq!(report.method, Method::HostTable);
            let outcome = |n: &str| &report.probes.iter().find(|(a, _)| a.name == n).unwrap().1;
            assert!(
                matches!(outcome("i386"), Outcome::Unknown(m) if m.contains("qemu-i386")),
                "{:?}",
                outcome("i386")
            );
            // Not matched by the entry: run directly.
            assert_eq!(outcome("i486"), &Outcome::Native);
            assert_eq!(outcome("aarch64"), &Outcome::NotNative);
            let names: Vec<&str> = report.native().iter().map(|a| a.name).collect();
            assert_eq!(names, ["x86_64", "i486"]);
        }

        #[test]
        fn fallback_runs_everything_when_the_host_table_is_off() {
            run_in_private_instance(concat!(
                module_path!(),
                "::inside_fallback_runs_everything_when_the_host_table_is_off"
            ));
        }

        #[test]
        #[ignore = "runs in a private binfmt_misc instance via fallback_runs_everything_when_the_host_table_is_off"]
        fn inside_fallback_runs_everything_when_the_host_table_is_off() {
            assert_in_private_instance();
            let work = WorkDir::new(&std::env::temp_dir()).unwrap();
            for table in [
                fake_table(&work.0.join("disabled"), "disabled\n"),
                Binfmt::new(work.0.join("unmounted")),
            ] {
                let report = run(&work.0, host_arch(), false, &table).unwrap();
                let names: Vec<&str> = report.native().iter().map(|a| a.name).collect();
                assert_eq!(
                    names,
                    ["x86_64", "i386", "i486"],
                    "{}",
                    table.root().display()
                );
            }
        }
    }

    #[test]
    fn an_unknown_host_reports_nothing_native() {
        let work = WorkDir::new(&std::env::temp_dir()).unwrap();
        let report = run(&work.0, None, true, &Binfmt::new(DEFAULT_ROOT)).unwrap();
        assert_eq!(report.method, Method::HostArchOnly);
        assert!(report.native().is_empty() && report.note.is_some());
    }

    #[test]
    fn probe_files_are_removed() {
        let parent =
            std::env::temp_dir().join(format!("qemu-shim-probe-parent-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        let report = probe_in(&parent);
        let left: Vec<_> = fs::read_dir(&parent).unwrap().collect();
        fs::remove_dir_all(&parent).unwrap();
        report.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn unusable_directory_is_an_error_naming_it() {
        let e = probe_in(Path::new("/proc/no-such-dir")).unwrap_err();
        assert!(e.to_string().contains("/proc/no-such-dir"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
