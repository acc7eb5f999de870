//! Foreign programs run through the installed interpreter on the real
//! kernel, in a private binfmt_misc instance: every busybox fixture, argv0
//! (applet symlinks, `exec -a`), arguments, exit status, streams, signals,
//! `/proc/self/exe`, relative paths and paths that look like options. Each
//! check runs in both of install's modes: emulators carried in the
//! interpreter file (the default, flags POF) and started by path
//! (`--no-carry`, flags PF); the two take different code paths from the
//! kernel's stack to the emulator.

use std::fs;

use qemu_shim_suite::{assert_runs, busybox, compile_c, sandbox_caps, As, Scratch, BUSYBOXES};

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

// ---------------------------------------------------------------------------
// /proc/self/exe after a chdir (issue 15, item 1)

/// A native helper: `fdexec FILE ARGV0 [ARGS…]` opens FILE (without
/// close-on-exec: the kernel refuses a binfmt_misc exec through a
/// close-on-exec descriptor, which the program could not reopen) and execs
/// it with `execveat(fd, "", …, AT_EMPTY_PATH)`, as fexecve does: the
/// kernel names the program `/dev/fd/N`.
const FDEXEC_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
	if (argc < 3)
		return 2;
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 2;
	}
	execveat(fd, "", argv + 2, environ, AT_EMPTY_PATH);
	perror("execveat");
	return 127;
}
"#;

/// Shell function `deep LEN CMD…`: runs CMD in a working directory exactly
/// LEN bytes long, made of directories under `$S/long`. The shell's own
/// `cd` cannot go beyond PATH_MAX (it resolves the whole logical path):
/// perl makes and enters one component at a time.
const DEEP_SH: &str = r#"deep() {
	perl -e '
		my ($want, @cmd) = @ARGV;
		chdir "$ENV{S}/long" or die "chdir: $!";
		my $len = length "$ENV{S}/long";
		while ($len < $want) {
			my $left = $want - $len;
			# Each component costs its length plus a slash; never leave 1.
			my $n = $left > 201 ? ($left == 202 ? 199 : 200) : $left - 1;
			my $c = "x" x $n;
			-d $c or mkdir $c or die "mkdir: $!";
			chdir $c or die "chdir: $!";
			$len += $n + 1;
		}
		exec @cmd or die "exec: $!";
	' "$@"
}
"#;

in_both_modes!(proc_self_exe_survives_a_chdir: proc_self_exe_survives_a_chdir_carried, proc_self_exe_survives_a_chdir_by_path);

/// qemu answers the guest's /proc/self/exe from the program path it was
/// given, resolved when the guest asks: a relative path breaks once the
/// guest changes directory (ENOENT under qemu 7.2 registered directly).
/// The interpreter hands qemu the path made absolute against the working
/// directory when it names the very file the kernel opened, and the path
/// as given otherwise; argv and argv0 stay as the caller wrote them, and
/// the guest's AT_EXECFN (qemu's path) shows which path qemu got.
/// `procexe DIR` (tests/integration/procexe.c) changes to DIR, then prints argv0,
/// AT_EXECFN, readlink and open of /proc/self/exe.
fn proc_self_exe_survives_a_chdir(mode: Mode) {
    let s = Scratch::new("procexe");
    compile_c(
        "aarch64-linux-gnu-gcc",
        include_str!("procexe.c"),
        &s.join("procexe"),
    );
    compile_c("cc", FDEXEC_C, &s.join("fdexec"));
    let script = install(mode, "aarch64")
        + DEEP_SH
        + r#"
P=$S/procexe
mkdir -p "$S/d/sub" "$S/long"
cp "$P" "$S/d/prog"
cd "$S/d"
cap rel ./prog sub
cap rel-root ./prog /
cap by-hand "$S/inst/qemu-shim-interp" ./prog sub
cap abs "$S/d/prog" sub
cap fd "$S/fdexec" ./prog myname sub
cd sub
cap rel-up ../prog /
cd "$S"
cap rel-down d/prog /

# The path as given, whenever the absolute one is not known to be right.
# A deleted working directory: getcwd fails (ENOENT).
mkdir "$S/gone"
cd "$S/gone"
rmdir "$S/gone"
cap deleted ../d/prog /
# A directory mounted over after the caller entered it: getcwd names the
# covered directory, whose path now leads to another file (the guard).
mkdir "$S/m"
cp "$P" "$S/m/prog"
cd "$S/m"
mount -t tmpfs qemu-shim-test "$S/m"
cp "$P" "$S/m/prog"
cap over-mounted ./prog /
cd "$S"
umount "$S/m"
# A chroot entered without chdir: getcwd succeeds with "(unreachable)/…".
# (By path, the emulator must exist inside it.)
mkdir -p "$S/root$EMUS"
mount --bind "$EMUS" "$S/root$EMUS"
cd "$S/d"
cap chroot perl -e 'chroot $ARGV[0] or die "chroot: $!"; exec {"./prog"} "./prog", "sub" or die "exec: $!"' "$S/root"
# A parent the program cannot search: the relative path works from the
# working directory, the absolute one does not (EACCES). Root without
# capabilities (an empty bounding set) is held to the permission bits.
mkdir -p "$S/p/in/sub"
cp "$P" "$S/p/in/prog"
cd "$S/p/in"
chmod 000 "$S/p"
cap unsearchable setpriv --inh-caps=-all --bounding-set=-all -- ./prog sub
chmod 755 "$S/p"
cd "$S"
# Long working directories: the absolute path fits PATH_MAX (4095 bytes
# and the NUL) at 4090; at 4091 it does not; at 4095 getcwd still fits
# its 4096-byte buffer; at 4096 it does not (ERANGE); beyond PATH_MAX the
# kernel refuses (ENAMETOOLONG).
for len in 4090 4091 4095 4096 5000; do
	cap "long-$len" deep "$len" sh -c 'cp "$1" ./prog && exec ./prog /' sh "$P"
done
"#;
    sandbox_caps(As::Root, &s, &script);
    assert_installed(&s, mode);

    let real = fs::canonicalize(s.path()).expect("canonicalize scratch");
    let real = real.display();
    let prog = format!("{real}/d/prog");
    let out = |argv0: &str, execfn: &str, exe: &str, open: &str| {
        format!("argv0={argv0}\nexecfn={execfn}\nexe{exe}\nopen{open}\n")
    };
    let found = format!("={prog}");
    // Relative paths, made absolute: /proc/self/exe names the program
    // wherever the guest went, and opening it gives the program.
    assert_runs(&s.cap("rel"), &out("./prog", &prog, &found, "=same"));
    assert_runs(&s.cap("rel-root"), &out("./prog", &prog, &found, "=same"));
    assert_runs(
        &s.cap("rel-up"),
        &out("../prog", &format!("{real}/d/sub/../prog"), &found, "=same"),
    );
    assert_runs(&s.cap("rel-down"), &out("d/prog", &prog, &found, "=same"));
    // The interpreter run by hand (no P layout): argv0 is still the path
    // as given, not qemu's absolute one.
    assert_runs(&s.cap("by-hand"), &out("./prog", &prog, &found, "=same"));
    // Absolute paths and AT_EMPTY_PATH execs (`/dev/fd/N`) are left alone.
    assert_runs(&s.cap("abs"), &out(&prog, &prog, &found, "=same"));
    assert_runs(&s.cap("fd"), &out("myname", "/dev/fd/3", &found, "=same"));

    // The path as given: the program runs as it always did, and qemu 7.2
    // cannot resolve the path once the guest has left (ENOENT), or at all
    // (EACCES).
    let lost = |argv0: &str, exe: &str| out(argv0, argv0, exe, "!2");
    assert_runs(&s.cap("deleted"), &lost("../d/prog", "!2"));
    assert_runs(&s.cap("over-mounted"), &lost("./prog", "!2"));
    assert_runs(&s.cap("chroot"), &lost("./prog", "!2"));
    assert_runs(&s.cap("unsearchable"), &lost("./prog", "!13"));
    let c = s.cap("long-4090");
    let deep = c
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("execfn="))
        .unwrap_or_default();
    assert!(
        deep.len() == 4095 && deep.starts_with('/') && deep.ends_with("/prog"),
        "a 4090-byte working directory: the absolute path (4095 bytes) fits:\n{c}"
    );
    assert_runs(&c, &out("./prog", deep, &format!("={deep}"), "=same"));
    for len in [4091, 4095, 4096, 5000] {
        assert_runs(&s.cap(&format!("long-{len}")), &lost("./prog", "!2"));
    }
}
