//! End-to-end cost of qemu-shim: emulated execs through the installed shim
//! against the same qemu registered directly with the same flags, timed in
//! pairs in the same run, in a private binfmt_misc instance, for each arch
//! asked for.
//!
//! Run it with `scripts/bench-e2e [--arch LIST] [--workload W] …`, which
//! fetches the fixtures, builds the release binaries and then runs this
//! with `cargo bench --bench e2e -- …`. Method and results:
//! docs/benchmarks.md.
//!
//! The host's binfmt_misc table is never touched: the program re-executes
//! itself under `unshare --user --map-root-user --mount`, mounts a private
//! binfmt_misc instance (kernel >= 6.7), installs qemu-shim there with the
//! release CLI, and registers qemu directly under another name for a copy
//! of the test program that only that entry matches (its ELF padding byte
//! `e_ident[15]` set to 1, which every qemu-shim row requires to be 0).
//!
//! Two workloads:
//! - `true` (default): a static program's `true` applet, per arch: Debian's
//!   busybox-static, or for an arch Debian 12 has no busybox-static for
//!   (riscv64) a static Go program built here from benches/e2e-prog/main.go.
//! - `exec-heavy`: a shell script in Debian's arm64 root (the debootstrap
//!   fixture, under an overlay so the fixture stays as it is) that runs
//!   short dynamically linked programs (`expr`, `sed`, `grep`, `dpkg
//!   --version`) in a loop, each side with its own copies of bash and the
//!   programs.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use qemu_shim_registry::arch;
use qemu_shim_registry::binfmt::{entry_name, Binfmt, DEFAULT_ROOT};
use qemu_shim_registry::format::{EntryFile, Kind, RegisterLine};
use qemu_shim_suite::{fixtures_dir, target_dir, Scratch, FETCH_SCRIPT};

/// The ELF padding byte the direct copy sets.
const PAD_BYTE: usize = 15;

type Result<T, E = String> = std::result::Result<T, E>;

/// Where an arch's test program comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Debian's busybox-static for this Debian arch (a fixture).
    Busybox(&'static str),
    /// benches/e2e-prog/main.go, built here for this GOARCH.
    Go(&'static str),
}

/// One arch the benchmark can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    /// The arch table's name (`qemu-shim-<arch>`, `qemu-<arch>-static`).
    arch: &'static str,
    source: Source,
    /// What the program's `uname -m` prints under qemu 7.2.
    machine: &'static str,
}

impl Target {
    /// The copies' file name: busybox picks its applet from argv[1] only
    /// when its argv[0] is "busybox".
    fn file_name(&self) -> &'static str {
        match self.source {
            Source::Busybox(_) => "busybox",
            Source::Go(_) => "benchprog",
        }
    }
    fn describe(&self) -> String {
        match self.source {
            Source::Busybox(d) => format!("Debian busybox-static {d}"),
            Source::Go(g) => format!("Go-built static benchprog, GOARCH={g}"),
        }
    }
}

/// Every arch this benchmark knows; the first six are the default.
const TARGETS: &[Target] = &[
    Target {
        arch: "aarch64",
        source: Source::Busybox("arm64"),
        machine: "aarch64",
    },
    Target {
        arch: "arm",
        source: Source::Busybox("armhf"),
        machine: "armv7l",
    },
    Target {
        arch: "s390x",
        source: Source::Busybox("s390x"),
        machine: "s390x",
    },
    Target {
        arch: "ppc64le",
        source: Source::Busybox("ppc64el"),
        machine: "ppc64le",
    },
    Target {
        arch: "riscv64",
        source: Source::Go("riscv64"),
        machine: "riscv64",
    },
    Target {
        arch: "mips64el",
        source: Source::Busybox("mips64el"),
        machine: "mips64",
    },
    // Cheap extras (`--arch all`): a busybox fixture, or Go's own ports.
    Target {
        arch: "mipsel",
        source: Source::Busybox("mipsel"),
        machine: "mips",
    },
    Target {
        arch: "ppc64",
        source: Source::Go("ppc64"),
        machine: "ppc64",
    },
    Target {
        arch: "mips64",
        source: Source::Go("mips64"),
        machine: "mips64",
    },
];
const DEFAULT_TARGETS: usize = 6;

/// What each emulated exec runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// The static program's `true`, per arch.
    True,
    /// A bash script in the arm64 Debian root running `expr`, `sed`,
    /// `grep` and `dpkg --version` in a loop.
    ExecHeavy,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::True => "true",
            Workload::ExecHeavy => "exec-heavy",
        }
    }
}

/// The dynamically linked programs of the exec-heavy workload (from the
/// root's /usr/bin), bash first: it runs the script.
const HEAVY_PROGRAMS: [&str; 5] = ["bash", "expr", "sed", "grep", "dpkg"];
/// Emulated program execs per iteration of the script's loop.
const HEAVY_EXECS_PER_ITERATION: usize = 4;
/// What the exec-heavy report calls its program.
const HEAVY_PROGRAM: &str = "exec-heavy script";
/// Iterations per script run with `--interleave` (100 execs: the script's
/// own bash is then one exec in 101 per side).
const HEAVY_CHUNK: usize = 25;
/// Where the exec-heavy copies and script sit inside the root.
const HEAVY_DIR: &str = "bench-exec";

/// The exec-heavy script: `bash run.sh SIDE N` runs N iterations of four
/// dynamically linked programs from /bench-exec/SIDE, and checks what each
/// printed, so a program that did not run fails the run.
const HEAVY_SCRIPT: &str = r#"# scripts/bench-e2e --workload exec-heavy: N iterations of four short,
# dynamically linked programs (expr, sed, grep, dpkg --version), all started
# from /bench-exec/SIDE; every output is checked.
set -eu
side=$1 n=$2
PATH=/bench-exec/$side
export PATH
fail() {
	echo "run.sh ($side): $*" >&2
	exit 1
}
fruit=$(printf 'apple\nbanana\ncherry')
i=0
while [ "$i" -lt "$n" ]; do
	next=$(expr "$i" + 1)
	[ "$next" = "$((i + 1))" ] || fail "expr $i + 1 printed '$next'"
	s=$(printf 'row %s\n' "$i" | sed 's/^row /line /')
	[ "$s" = "line $i" ] || fail "sed printed '$s'"
	g=$(printf '%s\n' "$fruit" | grep -c a)
	[ "$g" = 2 ] || fail "grep -c printed '$g'"
	v=$(dpkg --version)
	case $v in
	"Debian 'dpkg' package management program version "*) ;;
	*) fail "dpkg --version printed '$v'" ;;
	esac
	i=$next
done
"#;

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
    /// Emulated execs per side per round.
    execs: usize,
    /// 0: skip the start-up measurement.
    startup_execs: usize,
    /// Processes per side for the memory figures (0: skip them).
    memory_runs: usize,
    modes: Vec<Mode>,
    targets: Vec<Target>,
    workload: Workload,
    /// Alternate shim and direct exec by exec instead of in blocks.
    interleave: bool,
    /// Exec the programs by a relative path.
    relative: bool,
    /// Set in the re-executed child: the scratch directory to work in.
    inside: Option<PathBuf>,
}

const USAGE: &str = "usage: scripts/bench-e2e [--arch LIST] [--workload true|exec-heavy]
                        [--rounds N] [--execs M] [--mode MODE[,MODE...]]
                        [--interleave] [--relative] [--startup-execs K]
                        [--memory-runs K]
  --arch LIST        arches to time, comma-separated, one after the other:
                     aarch64, arm, s390x, ppc64le, riscv64, mips64el (the
                     default), and mipsel, ppc64, mips64; or all. Each runs
                     Debian's busybox-static, or where Debian 12 has none
                     (riscv64, ppc64, mips64) a static Go program built from
                     benches/e2e-prog/main.go
  --workload W       true (default): the program's `true` applet, per arch;
                     exec-heavy: a bash script in Debian's arm64 root (the
                     debootstrap fixture) running expr, sed, grep and dpkg
                     --version, dynamically linked, in a loop (aarch64 only)
  --rounds N         paired rounds (default 15; exec-heavy 6)
  --execs M          emulated execs per side per round (default 200;
                     exec-heavy 500, rounded up to a multiple of 4)
  --mode MODES       how qemu-shim is installed, comma-separated, run one after
                     the other: carry (the default install), carry-no-prelink
                     (install --no-prelink), path (install --no-carry), or all
                     (default all)
  --interleave       alternate shim and direct exec by exec within a round
                     (default: M shim execs then M direct ones, or the other
                     way round, alternating per round); steadier on a busy
                     machine (exec-heavy: script runs of 100 execs, the
                     sides alternating run by run; default one run per side
                     and round)
  --relative         exec the programs by a relative path (`shim/busybox`
                     from their parent directory), as a shell running
                     `./prog` does: the interpreter then also makes the path
                     absolute for qemu (getcwd, stat); default: absolute
  --startup-execs K  execs per side when timing the bare interpreter
                     (default 1000; 0 skips it)
  --memory-runs K    processes per side and arch for the memory figures
                     (default 5, a second each; 0 skips them)";

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 15,
        execs: 200,
        startup_execs: 1000,
        memory_runs: 5,
        modes: Mode::ALL.to_vec(),
        targets: TARGETS[..DEFAULT_TARGETS].to_vec(),
        workload: Workload::True,
        interleave: false,
        relative: false,
        inside: None,
    };
    let (mut rounds, mut execs, mut archs_given) = (None, None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let num = |name: &str, v: &String, min: usize| match v.parse::<usize>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("{name} takes a number >= {min}, not {v:?}")),
        };
        match a.as_str() {
            "--rounds" => rounds = Some(num(a, value(a)?, 1)?),
            "--execs" => execs = Some(num(a, value(a)?, 1)?),
            "--startup-execs" => o.startup_execs = num(a, value(a)?, 0)?,
            "--memory-runs" => o.memory_runs = num(a, value(a)?, 0)?,
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
            "--arch" => {
                let v = value(a)?;
                archs_given = true;
                o.targets = if v == "all" {
                    TARGETS.to_vec()
                } else {
                    v.split(',')
                        .map(|n| {
                            TARGETS.iter().copied().find(|t| t.arch == n).ok_or(format!(
                                "--arch takes {} or all, not {n:?}",
                                TARGETS
                                    .iter()
                                    .map(|t| t.arch)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                        .collect::<Result<_>>()?
                };
            }
            "--workload" => {
                o.workload = match value(a)?.as_str() {
                    "true" => Workload::True,
                    "exec-heavy" => Workload::ExecHeavy,
                    w => return Err(format!("--workload takes true or exec-heavy, not {w:?}")),
                }
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
    match o.workload {
        Workload::True => {
            o.rounds = rounds.unwrap_or(15);
            o.execs = execs.unwrap_or(200);
        }
        Workload::ExecHeavy => {
            o.rounds = rounds.unwrap_or(6);
            o.execs = execs
                .unwrap_or(500)
                .next_multiple_of(HEAVY_EXECS_PER_ITERATION);
            let aarch64 = TARGETS[0];
            if archs_given && o.targets != [aarch64] {
                return Err(
                    "--workload exec-heavy runs the arm64 Debian root: --arch aarch64 \
                            only"
                        .into(),
                );
            }
            o.targets = vec![aarch64];
            if o.relative {
                return Err("--relative is for --workload true".into());
            }
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
}

fn inputs() -> Result<Inputs> {
    let release = target_dir().join("release");
    let emulators = fixtures_dir().join("qemu");
    let emulators = fs::canonicalize(&emulators).map_err(|e| {
        format!(
            "fixture directory {} is missing ({e}): run `{FETCH_SCRIPT}` first",
            emulators.display()
        )
    })?;
    let i = Inputs {
        cli: release.join("qemu-shim"),
        interp: release.join("qemu-shim-interp"),
        emulators,
    };
    for p in [&i.cli, &i.interp] {
        if !p.exists() {
            return Err(format!(
                "{} is missing: build the release binaries (scripts/bench-e2e does)",
                p.display()
            ));
        }
    }
    Ok(i)
}

impl Inputs {
    /// The emulator an arch's row names, as a fixture.
    fn qemu(&self, arch_name: &str) -> Result<PathBuf> {
        let row = arch::by_name(arch_name).ok_or(format!("no arch table row {arch_name:?}"))?;
        let p = self.emulators.join(format!("{}-static", row.emulator));
        if !p.exists() {
            return Err(format!(
                "fixture {} is missing: run `{FETCH_SCRIPT}` first",
                p.display()
            ));
        }
        Ok(p)
    }
}

/// The Debian arm64 root of the exec-heavy workload (a fixture).
fn debian_root() -> Result<PathBuf> {
    let root = fixtures_dir().join("debootstrap/arm64");
    if !root.join("usr/bin/bash").exists() {
        return Err(format!(
            "fixture {} is missing: run `{FETCH_SCRIPT}` first",
            root.display()
        ));
    }
    Ok(root)
}

/// A target's program, as built or fetched.
fn program(t: &Target, scratch: &Path) -> Result<Vec<u8>> {
    let path = match t.source {
        Source::Busybox(debian) => {
            let p = fixtures_dir().join(format!("busybox/{debian}/busybox"));
            if !p.exists() {
                return Err(format!(
                    "fixture {} is missing: run `{FETCH_SCRIPT}` first",
                    p.display()
                ));
            }
            p
        }
        Source::Go(goarch) => build_go(goarch, scratch)?,
    };
    let bytes = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    match arch::classify(&bytes[..bytes.len().min(4096)]) {
        Some(a) if a.name == t.arch => Ok(bytes),
        other => Err(format!(
            "{} is not an {} program (classified as {:?})",
            path.display(),
            t.arch,
            other.map(|a| a.name)
        )),
    }
}

/// Builds benches/e2e-prog/main.go for `goarch`: static, no cgo. Go's build
/// cache is kept under target/bench-e2e/, so a second run compiles nothing.
fn build_go(goarch: &str, scratch: &Path) -> Result<PathBuf> {
    let src = qemu_shim_suite::repo_root().join("benches/e2e-prog/main.go");
    let out = scratch.join(format!("go-{goarch}/benchprog"));
    let cache = target_dir().join("bench-e2e/go-cache");
    output(
        Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&out)
            .arg(&src)
            .env("CGO_ENABLED", "0")
            .env("GOOS", "linux")
            .env("GOARCH", goarch)
            .env("GOCACHE", &cache)
            // A newer go must not fetch another toolchain; GOFLAGS from the
            // environment must not change the build.
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off"),
    )
    .map_err(|e| format!("{e} (scripts/bench-e2e installs Debian's golang-go)"))?;
    Ok(out)
}

/// Writes `bytes` to `path` as an executable, with the padding byte set.
fn write_copy(path: &Path, bytes: &[u8], pad: u8) -> Result<()> {
    let mut bytes = bytes.to_vec();
    let b = bytes.get_mut(PAD_BYTE).ok_or(format!(
        "{} would be shorter than an ELF header",
        path.display()
    ))?;
    *b = pad;
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    fs::write(path, &bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    qemu_shim_suite::set_mode(path, 0o755);
    Ok(())
}

/// The two sides: the shim's copies keep padding byte 0, the direct ones
/// get 1.
const SIDES: [(&str, u8); 2] = [("shim", 0), ("direct", 1)];

/// Prepares the copies of the test programs and re-executes this program
/// in a new user and mount namespace, once per mode.
fn outside(o: &Options) -> Result<()> {
    let i = inputs()?;
    let scratch = Scratch::new("bench-e2e");
    match o.workload {
        Workload::True => {
            for t in &o.targets {
                let prog = program(t, scratch.path())?;
                for (side, pad) in SIDES {
                    let p = scratch.join(&format!("{}/{side}/{}", t.arch, t.file_name()));
                    write_copy(&p, &prog, pad)?;
                }
            }
        }
        Workload::ExecHeavy => {
            // The copies and the script go into the upper layer of the
            // overlay the namespaced run mounts on the fixture root.
            let root = debian_root()?;
            let upper = scratch.join("heavy/upper").join(HEAVY_DIR);
            for p in HEAVY_PROGRAMS {
                let src = root.join("usr/bin").join(p);
                let bytes = fs::read(&src).map_err(|e| format!("read {}: {e}", src.display()))?;
                if arch::classify(&bytes[..bytes.len().min(4096)]).map(|a| a.name)
                    != Some("aarch64")
                {
                    return Err(format!("{} is not an aarch64 program", src.display()));
                }
                for (side, pad) in SIDES {
                    write_copy(&upper.join(side).join(p), &bytes, pad)?;
                }
            }
            let script = upper.join("run.sh");
            fs::write(&script, HEAVY_SCRIPT)
                .map_err(|e| format!("write {}: {e}", script.display()))?;
            for d in ["heavy/work", "heavy/root"] {
                fs::create_dir_all(scratch.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
            }
        }
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    print_machine(&i, o)?;
    let arches: Vec<&str> = o.targets.iter().map(|t| t.arch).collect();
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
            .args(["--arch", &arches.join(",")])
            .args(["--workload", o.workload.name()])
            .args(["--rounds", &o.rounds.to_string()])
            .args(["--execs", &o.execs.to_string()])
            .args(["--startup-execs", &startup.to_string()])
            .args(["--memory-runs", &o.memory_runs.to_string()])
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
    print_summary(o, &scratch.join(SUMMARY))
}

/// Each namespaced run appends one line per arch here (tab-separated, see
/// [`Summary`]); the parent prints them as one table at the end.
const SUMMARY: &str = "summary.tsv";

/// One arch's result in one mode.
struct Summary {
    mode: String,
    arch: String,
    wall: f64,
    wall_lo: f64,
    wall_hi: f64,
    cpu: f64,
    cpu_lo: f64,
    cpu_hi: f64,
    shim_ms: f64,
    direct_ms: f64,
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.mode,
            self.arch,
            self.wall,
            self.wall_lo,
            self.wall_hi,
            self.cpu,
            self.cpu_lo,
            self.cpu_hi,
            self.shim_ms,
            self.direct_ms
        )
    }
    fn parse(line: &str) -> Option<Summary> {
        let f: Vec<&str> = line.split('\t').collect();
        let n = |k: usize| f.get(k)?.parse::<f64>().ok();
        Some(Summary {
            mode: f.first()?.to_string(),
            arch: f.get(1)?.to_string(),
            wall: n(2)?,
            wall_lo: n(3)?,
            wall_hi: n(4)?,
            cpu: n(5)?,
            cpu_lo: n(6)?,
            cpu_hi: n(7)?,
            shim_ms: n(8)?,
            direct_ms: n(9)?,
        })
    }
    fn append(&self, file: &Path) -> Result<()> {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(self.line().as_bytes()))
            .map_err(|e| format!("write {}: {e}", file.display()))
    }
}

/// The table of every arch and mode, and the worst ratio of each mode.
fn print_summary(o: &Options, file: &Path) -> Result<()> {
    let text = fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    let rows: Vec<Summary> = text.lines().filter_map(Summary::parse).collect();
    println!();
    println!(
        "## Summary: shim/direct per arch ({} workload; {} rounds x {} execs per side; wall \
         ratio, median of rounds [min-max], then CPU ratio)",
        o.workload.name(),
        o.rounds,
        o.execs
    );
    println!();
    print!("| arch | program |");
    for m in &o.modes {
        print!(" {} |", m.name());
    }
    println!();
    println!("|---|---|{}", "---|".repeat(o.modes.len()));
    for t in &o.targets {
        let program = match o.workload {
            Workload::True => t.describe(),
            Workload::ExecHeavy => "bash script: expr, sed, grep, dpkg --version".into(),
        };
        print!("| {} | {program} |", t.arch);
        for m in &o.modes {
            match rows.iter().find(|r| r.arch == t.arch && r.mode == m.name()) {
                Some(r) => print!(
                    " **{:.3}** [{:.3}-{:.3}], CPU {:.3} [{:.3}-{:.3}]; {:.2} / {:.2} ms |",
                    r.wall, r.wall_lo, r.wall_hi, r.cpu, r.cpu_lo, r.cpu_hi, r.shim_ms, r.direct_ms
                ),
                None => print!(" — |"),
            }
        }
        println!();
    }
    println!();
    for m in &o.modes {
        let of_mode = || rows.iter().filter(|r| r.mode == m.name());
        let worst_wall = of_mode().max_by(|a, b| a.wall.total_cmp(&b.wall));
        let worst_cpu = of_mode().max_by(|a, b| a.cpu.total_cmp(&b.cpu));
        if let (Some(w), Some(c)) = (worst_wall, worst_cpu) {
            println!(
                "{}: worst wall ratio {:.3} ({}), worst CPU ratio {:.3} ({})",
                m.name(),
                w.wall,
                w.arch,
                c.cpu,
                c.arch
            );
        }
    }
    Ok(())
}

fn print_machine(i: &Inputs, o: &Options) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let first = o.targets.first().ok_or("no arch")?;
    let qemu = output(Command::new(i.qemu(first.arch)?).arg("-version"))?;
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
    println!();
    println!("## {}: qemu-shim vs qemu registered directly", mode.name());
    println!("shim: {}", mode.describe());
    match o.workload {
        Workload::True => {
            for t in &o.targets {
                bench_true(o, &i, &binfmt, mode, dir, t)?;
            }
        }
        Workload::ExecHeavy => bench_exec_heavy(o, &i, &binfmt, mode, dir)?,
    }
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

/// The direct entry for an arch: qemu itself, with the same flags and mask
/// as the shim's entry, the magic demanding the padding byte the direct
/// copies have. Returns the shim's entry and the direct entry's name.
fn register_direct(b: &Binfmt, i: &Inputs, arch_name: &str) -> Result<(EntryFile, String)> {
    let shim_name = entry_name(arch_name);
    let shim = b
        .read(&shim_name)
        .map_err(|e| e.to_string())?
        .ok_or(format!("`qemu-shim install` registered no {shim_name}"))?;
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
    let direct_name = format!("bench-direct-{arch_name}");
    let line = RegisterLine {
        name: direct_name.clone(),
        kind: Kind::Magic {
            offset: 0,
            magic: direct_magic,
            mask: Some(mask.clone()),
        },
        interpreter: i.qemu(arch_name)?.display().to_string(),
        flags: shim.flags,
    };
    line.validate().map_err(|e| e.to_string())?;
    // Registered after the shim's entries, so the kernel tries it first:
    // the direct copy matches at once, the shim's copy first fails this
    // magic. Any bias from the walk is against the shim.
    b.register(&line).map_err(|e| e.to_string())?;
    Ok((shim, direct_name))
}

/// The `true` workload for one arch: routing checks, timed rounds, memory,
/// and its summary line.
fn bench_true(
    o: &Options,
    i: &Inputs,
    binfmt: &Binfmt,
    mode: Mode,
    dir: &Path,
    t: &Target,
) -> Result<()> {
    let shim_name = entry_name(t.arch);
    let (shim, direct_name) = register_direct(binfmt, i, t.arch)?;
    let arch_dir = dir.join(t.arch);
    let shim_prog = arch_dir.join("shim").join(t.file_name());
    let direct_prog = arch_dir.join("direct").join(t.file_name());
    verify_routing(
        binfmt,
        (&shim_name, &direct_name),
        &shim_prog,
        &direct_prog,
        t.machine,
    )?;

    println!();
    println!("### {} ({}), {}", t.arch, t.describe(), mode.name());
    println!(
        "entries: {} (qemu-shim's, flags {}, plus {direct_name} with the same flags); \
         installed interpreter {} bytes",
        binfmt.list().map_err(|e| e.to_string())?.len(),
        shim.raw_flags,
        size(Path::new(&shim.interpreter))?
    );
    let (shim_prog, direct_prog) = if o.relative {
        std::env::set_current_dir(&arch_dir)
            .map_err(|e| format!("cd {}: {e}", arch_dir.display()))?;
        (
            Path::new("shim").join(t.file_name()),
            Path::new("direct").join(t.file_name()),
        )
    } else {
        (shim_prog, direct_prog)
    };
    let report = Report {
        execs: o.execs,
        program: t.file_name(),
        interleave: o.interleave,
        relative: o.relative,
        rounds: timed_rounds(o, &shim_prog, &direct_prog)?,
        memory: if o.memory_runs > 0 {
            Some(memory(&shim_prog, &direct_prog, o.memory_runs)?)
        } else {
            None
        },
    };
    report.print();
    report.summary(mode, t.arch).append(&dir.join(SUMMARY))?;
    // Only one direct entry at a time: the shim's copies of later arches
    // do not walk past the earlier ones.
    binfmt.remove(&direct_name).map_err(|e| e.to_string())
}

/// Runs the exec-heavy script once: `chroot ROOT /bench-exec/SIDE/bash
/// /bench-exec/run.sh SIDE ITERATIONS`, with a clean environment.
fn heavy_run(root: &Path, side: &str, iterations: usize) -> Result<Batch> {
    let bash = format!("/{HEAVY_DIR}/{side}/bash");
    let script = format!("/{HEAVY_DIR}/run.sh");
    let n = iterations.to_string();
    let args = [
        root.to_str().ok_or("root path is not UTF-8")?,
        &bash,
        &script,
        side,
        &n,
    ];
    // The script sets its own PATH; this one finds chroot.
    let env = [("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), ("LC_ALL", "C")];
    let mut cmd = Command::new("chroot");
    cmd.env_clear().envs(env);
    let start = Instant::now();
    let (status, ru) = spawn_wait_cmd(cmd.args(args))?;
    let secs = start.elapsed().as_secs_f64();
    let st = std::process::ExitStatus::from_raw(status);
    if !st.success() {
        let why = Command::new("chroot")
            .env_clear()
            .envs(env)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default();
        return Err(format!("chroot {} ended with {st}: {why}", args.join(" ")));
    }
    Ok(Batch {
        secs,
        cpu_secs: tv_secs(ru.ru_utime) + tv_secs(ru.ru_stime),
        minflt: ru.ru_minflt,
    })
}

/// Whether the exec-heavy script runs on `side`, without timing it.
fn heavy_runs(root: &Path, side: &str) -> bool {
    heavy_run(root, side, 1).is_ok()
}

/// The exec-heavy workload: the Debian root under an overlay (the copies
/// and the script in its upper layer), routing checked by disabling each
/// entry, then paired rounds of one script run per side.
fn bench_exec_heavy(
    o: &Options,
    i: &Inputs,
    binfmt: &Binfmt,
    mode: Mode,
    dir: &Path,
) -> Result<()> {
    let t = TARGETS[0];
    let shim_name = entry_name(t.arch);
    let (shim, direct_name) = register_direct(binfmt, i, t.arch)?;
    let root = dir.join("heavy/root");
    let lower = debian_root()?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        dir.join("heavy/upper").display(),
        dir.join("heavy/work").display()
    );
    output(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&root),
    )?;
    if mode == Mode::Path {
        // The interpreter execs qemu by path, in the chroot: the emulators
        // at the same path there (what `install --no-carry --help` asks).
        let inner = root.join(i.emulators.strip_prefix("/").unwrap_or(&i.emulators));
        fs::create_dir_all(&inner).map_err(|e| format!("mkdir {}: {e}", inner.display()))?;
        output(
            Command::new("mount")
                .arg("--bind")
                .arg(&i.emulators)
                .arg(&inner),
        )?;
    }
    // Routing: each side's run works with the other side's entry disabled
    // and fails with its own disabled, so every exec of a run (bash and
    // each program) went through that side's entry.
    for p in HEAVY_PROGRAMS {
        let head = |side: &str| -> Result<Vec<u8>> {
            let f = root.join(HEAVY_DIR).join(side).join(p);
            let mut buf = vec![0u8; 256];
            let n = fs::File::open(&f)
                .and_then(|mut h| h.read(&mut buf))
                .map_err(|e| format!("read {}: {e}", f.display()))?;
            buf.truncate(n);
            Ok(buf)
        };
        for (side, want) in [("shim", &shim_name), ("direct", &direct_name)] {
            let got = binfmt
                .winner(&head(side)?)
                .map_err(|e| e.to_string())?
                .map(|(n, _)| n);
            if got.as_deref() != Some(want.as_str()) {
                return Err(format!("the kernel would run {side}'s {p} with {got:?}"));
            }
        }
    }
    for (off, dead, alive) in [
        (&shim_name, "shim", "direct"),
        (&direct_name, "direct", "shim"),
    ] {
        binfmt.set_enabled(off, false).map_err(|e| e.to_string())?;
        let (d, a) = (heavy_runs(&root, dead), heavy_run(&root, alive, 1));
        binfmt.set_enabled(off, true).map_err(|e| e.to_string())?;
        if d {
            return Err(format!("with {off} disabled, the {dead} side still ran"));
        }
        a.map_err(|e| format!("with {off} disabled, the {alive} side failed: {e}"))?;
    }
    for side in ["shim", "direct"] {
        heavy_run(&root, side, 1)?;
    }

    let iterations = o.execs / HEAVY_EXECS_PER_ITERATION;
    println!();
    println!(
        "### exec-heavy: aarch64, Debian arm64 root, {}",
        mode.name()
    );
    println!(
        "entries: {} (qemu-shim's, flags {}, plus {direct_name} with the same flags); per run \
         {iterations} iterations of expr, sed, grep, dpkg --version ({} emulated program execs, \
         plus the script's bash)",
        binfmt.list().map_err(|e| e.to_string())?.len(),
        shim.raw_flags,
        o.execs
    );
    // Warm-up: both sides, a tenth of a round.
    for side in ["shim", "direct"] {
        heavy_run(&root, side, iterations.div_ceil(10))?;
    }
    println!(
        "{:>5}  {:>6}  {:>12}  {:>12}  {:>7}  {:>9}",
        "round", "first", "shim ms/exec", "direct ms/ex", "ratio", "cpu ratio"
    );
    let mut rounds = Vec::with_capacity(o.rounds);
    for r in 0..o.rounds {
        let shim_first = r % 2 == 0;
        // One run per side, or with --interleave runs of at most
        // HEAVY_CHUNK iterations, alternating side by side (the order
        // swapped each pair), so both sides see the same load.
        let chunk = if o.interleave {
            HEAVY_CHUNK.min(iterations)
        } else {
            iterations
        };
        let (mut s, mut d) = (Batch::ZERO, Batch::ZERO);
        let mut done = 0;
        while done < iterations {
            let n = chunk.min(iterations - done);
            let order = if (done / chunk + r) % 2 == 0 {
                ["shim", "direct"]
            } else {
                ["direct", "shim"]
            };
            for side in order {
                let b = heavy_run(&root, side, n)?;
                if side == "shim" {
                    s.add(b)
                } else {
                    d.add(b)
                }
            }
            done += n;
        }
        let round = Round {
            shim_first,
            shim: s,
            direct: d,
            shim_median: f64::NAN,
            direct_median: f64::NAN,
        };
        println!(
            "{:>5}  {:>6}  {:>12.3}  {:>12.3}  {:>7.4}  {:>9.4}",
            r + 1,
            match (o.interleave, shim_first) {
                (true, _) => "mixed",
                (false, true) => "shim",
                (false, false) => "direct",
            },
            ms_per(s.secs, o.execs),
            ms_per(d.secs, o.execs),
            round.ratio(),
            round.cpu_ratio()
        );
        let _ = std::io::stdout().flush();
        rounds.push(round);
    }
    let report = Report {
        execs: o.execs,
        program: HEAVY_PROGRAM,
        interleave: o.interleave,
        relative: false,
        rounds,
        memory: None,
    };
    report.print();
    report.summary(mode, t.arch).append(&dir.join(SUMMARY))?;
    binfmt.remove(&direct_name).map_err(|e| e.to_string())
}

fn size(p: &Path) -> Result<u64> {
    fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("stat {}: {e}", p.display()))
}

/// Proves each copy runs through its own entry and no other: the table
/// picks the right winner for each header, each copy runs, and disabling
/// an entry makes exactly its copy unrunnable (ENOEXEC).
fn verify_routing(
    b: &Binfmt,
    (shim_name, direct_name): (&str, &str),
    shim: &Path,
    direct: &Path,
    expect_machine: &str,
) -> Result<()> {
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
    for (h, want) in [(&sh, shim_name), (&dh, direct_name)] {
        let got = b.winner(h).map_err(|e| e.to_string())?.map(|(n, _)| n);
        if got.as_deref() != Some(want) {
            return Err(format!("the kernel would run {want}'s copy with {got:?}"));
        }
    }
    let machine = |p: &Path| output(Command::new(p).args(["uname", "-m"]));
    for p in [shim, direct] {
        let m = machine(p)?;
        if m.trim() != expect_machine {
            return Err(format!(
                "{} printed {:?} for uname -m, not {expect_machine}",
                p.display(),
                m.trim()
            ));
        }
    }
    for (off, dead, alive) in [(shim_name, shim, direct), (direct_name, direct, shim)] {
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
    spawn_wait_cmd(Command::new(prog).args(args))
}

/// Starts a command (its output discarded) and waits for it with wait4:
/// the resource usage covers the process and the descendants it waited
/// for.
fn spawn_wait_cmd(cmd: &mut Command) -> Result<(i32, libc::rusage)> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child (std never reaps it: the
    // Child is dropped without wait); status and ru are live out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        return Err(format!(
            "wait4 for {:?}: {}",
            cmd.get_program(),
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

/// Medians over `runs` processes per side, alternating sides.
fn memory(shim: &Path, direct: &Path, runs: usize) -> Result<(Memory, Memory)> {
    let mut s = Vec::new();
    let mut d = Vec::new();
    for _ in 0..runs {
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
    /// What each exec ran, for the headline.
    program: &'static str,
    interleave: bool,
    relative: bool,
    rounds: Vec<Round>,
    /// None when --memory-runs 0 (and for exec-heavy).
    memory: Option<(Memory, Memory)>,
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
    /// The line [`print_summary`] tabulates.
    fn summary(&self, mode: Mode, arch: &str) -> Summary {
        let per_round =
            |f: &dyn Fn(&Round) -> f64| -> Vec<f64> { self.rounds.iter().map(f).collect() };
        let lo_hi = |v: &[f64]| {
            v.iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)))
        };
        let (wall, cpu) = (per_round(&Round::ratio), per_round(&Round::cpu_ratio));
        let ((wall_lo, wall_hi), (cpu_lo, cpu_hi)) = (lo_hi(&wall), lo_hi(&cpu));
        Summary {
            mode: mode.name().into(),
            arch: arch.into(),
            wall: median(wall),
            wall_lo,
            wall_hi,
            cpu: median(cpu),
            cpu_lo,
            cpu_hi,
            shim_ms: median(per_round(&|r| ms_per(r.shim.secs, self.execs))),
            direct_ms: median(per_round(&|r| ms_per(r.direct.secs, self.execs))),
        }
    }

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
        println!();
        println!(
            "{} paired rounds x {m} emulated execs ({}) per side, {}; \
             address randomisation on; {}",
            self.rounds.len(),
            self.program,
            if self.interleave && self.program == HEAVY_PROGRAM {
                "in script runs of 100 execs, the sides alternating run by run"
            } else if self.interleave {
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
        if !shim_one.is_nan() {
            println!(
                "| wall time of a single exec, median within each round | {shim_one:.3} ms | \
                 {direct_one:.3} ms | {:.3} (median of per-round ratios; min {mlo:.3}, max \
                 {mhi:.3}) |",
                median(median_ratios)
            );
        }
        println!(
            "| CPU time, user+sys (wait4) | {shim_cpu:.3} ms | {direct_cpu:.3} ms | \
             {:.3} (min {clo:.3}, max {chi:.3}) |",
            median(cpu_ratios)
        );
        println!(
            "| minor page faults (wait4) | {shim_flt:.0} | {direct_flt:.0} | {:+.0} |",
            shim_flt - direct_flt
        );
        if let Some((ms, md)) = self.memory {
            println!(
                "| RSS of a running `{} sleep` (smaps_rollup) | {:.0} kB | {:.0} kB | {:.3} |",
                self.program,
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
        }
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
