//! What the crate's tests share: the third-party fixtures, and running a
//! test in a private binfmt_misc instance. The unit tests use it as a
//! module; tests/binfmt_io.rs includes this file too (`#[path]`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's `qemu-<emulator>-static` (e.g. `qemu("qemu-aarch64")`), where
/// `scripts/fetch-fixtures` puts it; a missing one fails the test.
pub fn qemu(emulator: &str) -> PathBuf {
    let fixtures = std::env::var_os("QEMU_SHIM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    let path = fixtures.join("qemu").join(format!("{emulator}-static"));
    assert!(
        path.is_file(),
        "missing fixture {}: run scripts/fetch-fixtures",
        path.display()
    );
    path
}

/// The suite's shell lines that mount a new binfmt_misc instance and prove
/// it private (see the file for the proof).
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

/// Runs the ignored test `path` (`module_path!()` and the test's name) of
/// this test binary in a new user and mount namespace, once
/// [`PRIVATE_BINFMT_SH`] has mounted a new binfmt_misc instance there and
/// proven it private; fails with the output unless exactly that test ran
/// and passed. The test must call [`assert_in_private_instance`] first.
/// (The test harness is multithreaded and cannot unshare a user namespace
/// itself.)
pub fn run_in_private_instance(path: &str) {
    run_ignored_after(&format!("{PRIVATE_BINFMT_SH}exec \"$@\""), path);
}

/// Runs the ignored test `path` (`module_path!()` and the test's name) of
/// this test binary in a new user (root mapped) and mount namespace after
/// `setup`: shell lines (`sh -eu`) that run `"$@"`, the test binary with
/// the arguments that select that test, in the conditions the test needs
/// (the mounts are the new namespace's own, gone with it). Fails with the
/// output unless exactly that test ran and passed.
pub fn run_ignored_after(setup: &str, path: &str) {
    // The harness names tests without the crate's name.
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    let exe = std::env::current_exe().expect("path of this test binary");
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-euc"])
        .arg(setup)
        .arg("test-setup")
        .arg(&exe)
        .args(["--exact", name, "--ignored", "--test-threads=1"])
        .env("QEMU_SHIM_INIT_USERNS", userns_id("1"))
        .env("QEMU_SHIM_OUTER_USERNS", userns_id("self"))
        .output()
        .expect("spawn unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A filter that matches nothing also exits 0: insist the test ran.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} after its setup failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Panics unless [`PRIVATE_BINFMT_SH`] proved the binfmt_misc instance at
/// the default root private in this very user namespace (it exports the
/// namespace it checked): the test was started by
/// [`run_in_private_instance`], not by hand on the host.
pub fn assert_in_private_instance() {
    let here = userns_id("self");
    assert_eq!(
        std::env::var("QEMU_SHIM_PRIVATE_BINFMT").as_deref(),
        Ok(here.as_str()),
        "this test runs only through run_in_private_instance: it writes to or execs through \
         the binfmt_misc table, which must be a private one"
    );
}
