//! `qemu-shim run`: run one program with qemu-shim registered for every
//! foreign arch, without root and without touching the host's binfmt_misc
//! table, in a private binfmt_misc instance of a new user namespace
//! (Linux ≥ 6.7).
//!
//! # How
//!
//! 1. The interpreter file is built as `install` builds it (same arch
//!    selection, emulator search, per-arch choice from the config file and
//!    linker: [`interp::build`]) into a per-user cache directory,
//!    `$XDG_CACHE_HOME/qemu-shim` or `~/.cache/qemu-shim`, and reused while
//!    neither the interpreter binary nor any emulator changed (paths, sizes
//!    and modification times, each emulator's command line, the CLI version
//!    and the table flags are the key, kept in a stamp file beside it). The
//!    emulators are carried, as install's default; pre-relocated for an
//!    address drawn when the file is first built and kept across rebuilds.
//!    The cache directory and every directory above it must be safe from
//!    other users ([`userdir`]: the caller's, or root's above it, and not
//!    writable by others), the caller's uid is part of the key, and the
//!    stamp's temporary file is created, never opened through a planted
//!    link: root given a user's HOME (`sudo -E`) must not run a file that
//!    user put there (issue 10, item 2).
//! 2. This process unshares a user and a mount namespace, maps the caller's
//!    uid and gid to root there (the one mapping an unprivileged process may
//!    write), mounts a fresh binfmt_misc instance on
//!    `/proc/sys/fs/binfmt_misc` and registers one entry per arch with the
//!    lines `install` writes (`binfmt::register_line` in the registry) and its
//!    default flags minus `C`: in a namespace that maps one uid, no program
//!    can change credentials, so `C` would buy nothing.
//! 3. It unshares a second user namespace nested in the first, mapping the
//!    caller's own uid and gid back, so the program runs as the caller, not
//!    as a namespace root (files show their real owners, programs that
//!    refuse root run). The kernel looks binfmt_misc entries up in the
//!    nearest ancestor namespace that mounted an instance: the first one.
//! 4. It execs the program in place. No parent waits: the exit status, and
//!    death by a signal (a shell reports 128+N), reach the caller unchanged,
//!    as do signals sent to it.
//!
//! # Why no fork or re-exec
//!
//! A multithreaded process cannot unshare a user namespace (`EINVAL`). The
//! CLI never starts a thread (clap does not; the native probe runs its
//! launchers as child processes), so the unshare happens in this process,
//! after the cache is ready; [`single_threaded`] checks it first so a
//! future thread shows up as a clear error, not as a puzzling `EINVAL`.
//!
//! # Where it cannot work
//!
//! A kernel before 6.7 (binfmt_misc cannot be mounted in a user namespace),
//! user namespaces disabled (`user.max_user_namespaces=0`, Debian's
//! `kernel.unprivileged_userns_clone=0`), or restricted by AppArmor (Ubuntu
//! 23.10 and later, `kernel.apparmor_restrict_unprivileged_userns=1`: the
//! unshare succeeds, but the namespace holds no capability, so writing the
//! uid map or mounting fails). Each gets one line saying which, and that an
//! administrator's `qemu-shim install` is the way out.
//!
//! In a container it works where the engine lets the container create user
//! namespaces and mount in them (podman's default seccomp profile does;
//! docker's allows `unshare` and `mount` only with CAP_SYS_ADMIN). What an
//! engine forbids is named in the one line: a seccomp filter that refuses
//! `unshare` or `mount`, or root without CAP_SETFCAP, which Linux >= 5.12
//! requires to map uid 0 into a new user namespace (`--cap-drop all`).

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use qemu_shim_registry::arch::Arch;
use qemu_shim_registry::binfmt::{Binfmt, DEFAULT_ROOT};
use qemu_shim_registry::probe::InstanceStep;

use crate::config;
use crate::emulator::Search;
use crate::entries;
use crate::error::{Error, Result};
use crate::interp::{self, Spec};
use crate::select;
use crate::userdir;

/// Exit code of `run` when qemu-shim itself fails before the program
/// starts (as `env`, `chroot` and `timeout` use 125), so it is not taken
/// for the program's own status.
pub const EXIT_RUN_FAILED: u8 = 125;
/// Exit code when the program cannot be executed (found, not runnable).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the program is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Name of the stamp file beside the cached interpreter file.
const STAMP: &str = "qemu-shim-interp.stamp";
/// First line of the stamp: bump when its meaning changes.
const STAMP_VERSION: &str = "qemu-shim run cache 3";

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--emulator-dir`; empty: the default search path.
    pub emulator_dirs: Vec<PathBuf>,
    /// `--interpreter`; `None`: next to this program.
    pub interpreter: Option<PathBuf>,
    /// `--cache-dir`; `None`: `$XDG_CACHE_HOME/qemu-shim` or
    /// `$HOME/.cache/qemu-shim`.
    pub cache_dir: Option<PathBuf>,
    /// `--config`; `None`: [`config::DEFAULT_PATH`] if it exists.
    pub config: Option<PathBuf>,
    /// `--arch`: the arches to register; empty: the program's own (from
    /// its ELF header), or every foreign arch when it is not a foreign
    /// program (a native one, a script: it may start any).
    pub arches: Vec<String>,
    /// The program and its arguments (at least the program).
    pub command: Vec<OsString>,
}

/// Runs the program; returns only when it could not be started, with the
/// error and the exit code to leave with.
pub fn run(opts: &Options) -> (Error, u8) {
    match prepare_and_exec(opts) {
        Ok(never) => match never {},
        Err(failure) => failure,
    }
}

fn prepare_and_exec(opts: &Options) -> std::result::Result<std::convert::Infallible, (Error, u8)> {
    let setup = |e: Error| (e, EXIT_RUN_FAILED);
    let (prog, args) = opts
        .command
        .split_first()
        .ok_or_else(|| setup(Error::new("no program to run")))?;
    check_kernel(&kernel_release()).map_err(setup)?;

    // 1. What to register, and the interpreter file for it.
    let native = native_arches().map_err(setup)?;
    let search = Search::new(&opts.emulator_dirs).map_err(setup)?;
    // The administrator's per-arch emulator choice applies here as for
    // install (the default file is root's; --config names another).
    let cfg =
        config::load(opts.config.as_deref(), nix::unistd::geteuid().as_raw()).map_err(setup)?;
    // Only what the program needs goes into the cache (issue 18, item 2).
    let named = wanted_arches(&opts.arches, prog, &native).map_err(setup)?;
    let (found, plain) =
        find_emulators(opts, prog, &cfg, &search, &native, named.as_deref()).map_err(setup)?;
    let source = match &opts.interpreter {
        Some(p) => p.clone(),
        None => interp::default_source().map_err(setup)?,
    };
    let dir = match &opts.cache_dir {
        Some(d) => d.clone(),
        None => default_cache_dir().map_err(setup)?,
    };
    let set = named.as_deref().map(set_name);
    // The administrator's CPU models (config `cpu`, issue 15), as install
    // writes them.
    let arches: Vec<&str> = found.iter().map(|(a, _)| a.name).collect();
    let cpu = cfg.cpu_models(&arches);
    let cached =
        cached_interpreter(&dir, set.as_deref(), &source, &found, &plain, &cpu).map_err(setup)?;

    // 2. The private namespace and its binfmt_misc instance.
    single_threaded().map_err(setup)?;
    enter_private_instance().map_err(setup)?;
    register_all(&cached, &found).map_err(setup)?;
    // 3. Back to the caller's own uid and gid for the program.
    map_back_to_caller().map_err(setup)?;

    // 4. The program, in place.
    Err(exec_program(prog, args))
}

/// The arches this machine runs natively. The probe's launchers make the
/// private instance run needs, the same way, with the same credentials:
/// where they could not, neither can run. Said now, with the step that
/// failed: the probe's fallback answer comes from a table a container does
/// not see, where the host's entries make every arch look native.
fn native_arches() -> Result<Vec<&'static Arch>> {
    let report = select::native_report()?;
    if let Some(failed) = report.no_instance {
        let step = match failed.step {
            InstanceStep::Unshare => Step::Unshare,
            InstanceStep::Mount => Step::Mount,
        };
        let restrictions = Restrictions::read(nix::unistd::getuid());
        return Err(namespace_error(
            step,
            Errno::from_raw(failed.errno),
            &restrictions,
        ));
    }
    Ok(report.native())
}

/// Each arch to register and its emulator.
type Emulators = Vec<(&'static Arch, PathBuf)>;

/// The emulator of each arch to register (`named`, else every foreign
/// one), and the arches whose emulator takes the plain command line. An
/// arch named (or the program's own) without an emulator is an error; so
/// is finding none at all.
fn find_emulators(
    opts: &Options,
    prog: &std::ffi::OsStr,
    cfg: &config::Config,
    search: &Search,
    native: &[&'static Arch],
    named: Option<&[&'static Arch]>,
) -> Result<(Emulators, Vec<String>)> {
    let host = qemu_shim_registry::probe::host_arch().map(|a| a.name);
    let mut found: Vec<(&'static Arch, PathBuf)> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    let arches = match named {
        Some(n) => n.to_vec(),
        None => select::foreign(native),
    };
    for a in arches {
        match cfg.emulator(a, search, host)? {
            Some((p, is_plain)) => {
                if is_plain {
                    plain.push(a.name.to_string());
                }
                found.push((a, p));
            }
            None => missing.push(a),
        }
    }
    if let (Some(_), [a, ..]) = (named, missing.as_slice()) {
        let how = if opts.arches.is_empty() {
            format!(" (the arch of {})", Path::new(prog).display())
        } else {
            String::new()
        };
        return Err(Error::new(format!(
            "no emulator for {}{how}: {}",
            a.name,
            crate::emulator::looked_for(search, a)
        ))
        .hint(search.hint()));
    }
    if found.is_empty() {
        return Err(Error::new(format!(
            "no emulator found for any foreign arch in {}",
            search
                .dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint(search.hint()));
    }
    Ok((found, plain))
}

/// Execs the program in place (`execvp`); returns only when that failed:
/// the error, and 127 (not found) or 126 (cannot be run).
fn exec_program(prog: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> (Error, u8) {
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes());
    let Ok(prog_c) = c(prog) else {
        return (
            Error::new("the program's name contains a NUL byte"),
            EXIT_RUN_FAILED,
        );
    };
    let mut argv = vec![prog_c.clone()];
    for a in args {
        match c(a) {
            Ok(a) => argv.push(a),
            Err(_) => {
                return (
                    Error::new("an argument contains a NUL byte"),
                    EXIT_RUN_FAILED,
                )
            }
        }
    }
    let e = match nix::unistd::execvp(&prog_c, &argv) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = if e == Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXECUTE
    };
    // execve says EACCES for a directory: name what it is (a path with a
    // slash is the one exec'd; a bare name was searched for in PATH).
    let is_dir = e == Errno::EACCES
        && prog.as_bytes().contains(&b'/')
        && fs::metadata(prog).is_ok_and(|m| m.is_dir());
    let reason = if is_dir {
        "is a directory".to_string()
    } else {
        crate::error::io_reason(&io::Error::from(e))
    };
    (
        Error::new(format!(
            "cannot run {}: {reason}",
            Path::new(prog).display()
        )),
        code,
    )
}

/// The arches `run` registers: those named with `--arch` (`None`: all,
/// as `all` says), else the program's own arch when it is a foreign ELF
/// program, else `None`: every foreign arch (a native program or a script
/// may start programs of any arch).
fn wanted_arches(
    named: &[String],
    prog: &std::ffi::OsStr,
    native: &[&'static Arch],
) -> Result<Option<Vec<&'static Arch>>> {
    if !named.is_empty() {
        return match select::names(named)? {
            Some(names) => select::resolve_foreign(&names, native).map(Some),
            None => Ok(None),
        };
    }
    Ok(program_arch(prog)
        .filter(|a| !select::is_in(a, native))
        .map(|a| vec![a]))
}

/// The arch of the program `run` was asked to start, from its ELF header:
/// `prog` itself when it names a path, else the first executable of that
/// name in PATH, as execvp finds it. `None` when it cannot be read or is
/// not ELF for an arch in the table.
fn program_arch(prog: &std::ffi::OsStr) -> Option<&'static Arch> {
    use std::io::Read;
    let path = if prog.as_bytes().contains(&b'/') {
        PathBuf::from(prog)
    } else {
        let dirs = std::env::var_os("PATH")?;
        std::env::split_paths(&dirs)
            .map(|d| d.join(prog))
            .find(|p| crate::emulator::is_executable_file(p))?
    };
    // What binfmt_misc sees: the first 256 bytes (BINPRM_BUF_SIZE).
    let mut head = Vec::with_capacity(256);
    fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_end(&mut head)
        .ok()?;
    qemu_shim_registry::arch::classify(&head)
}

/// The cached file's name suffix for an arch set: the names joined with
/// `+` (`aarch64+s390x`), or, for a set too long for a file name, a hash of
/// that.
fn set_name(arches: &[&'static Arch]) -> String {
    let joined = arches.iter().map(|a| a.name).collect::<Vec<_>>().join("+");
    if joined.len() <= 100 {
        joined
    } else {
        let hash = crate::sources::sha256_hex(joined.as_bytes());
        format!("set-{}", &hash[..16])
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Refuses a kernel that cannot mount binfmt_misc in a user namespace
/// (before 6.7). A release that cannot be parsed is let through: the mount
/// will tell.
fn check_kernel(release: &str) -> Result<()> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|s| s.parse::<u32>().ok());
    let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
    if let (Some(major), Some(minor)) = (major, minor) {
        if (major, minor) < (6, 7) {
            return Err(Error::new(format!(
                "qemu-shim run needs Linux 6.7 or later (a private binfmt_misc instance in a user namespace); this kernel is {release}"
            ))
            .hint(NEEDS_ADMIN));
        }
    }
    Ok(())
}

const NEEDS_ADMIN: &str =
    "an administrator can register qemu-shim for every user with `qemu-shim install`";

/// `$XDG_CACHE_HOME/qemu-shim`, else `$HOME/.cache/qemu-shim`.
fn default_cache_dir() -> Result<PathBuf> {
    let abs = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = abs(std::env::var_os("XDG_CACHE_HOME")) {
        return Ok(x.join("qemu-shim"));
    }
    if let Some(h) = abs(std::env::var_os("HOME")) {
        return Ok(h.join(".cache").join("qemu-shim"));
    }
    Err(
        Error::new("no cache directory: neither XDG_CACHE_HOME nor HOME is an absolute path")
            .hint("set HOME, or pass --cache-dir"),
    )
}

/// What the cached interpreter file was built from: the stamp's key. Any
/// change to the interpreter binary, an emulator (replaced by an upgrade,
/// added, removed), the CLI or the running kernel's table flags gives a
/// new key and a rebuild. So does another caller (`uid`): a cache is only
/// ever its own user's, even where the directory checks would let another
/// uid's stamp through.
fn cache_key(
    uid: u32,
    source: &Path,
    found: &[(&'static Arch, PathBuf)],
    plain: &[String],
    cpu: &[(String, String)],
    flags: u16,
) -> Result<String> {
    let stat = |p: &Path| -> Result<String> {
        let m = fs::metadata(p).map_err(|e| Error::io("cannot read", p, &e))?;
        Ok(format!(
            "{} {} {}.{:09}",
            p.display(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ))
    };
    let mut key = format!(
        "{STAMP_VERSION}\nuid {uid}\ncli {}\nflags {flags}\ninterpreter {}\n",
        env!("CARGO_PKG_VERSION"),
        stat(source)?
    );
    for (a, p) in found {
        let how = if plain.iter().any(|n| n == a.name) {
            "plain"
        } else {
            "qemu"
        };
        key.push_str(&format!("emulator {} {how} {}\n", a.name, stat(p)?));
    }
    for (a, model) in cpu {
        key.push_str(&format!("cpu {a} {model}\n"));
    }
    Ok(key)
}

/// The cached interpreter file, ready to register.
#[derive(Debug, PartialEq, Eq)]
struct Cached {
    path: PathBuf,
    /// Arches whose emulator the file starts by path (not carried).
    by_path: Vec<String>,
}

/// The cached interpreter file in `dir` for `found`, built now unless the
/// stamp says the file there was built from the same inputs. Each arch set
/// has its own file (`set`: its name, [`set_name`]; `None`: every foreign
/// arch), so runs of programs of different arches do not rebuild each
/// other's, and a user's cache holds the emulators their programs use.
fn cached_interpreter(
    dir: &Path,
    set: Option<&str>,
    source: &Path,
    found: &[(&'static Arch, PathBuf)],
    plain: &[String],
    cpu: &[(String, String)],
) -> Result<Cached> {
    let uid = nix::unistd::geteuid().as_raw();
    let flags = interp::flags_for_running_kernel();
    let key = cache_key(uid, source, found, plain, cpu, flags).map_err(|e| {
        if !source.exists() {
            e.hint("build it with `cargo build --release --workspace`, or pass --interpreter")
        } else {
            e
        }
    })?;
    // Checked (made if missing) before anything in it is read; from here
    // on the resolved path, which no other user can change.
    let dir = &cache_dir_checked(dir, uid)?;
    let (path, stamp_path) = match set {
        None => (dir.join(interp::FILE_NAME), dir.join(STAMP)),
        Some(set) => (
            dir.join(format!("{}.{set}", interp::FILE_NAME)),
            dir.join(format!("{}.{set}.stamp", interp::FILE_NAME)),
        ),
    };
    if let Ok(stamp) = fs::read_to_string(&stamp_path) {
        if let Some(by_path) = stamp_matches(&stamp, &key) {
            if path.is_file() {
                return Ok(Cached { path, by_path });
            }
        }
    }
    // Rebuild. A pre-relocated file keeps its address across rebuilds, as
    // with `install`.
    let prelink_base = match interp::read_spec_file(&path)
        .ok()
        .and_then(|c| c.prelink_base)
    {
        Some(b) => b,
        None => interp::random_base()?,
    };
    let shim =
        fs::read(source).map_err(|e| Error::io("cannot read the interpreter", source, &e))?;
    interp::region(&shim).map_err(|e| e.context(format!("interpreter {}", source.display())))?;
    let config = Spec {
        target: interp::target(),
        flags,
        carry: true,
        prelink_base: Some(prelink_base),
        emulators: found
            .iter()
            .map(|(a, p)| (a.name.to_string(), p.clone()))
            .collect(),
        plain: plain.to_vec(),
        cpu: cpu.to_vec(),
    };
    let built = interp::prepare(&shim, &config)
        .map_err(|e| e.context(format!("interpreter {}", source.display())))?;
    // The stamp goes first: a run killed between the two writes leaves a
    // stamp that no longer matches the file's inputs only if the inputs
    // changed, and then the next run rebuilds anyway; the file itself is
    // replaced whole (written beside it, renamed).
    let _ = fs::remove_file(&stamp_path);
    crate::files::write_file_by(&path, 0o755, &mut |f| {
        built.write_file(f, &path, &mut |_| {})?;
        Ok(())
    })
    .map_err(cache_hint)?;
    let by_path: Vec<String> = built.by_path.iter().map(|(a, _)| a.clone()).collect();
    let mut stamp = key;
    stamp.push_str("--\n");
    for a in &by_path {
        stamp.push_str(&format!("by-path {a}\n"));
    }
    write_stamp(&stamp_path, &stamp).map_err(cache_hint)?;
    Ok(Cached { path, by_path })
}

/// The by-path arches recorded in `stamp`, if its key is `key`.
fn stamp_matches(stamp: &str, key: &str) -> Option<Vec<String>> {
    let rest = stamp.strip_prefix(key)?.strip_prefix("--\n")?;
    rest.lines()
        .map(|l| l.strip_prefix("by-path ").map(str::to_string))
        .collect()
}

/// [`userdir::private_dir`] for the cache, its refusal naming the cache
/// directory and the way out.
fn cache_dir_checked(dir: &Path, uid: u32) -> Result<PathBuf> {
    userdir::private_dir(dir, uid)
        .map_err(|e| cache_hint(e.context(format!("cache directory {}", dir.display()))))
}

/// The way out of a cache directory that does not work.
const CACHE_HINT: &str = "pass --cache-dir DIR or set XDG_CACHE_HOME to a directory of your own; sudo -E hands root the caller's HOME, sudo -H does not";

/// `e` with [`CACHE_HINT`] where it has no hint or the I/O errors' "run as
/// root": run is the command for users without root, whose fix is another
/// cache directory (issue 18, item 5).
fn cache_hint(e: Error) -> Error {
    match e.hint_text() {
        None | Some("run as root") => e.hint(CACHE_HINT),
        Some(_) => e,
    }
}

/// Writes the stamp beside its final name, then renames it over. The
/// temporary file is created anew in the checked cache directory, never
/// opened through whatever is at its name: run may be root's.
fn write_stamp(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let create = || userdir::create_new(&tmp, 0o644);
    let written = (|| -> io::Result<()> {
        let mut f = match create() {
            // Only the caller can have left something at the name (the
            // directory is theirs alone): a killed run of the same pid.
            // Unlinked, not followed, and made again.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create()?
            }
            r => r?,
        };
        f.write_all(text.as_bytes())?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot write", path, &e)
    })
}

/// Errors out unless this process has exactly one thread (see the module
/// doc: a multithreaded process cannot unshare a user namespace).
fn single_threaded() -> Result<()> {
    let n = fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if n > 1 {
        return Err(Error::new(format!(
            "internal error: qemu-shim run has {n} threads and cannot enter a user namespace"
        )));
    }
    Ok(())
}

/// Why a step of entering the private instance failed, as one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unshare,
    UidMap,
    Mount,
}

/// What can keep this process from entering a user namespace and mounting
/// in it: the sysctls, and what a container engine imposes. Read before the
/// unshare: in the new namespace the capability sets read as full.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Restrictions {
    apparmor_restrict: Option<String>,
    unprivileged_clone: Option<String>,
    max_user_namespaces: Option<String>,
    /// A seccomp filter is attached (`Seccomp: 2` in /proc/self/status):
    /// container engines attach one by default.
    seccomp_filter: bool,
    /// The caller is uid 0 without CAP_SETFCAP, so it may not map uid 0
    /// into a new user namespace (Linux >= 5.12, `verify_root_map`).
    root_without_setfcap: bool,
    /// Runs in a container ([`root::in_container`]): the engine is then
    /// what imposes the filter or dropped the capability.
    container: bool,
}

/// CAP_SETFCAP's bit in the capability sets (linux/capability.h).
const CAP_SETFCAP: u32 = 31;

impl Restrictions {
    fn read(uid: nix::unistd::Uid) -> Restrictions {
        let r = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let status = r("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let cap_eff = field("CapEff").and_then(|v| u64::from_str_radix(v, 16).ok());
        Restrictions {
            apparmor_restrict: r("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            unprivileged_clone: r("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: r("/proc/sys/user/max_user_namespaces"),
            seccomp_filter: field("Seccomp") == Some("2"),
            root_without_setfcap: uid.is_root()
                && cap_eff.is_some_and(|c| c & (1 << CAP_SETFCAP) == 0),
            container: crate::root::in_container(),
        }
    }

    /// Who imposes the restrictions, for the message.
    fn whose(&self) -> &'static str {
        if self.container {
            "the container's"
        } else {
            "this process's"
        }
    }
}

/// The one line for a failed step.
fn namespace_error(step: Step, errno: Errno, s: &Restrictions) -> Error {
    let reason = crate::error::io_reason(&io::Error::from(errno));
    let apparmor = s.apparmor_restrict.as_deref() == Some("1");
    // A filter's refusal: ENOSYS comes from no kernel that has the call (a
    // seccomp profile's default errno, podman's among them); EPERM is what
    // docker's profile returns.
    let filtered = s.seccomp_filter && matches!(errno, Errno::ENOSYS | Errno::EPERM);
    let whose = s.whose();
    let msg = match step {
        Step::Unshare if filtered && errno == Errno::ENOSYS => {
            format!("{whose} seccomp filter forbids creating user namespaces (unshare: {reason})")
        }
        Step::Unshare if s.max_user_namespaces.as_deref() == Some("0") || errno == Errno::ENOSPC => {
            format!("user namespaces are disabled here (user.max_user_namespaces is {}): cannot unshare ({reason})",
                s.max_user_namespaces.as_deref().unwrap_or("?"))
        }
        Step::Unshare if s.unprivileged_clone.as_deref() == Some("0") => format!(
            "unprivileged user namespaces are disabled here (kernel.unprivileged_userns_clone=0): cannot unshare ({reason})"
        ),
        Step::Unshare if filtered => {
            format!("{whose} seccomp filter forbids creating user namespaces (unshare: {reason})")
        }
        Step::Unshare => format!("cannot create a user namespace: {reason}"),
        Step::UidMap | Step::Mount if apparmor => format!(
            "AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns=1): the namespace was created but {} failed ({reason})",
            if step == Step::UidMap { "writing its uid map" } else { "mounting binfmt_misc in it" }
        ),
        Step::UidMap if s.root_without_setfcap && errno == Errno::EPERM => format!(
            "mapping root into a user namespace needs CAP_SETFCAP, which {} does not have (writing the uid map: {reason})",
            if s.container { "the container" } else { "this process" }
        ),
        Step::UidMap => format!("cannot map this user into a new user namespace: {reason}"),
        Step::Mount if errno == Errno::ENOENT => format!(
            "cannot mount a private binfmt_misc: {DEFAULT_ROOT} does not exist (binfmt_misc is not built or loaded in this kernel)"
        ),
        // The kernel (>= 6.7, checked first) allows this mount: a filter
        // that refuses it is the likely cause.
        Step::Mount if filtered => {
            format!("{whose} seccomp filter forbids mount (mounting a private binfmt_misc: {reason})")
        }
        Step::Mount => format!(
            "cannot mount a private binfmt_misc in a user namespace: {reason} (it needs Linux 6.7 or later, without restrictions on user namespaces)"
        ),
    };
    let container_fix = match step {
        _ if !s.container => None,
        Step::Unshare | Step::Mount if filtered => Some(
            "run the container with --security-opt seccomp=unconfined (docker: or --cap-add SYS_ADMIN)",
        ),
        Step::UidMap if s.root_without_setfcap => {
            Some("run the container with --cap-add SETFCAP, or as another user (--user)")
        }
        _ => None,
    };
    match container_fix {
        Some(fix) => Error::new(msg).hint(format!("{fix}; or {NEEDS_ADMIN} on the host")),
        None => Error::new(msg).hint(NEEDS_ADMIN),
    }
}

/// Unshares a user and a mount namespace, maps the caller to its root and
/// mounts a fresh binfmt_misc instance on the default path.
///
/// Never the inherited one: the new mount namespace starts with the
/// caller's mounts, so where the host has binfmt_misc mounted the default
/// path shows the host's instance until this mounts over it. The mount is
/// unconditional (a failed one is an error, not a reason to use what is
/// there), and the instance must then be empty: instances are per user
/// namespace, and this one was created by the unshare above.
fn enter_private_instance() -> Result<()> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let restrictions = Restrictions::read(uid);
    let fail = |step, e| namespace_error(step, e, &restrictions);
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| fail(Step::Unshare, e))?;
    write_maps(&format!("0 {uid} 1"), &format!("0 {gid} 1")).map_err(|e| fail(Step::UidMap, e))?;
    nix::mount::mount(
        Some("binfmt_misc"),
        DEFAULT_ROOT,
        Some("binfmt_misc"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| fail(Step::Mount, e))?;
    require_empty(&Binfmt::new(DEFAULT_ROOT))
}

/// Errors out unless `table`, the instance just mounted, holds no entry:
/// one that does is not this namespace's new instance.
fn require_empty(table: &Binfmt) -> Result<()> {
    let held = table.list().map_err(|e| {
        Error::new(format!(
            "cannot read the private binfmt_misc: {}",
            e.message()
        ))
    })?;
    match held.first() {
        None => Ok(()),
        Some((name, _)) => Err(Error::new(format!(
            "the binfmt_misc instance just mounted at {} holds {name:?}: it is not a new, private one; refusing to register in it",
            table.root().display()
        ))),
    }
}

/// Writes this process's uid and gid maps (setgroups denied first, which
/// an unprivileged gid map requires).
fn write_maps(uid_map: &str, gid_map: &str) -> std::result::Result<(), Errno> {
    let w = |p: &str, s: &str| {
        fs::write(p, s).map_err(|e| e.raw_os_error().map_or(Errno::EPERM, Errno::from_raw))
    };
    // Already denied in a parent namespace: the file then refuses "deny"
    // again only on old kernels; the gid map decides.
    let _ = w("/proc/self/setgroups", "deny");
    w("/proc/self/uid_map", uid_map)?;
    w("/proc/self/gid_map", gid_map)
}

/// Registers every arch of `found` in the private instance, pointing at
/// the cached interpreter file.
fn register_all(cached: &Cached, found: &[(&'static Arch, PathBuf)]) -> Result<()> {
    let bf = Binfmt::new(DEFAULT_ROOT);
    let path = cached.path.to_str().ok_or_else(|| {
        Error::new(format!(
            "cache directory {} is not UTF-8",
            cached.path.display()
        ))
        .hint("pass --cache-dir")
    })?;
    for (a, _) in found {
        let carried = !cached.by_path.iter().any(|n| n == a.name);
        let flags = entries::entry_flags(carried, true, false);
        let line = qemu_shim_registry::binfmt::register_line(a, path, flags);
        bf.register(&line).map_err(|e| {
            // The registry's own hint (run as root…) is for the host's
            // table: this one is the caller's.
            Error::new(format!(
                "cannot register {} in the private binfmt_misc: {}",
                line.name,
                e.message()
            ))
                .hint("the cache directory must be on a file system that allows exec (set XDG_CACHE_HOME or pass --cache-dir)")
        })?;
    }
    Ok(())
}

/// Enters a user namespace nested in the first, mapping the caller's own
/// uid and gid onto its root there, so the program runs as the caller.
fn map_back_to_caller() -> Result<()> {
    // Read before the unshare: in the new namespace, until the map is
    // written, every id reads as the overflow id.
    let outer_uid = nix::unistd::getuid();
    let outer_gid = nix::unistd::getgid();
    let (uid, gid) = caller_ids();
    let fail = |what: &str, e: Errno| {
        Error::new(format!(
            "cannot map back to uid {uid}: {what}: {}",
            crate::error::io_reason(&io::Error::from(e))
        ))
    };
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| fail("unshare", e))?;
    write_maps(
        &format!("{uid} {outer_uid} 1"),
        &format!("{gid} {outer_gid} 1"),
    )
    .map_err(|e| fail("uid map", e))
}

/// The caller's uid and gid outside both namespaces, read from this
/// process's first map (`0 UID 1`).
fn caller_ids() -> (u32, u32) {
    let first = |p: &str| -> u32 {
        fs::read_to_string(p)
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u32>().ok())
            })
            .unwrap_or(65534)
    };
    (first("/proc/self/uid_map"), first("/proc/self/gid_map"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_6_7_are_refused_with_the_reason() {
        let e = check_kernel("6.6.30-amd64").unwrap_err();
        assert!(e.message().contains("Linux 6.7 or later"), "{e}");
        assert!(e.message().contains("6.6.30-amd64"), "{e}");
        assert!(e.hint_text().unwrap().contains("qemu-shim install"), "{e}");
        assert!(check_kernel("5.15.0").is_err());
        assert!(check_kernel("6.7.0").is_ok());
        assert!(check_kernel("6.18.1-cloud").is_ok());
        assert!(check_kernel("7.0").is_ok());
        assert!(check_kernel("weird").is_ok());
    }

    #[test]
    fn apparmor_restriction_is_named_when_the_map_or_mount_fails() {
        let s = Restrictions {
            apparmor_restrict: Some("1".into()),
            ..Default::default()
        };
        for step in [Step::UidMap, Step::Mount] {
            let e = namespace_error(step, Errno::EPERM, &s);
            assert!(e.message().contains("AppArmor"), "{e}");
            assert!(
                e.message()
                    .contains("apparmor_restrict_unprivileged_userns=1"),
                "{e}"
            );
        }
        let e = namespace_error(Step::UidMap, Errno::EPERM, &Restrictions::default());
        assert!(!e.message().contains("AppArmor"), "{e}");
    }

    #[test]
    fn disabled_user_namespaces_are_named() {
        let s = Restrictions {
            max_user_namespaces: Some("0".into()),
            ..Default::default()
        };
        let e = namespace_error(Step::Unshare, Errno::ENOSPC, &s);
        assert!(e.message().contains("user namespaces are disabled"), "{e}");
        let s = Restrictions {
            unprivileged_clone: Some("0".into()),
            ..Default::default()
        };
        let e = namespace_error(Step::Unshare, Errno::EPERM, &s);
        assert!(e.message().contains("unprivileged_userns_clone=0"), "{e}");
    }

    /// Issue 12, item 3: in a container, the one line names what the
    /// engine forbids and how to allow it.
    #[test]
    fn a_container_engines_seccomp_filter_is_named() {
        let s = Restrictions {
            seccomp_filter: true,
            container: true,
            ..Default::default()
        };
        // podman's profile answers ENOSYS, docker's EPERM.
        for errno in [Errno::ENOSYS, Errno::EPERM] {
            let e = namespace_error(Step::Unshare, errno, &s);
            assert!(
                e.message().starts_with(
                    "the container's seccomp filter forbids creating user namespaces (unshare: "
                ),
                "{e}"
            );
            assert!(
                e.hint_text()
                    .unwrap()
                    .contains("--security-opt seccomp=unconfined"),
                "{e}"
            );
            let e = namespace_error(Step::Mount, errno, &s);
            assert!(
                e.message()
                    .starts_with("the container's seccomp filter forbids mount"),
                "{e}"
            );
        }
        // Outside a container: the process's filter, the admin's way out.
        let s = Restrictions {
            seccomp_filter: true,
            ..Default::default()
        };
        let e = namespace_error(Step::Unshare, Errno::EPERM, &s);
        assert!(
            e.message()
                .starts_with("this process's seccomp filter forbids"),
            "{e}"
        );
        assert!(!e.hint_text().unwrap().contains("--security-opt"), "{e}");
        // No filter, or another errno: not blamed on one.
        let e = namespace_error(Step::Unshare, Errno::EPERM, &Restrictions::default());
        assert!(!e.message().contains("seccomp"), "{e}");
        let s = Restrictions {
            seccomp_filter: true,
            max_user_namespaces: Some("0".into()),
            ..Default::default()
        };
        let e = namespace_error(Step::Unshare, Errno::ENOSPC, &s);
        assert!(e.message().contains("user namespaces are disabled"), "{e}");
    }

    /// Root in a container started with `--cap-drop all` (or without
    /// SETFCAP) cannot map uid 0 into a user namespace.
    #[test]
    fn root_without_setfcap_is_named() {
        let s = Restrictions {
            root_without_setfcap: true,
            container: true,
            ..Default::default()
        };
        let e = namespace_error(Step::UidMap, Errno::EPERM, &s);
        assert!(
            e.message()
                .starts_with("mapping root into a user namespace needs CAP_SETFCAP, which the container does not have"),
            "{e}"
        );
        assert!(e.hint_text().unwrap().contains("--cap-add SETFCAP"), "{e}");
        let e = namespace_error(Step::UidMap, Errno::EPERM, &Restrictions::default());
        assert!(!e.message().contains("CAP_SETFCAP"), "{e}");
    }

    #[test]
    fn the_restrictions_are_read_from_proc_self_status() {
        // The test runs without a seccomp filter and as whoever it runs as:
        // only what can be known for certain here is asserted.
        let r = Restrictions::read(nix::unistd::Uid::from_raw(1000));
        assert!(!r.root_without_setfcap, "not root: {r:?}");
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(
            r.seccomp_filter,
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
            "{r:?}"
        );
    }

    #[test]
    fn an_instance_holding_entries_is_not_taken_for_the_private_one() {
        let d = crate::testutil::TempDir::new();
        fs::write(d.path().join("register"), "").unwrap();
        fs::write(d.path().join("status"), "enabled\n").unwrap();
        let table = Binfmt::new(d.path());
        require_empty(&table).unwrap();
        fs::write(
            d.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\nmagic 7f454c46\nmask ffffffff\n",
        )
        .unwrap();
        let e = require_empty(&table).unwrap_err();
        assert!(e.message().contains("\"qemu-aarch64\""), "{e}");
        assert!(e.message().contains("not a new, private one"), "{e}");
    }

    #[test]
    fn stamp_matches_only_its_own_key() {
        let key = "k1\nk2\n";
        let stamp = format!("{key}--\nby-path hexagon\n");
        assert_eq!(
            stamp_matches(&stamp, key),
            Some(vec!["hexagon".to_string()])
        );
        assert_eq!(stamp_matches(&format!("{key}--\n"), key), Some(vec![]));
        assert_eq!(stamp_matches(&stamp, "k1\nk3\n"), None);
        assert_eq!(stamp_matches(key, key), None, "no separator: a torn stamp");
        assert_eq!(stamp_matches(&format!("{key}--\ngarbage\n"), key), None);
    }

    /// Issue 10, item 2: the stamp's temporary file is created, never
    /// opened through what is already at its name (root writing a user's
    /// cache would otherwise write wherever a planted symlink points).
    #[test]
    fn the_stamp_is_not_written_through_a_symlink() {
        let d = crate::testutil::TempDir::new();
        let victim = d.path().join("victim");
        fs::write(&victim, "root's own\n").unwrap();
        let stamp = d.path().join(STAMP);
        let tmp = stamp.with_extension(format!("{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_stamp(&stamp, "the stamp\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root's own\n");
        assert_eq!(fs::read_to_string(&stamp).unwrap(), "the stamp\n");
        assert!(fs::symlink_metadata(&tmp).is_err(), "temporary file left");
    }

    /// The cached interpreter file is written by install's writer: its
    /// temporary name must not be written through a planted link either
    /// (`O_CREAT|O_EXCL` refuses a link at the name).
    #[test]
    fn the_cached_file_is_not_written_through_a_symlink() {
        let d = crate::testutil::TempDir::new();
        let victim = d.path().join("victim");
        fs::write(&victim, "root's own\n").unwrap();
        let dest = d.path().join(interp::FILE_NAME);
        let tmp = d
            .path()
            .join(format!(".{}.{}.tmp", interp::FILE_NAME, std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let _ = crate::files::write_file(&dest, b"image");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root's own\n");
    }

    #[test]
    fn cache_key_changes_with_an_emulator() {
        let d = crate::testutil::TempDir::new();
        let src = d.path().join("interp");
        let emu = d.path().join("qemu-aarch64");
        fs::write(&src, b"x").unwrap();
        fs::write(&emu, b"y").unwrap();
        let a = qemu_shim_registry::arch::by_name("aarch64").unwrap();
        let k1 = cache_key(0, &src, &[(a, emu.clone())], &[], &[], 0).unwrap();
        assert_eq!(
            k1,
            cache_key(0, &src, &[(a, emu.clone())], &[], &[], 0).unwrap()
        );
        fs::write(&emu, b"yy").unwrap();
        let k2 = cache_key(0, &src, &[(a, emu.clone())], &[], &[], 0).unwrap();
        assert_ne!(k1, k2);
        assert_ne!(
            k2,
            cache_key(0, &src, &[(a, emu.clone())], &[], &[], 1).unwrap()
        );
        assert_ne!(k2, cache_key(0, &src, &[], &[], &[], 0).unwrap());
        // Another user: another key (issue 10, item 2).
        assert_ne!(
            k2,
            cache_key(65534, &src, &[(a, emu.clone())], &[], &[], 0).unwrap()
        );
        // The same file chosen as box64/FEX instead of qemu: another table.
        assert_ne!(
            k2,
            cache_key(
                0,
                &src,
                &[(a, emu.clone())],
                &["aarch64".to_string()],
                &[],
                0
            )
            .unwrap()
        );
        // A CPU model chosen for it: another table (issue 15).
        assert_ne!(
            k2,
            cache_key(
                0,
                &src,
                &[(a, emu.clone())],
                &[],
                &[("aarch64".into(), "max".into())],
                0
            )
            .unwrap()
        );
    }
}
