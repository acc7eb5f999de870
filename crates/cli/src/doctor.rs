//! `qemu-shim doctor`: checks that the registration works, end to end, and
//! says for each broken arch how to fix it.
//!
//! It reads the table as `status` does (mounted, enabled, our entries,
//! others' entries that take our programs first), checks the kernel's
//! version for the features our flags need, and then runs, for every arch
//! we register, the registry's tiny probe programs ([`programs`]) through
//! the kernel: each is executed by path like any other program, so it goes
//! through whatever entry the kernel picks, our interpreter and the
//! emulator, and reports through its exit status:
//! - `exit(42)`: the arch runs at all;
//! - the first byte of its argv[0], started as `Zqemu-shim-argv0`: the
//!   entry's P and the interpreter keep argv[0] (without them the program
//!   sees its path, '/');
//! - where the entry has C, its effective uid, made setuid to uid 42 and
//!   started as nobody (65534): setuid programs get the file's credentials.
//!   This needs root and a probe directory that honours setuid bits; where
//!   that is missing doctor says the check was not made, and why.
//!
//! The report is data ([`Report`], one [`Line`] per check): `--json`
//! prints it, [`write_text`] renders it; `doctor ARCH…` checks only those
//! arches.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use qemu_shim_registry::arch::Arch;
use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::format::RegisterLine;
use qemu_shim_registry::programs::{self, Kind};
use serde::Serialize;

use crate::entries::{owned_arch, STAND_IN_SUFFIX};
use crate::error::{Error, Result};
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
    /// Check only these arches (names as install takes them); empty: every
    /// arch qemu-shim has an entry for.
    pub arches: Vec<String>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, with a limit worth knowing.
    Note,
    Broken,
}

impl Verdict {
    /// At least a note (a broken verdict stays broken).
    fn max_note(self) -> Verdict {
        match self {
            Verdict::Ok => Verdict::Note,
            v => v,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Note => "note",
            Verdict::Broken => "BROKEN",
        }
    }
}

/// One check's result: a line of the text report, an element of
/// `checks` in `doctor --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub verdict: Verdict,
    /// The arch the check is about (qemu's name); `null` for the table and
    /// the kernel.
    pub arch: Option<String>,
    /// What was found.
    pub message: String,
    /// A command that fixes it, runnable as printed (with `sh -c`).
    pub fix: Option<String>,
}

impl Line {
    /// The line's text after its verdict word: `ARCH: MESSAGE (fix:
    /// COMMAND)`, the command alone in the parentheses that end the line,
    /// so a script can take it (issue 18, item 1).
    pub fn text(&self) -> String {
        let mut t = match &self.arch {
            Some(a) => format!("{a}: {}", self.message),
            None => self.message.clone(),
        };
        if let Some(f) = &self.fix {
            t.push_str(&format!(" (fix: {f})"));
        }
        t
    }

    fn fixed_by(mut self, fix: impl Into<String>) -> Line {
        self.fix = Some(fix.into());
        self
    }
}

/// A line about the table, the kernel or the run itself.
fn line(verdict: Verdict, message: impl Into<String>) -> Line {
    Line {
        verdict,
        arch: None,
        message: message.into(),
        fix: None,
    }
}

/// A line about one arch.
fn arch_line(verdict: Verdict, arch: &str, message: impl Into<String>) -> Line {
    Line {
        arch: Some(arch.to_string()),
        ..line(verdict, message)
    }
}

/// The whole report; its JSON form is `doctor --json`'s output.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The binfmt_misc directory checked.
    pub binfmt_misc: String,
    /// Nothing is broken (the exit code is 0).
    pub ok: bool,
    /// Every check, in the text report's order.
    pub checks: Vec<Line>,
}

impl Report {
    fn new(root: &Path, checks: Vec<Line>) -> Report {
        Report {
            binfmt_misc: root.display().to_string(),
            ok: !checks.iter().any(|l| l.verdict == Verdict::Broken),
            checks,
        }
    }

    /// 0 when nothing is broken, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            crate::EXIT_OK
        } else {
            crate::EXIT_FAILED
        }
    }
}

/// Runs `doctor`: every check, as data.
pub fn doctor(opts: &Options) -> Result<Report> {
    let only = match crate::select::names(&opts.arches)? {
        Some(names) => Some(crate::select::resolve(&names, None)?),
        None => None,
    };
    let bf = root::open_for_read(opts.binfmt_dir.as_deref());
    let kernel = nix::sys::utsname::uname()
        .ok()
        .and_then(|u| u.release().to_str().and_then(Kernel::parse));
    let mut lines = kernel_lines(kernel);
    if !bf.is_mounted() {
        lines.push(not_mounted_line(bf.root()));
        return Ok(Report::new(bf.root(), lines));
    }
    let s = status::collect(&bf)?;
    // What every install command below needs to act where doctor looked.
    let tail = command_tail(opts);
    let table_on = s.binfmt_misc.enabled == Some(true);
    lines.push(table_line(bf.root(), table_on));
    let only = only.as_deref();
    let boot: Vec<_> = persisted(&opts.binfmt_d_dir)
        .into_iter()
        .filter(|l| {
            asked(
                only,
                owned_arch(&l.name).map_or(l.name.as_str(), |a| a.name),
            )
        })
        .collect();
    let ours = our_entries(&s, only);
    if only.is_none() && ours.is_empty() && boot.is_empty() {
        lines.push(
            line(Verdict::Broken, "no qemu-shim entries are registered")
                .fixed_by(format!("qemu-shim install{tail}")),
        );
        return Ok(Report::new(bf.root(), lines));
    }
    let mut probes = Probes::default();
    let mut per_arch = Vec::new();
    for e in &ours {
        per_arch.push(check_entry(
            &bf,
            &s,
            e,
            table_on,
            kernel,
            &tail,
            &mut probes,
        )?);
    }
    per_arch.extend(unregistered_boot_lines(opts, &boot, &ours, &tail));
    let unlisted = unlisted_arch_lines(only, &per_arch, &tail)?;
    per_arch.extend(unlisted);
    per_arch.sort_by(|x, y| x.arch.cmp(&y.arch));
    lines.extend(per_arch);
    if let Some(why) = &probes.setuid_skipped {
        lines.push(line(Verdict::Note, format!("setuid not checked: {why}")));
    }
    Ok(Report::new(bf.root(), lines))
}

/// Whether `arch` is one doctor was asked about (`None`: every arch).
fn asked(only: Option<&[&'static Arch]>, arch: &str) -> bool {
    only.is_none_or(|o| o.iter().any(|x| x.name == arch))
}

fn not_mounted_line(root: &Path) -> Line {
    let root = root.display();
    line(
        Verdict::Broken,
        format!(
            "binfmt_misc is not mounted at {root}: {}; `qemu-shim install` mounts it too",
            crate::root::unmounted_why(),
        ),
    )
    .fixed_by(format!("mount -t binfmt_misc binfmt_misc {root}"))
}

fn table_line(root: &Path, table_on: bool) -> Line {
    if table_on {
        line(
            Verdict::Ok,
            format!("binfmt_misc mounted at {}, enabled", root.display()),
        )
    } else {
        line(
            Verdict::Broken,
            format!(
                "binfmt_misc at {} is disabled as a whole: no entry runs",
                root.display(),
            ),
        )
        .fixed_by(format!("echo 1 > {}/status", root.display()))
    }
}

/// Our entries (not an upgrade's stand-ins) for the arches asked about,
/// by arch name, as `status` lists arches (the table's own order is the
/// kernel's match order, newest first).
fn our_entries<'a>(s: &'a Status, only: Option<&[&'static Arch]>) -> Vec<&'a status::EntryStatus> {
    let mut ours: Vec<&status::EntryStatus> = s
        .entries
        .iter()
        .filter(|e| e.owned && !e.name.ends_with(STAND_IN_SUFFIX))
        .filter(|e| only.is_none() || owned_arch(&e.name).is_some_and(|a| asked(only, a.name)))
        .collect();
    ours.sort_by_key(|e| owned_arch(&e.name).map_or(e.name.as_str(), |a| a.name));
    ours
}

/// Entries the binfmt.d file registers at boot but that are not there.
fn unregistered_boot_lines(
    opts: &Options,
    boot: &[RegisterLine],
    ours: &[&status::EntryStatus],
    tail: &str,
) -> Vec<Line> {
    boot.iter()
        .filter(|l| !ours.iter().any(|e| e.name == l.name))
        .map(|l| {
            let arch = owned_arch(&l.name).map_or(l.name.as_str(), |a| a.name);
            // The flags as the kernel would print them (C implies O).
            let flags = l.expected_entry().raw_flags;
            arch_line(
                Verdict::Broken,
                arch,
                format!(
                    "{} is in {} but not registered",
                    l.name,
                    persist::path_in(&opts.binfmt_d_dir).display(),
                ),
            )
            .fixed_by(install_command(arch, &l.interpreter, &flags, tail))
        })
        .collect()
}

/// Arches asked for by name that have no line yet (no entry of ours at
/// all): native ones need none (and install refuses them).
fn unlisted_arch_lines(
    only: Option<&[&'static Arch]>,
    per_arch: &[Line],
    tail: &str,
) -> Result<Vec<Line>> {
    let missing: Vec<&&Arch> = only
        .into_iter()
        .flatten()
        .filter(|a| !per_arch.iter().any(|l| l.arch.as_deref() == Some(a.name)))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let native = crate::select::native()?.0;
    Ok(missing
        .into_iter()
        .map(|a| {
            if crate::select::is_in(a, &native) {
                arch_line(
                    Verdict::Ok,
                    a.name,
                    "native: this CPU runs its programs, no entry needed",
                )
            } else {
                arch_line(Verdict::Broken, a.name, "no qemu-shim entry is registered")
                    .fixed_by(format!("qemu-shim install {}{tail}", a.name))
            }
        })
        .collect())
}

/// Writes the report for people: one line per check, its verdict first.
pub fn write_text(out: &mut dyn Write, r: &Report) {
    for l in &r.checks {
        let _ = writeln!(out, "{:<6}  {}", l.verdict.word(), l.text());
    }
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
                "entries cannot be pinned: install with --no-pin, or use a newer kernel",
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
    tail: &str,
    probes: &mut Probes,
) -> Result<Line> {
    let Some(a) = owned_arch(&e.name) else {
        return Ok(line(
            Verdict::Note,
            format!("{}: its name names no arch qemu-shim knows", e.name),
        ));
    };
    let arch = a.name;
    let fix = install_command(arch, &e.interpreter, &e.flags, tail);
    let broken = |what: String, fix: &str| Ok(arch_line(Verdict::Broken, arch, what).fixed_by(fix));
    let theirs = |w: &&status::ArchStatus| {
        w.arch == arch && w.winner.as_deref().is_some_and(|n| n != e.name)
    };
    if !e.enabled {
        return broken(format!("{} is disabled", e.name), &fix);
    }
    if let Some(p) = &e.problem {
        return broken(format!("{}: {p}", e.name), &fix);
    }
    if let Some(w) = s.arches.iter().filter(theirs).find(|w| !w.partial) {
        let winner = w.winner.as_deref().unwrap_or_default();
        return Ok(shadowed(bf, s, arch, winner, &fix));
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
            &install_command(arch, &e.interpreter, &e.flags.replace('F', ""), tail),
        );
    }
    if let Some(w) = s.arches.iter().find(theirs) {
        verdict = Verdict::Note;
        notes.push(format!(
            "{} takes some {arch} programs first",
            w.winner.as_deref().unwrap_or_default()
        ));
    }
    // The probes, run through whatever entry the kernel picks.
    let ran = match programs::program(arch, Kind::Exit(PROBE_STATUS)) {
        None => {
            verdict = Verdict::Note;
            "not run: no probe program for this arch".to_string()
        }
        Some(_) if !table_on => "probe not run: binfmt_misc is disabled".to_string(),
        Some(program) => match run_probes(bf, s, e, arch, &program, &fix, probes)? {
            Ok(ran) => ran,
            Err(l) => return Ok(l),
        },
    };
    notes.insert(0, ran);
    // The emulator against the file it was installed from (issue 13).
    let emu = s
        .interpreters
        .iter()
        .filter(|i| i.path == e.interpreter)
        .flat_map(|i| &i.emulators)
        .find(|m| m.arch == arch);
    if let Some(c) = emu.and_then(|m| m.cpu.as_ref()) {
        // The probes above ran under it: the entry starts qemu that way.
        notes.push(format!("qemu runs with -cpu {c} (the config's)"));
    }
    if let Some(m) = emu {
        if let Err(l) = compare_source(m, arch, &fix, &mut verdict, &mut notes) {
            return Ok(l);
        }
    }
    Ok(arch_line(verdict, arch, notes.join("; ")))
}

/// Runs `e`'s probes (exit status, argv[0], setuid with C) through
/// whatever entry the kernel picks for `program`: `Ok(what ran)`, or the
/// entry's line when one failed (`Err`).
fn run_probes(
    bf: &Binfmt,
    s: &Status,
    e: &status::EntryStatus,
    arch: &str,
    program: &[u8],
    fix: &str,
    probes: &mut Probes,
) -> Result<std::result::Result<String, Line>> {
    let broken = |what: String| Ok(Err(arch_line(Verdict::Broken, arch, what).fixed_by(fix)));
    match bf.winner(program).ok().flatten() {
        Some((name, _)) if name != e.name => return Ok(Err(shadowed(bf, s, arch, &name, fix))),
        _ => {}
    }
    let path = probes.write(arch, program)?;
    if let Err(why) = probes.exec(&path, None, None, PROBE_STATUS)? {
        return broken(format!("the probe program {why}"));
    }
    let mut ran = format!("probe exited {PROBE_STATUS} through {}", e.name);
    if let Some(argv0) = programs::program(arch, Kind::Argv0) {
        let want = ARGV0.as_bytes()[0];
        let path = probes.write(&format!("{arch}-argv0"), &argv0)?;
        if let Err(why) = probes.exec(&path, Some(ARGV0), None, want)? {
            return broken(format!(
                "programs lose their argv[0]: the argv0 probe, started as {ARGV0:?}, {why} (it exits with the first byte of its argv[0]; 47 is '/', the program's path)"
            ));
        }
        ran.push_str("; argv[0] kept");
    }
    if !e.flags.contains('C') {
        return Ok(Ok(ran));
    }
    let Some(euid) = programs::program(arch, Kind::Euid) else {
        return Ok(Ok(ran));
    };
    let Some(path) = probes.write_setuid(arch, &euid)? else {
        return Ok(Ok(ran));
    };
    let want = (PROBE_OWNER & 0xff) as u8;
    if let Err(why) = probes.exec(&path, None, Some(NOBODY), want)? {
        return broken(format!(
            "setuid programs do not get their file's credentials: the euid probe, setuid to uid {PROBE_OWNER} and started as uid {NOBODY}, {why} ({} would be the caller's uid)",
            NOBODY & 0xff
        ));
    }
    ran.push_str("; setuid runs as the file's owner");
    Ok(Ok(ran))
}

/// The carried or by-path emulator `m` against the file it was installed
/// from (issue 13): a stale copy breaks the entry (`Err`: its line); a
/// vanished source or one not compared is a note.
fn compare_source(
    m: &status::EmulatorStatus,
    arch: &str,
    fix: &str,
    verdict: &mut Verdict,
    notes: &mut Vec<String>,
) -> std::result::Result<(), Line> {
    match m.source {
        "stale" => {
            return Err(arch_line(
                Verdict::Broken,
                arch,
                format!(
                    "the carried emulator is stale: {} changed since install ({} -> {}), programs still run the old copy",
                    m.emulator,
                    m.version.as_deref().unwrap_or("version unknown"),
                    m.source_version.as_deref().unwrap_or("version unknown")
                ),
            )
            .fixed_by(fix))
        }
        "vanished" if m.carried => {
            *verdict = verdict.max_note();
            notes.push(format!(
                "{} is gone since install: the carried copy runs but gets no updates",
                m.emulator
            ));
        }
        "unknown" => {
            *verdict = verdict.max_note();
            notes.push(format!(
                "not compared with its source: {}",
                m.source_note.as_deref().unwrap_or("no install record")
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The line for an arch whose programs another entry takes first.
fn shadowed(bf: &Binfmt, s: &Status, arch: &str, winner: &str, fix: &str) -> Line {
    let interp = s
        .entries
        .iter()
        .find(|x| x.name == winner)
        .map_or(String::new(), |o| format!(" ({})", o.interpreter));
    arch_line(
        Verdict::Broken,
        arch,
        format!(
            "programs run through {winner}{interp}, which the kernel tries first; installing again makes ours the newest, or remove theirs with echo -1 > {}/{winner}",
            bf.root().display()
        ),
    )
    .fixed_by(fix)
}

/// The options every install command doctor prints needs to act on what
/// doctor looked at: its binfmt_misc directory and binfmt.d directory, when
/// not the defaults (issue 18, item 1: a fix works as printed).
fn command_tail(opts: &Options) -> String {
    let mut tail = String::new();
    if let Some(d) = &opts.binfmt_dir {
        tail.push_str(&format!(" --binfmt-dir {}", d.display()));
    }
    if opts.binfmt_d_dir != Path::new(crate::cli::DEFAULT_BINFMT_D_DIR) {
        tail.push_str(&format!(" --binfmt-d-dir {}", opts.binfmt_d_dir.display()));
    }
    tail
}

/// The install command that registers `e` again as it is: same install
/// directory and the same choices of carrying, credentials and pinning
/// (`tail`: see [`command_tail`]). Install takes each emulator from where
/// the last install found it (issue 18, item 1), so no --emulator-dir.
fn install_command(arch: &str, interpreter: &str, flags: &str, tail: &str) -> String {
    let mut cmd = format!("qemu-shim install {arch}");
    if let Some(dir) = Path::new(interpreter).parent() {
        if dir != Path::new(crate::cli::DEFAULT_INSTALL_DIR) {
            cmd.push_str(&format!(" --install-dir {}", dir.display()));
        }
    }
    // Carried emulators give the entry O (or C, which implies it).
    if !flags.contains('O') {
        cmd.push_str(" --no-carry");
    }
    // O without C: carried, registered with --no-credentials.
    if flags.contains('O') && !flags.contains('C') {
        cmd.push_str(" --no-credentials");
    }
    if !flags.contains('F') {
        cmd.push_str(" --no-pin");
    }
    cmd.push_str(tail);
    cmd
}

/// The argv[0] the argv0 probe is started with; it exits with its first
/// byte (90). Without P the program would see its path instead ('/', 47).
const ARGV0: &str = "Zqemu-shim-argv0";

/// The owner the setuid probe is given: not root (whose uid 0 a broken
/// program might exit with by chance), not the caller's, and unused by
/// Debian's static system users. Only the setuid bit is set, not setgid.
const PROBE_OWNER: u32 = 42;

/// Who starts the setuid probe: nobody.
const NOBODY: u32 = 65534;

/// A private directory for probe programs, removed on drop.
#[derive(Default)]
pub struct Probes {
    dir: Option<PathBuf>,
    /// The directory for the setuid probes, once made.
    setuid_dir: Option<PathBuf>,
    /// Why the setuid probes cannot run here, once known.
    setuid_skipped: Option<String>,
}

impl Probes {
    fn dir(&mut self) -> Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let d = private_dir(&std::env::temp_dir())?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// Writes `program` as `probe-NAME` in `dir` (or the private
    /// directory), mode 0755.
    fn write_in(dir: &Path, name: &str, program: &[u8]) -> Result<PathBuf> {
        let path = dir.join(format!("probe-{name}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&path)
            .map_err(|e| Error::io("cannot write", &path, &e))?;
        f.write_all(program)
            .map_err(|e| Error::io("cannot write", &path, &e))?;
        Ok(path)
    }

    pub fn write(&mut self, name: &str, program: &[u8]) -> Result<PathBuf> {
        let d = self.dir()?;
        Probes::write_in(&d, name, program)
    }

    /// Writes `program` setuid to [`PROBE_OWNER`] where nobody can run it,
    /// or `None` (with `setuid_skipped` saying why) where that cannot be
    /// done: not root, a directory mounted nosuid, or a user namespace that
    /// does not map the uids.
    fn write_setuid(&mut self, arch: &str, program: &[u8]) -> Result<Option<PathBuf>> {
        if self.setuid_skipped.is_some() {
            return Ok(None);
        }
        match self.setuid_path(arch, program)? {
            Ok(p) => Ok(Some(p)),
            Err(why) => {
                self.setuid_skipped = Some(why);
                Ok(None)
            }
        }
    }

    fn setuid_path(
        &mut self,
        arch: &str,
        program: &[u8],
    ) -> Result<std::result::Result<PathBuf, String>> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        use nix::unistd::{chown, Uid};
        let me = nix::unistd::geteuid();
        if !me.is_root() {
            return Ok(Err(format!(
                "doctor runs as uid {me}; as root it gives a probe to another user"
            )));
        }
        let d = self.dir()?;
        if statvfs(&d).is_ok_and(|st| st.flags().contains(FsFlags::ST_NOSUID)) {
            return Ok(Err(format!(
                "{} is mounted nosuid (set TMPDIR to a directory that honours setuid bits)",
                d.parent().unwrap_or(&d).display()
            )));
        }
        for uid in [PROBE_OWNER, NOBODY] {
            if !uid_mapped(uid) {
                return Ok(Err(format!(
                    "uid {uid} is not mapped in this user namespace"
                )));
            }
        }
        let sd = match &self.setuid_dir {
            Some(sd) => sd.clone(),
            None => {
                // Nobody must reach the probe but not change it: root's
                // directories that others may pass, not list or write.
                let sd = d.join("setuid");
                fs::DirBuilder::new()
                    .mode(0o711)
                    .create(&sd)
                    .map_err(|e| Error::io("cannot create", &sd, &e))?;
                set_mode(&sd, 0o711)?;
                set_mode(&d, 0o711)?;
                self.setuid_dir = Some(sd.clone());
                sd
            }
        };
        let path = Probes::write_in(&sd, &format!("{arch}-setuid"), program)?;
        if let Err(e) = chown(&path, Some(Uid::from_raw(PROBE_OWNER)), None) {
            return Ok(Err(format!(
                "cannot give files to uid {PROBE_OWNER} here ({e}; a user namespace that does not map it?)"
            )));
        }
        // After chown, which clears the setuid bit.
        set_mode(&path, 0o4755)?;
        Ok(Ok(path))
    }

    /// Executes the probe at `path`, with `arg0` as its argv[0] and as
    /// `uid` (and its group, no others) if given; `Ok(Err(why))` when it
    /// did not exit with `want`.
    pub fn exec(
        &mut self,
        path: &Path,
        arg0: Option<&str>,
        uid: Option<u32>,
        want: u8,
    ) -> Result<std::result::Result<(), String>> {
        use std::os::unix::process::CommandExt;
        let mut tries = 0;
        let mut child = loop {
            let mut cmd = Command::new(path);
            if let Some(a) = arg0 {
                cmd.arg0(a);
            }
            if let Some(u) = uid {
                // std drops the supplementary groups when root sets a uid.
                cmd.uid(u).gid(u);
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
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && uid.is_none() => {
                    return Err(Error::io("cannot run probe", path, &e)
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
        let Some((status, err)) = crate::child::wait_for(&mut child, PROBE_TIMEOUT)
            .map_err(|e| Error::io("cannot wait for probe", path, &e))?
        else {
            return Ok(Err(format!(
                "did not finish in {} s",
                PROBE_TIMEOUT.as_secs()
            )));
        };
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

/// Whether `uid` means a user here: in the initial user namespace every uid
/// does; in another, only those its uid_map maps.
fn uid_mapped(uid: u32) -> bool {
    let Ok(map) = fs::read_to_string("/proc/self/uid_map") else {
        return true;
    };
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        matches!(f[..], [inside, _, count] if (inside..inside + count).contains(&u64::from(uid)))
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot change the mode of", path, &e))
}

/// Name prefix of doctor's probe directories; the pid follows, so
/// [`qemu_shim_registry::probe::remove_stale_dirs`] can tell a killed
/// run's leftover (it removes only the caller's own).
const DIR_PREFIX: &str = "qemu-shim-doctor.";

/// A new directory for probe programs in `parent`, mode 0700:
/// `qemu-shim-doctor.PID.XXXXXX`, made by mkdtemp. Its name cannot be
/// guessed, so no other user can have put anything there first, and a
/// name already taken is skipped, never removed (issue 10, item 5: a
/// predictable name was removed whoever owned it).
fn private_dir(parent: &Path) -> Result<PathBuf> {
    qemu_shim_registry::probe::remove_stale_dirs(parent, DIR_PREFIX);
    let template = parent.join(format!("{DIR_PREFIX}{}.XXXXXX", std::process::id()));
    let d = nix::unistd::mkdtemp(&template)
        .map_err(|e| Error::io("cannot create a directory in", parent, &io::Error::from(e)))?;
    // mkdtemp asks for 0700, which the umask may have cut.
    set_mode(&d, 0o700)?;
    Ok(d)
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

    /// Issue 10, item 5: the probe directory's name cannot be guessed, and
    /// what another user left at a name doctor once used is not removed.
    #[test]
    fn the_probe_directory_is_new_and_private_and_spares_others() {
        use std::os::unix::fs::MetadataExt;
        let parent = crate::testutil::TempDir::new();
        let planted = parent
            .path()
            .join(format!("qemu-shim-doctor.{}", std::process::id()));
        fs::create_dir(&planted).unwrap();
        fs::write(planted.join("theirs"), b"").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        if me == 0 {
            for p in [planted.clone(), planted.join("theirs")] {
                std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            }
        }
        let d = private_dir(parent.path()).unwrap();
        assert!(
            planted.join("theirs").exists(),
            "another user's directory was removed"
        );
        assert_ne!(d, planted);
        let m = fs::symlink_metadata(&d).unwrap();
        assert!(m.is_dir());
        assert_eq!((m.uid(), m.mode() & 0o7777), (me, 0o700));
        let again = private_dir(parent.path()).unwrap();
        assert_ne!(again, d, "two probe directories share a name");
    }

    #[test]
    fn the_probe_statuses_differ_from_failures_and_from_each_other() {
        // 'Z' (90) is not '/' (47), the first byte of a path.
        assert_eq!(ARGV0.as_bytes()[0], 90);
        let owner = (PROBE_OWNER & 0xff) as u8;
        let caller = (NOBODY & 0xff) as u8;
        for s in [PROBE_STATUS, owner, caller, 90] {
            assert!(![0, 1, 47, 126, 127].contains(&s), "{s}");
        }
        assert_ne!(owner, caller);
    }

    /// Issue 18, item 7: the text line and `doctor --json`'s check are
    /// one value; the fix is a command of its own in JSON.
    #[test]
    fn a_line_renders_its_arch_message_and_fix() {
        let l = arch_line(Verdict::Broken, "s390x", "programs run through x")
            .fixed_by("qemu-shim install s390x");
        assert_eq!(
            l.text(),
            "s390x: programs run through x (fix: qemu-shim install s390x)"
        );
        let r = Report::new(
            Path::new("/b"),
            vec![line(Verdict::Ok, "binfmt_misc mounted"), l],
        );
        assert_eq!(r.exit_code(), crate::EXIT_FAILED);
        let mut out = Vec::new();
        write_text(&mut out, &r);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok      binfmt_misc mounted
BROKEN  s390x: programs run through x (fix: qemu-shim install s390x)
"
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "binfmt_misc": "/b",
                "ok": false,
                "checks": [
                    {"verdict": "ok", "arch": null, "message": "binfmt_misc mounted",
                     "fix": null},
                    {"verdict": "broken", "arch": "s390x", "message": "programs run through x",
                     "fix": "qemu-shim install s390x"}
                ]
            })
        );
        let fine = Report::new(Path::new("/b"), vec![line(Verdict::Note, "n")]);
        assert_eq!((fine.ok, fine.exit_code()), (true, crate::EXIT_OK));
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
            mid.iter().any(|l| l.message.contains("lacks AT_FLAGS")),
            "{mid:?}"
        );
        let old = kernel_lines(Some(Kernel(4, 4)));
        assert!(
            old.iter()
                .any(|l| l.verdict == Verdict::Broken && l.message.contains("lacks F")),
            "{old:?}"
        );
        assert_eq!(kernel_lines(None)[0].verdict, Verdict::Note);
    }
}
