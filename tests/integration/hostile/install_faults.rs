//! `install` interrupted (killed at every write, rename and mkdir),
//! failing halfway (injected errors, a full disk, an unknown arch, a
//! read-only table) or racing other installs and uninstalls: the table and
//! its files stay consistent, and a failed run changes nothing.

use std::fs;

use qemu_shim_suite::{sandbox_caps, set_mode, As, Captured, Scratch};

use super::probe;

/// Shell functions for the table tests: `reset [ARCH…]` (uninstall all,
/// then install ARCH… if any), `inst ARCH…` (install into `$S/inst`),
/// `entries` (each qemu-shim entry and whether its interpreter file
/// exists), `snap` (every entry in full, and the install directory's files
/// with a hash of each).
const TABLE_SH: &str = r#"
B=/proc/sys/fs/binfmt_misc
inst() { install_shim "$@"; }
reset() {
	"$CLI" uninstall --install-dir "$S/inst" >/dev/null
	rm -rf "$S/inst"
	if [ $# -gt 0 ]; then inst "$@" >/dev/null; fi
}
entries() {
	for e in "$B"/qemu-shim-*; do
		[ -e "$e" ] || continue
		i=$(sed -n 's/^interpreter //p' "$e")
		if [ -f "$i" ]; then echo "${e##*/} ok"; else echo "${e##*/} MISSING $i"; fi
	done
}
snap() {
	for e in "$B"/*; do
		[ "${e##*/}" = register ] && continue
		echo "== ${e##*/}"
		cat "$e"
	done
	if [ -d "$S/inst" ]; then
		for f in "$S/inst"/.* "$S/inst"/*; do
			[ -f "$f" ] && echo "file ${f##*/} $(sha256sum <"$f" | cut -c1-16)"
		done
	else
		echo "no install directory"
	fi
	return 0
}
"#;

/// The three arches the table tests install, each with a program that
/// exits 0 (`probe` for aarch64, the registry's exit programs for the
/// others), written to `$S/progs/ARCH`.
const TABLE_ARCHES: [&str; 3] = ["aarch64", "arm", "riscv64"];

fn table_programs(s: &Scratch) {
    fs::create_dir(s.join("progs")).unwrap();
    for a in TABLE_ARCHES {
        let bytes = if a == "aarch64" {
            probe()
        } else {
            qemu_shim_registry::probe::exit_program(a).expect("exit program")
        };
        let p = s.join(&format!("progs/{a}"));
        fs::write(&p, bytes).unwrap();
        set_mode(&p, 0o755);
    }
}

/// Where strace makes `install` fail: the kind of call, the options that
/// trace it (for counting the calls), and the options that hit the `$n`th
/// one with `what` (`signal=KILL`, `error=EIO`, …). Each write to the
/// binfmt_misc table, the rename that puts the interpreter file in place,
/// each mkdir, and one write halfway through the interpreter file.
fn fault_points(what: [&str; 4]) -> [(&'static str, String, String); 4] {
    let table: String = ["register"]
        .into_iter()
        .map(String::from)
        .chain(
            TABLE_ARCHES
                .iter()
                .flat_map(|a| [format!("qemu-shim-{a}"), format!("qemu-shim-{a}.next")]),
        )
        .map(|n| format!("-P $B/{n} "))
        .collect();
    let renames = "rename,renameat,renameat2";
    [
        (
            "table",
            format!("{table}-e trace=write"),
            format!("-e inject=write:{}:when=$n", what[0]),
        ),
        (
            "rename",
            format!("-e trace={renames}"),
            format!("-e inject={renames}:{}:when=$n", what[1]),
        ),
        (
            "mkdir",
            "-e trace=mkdir,mkdirat".into(),
            format!("-e inject=mkdir,mkdirat:{}:when=$n", what[2]),
        ),
        // Past the native probe's few writes, inside the 64 KiB pieces of
        // the interpreter file: one point only.
        (
            "file",
            "-e trace=write".into(),
            format!("-e inject=write:{}:when=150", what[3]),
        ),
    ]
}

/// Shell lines that count the calls of one fault point in an install of
/// all the table arches from `base_arg` (`none` or an arch), into
/// `$CAPS/TAG.points` (1 for the file's point), then run `FUNC TAG-N
/// BASE OPTIONS` for each.
fn each_point(func: &str, base: &str, base_arg: &str, point: &(&str, String, String)) -> String {
    let (kind, trace, inject) = point;
    let all = TABLE_ARCHES.join(" ");
    let reset = if base_arg == "none" {
        "reset".to_string()
    } else {
        format!("reset {base_arg}")
    };
    format!(
        r#"{reset}
strace -qq -o "$S/count" {trace} "$CLI" install {all} --emulator-dir "$EMUS" \
	--install-dir "$S/inst" >/dev/null 2>&1
count=$(grep -c '^[a-z]' "$S/count")
[ {kind} != file ] || count=1
echo $count >"$CAPS/{base}-{kind}.points"
n=1
while [ $n -le $count ]; do
	{func} {base}-{kind}-$n {base_arg} {trace} {inject}
	n=$((n + 1))
done
"#
    )
}

#[test]
fn install_killed_at_any_point_leaves_working_entries_and_the_next_run_repairs() {
    let s = Scratch::new("killed");
    table_programs(&s);
    let all = TABLE_ARCHES.join(" ");
    let mut script = format!(
        r#"{TABLE_SH}
cap strace-version strace -V
reset {all}
snap >"$S/reference"
# kill_at TAG BASE STRACE-OPTIONS: from a table with BASE installed (or
# none), install all three arches under strace, which kills it at the
# chosen call; record what is left, then repair with a plain install.
kill_at() {{
	tag=$1 base=$2
	shift 2
	if [ "$base" = none ]; then reset; else reset $base; fi
	rc=0
	strace -qq -o /dev/null "$@" "$CLI" install {all} --emulator-dir "$EMUS" \
		--install-dir "$S/inst" >/dev/null 2>&1 || rc=$?
	echo $rc >"$CAPS/$tag.killed"
	entries >"$CAPS/$tag.entries"
	for a in {all}; do cap "$tag.run-$a" "$S/progs/$a"; done
	ls -A "$S/inst" >"$CAPS/$tag.files" 2>/dev/null || true
	cap "$tag.repair" inst {all}
	snap >"$CAPS/$tag.after"
}}
"#
    );
    for (base, base_arg) in [("upgrade", "aarch64"), ("fresh", "none")] {
        for point in fault_points(["signal=KILL"; 4]) {
            script += &each_point("kill_at", base, base_arg, &point);
        }
    }
    sandbox_caps(As::Root, &s, &script);
    assert_eq!(
        s.cap("strace-version").rc,
        0,
        "strace is missing: apt-get install strace"
    );
    let reference = fs::read_to_string(s.join("reference")).unwrap();
    let caps = s.join("caps");
    let read =
        |name: &str| fs::read_to_string(caps.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut kills = 0;
    for base in ["upgrade", "fresh"] {
        for (kind, _, _) in fault_points(["signal=KILL"; 4]) {
            let points: usize = read(&format!("{base}-{kind}.points"))
                .trim()
                .parse()
                .unwrap();
            assert!(points > 0, "{base}-{kind}: no call to kill at");
            for n in 1..=points {
                let tag = format!("{base}-{kind}-{n}");
                assert_eq!(
                    read(&format!("{tag}.killed")).trim(),
                    "137",
                    "{tag}: not killed"
                );
                kills += 1;
                // No entry names a missing file, and every arch with an
                // entry (or a stand-in) runs its program: no entry names
                // a half-written file either.
                let entries = read(&format!("{tag}.entries"));
                assert!(!entries.contains("MISSING"), "{tag}: {entries}");
                for a in TABLE_ARCHES {
                    let has = entries.lines().any(|l| {
                        l.starts_with(&format!("qemu-shim-{a} "))
                            || l.starts_with(&format!("qemu-shim-{a}.next "))
                    });
                    let c = s.cap(&format!("{tag}.run-{a}"));
                    if has {
                        assert!(
                            c.rc == 0 && c.stderr.is_empty(),
                            "{tag}: {a} has an entry but does not run:\n{entries}\n{c}"
                        );
                    }
                }
                // Only the interpreter file and its install record, and a
                // temporary file of the killed run at most.
                for f in read(&format!("{tag}.files")).lines() {
                    assert!(
                        f == "qemu-shim-interp"
                            || f == "qemu-shim-interp.state"
                            || (f.starts_with(".qemu-shim-interp.") && f.ends_with(".tmp")),
                        "{tag}: unexpected file {f}"
                    );
                }
                // The next run repairs everything: the entries and files of
                // a clean install (the file's bytes differ: each install
                // draws the emulator's address anew).
                let c = s.cap(&format!("{tag}.repair"));
                assert_eq!(c.rc, 0, "{tag}: repair failed:\n{c}");
                let strip = |t: &str| -> String {
                    t.lines()
                        .map(|l| {
                            if l.starts_with("file ") {
                                l.rsplit_once(' ').unwrap().0
                            } else {
                                l
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                assert_eq!(
                    strip(&read(&format!("{tag}.after"))),
                    strip(&reference),
                    "{tag}: not repaired"
                );
            }
        }
    }
    // The file kill point must really have hit the file.
    let files = read("upgrade-file-1.files");
    assert!(
        files.contains(".tmp"),
        "the kill did not land inside the file write: {files}"
    );
    eprintln!("install killed at {kills} points; every time, no entry named a missing or partial file and the next run repaired the rest");
}

/// Asserts a captured CLI run failed with one line `qemu-shim: error: …`
/// holding each of `parts`.
#[track_caller]
fn assert_cli_failed(c: &Captured, parts: &[&str]) {
    assert!(
        c.rc == 1
            && c.stderr.starts_with("qemu-shim: error: ")
            && c.stderr.ends_with('\n')
            && c.stderr.matches('\n').count() == 1
            && parts.iter().all(|p| c.stderr.contains(p)),
        "expected exit 1 and one line `qemu-shim: error: …` with {parts:?}:\n{c}"
    );
}

#[test]
fn install_failing_halfway_changes_nothing() {
    let s = Scratch::new("failing");
    table_programs(&s);
    let all = TABLE_ARCHES.join(" ");
    let points = fault_points(["error=EEXIST", "error=EIO", "error=ENOSPC", "error=ENOSPC"]);
    let mut script = format!(
        r#"{TABLE_SH}
cap strace-version strace -V
# fail_at TAG BASE STRACE-OPTIONS: from a table with BASE installed (or
# none), install all three arches under strace, which fails the chosen
# call; the table and the directory must be as before.
fail_at() {{
	tag=$1 base=$2
	shift 2
	if [ "$base" = none ]; then reset; else reset $base; fi
	snap >"$CAPS/$tag.before"
	cap "$tag" strace -qq -o /dev/null "$@" "$CLI" install {all} --emulator-dir "$EMUS" \
		--install-dir "$S/inst"
	snap >"$CAPS/$tag.after"
}}
"#
    );
    for (base, base_arg) in [("upgrade", "aarch64"), ("fresh", "none")] {
        for point in &points {
            script += &each_point("fail_at", base, base_arg, point);
        }
    }
    // Real failures: a full file system (the interpreter file of three
    // arches does not fit beside the old one), an unknown arch among known
    // ones, a table mounted read-only.
    script += &format!(
        r#"
reset
mkdir "$S/inst"
# mode=0755: a fresh tmpfs is 1777, which install refuses as its directory.
mount -t tmpfs -o size=40m,mode=0755 tmpfs "$S/inst"
inst aarch64 >/dev/null
snap >"$CAPS/full.before"
cap full inst {all}
snap >"$CAPS/full.after"
ls -A "$S/inst" >"$CAPS/full.files"
# The entries pin the file: they go before the file system can.
"$CLI" uninstall --install-dir "$S/inst" >/dev/null
umount "$S/inst"
reset aarch64
snap >"$CAPS/unknown.before"
cap unknown inst aarch64 frobnicate arm
snap >"$CAPS/unknown.after"
snap >"$CAPS/ro.before"
mount -o remount,ro "$B"
cap ro inst {all}
mount -o remount,rw "$B"
snap >"$CAPS/ro.after"
"#
    );
    sandbox_caps(As::Root, &s, &script);
    assert_eq!(
        s.cap("strace-version").rc,
        0,
        "strace is missing: apt-get install strace"
    );
    let caps = s.join("caps");
    let read =
        |name: &str| fs::read_to_string(caps.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut failures = 0;
    for base in ["upgrade", "fresh"] {
        for (kind, _, _) in &points {
            let points: usize = read(&format!("{base}-{kind}.points"))
                .trim()
                .parse()
                .unwrap();
            assert!(points > 0, "{base}-{kind}: no call to fail");
            for n in 1..=points {
                let tag = format!("{base}-{kind}-{n}");
                let c = s.cap(&tag);
                // The native probe's own mkdir failing is not install's
                // failure: the probe falls back to the host's own arch.
                if *kind == "mkdir" && n == 1 && c.rc == 0 {
                    continue;
                }
                assert_cli_failed(&c, &[]);
                assert_eq!(
                    read(&format!("{tag}.after")),
                    read(&format!("{tag}.before")),
                    "{tag}: changed:\n{c}"
                );
                failures += 1;
            }
        }
    }
    let c = s.cap("full");
    assert_cli_failed(
        &c,
        &["no space left on device", "this run's changes were undone"],
    );
    assert_eq!(read("full.after"), read("full.before"), "full: changed");
    assert_eq!(
        read("full.files"),
        "qemu-shim-interp\nqemu-shim-interp.state\n",
        "full: leftovers"
    );
    assert_cli_failed(&s.cap("unknown"), &["frobnicate"]);
    assert_eq!(read("unknown.after"), read("unknown.before"));
    assert_cli_failed(&s.cap("ro"), &["read-only"]);
    assert_eq!(read("ro.after"), read("ro.before"));
    eprintln!("install failed at {failures} injected points plus a full disk, an unknown arch and a read-only table; each time nothing changed");
}

#[test]
fn racing_installs_and_uninstalls_end_consistent() {
    let s = Scratch::new("racing");
    table_programs(&s);
    let all = TABLE_ARCHES.join(" ");
    let mut script = format!(
        r#"{TABLE_SH}
# race TAG CMD…: run each ;-separated CLI command at once, record exit
# statuses, the entries and what runs.
race() {{
	tag=$1
	shift
	i=0
	pids=
	for cmd in "$@"; do
		sh -c "$cmd" >"$CAPS/$tag.$i.out" 2>"$CAPS/$tag.$i.err" &
		pids="$pids $!"
		i=$((i + 1))
	done
	i=0
	for p in $pids; do
		rc=0
		wait $p || rc=$?
		echo $rc >"$CAPS/$tag.$i.rc"
		i=$((i + 1))
	done
	entries >"$CAPS/$tag.entries"
	for a in {all}; do cap "$tag.run-$a" "$S/progs/$a"; done
	ls -A "$S/inst" >"$CAPS/$tag.files" 2>/dev/null || true
}}
I='"$CLI" install --emulator-dir "$EMUS" --install-dir "$S/inst"'
U='"$CLI" uninstall --install-dir "$S/inst"'
"#
    );
    for round in 0..3 {
        script += &format!(
            "reset\nrace installs-{round} \"$I aarch64\" \"$I arm\" \"$I riscv64\" \"$I aarch64 arm\" \"$I riscv64 arm\"\n"
        );
    }
    for round in 0..3 {
        script += &format!(
            "reset aarch64\nrace mixed-{round} \"$I arm\" \"$U aarch64\" \"$I riscv64\" \"$U\"\n"
        );
    }
    sandbox_caps(As::Root, &s, &script);
    let caps = s.join("caps");
    let read =
        |name: &str| fs::read_to_string(caps.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    // After any race: no entry names a missing file, every arch with an
    // entry runs, the directory holds nothing but the interpreter file.
    let consistent = |tag: &str| {
        let entries = read(&format!("{tag}.entries"));
        assert!(!entries.contains("MISSING"), "{tag}: {entries}");
        let mut with_entry = Vec::new();
        for a in TABLE_ARCHES {
            let c = s.cap(&format!("{tag}.run-{a}"));
            if entries.lines().any(|l| l == format!("qemu-shim-{a} ok")) {
                assert!(
                    c.rc == 0 && c.stderr.is_empty(),
                    "{tag}: {a}:\n{entries}\n{c}"
                );
                with_entry.push(a);
            }
        }
        let files = read(&format!("{tag}.files"));
        assert!(
            files.is_empty() || files == "qemu-shim-interp\nqemu-shim-interp.state\n",
            "{tag}: files {files:?}"
        );
        assert_eq!(
            files.is_empty(),
            with_entry.is_empty(),
            "{tag}: file without entries or entries without file:\n{entries}"
        );
        with_entry
    };
    for round in 0..3 {
        let tag = format!("installs-{round}");
        for i in 0..5 {
            let rc = read(&format!("{tag}.{i}.rc"));
            assert_eq!(
                rc.trim(),
                "0",
                "{tag}: install {i} failed: {}",
                read(&format!("{tag}.{i}.err"))
            );
        }
        assert_eq!(
            consistent(&tag),
            TABLE_ARCHES,
            "{tag}: not every arch installed"
        );
    }
    for round in 0..3 {
        let tag = format!("mixed-{round}");
        for i in 0..4 {
            let rc = read(&format!("{tag}.{i}.rc"));
            assert_eq!(
                rc.trim(),
                "0",
                "{tag}: command {i} failed: {}",
                read(&format!("{tag}.{i}.err"))
            );
        }
        consistent(&tag);
    }
}
