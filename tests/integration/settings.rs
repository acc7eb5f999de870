//! The administrator's per-arch emulator settings (issue 15 item 2): a qemu
//! CPU model chosen in the config reaches every exec of that arch, setuid
//! ones included; an unprivileged user's own `QEMU_CPU` still wins for
//! their own programs, never for a setuid one. Observed with Debian's
//! qemu-arm and armel busybox: `uname -m` says armv7l under qemu's default
//! model and armv6l under `arm1176`.

use qemu_shim_suite::{assert_refused, assert_runs, sandbox_full_map, Scratch};

#[test]
fn an_arch_cpu_model_reaches_every_exec_and_a_users_qemu_cpu_only_their_own() {
    let s = Scratch::new("cpu");
    sandbox_full_map(
        &s,
        r#"
mkdir "$S/bin" "$S/hf" "$S/suid"
cp "$FIX/busybox/armel/busybox" "$S/bin/busybox"
cp "$FIX/busybox/armhf/busybox" "$S/hf/busybox"
cp "$FIX/busybox/armel/busybox" "$S/suid/busybox"
chmod 755 "$S/bin/busybox" "$S/hf/busybox"
chmod 4755 "$S/suid/busybox"
: >"$S/none.toml"
printf '[arch.armel]\ncpu = "arm1176"\n' >"$S/v6.toml"
printf '[arch.arm]\ncpu = "pentium"\n' >"$S/bad.toml"
printf '[arch.arm]\nemulator = "box64"\ncpu = "max"\n' >"$S/plain.toml"
chmod 644 "$S"/*.toml

cap install-default install_shim arm --config "$S/none.toml"
cap default "$S/bin/busybox" uname -m
cap default-user nobody "$S/bin/busybox" uname -m

cap install install_shim arm --config "$S/v6.toml"
cap v6 "$S/bin/busybox" uname -m
cap v6-user nobody "$S/bin/busybox" uname -m
cap v6-user-env nobody env QEMU_CPU=cortex-a7 "$S/bin/busybox" uname -m
cap v6-armhf "$S/hf/busybox" true
cap v6-setuid nobody "$S/suid/busybox" uname -m
cap v6-setuid-env nobody env QEMU_CPU=cortex-a7 "$S/suid/busybox" uname -m
cap environ nobody env QEMU_CPU=cortex-a7 "$S/bin/busybox" sh -c 'echo "${QEMU_CPU-unset}"'
cap environ-admin "$S/bin/busybox" sh -c 'echo "${QEMU_CPU-unset}"'
cap status "$CLI" status
cap status-arm "$CLI" status armel
cap status-json "$CLI" status --json
cap which "$CLI" which "$S/bin/busybox"
cap which-json "$CLI" which --json "$S/bin/busybox"
cap doctor "$CLI" doctor arm

cap bad install_shim arm --config "$S/bad.toml"
cap plain install_shim arm --config "$S/plain.toml"
cap after-bad "$S/bin/busybox" uname -m

cap install-by-path install_shim arm --no-carry --config "$S/v6.toml"
cap by-path "$S/bin/busybox" uname -m
cap by-path-user-env nobody env QEMU_CPU=cortex-a7 "$S/bin/busybox" uname -m
"#,
    );
    for c in ["install-default", "install"] {
        assert_eq!(s.cap(c).rc, 0, "{}", s.cap(c));
    }
    // qemu's default model, for root and for a user alike.
    assert_runs(&s.cap("default"), "armv7l\n");
    assert_runs(&s.cap("default-user"), "armv7l\n");
    // The administrator's model, for every exec of the arch.
    assert_runs(&s.cap("v6"), "armv6l\n");
    assert_runs(&s.cap("v6-user"), "armv6l\n");
    // The user's own QEMU_CPU wins for their own program...
    assert_runs(&s.cap("v6-user-env"), "armv7l\n");
    // ...not for a setuid one, which gets the administrator's model.
    assert_runs(&s.cap("v6-setuid"), "armv6l\n");
    assert_runs(&s.cap("v6-setuid-env"), "armv6l\n");
    // That is what choosing a model means: armhf busybox needs ARMv7.
    let hf = s.cap("v6-armhf");
    assert_eq!(hf.rc, 128 + 4, "SIGILL expected:\n{hf}");
    // QEMU_CPU is never put into the environment (the program's children
    // would inherit it): the guest sees the user's own, or none.
    assert_runs(&s.cap("environ"), "cortex-a7\n");
    assert_runs(&s.cap("environ-admin"), "unset\n");
    // status (text and JSON), which and doctor show the model.
    let status = s.cap("status");
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with("arm "))
        .unwrap_or("");
    assert!(row.contains("-cpu arm1176"), "status row:\n{status}");
    assert!(
        s.cap("status-arm").stdout.contains("cpu:"),
        "{}",
        s.cap("status-arm")
    );
    assert!(
        s.cap("status-arm").stdout.contains("arm1176"),
        "{}",
        s.cap("status-arm")
    );
    let json: serde_json::Value = serde_json::from_str(&s.cap("status-json").stdout).unwrap();
    let arm = json["arches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["arch"] == "arm")
        .unwrap_or_else(|| panic!("no arm in {json}"));
    assert_eq!(arm["qemu_shim"]["emulator"]["cpu"], "arm1176", "{arm}");
    assert!(
        s.cap("which").stdout.contains("cpu:         arm1176"),
        "{}",
        s.cap("which")
    );
    let which: serde_json::Value = serde_json::from_str(&s.cap("which-json").stdout).unwrap();
    assert_eq!(which["entry"]["cpu"], "arm1176", "{which}");
    let doctor = s.cap("doctor");
    assert!(
        doctor.rc == 0 && doctor.stdout.contains("-cpu arm1176"),
        "{doctor}"
    );
    // A model qemu refuses, or one for box64, is one line, and the table
    // stays as it was.
    assert_refused(
        &s.cap("bad"),
        1,
        &["cpu model \"pentium\" for arm", "unable to find CPU model"],
    );
    assert_refused(&s.cap("plain"), 1, &["box64 takes no CPU model"]);
    assert_runs(&s.cap("after-bad"), "armv6l\n");
    // The same for qemu started by path.
    assert_eq!(
        s.cap("install-by-path").rc,
        0,
        "{}",
        s.cap("install-by-path")
    );
    assert_runs(&s.cap("by-path"), "armv6l\n");
    assert_runs(&s.cap("by-path-user-env"), "armv7l\n");
}
