//! Foreign programs run by a real unprivileged user (host uid 65534, root
//! only of its own user namespace, so files owned by the host's root keep
//! their permissions against it), in both of install's modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use qemu_shim_suite::{
    assert_refused, assert_runs, busybox, sandbox_installed, set_mode, As, Captured, Scratch,
};

/// Sets up root-owned copies of the arm64 busybox (mode 0755, 0711, 0111;
/// one directory each, as busybox picks its applet by argv0 and the copies
/// keep the name `busybox`) and an execute-only native program, then runs
/// them as nobody after `install <install_opts>`.
fn run_as_nobody(tag: &str, install_opts: &str) -> Scratch {
    let s = Scratch::new(tag);
    let bb = busybox("arm64");
    // Made here, as root, so they stay root's inside the sandbox.
    let prot = s.join("prot");
    fs::create_dir(&prot).unwrap();
    for (dir, mode) in [("ok", 0o755), ("x0711", 0o711), ("x0111", 0o111)] {
        fs::create_dir(prot.join(dir)).unwrap();
        let p = prot.join(dir).join("busybox");
        fs::copy(&bb, &p).unwrap();
        set_mode(&p, mode);
    }
    fs::copy("/usr/bin/true", prot.join("native-0711")).unwrap();
    set_mode(&prot.join("native-0711"), 0o711);
    assert_eq!(
        fs::metadata(prot.join("x0711/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711
    );
    let script = format!(
        r#"
cap uid-map cat /proc/self/uid_map
cap fixture "$FIX/busybox/arm64/busybox" uname -m
cap ok "$S/prot/ok/busybox" uname -m
cap read-0711 cat "$S/prot/x0711/busybox"
cap native-0711 "$S/prot/native-0711"
cap x0711 "$S/prot/x0711/busybox" uname -m
cap x0111 "$S/prot/x0111/busybox" uname -m
cap install-ro "$CLI" install aarch64 {install_opts} --emulator-dir "$EMUS" --install-dir "$S/prot/inst"
"#
    );
    sandbox_installed(As::Nobody, &s, &format!("aarch64 {install_opts}"), &script);

    // Root of the namespace is host uid 65534 and nothing else.
    let c = s.cap("uid-map");
    let map: Vec<&str> = c.stdout.split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "not running as nobody:\n{c}");

    assert_runs(&s.cap("fixture"), "aarch64\n");
    assert_runs(&s.cap("ok"), "aarch64\n");

    // The file is really unreadable for this user, and the kernel itself
    // runs an unreadable native program (it needs only execute permission).
    let c = s.cap("read-0711");
    assert!(
        c.rc != 0 && c.stderr.contains("Permission denied"),
        "x0711 readable?\n{c}"
    );
    assert_runs(&s.cap("native-0711"), "");

    // Root of its own namespace still cannot write into a directory owned
    // by the host's root.
    assert_install_refused(&s.cap("install-ro"), &prot.join("inst").to_string_lossy());
    s
}

#[track_caller]
fn assert_install_refused(c: &Captured, dir: &str) {
    assert!(
        c.rc == 1
            && c.stderr.starts_with("qemu-shim: error: ")
            && c.stderr.contains(dir)
            && c.stderr.contains("permission denied"),
        "install into an unwritable dir: exit 1 naming it:\n{c}"
    );
}

/// Carried emulators, flag O: the kernel opens the program and the
/// emulator reads it from that descriptor, so execute-only programs run,
/// as native ones do.
#[test]
fn nobody_runs_foreign_programs_even_execute_only_ones_carried() {
    let s = run_as_nobody("nobody-carried", "");
    for name in ["x0711", "x0111"] {
        assert_runs(&s.cap(name), "aarch64\n");
    }
}

/// Known limit of `--no-carry` (flags PF, no O): the kernel starts the
/// interpreter with the program's path, not an open descriptor, and the
/// interpreter (as qemu after it would) must open the program by path as
/// the user, which an execute-only program forbids. The default install
/// (carried emulators, flag O) lifts it: see the test above.
#[test]
fn nobody_runs_foreign_programs_but_not_execute_only_ones_by_path() {
    let s = run_as_nobody("nobody-by-path", "--no-carry");
    for name in ["x0711", "x0111"] {
        let path = s.join(&format!("prot/{name}/busybox"));
        assert_refused(
            &s.cap(name),
            126,
            &[&format!(
                "qemu-shim: {}: cannot open: permission denied",
                path.display()
            )],
        );
    }
}
