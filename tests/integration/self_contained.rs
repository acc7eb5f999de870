//! The self-contained interpreter (issue 3) on the real kernel, in private
//! binfmt_misc instances: with the emulators carried in the one interpreter
//! file (pinned with F), foreign programs run in chroots and containers that
//! hold no emulator and have no /proc; execute-only programs run for an
//! unprivileged user; argv is exactly what direct registration with P gives;
//! `--no-carry` and `--no-pin` find what they need by path inside the
//! namespace; a setuid program whose emulator could only be started by path
//! is refused; upgrading never fails a foreign program; `status` shows the
//! file; an emulated process costs no more than 1 MiB of memory over qemu
//! registered directly.

use std::fs;
use std::path::Path;

use qemu_shim_registry::arch;
use qemu_shim_registry::format::{Kind, RegisterLine};
use qemu_shim_suite::{
    assert_refused, assert_runs, busybox, emulator_dir, fixture, fixtures_dir, sandbox_caps,
    sandbox_full_map, sandbox_installed, set_mode, As, Captured, Scratch,
};

/// The Debian arches whose busybox runs in an emulator-free chroot, and what
/// `uname -m` prints there under qemu 7.2.
const CHROOT_ARCHES: &[(&str, &str)] = &[
    ("arm64", "aarch64"),
    ("armhf", "armv7l"),
    ("s390x", "s390x"),
    ("ppc64el", "ppc64le"),
    ("mipsel", "mips"),
];

/// The arch-table names of [`CHROOT_ARCHES`], for `install`.
const CHROOT_ROWS: &str = "aarch64 arm s390x ppc64le mipsel";

/// Makes a root filesystem at `root` holding only `bin/busybox` (a copy of
/// the fixture for `deb`) and `bin/sh` linking to it: no emulator, no /proc.
fn busybox_root(root: &Path, deb: &str) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(busybox(deb), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
}

/// The letters of the `flags: …` line of an entry file.
fn flags_of(entry: &str) -> &str {
    entry
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or("")
}

/// The register line of an entry that runs `emulator` directly, as the
/// distros register qemu (flags `OPF`), for aarch64 programs whose
/// `e_ident[15]` is 1. Our entries require 0 there, so the two coexist in
/// one instance and a copy of a program with that byte set goes to qemu
/// directly (qemu ignores the padding bytes of `e_ident`).
fn direct_line(emulator: &Path) -> String {
    let a = arch::by_name("aarch64").unwrap();
    let (mut magic, mut mask) = (a.magic.to_vec(), a.mask.to_vec());
    assert!(magic.len() > 15 && mask[15] == 0xff && magic[15] == 0);
    magic[15] = 1;
    mask[15] = 0xff;
    RegisterLine {
        name: "direct-aarch64".into(),
        kind: Kind::Magic {
            offset: a.offset,
            magic,
            mask: Some(mask),
        },
        interpreter: emulator.display().to_string(),
        flags: "OPF".parse().unwrap(),
    }
    .to_string()
}

/// Copies the arm64 busybox to `dir/busybox` with `e_ident[15]` set to 1, so
/// that [`direct_line`]'s entry, not ours, runs it.
fn direct_busybox(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut b = fs::read(busybox("arm64")).unwrap();
    b[15] = 1;
    let p = dir.join("busybox");
    fs::write(&p, b).unwrap();
    set_mode(&p, 0o755);
}

#[test]
fn carried_emulators_run_in_chroots_and_containers_without_emulator_or_proc() {
    let s = Scratch::new("chroots");
    // The emulators are copied and the copies removed once installed: what
    // runs afterwards can only be what the interpreter file carries.
    let emus = s.join("emus");
    fs::create_dir(&emus).unwrap();
    for name in ["aarch64", "arm", "s390x", "ppc64le", "mipsel"] {
        let f = format!("qemu-{name}-static");
        fs::copy(emulator_dir().join(&f), emus.join(&f)).unwrap();
    }
    let mut script = format!(
        "cap install \"$CLI\" install {CHROOT_ROWS} --emulator-dir \"$S/emus\" --install-dir \"$S/inst\"\n\
         rm -r \"$S/emus\"\n\
         cap inst-dir ls -A \"$S/inst\"\n\
         cap entries sh -c 'for e in /proc/sys/fs/binfmt_misc/qemu-shim-*; do echo \"== $e\"; cat \"$e\"; done'\n"
    );
    for (deb, _) in CHROOT_ARCHES {
        let root = s.join(&format!("root-{deb}"));
        busybox_root(&root, deb);
        // The mount point for the old root when it becomes a container.
        fs::create_dir(root.join("old")).unwrap();
        script += &format!(
            r#"
R=$S/root-{deb}
cap chroot-uname-{deb} chroot "$R" /bin/busybox uname -m
cap chroot-sh-{deb} chroot "$R" /bin/sh -c 'echo "$0"; /bin/busybox ls /; /bin/busybox test -e /proc/self/status || echo no-proc'
# A container: its own mount namespace whose root is the busybox root, the
# host's tree (the interpreter file, the emulators) unmounted from it.
cap container-{deb} unshare --mount sh -c 'mount --bind "$1" "$1" && cd "$1" && pivot_root . old && exec /bin/busybox sh -c '\''
/bin/busybox umount -l /old || exit 3
/bin/busybox ls -A /old
/bin/busybox test -e "$0" && echo "interpreter file visible"
/bin/busybox test -e /proc/self/status && echo "proc visible"
/bin/busybox uname -m
'\'' "$2"' sh "$R" "$S/inst/qemu-shim-interp"
"#
        );
    }
    sandbox_caps(As::Root, &s, &script);

    s.installed();
    // One interpreter file for every arch and its install record, nothing
    // else.
    assert_runs(
        &s.cap("inst-dir"),
        "qemu-shim-interp\nqemu-shim-interp.state\n",
    );
    let entries = s.cap("entries");
    let interp_line = format!("interpreter {}/inst/qemu-shim-interp", s.path().display());
    let blocks: Vec<&str> = entries.stdout.split("== ").skip(1).collect();
    assert_eq!(blocks.len(), CHROOT_ARCHES.len(), "{entries}");
    for b in blocks {
        assert!(
            b.lines().any(|l| l == interp_line) && flags_of(b).contains('F'),
            "every entry must use the one file, pinned with F:\n{b}"
        );
    }
    for (deb, machine) in CHROOT_ARCHES {
        assert_runs(
            &s.cap(&format!("chroot-uname-{deb}")),
            &format!("{machine}\n"),
        );
        assert_runs(
            &s.cap(&format!("chroot-sh-{deb}")),
            "/bin/sh\nbin\nold\nno-proc\n",
        );
        assert_runs(&s.cap(&format!("container-{deb}")), &format!("{machine}\n"));
    }
}

#[test]
fn execute_only_program_in_a_chroot_runs_for_an_unprivileged_user() {
    let s = Scratch::new("xonly-chroot");
    // Made here, as root: inside the sandbox (host uid 65534) root's files
    // keep their permissions.
    let root = s.join("root");
    busybox_root(&root, "arm64");
    fs::create_dir(root.join("xo")).unwrap();
    let xo = root.join("xo/busybox");
    fs::copy(busybox("arm64"), &xo).unwrap();
    set_mode(&xo, 0o111);
    sandbox_installed(
        As::Nobody,
        &s,
        "aarch64",
        r#"
cap uid-map cat /proc/self/uid_map
cap read chroot "$S/root" /bin/busybox cat /xo/busybox
cap xonly chroot "$S/root" /xo/busybox uname -m
cap xonly-sh chroot "$S/root" /bin/sh -c '/xo/busybox echo "$0"'
"#,
    );
    let c = s.cap("uid-map");
    let map: Vec<&str> = c.stdout.split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "not running as nobody:\n{c}");
    // Really unreadable for this user, inside the chroot too.
    let c = s.cap("read");
    assert!(
        c.rc != 0 && c.stderr.contains("Permission denied"),
        "the 0111 program should be unreadable:\n{c}"
    );
    assert_runs(&s.cap("xonly"), "aarch64\n");
    assert_runs(&s.cap("xonly-sh"), "/bin/sh\n");
}

/// Every file under `dir` (symlinks not followed) whose name starts with
/// `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.display().to_string());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out
}

#[test]
fn dynamically_linked_programs_run_in_a_debootstrap_root_without_emulator() {
    let s = Scratch::new("debootstrap");
    fixture("debootstrap/arm64/usr/bin/bash");
    let root = fixtures_dir().join("debootstrap/arm64");
    assert_eq!(
        files_named(&root, "qemu-"),
        Vec::<String>::new(),
        "the root filesystem must hold no emulator"
    );
    // Nothing here writes into the shared fixture.
    sandbox_installed(
        As::Root,
        &s,
        "aarch64",
        r#"
R=$FIX/debootstrap/arm64
cap ls chroot "$R" /usr/bin/ls -1 /usr/lib/aarch64-linux-gnu/libc.so.6 /bin/bash
cap bash chroot "$R" /usr/bin/env -i /bin/bash -c 'echo "$BASH_VERSINFO $(uname -m)"; [ -e /proc/self ] && echo proc || echo no-proc'
cap dpkg chroot "$R" /usr/bin/dpkg --print-architecture
cap perl chroot "$R" /usr/bin/perl -e 'print "perl $^V on ", (POSIX::uname())[4], "\n"; use POSIX;'
cap argv0 chroot "$R" /bin/bash -c 'exec -a my-bash /bin/bash -c "echo \$0"'
cap pipeline chroot "$R" /bin/sh -c 'seq 1 1000 | sort -rn | head -n 1'
cap exit-status chroot "$R" /bin/sh -c 'exit 7'
"#,
    );
    assert_runs(
        &s.cap("ls"),
        "/bin/bash\n/usr/lib/aarch64-linux-gnu/libc.so.6\n",
    );
    assert_runs(&s.cap("bash"), "5 aarch64\nno-proc\n");
    assert_runs(&s.cap("dpkg"), "arm64\n");
    let c = s.cap("perl");
    assert!(
        c.rc == 0 && c.stdout.starts_with("perl v5.") && c.stdout.ends_with(" on aarch64\n"),
        "{c}"
    );
    assert_runs(&s.cap("argv0"), "my-bash\n");
    assert_runs(&s.cap("pipeline"), "1000\n");
    let c = s.cap("exit-status");
    assert_eq!(c.rc, 7, "{c}");
}

/// Issue 18, item 4: a dynamic program run outside its root file system,
/// whose loader is nowhere qemu looks, is refused by the interpreter with
/// one line naming the loader and the fix (127), instead of qemu's own
/// `Could not open` (255); every way qemu does find a loader still works:
/// the root itself, QEMU_LD_PREFIX, Debian's /etc/qemu-binfmt/<arch>, also
/// for a setuid program; and a loader only under a prefix this qemu does
/// not use is left for qemu to report. A setuid program cannot be steered
/// by QEMU_LD_PREFIX (dropped), so its hint does not offer it.
#[test]
fn a_missing_loader_is_explained_and_every_way_qemu_finds_one_still_works() {
    let s = Scratch::new("loader");
    fixture("debootstrap/arm64/usr/bin/bash");
    qemu_shim_suite::sandbox_full_map(
        &s,
        r#"
R=$FIX/debootstrap/arm64
install_shim aarch64 --quiet
chmod 0755 "$S"
cp "$R/usr/bin/dpkg" "$S/dpkg"
cp "$R/usr/bin/dpkg" "$S/suid-dpkg"
chmod 4755 "$S/suid-dpkg"
cap outside "$S/dpkg" --print-architecture
cap outside-static "$FIX/busybox/arm64/busybox" true
cap ld-prefix env QEMU_LD_PREFIX="$R" "$S/dpkg" --print-architecture
cap in-root chroot "$R" /usr/bin/dpkg --print-architecture
cap suid-ld-prefix nobody env QEMU_LD_PREFIX="$R" "$S/suid-dpkg" --print-architecture
# Debian's convention: a root holding the programs, their loader and
# libraries under /etc/qemu-binfmt/aarch64 (qemu looks every absolute path
# up there first).
mkdir -p "$S/root/etc/qemu-binfmt/aarch64" "$S/root/bin"
mount --bind "$R" "$S/root/etc/qemu-binfmt/aarch64"
cp -p "$S/dpkg" "$S/suid-dpkg" "$S/root/bin/"
cap prefix chroot "$S/root" /bin/dpkg --print-architecture
cap suid-prefix chroot --userspec=65534:65534 "$S/root" /bin/suid-dpkg --print-architecture
# The loader only under qemu's upstream default prefix, which Debian's
# qemu does not read: not refused by qemu-shim, qemu says what it says.
mkdir -p "$S/root2/usr/gnemul/qemu-aarch64/lib" "$S/root2/bin"
touch "$S/root2/usr/gnemul/qemu-aarch64/lib/ld-linux-aarch64.so.1"
cp "$S/dpkg" "$S/root2/bin/"
cap gnemul chroot "$S/root2" /bin/dpkg --print-architecture
"#,
    );
    let prog = s.join("dpkg").display().to_string();
    let c = s.cap("outside");
    assert_refused(&c, 127, &[]);
    assert_eq!(
        c.stderr,
        format!(
            "qemu-shim: {prog}: needs the arm64 loader /lib/ld-linux-aarch64.so.1, which is not \
             here (hint: run it inside its root file system, or set QEMU_LD_PREFIX / populate \
             /etc/qemu-binfmt/aarch64)\n"
        )
    );
    let c = s.cap("suid-ld-prefix");
    assert_refused(&c, 127, &[]);
    assert!(
        c.stderr.ends_with(
            "needs the arm64 loader /lib/ld-linux-aarch64.so.1, which is not here (hint: run it \
             inside its root file system, or populate /etc/qemu-binfmt/aarch64)\n"
        ),
        "{c}"
    );
    assert_eq!(s.cap("outside-static").rc, 0, "{}", s.cap("outside-static"));
    for name in ["ld-prefix", "in-root", "prefix", "suid-prefix"] {
        assert_runs(&s.cap(name), "arm64\n");
    }
    let c = s.cap("gnemul");
    assert!(
        c.rc != 0 && c.rc != 127 && !c.stderr.contains("qemu-shim:"),
        "the loader check refused what qemu itself should decide:\n{c}"
    );
}

#[test]
fn argv_is_exactly_what_direct_p_registration_gives() {
    let s = Scratch::new("argv-direct");
    fs::create_dir(s.join("shim")).unwrap();
    fs::copy(busybox("arm64"), s.join("shim/busybox")).unwrap();
    direct_busybox(&s.join("direct"));
    for d in ["shim", "direct"] {
        std::os::unix::fs::symlink("busybox", s.join(&format!("{d}/echo"))).unwrap();
    }
    let line = direct_line(&emulator_dir().join("qemu-aarch64-static"));
    // Each case runs once through our entry, once through qemu's own; the
    // outputs must be equal once the directory is named the same.
    let cases = [
        (
            "args",
            r#""$D/busybox" sh -c 'printf "[%s]" "$0" "$@"' zero 'a b' '' -0 -- --help"#,
        ),
        ("cmdline", r#""$D/busybox" cat /proc/self/cmdline"#),
        ("exe", r#""$D/busybox" readlink /proc/self/exe"#),
        ("applet", r#""$D/echo" hello"#),
        (
            "exec-a",
            r#"bash -c 'exec -a sh "$0/busybox" -c "echo \$0"' "$D""#,
        ),
        (
            "exec-a-dash",
            r#"bash -c 'exec -a -sh "$0/busybox" -c "echo \$0"' "$D""#,
        ),
        (
            "relative",
            r#"sh -c 'cd "$0" && ./busybox sh -c "echo \$0 \$#" a b' "$D""#,
        ),
    ];
    let mut script = format!(
        "printf '%s' '{line}' >/proc/sys/fs/binfmt_misc/register\n\
         cap direct-entry cat /proc/sys/fs/binfmt_misc/direct-aarch64\n"
    );
    for (name, cmd) in cases {
        for d in ["shim", "direct"] {
            script += &format!("D=$S/{d}; cap {name}-{d} {cmd}\n");
        }
    }
    sandbox_installed(As::Root, &s, "aarch64", &script);
    let c = s.cap("direct-entry");
    assert!(
        c.rc == 0 && flags_of(&c.stdout) == "POF",
        "direct entry:\n{c}"
    );
    for (name, _) in cases {
        let norm = |d: &str| {
            let c = s.cap(&format!("{name}-{d}"));
            let dir = s.join(d).display().to_string();
            let f = |t: &str| t.replace(&dir, "$D");
            (c.rc, f(&c.stdout), f(&c.stderr), c)
        };
        let (shim, direct) = (norm("shim"), norm("direct"));
        assert_eq!(
            (shim.0, &shim.1, &shim.2),
            (direct.0, &direct.1, &direct.2),
            "{name}: through qemu-shim and through qemu registered directly differ:\n{}\n{}",
            shim.3,
            direct.3
        );
        assert_eq!(shim.0, 0, "{name} failed:\n{}", shim.3);
    }
    // Spot checks that the comparison compared something.
    assert_runs(&s.cap("exec-a-shim"), "sh\n");
    assert_runs(&s.cap("exec-a-dash-shim"), "-sh\n");
    assert_runs(&s.cap("applet-shim"), "hello\n");
}

/// Install options of the four ways to install, and a tag for each.
const MODES: &[(&str, &str)] = &[
    ("carried", ""),
    ("unpinned", "--no-pin"),
    ("by-path", "--no-carry"),
    ("by-path-unpinned", "--no-carry --no-pin"),
];

/// At least this many foreign programs run while `install` changes the
/// interpreter file again and again.
const UPGRADE_RUNS: usize = 200;

/// Runs foreign programs (aarch64 and armhf, in turn) in a loop while
/// `install` replaces the interpreter file nine times (an arch added, then
/// removed, three times over), and checks every program succeeded; a
/// process started before the upgrades carries on after them.
fn upgrade_never_fails_a_foreign_program(mode: &str) {
    let (tag, opts) = MODES.iter().find(|(t, _)| *t == mode).unwrap();
    let s = Scratch::new(&format!("upgrade-{tag}"));
    busybox("arm64");
    busybox("armhf");
    let script = format!(
        r#"
OPTS="{opts}"
bb=$FIX/busybox/arm64/busybox
arm=$FIX/busybox/armhf/busybox
inst() {{ install_shim "$@" $OPTS >>"$S/installs.log" 2>&1; }}
inst aarch64 arm
mkfifo "$S/fifo"
# Started before the upgrades, it ends after them: its emulator must still
# be there, and what it starts then goes through the new entries.
"$bb" sh -c 'read x <"$0"; echo "got $x"; exec "$1" uname -m' "$S/fifo" "$bb" >"$S/early.out" 2>&1 &
early=$!
(
	n=0
	fails=0
	while [ ! -e "$S/stop" ] || [ "$n" -lt {UPGRADE_RUNS} ]; do
		if [ $((n % 2)) = 0 ]; then p=$bb; else p=$arm; fi
		"$p" true 2>>"$S/loop.err" || fails=$((fails + 1))
		n=$((n + 1))
		[ "$n" != 1 ] || : >"$S/started"
	done
	echo "$n $fails" >"$S/loop.out"
) &
loop=$!
while [ ! -e "$S/started" ]; do sleep 0.01; done
for i in 1 2 3; do
	inst aarch64 arm s390x
	"$CLI" uninstall s390x --install-dir "$S/inst" >>"$S/installs.log" 2>&1
	inst aarch64 arm
done
: >"$S/stop"
wait "$loop"
echo hi >"$S/fifo"
rc=0
wait "$early" || rc=$?
echo "exit $rc" >>"$S/early.out"
cap entries ls /proc/sys/fs/binfmt_misc
cap inst-dir ls -A "$S/inst"
cap after "$bb" uname -m
"#
    );
    sandbox_caps(As::Root, &s, &script);
    let read = |n: &str| fs::read_to_string(s.join(n)).unwrap_or_default();
    let log = read("installs.log");
    // Each of the six changes in the cycle wrote a new file: the installs,
    // or, where the emulators are carried, the uninstall that drops
    // s390x's (issue 18, item 2) and then the install that adds it.
    let writes = log
        .lines()
        .filter(|l| l.starts_with("written ") || l.starts_with("rewritten "))
        .count();
    assert!(
        writes >= 7,
        "{tag}: the installs did not all change the interpreter file:\n{log}"
    );
    let counts: Vec<usize> = read("loop.out")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [runs, fails] = counts[..] else {
        panic!("{tag}: the loop did not finish:\n{log}");
    };
    assert!(runs >= UPGRADE_RUNS, "{tag}: only {runs} runs");
    assert_eq!(
        fails,
        0,
        "{tag}: {fails} of {runs} foreign programs failed during the upgrades; first errors:\n{}\ninstall log:\n{log}",
        read("loop.err").lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        read("early.out"),
        "got hi\naarch64\nexit 0\n",
        "{tag}: a process started before the upgrades"
    );
    // No stand-in entry and no temporary file left behind.
    assert_runs(
        &s.cap("entries"),
        "qemu-shim-aarch64\nqemu-shim-arm\nregister\nstatus\n",
    );
    assert_runs(
        &s.cap("inst-dir"),
        "qemu-shim-interp\nqemu-shim-interp.state\n",
    );
    assert_runs(&s.cap("after"), "aarch64\n");
}

#[test]
fn upgrade_never_fails_a_foreign_program_carried() {
    upgrade_never_fails_a_foreign_program("carried")
}

#[test]
fn upgrade_never_fails_a_foreign_program_unpinned() {
    upgrade_never_fails_a_foreign_program("unpinned")
}

#[test]
fn upgrade_never_fails_a_foreign_program_by_path() {
    upgrade_never_fails_a_foreign_program("by-path")
}

#[test]
fn upgrade_never_fails_a_foreign_program_by_path_unpinned() {
    upgrade_never_fails_a_foreign_program("by-path-unpinned")
}

#[test]
fn no_carry_and_no_pin_find_what_they_need_inside_the_namespace() {
    let s = Scratch::new("no-carry");
    let emus = emulator_dir();
    let emu = emus.join("qemu-aarch64-static");
    // Two roots for each install: one without what the mode needs from
    // the namespace, one with it copied in at the same path, as a
    // Containerfile would.
    for r in ["bare", "emu", "bare-np", "full-np", "interp-np"] {
        busybox_root(&s.join(r), "arm64");
    }
    let put = |root: &str, file: &Path| {
        let dst = s.join(root).join(file.strip_prefix("/").unwrap());
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(file, &dst).unwrap();
    };
    put("emu", &emu);
    put("full-np", &emu);
    sandbox_caps(
        As::Root,
        &s,
        r#"
cap install install_shim aarch64 --no-carry
cap flags grep flags: /proc/sys/fs/binfmt_misc/qemu-shim-aarch64
cap bare chroot "$S/bare" /bin/busybox uname -m
cap emu chroot "$S/emu" /bin/busybox uname -m
cap install-np install_shim aarch64 --no-carry --no-pin
cap flags-np grep flags: /proc/sys/fs/binfmt_misc/qemu-shim-aarch64
mkdir -p "$S/full-np$S/inst"
cp "$S/inst/qemu-shim-interp" "$S/full-np$S/inst/"
cap bare-np chroot "$S/bare-np" /bin/busybox uname -m
cap full-np chroot "$S/full-np" /bin/busybox uname -m
# Carried but not pinned: the interpreter file alone, at its path.
cap install-carried-np install_shim aarch64 --no-pin
cap flags-carried-np grep flags: /proc/sys/fs/binfmt_misc/qemu-shim-aarch64
mkdir -p "$S/interp-np$S/inst"
cp "$S/inst/qemu-shim-interp" "$S/interp-np$S/inst/"
cap bare-carried-np chroot "$S/bare-np" /bin/busybox uname -m
cap interp-np chroot "$S/interp-np" /bin/busybox uname -m
"#,
    );
    s.installed();
    assert_runs(&s.cap("flags"), "flags: PF\n");
    // The pinned interpreter runs, and says the emulator is missing.
    assert_refused(
        &s.cap("bare"),
        127,
        &[
            "no emulator for aarch64",
            &format!("{} not found", emu.display()),
        ],
    );
    assert_runs(&s.cap("emu"), "aarch64\n");
    let c = s.cap("install-np");
    assert_eq!(c.rc, 0, "install --no-carry --no-pin failed:\n{c}");
    assert_runs(&s.cap("flags-np"), "flags: P\n");
    // Without F the kernel looks the interpreter up in the chroot: without
    // it there, the exec itself fails (ENOENT, the shell's 127).
    let c = s.cap("bare-np");
    assert!(
        c.rc == 127 && c.stdout.is_empty() && c.stderr.contains("No such file or directory"),
        "{c}"
    );
    assert_runs(&s.cap("full-np"), "aarch64\n");
    let c = s.cap("install-carried-np");
    assert_eq!(c.rc, 0, "install --no-pin failed:\n{c}");
    let c = s.cap("flags-carried-np");
    assert!(
        c.stdout.starts_with("flags: PO") && !c.stdout.contains('F'),
        "{c}"
    );
    let c = s.cap("bare-carried-np");
    assert!(
        c.rc == 127 && c.stderr.contains("No such file or directory"),
        "{c}"
    );
    assert_runs(&s.cap("interp-np"), "aarch64\n");
}

#[test]
fn setuid_program_whose_emulator_runs_by_path_is_refused_with_126() {
    let s = Scratch::new("secure-by-path");
    for (dir, mode) in [("suid", 0o4755), ("plain", 0o755)] {
        fs::create_dir(s.join(dir)).unwrap();
        let p = s.join(&format!("{dir}/busybox"));
        fs::copy(busybox("arm64"), &p).unwrap();
        set_mode(&p, mode);
    }
    // install never registers C for an interpreter without carried
    // emulators; an administrator might, by hand. The interpreter must then
    // refuse AT_SECURE rather than let qemu re-open the program by path.
    let a = arch::by_name("aarch64").unwrap();
    let line = RegisterLine {
        name: "qemu-shim-aarch64".into(),
        kind: Kind::Magic {
            offset: a.offset,
            magic: a.magic.to_vec(),
            mask: Some(a.mask.to_vec()),
        },
        interpreter: s.join("inst/qemu-shim-interp").display().to_string(),
        flags: "POCF".parse().unwrap(),
    };
    sandbox_full_map(
        &s,
        &format!(
            r#"
nobody() {{ setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- "$@"; }}
cap install install_shim aarch64 --no-carry
echo -1 >/proc/sys/fs/binfmt_misc/qemu-shim-aarch64
printf '%s' '{line}' >/proc/sys/fs/binfmt_misc/register
cap flags grep flags: /proc/sys/fs/binfmt_misc/qemu-shim-aarch64
cap suid nobody "$S/suid/busybox" echo ran
cap plain nobody "$S/plain/busybox" echo ran
"#
        ),
    );
    s.installed();
    assert_runs(&s.cap("flags"), "flags: POCF\n");
    assert_refused(
        &s.cap("suid"),
        126,
        &[
            &format!("qemu-shim: {}/suid/busybox: ", s.path().display()),
            "setuid/setgid program: refusing to run its emulator by path",
        ],
    );
    // Without a change of credentials the same entry runs it.
    assert_runs(&s.cap("plain"), "ran\n");
}

#[test]
fn status_shows_the_interpreter_file_its_emulators_versions_and_pins() {
    let s = Scratch::new("status");
    let emus = s.join("emus");
    fs::create_dir(&emus).unwrap();
    for name in ["aarch64", "arm", "s390x"] {
        let f = format!("qemu-{name}-static");
        fs::copy(emulator_dir().join(&f), emus.join(&f)).unwrap();
    }
    let versions = fs::read_to_string(fixtures_dir().join("VERSIONS"))
        .expect("VERSIONS missing: run scripts/fetch-fixtures");
    let debian_version = versions
        .lines()
        .find_map(|l| l.strip_prefix("qemu-user-static amd64 "))
        .expect("no qemu-user-static line in VERSIONS: run scripts/fetch-fixtures")
        .to_string();
    sandbox_caps(
        As::Root,
        &s,
        r#"
cap install "$CLI" install aarch64 arm --emulator-dir "$S/emus" --install-dir "$S/inst"
cap install2 "$CLI" install s390x --no-carry --no-pin --emulator-dir "$S/emus" --install-dir "$S/inst2"
cap size stat -c %s "$S/inst/qemu-shim-interp"
cap size2 stat -c %s "$S/inst2/qemu-shim-interp"
rm "$S/emus/qemu-aarch64-static" "$S/emus/qemu-arm-static"
cap json "$CLI" status --json
cap text "$CLI" status --verbose
"#,
    );
    for n in ["install", "install2"] {
        let c = s.cap(n);
        assert_eq!(c.rc, 0, "{n} failed:\n{c}");
    }
    let c = s.cap("json");
    assert_eq!(c.rc, 0, "{c}");
    let v: serde_json::Value =
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{c}"));
    let path = |d: &str| format!("{}/{d}/qemu-shim-interp", s.path().display());
    let size = |n: &str| s.cap(n).stdout.trim().parse::<u64>().unwrap();
    let interps = v["interpreters"]
        .as_array()
        .unwrap_or_else(|| panic!("{c}"));
    let find = |p: &str| {
        interps
            .iter()
            .find(|i| i["path"] == p)
            .unwrap_or_else(|| panic!("no interpreter {p}:\n{c}"))
    };
    assert_eq!(interps.len(), 2, "{c}");

    // The carried one: its size, both emulators with the version the
    // fetched package has, the source paths only a record.
    let carried = find(&path("inst"));
    assert_eq!(carried["size"], size("size"), "{carried}");
    assert_eq!(carried["problem"], serde_json::Value::Null, "{carried}");
    let emus_of = |i: &serde_json::Value| -> Vec<(String, bool, String)> {
        i["emulators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["arch"].as_str().unwrap().to_string(),
                    e["carried"].as_bool().unwrap(),
                    e["version"].as_str().unwrap_or("(none)").to_string(),
                )
            })
            .collect()
    };
    let mut got = emus_of(carried);
    got.sort();
    for (arch, is_carried, version) in &got {
        assert!(
            *is_carried && version.starts_with("7.2.") && version.contains(&debian_version),
            "{arch}: carried {is_carried}, version {version:?}, want 7.2.x ({debian_version}):\n{carried}"
        );
    }
    let arches: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(arches, ["aarch64", "arm"]);

    let by_path = find(&path("inst2"));
    assert_eq!(by_path["size"], size("size2"), "{by_path}");
    let got = emus_of(by_path);
    assert_eq!(got.len(), 1, "{by_path}");
    assert!(
        got[0].0 == "s390x" && !got[0].1 && got[0].2.contains(&debian_version),
        "{by_path}"
    );

    let entries = v["entries"].as_array().unwrap();
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let want_pinned = name != "qemu-shim-s390x";
        assert_eq!(e["pinned"], want_pinned, "{e}");
        // A carried emulator needs nothing at the path it came from.
        assert_eq!(e["problem"], serde_json::Value::Null, "{e}");
    }
    assert_eq!(entries.len(), 3, "{c}");

    let t = s.cap("text");
    assert_eq!(t.rc, 0, "{t}");
    assert!(t.stdout.contains("PINNED"), "{t}");
    assert!(
        t.stdout.lines().any(
            |l| l.starts_with(&format!("interpreter {} (", path("inst")))
                && l.ends_with("): carries 2 emulators")
        ),
        "{t}"
    );
    assert!(
        t.stdout.lines().any(|l| l
            == format!(
                "interpreter {} ({} bytes): starts 1 by path emulator",
                path("inst2"),
                size("size2")
            )),
        "{t}"
    );
}

/// RSS and PSS (kB) of a process, from /proc/PID/smaps_rollup as the
/// script saved it.
fn rss_pss(c: &Captured) -> (u64, u64) {
    let field = |k: &str| {
        c.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().strip_suffix(" kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {k} in smaps_rollup:\n{c}"))
    };
    (field("Rss:"), field("Pss:"))
}

#[test]
fn emulated_process_costs_at_most_1_mib_more_than_direct_registration() {
    let s = Scratch::new("memory");
    fs::create_dir(s.join("shim")).unwrap();
    fs::copy(busybox("arm64"), s.join("shim/busybox")).unwrap();
    direct_busybox(&s.join("direct"));
    // A private copy: no other process shares (and so lowers the PSS of)
    // the directly registered emulator's pages.
    let direct_emu = s.join("qemu-aarch64-static");
    fs::copy(emulator_dir().join("qemu-aarch64-static"), &direct_emu).unwrap();
    let line = direct_line(&direct_emu);
    sandbox_installed(
        As::Root,
        &s,
        "aarch64",
        &format!(
            r#"
printf '%s' '{line}' >/proc/sys/fs/binfmt_misc/register
# Both files leave the page cache, so their pages come back by readahead,
# not as the large folios install's single write left (a fault maps a
# whole folio, which would count towards RSS).
for f in "$S/inst/qemu-shim-interp" "$S/qemu-aarch64-static"; do
	sync "$f"
	dd if="$f" iflag=nocache count=0 status=none
done
measure() {{
	mkfifo "$S/go-$1"
	"$S/$1/busybox" sh -c 'echo up >"$0"; read x <"$1"' "$S/up-$1" "$S/go-$1" &
	pid=$!
	while [ ! -s "$S/up-$1" ]; do sleep 0.05; done
	cap mem-$1 cat "/proc/$pid/smaps_rollup"
	echo >"$S/go-$1"
	wait "$pid"
}}
measure shim
measure direct
"#
        ),
    );
    let (shim, direct) = (s.cap("mem-shim"), s.cap("mem-direct"));
    let ((s_rss, s_pss), (d_rss, d_pss)) = (rss_pss(&shim), rss_pss(&direct));
    eprintln!(
        "emulated busybox sh: through qemu-shim RSS {s_rss} kB, PSS {s_pss} kB; \
         qemu registered directly RSS {d_rss} kB, PSS {d_pss} kB"
    );
    assert!(
        s_rss <= d_rss + 1024 && s_pss <= d_pss + 1024,
        "more than 1 MiB above direct registration: qemu-shim RSS {s_rss} kB PSS {s_pss} kB, \
         direct RSS {d_rss} kB PSS {d_pss} kB"
    );
}
