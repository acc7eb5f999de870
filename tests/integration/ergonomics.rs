//! Issue 18 on the real kernel, in a private binfmt_misc instance: install
//! remembers where its emulators came from, every fix line `doctor`
//! prints works as printed, sizes are told and controllable.

use std::fs;

use qemu_shim_suite::{assert_runs, busybox, sandbox_caps, As, Captured, Scratch};

/// The shell function `heal TAG [DOCTOR ARGS…]`: runs doctor; while it
/// fails (three rounds at most), runs each fix line it printed, verbatim,
/// with `sh -c`, then doctor again. Captures `TAG.doctorN`, `TAG.fixN.M`
/// (and the command in `TAG.fixN.M.cmd`), and the rounds run in
/// `TAG.rounds`.
const HEAL_SH: &str = r#"
heal() {
	heal_tag=$1
	shift
	heal_round=0
	while :; do
		cap "$heal_tag.doctor$heal_round" qemu-shim doctor --binfmt-d-dir "$S/bd" "$@"
		[ "$(cat "$CAPS/$heal_tag.doctor$heal_round.rc")" != 0 ] || break
		[ $heal_round -lt 3 ] || break
		sed -n 's/.*(fix: \(.*\))$/\1/p' "$CAPS/$heal_tag.doctor$heal_round.out" >"$S/fixes"
		heal_n=0
		while IFS= read -r heal_fix; do
			printf '%s\n' "$heal_fix" >"$CAPS/$heal_tag.fix$heal_round.$heal_n.cmd"
			cap "$heal_tag.fix$heal_round.$heal_n" sh -c "$heal_fix" </dev/null
			heal_n=$((heal_n + 1))
		done <"$S/fixes"
		heal_round=$((heal_round + 1))
	done
	echo "$heal_round" >"$CAPS/$heal_tag.rounds"
}
"#;

/// Asserts doctor found `tag`'s breakage, that each fix it printed ran
/// and that doctor then passed.
#[track_caller]
fn assert_healed(s: &Scratch, tag: &str, broken: &str) {
    let rounds: usize = fs::read_to_string(s.join(&format!("caps/{tag}.rounds")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first = s.cap(&format!("{tag}.doctor0"));
    assert!(
        first.rc == 1 && first.stdout.contains(broken),
        "{tag}: doctor did not report {broken:?}:\n{first}"
    );
    assert!(rounds >= 1, "{tag}: no fix ran");
    for round in 0..rounds {
        let doctor = s.cap(&format!("{tag}.doctor{round}"));
        let fixes = doctor
            .stdout
            .lines()
            .filter(|l| l.contains("(fix: "))
            .count();
        assert!(
            fixes > 0,
            "{tag}: doctor failed without a fix line:\n{doctor}"
        );
        for n in 0..fixes {
            let name = format!("{tag}.fix{round}.{n}");
            let cmd = fs::read_to_string(s.join(&format!("caps/{name}.cmd"))).unwrap();
            let c = s.cap(&name);
            assert_eq!(c.rc, 0, "{tag}: the fix `{}` failed:\n{c}", cmd.trim());
        }
    }
    let last = s.cap(&format!("{tag}.doctor{rounds}"));
    assert!(
        last.rc == 0 && !last.stdout.contains("BROKEN"),
        "{tag}: doctor still fails after its fixes ran:\n{last}"
    );
}

/// Issue 18, item 1: after a quickstart-style install from
/// `--emulator-dir`, installing again without it works (the emulators'
/// sources are remembered), and each way doctor finds things broken is
/// fixed by running the fix lines it prints, as printed. The default
/// install directory is used, on a tmpfs over /usr/local/lib in the
/// sandbox's mount namespace, so that `qemu-shim install` as doctor prints
/// it needs no options.
#[test]
fn doctor_fix_lines_work_as_printed() {
    let s = Scratch::new("doctor-fixes");
    busybox("arm64");
    let script = format!(
        r#"{HEAL_SH}
export PATH="$(dirname "$CLI"):$PATH"
R=/proc/sys/fs/binfmt_misc
mount -t tmpfs -o mode=0755 qemu-shim-test /usr/local/lib
mkdir "$S/emus" "$S/bd"
cp "$EMUS/qemu-aarch64-static" "$EMUS/qemu-s390x-static" "$S/emus/"
cap quickstart qemu-shim install aarch64 s390x --emulator-dir "$S/emus" --persist --binfmt-d-dir "$S/bd"
cap again qemu-shim install linux/arm64
echo 0 >"$R/qemu-shim-aarch64"
heal disabled
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
printf '%s' ":other-aarch64:M::$magic:$mask:/bin/false:" >"$R/register"
heal shadowed
echo -1 >"$R/other-aarch64"
echo 0 >"$R/status"
heal table-off
echo -1 >"$R/qemu-shim-s390x"
heal not-registered
printf '\0' >>"$S/emus/qemu-aarch64-static"
heal stale
rm /usr/local/lib/qemu-shim/qemu-shim-interp
heal file-gone
echo -1 >"$R/qemu-shim-aarch64"
echo -1 >"$R/qemu-shim-s390x"
rm "$S/bd/zz-qemu-shim.conf"
heal no-entries
mkdir "$S/bf"
heal unmounted --binfmt-dir "$S/bf"
cap run "$FIX/busybox/arm64/busybox" uname -m
"#
    );
    sandbox_caps(As::Root, &s, &script);
    let c = s.cap("quickstart");
    assert_eq!(c.rc, 0, "{c}");
    // The reproduction of item 1: no --emulator-dir the second time.
    let c = s.cap("again");
    assert_eq!(c.rc, 0, "install without --emulator-dir failed:\n{c}");
    for (tag, broken) in [
        ("disabled", "BROKEN  aarch64: qemu-shim-aarch64 is disabled"),
        (
            "shadowed",
            "programs run through other-aarch64 (/bin/false)",
        ),
        ("table-off", "is disabled as a whole"),
        ("not-registered", "qemu-shim-s390x is in "),
        ("stale", "the carried emulator is stale"),
        ("file-gone", "BROKEN  aarch64: qemu-shim-aarch64: "),
        ("no-entries", "no qemu-shim entries are registered"),
        ("unmounted", "binfmt_misc is not mounted at "),
    ] {
        assert_healed(&s, tag, broken);
    }
    assert_runs(&s.cap("run"), "aarch64\n");
}

/// Issue 18, item 1: an arch whose emulator is gone from where it was
/// installed from (the --emulator-dir moved) is re-registered from the
/// copy the installed file carries, with one note; an install that would
/// need a new file says why it cannot, and changes nothing.
#[test]
fn a_carried_arch_whose_source_is_gone_is_registered_from_the_installed_file() {
    let s = Scratch::new("kept");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
mkdir "$S/emus" "$S/mips"
cp "$EMUS/qemu-aarch64-static" "$EMUS/qemu-s390x-static" "$S/emus/"
cp "$EMUS/qemu-mips-static" "$S/mips/"
cap first "$CLI" install aarch64 s390x --emulator-dir "$S/emus" --install-dir "$S/inst"
mv "$S/emus" "$S/moved"
echo -1 >"$R/qemu-shim-aarch64"
cap same-dir "$CLI" install linux/arm64 --install-dir "$S/inst" --emulator-dir "$S/emus"
cap run "$FIX/busybox/arm64/busybox" uname -m
echo -1 >"$R/qemu-shim-aarch64"
cap no-dir "$CLI" install aarch64 --install-dir "$S/inst"
cap before sh -c "stat -c %i $S/inst/qemu-shim-interp; ls $R"
cap add "$CLI" install mips --install-dir "$S/inst" --emulator-dir "$S/mips"
cap after sh -c "stat -c %i $S/inst/qemu-shim-interp; ls $R"
"#,
    );
    assert_eq!(s.cap("first").rc, 0, "{}", s.cap("first"));
    let notes = |c: &Captured| -> Vec<String> {
        c.stdout
            .lines()
            .filter(|l| l.starts_with("note: "))
            .map(str::to_string)
            .collect()
    };
    for tag in ["same-dir", "no-dir"] {
        let c = s.cap(tag);
        assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
        assert!(c.stdout.contains("registered qemu-shim-aarch64"), "{c}");
        let n = notes(&c);
        assert!(
            n.len() == 1
                && n[0].contains("the emulator for aarch64, s390x is gone (")
                && n[0].contains("registered from the copy ")
                && n[0].contains("which gets no updates until it is back"),
            "{c}"
        );
    }
    assert_runs(&s.cap("run"), "aarch64\n");
    let c = s.cap("add");
    assert!(
        c.rc == 1
            && c.stderr.starts_with("qemu-shim: error: cannot rebuild ")
            && c.stderr
                .contains("this run adds mips, but the emulator for aarch64, s390x is gone")
            && c.stderr.contains("(hint: put it back, pass --emulator-dir"),
        "{c}"
    );
    assert_eq!(s.cap("before").stdout, s.cap("after").stdout);
}

/// Issue 18, item 7: tonistiigi/binfmt's `--install ARCHES` and
/// `--uninstall 'qemu-*'` are aliases of install and uninstall.
#[test]
fn tonistiigi_install_and_uninstall_spellings_work() {
    let s = Scratch::new("aliases");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
cap install "$CLI" --install arm64 --emulator-dir "$EMUS" --install-dir "$S/inst"
cap run "$FIX/busybox/arm64/busybox" uname -m
cap uninstall "$CLI" --uninstall 'qemu-*' --install-dir "$S/inst"
cap left sh -c "ls $R; ls -A $S"
"#,
    );
    let c = s.cap("install");
    assert!(
        c.rc == 0 && c.stdout.contains("registered qemu-shim-aarch64"),
        "{c}"
    );
    assert_runs(&s.cap("run"), "aarch64\n");
    let c = s.cap("uninstall");
    assert!(
        c.rc == 0 && c.stdout.contains("removed        qemu-shim-aarch64"),
        "{c}"
    );
    assert_runs(&s.cap("left"), "register\nstatus\ncaps\n");
}

/// Issue 18, items 2 and 6: install says what it wrote and its size, lists
/// what changed and sums up the rest in one line; --verbose lists all.
#[test]
fn install_reports_changes_and_the_file_size_and_verbose_lists_all() {
    let s = Scratch::new("quiet-report");
    sandbox_caps(
        As::Root,
        &s,
        r#"
cap first "$CLI" install aarch64 s390x --emulator-dir "$EMUS" --install-dir "$S/inst"
cap size stat -c %s "$S/inst/qemu-shim-interp"
cap again "$CLI" install s390x --install-dir "$S/inst"
cap verbose "$CLI" install s390x --install-dir "$S/inst" --verbose
"#,
    );
    let size: u64 = s.cap("size").stdout.trim().parse().unwrap();
    let mib = format!("{:.1} MiB", size as f64 / (1024.0 * 1024.0));
    let file = fs::canonicalize(s.join("inst"))
        .unwrap()
        .join("qemu-shim-interp");
    let c = s.cap("first");
    assert!(
        c.rc == 0
            && c.stdout.ends_with(&format!(
                "written    {} ({mib}, 2 emulators carried)\n",
                file.display()
            )),
        "{c}"
    );
    let file_line = format!(
        "unchanged  {} ({mib}, 2 emulators carried)\n",
        file.display()
    );
    assert_runs(
        &s.cap("again"),
        &format!(
            "unchanged  2 entries: s390x, aarch64 (--verbose lists them)\n{file_line}nothing to do: already installed\n"
        ),
    );
    let c = s.cap("verbose");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert!(
        c.rc == 0
            && lines.len() == 4
            && lines[0].starts_with("unchanged  qemu-shim-s390x ")
            && lines[1].starts_with("unchanged  qemu-shim-aarch64 "),
        "{c}"
    );
}

/// Issue 18, item 2: uninstalling arches rewrites the interpreter file
/// without their emulators, and registers the remaining entries again so
/// they pin the new file (with F, an entry left alone would keep the old
/// file's blocks); the remaining arches run after. When an emulator the
/// new file needs is gone, the file is kept and uninstall says why.
#[test]
fn uninstalling_arches_shrinks_the_file_and_the_rest_still_run() {
    let s = Scratch::new("shrink");
    busybox("arm64");
    busybox("s390x");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
mkdir "$S/emus"
cp "$EMUS/qemu-aarch64-static" "$EMUS/qemu-s390x-static" "$EMUS/qemu-riscv64-static" "$S/emus/"
cap install "$CLI" install aarch64 s390x riscv64 --emulator-dir "$S/emus" --install-dir "$S/inst"
cap size0 stat -c %s "$S/inst/qemu-shim-interp"
cap one "$CLI" uninstall riscv64 --install-dir "$S/inst"
cap json "$CLI" uninstall riscv64 --install-dir "$S/inst" --json
cap size1 stat -c %s "$S/inst/qemu-shim-interp"
cap table sh -c "ls $R | grep qemu-shim-"
cap arm64 "$FIX/busybox/arm64/busybox" uname -m
cap s390x "$FIX/busybox/s390x/busybox" uname -m
cap status "$CLI" status --json
rm "$S/emus/qemu-aarch64-static"
cap gone "$CLI" uninstall s390x --install-dir "$S/inst"
cap size2 stat -c %s "$S/inst/qemu-shim-interp"
cap arm64-after "$FIX/busybox/arm64/busybox" uname -m
cap status-kept "$CLI" status --json
cap status-kept-text "$CLI" status --verbose
"#,
    );
    assert_eq!(s.cap("install").rc, 0, "{}", s.cap("install"));
    let size = |n: &str| -> u64 { s.cap(n).stdout.trim().parse().unwrap() };
    let (before, after) = (size("size0"), size("size1"));
    assert!(
        after + 10 * 1024 * 1024 < before,
        "the file did not shrink: {before} -> {after}"
    );
    let c = s.cap("one");
    let file = fs::canonicalize(s.join("inst"))
        .unwrap()
        .join("qemu-shim-interp");
    assert!(
        c.rc == 0
            && c.stdout.contains("removed        qemu-shim-riscv64\n")
            && c.stdout.contains(&format!(
                "rewritten      {} without the emulators for riscv64 (",
                file.display()
            )),
        "{c}"
    );
    // A second time: nothing is left to drop.
    let c = s.cap("json");
    let v: serde_json::Value =
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("{e}: {c}"));
    assert_eq!(
        v["not_registered"],
        serde_json::json!(["qemu-shim-riscv64"]),
        "{v}"
    );
    assert_runs(&s.cap("table"), "qemu-shim-aarch64\nqemu-shim-s390x\n");
    assert_runs(&s.cap("arm64"), "aarch64\n");
    assert_runs(&s.cap("s390x"), "s390x\n");
    let v: serde_json::Value = serde_json::from_str(&s.cap("status").stdout).unwrap();
    let text = v.to_string();
    assert!(
        !text.contains("riscv64-static"),
        "status still names riscv64's emulator: {v}"
    );

    // The emulator aarch64 needs for a new file is gone: kept, and why.
    let c = s.cap("gone");
    assert!(
        c.rc == 0
            && c.stdout.contains("removed        qemu-shim-s390x\n")
            && c.stdout.contains(&format!(
                "kept           {} (still used; it still carries the emulators of the entries removed, as it cannot be rebuilt: cannot rebuild {}: this run changes its table, but the emulator for aarch64 is gone (",
                file.display(),
                file.display()
            )),
        "{c}"
    );
    assert_eq!(size("size2"), after);
    assert_runs(&s.cap("arm64-after"), "aarch64\n");
    // status says which emulators the kept file holds for no entry.
    let v: serde_json::Value = serde_json::from_str(&s.cap("status-kept").stdout).unwrap();
    let used: Vec<(String, bool)> = v["interpreters"][0]["emulators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["arch"].as_str().unwrap().to_string(),
                m["used"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        used,
        [("s390x".to_string(), false), ("aarch64".to_string(), true)],
        "{v}"
    );
    let c = s.cap("status-kept-text");
    assert!(
        c.stdout
            .contains("carries 2 emulators; used by no entry: s390x\n"),
        "{c}"
    );
}
