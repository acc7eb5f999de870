//! Runs the interpreter's plain emulator command line (`Convention::ExecPlain`,
//! box64's and FEX's `EMULATOR PROGRAM ARGS…`) through the real kernel.
//!
//! The config file only allows box64 and FEX on arm64 hosts, so on an x86_64
//! machine nothing else ever takes this exec path. Here Debian's
//! qemu-aarch64-static stands in for them: qemu accepts `qemu PROGRAM ARGS…`
//! too, so it is a real third-party emulator taking exactly that command
//! line. The interpreter file is built as `install` builds it
//! ([`interp::build`]), registered as `install` registers it
//! (`binfmt::register_line` in the registry, [`entries::entry_flags`]) in a private
//! binfmt_misc instance of a user and mount namespace (never the host's
//! table), and Debian's arm64 busybox is run through it.
//!
//! Needs the release interpreter (`cargo build --release --workspace`) and
//! the fixtures (`scripts/fetch-fixtures`); without them the tests fail,
//! saying which to run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qemu_shim_registry::arch::{self, Arch};
use qemu_shim_registry::format::RegisterLine;

use crate::entries;
use crate::interp::{self, Spec};
use crate::testutil::TempDir;

const FETCH_SCRIPT: &str = "scripts/fetch-fixtures";

/// The repository's root: this crate sits in `crates/cli`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo_root().join(p),
        None => repo_root().join("target"),
    }
}

/// A fetched fixture (relative to `$QEMU_SHIM_FIXTURES`, default
/// `target/fixtures`); panics naming the fetch script when it is missing.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    let dir = std::env::var_os("QEMU_SHIM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("fixtures"));
    let p = dir.join(rel);
    assert!(
        p.is_file(),
        "fixture {} is missing: run `{FETCH_SCRIPT}` first",
        p.display()
    );
    fs::canonicalize(&p).unwrap()
}

/// The release interpreter, as built (unconfigured).
fn release_interp() -> Vec<u8> {
    let p = target_dir().join("release").join(interp::FILE_NAME);
    fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}: run `cargo build --release --workspace` first",
            p.display()
        )
    })
}

fn aarch64() -> &'static Arch {
    arch::by_name("aarch64").unwrap()
}

/// Builds the interpreter file `dir/qemu-shim-interp` as `install` does
/// for `config`, and returns its path. Checks that aarch64 went into the
/// table as a plain emulator started by path, whatever `config.carry`.
fn write_interp(dir: &Path, config: &Spec) -> PathBuf {
    let built = interp::build(&release_interp(), config).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        built.by_path.iter().any(|(a, _)| a == "aarch64"),
        "aarch64 not started by path: {:?}",
        built.by_path
    );
    let read = interp::read_spec(&built.image).unwrap();
    assert_eq!(read.plain, ["aarch64"]);
    let path = dir.join(interp::FILE_NAME);
    crate::files::write_file(&path, &built.image).unwrap();
    path
}

/// The register line `install` writes for `a`'s entry on `interp`; an
/// emulator started by path gets `P` and `F` only (see
/// [`entries::entry_flags`]).
fn line(a: &Arch, interp: &Path, carried: bool) -> RegisterLine {
    let flags = entries::entry_flags(carried, true, true);
    let l = qemu_shim_registry::binfmt::register_line(a, interp.to_str().unwrap(), flags);
    l.validate().unwrap();
    l
}

/// One command's outcome in the sandbox.
#[derive(Debug)]
struct Captured {
    rc: i32,
    stdout: String,
    stderr: String,
}

/// Shell function `cap NAME CMD…`: runs CMD with stdout, stderr and exit
/// status saved as `$CAPS/NAME.{out,err,rc}`, never stopping the script.
const CAP_SH: &str = r#"cap() {
	cap_name=$1
	shift
	cap_rc=0
	"$@" >"$CAPS/$cap_name.out" 2>"$CAPS/$cap_name.err" </dev/null || cap_rc=$?
	echo "$cap_rc" >"$CAPS/$cap_name.rc"
}
"#;

/// The suite's shell lines that mount a new binfmt_misc instance and prove
/// it private before anything is registered (see the file).
const PRIVATE_BINFMT_SH: &str = include_str!("../../../tests/private-binfmt.sh");

/// `DEV:INODE` of process `pid`'s user namespace (`self` or a number),
/// or empty where it cannot be read (some machines' PID 1 refuses even
/// root: tests/private-binfmt.sh then relies on the kernel's fixed inode
/// for the initial namespace).
fn userns_id(pid: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/user"))
        .map(|m| format!("{}:{}", m.dev(), m.ino()))
        .unwrap_or_default()
}

/// Runs `script` (`sh -eu`, with [`CAP_SH`]) in a new user and mount
/// namespace whose new binfmt_misc instance, proven private and empty
/// ([`PRIVATE_BINFMT_SH`]), holds `lines`, with `$S` set to `scratch`.
/// Returns the script's captures.
fn sandbox(scratch: &Path, lines: &[RegisterLine], script: &str) -> Caps {
    let caps = scratch.join("caps");
    fs::create_dir_all(&caps).unwrap();
    let mut register = String::new();
    for l in lines {
        // `printf %s`: the line's `\x..` escapes are for the kernel.
        register.push_str(&format!(
            "printf '%s' '{l}' >/proc/sys/fs/binfmt_misc/register\n"
        ));
    }
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-euc"])
        .arg(format!("{PRIVATE_BINFMT_SH}{register}{CAP_SH}{script}"))
        .arg("sandbox")
        .env("QEMU_SHIM_INIT_USERNS", userns_id("1"))
        .env("QEMU_SHIM_OUTER_USERNS", userns_id("self"))
        .env("S", scratch)
        .env("CAPS", &caps)
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare (util-linux)");
    assert!(
        o.status.success(),
        "sandbox script failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Caps(caps)
}

/// The directory where a sandbox script's `cap` saved its captures.
struct Caps(PathBuf);

impl Caps {
    /// What `cap NAME …` saved; panics if the script never ran it.
    fn get(&self, name: &str) -> Captured {
        let read = |ext: &str| {
            let p = self.0.join(format!("{name}.{ext}"));
            let bytes =
                fs::read(&p).unwrap_or_else(|e| panic!("capture {name}: {}: {e}", p.display()));
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Captured {
            rc: read("rc").trim().parse().unwrap(),
            stdout: read("out"),
            stderr: read("err"),
        }
    }
}

/// Asserts the command exited 0, printed `out` and nothing on stderr.
#[track_caller]
fn assert_runs(c: &Captured, out: &str) {
    assert_eq!((c.rc, c.stdout.as_str(), c.stderr.as_str()), (0, out, ""));
}

/// argv as `/proc/self/cmdline` holds it: each argument NUL-terminated.
/// qemu-user answers that file with the guest program's own argv.
fn cmdline(args: &[&str]) -> String {
    args.iter().map(|a| format!("{a}\0")).collect()
}

/// The checks run on busybox through a plain aarch64 emulator: `$S/bin/busybox`
/// is the busybox, `$S/-d/busybox` a copy in a directory whose name reads as
/// a qemu option. Both keep the name `busybox`: the program sees its path as
/// argv[0], and busybox picks the applet by argv[0]'s base name.
const PLAIN_SCRIPT: &str = r#"
mkdir "$S/bin"
cp "$BB" "$S/bin/busybox"
mkdir "$S/-d"
cp "$BB" "$S/-d/busybox"
cap echo "$S/bin/busybox" echo a b
cap exit7 "$S/bin/busybox" sh -c 'exit 7'
cap cmdline "$S/bin/busybox" cat /proc/self/cmdline
cap exec_a bash -c 'exec -a caller-argv0 "$S/bin/busybox" cat /proc/self/cmdline'
cd "$S"
# Executed by the kernel as the relative path `-d/busybox`, as the shell
# passes it (a command word with a slash is not looked up in PATH).
cap minus_echo -d/busybox echo x y
cap minus_cmdline -d/busybox cat /proc/self/cmdline
cap minus_exit -d/busybox false
"#;

/// Asserts what [`PLAIN_SCRIPT`] captured.
fn check_plain_script(caps: &Caps, scratch: &Path) {
    let cap = |name: &str| caps.get(name);
    let bb = scratch.join("bin/busybox");
    let bb = bb.to_str().unwrap();
    assert_runs(&cap("echo"), "a b\n");
    let c = cap("exit7");
    assert_eq!((c.rc, c.stderr.as_str()), (7, ""), "{c:?}");
    assert_runs(
        &cap("cmdline"),
        &cmdline(&[bb, "cat", "/proc/self/cmdline"]),
    );
    // What really happens with a plain emulator: the program's argv[0] is
    // its path, not the caller's argv[0] (box64 and FEX have no option to
    // pass it). Under `ExecByPath` (`qemu -0 caller-argv0 -- …`) busybox
    // would get `caller-argv0` and answer "applet not found" instead.
    assert_runs(&cap("exec_a"), &cmdline(&[bb, "cat", "/proc/self/cmdline"]));
    // A relative program path reaches the emulator as `./-d/busybox`: bare,
    // qemu would take `-d/busybox` for an option and refuse to start.
    assert_runs(&cap("minus_echo"), "x y\n");
    assert_runs(
        &cap("minus_cmdline"),
        &cmdline(&["./-d/busybox", "cat", "/proc/self/cmdline"]),
    );
    let c = cap("minus_exit");
    assert_eq!((c.rc, c.stderr.as_str()), (1, ""), "{c:?}");
}

/// `--no-carry`'s file: the table alone, aarch64 `ExecPlain`.
#[test]
fn plain_emulator_runs_programs_through_the_kernel() {
    let qemu = fixture("qemu/qemu-aarch64-static");
    let bb = fixture("busybox/arm64/busybox");
    let t = TempDir::new();
    let interp = write_interp(
        t.path(),
        &Spec {
            target: interp::target(),
            flags: interp::flags_for_running_kernel(),
            carry: false,
            prelink_base: None,
            emulators: vec![("aarch64".into(), qemu)],
            plain: vec!["aarch64".into()],
            cpu: Vec::new(),
        },
    );
    let l = line(aarch64(), &interp, false);
    assert_eq!(l.flags.to_string(), "PF");
    let script = format!("BB='{}'\n{PLAIN_SCRIPT}", bb.display());
    let caps = sandbox(t.path(), &[l], &script);
    check_plain_script(&caps, t.path());
}

/// The default (carrying) install's file with a plain emulator for one
/// arch, as with box64 configured on an arm64 host: the plain arch is
/// started by path, the others are carried in the same file.
#[test]
fn plain_emulator_beside_carried_ones() {
    let qemu = fixture("qemu/qemu-aarch64-static");
    let s390x_qemu = fixture("qemu/qemu-s390x-static");
    let bb = fixture("busybox/arm64/busybox");
    let s390x_bb = fixture("busybox/s390x/busybox");
    let t = TempDir::new();
    let interp = write_interp(
        t.path(),
        &Spec {
            target: interp::target(),
            flags: interp::flags_for_running_kernel(),
            carry: true,
            prelink_base: None,
            emulators: vec![("aarch64".into(), qemu), ("s390x".into(), s390x_qemu)],
            plain: vec!["aarch64".into()],
            cpu: Vec::new(),
        },
    );
    let read = interp::read_spec_file(&interp).unwrap();
    assert!(read.carry, "s390x is not carried");
    let lines = [
        line(aarch64(), &interp, false),
        line(arch::by_name("s390x").unwrap(), &interp, true),
    ];
    assert_eq!(lines[0].flags.to_string(), "PF");
    let script = format!(
        "BB='{}'\n{PLAIN_SCRIPT}\ncap s390x_exec_a bash -c 'exec -a echo \"$0\" hi there' '{}'\n",
        bb.display(),
        s390x_bb.display()
    );
    let caps = sandbox(t.path(), &lines, &script);
    check_plain_script(&caps, t.path());
    // The carried emulator in the same file keeps the caller's argv[0]:
    // busybox runs the applet it names.
    assert_runs(&caps.get("s390x_exec_a"), "hi there\n");
}

/// A plain emulator missing at its path: exit 127 and one line naming it.
#[test]
fn plain_emulator_missing_is_127_and_one_line_naming_it() {
    let bb = fixture("busybox/arm64/busybox");
    let t = TempDir::new();
    let missing = t.path().join("no-such-dir/box64");
    let interp = write_interp(
        t.path(),
        &Spec {
            target: interp::target(),
            flags: interp::flags_for_running_kernel(),
            carry: false,
            prelink_base: None,
            emulators: vec![("aarch64".into(), missing.clone())],
            plain: vec!["aarch64".into()],
            cpu: Vec::new(),
        },
    );
    let script = format!("cap missing '{}' echo a\n", bb.display());
    let caps = sandbox(t.path(), &[line(aarch64(), &interp, false)], &script);
    let c = caps.get("missing");
    assert_eq!((c.rc, c.stdout.as_str()), (127, ""), "{c:?}");
    assert_eq!(c.stderr.lines().count(), 1, "{c:?}");
    assert!(c.stderr.starts_with("qemu-shim: "), "{c:?}");
    assert!(
        c.stderr
            .contains(&format!("{} not found", missing.display())),
        "{c:?}"
    );
}
