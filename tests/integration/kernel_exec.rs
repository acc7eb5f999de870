//! Foreign programs run through the installed interpreter on the real
//! kernel, in a private binfmt_misc instance: every busybox fixture, argv0
//! (applet symlinks, `exec -a`), arguments, exit status, streams, signals,
//! `/proc/self/exe`, relative paths and paths that look like options. Each
//! check runs in both of install's modes: emulators carried in the
//! interpreter file (the default, flags POF) and started by path
//! (`--no-carry`, flags PF); the two take different code paths from the
//! kernel's stack to the emulator.

use std::fs;

use qemu_shim_suite::{assert_runs, busybox, sandbox_caps, As, Scratch, BUSYBOXES};

/// How the interpreter starts the emulator.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The default: the emulator's image is carried in the interpreter
    /// file, registered with O.
    Carried,
    /// `--no-carry`: the emulator is exec'd by path.
    ByPath,
}

impl Mode {
    fn option(self) -> &'static str {
        match self {
            Mode::Carried => "",
            Mode::ByPath => "--no-carry",
        }
    }

    /// Whether the flag letters the kernel prints for our entry fit the
    /// mode: P and F always; O (the kernel opens the program) exactly when
    /// the emulators are carried. C is the installer's choice either way.
    fn fits(self, flags: &str) -> bool {
        let o = matches!(self, Mode::Carried);
        flags.contains('P') && flags.contains('F') && flags.contains('O') == o
    }
}

/// The letters of the `flags: …` line of an entry file.
fn entry_flags(entry: &str) -> Option<&str> {
    entry.lines().find_map(|l| l.strip_prefix("flags: "))
}

/// Script lines that install qemu-shim for `arches` (all foreign ones if
/// empty) from the fetched emulators into `$S/inst`, and capture the
/// aarch64 entry, whose flags tell which mode took effect.
fn install(mode: Mode, arches: &str) -> String {
    format!(
        "cap install install_shim {arches} {}\n\
         cap entry cat /proc/sys/fs/binfmt_misc/qemu-shim-aarch64\n",
        mode.option()
    )
}

#[track_caller]
fn assert_installed(s: &Scratch, mode: Mode) {
    s.installed();
    let e = s.cap("entry");
    assert!(
        e.rc == 0 && entry_flags(&e.stdout).is_some_and(|f| mode.fits(f)),
        "{mode:?}: the aarch64 entry's flags do not fit the mode:\n{e}"
    );
}

/// One `#[test]` per mode for a check taking the mode.
macro_rules! in_both_modes {
    ($check:ident: $carried:ident, $by_path:ident) => {
        #[test]
        fn $carried() {
            $check(Mode::Carried)
        }
        #[test]
        fn $by_path() {
            $check(Mode::ByPath)
        }
    };
}

in_both_modes!(every_busybox_prints_its_machine_and_i386_stays_native: every_busybox_prints_its_machine_carried, every_busybox_prints_its_machine_by_path);

fn every_busybox_prints_its_machine_and_i386_stays_native(mode: Mode) {
    let s = Scratch::new("every-busybox");
    for (deb, _, _) in BUSYBOXES {
        busybox(deb);
    }
    let mut script = install(mode, "");
    for (deb, _, _) in BUSYBOXES {
        script += &format!("cap uname-{deb} \"$FIX/busybox/{deb}/busybox\" uname -m\n");
    }
    script += "cap entries ls /proc/sys/fs/binfmt_misc\n";
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s, mode);

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

in_both_modes!(argv0_reaches_the_program: argv0_reaches_the_program_carried, argv0_reaches_the_program_by_path);

fn argv0_reaches_the_program(mode: Mode) {
    let s = Scratch::new("argv0");
    busybox("arm64");
    let script = install(mode, "aarch64")
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
    assert_installed(&s, mode);
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

in_both_modes!(arguments_status_streams_and_signals_pass_through: arguments_status_streams_signals_carried, arguments_status_streams_signals_by_path);

fn arguments_status_streams_and_signals_pass_through(mode: Mode) {
    let s = Scratch::new("passthrough");
    busybox("arm64");
    let script = install(mode, "aarch64")
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
    assert_installed(&s, mode);
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

in_both_modes!(proc_self_exe_is_the_program_and_relative_paths_work: proc_self_exe_and_relative_paths_carried, proc_self_exe_and_relative_paths_by_path);

fn proc_self_exe_is_the_program_and_relative_paths_work(mode: Mode) {
    let s = Scratch::new("paths");
    busybox("arm64");
    let script = install(mode, "aarch64")
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
    assert_installed(&s, mode);
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

in_both_modes!(program_paths_starting_with_a_dash: dash_leading_paths_carried, dash_leading_paths_by_path);

/// A program whose path starts with `-`. `./-uname` is the easy case; the
/// hard one is a bare `-uname`, which the kernel hands the interpreter when
/// the program was found through an empty `PATH` entry (the current
/// directory) by dash or execvp: the interpreter and the emulator then see
/// a path that reads like an option. (bash makes it `./-uname`.)
fn program_paths_starting_with_a_dash(mode: Mode) {
    let s = Scratch::new("dash-path");
    busybox("arm64");
    let script = install(mode, "aarch64")
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
    assert_installed(&s, mode);
    assert_runs(&s.cap("dotslash"), "aarch64\n");
    // If these fail the shell or env resolved the name to a path with a
    // slash, and the checks after them do not test a bare `-uname`.
    assert_runs(&s.cap("bare-show"), "[-show]");
    assert_runs(&s.cap("bare-env-show"), "[-show]");
    assert_runs(&s.cap("bare"), "aarch64\n");
    assert_runs(&s.cap("bare-env"), "aarch64\n");
}

/// Carried emulators are read from the interpreter file: the emulator the
/// install found may go away. (Started by path, the same loss is exit 127:
/// tests/integration/interp_errors.rs.)
#[test]
fn carried_emulators_need_no_emulator_file() {
    let s = Scratch::new("carried-no-file");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
mkdir "$S/emus"
cp "$EMUS/qemu-aarch64-static" "$S/emus/"
cap install "$CLI" install aarch64 --emulator-dir "$S/emus" --install-dir "$S/inst"
rm -r "$S/emus"
cap run "$FIX/busybox/arm64/busybox" uname -m
"#,
    );
    s.installed();
    assert_runs(&s.cap("run"), "aarch64\n");
}

/// F pins the interpreter file at registration: the entry works where its
/// path shows something else (a container's or chroot's file system),
/// here a tmpfs mounted over the install dir. Without F (`--no-pin`) the
/// kernel looks the path up at each exec and the exec fails.
#[test]
fn pinned_entries_work_where_the_interpreter_path_is_missing() {
    let s = Scratch::new("pin");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
bb=$FIX/busybox/arm64/busybox
R=/proc/sys/fs/binfmt_misc
cap install install_shim aarch64
cap entry cat "$R/qemu-shim-aarch64"
mount -t tmpfs tmpfs "$S/inst"
cap pinned "$bb" uname -m
umount "$S/inst"
cap install-nopin install_shim aarch64 --no-pin
cap entry-nopin cat "$R/qemu-shim-aarch64"
cap nopin-visible "$bb" uname -m
mount -t tmpfs tmpfs "$S/inst"
cap nopin-hidden "$bb" uname -m
"#,
    );
    for (install, entry, pinned) in [
        ("install", "entry", true),
        ("install-nopin", "entry-nopin", false),
    ] {
        let c = s.cap(install);
        assert_eq!(c.rc, 0, "install failed:\n{c}");
        let e = s.cap(entry);
        assert!(
            entry_flags(&e.stdout).is_some_and(|f| f.contains('F') == pinned),
            "F expected {pinned}:\n{e}"
        );
    }
    assert_runs(&s.cap("pinned"), "aarch64\n");
    assert_runs(&s.cap("nopin-visible"), "aarch64\n");
    // The kernel cannot open the interpreter: execve fails with ENOENT,
    // which the shell reports as 127.
    let c = s.cap("nopin-hidden");
    assert!(
        c.rc == 127 && c.stdout.is_empty(),
        "an unpinned entry whose interpreter path is missing must fail the exec:\n{c}"
    );
}
