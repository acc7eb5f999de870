//! Foreign programs run through the installed interpreter on the real
//! kernel, in a private binfmt_misc instance: every busybox fixture, argv0
//! (applet symlinks, `exec -a`), arguments, exit status, streams, signals,
//! `/proc/self/exe`, relative paths and paths that look like options.

use std::fs;

use qemu_shim_suite::{assert_runs, busybox, sandbox_caps, As, Scratch, BUSYBOXES};

/// Installs qemu-shim for `arches` (all foreign ones if empty) from the
/// fetched emulators into `$S/inst`.
fn install(arches: &str) -> String {
    format!("cap install \"$CLI\" install {arches} --emulator-dir \"$EMUS\" --install-dir \"$S/inst\"\n")
}

#[track_caller]
fn assert_installed(s: &Scratch) {
    let c = s.cap("install");
    assert_eq!(c.rc, 0, "install failed:\n{c}");
}

#[test]
fn every_busybox_prints_its_machine_and_i386_stays_native() {
    let s = Scratch::new("every-busybox");
    for (deb, _, _) in BUSYBOXES {
        busybox(deb);
    }
    let mut script = install("");
    for (deb, _, _) in BUSYBOXES {
        script += &format!("cap uname-{deb} \"$FIX/busybox/{deb}/busybox\" uname -m\n");
    }
    script += "cap entries ls /proc/sys/fs/binfmt_misc\n";
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s);

    let entries = s.cap("entries");
    let names: Vec<&str> = entries.stdout.lines().collect();
    for (deb, row, machine) in BUSYBOXES {
        let c = s.cap(&format!("uname-{deb}"));
        assert_runs(&c, &format!("{machine}\n"));
        if *deb == "i386" {
            continue;
        }
        let entry = format!("qemu-shim-{row}");
        assert!(
            names.contains(&entry.as_str()),
            "no entry {entry} after install; entries: {names:?}"
        );
    }
    // The host's own arches must never be registered: an entry matching
    // them would catch every native program (and the interpreter itself).
    for native in ["qemu-shim-i386", "qemu-shim-x86_64"] {
        assert!(
            !names.contains(&native),
            "{native} registered on an x86_64 host; entries: {names:?}"
        );
    }
    for n in &names {
        assert!(
            ["register", "status"].contains(n) || n.starts_with("qemu-shim-"),
            "unexpected entry {n} in a fresh instance; entries: {names:?}"
        );
    }
}

#[test]
fn argv0_reaches_the_program() {
    let s = Scratch::new("argv0");
    busybox("arm64");
    let script = install("aarch64")
        + r#"
mkdir "$S/d"
cp "$FIX/busybox/arm64/busybox" "$S/d/busybox"
ln -s busybox "$S/d/uname"
cd "$S/d"
cap symlink ./uname -m
cap symlink-abs "$S/d/uname" -m
# busybox picks the applet by argv0: `uname` only if argv0 arrived.
cap exec-a bash -c 'exec -a uname ./busybox -m'
# A login-shell argv0 starts with '-': it must reach the program as it is,
# not be taken for an option by the emulator.
cap exec-a-dash bash -c 'exec -a -sh ./busybox -c "echo \$0"'
# Any argv0, spaces and all: busybox names it when it is no applet.
cap exec-a-odd bash -c 'exec -a "no such applet" ./busybox'
"#;
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s);
    assert_runs(&s.cap("symlink"), "aarch64\n");
    assert_runs(&s.cap("symlink-abs"), "aarch64\n");
    assert_runs(&s.cap("exec-a"), "aarch64\n");
    assert_runs(&s.cap("exec-a-dash"), "-sh\n");
    let odd = s.cap("exec-a-odd");
    assert!(
        odd.rc == 127 && odd.stderr == "no such applet: applet not found\n",
        "busybox should see argv0 `no such applet`:\n{odd}"
    );
}

#[test]
fn arguments_status_streams_and_signals_pass_through() {
    let s = Scratch::new("passthrough");
    busybox("arm64");
    let script = install("aarch64")
        + r#"
bb=$FIX/busybox/arm64/busybox
# Empty arguments, spaces, a newline, and words the emulator itself would
# take for options.
cap args "$bb" printf '[%s]' 'a b' '' ' ' -0 -- --help -L '-cpu' 'x
y' '*'
cap many "$bb" sh -c 'echo $#' x $(seq 1000)
cap exit42 "$bb" sh -c 'exit 42'
cap false "$bb" false
printf 'hello\nworld\n' | cap stdin "$bb" tr a-z A-Z
cap stderr "$bb" sh -c 'echo to-stderr >&2'
cap env env QEMU_SHIM_TEST_VAR='v a l' "$bb" sh -c 'echo "$QEMU_SHIM_TEST_VAR"'
# A program killed by a signal: the shell sees 128 + the signal.
cap sigterm "$bb" sh -c 'kill -TERM $$'
cap sigkill "$bb" sh -c 'kill -KILL $$'
"#;
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s);
    assert_runs(
        &s.cap("args"),
        "[a b][][ ][-0][--][--help][-L][-cpu][x\ny][*]",
    );
    assert_runs(&s.cap("many"), "1000\n");
    let c = s.cap("exit42");
    assert!(c.rc == 42 && c.stderr.is_empty(), "exit status lost:\n{c}");
    let c = s.cap("false");
    assert!(c.rc == 1 && c.stderr.is_empty(), "exit status lost:\n{c}");
    assert_runs(&s.cap("stdin"), "HELLO\nWORLD\n");
    let c = s.cap("stderr");
    assert!(
        c.rc == 0 && c.stdout.is_empty() && c.stderr == "to-stderr\n",
        "stderr lost:\n{c}"
    );
    assert_runs(&s.cap("env"), "v a l\n");
    let c = s.cap("sigterm");
    assert_eq!(c.rc, 128 + 15, "death by SIGTERM not reported:\n{c}");
    let c = s.cap("sigkill");
    assert_eq!(c.rc, 128 + 9, "death by SIGKILL not reported:\n{c}");
}

#[test]
fn proc_self_exe_is_the_program_and_relative_paths_work() {
    let s = Scratch::new("paths");
    busybox("arm64");
    let script = install("aarch64")
        + r#"
mkdir -p "$S/d/sub"
cp "$FIX/busybox/arm64/busybox" "$S/d/busybox"
ln -s busybox "$S/d/readlink"
cd "$S/d"
cap exe ./busybox readlink /proc/self/exe
cap exe-link ./readlink /proc/self/exe
cap rel-dot ./busybox uname -m
cd sub
cap rel-up ../busybox uname -m
cd "$S"
cap rel-down d/busybox uname -m
"#;
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s);
    let real = fs::canonicalize(s.path()).expect("canonicalize scratch");
    let exe = format!("{}/d/busybox\n", real.display());
    // qemu shows the guest its program, resolved to an absolute path, as
    // the kernel would for a native one (a symlink resolves to its target).
    assert_runs(&s.cap("exe"), &exe);
    assert_runs(&s.cap("exe-link"), &exe);
    assert_runs(&s.cap("rel-dot"), "aarch64\n");
    assert_runs(&s.cap("rel-up"), "aarch64\n");
    assert_runs(&s.cap("rel-down"), "aarch64\n");
}

/// A program whose path starts with `-`. `./-uname` is the easy case; the
/// hard one is a bare `-uname`, which the kernel hands the interpreter when
/// the program was found through an empty `PATH` entry (the current
/// directory) by dash or execvp: the interpreter and the emulator then see
/// a path that reads like an option. (bash makes it `./-uname`.)
#[test]
fn program_paths_starting_with_a_dash() {
    let s = Scratch::new("dash-path");
    busybox("arm64");
    let script = install("aarch64")
        + r#"
mkdir "$S/d"
cd "$S/d"
# busybox runs the applet argv0 names; a leading '-' (a login shell's
# argv0) is dropped, so argv0 `-uname` runs uname.
cp "$FIX/busybox/arm64/busybox" ./-uname
# A native script shows which path the kernel got for a name: the kernel
# passes the script's path to its interpreter (printf here).
printf '#!/usr/bin/printf [%%s]\n' >./-show
chmod +x ./-show
cap dotslash bash -c 'exec -a uname ./-uname -m'
PATH=":$PATH"
cap bare-show -show
cap bare -uname -m
cap bare-env-show env -- -show
cap bare-env env -- -uname -m
"#;
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s);
    assert_runs(&s.cap("dotslash"), "aarch64\n");
    // If these fail the shell or env resolved the name to a path with a
    // slash, and the checks after them do not test a bare `-uname`.
    assert_runs(&s.cap("bare-show"), "[-show]");
    assert_runs(&s.cap("bare-env-show"), "[-show]");
    assert_runs(&s.cap("bare"), "aarch64\n");
    assert_runs(&s.cap("bare-env"), "aarch64\n");
}
