//! Support for qemu-shim's end-to-end tests and benchmarks: where the built
//! release binaries and the fetched fixtures are, scratch directories, and
//! running shell scripts inside a private binfmt_misc instance so the host's
//! table is never touched.
//!
//! Everything here panics with a message that says what to run: a test whose
//! binaries or fixtures are missing fails, it does not skip.

pub mod host_table;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

/// The script that fetches third-party fixtures into the cache.
pub const FETCH_SCRIPT: &str = "scripts/fetch-fixtures";

/// The repository's root (the suite package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The fixture cache: `$QEMU_SHIM_FIXTURES`, else `target/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("QEMU_SHIM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("fixtures"))
}

/// A fetched fixture, by path relative to the cache. Panics, naming the
/// fetch script, when it is missing.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {} is missing: run `{FETCH_SCRIPT}` first (it downloads Debian's qemu-user-static \
         and busybox-static into {})",
        p.display(),
        fixtures_dir().display()
    );
    p
}

/// Directory of the fetched `qemu-*-static` emulators.
pub fn emulator_dir() -> PathBuf {
    let d = fixtures_dir().join("qemu");
    fixture("qemu/qemu-aarch64-static");
    d
}

/// Debian busybox-static for Debian arch `debian_arch` (arm64, armhf, …).
pub fn busybox(debian_arch: &str) -> PathBuf {
    fixture(&format!("busybox/{debian_arch}/busybox"))
}

/// The Debian arches with a busybox fixture, the arch-table row each must
/// match, and what `uname -m` prints under qemu 7.2.
pub const BUSYBOXES: &[(&str, &str, &str)] = &[
    ("arm64", "aarch64", "aarch64"),
    ("armel", "arm", "armv7l"),
    ("armhf", "arm", "armv7l"),
    ("mips64el", "mips64el", "mips64"),
    ("mipsel", "mipsel", "mips"),
    ("ppc64el", "ppc64le", "ppc64le"),
    ("s390x", "s390x", "s390x"),
    ("i386", "i386", "x86_64"),
];

/// Newest modification time of the sources `bin` was built from: the
/// files cargo's dep-info file (`bin.d`, next to it) lists, which are the
/// local sources of the binary and of its path dependencies. Only those:
/// editing the CLI must not make a fresh interpreter look stale (cargo does
/// not relink a binary none of whose sources changed).
fn newest_source(bin: &Path, hint: &str) -> SystemTime {
    let dep_info = bin.with_extension("d");
    let text = fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}: {hint}", dep_info.display()));
    // `target: src1 src2 ...`; a space inside a path is escaped as `\ `.
    let deps = text
        .split_once(": ")
        .map(|(_, d)| d)
        .unwrap_or_default()
        .replace("\\ ", "\0");
    deps.split_whitespace()
        .map(|f| PathBuf::from(f.replace('\0', " ")))
        .filter_map(|f| fs::metadata(f).and_then(|m| m.modified()).ok())
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A release binary of the workspace (`qemu-shim`, `qemu-shim-interp`).
/// The tests run the release interpreter, the one users install. Panics if
/// it is missing or older than its sources.
pub fn release_bin(name: &str) -> PathBuf {
    let p = target_dir().join("release").join(name);
    let hint = "run `cargo build --release --workspace` first (scripts/test does)";
    let built = fs::metadata(&p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {hint}", p.display()));
    assert!(
        built >= newest_source(&p, hint),
        "{} is older than its sources: {hint}",
        p.display()
    );
    p
}

/// The release `qemu-shim` CLI.
pub fn cli() -> PathBuf {
    release_bin("qemu-shim")
}

/// The release interpreter, as built (unconfigured).
pub fn interp() -> PathBuf {
    release_bin("qemu-shim-interp")
}

/// A fresh scratch directory (`qemu-shim-test-TAG-…` under the system temp
/// dir), removed on drop. World-readable (0755) so tests that drop to an
/// unprivileged uid can reach it.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("qemu-shim-test-{tag}-"))
            .tempdir()
            .expect("create scratch dir");
        // Explicitly: tempfile makes it 0700.
        set_mode(dir.path(), 0o755);
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `setpriv` set up to run what follows as host uid/gid 65534 (nobody),
/// with no groups and no capabilities: append the program and its
/// arguments.
pub fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]);
    c
}

/// Who runs a sandboxed script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    /// Root (of the namespace, mapped to the caller: root in CI).
    Root,
    /// Host uid/gid 65534 (nobody), no groups, no capabilities on the host:
    /// permissions mean something. Root inside its own user namespace, so
    /// it can still mount its private binfmt_misc.
    Nobody,
}

/// The shell lines that mount a new binfmt_misc instance and prove it
/// private before a script writes to it (tests/private-binfmt.sh says how).
/// They need the variables [`userns_env`] sets.
pub const PRIVATE_BINFMT_SH: &str = include_str!("../tests/private-binfmt.sh");

/// `DEV:INODE` of the user namespace of process `pid` (`self` or a
/// number), as `stat -Lc %d:%i /proc/PID/ns/user` prints it; `None` where
/// it cannot be read (some machines' PID 1 refuses even root).
pub fn userns_id(pid: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(format!("/proc/{pid}/ns/user")).ok()?;
    Some(format!("{}:{}", m.dev(), m.ino()))
}

/// The environment [`PRIVATE_BINFMT_SH`] checks against: this process's
/// user namespace and PID 1's (empty if unreadable), read here, before the
/// unshare (from inside, PID 1's cannot be read).
pub fn userns_env() -> [(&'static str, String); 2] {
    [
        (
            "QEMU_SHIM_OUTER_USERNS",
            userns_id("self").expect("read /proc/self/ns/user"),
        ),
        ("QEMU_SHIM_INIT_USERNS", userns_id("1").unwrap_or_default()),
    ]
}

/// What every sandbox script runs first, in its new user and mount
/// namespace: [`PRIVATE_BINFMT_SH`], then the host's qemu-shim config
/// directory hidden behind an empty tmpfs, so that an install that names
/// no `--config` reads none, whatever the host has in
/// /etc/qemu-shim/config.toml.
fn sandbox_prologue() -> String {
    format!(
        "{PRIVATE_BINFMT_SH}\
if [ -e /etc/qemu-shim ]; then mount -t tmpfs -o mode=0755 qemu-shim-test /etc/qemu-shim; fi
[ ! -e /etc/qemu-shim/config.toml ]
"
    )
}

/// Runs `script` with `sh -eu` in a new user and mount namespace with a
/// new, empty binfmt_misc instance mounted at /proc/sys/fs/binfmt_misc
/// (kernel >= 6.7), proven private before the script runs
/// ([`PRIVATE_BINFMT_SH`]); the host's /etc/qemu-shim is hidden. The
/// host's table is never touched. `env` is added to the environment;
/// `$CLI`, `$INTERP`, `$EMUS` and `$FIX` name the release CLI, the release
/// interpreter, the emulator directory and the fixture cache.
pub fn sandbox(who: As, script: &str, env: &[(&str, &OsStr)]) -> Output {
    let prologue = sandbox_prologue();
    let mut cmd = match who {
        As::Root => Command::new("unshare"),
        As::Nobody => {
            let mut c = as_nobody();
            c.arg("unshare");
            c
        }
    };
    cmd.args(["--user", "--map-root-user", "--mount", "--", "sh", "-euc"])
        .arg(format!("{prologue}{script}"))
        .arg("sandbox")
        .env("CLI", cli())
        .env("INTERP", interp())
        .env("EMUS", emulator_dir())
        .env("FIX", fixtures_dir())
        .envs(userns_env())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn unshare (util-linux)")
}

/// Compiles the C program `source` with `compiler` (`cc`, or
/// `aarch64-linux-gnu-gcc` for a foreign test program), statically, warnings
/// as errors, to `out` (the source is written next to it, as `out.c`).
/// Panics naming the packages to install when the compiler or its C
/// library is missing (scripts/test installs both).
pub fn compile_c(compiler: &str, source: &str, out: &Path) {
    let src = out.with_extension("c");
    fs::write(&src, source).unwrap_or_else(|e| panic!("write {}: {e}", src.display()));
    let packages = match compiler {
        "aarch64-linux-gnu-gcc" => "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        _ => "gcc libc6-dev",
    };
    let o = Command::new(compiler)
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {compiler} ({e}): apt-get install {packages} (scripts/test does)")
        });
    assert!(
        o.status.success(),
        "{compiler} failed (are {packages} installed?):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Output's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Output's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the script succeeded, showing both streams if not.
#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "script failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Shell function `cap NAME CMD [ARGS…]` for sandbox scripts: runs the
/// command with its stdout, stderr and exit status saved as
/// `$CAPS/NAME.{out,err,rc}` (a command killed by a signal records the
/// shell's 128+N), and never stops the script. Set `CAPS` to a directory of
/// a [`Scratch`] and read the results with [`captured`] after the script:
/// one sandbox can then run many checks, each asserted on its own.
pub const CAP_SH: &str = r#"cap() {
	cap_name=$1
	shift
	cap_rc=0
	"$@" >"$CAPS/$cap_name.out" 2>"$CAPS/$cap_name.err" || cap_rc=$?
	echo "$cap_rc" >"$CAPS/$cap_name.rc"
}
"#;

/// Shell function `install_shim ARGS…` for sandbox scripts: `qemu-shim
/// install ARGS…` with the fetched emulators (`$EMUS`), into `$S/inst`:
/// the install most tests start from. Loaded by [`sandbox_caps`] and
/// [`sandbox_full_map`]; [`sandbox_installed`] runs it first.
pub const INSTALL_SH: &str = r#"install_shim() {
	"$CLI" install "$@" --emulator-dir "$EMUS" --install-dir "$S/inst"
}
"#;

/// One command's result, saved by [`CAP_SH`]'s `cap`.
#[derive(Debug, Clone)]
pub struct Captured {
    pub name: String,
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] exit {}\n--- stdout\n{}--- stderr\n{}---",
            self.name, self.rc, self.stdout, self.stderr
        )
    }
}

/// Reads what `cap NAME …` saved in `dir`. Panics, naming the capture, if
/// the script never ran it.
pub fn captured(dir: &Path, name: &str) -> Captured {
    let read = |ext: &str| {
        let p = dir.join(format!("{name}.{ext}"));
        fs::read(&p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| panic!("capture {name}: cannot read {}: {e}", p.display()))
    };
    let rc = read("rc");
    Captured {
        name: name.to_owned(),
        rc: rc
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("capture {name}: bad exit status {rc:?}")),
        stdout: read("out"),
        stderr: read("err"),
    }
}

/// Gives `path` and everything under it to host uid/gid 65534, so a script
/// run [`As::Nobody`] (root of its namespace, which maps only that uid) owns
/// and can write it.
pub fn give_to_nobody(path: &Path) {
    fn walk(p: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(65534), Some(65534))?;
        if fs::symlink_metadata(p)?.is_dir() {
            for e in fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        }
        Ok(())
    }
    walk(path).unwrap_or_else(|e| panic!("chown {} to nobody: {e}", path.display()));
}

impl Scratch {
    /// What `cap NAME …` saved in this scratch dir's `caps/` during
    /// [`sandbox_caps`].
    pub fn cap(&self, name: &str) -> Captured {
        captured(&self.join("caps"), name)
    }

    /// Asserts the install the script captured as `install` (`cap install
    /// install_shim …`, see [`INSTALL_SH`]) succeeded, and returns it.
    #[track_caller]
    pub fn installed(&self) -> Captured {
        let c = self.cap("install");
        assert_eq!(c.rc, 0, "install failed:\n{c}");
        c
    }
}

/// Runs `script` like [`sandbox`] with [`CAP_SH`] and [`INSTALL_SH`]
/// loaded, `$S` naming the scratch dir `s` and `$CAPS` its `caps/`, and
/// asserts the script itself succeeded (its setup steps; the checked
/// commands run under `cap`). For [`As::Nobody`] the scratch dir itself
/// (not what is already in it) is given to nobody so the script can create
/// files there, while files the test made as root stay root's.
pub fn sandbox_caps(who: As, s: &Scratch, script: &str) -> Output {
    let caps = s.join("caps");
    fs::create_dir_all(&caps).expect("create caps dir");
    if who == As::Nobody {
        for p in [s.path(), caps.as_path()] {
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).expect("chown scratch");
        }
    }
    let o = sandbox(
        who,
        &format!("{CAP_SH}{INSTALL_SH}{script}"),
        &[("S", s.path().as_os_str()), ("CAPS", caps.as_os_str())],
    );
    assert_ok(&o);
    o
}

/// The shared start of the tests that check what runs once qemu-shim is
/// installed: runs `script` like [`sandbox_caps`] after `cap install
/// install_shim ARGS` (qemu-shim installed into `$S/inst` with
/// `install_args`, [`INSTALL_SH`]), and asserts that install succeeded.
/// The script's own checks are read with [`Scratch::cap`] afterwards.
pub fn sandbox_installed(who: As, s: &Scratch, install_args: &str, script: &str) -> Output {
    let o = sandbox_caps(
        who,
        s,
        &format!("cap install install_shim {install_args}\n{script}"),
    );
    s.installed();
    o
}

/// Asserts a captured command succeeded, printed exactly `out` and nothing
/// on stderr.
#[track_caller]
pub fn assert_runs(c: &Captured, out: &str) {
    assert!(
        c.rc == 0 && c.stdout == out && c.stderr.is_empty(),
        "expected exit 0, stdout {out:?} and no stderr:\n{c}"
    );
}

/// Asserts a captured command was refused by qemu-shim: exit `code`, no
/// stdout, and exactly one line on stderr, starting `qemu-shim: ` and
/// containing each of `parts`.
#[track_caller]
pub fn assert_refused(c: &Captured, code: i32, parts: &[&str]) {
    let one_line = c.stderr.ends_with('\n') && c.stderr.matches('\n').count() == 1;
    assert!(
        c.rc == code
            && c.stdout.is_empty()
            && one_line
            && c.stderr.starts_with("qemu-shim: ")
            && parts.iter().all(|p| c.stderr.contains(p)),
        "expected exit {code}, no stdout, one stderr line `qemu-shim: …` containing {parts:?}:\n{c}"
    );
}

/// Runs `script` like `sandbox_caps(As::Root, …)`, but in a user namespace
/// that maps host uids and gids 0–65535 to themselves: root-owned setuid
/// files keep their meaning and the script can switch to uid 65534
/// (`nobody … CMD`, a shell function). `unshare --map-users` would need
/// newuidmap; the maps are written here instead, by host root, once the
/// script says it runs inside the namespace.
pub fn sandbox_full_map(s: &Scratch, script: &str) {
    use nix::sys::statvfs::{statvfs, FsFlags};
    use std::io::{BufRead, BufReader, Write};
    let st = statvfs(s.path()).expect("statvfs scratch");
    assert!(
        !st.flags().contains(FsFlags::ST_NOSUID),
        "{} is mounted nosuid: the setuid tests need a temporary directory that honours \
         setuid bits (set TMPDIR)",
        s.path().display()
    );
    let caps = s.join("caps");
    fs::create_dir_all(&caps).expect("create caps dir");
    let prologue = format!(
        r#"echo ready
read go
exec >"$S/script.out" 2>"$S/script.err" </dev/null
{}nobody() {{
	setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- "$@"
}}
"#,
        sandbox_prologue()
    );
    let mut child = Command::new("unshare")
        .args(["--user", "--mount", "--", "sh", "-euc"])
        .arg(format!("{prologue}{CAP_SH}{INSTALL_SH}{script}"))
        .arg("full-map")
        .env("CLI", cli())
        .env("INTERP", interp())
        .env("EMUS", emulator_dir())
        .env("FIX", fixtures_dir())
        .env("S", s.path())
        .env("CAPS", &caps)
        .envs(userns_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn unshare (util-linux)");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout piped"))
        .read_line(&mut line)
        .expect("read from the namespace");
    if line != "ready\n" {
        let o = child.wait_with_output().expect("wait for unshare");
        panic!("unshare --user --mount failed:\n{}", stderr(&o));
    }
    let pid = child.id();
    for map in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{map}"), "0 0 65536\n")
            .unwrap_or_else(|e| panic!("write /proc/{pid}/{map} (needs root): {e}"));
    }
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(b"go\n").expect("start the script");
    drop(stdin);
    let o = child.wait_with_output().expect("wait for unshare");
    let read = |n: &str| fs::read_to_string(s.join(n)).unwrap_or_default();
    assert!(
        o.status.success(),
        "script failed ({}):\n--- stdout\n{}\n--- stderr\n{}{}",
        o.status,
        read("script.out"),
        read("script.err"),
        stderr(&o)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `before`, then [`PRIVATE_BINFMT_SH`], with `sh -euc` after the
    /// command `wrapper` (none: directly), with only `env` of the
    /// prologue's variables set; prints `proven NS` if the proof held.
    fn prologue(wrapper: &[&str], before: &str, env: &[(&str, String)]) -> Output {
        let script =
            format!("{before}{PRIVATE_BINFMT_SH}echo proven \"$QEMU_SHIM_PRIVATE_BINFMT\"\n");
        let argv: Vec<&str> = wrapper.iter().copied().chain(["sh", "-euc"]).collect();
        Command::new(argv[0])
            .args(&argv[1..])
            .arg(script)
            .env_remove("QEMU_SHIM_INIT_USERNS")
            .env_remove("QEMU_SHIM_OUTER_USERNS")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("spawn sh")
    }

    #[track_caller]
    fn assert_refused(o: &Output, why: &str) {
        assert!(
            o.status.code() == Some(90) && stdout(o).is_empty() && stderr(o).contains(why),
            "expected exit 90 and {why:?}:\n--- stdout\n{}--- stderr\n{}",
            stdout(o),
            stderr(o)
        );
    }

    const NEW_NS: &[&str] = &["unshare", "--user", "--map-root-user", "--mount", "--"];

    #[test]
    fn the_prologue_proves_a_new_instance_and_names_its_namespace() {
        let o = prologue(NEW_NS, "", &userns_env());
        assert!(o.status.success(), "{}", stderr(&o));
        let proven = stdout(&o);
        let ns = proven.trim().strip_prefix("proven ").unwrap_or_default();
        assert!(ns.contains(':'), "{proven}");
        assert!(userns_env().iter().all(|(_, v)| v != ns), "{proven}");
    }

    /// Each check on its own: the namespace the prologue runs in is made to
    /// look like the one each check refuses. Every refusal comes before
    /// the mount: these never reach a table.
    #[test]
    fn the_prologue_refuses_any_namespace_but_a_new_one() {
        let [outer, init] = userns_env();
        let here = "$(stat -Lc %d:%i /proc/self/ns/user)";
        // This process's own namespace (the initial one, in CI).
        let o = prologue(&[], "", &[outer.clone(), init.clone()]);
        let why = if userns_id("self").is_some_and(|s| s.ends_with(":4026531837")) {
            "initial user namespace"
        } else {
            "caller's user namespace"
        };
        assert_refused(&o, why);
        // A new namespace, passed off as PID 1's or as the caller's.
        let before = format!("QEMU_SHIM_INIT_USERNS={here}\nexport QEMU_SHIM_INIT_USERNS\n");
        let o = prologue(NEW_NS, &before, std::slice::from_ref(&outer));
        assert_refused(&o, "PID 1's user namespace");
        let before = format!("QEMU_SHIM_OUTER_USERNS={here}\n");
        let o = prologue(NEW_NS, &before, &[outer, init]);
        assert_refused(&o, "caller's user namespace");
        // Nothing to compare with.
        assert_refused(&prologue(NEW_NS, "", &[]), "must be DEV:INODE");
    }

    /// The mount succeeds but shows an instance that holds an entry (here
    /// this namespace's own, mounted and filled after a first proof, then
    /// covered with a tmpfs: the kernel refuses to mount an instance right
    /// on top of itself): the emptiness check must refuse it.
    #[test]
    fn the_prologue_refuses_an_instance_that_is_not_empty() {
        let fill = format!(
            "{PRIVATE_BINFMT_SH}printf '%s' ':qemu-shim-test-held:M::QSHIMHELD::/bin/true:' \
             >/proc/sys/fs/binfmt_misc/register\n\
             mount -t tmpfs qemu-shim-test /proc/sys/fs/binfmt_misc\n"
        );
        let o = prologue(NEW_NS, &fill, &userns_env());
        assert_refused(&o, "not empty (qemu-shim-test-held register status )");
    }
}
