//! qemu-shim-interp: the binfmt_misc interpreter qemu-shim registers for
//! every foreign ELF arch.
//!
//! For each exec the kernel starts this program with the target's path in
//! argv (and, with P, the original argv0 after it). [`run`] reads the
//! target's header, validates and classifies it with the registry's arch
//! table (the same rows the CLI registered), and replaces itself with the
//! emulator for that arch:
//!
//! ```text
//! kernel, no P:  [interp, /path/prog, arg1, …]
//! kernel, P:     [interp, /path/prog, argv0, arg1, …]
//! emulator:      [qemu-ARCH, -0, argv0, [-cpu, CPU,] --, /path/prog, arg1, …]   (environment untouched)
//! ```
//!
//! For qemu, a relative `/path/prog` becomes absolute when that is known to
//! name the same file (`absolute_program`), so that the guest's
//! `/proc/self/exe` survives a chdir; argv0 stays as it was.
//!
//! It only ever returns a [`Failure`]: one line for stderr and the exit code
//! (127 when the emulator, or the program's loader, is not found, 126 for
//! anything else). Everything
//! up to the `execve` may fail; nothing after it runs.
#![no_std]
#![deny(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// A failure is a few hundred bytes of borrowed pieces, returned by value:
// there is no allocator to box it, and it is built only on the way out.
#![allow(clippy::result_large_err)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

pub mod msg;
pub mod sys;
pub mod table;

use core::ffi::CStr;

use qemu_shim_registry_core::arch::{self, Arch};
use qemu_shim_registry_core::dispatch::{Convention, Table, FLAG_ASSUME_P};
use qemu_shim_registry_core::elf::{self, Header, MAX_PHDR_BYTES};

pub use msg::{Failure, Part};
use sys::{CStrArray, Errno, Fd, Process};

/// Exit code when the program cannot be run (the shell's "not executable").
pub const EXIT_CANNOT_RUN: i32 = 126;
/// Exit code when the emulator, or the loader a dynamic program names, is
/// not found (the shell's "not found").
pub const EXIT_NOT_FOUND: i32 = 127;

/// Bytes read from the start of the target: the ELF header and, for nearly
/// every program, its program header table. One page costs the same read as
/// 64 bytes.
pub const HEAD_BYTES: usize = 4096;

/// AT_FLAGS bit the kernel (>= 5.12) sets when the entry has the P flag.
const AT_FLAGS_PRESERVE_ARGV0: usize = 1;

/// How the kernel's argv reads for this exec.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// The target as the kernel named it (path of the binary).
    pub program: &'a CStr,
    /// The argv0 the program should see.
    pub argv0: &'a CStr,
    /// Index in argv of the program's first argument after argv0.
    pub rest: usize,
}

/// Reads the kernel's argv. `preserve_argv0` says whether it has the P
/// layout (original argv0 after the path).
pub fn invocation<'a>(
    argv: &CStrArray<'a>,
    preserve_argv0: bool,
) -> Result<Invocation<'a>, Failure<'a>> {
    let Some(program) = argv.get(1) else {
        return Err(usage());
    };
    if preserve_argv0 {
        // With P the kernel always passes argv0; a program started with an
        // empty argv (argc == 0) gets "" from kernels >= 5.18, and nothing
        // from older ones: give it "" as well.
        Ok(Invocation {
            program,
            argv0: argv.get(2).unwrap_or(c""),
            rest: 3,
        })
    } else {
        // Without P the kernel dropped argv0; direct registration would
        // show the path, so do the same.
        Ok(Invocation {
            program,
            argv0: program,
            rest: 2,
        })
    }
}

/// The usage line, for a person who ran the interpreter by hand.
fn usage<'a>() -> Failure<'a> {
    Failure::new(EXIT_CANNOT_RUN, None)
        .text("usage: qemu-shim-interp PROGRAM [ARGUMENTS...]")
        .hint("normally the kernel starts it for foreign programs; see `qemu-shim --help`")
}

/// Where the target's bytes come from: the kernel's descriptor (flags O or
/// C) or the path.
enum Source {
    KernelFd(Fd),
    Opened(Fd),
}

impl Source {
    fn fd(&self) -> Fd {
        match *self {
            Source::KernelFd(fd) | Source::Opened(fd) => fd,
        }
    }
}

/// The target's first bytes, checked.
pub struct Target {
    pub head: [u8; HEAD_BYTES],
    pub len: usize,
    pub arch: &'static Arch,
    /// Where its loader path (PT_INTERP) lies in the file, if it has one.
    pub interp: Option<(u64, u64)>,
    /// What `fstat` said of it.
    pub file: sys::FileInfo,
}

/// Reads, validates and classifies the target's header from `fd`.
pub fn inspect(fd: Fd, program: &CStr) -> Result<Target, Failure<'_>> {
    let fail = |e: Errno, what: &'static str| {
        Failure::new(EXIT_CANNOT_RUN, Some(program))
            .text(what)
            .errno(e)
    };
    let info = sys::fstat(fd).map_err(|e| fail(e, "cannot stat"))?;
    if info.mode & sys::S_IFMT != sys::S_IFREG {
        return Err(Failure::new(EXIT_CANNOT_RUN, Some(program)).text("not a regular file"));
    }
    let mut head = [0u8; HEAD_BYTES];
    let len = sys::pread_full(fd, &mut head, 0).map_err(|e| fail(e, "cannot read"))?;
    let bytes = head.get(..len).unwrap_or(&[]);
    let elf_fail = |e: qemu_shim_registry_core::elf::ElfError| {
        Failure::new(EXIT_CANNOT_RUN, Some(program)).text(e.as_str())
    };
    let header = Header::parse(bytes).map_err(elf_fail)?;
    let Some(arch) = arch::classify(bytes) else {
        return Err(Failure::new(EXIT_CANNOT_RUN, Some(program))
            .text("unknown machine: ELF e_machine ")
            .num(u64::from(header.machine))
            .hint("`qemu-shim which PROGRAM` tells what the kernel matched"));
    };
    let (off, plen) = header.phdr_range();
    let in_head = usize::try_from(off)
        .ok()
        .and_then(|o| Some(o..o.checked_add(plen)?))
        .and_then(|r| bytes.get(r));
    let interp = match in_head {
        Some(phdrs) => {
            header.check_segments(phdrs, info.size).map_err(elf_fail)?;
            header.interp_range(phdrs)
        }
        None => {
            let mut more = [0u8; MAX_PHDR_BYTES];
            let want = more.get_mut(..plen).unwrap_or(&mut []);
            let got = sys::pread_full(fd, want, off).map_err(|e| fail(e, "cannot read"))?;
            let phdrs = want.get(..got).unwrap_or(&[]);
            header.check_segments(phdrs, info.size).map_err(elf_fail)?;
            header.interp_range(phdrs)
        }
    };
    Ok(Target {
        head,
        len,
        arch,
        interp,
        file: info,
    })
}

/// Everything the interpreter does for one exec. Returns only on failure.
pub fn run<'a>(p: &Process<'a>) -> Failure<'a> {
    match try_run(p) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

enum Never {}

fn try_run<'a>(p: &Process<'a>) -> Result<Never, Failure<'a>> {
    let table = table::get().map_err(|e| {
        Failure::new(EXIT_CANNOT_RUN, None)
            .text("damaged interpreter file: ")
            .text(e.as_str())
            .hint("run `qemu-shim install` again")
    })?;
    let aux = p.aux;
    let p_layout = aux.flags & AT_FLAGS_PRESERVE_ARGV0 != 0 || table.flags() & FLAG_ASSUME_P != 0;
    let inv = invocation(&p.argv, p_layout)?;

    if aux.secure && aux.execfd.is_none() {
        // Credentials changed but the kernel gave no descriptor (an entry
        // without O or C): the program could only be opened by a path the
        // user may swap, with credentials the user does not have. Refuse
        // before opening anything.
        return Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
            .text("setuid/setgid program without the kernel's descriptor")
            .hint("register with the C flag (`qemu-shim install`)"));
    }
    let source = match aux.execfd {
        Some(fd) => Source::KernelFd(off_stdio(fd, false, aux.secure, inv.program)?),
        None => match sys::open_read(inv.program) {
            Ok(fd) => Source::Opened(off_stdio(fd, true, false, inv.program)?),
            // `qemu-shim-interp --help` by hand: no such program, and an
            // option is what was meant. Only once the open failed: the
            // kernel may well start a program whose path is `--help`.
            Err(Errno::ENOENT) if inv.program.to_bytes().starts_with(b"-") => return Err(usage()),
            Err(e) => {
                return Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
                    .text("cannot open")
                    .errno(e))
            }
        },
    };
    let target = match inspect(source.fd(), inv.program) {
        Ok(t) => t,
        Err(f) => {
            sys::close(source.fd());
            return Err(f);
        }
    };
    let entry = table.find(target.arch.name);
    let convention = entry.map(|e| e.convention);
    // qemu runs it: carried, by path, or (no table: run by hand from the
    // build tree) Debian's from /usr/bin. Not box64 or FEX, which find
    // x86 loaders their own way.
    let qemu = match convention {
        Some(Convention::Carried(_) | Convention::ExecByPath) => true,
        None => table.is_empty(),
        Some(_) => false,
    };
    if qemu {
        if let Err(f) = check_loader(&target, &inv, &p.envp, aux.secure) {
            sys::close(source.fd());
            return Err(f);
        }
    }
    // qemu answers the guest's /proc/self/exe from the path it was given,
    // resolved when the guest asks: give it one that survives a chdir.
    let mut abs = [0u8; sys::PATH_MAX];
    let program = if qemu {
        absolute_program(&mut abs, inv.program, &target.file)
    } else {
        None
    };
    let mut model = [0u8; sys::MAX_CPU];
    let cpu = match entry {
        Some(e) if qemu => cpu_model(&mut model, e.cpu, aux.secure, &p.envp),
        _ => None,
    };
    if let Some(Convention::Carried(c)) = convention {
        return start_carried(p, &c, &source, &inv, p_layout, program, cpu);
    }

    // The emulator is started by path and re-opens the program itself: the
    // descriptor must not leak into it (or the program).
    sys::close(source.fd());
    if aux.secure {
        // The kernel changed credentials for this exec (a setuid or setgid
        // program under the C flag). An emulator started by path would
        // re-open the program by path, which the user can swap after the
        // kernel chose the credentials, and would honour the user's QEMU_*
        // variables as root.
        return Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
            .text("setuid/setgid program: refusing to run its emulator by path")
            .hint("install with carried emulators (the default) to run setuid programs"));
    }
    exec_emulator(&table, target.arch, &inv, program, cpu, &p.argv, &p.envp)
}

/// The CPU model qemu is started with (`-cpu MODEL`): the one the
/// administrator chose for the arch (`cpu` in the table, empty for qemu's
/// default), unless an unprivileged user set `QEMU_CPU` for their own
/// program — qemu's `-cpu` beats its variable, and the user's choice
/// should win there (debugging stays possible). Under AT_SECURE the
/// variable is dropped from the environment and the administrator's model
/// always applies. `QEMU_CPU` is never added to the environment: the
/// program's children would inherit it.
fn cpu_model<'b>(
    buf: &'b mut [u8; sys::MAX_CPU],
    chosen: &[u8],
    secure: bool,
    envp: &CStrArray<'_>,
) -> Option<&'b CStr> {
    if chosen.is_empty() {
        return None;
    }
    if !secure
        && envp
            .iter_from(0)
            .any(|e| e.to_bytes().starts_with(b"QEMU_CPU="))
    {
        return None;
    }
    c_path(buf, chosen)
}

/// The program's path made absolute against the working directory, for
/// qemu, which answers the guest's `readlink("/proc/self/exe")` (and, with
/// no descriptor, its opens of it) by resolving the path it was given at
/// the time the guest asks: a relative one breaks once the guest changes
/// directory. `None`, hand qemu the path as given, whenever the absolute
/// path is not known to name the same file:
/// - the path is already absolute (also `/dev/fd/N`, an AT_EMPTY_PATH
///   exec);
/// - `getcwd` fails: a deleted working directory (ENOENT), or one longer
///   than [`sys::PATH_MAX`] (ERANGE, ENAMETOOLONG);
/// - the working directory does not start with `/`: outside the process's
///   root, after a chroot without chdir, the raw syscall answers
///   `(unreachable)/…`;
/// - the joined path does not fit [`sys::PATH_MAX`];
/// - `stat` of it fails (a parent the process cannot search: the relative
///   path works from the working directory, the absolute one does not) or
///   names another file than the one the program was read from (a
///   directory mounted over since, say): device and inode must match
///   `file`, the descriptor's `fstat`.
///
/// Costs a `getcwd` and a `stat` per exec by a relative path. The path it
/// builds is the working directory, `/`, and the given path without its
/// leading `./`; qemu resolves any `..` or symbolic link in it later, as
/// it did the relative one. The guest sees it as AT_EXECFN too (qemu sets
/// that from its path); argv and argv0 stay as the caller wrote them.
///
/// A setuid/setgid program (AT_SECURE): `stat` resolves the path with its
/// effective ids, the ones qemu resolves `/proc/self/exe` with; the path
/// is the caller's working directory and the path it exec'd, which the
/// caller knows already, and qemu still reads the program from the
/// kernel's descriptor, never from this path.
fn absolute_program<'b>(
    buf: &'b mut [u8; sys::PATH_MAX],
    given: &CStr,
    file: &sys::FileInfo,
) -> Option<&'b CStr> {
    let mut rel = given.to_bytes();
    if rel.starts_with(b"/") {
        return None;
    }
    let mut len = sys::getcwd(buf).ok()?;
    if buf.first() != Some(&b'/') {
        return None;
    }
    // `./prog`, `.//prog`: `prog`.
    while let Some(r) = rel.strip_prefix(b"./").or_else(|| rel.strip_prefix(b"/")) {
        rel = r;
    }
    let sep: &[u8] = if len == 1 { b"" } else { b"/" };
    for part in [sep, rel, b"\0"] {
        let end = len.checked_add(part.len())?;
        buf.get_mut(len..end)?.copy_from_slice(part);
        len = end;
    }
    let path = CStr::from_bytes_with_nul(buf.get(..len)?).ok()?;
    let found = sys::stat(path).ok()?;
    found.same_file(file).then_some(path)
}

/// Where qemu builds look a guest's loader up when it is not at its own
/// path (qemu's `--interp-prefix`; `%M`, its target name, is appended):
/// Debian's and Ubuntu's `/etc/qemu-binfmt/%M` (the emulators qemu-shim
/// installs from), qemu's own default `/usr/gnemul/qemu-%M`, and Red Hat's
/// packaging's `--interp-prefix=%{_prefix}/qemu-%M`. Only looked at when
/// the loader is missing: free for programs that run.
const LOADER_PREFIXES: [&str; 3] = ["/etc/qemu-binfmt/", "/usr/gnemul/qemu-", "/usr/qemu-"];

/// Refuses, with a reason and a fix, a dynamically linked program whose
/// loader (PT_INTERP) qemu will not find: not at its own path, nor under a
/// loader prefix, and `QEMU_LD_PREFIX` not set. qemu would fail on it
/// anyway, later and in its own words (`Could not open
/// '/lib/ld-linux-aarch64.so.1': No such file or directory`, exit 255).
///
/// It must never refuse what qemu would run, so it refuses only when every
/// lookup answers ENOENT or ENOTDIR. Anything else lets qemu decide: no
/// PT_INTERP (static programs: no lookup at all), a loader path outside
/// the 4 KiB already read, relative (qemu opens it from the working
/// directory, without prefix), too long, without its NUL, any other error
/// (EACCES, ELOOP, EIO…), or `QEMU_LD_PREFIX` in the environment (qemu then
/// looks under that, in ways not worth repeating here). A qemu built with a
/// prefix not in [`LOADER_PREFIXES`] whose loaders live only there would be
/// refused: set `QEMU_LD_PREFIX` for it (the README says so). Cost: one
/// `stat` for a dynamic program whose loader is there, the usual case.
///
/// setuid/setgid programs (`secure`): the check runs with the program's
/// credentials, and that is safe. `stat` resolves paths with the effective
/// ids, which the emulator will open the loader with; `access(2)` would
/// answer for the real user instead, the wrong question. The paths looked
/// up are the program's own PT_INTERP, read from the kernel's descriptor
/// (not a path the user could swap), and fixed prefixes: the user chooses
/// none of them, and learns only that the loader is missing, which qemu's
/// own failure would say too. `QEMU_LD_PREFIX` is not consulted there: this
/// interpreter drops every `QEMU_*` variable for such programs, so qemu
/// looks only at its default prefix, and the hint does not offer it.
fn check_loader<'a>(
    target: &Target,
    inv: &Invocation<'a>,
    envp: &CStrArray<'a>,
    secure: bool,
) -> Result<(), Failure<'a>> {
    let Some((off, size)) = target.interp else {
        return Ok(());
    };
    let head = target.head.get(..target.len).unwrap_or(&[]);
    let Some(loader) = elf::interp_path(head, off, size) else {
        return Ok(());
    };
    if !loader.starts_with(b"/") {
        return Ok(());
    }
    if !secure
        && envp
            .iter_from(0)
            .any(|e| e.to_bytes().starts_with(b"QEMU_LD_PREFIX="))
    {
        return Ok(());
    }
    let mut buf = [0u8; PATH_BUF];
    if !absent(&mut buf, &[loader]) {
        return Ok(());
    }
    let qemu_target = target.arch.qemu_target();
    for prefix in LOADER_PREFIXES {
        if !absent(
            &mut buf,
            &[prefix.as_bytes(), qemu_target.as_bytes(), loader],
        ) {
            return Ok(());
        }
    }
    // The message quotes the path after `target` is gone.
    let Ok(shown) = sys::copy_to_static(loader) else {
        return Ok(());
    };
    let f = Failure::new(EXIT_NOT_FOUND, Some(inv.program))
        .text("needs the ")
        .text(target.arch.familiar_name())
        .text(" loader ")
        .bytes(shown)
        .text(", which is not here");
    Err(if secure {
        f.hint_then(
            "run it inside its root file system, or populate /etc/qemu-binfmt/",
            qemu_target,
        )
    } else {
        f.hint_then(
            "run it inside its root file system, or set QEMU_LD_PREFIX / populate /etc/qemu-binfmt/",
            qemu_target,
        )
    })
}

/// Whether the path made of `parts` certainly names nothing: `stat` says
/// ENOENT or ENOTDIR. A path that does not fit in `buf` is not known to be
/// absent.
fn absent(buf: &mut [u8; PATH_BUF], parts: &[&[u8]]) -> bool {
    let mut len = 0usize;
    for part in parts {
        let Some(dst) = len
            .checked_add(part.len())
            .and_then(|end| buf.get_mut(len..end))
        else {
            return false;
        };
        dst.copy_from_slice(part);
        len += part.len();
    }
    let Some(nul) = buf.get_mut(len) else {
        return false;
    };
    *nul = 0;
    let Some(path) = buf
        .get(..=len)
        .and_then(|b| CStr::from_bytes_with_nul(b).ok())
    else {
        return false;
    };
    matches!(sys::stat(path), Err(Errno::ENOENT | Errno::ENOTDIR))
}

/// Keeps the program's descriptor off standard input, output and error.
///
/// The kernel opens the program (flags O and C) on the lowest free
/// descriptor: 0 when the caller closed stdin. qemu reads `AT_EXECFD == 0`
/// as "no descriptor" and opens the program by path instead — with the
/// setuid program's credentials, a path the user can swap after the kernel
/// chose them (a local root), and for an execute-only program, a failure.
/// At 1 or 2 the program would find its own file where the caller left
/// stdout or stderr closed. So a descriptor below 3 is moved to the lowest
/// free one >= 3 and the original closed: the program sees fds 0-2 exactly
/// as the caller left them. `cloexec`: keep the close-on-exec flag of a
/// descriptor this interpreter opened (the kernel's has none).
///
/// If it cannot be moved (no free descriptor), a setuid/setgid exec
/// (`secure`) is refused; any other runs as registering qemu directly would
/// run it (qemu re-opens it by path with the caller's own credentials).
fn off_stdio<'a>(
    fd: Fd,
    cloexec: bool,
    secure: bool,
    program: &'a CStr,
) -> Result<Fd, Failure<'a>> {
    if fd >= sys::FIRST_NON_STDIO {
        return Ok(fd);
    }
    match sys::move_off_stdio(fd, cloexec) {
        Ok(moved) => Ok(moved),
        Err(_) if !secure => Ok(fd),
        Err(e) => {
            sys::close(fd);
            Err(Failure::new(EXIT_CANNOT_RUN, Some(program))
                .text("setuid/setgid program: cannot move its descriptor off stdin/stdout/stderr")
                .errno(e))
        }
    }
}

/// Whether an environment entry must not reach an emulator that runs with
/// credentials the caller does not have (AT_SECURE):
/// - `QEMU_*`: qemu reads its options from them (QEMU_LD_PREFIX,
///   QEMU_SET_ENV, QEMU_STRACE, QEMU_GDB, QEMU_LOG_FILENAME,
///   QEMU_RAND_SEED, …): honoured in a setuid program, they would let the
///   user who started it choose the privileged process's libraries,
///   environment, log files, randomness or a debugger port.
/// - `GLIBC_TUNABLES`: the emulator's own C library parses it before it
///   filters it (CVE-2023-4911 was in that parser), and this interpreter
///   cannot know which C library the emulator was built with.
/// - `G_DEBUG`, `G_SLICE`, `G_MESSAGES_DEBUG`: GLib inside qemu reads them
///   with no setuid check (abort on warnings, allocator switches, debug
///   output).
///
/// - `LD_LIBRARY_PATH`, `LD_BIND_NOW`, `LD_BIND_NOT`, `LD_PROFILE_OUTPUT`:
///   a static glibc (2.36, Debian 12's qemu-user-static) reads them in
///   `_dl_non_dynamic_init` *before* its own secure-mode unsetenv (fixed
///   upstream in 2.39). Inert in qemu today; cheap to close.
///
/// The rest of the C library's unsafe list (LD_PRELOAD, MALLOC_*,
/// GCONV_PATH, …) is removed by the emulator's C library itself, which sees
/// AT_SECURE.
pub fn secure_drops(entry: &[u8]) -> bool {
    const NAMES: [&[u8]; 8] = [
        b"GLIBC_TUNABLES=",
        b"G_DEBUG=",
        b"G_SLICE=",
        b"G_MESSAGES_DEBUG=",
        b"LD_LIBRARY_PATH=",
        b"LD_BIND_NOW=",
        b"LD_BIND_NOT=",
        b"LD_PROFILE_OUTPUT=",
    ];
    entry.starts_with(b"QEMU_") || NAMES.iter().any(|n| entry.starts_with(n))
}

fn keep_all(_: &[u8]) -> bool {
    false
}

/// Starts a carried emulator, reading the program from `source`; its path
/// for the emulator is `program` if given (see [`absolute_program`]).
fn start_carried<'a>(
    p: &Process<'a>,
    c: &qemu_shim_registry_core::dispatch::Carried,
    source: &Source,
    inv: &Invocation<'a>,
    p_layout: bool,
    program: Option<&CStr>,
    cpu: Option<&CStr>,
) -> Result<Never, Failure<'a>> {
    let secure = p.aux.secure;
    if secure && !matches!(source, Source::KernelFd(_)) {
        // Unreachable: `try_run` refuses a secure exec without the kernel's
        // descriptor before opening anything. Kept so this function never
        // hands a path-opened descriptor to a privileged emulator.
        sys::close(source.fd());
        return Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
            .text("setuid/setgid program without the kernel's descriptor")
            .hint("register with the C flag (`qemu-shim install`)"));
    }
    let launch = sys::Launch {
        carried: c,
        execfd: source.fd(),
        preserve_argv0: p_layout,
        drop_env: if secure { secure_drops } else { keep_all },
        randomize: secure,
        program,
        cpu,
    };
    let err = sys::launch(p, &launch);
    sys::close(source.fd());
    Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
        .text("cannot start the carried emulator")
        .errno(err)
        .hint("run `qemu-shim install` again"))
}

/// Longest emulator path the interpreter execs.
const PATH_BUF: usize = sys::PATH_MAX;

/// Where the unconfigured interpreter looks: Debian's qemu-user-static,
/// then qemu-user.
const DEFAULT_DIR: &str = "/usr/bin/";
const DEFAULT_SUFFIXES: [&str; 2] = ["-static", ""];

/// Execs the emulator by path; qemu gets `program` as the program's path
/// if given (see [`absolute_program`]), and `-cpu` with `cpu`.
fn exec_emulator<'a>(
    table: &Table<'static>,
    arch: &'static Arch,
    inv: &Invocation<'a>,
    program: Option<&CStr>,
    cpu: Option<&CStr>,
    argv: &CStrArray<'a>,
    envp: &CStrArray<'a>,
) -> Result<Never, Failure<'a>> {
    let not_found = |path: [Part<'a>; 3]| {
        path.into_iter()
            .fold(
                Failure::new(EXIT_NOT_FOUND, Some(inv.program))
                    .text("no emulator for ")
                    .text(arch.name)
                    .text(": "),
                Failure::part,
            )
            .text(" not found")
    };
    let mut buf = [0u8; PATH_BUF];
    if table.is_empty() {
        // An unconfigured interpreter (run by hand from the build tree).
        for suffix in DEFAULT_SUFFIXES {
            let shown = [
                Part::Text(DEFAULT_DIR),
                Part::Text(arch.emulator),
                Part::Text(suffix),
            ];
            let mut line = msg::Line::new();
            line.push(DEFAULT_DIR.as_bytes());
            line.push(arch.emulator.as_bytes());
            line.push(suffix.as_bytes());
            let Some(path) = c_path(&mut buf, line.as_bytes()) else {
                continue;
            };
            let err = try_exec(path, inv, program, None, argv, envp, false)?;
            if err != Errno::ENOENT {
                return Err(exec_failure(err, shown, arch, inv));
            }
        }
        let first = [
            Part::Text(DEFAULT_DIR),
            Part::Text(arch.emulator),
            Part::Text("-static"),
        ];
        return Err(not_found(first)
            .hint("install qemu-user-static, or configure with `qemu-shim install`"));
    }
    let Some(entry) = table.find(arch.name) else {
        return Err(Failure::new(EXIT_NOT_FOUND, Some(inv.program))
            .text("no emulator for ")
            .text(arch.name)
            .text(": not installed")
            .hint("`qemu-shim install` adds it"));
    };
    let shown = [Part::Bytes(entry.path), Part::Text(""), Part::Text("")];
    match entry.convention {
        Convention::ExecByPath | Convention::ExecPlain => {
            let Some(path) = c_path(&mut buf, entry.path) else {
                return Err(not_found(shown));
            };
            let plain = entry.convention == Convention::ExecPlain;
            let err = try_exec(path, inv, program, cpu, argv, envp, plain)?;
            if err == Errno::ENOENT {
                return Err(not_found(shown).hint(
                    "the emulator must exist at that path in this mount namespace; reinstall with `qemu-shim install`",
                ));
            }
            Err(exec_failure(err, shown, arch, inv))
        }
        // Carried entries were dispatched by the caller; anything newer
        // than this interpreter is refused, not guessed at.
        _ => Err(Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
            .text("emulator convention not supported by this interpreter")
            .hint("run `qemu-shim install` again")),
    }
}

/// `./` then `path` then a NUL, in `buf`, as a C string.
fn dot_slash<'b>(buf: &'b mut [u8], path: &[u8]) -> Option<&'b CStr> {
    let (head, rest) = buf.split_at_mut_checked(2)?;
    head.copy_from_slice(b"./");
    let len = c_path(rest, path)?.to_bytes_with_nul().len();
    CStr::from_bytes_with_nul(buf.get(..len + 2)?).ok()
}

/// Copies `path` plus a NUL into `buf` and views it as a C string.
fn c_path<'b>(buf: &'b mut [u8], path: &[u8]) -> Option<&'b CStr> {
    let dst = buf.get_mut(..path.len().checked_add(1)?)?;
    let (last, body) = dst.split_last_mut()?;
    body.copy_from_slice(path);
    *last = 0;
    CStr::from_bytes_with_nul(dst).ok()
}

/// Builds the emulator's argv and execs it: qemu's command line
/// `EMULATOR -0 ARGV0 [-cpu CPU] -- PROGRAM ARGS…` (PROGRAM: `program` if
/// given, else the path as the kernel gave it), or with `plain` the one emulators
/// without an argv0 option take (box64, FEX), `EMULATOR PROGRAM ARGS…`,
/// always with the path as given. Returns the exec's error (ENOENT is left
/// to the caller, which may try another path); fails only when the argv
/// cannot be built.
fn try_exec<'a>(
    path: &CStr,
    inv: &Invocation<'a>,
    program: Option<&CStr>,
    cpu: Option<&CStr>,
    argv: &CStrArray<'a>,
    envp: &CStrArray<'a>,
    plain: bool,
) -> Result<Errno, Failure<'a>> {
    let rest = argv.len().saturating_sub(inv.rest);
    let given = program.unwrap_or(inv.program);
    let with_cpu: [&CStr; 7];
    let without: [&CStr; 5];
    let qemu: &[&CStr] = match cpu {
        Some(model) => {
            with_cpu = [path, c"-0", inv.argv0, c"-cpu", model, c"--", given];
            &with_cpu
        }
        None => {
            without = [path, c"-0", inv.argv0, c"--", given];
            &without
        }
    };
    // Without `--`, a relative path starting with `-` would read as an
    // option: make every relative path start with `./`.
    let mut dotted = [0u8; PATH_BUF + 2];
    let program = match inv.program.to_bytes() {
        p if !plain || p.starts_with(b"/") => inv.program,
        p => match dot_slash(&mut dotted, p) {
            Some(c) => c,
            None => {
                return Err(
                    Failure::new(EXIT_CANNOT_RUN, Some(inv.program)).text("program path too long")
                )
            }
        },
    };
    let plain_lead: [&CStr; 2] = [path, program];
    let lead: &[&CStr] = if plain { &plain_lead } else { qemu };
    let slots = sys::map_slots(lead.len() + rest + 1).map_err(|e| {
        Failure::new(EXIT_CANNOT_RUN, Some(inv.program))
            .text("cannot build the emulator's arguments")
            .errno(e)
    })?;
    fill_argv(slots, lead, argv, inv.rest);
    // The last slot stays null: the mapping is zero-filled.
    Ok(sys::execve(path, slots, envp))
}

/// Fills `slots` with the emulator's argv: `lead`, then the kernel's argv
/// from index `rest`. Slots beyond stay as they are (the caller's are
/// zero-filled, so the array ends with a null).
pub fn fill_argv(slots: &mut [*const u8], lead: &[&CStr], argv: &CStrArray<'_>, rest: usize) {
    let args = lead.iter().copied().chain(argv.iter_from(rest));
    for (slot, s) in slots.iter_mut().zip(args) {
        *slot = s.as_ptr().cast();
    }
}

fn exec_failure<'a>(
    err: Errno,
    path: [Part<'a>; 3],
    arch: &'static Arch,
    inv: &Invocation<'a>,
) -> Failure<'a> {
    let f = Failure::new(EXIT_CANNOT_RUN, Some(inv.program));
    let with_path = |f: Failure<'a>| path.into_iter().fold(f, Failure::part).errno(err);
    match err {
        Errno::E2BIG => f
            .text("argument list too long for the emulator")
            .hint("qemu-shim adds 4 arguments and the emulator path"),
        Errno::EACCES => with_path(
            f.text("emulator for ")
                .text(arch.name)
                .text(" not executable: "),
        ),
        _ => with_path(
            f.text("cannot execute emulator for ")
                .text(arch.name)
                .text(": "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys::test_support::Owned;

    #[test]
    fn without_p_argv0_is_the_path_and_args_follow_it() {
        let o = Owned::new(&[c"/interp", c"./prog", c"a", c""]);
        let inv = invocation(&o.array(), false).unwrap();
        assert_eq!(inv.program, c"./prog");
        assert_eq!(inv.argv0, c"./prog");
        assert_eq!(inv.rest, 2);
    }

    #[test]
    fn with_p_argv0_comes_after_the_path() {
        let o = Owned::new(&[c"/interp", c"/bin/busybox", c"uname", c"-m"]);
        let inv = invocation(&o.array(), true).unwrap();
        assert_eq!(inv.program, c"/bin/busybox");
        assert_eq!(inv.argv0, c"uname");
        assert_eq!(inv.rest, 3);
    }

    #[test]
    fn with_p_and_no_argv0_the_program_sees_an_empty_one() {
        let o = Owned::new(&[c"/interp", c"/bin/prog"]);
        let inv = invocation(&o.array(), true).unwrap();
        assert_eq!(inv.argv0, c"");
    }

    #[test]
    fn no_program_is_a_usage_failure_with_126() {
        let o = Owned::new(&[c"/interp"]);
        let f = invocation(&o.array(), false).unwrap_err();
        assert_eq!(f.code(), EXIT_CANNOT_RUN);
        let line = f.render();
        assert!(line.as_bytes().starts_with(b"qemu-shim: usage: "));
        assert!(line.as_bytes().ends_with(b")\n"));
    }

    #[test]
    fn dot_slash_prefixes_and_refuses_what_does_not_fit() {
        let mut buf = [0u8; 8];
        assert_eq!(dot_slash(&mut buf, b"-prog").unwrap(), c"./-prog");
        assert!(dot_slash(&mut buf, b"-progr").is_none());
    }

    #[test]
    fn secure_runs_lose_qemu_tunables_glib_and_early_ld_variables_only() {
        for v in [
            &b"QEMU_LD_PREFIX=/tmp"[..],
            b"QEMU_STRACE=1",
            b"GLIBC_TUNABLES=x",
            b"G_DEBUG=fatal-warnings",
            b"G_SLICE=always-malloc",
            b"G_MESSAGES_DEBUG=all",
            b"LD_LIBRARY_PATH=/tmp/evil",
            b"LD_BIND_NOW=1",
            b"LD_BIND_NOT=1",
            b"LD_PROFILE_OUTPUT=/etc",
        ] {
            assert!(secure_drops(v), "{}", core::str::from_utf8(v).unwrap());
        }
        for v in [
            &b"PATH=/bin"[..],
            b"HOME=/root",
            b"G_DEBUGGER=x",
            b"QEMU=1",
            b"MY_QEMU_X=1",
            b"LD_LIBRARY_PATHX=1",
            b"XLD_BIND_NOW=1",
        ] {
            assert!(!secure_drops(v), "{}", core::str::from_utf8(v).unwrap());
        }
    }

    /// Run in the crate's directory (cargo runs unit tests there).
    #[test]
    fn a_relative_path_becomes_absolute_only_when_it_names_the_same_file() {
        extern crate std;
        use std::os::unix::ffi::OsStrExt;
        let cwd = std::env::current_dir().unwrap();
        let info = |path: &CStr| {
            let fd = sys::open_read(path).unwrap();
            let info = sys::fstat(fd).unwrap();
            sys::close(fd);
            info
        };
        let manifest = info(c"Cargo.toml");
        let mut buf = [0u8; sys::PATH_MAX];
        for (given, want) in [
            (c"Cargo.toml", "/Cargo.toml"),
            (c"./Cargo.toml", "/Cargo.toml"),
            (c".//./Cargo.toml", "/Cargo.toml"),
            (c"src/../Cargo.toml", "/src/../Cargo.toml"),
        ] {
            let got = absolute_program(&mut buf, given, &manifest).unwrap();
            assert_eq!(
                got.to_bytes(),
                [cwd.as_os_str().as_bytes(), want.as_bytes()].concat(),
                "{given:?}"
            );
        }
        // Already absolute; not there; another file than the program's.
        assert!(absolute_program(&mut buf, c"/etc/hostname", &manifest).is_none());
        assert!(absolute_program(&mut buf, c"./no-such-file", &manifest).is_none());
        let lib = info(c"src/lib.rs");
        assert!(absolute_program(&mut buf, c"./Cargo.toml", &lib).is_none());
    }

    #[test]
    fn c_path_refuses_what_does_not_fit() {
        let mut buf = [0u8; 4];
        assert!(c_path(&mut buf, b"/abcd").is_none());
        assert_eq!(c_path(&mut buf, b"/ab").unwrap(), c"/ab");
    }
}
