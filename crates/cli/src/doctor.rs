//! `qemu-shim doctor`: checks that the registration works, end to end, and
//! says for each broken arch how to fix it.
//!
//! It reads the table as `status` does (mounted, enabled, our entries,
//! others' entries that take our programs first), checks the kernel's
//! version for the features our flags need, and then runs, for every arch
//! we register that has one, the registry's tiny probe program (an
//! `exit(N)` for that arch) through the kernel: the program is executed by
//! path like any other, so it goes through whatever entry the kernel picks,
//! our interpreter and the emulator. Exit status N means the arch works.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::probe;

use crate::error::{Error, Result};
use crate::install::{owned_arch, STAND_IN_SUFFIX};
use crate::persist;
use crate::root;
use crate::status::{self, Status};

/// What the probe programs exit with: not 0 (a program that did nothing
/// useful) and not what the interpreter or a shell exit with on failure
/// (1, 126, 127).
pub const PROBE_STATUS: u8 = 42;

/// How long one probe may take: a cold emulator starts in milliseconds;
/// one that hangs must not hang `doctor`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What `doctor` was asked to check.
#[derive(Debug, Clone)]
pub struct Options {
    pub binfmt_dir: Option<PathBuf>,
    /// Where `install --persist` writes its binfmt.d file.
    pub binfmt_d_dir: PathBuf,
}

/// A kernel version, from `uname -r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kernel(pub u32, pub u32);

impl Kernel {
    /// `6.18.0-1-amd64` → 6.18; `None` if it does not start `N.N`.
    pub fn parse(release: &str) -> Option<Kernel> {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(Kernel(major, minor))
    }
}

/// The kernel features qemu-shim's entries use, by the version that
/// brought each.
const FEATURES: [(Kernel, &str); 3] = [
    (Kernel(4, 8), "F (entries pinned to their interpreter)"),
    (
        Kernel(5, 12),
        "AT_FLAGS (the kernel tells the interpreter of P)",
    ),
    (Kernel(6, 7), "binfmt_misc instances in user namespaces"),
];

/// The verdict on one line of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, with a limit worth knowing.
    Note,
    Broken,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Note => "note",
            Verdict::Broken => "BROKEN",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub verdict: Verdict,
    pub text: String,
}

fn line(verdict: Verdict, text: impl Into<String>) -> Line {
    Line {
        verdict,
        text: text.into(),
    }
}

/// Runs `doctor`, writing one line per check to `out`; the exit code is
/// 0 when nothing is broken, 1 otherwise.
pub fn doctor(opts: &Options, out: &mut dyn Write) -> Result<u8> {
    let bf = root::open_for_read(opts.binfmt_dir.as_deref());
    let mut lines = Vec::new();
    let kernel = nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().and_then(Kernel::parse));
    lines.extend(kernel_lines(kernel));
    if !bf.is_mounted() {
        lines.push(line(
            Verdict::Broken,
            format!(
                "binfmt_misc is not mounted at {} (fix: `qemu-shim install` mounts it, or mount -t binfmt_misc binfmt_misc {})",
                bf.root().display(),
                bf.root().display()
            ),
        ));
        return finish(out, &lines);
    }
    let s = status::collect(&bf)?;
    let table_on = s.binfmt_misc.enabled == Some(true);
    lines.push(if table_on {
        line(
            Verdict::Ok,
            format!("binfmt_misc mounted at {}, enabled", bf.root().display()),
        )
    } else {
        line(
            Verdict::Broken,
            format!(
                "binfmt_misc at {} is disabled as a whole: no entry runs (fix: echo 1 > {}/status)",
                bf.root().display(),
                bf.root().display()
            ),
        )
    });
    let boot = persisted(&opts.binfmt_d_dir);
    let ours: Vec<&status::EntryStatus> = s
        .entries
        .iter()
        .filter(|e| e.owned && !e.name.ends_with(STAND_IN_SUFFIX))
        .collect();
    if ours.is_empty() && boot.is_empty() {
        lines.push(line(
            Verdict::Broken,
            "no qemu-shim entries are registered (fix: qemu-shim install)",
        ));
        return finish(out, &lines);
    }
    let mut probes = Probes { dir: None };
    for e in &ours {
        lines.push(check_entry(&bf, &s, e, table_on, kernel, &mut probes)?);
    }
    // argv0 and setuid need probe programs that report them; where there
    // is none, say what was not checked rather than guess.
    let unchecked: Vec<&str> = ours
        .iter()
        .filter_map(|e| owned_arch(&e.name))
        .filter(|a| argv0_program(a.name).is_none())
        .map(|a| a.name)
        .collect();
    let setuid = ours.iter().any(|e| e.flags.contains('C'));
    if !unchecked.is_empty() || setuid {
        let mut not = Vec::new();
        if !unchecked.is_empty() {
            not.push(format!(
                "argv0 not checked for {} (P is checked; no probe program reports its argv[0])",
                unchecked.join(", ")
            ));
        }
        if setuid {
            not.push("setuid not checked (no probe program reports its credentials)".into());
        }
        lines.push(line(Verdict::Note, not.join("; ")));
    }
    // Entries the binfmt.d file registers at boot but that are not there.
    for l in &boot {
        if !ours.iter().any(|e| e.name == l.name) {
            let arch = owned_arch(&l.name).map_or(l.name.as_str(), |a| a.name);
            // The flags as the kernel would print them (C implies O).
            let flags = l.expected_entry().raw_flags;
            lines.push(line(
                Verdict::Broken,
                format!(
                    "{arch}: {} is in {} but not registered (fix: {})",
                    l.name,
                    persist::path_in(&opts.binfmt_d_dir).display(),
                    install_command(arch, &l.interpreter, &flags)
                ),
            ));
        }
    }
    finish(out, &lines)
}

fn finish(out: &mut dyn Write, lines: &[Line]) -> Result<u8> {
    for l in lines {
        let _ = writeln!(out, "{:<6}  {}", l.verdict.word(), l.text);
    }
    let broken = lines.iter().any(|l| l.verdict == Verdict::Broken);
    Ok(if broken {
        crate::EXIT_FAILED
    } else {
        crate::EXIT_OK
    })
}

/// One line on the kernel: which of our features it has.
pub fn kernel_lines(kernel: Option<Kernel>) -> Vec<Line> {
    let Some(k) = kernel else {
        return vec![line(
            Verdict::Note,
            "kernel version unknown: features not checked",
        )];
    };
    let (has, lacks): (Vec<_>, Vec<_>) = FEATURES.iter().partition(|(v, _)| k >= *v);
    let name = |v: &[&(Kernel, &str)]| -> String {
        v.iter()
            .map(|(Kernel(a, b), what)| format!("{what} ≥ {a}.{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    if !has.is_empty() {
        out.push(line(
            Verdict::Ok,
            format!("kernel {}.{}: {}", k.0, k.1, name(&has)),
        ));
    }
    for (v, what) in lacks {
        let (verdict, why) = match v {
            Kernel(4, 8) => (
                Verdict::Broken,
                "entries cannot be pinned (fix: install with --no-pin, or a newer kernel)",
            ),
            Kernel(5, 12) => (
                Verdict::Note,
                "the interpreter learns of P from its table instead",
            ),
            _ => (
                Verdict::Note,
                "containers cannot have their own binfmt_misc (the test suite needs it)",
            ),
        };
        out.push(line(
            verdict,
            format!(
                "kernel {}.{} lacks {what} (≥ {}.{}): {why}",
                k.0, k.1, v.0, v.1
            ),
        ));
    }
    out
}

/// Our entries in the binfmt.d file, if there is one.
fn persisted(dir: &Path) -> Vec<qemu_shim_registry::format::RegisterLine> {
    match persist::read(&persist::path_in(dir)) {
        Ok(Some(t)) => persist::lines_of(&t)
            .into_iter()
            .filter(|l| l.name.starts_with(binfmt::OWNED_PREFIX))
            .collect(),
        _ => Vec::new(),
    }
}

/// The line for one of our entries.
fn check_entry(
    bf: &Binfmt,
    s: &Status,
    e: &status::EntryStatus,
    table_on: bool,
    kernel: Option<Kernel>,
    probes: &mut Probes,
) -> Result<Line> {
    let Some(a) = owned_arch(&e.name) else {
        return Ok(line(
            Verdict::Note,
            format!("{}: its name names no arch qemu-shim knows", e.name),
        ));
    };
    let arch = a.name;
    let fix = install_command(arch, &e.interpreter, &e.flags);
    let broken = |what: String, fix: &str| {
        Ok(line(
            Verdict::Broken,
            format!("{arch}: {what} (fix: {fix})"),
        ))
    };
    if !e.enabled {
        return broken(format!("{} is disabled", e.name), &fix);
    }
    if let Some(p) = &e.problem {
        return broken(format!("{}: {p}", e.name), &fix);
    }
    // Where an argv0 probe exists the probe decides, measured; elsewhere
    // the flag is all there is to check.
    if !e.flags.contains('P') && argv0_program(arch).is_none() {
        return broken(
            format!(
                "{} is registered without P: programs lose their argv[0]",
                e.name
            ),
            &fix,
        );
    }
    if let Some(w) = s
        .arches
        .iter()
        .find(|w| w.arch == arch && w.winner != e.name && !w.partial)
    {
        return Ok(shadowed(bf, s, arch, &w.winner, &fix));
    }
    let mut notes = Vec::new();
    let mut verdict = Verdict::Ok;
    if !e.pinned {
        verdict = Verdict::Note;
        notes.push(
            "not pinned (F): containers and chroots need the interpreter at its path".to_string(),
        );
    } else if kernel.is_some_and(|k| k < Kernel(4, 8)) {
        return broken(
            format!("{} is pinned on a kernel without F", e.name),
            "qemu-shim install --no-pin",
        );
    }
    if let Some(w) = s
        .arches
        .iter()
        .find(|w| w.arch == arch && w.winner != e.name)
    {
        verdict = Verdict::Note;
        notes.push(format!("{} takes some {arch} programs first", w.winner));
    }
    // The probe, run through whatever entry the kernel picks.
    let ran = match probe::exit_program_with_status(arch, PROBE_STATUS) {
        None => {
            verdict = Verdict::Note;
            "not run: no probe program for this arch".to_string()
        }
        Some(_) if !table_on => "probe not run: binfmt_misc is disabled".to_string(),
        Some(program) => {
            match bf.winner(&program).ok().flatten() {
                Some((name, _)) if name != e.name => {
                    return Ok(shadowed(bf, s, arch, &name, &fix));
                }
                _ => {}
            }
            if let Err(why) = probes.run(arch, &program, None, PROBE_STATUS)? {
                return broken(format!("the probe program {why}"), &fix);
            }
            let mut ran = format!("probe exited {PROBE_STATUS} through {}", e.name);
            if let Some(argv0) = argv0_program(arch) {
                let name = format!("{arch}-argv0");
                let want = ARGV0.as_bytes()[0];
                if let Err(why) = probes.run(&name, &argv0, Some(ARGV0), want)? {
                    return broken(
                        format!(
                            "programs lose their argv[0]: the argv0 probe, started as {ARGV0:?}, {why} (it exits with the first byte of its argv[0]; 47 is '/', the program's path)"
                        ),
                        &fix,
                    );
                }
                ran.push_str("; argv[0] kept");
            }
            ran
        }
    };
    notes.insert(0, ran);
    Ok(line(verdict, format!("{arch}: {}", notes.join("; "))))
}

/// The line for an arch whose programs another entry takes first.
fn shadowed(bf: &Binfmt, s: &Status, arch: &str, winner: &str, fix: &str) -> Line {
    let interp = s
        .entries
        .iter()
        .find(|x| x.name == winner)
        .map_or(String::new(), |o| format!(" ({})", o.interpreter));
    line(
        Verdict::Broken,
        format!(
            "{arch}: programs run through {winner}{interp}, which the kernel tries first (fix: {fix} registers ours again as the newest; or remove theirs: echo -1 > {}/{winner})",
            bf.root().display()
        ),
    )
}

/// The install command that registers `e` again as it is: same install
/// directory and the same choices of carrying and pinning.
fn install_command(arch: &str, interpreter: &str, flags: &str) -> String {
    let mut cmd = format!("qemu-shim install {arch}");
    if let Some(dir) = Path::new(interpreter).parent() {
        if dir != Path::new(crate::install::DEFAULT_INSTALL_DIR) {
            cmd.push_str(&format!(" --install-dir {}", dir.display()));
        }
    }
    // Carried emulators give the entry O (or C, which implies it).
    if !flags.contains('O') {
        cmd.push_str(" --no-carry");
    }
    if !flags.contains('F') {
        cmd.push_str(" --no-pin");
    }
    cmd
}

/// The argv[0] the argv0 probe is started with; it exits with its first
/// byte (90). Without P the program would see its path instead ('/', 47).
const ARGV0: &str = "Zqemu-shim-argv0";

/// A program that exits with the first byte of its argv[0], for the arches
/// that have one (aarch64: the arch most run through qemu-shim; for the
/// others doctor says "argv0 not checked"). An ELF64 executable of 136
/// bytes: the ELF header, one loadable segment, and four instructions.
pub fn argv0_program(arch: &str) -> Option<Vec<u8>> {
    if arch != "aarch64" {
        return None;
    }
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let code: [u32; 4] = [
        0xf940_07e0, // ldr x0, [sp, #8]   (argv[0]; argc is at [sp])
        0x3940_0000, // ldrb w0, [x0]
        0xd280_0ba8, // mov x8, #93        (exit)
        0xd400_0001, // svc #0
    ];
    let size = HEADERS + 4 * code.len() as u64;
    let mut b = Vec::with_capacity(size as usize);
    // ELF header: ELFCLASS64, ELFDATA2LSB, EV_CURRENT, System V ABI.
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // e_entry
    b.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
                                              // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    for h in [64u16, 56, 1, 0, 0, 0] {
        b.extend_from_slice(&h.to_le_bytes());
    }
    // One PT_LOAD, read and execute, the whole file at BASE.
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, size, size, 0x1000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for i in code {
        b.extend_from_slice(&i.to_le_bytes());
    }
    Some(b)
}

/// A private directory for probe programs, removed on drop.
struct Probes {
    dir: Option<PathBuf>,
}

impl Probes {
    fn dir(&mut self) -> Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let d = std::env::temp_dir().join(format!("qemu-shim-doctor.{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(|e| Error::io("cannot create", &d, &e))?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// Writes `program` and executes it, with `arg0` as its argv[0] if
    /// given; `Ok(Err(why))` when it did not exit with `want`.
    fn run(
        &mut self,
        name: &str,
        program: &[u8],
        arg0: Option<&str>,
        want: u8,
    ) -> Result<std::result::Result<(), String>> {
        let path = self.dir()?.join(format!("probe-{name}"));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o755)
                .open(&path)
                .map_err(|e| Error::io("cannot write", &path, &e))?;
            f.write_all(program)
                .map_err(|e| Error::io("cannot write", &path, &e))?;
        }
        let mut tries = 0;
        let mut child = loop {
            let mut cmd = Command::new(&path);
            if let Some(a) = arg0 {
                std::os::unix::process::CommandExt::arg0(&mut cmd, a);
            }
            let r = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn();
            match r {
                // Another thread's fork may hold the file open for writing a
                // moment longer (ETXTBSY).
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
                    return Ok(Err("is not run: no enabled entry matches it".into()))
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(Error::io("cannot run probe", &path, &e)
                        .hint("set TMPDIR to a directory that allows exec"))
                }
                Err(e) => {
                    return Ok(Err(format!(
                        "cannot be run: {}",
                        crate::error::io_reason(&e)
                    )))
                }
                Ok(c) => break c,
            }
        };
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(Err(format!(
                        "did not finish in {} s",
                        PROBE_TIMEOUT.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(Error::io("cannot wait for probe", &path, &e)),
            }
        };
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut err);
        }
        let said = err
            .lines()
            .next()
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) if c == i32::from(want) => Ok(()),
            (Some(c), _) => Err(format!("exited {c}, not {want}{said}")),
            (None, Some(sig)) => Err(format!("was killed by signal {sig}{said}")),
            (None, None) => Err("ended without a status".into()),
        })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argv0_probe_is_an_aarch64_executable_the_arch_table_classifies() {
        let p = argv0_program("aarch64").unwrap();
        assert_eq!(p.len(), 136);
        assert_eq!(
            qemu_shim_registry::arch::classify(&p).map(|a| a.name),
            Some("aarch64")
        );
        assert!(argv0_program("s390x").is_none());
        assert_eq!(ARGV0.as_bytes()[0], 90);
    }

    #[test]
    fn kernel_versions_parse_from_uname_release() {
        assert_eq!(Kernel::parse("6.18.0-1-amd64"), Some(Kernel(6, 18)));
        assert_eq!(Kernel::parse("5.4"), Some(Kernel(5, 4)));
        assert_eq!(Kernel::parse("4.19.0+"), Some(Kernel(4, 19)));
        assert_eq!(Kernel::parse("x"), None);
        assert_eq!(Kernel::parse("6"), None);
    }

    #[test]
    fn old_kernels_lack_features_and_only_missing_f_is_broken() {
        let all = kernel_lines(Some(Kernel(6, 18)));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].verdict, Verdict::Ok);
        let mid = kernel_lines(Some(Kernel(5, 10)));
        assert!(mid.iter().all(|l| l.verdict != Verdict::Broken), "{mid:?}");
        assert!(
            mid.iter().any(|l| l.text.contains("lacks AT_FLAGS")),
            "{mid:?}"
        );
        let old = kernel_lines(Some(Kernel(4, 4)));
        assert!(
            old.iter()
                .any(|l| l.verdict == Verdict::Broken && l.text.contains("lacks F")),
            "{old:?}"
        );
        assert_eq!(kernel_lines(None)[0].verdict, Verdict::Note);
    }
}
