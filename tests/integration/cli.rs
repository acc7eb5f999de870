//! The `qemu-shim` CLI on the real kernel, in a private binfmt_misc
//! instance: idempotent install, uninstall that leaves others' entries
//! alone, `status --json`, `which`, and install's errors.

use std::fs;

use qemu_shim_suite::{
    as_nobody, assert_runs, busybox, cli, emulator_dir, sandbox_caps, sandbox_installed, As,
    Captured, Scratch,
};

/// Asserts a captured CLI run failed with exit `code` and one line
/// `qemu-shim: error: …` on stderr containing each of `parts`.
#[track_caller]
fn assert_cli_error(c: &Captured, code: Option<i32>, parts: &[&str]) {
    let one_line = c.stderr.ends_with('\n') && c.stderr.matches('\n').count() == 1;
    assert!(
        code.map_or(c.rc != 0, |k| c.rc == k)
            && one_line
            && c.stderr.starts_with("qemu-shim: error: ")
            && parts.iter().all(|p| c.stderr.contains(p)),
        "expected exit {}, one stderr line `qemu-shim: error: …` containing {parts:?}:\n{c}",
        code.map_or("!= 0".to_string(), |k| k.to_string())
    );
}

#[test]
fn second_install_changes_nothing() {
    let s = Scratch::new("idempotent");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
snapshot() {
	for e in /proc/sys/fs/binfmt_misc/*; do echo "== $e"; cat "$e"; done
	stat -c '%n %i %Y %a' "$S/inst/qemu-shim-interp"
}
cap first install_shim
cap status1 "$CLI" status
cap json1 "$CLI" status --json
cap snap1 snapshot
cap second install_shim
cap status2 "$CLI" status
cap json2 "$CLI" status --json
cap snap2 snapshot
cap run "$FIX/busybox/arm64/busybox" uname -m
"#,
    );
    let first = s.cap("first");
    assert_eq!(first.rc, 0, "first install failed:\n{first}");
    let second = s.cap("second");
    assert!(
        second.rc == 0 && second.stderr.is_empty(),
        "second install failed:\n{second}"
    );
    for (a, b) in [
        ("status1", "status2"),
        ("json1", "json2"),
        ("snap1", "snap2"),
    ] {
        let (a, b) = (s.cap(a), s.cap(b));
        assert_eq!(a.rc, 0, "{a}");
        assert!(
            a.stdout == b.stdout && a.rc == b.rc,
            "a second install changed something (entries, or the interpreter file's inode or \
             mtime):\n{a}\n{b}"
        );
    }
    assert!(
        s.cap("snap1")
            .stdout
            .contains("== /proc/sys/fs/binfmt_misc/qemu-shim-aarch64"),
        "no aarch64 entry:\n{}",
        s.cap("snap1")
    );
    assert_runs(&s.cap("run"), "aarch64\n");
}

/// Someone else's entry for the same files: ours, registered later, is
/// tried first; uninstall removes ours (two arches here: a full carried
/// install writes some 350 MB) and hands the files back to it.
#[test]
fn uninstall_leaves_other_entries_alone() {
    let s = Scratch::new("uninstall");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
printf '%s' ":other-aarch64:M::$magic:$mask:/bin/false:" >"$R/register"
cap other-before "$FIX/busybox/arm64/busybox" uname -m
cap install install_shim aarch64 s390x
cap ours "$FIX/busybox/arm64/busybox" uname -m
cap other-entry-installed cat "$R/other-aarch64"
cap uninstall "$CLI" uninstall --install-dir "$S/inst"
cap entries ls "$R"
cap other-entry-after cat "$R/other-aarch64"
cap other-after "$FIX/busybox/arm64/busybox" uname -m
cap inst-after ls -A "$S"
"#,
    );
    // /bin/false runs the program: exit 1, nothing printed.
    let c = s.cap("other-before");
    assert!(
        c.rc == 1 && c.stdout.is_empty(),
        "the other entry does not answer:\n{c}"
    );
    s.installed();
    assert_runs(&s.cap("ours"), "aarch64\n");
    let c = s.cap("uninstall");
    assert_eq!(c.rc, 0, "uninstall failed:\n{c}");

    let entries = s.cap("entries");
    let names: Vec<&str> = entries.stdout.lines().collect();
    assert!(
        names.contains(&"other-aarch64"),
        "uninstall removed other-aarch64:\n{entries}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("qemu-shim-")),
        "uninstall left entries of ours:\n{entries}"
    );
    let before = s.cap("other-entry-installed");
    let after = s.cap("other-entry-after");
    assert!(
        before.rc == 0 && before.stdout == after.stdout,
        "other-aarch64 was changed:\n{before}\n{after}"
    );
    let c = s.cap("other-after");
    assert!(
        c.rc == 1 && c.stdout.is_empty(),
        "the other entry does not answer again:\n{c}"
    );
    // The interpreter file and the directory install made are gone; the
    // scratch dir holds only the captures.
    assert_runs(&s.cap("inst-after"), "caps\n");
}

/// Issue 18, item 3: the names people already use reach install and
/// uninstall (Debian's, upper case, comma lists, entry names, `all`).
#[test]
fn install_and_uninstall_take_debian_and_entry_names_lists_and_all() {
    let s = Scratch::new("names");
    busybox("armhf");
    sandbox_installed(
        As::Root,
        &s,
        "ARM64,armhf",
        r#"
R=/proc/sys/fs/binfmt_misc
cap entries1 sh -c "ls $R | grep qemu-shim-"
cap run "$FIX/busybox/armhf/busybox" uname -m
cap one "$CLI" uninstall qemu-shim-arm --install-dir "$S/inst"
cap entries2 sh -c "ls $R | grep qemu-shim-"
cap all "$CLI" uninstall all --install-dir "$S/inst"
cap entries3 sh -c "ls $R | grep -c qemu-shim-"
"#,
    );
    assert_runs(&s.cap("entries1"), "qemu-shim-aarch64\nqemu-shim-arm\n");
    assert_runs(&s.cap("run"), "armv7l\n");
    assert_eq!(s.cap("one").rc, 0, "{}", s.cap("one"));
    assert_runs(&s.cap("entries2"), "qemu-shim-aarch64\n");
    assert_eq!(s.cap("all").rc, 0, "{}", s.cap("all"));
    // grep -c prints 0 and exits 1 when nothing is left.
    assert_eq!(s.cap("entries3").stdout, "0\n", "{}", s.cap("entries3"));
}

/// Issue 18, item 5: one error format (`qemu-shim: error: … (hint: …)`,
/// no `(os error N)`), and hints that are true: each message pinned.
#[test]
fn errors_are_one_format_with_true_hints() {
    let s = Scratch::new("error-format");
    fs::create_dir(s.join("notbinfmt")).unwrap();
    fs::write(s.join("seven"), b"\x7fELF\x02\x01\x01").unwrap();
    qemu_shim_suite::sandbox_full_map(
        &s,
        r#"
chmod 0755 "$S"
install_shim aarch64 --quiet
cap uninstall-nobody nobody "$CLI" uninstall aarch64 --install-dir "$S/inst"
cap emudir-missing "$CLI" install aarch64 --emulator-dir "$S/nonexistent" --install-dir "$S/inst2"
cap emudir-file "$CLI" install aarch64 --emulator-dir "$EMUS/qemu-aarch64-static" --install-dir "$S/inst2"
cap emudir-empty "$CLI" install aarch64 --emulator-dir "$S/notbinfmt" --install-dir "$S/inst2"
cap status-notbinfmt "$CLI" status --binfmt-dir "$S/notbinfmt"
cap which-seven "$CLI" which "$S/seven"
cap interp-seven "$INTERP" "$S/seven"
cap interp-help "$INTERP" --help
"#,
    );
    let e = "qemu-shim: error: ";
    let c = s.cap("uninstall-nobody");
    assert_cli_error(&c, Some(1), &[]);
    assert_eq!(
        c.stderr,
        format!(
            "{e}cannot write /proc/sys/fs/binfmt_misc/qemu-shim-aarch64: permission denied \
             (hint: run as root)\n"
        )
    );
    let missing = s.join("nonexistent");
    assert_eq!(
        s.cap("emudir-missing").stderr,
        format!(
            "{e}--emulator-dir {}: no such directory (hint: name the directory that holds \
             qemu-<arch>-static or qemu-<arch> (Debian: /usr/bin))\n",
            missing.display()
        )
    );
    let c = s.cap("emudir-file");
    assert_cli_error(&c, Some(1), &["qemu-aarch64-static: not a directory (hint: give the directory that holds the emulators: --emulator-dir "]);
    let c = s.cap("emudir-empty");
    assert_cli_error(
        &c,
        Some(1),
        &[
            "no emulator for aarch64",
            "(hint: none of the directories given with --emulator-dir holds it",
        ],
    );
    let notbinfmt = s.join("notbinfmt");
    let c = s.cap("status-notbinfmt");
    assert_cli_error(&c, Some(1), &[]);
    assert_eq!(
        c.stderr,
        format!(
            "{e}{0} is not a mounted binfmt_misc (no register file) (hint: --binfmt-dir must \
             name a mounted binfmt_misc (without it: /proc/sys/fs/binfmt_misc); to mount one \
             there: mount -t binfmt_misc binfmt_misc {0})\n",
            notbinfmt.display()
        )
    );
    // One verdict on a 7-byte `\x7fELF`: the interpreter's.
    let c = s.cap("which-seven");
    assert!(
        c.stdout
            .contains("\narch:        truncated ELF file: qemu-shim refuses to run it\n"),
        "{c}"
    );
    let c = s.cap("interp-seven");
    assert_eq!(c.rc, 126, "{c}");
    assert!(c.stderr.ends_with(": truncated ELF file\n"), "{c}");
    let c = s.cap("interp-help");
    assert_eq!(c.rc, 126, "{c}");
    assert!(
        c.stderr
            .starts_with("qemu-shim: usage: qemu-shim-interp PROGRAM"),
        "{c}"
    );
    for name in [
        "uninstall-nobody",
        "emudir-missing",
        "emudir-file",
        "status-notbinfmt",
    ] {
        assert!(!s.cap(name).stderr.contains("os error"), "{}", s.cap(name));
    }
}

#[test]
fn status_json_has_the_documented_fields() {
    let s = Scratch::new("status-json");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
printf '%s' ':other-txt:E::qsx::/bin/false:' >"$R/register"
cap install install_shim aarch64
echo 0 >"$R/other-txt"
cap json "$CLI" status --json
"#,
    );
    s.installed();
    let c = s.cap("json");
    assert_eq!(c.rc, 0, "status --json failed:\n{c}");
    let v: serde_json::Value = serde_json::from_str(&c.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{c}"));
    let entries = v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no `entries` array:\n{c}"));
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no entry named {name}:\n{c}"))
    };
    for e in entries {
        assert!(e["name"].is_string(), "name not a string: {e}");
        assert!(
            e["arch"].is_string() || e["arch"].is_null(),
            "arch not a string or null: {e}"
        );
        assert!(e["enabled"].is_boolean(), "enabled not a boolean: {e}");
        assert!(e["flags"].is_string(), "flags not a string: {e}");
        assert!(
            e["interpreter"].is_string(),
            "interpreter not a string: {e}"
        );
        assert!(e["owned"].is_boolean(), "owned not a boolean: {e}");
    }
    let ours = find("qemu-shim-aarch64");
    let interp = format!("{}/inst/qemu-shim-interp", s.path().display());
    assert_eq!(ours["arch"], "aarch64", "{ours}");
    assert_eq!(ours["enabled"], true, "{ours}");
    assert_eq!(ours["owned"], true, "{ours}");
    assert_eq!(ours["interpreter"], interp.as_str(), "{ours}");
    let flags = ours["flags"].as_str().unwrap_or_default();
    assert!(
        flags.contains('F') && flags.contains('P'),
        "our entry's flags should include F and P: {ours}"
    );
    // The emulator the installed interpreter starts for aarch64, read back
    // from the interpreter file, and no problem found with the entry.
    let emu = emulator_dir().join("qemu-aarch64-static");
    assert_eq!(ours["emulator"], &*emu.to_string_lossy(), "{ours}");
    assert_eq!(ours["problem"], serde_json::Value::Null, "{ours}");
    let other = find("other-txt");
    assert_eq!(other["owned"], false, "{other}");
    assert_eq!(other["enabled"], false, "{other}");
    assert_eq!(
        other["arch"],
        serde_json::Value::Null,
        "an extension entry has no arch: {other}"
    );
    assert_eq!(other["interpreter"], "/bin/false", "{other}");
}

#[test]
fn which_names_the_arch_entry_and_emulator() {
    let s = Scratch::new("which");
    busybox("arm64");
    busybox("i386");
    sandbox_caps(
        As::Root,
        &s,
        r#"
cap before "$CLI" which "$FIX/busybox/arm64/busybox"
cap install install_shim aarch64
cap arm64 "$CLI" which "$FIX/busybox/arm64/busybox"
cap i386 "$CLI" which "$FIX/busybox/i386/busybox"
echo 'not a program' >"$S/text"
cap text "$CLI" which "$S/text"
"#,
    );
    s.installed();
    let c = s.cap("before");
    assert_eq!(c.rc, 1, "which with no entry registered must exit 1:\n{c}");
    let c = s.cap("arm64");
    let emu = emulator_dir().join("qemu-aarch64-static");
    assert!(
        c.rc == 0
            && c.stdout.contains("aarch64")
            && c.stdout.contains("qemu-shim-aarch64")
            && c.stdout.contains(&*emu.to_string_lossy()),
        "which should name aarch64, qemu-shim-aarch64 and {}:\n{c}",
        emu.display()
    );
    // Issue 18, item 7: native is not "nothing runs it".
    let c = s.cap("i386");
    assert!(
        c.rc == 0 && format!("{}{}", c.stdout, c.stderr).contains("native"),
        "which on a native program: exit 0, saying native:\n{c}"
    );
    let c = s.cap("text");
    assert!(
        c.rc == 1 && format!("{}{}", c.stdout, c.stderr).contains("not an ELF"),
        "which on a text file: exit 1, saying not an ELF:\n{c}"
    );
}

/// The platform docker calls this machine's own arch.
fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("no platform name known for host {other}"),
    }
}

/// Issue 18, items 6 and 7: `status` is one table sorted by arch name
/// with details on `status ARCH`; `status --json` has each arch's
/// platform and tonistiigi/binfmt's lists; `which` exits 0 when the CPU or
/// an entry runs the file and 1 when nothing does, and says whether the
/// emulator is carried; `doctor` takes arches and `--json`.
#[test]
fn status_which_and_doctor_report_for_people_and_scripts() {
    let s = Scratch::new("reports");
    for a in ["arm64", "armhf", "i386", "ppc64el", "s390x"] {
        busybox(a);
    }
    sandbox_installed(
        As::Root,
        &s,
        "aarch64 s390x --quiet",
        &r#"
R=/proc/sys/fs/binfmt_misc
"$CLI" install arm --quiet --no-carry --emulator-dir "$EMUS" --install-dir "$S/inst2"
# Someone else's s390x entry, registered after ours: the kernel tries it first.
hexes() { sed -n "s/^$1 //p" "$R/qemu-shim-s390x" | sed 's/../\\x&/g'; }
printf '%s' ":qemu-s390x:M::$(hexes magic):$(hexes mask):/bin/false:" >"$R/register"
cap status "$CLI" status
cap status-arches "$CLI" status arm64 qemu-shim-s390x,PPC64EL
cap status-unknown "$CLI" status frobnicate
cap json "$CLI" status --json
cap json-one "$CLI" status --json armhf
cap which-arm64 "$CLI" which "$FIX/busybox/arm64/busybox"
cap which-armhf "$CLI" which "$FIX/busybox/armhf/busybox"
cap which-arm64-json "$CLI" which --json "$FIX/busybox/arm64/busybox"
cap which-armhf-json "$CLI" which --json "$FIX/busybox/armhf/busybox"
cap which-i386 "$CLI" which --json "$FIX/busybox/i386/busybox"
cap which-ppc64el "$CLI" which --json "$FIX/busybox/ppc64el/busybox"
cap which-s390x "$CLI" which --json "$FIX/busybox/s390x/busybox"
cap doctor "$CLI" doctor --json --binfmt-d-dir "$S/bd"
cap doctor-arm64 "$CLI" doctor arm64,armhf --binfmt-d-dir "$S/bd"
cap doctor-ppc64el "$CLI" doctor ppc64el --binfmt-d-dir "$S/bd"
cap doctor-host "$CLI" doctor "$HOST" --binfmt-d-dir "$S/bd"
cap status-host "$CLI" status "$HOST"
"#
        .replace("$HOST", std::env::consts::ARCH),
    );
    let json = |name: &str| -> serde_json::Value {
        let c = s.cap(name);
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{c}"))
    };

    // The fixtures' qemu version, as `status --json` reads it from the
    // carried image; the table shows its first word.
    let version = json("json")["arches"][0]["qemu_shim"]["emulator"]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no version:\n{}", s.cap("json")))
        .to_string();
    let short = version.split_whitespace().next().unwrap();

    // One row per arch, by name; who runs it over whom; carried or by path.
    let c = s.cap("status");
    assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(
        lines
            .get(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![
            "ARCH",
            "PLATFORM",
            "QEMU-SHIM",
            "RUN",
            "BY",
            "EMULATOR",
            "SOURCE"
        ]),
        "{c}"
    );
    let rows: Vec<Vec<&str>> = lines[2..5]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec![
                "aarch64",
                "linux/arm64",
                "enabled",
                "qemu-shim-aarch64",
                "carried",
                short,
                "current"
            ],
            vec![
                "arm",
                "linux/arm/v7",
                "enabled",
                "qemu-shim-arm",
                "by",
                "path",
                short,
                "current"
            ],
            vec![
                "s390x",
                "linux/s390x",
                "enabled",
                "qemu-s390x",
                "over",
                "qemu-shim-s390x",
                "/bin/false",
                "current"
            ],
        ],
        "{c}"
    );
    assert!(lines.len() <= 8, "status is short:\n{c}");
    let supported = format!("platforms that run here (probed): {} ", host_platform());
    assert!(
        lines.iter().any(|l| l.starts_with(&supported)
            && l.contains(" linux/arm64")
            && l.contains(" linux/arm/v7")
            && !l.contains("linux/s390x")),
        "{c}"
    );

    // Details of the arches named, as install names them.
    let c = s.cap("status-arches");
    assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
    let heads: Vec<&str> = c
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .collect();
    assert_eq!(
        heads,
        [
            "binfmt_misc: /proc/sys/fs/binfmt_misc (mounted, enabled)",
            "aarch64 (linux/arm64)",
            "ppc64le (linux/ppc64le)",
            "s390x (linux/s390x)"
        ],
        "{c}"
    );
    let emu = emulator_dir();
    for want in [
        format!(
            "  emulator:     qemu-aarch64 {version}, carried (from {})",
            emu.join("qemu-aarch64-static").display()
        ),
        "  run by:       qemu-s390x, over qemu-shim-s390x".into(),
        "    qemu-shim-s390x  enabled  POCF  ".into(),
        "  qemu-shim:  no entry".into(),
    ] {
        assert!(c.stdout.contains(&want), "{want:?} missing:\n{c}");
    }
    assert_cli_error(
        &s.cap("status-unknown"),
        Some(1),
        &["unknown arch 'frobnicate'"],
    );

    // JSON: every arch's platform, qemu-shim's entry and emulator; the
    // tonistiigi/binfmt lists.
    let v = json("json");
    let arches = v["arches"].as_array().unwrap();
    let names: Vec<&str> = arches.iter().map(|a| a["arch"].as_str().unwrap()).collect();
    assert_eq!(names, ["aarch64", "arm", "s390x"], "{v}");
    let platforms: Vec<&str> = arches
        .iter()
        .map(|a| a["platform"].as_str().unwrap())
        .collect();
    assert_eq!(
        platforms,
        ["linux/arm64", "linux/arm/v7", "linux/s390x"],
        "{v}"
    );
    assert_eq!(arches[0]["qemu_shim"]["emulator"]["carried"], true, "{v}");
    assert_eq!(arches[1]["qemu_shim"]["emulator"]["carried"], false, "{v}");
    assert_eq!(arches[2]["winner"], "qemu-s390x", "{v}");
    assert_eq!(
        arches[2]["shadowed"],
        serde_json::json!(["qemu-shim-s390x"]),
        "{v}"
    );
    assert_eq!(arches[2]["qemu_shim"]["entry"], "qemu-shim-s390x", "{v}");
    assert_eq!(
        v["emulators"],
        serde_json::json!([
            "qemu-s390x",
            "qemu-shim-aarch64",
            "qemu-shim-arm",
            "qemu-shim-s390x"
        ]),
        "{v}"
    );
    let sup = v["supported"].as_array().unwrap();
    assert_eq!(sup[0], host_platform(), "{v}");
    for p in ["linux/arm64", "linux/arm/v7", "linux/arm/v6"] {
        assert!(sup.iter().any(|x| x == p), "{p} not supported:\n{v}");
    }
    assert!(!sup.iter().any(|x| x == "linux/s390x"), "{v}");
    let text = s.cap("json").stdout;
    assert!(text.starts_with("{\n  \"supported\": [\n"), "{text}");
    // With a name: its row only, the rest complete.
    let one = json("json-one");
    assert_eq!(one["arches"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["arches"][0]["arch"], "arm", "{one}");
    assert_eq!(one["entries"], v["entries"], "{one}");

    // which: 0 when an emulator or the CPU runs it, 1 when nothing does.
    let c = s.cap("which-arm64");
    assert_eq!(c.rc, 0, "{c}");
    assert!(
        c.stdout.contains(&format!(
            "\nemulator:    {} (carried in the interpreter file)\n",
            emu.join("qemu-aarch64-static").display()
        )),
        "{c}"
    );
    let c = s.cap("which-armhf");
    assert_eq!(c.rc, 0, "{c}");
    assert!(c.stdout.contains(" (started by path)\n"), "{c}");
    for (name, rc, runs, arch, carried) in [
        (
            "which-arm64-json",
            0,
            "emulator",
            "aarch64",
            serde_json::json!(true),
        ),
        (
            "which-armhf-json",
            0,
            "emulator",
            "arm",
            serde_json::json!(false),
        ),
        ("which-i386", 0, "native", "i386", serde_json::Value::Null),
        (
            "which-ppc64el",
            1,
            "nothing",
            "ppc64le",
            serde_json::Value::Null,
        ),
        (
            "which-s390x",
            0,
            "emulator",
            "s390x",
            serde_json::Value::Null,
        ),
    ] {
        let c = s.cap(name);
        assert_eq!(c.rc, rc, "{c}");
        let w = json(name);
        assert_eq!(
            (&w["runs"], &w["arch"], &w["entry"]["carried"]),
            (&serde_json::json!(runs), &serde_json::json!(arch), &carried),
            "{c}"
        );
    }
    let w = json("which-s390x");
    assert_eq!(w["entry"]["name"], "qemu-s390x", "{w}");
    assert_eq!(w["entry"]["owned"], false, "{w}");
    assert_eq!(w["platform"], "linux/s390x", "{w}");
    let w = json("which-ppc64el");
    assert_eq!(w["entry"], serde_json::Value::Null, "{w}");
    assert!(
        w["no_entry"]
            .as_str()
            .unwrap()
            .contains("nothing is registered for ppc64le"),
        "{w}"
    );
    assert_eq!(json("which-i386")["native"], true);

    // doctor --json: the same checks, the fix as a command of its own.
    let c = s.cap("doctor");
    assert_eq!(c.rc, 1, "{c}");
    let d = json("doctor");
    assert_eq!(d["ok"], false, "{d}");
    let checks = d["checks"].as_array().unwrap();
    let of = |arch: &str| {
        checks
            .iter()
            .find(|l| l["arch"] == arch)
            .unwrap_or_else(|| panic!("no {arch} check:\n{d}"))
    };
    assert_eq!(of("aarch64")["verdict"], "ok", "{d}");
    assert_eq!(of("arm")["verdict"], "ok", "{d}");
    let l = of("s390x");
    assert_eq!(l["verdict"], "broken", "{d}");
    assert!(
        l["message"]
            .as_str()
            .unwrap()
            .starts_with("programs run through qemu-s390x (/bin/false)"),
        "{d}"
    );
    assert_eq!(
        l["fix"],
        format!(
            "qemu-shim install s390x --install-dir {} --binfmt-d-dir {}",
            s.join("inst").display(),
            s.join("bd").display()
        ),
        "{d}"
    );
    let c = s.cap("doctor-arm64");
    assert!(c.rc == 0 && !c.stdout.contains("s390x"), "{c}");
    assert!(
        c.stdout.contains("\nok      aarch64: probe exited 42"),
        "{c}"
    );
    assert!(c.stdout.contains("\nok      arm: probe exited 42"), "{c}");
    let c = s.cap("doctor-ppc64el");
    assert_eq!(c.rc, 1, "{c}");
    assert!(
        c.stdout.contains(&format!(
            "\nBROKEN  ppc64le: no qemu-shim entry is registered (fix: qemu-shim install ppc64le --binfmt-d-dir {})\n",
            s.join("bd").display()
        )),
        "{c}"
    );
    // The host's own arch needs no entry: neither broken nor "nothing".
    let host = std::env::consts::ARCH;
    let c = s.cap("doctor-host");
    assert!(
        c.rc == 0
            && c.stdout.contains(&format!(
                "\nok      {host}: native: this CPU runs its programs, no entry needed\n"
            )),
        "{c}"
    );
    let c = s.cap("status-host");
    assert!(
        c.rc == 0
            && c.stdout.contains(
                "\n  run by:     this CPU: the arch is native and no enabled entry matches it\n"
            ),
        "{c}"
    );
    assert!(
        v["native"].as_array().unwrap().iter().any(|a| a == host),
        "{v}"
    );
}

#[test]
fn install_errors_name_the_problem_and_change_nothing() {
    let s = Scratch::new("install-errors");
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
mkdir "$S/empty" "$S/notbinfmt"
cap unknown install_shim frobnicate
cap native install_shim x86_64
cap none-all "$CLI" install --emulator-dir "$S/empty" --install-dir "$S/inst"
cap none-one "$CLI" install aarch64 --emulator-dir "$S/empty" --install-dir "$S/inst"
cap nodir install_shim aarch64 --binfmt-dir "$S/nope"
cap notbinfmt install_shim aarch64 --binfmt-dir "$S/notbinfmt"
cap entries ls "$R"
cap scratch ls -A "$S"
cap notbinfmt-after ls -A "$S/notbinfmt"
cap mounts awk -v s="$S" 'index($5, s) == 1' /proc/self/mountinfo
"#,
    );
    assert_cli_error(&s.cap("unknown"), None, &["frobnicate"]);
    assert_cli_error(&s.cap("native"), Some(1), &["x86_64", "native"]);
    let empty = s.join("empty");
    let empty = empty.to_string_lossy();
    assert_cli_error(
        &s.cap("none-all"),
        Some(1),
        &["-static", &empty, "qemu-user-static"],
    );
    assert_cli_error(
        &s.cap("none-one"),
        Some(1),
        &[
            "qemu-aarch64-static",
            "qemu-aarch64",
            &empty,
            "qemu-user-static",
        ],
    );
    let nope = s.join("nope");
    assert_cli_error(&s.cap("nodir"), Some(1), &[&nope.to_string_lossy()]);
    let notbinfmt = s.join("notbinfmt");
    assert_cli_error(
        &s.cap("notbinfmt"),
        Some(1),
        &[&notbinfmt.to_string_lossy()],
    );

    // Nothing registered, no install dir made, nothing mounted anywhere
    // under the scratch dir.
    assert_runs(&s.cap("entries"), "register\nstatus\n");
    assert_runs(&s.cap("scratch"), "caps\nempty\nnotbinfmt\n");
    assert_runs(&s.cap("notbinfmt-after"), "");
    assert_runs(&s.cap("mounts"), "");
}

/// A real unprivileged user (host uid 65534, no user namespace) cannot
/// register: the error says so, and what install did first (the interpreter
/// file, its directory) is undone.
#[test]
fn install_as_non_root_fails_cleanly() {
    let s = Scratch::new("non-root");
    // A stand-in for a binfmt_misc root that only root may write.
    let fake = s.join("fake");
    fs::create_dir(&fake).unwrap();
    fs::write(fake.join("register"), "").unwrap();
    fs::write(fake.join("status"), "enabled\n").unwrap();
    // A directory nobody may write, so the interpreter file is written
    // before registering fails.
    let home = s.join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();

    // An empty config named on every command line: the host's
    // /etc/qemu-shim/config.toml must not decide what this test sees.
    let no_config = s.join("no-config.toml");
    fs::write(&no_config, "").unwrap();
    let as_nobody = |tag: &str, args: &[&str]| {
        let o = as_nobody()
            .arg(cli())
            .args(args)
            .arg("--config")
            .arg(&no_config)
            .output()
            .expect("spawn setpriv");
        Captured {
            name: tag.to_string(),
            rc: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let emus = emulator_dir();
    let emus = emus.to_string_lossy();
    let inst = home.join("inst");
    let inst = inst.to_string_lossy();
    let c = as_nobody(
        "fake-root",
        &[
            "install",
            "aarch64",
            "--emulator-dir",
            &emus,
            "--install-dir",
            &inst,
            "--binfmt-dir",
            &fake.to_string_lossy(),
        ],
    );
    assert_cli_error(&c, Some(1), &["root"]);
    assert_eq!(
        fs::read(fake.join("register")).unwrap(),
        b"",
        "register was written"
    );
    assert!(
        fs::read_dir(&home).unwrap().next().is_none(),
        "a failed install left files in {}",
        home.display()
    );

    // The host's own binfmt_misc: not mounted here (it cannot be mounted
    // by nobody) or, where it is, not writable by nobody. Either way the
    // host's table stays as it was.
    let c = as_nobody(
        "default-root",
        &[
            "install",
            "aarch64",
            "--emulator-dir",
            &emus,
            "--install-dir",
            &inst,
        ],
    );
    assert_cli_error(&c, Some(1), &["root"]);
    assert!(
        fs::read_dir(&home).unwrap().next().is_none(),
        "a failed install left files in {}",
        home.display()
    );
}

/// Runs `script` with `sh -euc` as `who` in new namespaces made by
/// `unshare ARGS`, where /proc/sys/fs/binfmt_misc is covered with an empty
/// tmpfs: the default root reads as not mounted whatever the host's state,
/// and nothing the script does reaches the host's mounts.
fn unmounted_default_root(tag: &str, nobody: bool, unshare: &[&str], script: &str) -> Captured {
    use std::process::{Command, Stdio};
    let s = Scratch::new(tag);
    if nobody {
        std::os::unix::fs::chown(s.path(), Some(65534), Some(65534)).expect("chown scratch");
    }
    let mut cmd = if nobody {
        let mut c = as_nobody();
        c.arg("unshare");
        c
    } else {
        Command::new("unshare")
    };
    let o = cmd
        .args(unshare)
        .args(["--", "sh", "-euc"])
        .arg(format!(
            "mount -t tmpfs -o mode=0755 tmpfs /proc/sys/fs/binfmt_misc\n{script}"
        ))
        .arg(tag)
        .env("CLI", cli())
        .env("EMUS", emulator_dir())
        .env("S", s.path())
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare");
    Captured {
        name: tag.to_owned(),
        rc: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn install_in_a_user_namespace_of_its_own_is_refused_not_registered_privately() {
    // A rootless container: root of its own user namespace, binfmt_misc not
    // mounted. Mounting it would make a private instance that vanishes.
    let c = unmounted_default_root(
        "rootless-install",
        true,
        &["--user", "--map-root-user", "--mount"],
        r#"
rc=0
"$CLI" install aarch64 --emulator-dir "$EMUS" --install-dir "$S/inst" 2>"$S/err" || rc=$?
echo "install $rc"
cat "$S/err"
test ! -e "$S/inst" && echo "nothing written"
test ! -e /proc/sys/fs/binfmt_misc/register && echo "nothing mounted"
"$CLI" status
"#,
    );
    assert_eq!(c.rc, 0, "{c}");
    let lines: Vec<&str> = c.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"install 1"), "{c}");
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("qemu-shim: error: ")
                && l.contains("user namespace of its own")
                && l.contains("private instance")),
        "{c}"
    );
    assert_eq!(
        lines.get(2..4),
        Some(&["nothing written", "nothing mounted"][..]),
        "{c}"
    );
    assert!(
        c.stdout.contains("is not mounted; no entries can be read (this process runs in a user namespace of its own"),
        "{c}"
    );
}

#[test]
fn status_reads_an_unmounted_host_table_without_mounting_it() {
    // Root in the host's user namespace with binfmt_misc not mounted (these
    // VMs boot so, a fresh privileged container starts so): status mounts
    // it in a mount namespace of its own, reads the host's table (read
    // only) and leaves the caller's mounts as they were.
    let c = unmounted_default_root(
        "unmounted-status",
        false,
        &["--mount"],
        r#"
before=$(cat /proc/self/mountinfo)
"$CLI" status
"$CLI" status --json | grep '"mounted": true'
test "$before" = "$(cat /proc/self/mountinfo)" && echo "mounts unchanged"
test ! -e /proc/sys/fs/binfmt_misc/register && echo "still not mounted here"
"#,
    );
    assert_eq!(c.rc, 0, "{c}");
    assert!(
        c.stdout
            .starts_with("binfmt_misc: /proc/sys/fs/binfmt_misc (mounted, "),
        "{c}"
    );
    assert!(
        c.stdout
            .ends_with("mounts unchanged\nstill not mounted here\n"),
        "{c}"
    );
}
