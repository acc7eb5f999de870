//! End-to-end cost of qemu-shim: emulated execs through the installed shim
//! against qemu-aarch64-static registered directly with the same flags,
//! timed in pairs in the same run, in a private binfmt_misc instance.
//!
//! Run it with `scripts/bench-e2e [--rounds N] [--execs M]`, which fetches
//! the fixtures, builds the release binaries and then runs this with
//! `cargo bench --bench e2e -- …`. Method and results: docs/benchmarks.md.
//!
//! The host's binfmt_misc table is never touched: the program re-executes
//! itself under `unshare --user --map-root-user --mount`, mounts a private
//! binfmt_misc instance (kernel >= 6.7), installs qemu-shim there with the
//! release CLI, and registers qemu directly under another name for a copy
//! of the test program that only that entry matches (its ELF padding byte
//! `e_ident[15]` set to 1, which every qemu-shim row requires to be 0).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use qemu_shim_registry::arch;
use qemu_shim_registry::binfmt::{entry_name, Binfmt, DEFAULT_ROOT};
use qemu_shim_registry::format::{Kind, RegisterLine};
use qemu_shim_suite::{fixtures_dir, target_dir, Scratch, FETCH_SCRIPT};

/// The direct entry's name: not `qemu-shim-…`, which the CLI owns.
const DIRECT_ENTRY: &str = "bench-direct-aarch64";
/// The ELF padding byte the direct copy sets.
const PAD_BYTE: usize = 15;
/// What `busybox uname -m` prints under qemu-aarch64.
const EXPECT_MACHINE: &str = "aarch64";

type Result<T, E = String> = std::result::Result<T, E>;

/// How qemu-shim is installed for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `qemu-shim install`: the emulators carried in the interpreter file,
    /// pre-relocated for an address drawn at install time.
    Carry,
    /// `qemu-shim install --no-prelink`: carried, relocated by qemu itself
    /// at each start, at a per-exec random address.
    CarryNoPrelink,
    /// `qemu-shim install --no-carry`: the interpreter execs qemu by path.
    Path,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Carry, Mode::CarryNoPrelink, Mode::Path];

    fn name(self) -> &'static str {
        match self {
            Mode::Carry => "carry",
            Mode::CarryNoPrelink => "carry-no-prelink",
            Mode::Path => "path",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Mode::Carry => {
                "emulator carried in the interpreter file, pre-relocated for an address drawn \
                 at install time (`qemu-shim install`, the default)"
            }
            Mode::CarryNoPrelink => {
                "emulator carried in the interpreter file, relocated at each start at a \
                 per-exec random address (`qemu-shim install --no-prelink`)"
            }
            Mode::Path => "interpreter execs qemu by path (`qemu-shim install --no-carry`)",
        }
    }
    fn install_args(self) -> &'static [&'static str] {
        match self {
            Mode::Carry => &[],
            Mode::CarryNoPrelink => &["--no-prelink"],
            Mode::Path => &["--no-carry"],
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    rounds: usize,
    execs: usize,
    /// 0: skip the start-up measurement.
    startup_execs: usize,
    modes: Vec<Mode>,
    /// Alternate shim and direct exec by exec instead of in blocks.
    interleave: bool,
    /// Exec the programs by a relative path.
    relative: bool,
    /// Set in the re-executed child: the scratch directory to work in.
    inside: Option<PathBuf>,
}

const USAGE: &str = "usage: scripts/bench-e2e [--rounds N] [--execs M] [--mode MODE[,MODE...]]
                        [--interleave] [--relative] [--startup-execs K]
  --rounds N         paired rounds (default 15)
  --execs M          emulated `busybox true` per side per round (default 200)
  --mode MODES       how qemu-shim is installed, comma-separated, run one after
                     the other: carry (the default install), carry-no-prelink
                     (install --no-prelink), path (install --no-carry), or all
                     (default all)
  --interleave       alternate shim and direct exec by exec within a round
                     (default: M shim execs then M direct ones, or the other
                     way round, alternating per round); steadier on a busy
                     machine
  --relative         exec the programs by a relative path (`shim/busybox`
                     from their parent directory), as a shell running
                     `./prog` does: the interpreter then also makes the path
                     absolute for qemu (getcwd, stat); default: absolute
  --startup-execs K  execs per side when timing the bare interpreter
                     (default 1000; 0 skips it)";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 15,
        execs: 200,
        startup_execs: 1000,
        modes: Mode::ALL.to_vec(),
        interleave: false,
        relative: false,
        inside: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |name: &str, v: &String, min: usize| match v.parse::<usize>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("{name} takes a number >= {min}, not {v:?}")),
        };
        match a.as_str() {
            "--rounds" => o.rounds = num(a, value(a)?, 1)?,
            "--execs" => o.execs = num(a, value(a)?, 1)?,
            "--startup-execs" => o.startup_execs = num(a, value(a)?, 0)?,
            "--mode" => {
                let v = value(a)?;
                o.modes = if v == "all" {
                    Mode::ALL.to_vec()
                } else {
                    v.split(',')
                        .map(|m| {
                            Mode::ALL.into_iter().find(|k| k.name() == m).ok_or(format!(
                                "--mode takes carry, carry-no-prelink, path or all, not {m:?}"
                            ))
                        })
                        .collect::<Result<_>>()?
                };
            }
            "--inside" => {
                let v = it.next().ok_or("--inside needs a directory")?;
                o.inside = Some(PathBuf::from(v));
            }
            "--interleave" => o.interleave = true,
            "--relative" => o.relative = true,
            // cargo bench passes --bench; libtest-style flags are ignored.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` (or --all-targets) runs bench targets without
    // `--bench`: this one needs fixtures, release binaries and a user
    // namespace, and takes minutes, so it only says how to run it.
    if !args.iter().any(|a| a == "--bench" || a == "--inside") {
        println!("e2e: not run under cargo test; run scripts/bench-e2e");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = parse_args(&args).and_then(|o| match &o.inside {
        None => outside(&o),
        Some(dir) => inside(&o, dir),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-e2e: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Paths this benchmark needs from the build and the fixture cache.
struct Inputs {
    cli: PathBuf,
    interp: PathBuf,
    emulators: PathBuf,
    qemu: PathBuf,
    busybox: PathBuf,
}

fn inputs() -> Result<Inputs> {
    let release = target_dir().join("release");
    let fix = fixtures_dir();
    let i = Inputs {
        cli: release.join("qemu-shim"),
        interp: release.join("qemu-shim-interp"),
        emulators: fix.join("qemu"),
        qemu: fix.join("qemu/qemu-aarch64-static"),
        busybox: fix.join("busybox/arm64/busybox"),
    };
    for p in [&i.cli, &i.interp] {
        if !p.exists() {
            return Err(format!(
                "{} is missing: build the release binaries (scripts/bench-e2e does)",
                p.display()
            ));
        }
    }
    for p in [&i.qemu, &i.busybox] {
        if !p.exists() {
            return Err(format!(
                "fixture {} is missing: run `{FETCH_SCRIPT}` first",
                p.display()
            ));
        }
    }
    Ok(i)
}

/// Prepares the two copies of the test program and re-executes this
/// program in a new user and mount namespace.
fn outside(o: &Options) -> Result<()> {
    let i = inputs()?;
    let scratch = Scratch::new("bench-e2e");
    let prog = fs::read(&i.busybox).map_err(|e| format!("read {}: {e}", i.busybox.display()))?;
    for (dir, pad) in [("shim", 0u8), ("direct", 1u8)] {
        let mut bytes = prog.clone();
        let b = bytes
            .get_mut(PAD_BYTE)
            .ok_or("busybox fixture is shorter than an ELF header")?;
        *b = pad;
        let d = scratch.join(dir);
        fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        // Named busybox in both places: busybox picks the applet from
        // argv[1] only when its argv[0] is "busybox".
        let p = d.join("busybox");
        fs::write(&p, &bytes).map_err(|e| format!("write {}: {e}", p.display()))?;
        qemu_shim_suite::set_mode(&p, 0o755);
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    print_machine(&i)?;
    for (k, mode) in o.modes.iter().enumerate() {
        // A new namespace per mode: each run starts from an empty
        // binfmt_misc instance. The start-up cost is measured once.
        let startup = if k == 0 { o.startup_execs } else { 0 };
        let status = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--"])
            .arg(&me)
            .arg("--inside")
            .arg(scratch.path())
            .args(["--mode", mode.name()])
            .args(["--rounds", &o.rounds.to_string()])
            .args(["--execs", &o.execs.to_string()])
            .args(["--startup-execs", &startup.to_string()])
            .args(o.interleave.then_some("--interleave"))
            .args(o.relative.then_some("--relative"))
            .status()
            .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
        if !status.success() {
            // The child printed its own error line.
            return Err(format!(
                "the namespaced run ({}) failed ({status})",
                mode.name()
            ));
        }
    }
    Ok(())
}

fn print_machine(i: &Inputs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = output(Command::new(&i.qemu).arg("-version"))?;
    println!(
        "machine: {} ({cores} cores), kernel {}",
        cpu_model(),
        kernel.trim()
    );
    println!("emulator: {}", qemu.lines().next().unwrap_or(""));
    println!(
        "address randomisation (kernel.randomize_va_space): {}",
        fs::read_to_string("/proc/sys/kernel/randomize_va_space")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into())
    );
    println!(
        "load average at start: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "interpreter as built: {} bytes ({})",
        size(&i.interp)?,
        i.interp.display()
    );
    // Which sources the release binaries were built from, when this runs
    // in a git checkout (scripts/bench-e2e builds them just before).
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(qemu_shim_suite::repo_root())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(head) = git(&["rev-parse", "--short", "HEAD"]) {
        let dirty = git(&[
            "status",
            "--porcelain",
            "--",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
        ])
        .is_some_and(|s| !s.is_empty());
        println!(
            "source: commit {head}{}",
            if dirty {
                " with uncommitted changes under crates/"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Runs a command, returning its stdout, or one line saying what failed.
fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn inside(o: &Options, dir: &Path) -> Result<()> {
    let i = inputs()?;
    let mode = *o.modes.first().ok_or("no mode")?;
    let shim_prog = dir.join("shim/busybox");
    let direct_prog = dir.join("direct/busybox");
    let install_dir = dir.join(format!("install-{}", mode.name()));

    output(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", DEFAULT_ROOT]))
        .map_err(|e| format!("{e} (a private binfmt_misc instance needs kernel >= 6.7)"))?;
    let binfmt = Binfmt::new(DEFAULT_ROOT);
    let listed = binfmt.list().map_err(|e| e.to_string())?;
    if !listed.is_empty() {
        return Err(format!(
            "{DEFAULT_ROOT} is not a fresh private instance ({} entries)",
            listed.len()
        ));
    }

    // qemu-shim, installed the way users install it.
    output(
        Command::new(&i.cli)
            .arg("install")
            .arg("--emulator-dir")
            .arg(&i.emulators)
            .arg("--install-dir")
            .arg(&install_dir)
            .arg("--interpreter")
            .arg(&i.interp)
            .args(mode.install_args()),
    )?;
    let shim_name = entry_name("aarch64");
    let shim = binfmt
        .read(&shim_name)
        .map_err(|e| e.to_string())?
        .ok_or(format!("`qemu-shim install` registered no {shim_name}"))?;

    // qemu registered directly: the same flags and mask as the shim's
    // entry, the magic demanding the padding byte the direct copy has.
    let (Some(magic), Some(mask), Some(offset)) = (&shim.magic, &shim.mask, shim.offset) else {
        return Err(format!("{shim_name} is not a magic entry with a mask"));
    };
    if offset != 0 || mask.get(PAD_BYTE) != Some(&0xff) {
        return Err(format!(
            "{shim_name}'s mask does not cover e_ident[{PAD_BYTE}]: the direct copy would \
             match it too; pick another byte"
        ));
    }
    let mut direct_magic = magic.clone();
    *direct_magic
        .get_mut(PAD_BYTE)
        .ok_or(format!("{shim_name}'s magic is shorter than e_ident"))? = 1;
    let line = RegisterLine {
        name: DIRECT_ENTRY.to_owned(),
        kind: Kind::Magic {
            offset: 0,
            magic: direct_magic,
            mask: Some(mask.clone()),
        },
        interpreter: i.qemu.display().to_string(),
        flags: shim.flags,
    };
    line.validate().map_err(|e| e.to_string())?;
    // Registered after the shim's entries, so the kernel tries it first:
    // the direct copy matches at once, the shim's copy first fails this
    // magic. Any bias from the walk is against the shim.
    binfmt.register(&line).map_err(|e| e.to_string())?;

    verify_routing(&binfmt, &shim_name, &shim_prog, &direct_prog)?;

    println!();
    println!("## {}: qemu-shim vs qemu registered directly", mode.name());
    println!("shim: {}", mode.describe());
    println!(
        "entries: {} (qemu-shim's, flags {}, plus {DIRECT_ENTRY} with the same flags); \
         installed interpreter {} bytes",
        binfmt.list().map_err(|e| e.to_string())?.len(),
        shim.raw_flags,
        size(Path::new(&shim.interpreter))?
    );
    let (shim_prog, direct_prog) = if o.relative {
        std::env::set_current_dir(dir).map_err(|e| format!("cd {}: {e}", dir.display()))?;
        (
            PathBuf::from("shim/busybox"),
            PathBuf::from("direct/busybox"),
        )
    } else {
        (shim_prog, direct_prog)
    };
    let report = Report {
        execs: o.execs,
        interleave: o.interleave,
        relative: o.relative,
        rounds: timed_rounds(o, &shim_prog, &direct_prog)?,
        memory: memory(&shim_prog, &direct_prog)?,
    };
    report.print();
    if o.startup_execs > 0 {
        let s = startup(o.startup_execs, &i.interp)?;
        println!(
            "\nfork+exec from a Rust loop, median of 5 paired rounds x {}: bare interpreter \
             (usage line, exit 126) {:.3} ms, /bin/true {:.3} ms",
            s.execs, s.interp_ms, s.true_ms
        );
    }
    Ok(())
}

fn size(p: &Path) -> Result<u64> {
    fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("stat {}: {e}", p.display()))
}

/// Proves each copy runs through its own entry and no other: the table
/// picks the right winner for each header, each copy runs, and disabling
/// an entry makes exactly its copy unrunnable (ENOEXEC).
fn verify_routing(b: &Binfmt, shim_name: &str, shim: &Path, direct: &Path) -> Result<()> {
    let head = |p: &Path| -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        let n = fs::File::open(p)
            .and_then(|mut f| f.read(&mut buf))
            .map_err(|e| format!("read {}: {e}", p.display()))?;
        buf.truncate(n);
        Ok(buf)
    };
    let (sh, dh) = (head(shim)?, head(direct)?);
    if arch::classify(&dh).is_some() {
        return Err(format!(
            "the direct copy matches a qemu-shim row (e_ident[{PAD_BYTE}] is not masked)"
        ));
    }
    for (h, want) in [(&sh, shim_name), (&dh, DIRECT_ENTRY)] {
        let got = b.winner(h).map_err(|e| e.to_string())?.map(|(n, _)| n);
        if got.as_deref() != Some(want) {
            return Err(format!("the kernel would run {want}'s copy with {got:?}"));
        }
    }
    let machine = |p: &Path| output(Command::new(p).args(["uname", "-m"]));
    for p in [shim, direct] {
        let m = machine(p)?;
        if m.trim() != EXPECT_MACHINE {
            return Err(format!(
                "{} printed {:?} for uname -m, not {EXPECT_MACHINE}",
                p.display(),
                m.trim()
            ));
        }
    }
    for (off, dead, alive) in [(shim_name, shim, direct), (DIRECT_ENTRY, direct, shim)] {
        b.set_enabled(off, false).map_err(|e| e.to_string())?;
        let refused = Command::new(dead)
            .arg("true")
            .stdin(Stdio::null())
            .status()
            .err()
            .and_then(|e| e.raw_os_error());
        let other = machine(alive);
        b.set_enabled(off, true).map_err(|e| e.to_string())?;
        if refused != Some(libc::ENOEXEC) {
            return Err(format!(
                "with {off} disabled, {} still started (or failed otherwise: {refused:?})",
                dead.display()
            ));
        }
        other?;
    }
    Ok(())
}

/// One batch of execs: wall time, and the children's summed CPU time (user
/// plus system) and minor faults. CPU time is less disturbed than wall time
/// by other load on the machine.
#[derive(Debug, Clone, Copy)]
struct Batch {
    secs: f64,
    cpu_secs: f64,
    minflt: i64,
}

fn tv_secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Starts `prog args…` and waits for it with wait4, which also returns its
/// resource usage (std's wait does not).
fn spawn_wait(prog: &Path, args: &[&str]) -> Result<(i32, libc::rusage)> {
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", prog.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child (std never reaps it: the
    // Child is dropped without wait); status and ru are live out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        return Err(format!(
            "wait4 for {}: {}",
            prog.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok((status, ru))
}

impl Batch {
    const ZERO: Batch = Batch {
        secs: 0.0,
        cpu_secs: 0.0,
        minflt: 0,
    };
    fn add(&mut self, b: Batch) {
        self.secs += b.secs;
        self.cpu_secs += b.cpu_secs;
        self.minflt += b.minflt;
    }
}

/// Runs `prog args…` once and checks its exit code.
fn one(prog: &Path, args: &[&str], want_code: i32) -> Result<Batch> {
    let start = Instant::now();
    let (status, ru) = spawn_wait(prog, args)?;
    let secs = start.elapsed().as_secs_f64();
    let st = std::process::ExitStatus::from_raw(status);
    if st.code() != Some(want_code) {
        // Run once more with its stderr shown, for a useful message.
        let why = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default();
        return Err(format!(
            "{} {} ended with {st}, expected exit {want_code}: {why}",
            prog.display(),
            args.join(" ")
        ));
    }
    Ok(Batch {
        secs,
        cpu_secs: tv_secs(ru.ru_utime) + tv_secs(ru.ru_stime),
        minflt: ru.ru_minflt,
    })
}

/// A side's execs in one round: the sums, and each exec's wall time.
#[derive(Debug, Clone, Default)]
struct Side {
    sum: Batch,
    each: Vec<f64>,
}

impl Side {
    fn push(&mut self, b: Batch) {
        self.sum.add(b);
        self.each.push(b.secs);
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::ZERO
    }
}

/// Runs `prog args…` `n` times in a row.
fn batch(prog: &Path, args: &[&str], n: usize, want_code: i32) -> Result<Side> {
    let mut side = Side::default();
    for _ in 0..n {
        side.push(one(prog, args, want_code)?);
    }
    Ok(side)
}

/// Runs each side `n` times, alternating exec by exec, so both sides see
/// the same load from the rest of the machine.
fn interleaved(shim: &Path, direct: &Path, args: &[&str], n: usize) -> Result<(Side, Side)> {
    let (mut s, mut d) = (Side::default(), Side::default());
    for j in 0..n {
        if j % 2 == 0 {
            s.push(one(shim, args, 0)?);
            d.push(one(direct, args, 0)?);
        } else {
            d.push(one(direct, args, 0)?);
            s.push(one(shim, args, 0)?);
        }
    }
    Ok((s, d))
}

#[derive(Debug, Clone, Copy)]
struct Round {
    shim_first: bool,
    shim: Batch,
    direct: Batch,
    /// Median wall time of a single exec, each side.
    shim_median: f64,
    direct_median: f64,
}

impl Round {
    fn new(shim_first: bool, shim: Side, direct: Side) -> Round {
        Round {
            shim_first,
            shim: shim.sum,
            direct: direct.sum,
            shim_median: median(shim.each),
            direct_median: median(direct.each),
        }
    }
    fn ratio(&self) -> f64 {
        self.shim.secs / self.direct.secs
    }
    fn cpu_ratio(&self) -> f64 {
        self.shim.cpu_secs / self.direct.cpu_secs
    }
    /// Ratio of the single-exec medians: robust against a burst of load
    /// that slows a few execs a lot.
    fn median_ratio(&self) -> f64 {
        self.shim_median / self.direct_median
    }
}

fn timed_rounds(o: &Options, shim: &Path, direct: &Path) -> Result<Vec<Round>> {
    let args = ["true"];
    // Warm the page cache and the kernel's structures for both sides.
    let warm = o.execs.div_ceil(10);
    batch(shim, &args, warm, 0)?;
    batch(direct, &args, warm, 0)?;
    let mut rounds = Vec::with_capacity(o.rounds);
    println!(
        "{:>5}  {:>6}  {:>12}  {:>12}  {:>7}  {:>12}  {:>9}",
        "round", "first", "shim ms/exec", "direct ms/ex", "ratio", "median ratio", "cpu ratio"
    );
    for r in 0..o.rounds {
        // Alternate which side goes first, so drift within a round (cache,
        // frequency, neighbours) does not always favour the same side.
        let shim_first = r % 2 == 0;
        let (shim_b, direct_b) = if o.interleave {
            interleaved(shim, direct, &args, o.execs)?
        } else if shim_first {
            let s = batch(shim, &args, o.execs, 0)?;
            (s, batch(direct, &args, o.execs, 0)?)
        } else {
            let d = batch(direct, &args, o.execs, 0)?;
            (batch(shim, &args, o.execs, 0)?, d)
        };
        let round = Round::new(shim_first, shim_b, direct_b);
        println!(
            "{:>5}  {:>6}  {:>12.3}  {:>12.3}  {:>7.4}  {:>12.4}  {:>9.4}",
            r + 1,
            match (o.interleave, shim_first) {
                (true, _) => "mixed",
                (false, true) => "shim",
                (false, false) => "direct",
            },
            ms_per(round.shim.secs, o.execs),
            ms_per(round.direct.secs, o.execs),
            round.ratio(),
            round.median_ratio(),
            round.cpu_ratio()
        );
        let _ = std::io::stdout().flush();
        rounds.push(round);
    }
    Ok(rounds)
}

fn ms_per(secs: f64, n: usize) -> f64 {
    secs * 1000.0 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Memory of one emulated process: RSS and PSS while it runs (from
/// /proc/PID/smaps_rollup of a `busybox sleep`), and the peak RSS and
/// minor faults the kernel accounts to it (wait4).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kb: f64,
    pss_kb: f64,
    peak_kb: f64,
    minflt: f64,
}

fn rollup_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn one_memory(prog: &Path) -> Result<Memory> {
    let child = Command::new(prog)
        .args(["sleep", "1"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", prog.display()))?;
    let pid = child.id() as libc::pid_t;
    // Long enough for the shim's exec and qemu's start-up; the guest then
    // sleeps in nanosleep with its memory in place.
    sleep(Duration::from_millis(500));
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"));
    let mut status = 0;
    // SAFETY: as in spawn_wait.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as in spawn_wait.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid || status != 0 {
        return Err(format!(
            "{} sleep 1 failed (status {status})",
            prog.display()
        ));
    }
    let rollup = rollup.map_err(|e| format!("read /proc/{pid}/smaps_rollup: {e}"))?;
    let field = |k: &str| {
        rollup_field(&rollup, k).ok_or(format!("no {k} line in /proc/{pid}/smaps_rollup"))
    };
    Ok(Memory {
        rss_kb: field("Rss:")?,
        pss_kb: field("Pss:")?,
        peak_kb: ru.ru_maxrss as f64,
        minflt: ru.ru_minflt as f64,
    })
}

/// Medians over five processes per side, alternating sides.
fn memory(shim: &Path, direct: &Path) -> Result<(Memory, Memory)> {
    let mut s = Vec::new();
    let mut d = Vec::new();
    for _ in 0..5 {
        s.push(one_memory(shim)?);
        d.push(one_memory(direct)?);
    }
    let med = |v: &[Memory]| Memory {
        rss_kb: median(v.iter().map(|m| m.rss_kb).collect()),
        pss_kb: median(v.iter().map(|m| m.pss_kb).collect()),
        peak_kb: median(v.iter().map(|m| m.peak_kb).collect()),
        minflt: median(v.iter().map(|m| m.minflt).collect()),
    };
    Ok((med(&s), med(&d)))
}

/// Start-up cost of the bare interpreter (no arguments: it prints its usage
/// line and exits 126) against /bin/true, paired over five rounds.
struct Startup {
    interp_ms: f64,
    true_ms: f64,
    execs: usize,
}

fn startup(n: usize, interp: &Path) -> Result<Startup> {
    let t = Path::new("/bin/true");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..5 {
        if r % 2 == 0 {
            a.push(batch(interp, &[], n, 126)?.sum.secs);
            b.push(batch(t, &[], n, 0)?.sum.secs);
        } else {
            b.push(batch(t, &[], n, 0)?.sum.secs);
            a.push(batch(interp, &[], n, 126)?.sum.secs);
        }
    }
    Ok(Startup {
        interp_ms: ms_per(median(a), n),
        true_ms: ms_per(median(b), n),
        execs: n,
    })
}

struct Report {
    execs: usize,
    interleave: bool,
    relative: bool,
    rounds: Vec<Round>,
    memory: (Memory, Memory),
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

impl Report {
    fn print(&self) {
        let m = self.execs;
        let per_round =
            |f: &dyn Fn(&Round) -> f64| -> Vec<f64> { self.rounds.iter().map(f).collect() };
        let ratios = per_round(&Round::ratio);
        let cpu_ratios = per_round(&Round::cpu_ratio);
        let median_ratios = per_round(&Round::median_ratio);
        let range = |v: &[f64]| {
            v.iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)))
        };
        let ((lo, hi), (clo, chi)) = (range(&ratios), range(&cpu_ratios));
        let (mlo, mhi) = range(&median_ratios);
        let shim_one = median(per_round(&|r| r.shim_median * 1000.0));
        let direct_one = median(per_round(&|r| r.direct_median * 1000.0));
        let shim_ms = median(per_round(&|r| ms_per(r.shim.secs, m)));
        let direct_ms = median(per_round(&|r| ms_per(r.direct.secs, m)));
        let shim_cpu = median(per_round(&|r| ms_per(r.shim.cpu_secs, m)));
        let direct_cpu = median(per_round(&|r| ms_per(r.direct.cpu_secs, m)));
        let shim_flt = median(per_round(&|r| r.shim.minflt as f64 / m as f64));
        let direct_flt = median(per_round(&|r| r.direct.minflt as f64 / m as f64));
        let (ms, md) = self.memory;
        println!();
        println!(
            "{} paired rounds x {m} emulated `busybox true` per side, {}; \
             address randomisation on; {}",
            self.rounds.len(),
            if self.interleave {
                "alternating exec by exec"
            } else {
                "in blocks, which side first alternating per round"
            },
            if self.relative {
                "started by a relative path"
            } else {
                "started by an absolute path"
            }
        );
        println!();
        println!("| per emulated exec | shim | direct | shim/direct |");
        println!("|---|---|---|---|");
        println!(
            "| wall time (median of rounds) | {shim_ms:.3} ms | {direct_ms:.3} ms | \
             **{:.3}** (median of per-round ratios; min {lo:.3}, max {hi:.3}) |",
            median(ratios.clone())
        );
        println!(
            "| wall time of a single exec, median within each round | {shim_one:.3} ms | \
             {direct_one:.3} ms | {:.3} (median of per-round ratios; min {mlo:.3}, max {mhi:.3}) |",
            median(median_ratios)
        );
        println!(
            "| CPU time, user+sys (wait4) | {shim_cpu:.3} ms | {direct_cpu:.3} ms | \
             {:.3} (min {clo:.3}, max {chi:.3}) |",
            median(cpu_ratios)
        );
        println!(
            "| minor page faults (wait4) | {shim_flt:.0} | {direct_flt:.0} | {:+.0} |",
            shim_flt - direct_flt
        );
        println!(
            "| RSS of a running `busybox sleep` (smaps_rollup) | {:.0} kB | {:.0} kB | {:.3} |",
            ms.rss_kb,
            md.rss_kb,
            ms.rss_kb / md.rss_kb
        );
        println!(
            "| PSS of the same | {:.0} kB | {:.0} kB | {:.3} |",
            ms.pss_kb,
            md.pss_kb,
            ms.pss_kb / md.pss_kb
        );
        println!(
            "| peak RSS (wait4 ru_maxrss) | {:.0} kB | {:.0} kB | {:.3} |",
            ms.peak_kb,
            md.peak_kb,
            ms.peak_kb / md.peak_kb
        );
        let by_order = |first: bool| {
            median(
                self.rounds
                    .iter()
                    .filter(|r| r.shim_first == first)
                    .map(Round::ratio)
                    .collect(),
            )
        };
        println!();
        println!(
            "wall difference: {:+.3} ms per exec (median shim - median direct); order check: \
             median ratio {:.3} in rounds the shim ran first, {:.3} when direct did",
            shim_ms - direct_ms,
            by_order(true),
            by_order(false)
        );
    }
}
