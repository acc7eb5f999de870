//! Foreign programs run by a real unprivileged user (host uid 65534, root
//! only of its own user namespace, so files owned by the host's root keep
//! their permissions against it).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use qemu_shim_suite::{assert_refused, assert_runs, busybox, sandbox_caps, set_mode, As, Scratch};

#[test]
fn nobody_runs_foreign_programs_but_not_unreadable_ones() {
    let s = Scratch::new("nobody");
    let bb = busybox("arm64");
    // Made here, as root, so they stay root's inside the sandbox.
    let prot = s.join("prot");
    fs::create_dir(&prot).unwrap();
    // One directory each: busybox picks its applet by argv0, so the copies
    // keep the name `busybox`.
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

    sandbox_caps(
        As::Nobody,
        &s,
        r#"
cap uid-map cat /proc/self/uid_map
cap install "$CLI" install aarch64 --emulator-dir "$EMUS" --install-dir "$S/inst"
cap fixture "$FIX/busybox/arm64/busybox" uname -m
cap ok "$S/prot/ok/busybox" uname -m
cap read-0711 cat "$S/prot/x0711/busybox"
cap native-0711 "$S/prot/native-0711"
cap x0711 "$S/prot/x0711/busybox" uname -m
cap x0111 "$S/prot/x0111/busybox" uname -m
cap install-ro "$CLI" install aarch64 --emulator-dir "$EMUS" --install-dir "$S/prot/inst"
"#,
    );
    // Root of the namespace is host uid 65534 and nothing else.
    let c = s.cap("uid-map");
    let map: Vec<&str> = c.stdout.split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "not running as nobody:\n{c}");
    let c = s.cap("install");
    assert_eq!(c.rc, 0, "install in nobody's own namespace failed:\n{c}");

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

    // Known limit (flags F and P, no O): the kernel starts the interpreter
    // with the program's path, not an open descriptor, and the interpreter
    // (as qemu after it would) must open the program by path as the user,
    // which an execute-only program forbids. Registering with O, where the
    // kernel opens the program and passes the descriptor, is what the
    // self-contained interpreter issue brings.
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

    // Root of its own namespace still cannot write into a directory owned by
    // the host's root.
    let c = s.cap("install-ro");
    let prot_inst = prot.join("inst");
    assert!(
        c.rc == 1
            && c.stderr.starts_with("qemu-shim: error: ")
            && c.stderr.contains(&*prot_inst.to_string_lossy())
            && c.stderr.contains("permission denied"),
        "install into an unwritable dir: exit 1 naming it:\n{c}"
    );
}
