//! qemu-shim with the rest of the system, on the real kernel in private
//! binfmt_misc instances: `install --persist` and a simulated
//! systemd-binfmt start, `doctor`, and the `--quiet`/`--json` reports.
//! Nothing here writes /etc: every binfmt.d file goes to a scratch
//! directory given with `--binfmt-d-dir`.

use std::fs;
use std::path::Path;

use qemu_shim_registry::format::{parse_binfmt_d, EntryFile};
use qemu_shim_suite::{assert_runs, busybox, sandbox_caps, As, Scratch};

/// A distro's entry for aarch64, as Debian's qemu-user-static file has it
/// (here run by /bin/false, so a program it runs exits 1 and prints nothing).
const DISTRO_AARCH64: &str = ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/bin/false:F";

/// Where systemd-binfmt looks for its files (systemd 252 and later).
const SYSTEMD_BINFMT: &str = "/lib/systemd/systemd-binfmt";

/// `install --persist` writes a binfmt.d file that, applied by the real
/// systemd-binfmt at "the next boot" (in a private instance, its config
/// directories replaced by bind mounts) after a distro's file, brings our
/// entries back and makes them win; uninstall removes it and leaves the
/// distro's.
#[test]
fn persisted_entries_survive_a_systemd_binfmt_start_and_win() {
    let s = Scratch::new("persist");
    busybox("arm64");
    let d = s.join("binfmt.d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("qemu-aarch64.conf"), format!("{DISTRO_AARCH64}\n")).unwrap();
    fs::write(s.join("afile"), b"").unwrap();
    // Phase 1: a failing persist undoes the whole install; then a good one.
    sandbox_caps(
        As::Root,
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
cap failing install_shim aarch64 --persist --binfmt-d-dir "$S/afile/binfmt.d"
cap after-failing sh -c 'ls "$0"; ls -A "$1"' "$R" "$S"
cap install install_shim aarch64 --persist --binfmt-d-dir "$S/binfmt.d"
cap again install_shim aarch64 --persist --binfmt-d-dir "$S/binfmt.d"
cap conf-before cat "$S/binfmt.d/zz-qemu-shim.conf"
cap changed install_shim aarch64 --no-credentials --binfmt-d-dir "$S/binfmt.d"
cap entry cat "$R/qemu-shim-aarch64"
"#,
    );
    let c = s.cap("failing");
    assert!(
        c.rc == 1 && c.stderr.contains("this run's changes were undone"),
        "{c}"
    );
    let c = s.cap("after-failing");
    assert!(
        c.stdout == "register\nstatus\nafile\nbinfmt.d\ncaps\n",
        "a failed install left something:\n{c}"
    );
    let c = s.cap("install");
    assert!(
        c.rc == 0
            && c.stdout.contains(&format!(
                "written    {}",
                d.join("zz-qemu-shim.conf").display()
            )),
        "{c}"
    );
    let c = s.cap("again");
    assert!(
        c.rc == 0 && c.stdout.contains("nothing to do: already installed"),
        "{c}"
    );
    // Without --persist, an install on the same interpreter file keeps the
    // file in step: here the flags changed (no C).
    assert!(
        s.cap("conf-before").stdout.contains(":POCF\n"),
        "{}",
        s.cap("conf-before")
    );
    let c = s.cap("changed");
    assert!(
        c.rc == 0
            && c.stdout.contains(&format!(
                "written    {}",
                d.join("zz-qemu-shim.conf").display()
            )),
        "{c}"
    );
    let conf = fs::read_to_string(d.join("zz-qemu-shim.conf")).unwrap();
    assert!(conf.contains(":POF\n"), "{conf}");
    assert!(
        conf.starts_with("# Written by `qemu-shim install --persist`"),
        "{conf}"
    );
    let ours: Vec<_> = parse_binfmt_d(&conf)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ours.len(), 1, "{conf}");
    assert_eq!(ours[0].name, "qemu-shim-aarch64");
    // The line registers exactly the entry install made.
    let entry = EntryFile::parse(&s.cap("entry").stdout).unwrap();
    assert_eq!(ours[0].expected_entry(), entry, "{conf}");

    // Phase 2, "the next boot": a table with someone's stale entry, then
    // systemd-binfmt's start, which empties the table and registers every
    // file of its directories in name order. Here its only directory with
    // files is ours (bind-mounted over /etc/binfmt.d): the distro's file
    // and the one install wrote.
    assert!(
        Path::new(SYSTEMD_BINFMT).is_file(),
        "{SYSTEMD_BINFMT} is missing: install systemd (scripts/test does)"
    );
    fs::create_dir(s.join("empty")).unwrap();
    sandbox_caps(
        As::Root,
        &s,
        &format!(
            r#"
R=/proc/sys/fs/binfmt_misc
printf '%s' ':stale:M::STALE::/bin/true:' >"$R/register"
for d in /etc/binfmt.d /run/binfmt.d /usr/local/lib/binfmt.d /usr/lib/binfmt.d; do
	if [ -d "$d" ]; then mount --bind "$S/empty" "$d"; fi
done
mount --bind "$S/binfmt.d" /etc/binfmt.d
cap boot {SYSTEMD_BINFMT}
cap order ls -U "$R"
cap run "$FIX/busybox/arm64/busybox" uname -m
cap json "$CLI" status --json
cap uninstall "$CLI" uninstall --install-dir "$S/inst" --binfmt-d-dir "$S/binfmt.d"
cap left ls "$S/binfmt.d"
"#
        ),
    );
    let c = s.cap("boot");
    assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
    // Newest first: ours, registered after the distro's, is tried first.
    assert_runs(
        &s.cap("order"),
        "qemu-shim-aarch64\nqemu-aarch64\nregister\nstatus\n",
    );
    assert_runs(&s.cap("run"), "aarch64\n");
    let json: serde_json::Value = serde_json::from_str(&s.cap("json").stdout).unwrap();
    let arches = json["arches"].as_array().unwrap();
    assert_eq!(arches.len(), 1, "{json}");
    assert_eq!(arches[0]["winner"], "qemu-shim-aarch64", "{json}");
    assert_eq!(arches[0]["shadowed"], serde_json::json!(["qemu-aarch64"]));
    let c = s.cap("uninstall");
    assert!(
        c.rc == 0
            && c.stdout.contains(&format!(
                "removed        {}",
                d.join("zz-qemu-shim.conf").display()
            )),
        "{c}"
    );
    assert_runs(&s.cap("left"), "qemu-aarch64.conf\n");
}

/// Finds the one stdout line of `c` that starts with `prefix`.
#[track_caller]
fn line_of(c: &qemu_shim_suite::Captured, prefix: &str) -> String {
    let hits: Vec<&str> = c.stdout.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(hits.len(), 1, "one line starting {prefix:?}:\n{c}");
    hits[0].to_string()
}

/// `doctor` on a healthy install exits 0 with an ok line per arch whose
/// probe ran; an entry disabled, an entry of someone else's tried first,
/// or an emulator that no longer runs each make it exit 1 with a line
/// naming the arch, what is wrong and the fix.
#[test]
fn doctor_passes_a_healthy_install_and_names_each_broken_arch() {
    let s = Scratch::new("doctor");
    let emus = qemu_shim_suite::emulator_dir();
    fs::create_dir(s.join("emus")).unwrap();
    fs::copy(
        emus.join("qemu-s390x-static"),
        s.join("emus/qemu-s390x-static"),
    )
    .unwrap();
    let script = format!(
        r#"
R=/proc/sys/fs/binfmt_misc
D="$CLI doctor --binfmt-d-dir $S/bd"
cap empty $D
install_shim aarch64 >/dev/null
"$CLI" install s390x --no-carry --emulator-dir "$S/emus" --install-dir "$S/inst2" >/dev/null
cap healthy $D
echo 0 >"$R/qemu-shim-aarch64"
cap disabled $D
echo 1 >"$R/qemu-shim-aarch64"
printf '%s' '{DISTRO_AARCH64}' >"$R/register"
cap shadowed $D
echo -1 >"$R/qemu-aarch64"
printf 'not an emulator' >"$S/emus/qemu-s390x-static"
cap emulator $D
install_shim aarch64 --persist --binfmt-d-dir "$S/bd" >/dev/null
echo -1 >"$R/qemu-shim-aarch64"
cap not-registered $D
grep '^:qemu-shim-aarch64:' "$S/bd/zz-qemu-shim.conf" | sed 's/:POCF$/:OCF/' | tr -d '\n' >"$R/register"
cap no-p $D
"#
    );
    sandbox_caps(As::Root, &s, &script);

    let c = s.cap("empty");
    assert_eq!(c.rc, 1, "{c}");
    // Each install command doctor prints names the binfmt.d directory it
    // looked at, so it acts there (issue 18, item 1).
    let bd = s.join("bd");
    line_of(
        &c,
        &format!(
            "BROKEN  no qemu-shim entries are registered (fix: qemu-shim install --binfmt-d-dir {})",
            bd.display()
        ),
    );

    let c = s.cap("healthy");
    assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
    assert!(!c.stdout.contains("BROKEN"), "{c}");
    line_of(
        &c,
        "ok      binfmt_misc mounted at /proc/sys/fs/binfmt_misc, enabled",
    );
    let l = line_of(&c, "ok      aarch64: ");
    assert!(
        l.contains("probe exited 42 through qemu-shim-aarch64"),
        "{l}"
    );
    let l = line_of(&c, "ok      aarch64: ");
    assert!(l.contains("; argv[0] kept"), "{l}");
    let l = line_of(&c, "ok      s390x: ");
    assert!(
        l.contains("probe exited 42 through qemu-shim-s390x; argv[0] kept"),
        "{l}"
    );
    // This namespace maps one uid: no file can be given to another user.
    let l = line_of(&c, "note    setuid not checked: ");
    assert!(
        l.contains("uid 42 is not mapped in this user namespace"),
        "{l}"
    );

    let c = s.cap("disabled");
    assert_eq!(c.rc, 1, "{c}");
    let inst = s.join("inst");
    assert_eq!(
        line_of(&c, "BROKEN  aarch64: "),
        format!(
            "BROKEN  aarch64: qemu-shim-aarch64 is disabled (fix: qemu-shim install aarch64 --install-dir {} --binfmt-d-dir {})",
            std::fs::canonicalize(&inst).unwrap().display(),
            bd.display()
        )
    );
    line_of(&c, "ok      s390x: ");

    let c = s.cap("shadowed");
    assert_eq!(c.rc, 1, "{c}");
    let l = line_of(&c, "BROKEN  aarch64: ");
    assert!(
        l.contains("programs run through qemu-aarch64 (/bin/false), which the kernel tries first")
            && l.contains(
                "or remove theirs with echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64 (fix: qemu-shim install aarch64"
            ),
        "{l}"
    );
    line_of(&c, "ok      s390x: ");

    let c = s.cap("emulator");
    assert_eq!(c.rc, 1, "{c}");
    let l = line_of(&c, "BROKEN  s390x: ");
    assert!(
        l.contains("the probe program exited 126, not 42")
            && l.contains("qemu-s390x-static: exec format error")
            && l.contains("(fix: qemu-shim install s390x --install-dir ")
            && l.ends_with(&format!(" --no-carry --binfmt-d-dir {})", bd.display())),
        "{l}"
    );
    line_of(&c, "ok      aarch64: ");

    // Registered at boot by the binfmt.d file, but not now.
    let c = s.cap("not-registered");
    assert_eq!(c.rc, 1, "{c}");
    assert_eq!(
        line_of(&c, "BROKEN  aarch64: "),
        format!(
            "BROKEN  aarch64: qemu-shim-aarch64 is in {} but not registered (fix: qemu-shim install aarch64 --install-dir {} --binfmt-d-dir {})",
            s.join("bd/zz-qemu-shim.conf").display(),
            std::fs::canonicalize(&inst).unwrap().display(),
            bd.display()
        )
    );

    // Our entry registered by hand without P: the argv0 probe sees its
    // path as argv[0].
    let c = s.cap("no-p");
    assert_eq!(c.rc, 1, "{c}");
    let l = line_of(&c, "BROKEN  aarch64: ");
    assert!(
        l.contains("programs lose their argv[0]: the argv0 probe, started as \"Zqemu-shim-argv0\", exited 47, not 90"),
        "{l}"
    );
}

/// Where an entry has C, `doctor` runs a setuid probe (owned by uid 42,
/// started as nobody) through it: with every arch installed it passes for
/// each; an entry given C by hand over a by-path install, whose
/// interpreter refuses setuid programs, is named with the fix. Needs a
/// namespace that maps nobody and uid 42.
#[test]
fn doctor_checks_setuid_programs_on_every_arch_where_c_is_on() {
    let s = Scratch::new("doctor-setuid");
    qemu_shim_suite::sandbox_full_map(
        &s,
        r#"
R=/proc/sys/fs/binfmt_misc
install_shim --quiet
cap all "$CLI" doctor --binfmt-d-dir "$S/bd"
cap nobody nobody "$CLI" doctor --binfmt-d-dir "$S/bd"
"$CLI" uninstall --quiet --install-dir "$S/inst"
"$CLI" install s390x --no-carry --quiet --persist --binfmt-d-dir "$S/bd" --emulator-dir "$EMUS" --install-dir "$S/inst2"
echo -1 >"$R/qemu-shim-s390x"
grep '^:qemu-shim-s390x:' "$S/bd/zz-qemu-shim.conf" | sed 's/:PF$/:PCF/' | tr -d '
' >"$R/register"
cap by-path-c "$CLI" doctor --binfmt-d-dir "$S/bd"
"#,
    );
    let c = s.cap("all");
    assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
    assert!(
        !c.stdout.contains("BROKEN") && !c.stdout.contains("not checked"),
        "{c}"
    );
    let arches: Vec<&str> = c
        .stdout
        .lines()
        .filter(|l| l.contains(" through qemu-shim-"))
        .collect();
    // Every row but the host's own arch (and those it runs natively).
    assert!(arches.len() >= 30, "{c}");
    for l in &arches {
        assert!(
            l.starts_with("ok ") && l.ends_with("; argv[0] kept; setuid runs as the file's owner"),
            "{l}"
        );
    }

    // Not root: nothing is given away, and doctor says so.
    let c = s.cap("nobody");
    let l = line_of(&c, "note    setuid not checked: ");
    assert!(l.contains("doctor runs as uid 65534"), "{l}");

    let c = s.cap("by-path-c");
    assert_eq!(c.rc, 1, "{c}");
    let l = line_of(&c, "BROKEN  s390x: ");
    assert!(
        l.contains("setuid programs do not get their file's credentials: the euid probe, setuid to uid 42 and started as uid 65534, exited 126, not 42: qemu-shim:")
            && l.contains("(fix: qemu-shim install s390x --install-dir "),
        "{l}"
    );
}

/// `--json` reports what install and uninstall did as data, `--quiet`
/// prints nothing but errors, and progress shows only on a terminal.
#[test]
fn install_and_uninstall_report_as_json_quietly_or_with_progress_on_a_terminal() {
    let s = Scratch::new("report");
    sandbox_caps(
        As::Root,
        &s,
        r#"
I="--emulator-dir $EMUS --install-dir $S/inst"
cap first "$CLI" install aarch64 --json $I
cap second "$CLI" install aarch64 --json $I
cap quiet "$CLI" install aarch64 --quiet $I
cap quiet-error "$CLI" install vax --quiet $I
cap uninstall "$CLI" uninstall --json --install-dir "$S/inst"
cap uninstall-quiet "$CLI" uninstall --quiet --install-dir "$S/inst"
cap tty script -qec "$CLI install aarch64 $I" /dev/null
cap tty-quiet script -qec "$CLI uninstall --quiet --install-dir $S/inst" /dev/null
"#,
    );
    let json = |name: &str| -> serde_json::Value {
        let c = s.cap(name);
        assert!(c.rc == 0 && c.stderr.is_empty(), "{c}");
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("{e}:\n{c}"))
    };
    let interp = fs::canonicalize(s.path())
        .unwrap()
        .join("inst/qemu-shim-interp");
    let v = json("first");
    assert_eq!(v["interpreter"], interp.to_str().unwrap(), "{v}");
    assert_eq!(v["interpreter_written"], true, "{v}");
    assert_eq!(v["unchanged"], false, "{v}");
    assert_eq!(v["entries"][0]["name"], "qemu-shim-aarch64", "{v}");
    assert_eq!(v["entries"][0]["action"], "registered", "{v}");
    assert_eq!(v["entries"][0]["flags"], "POCF", "{v}");
    assert_eq!(v["entries"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["binfmt_d"], serde_json::Value::Null, "{v}");
    let v = json("second");
    assert_eq!(v["unchanged"], true, "{v}");
    assert_eq!(v["interpreter_written"], false, "{v}");
    assert_eq!(v["entries"][0]["action"], "unchanged", "{v}");
    assert_runs(&s.cap("quiet"), "");
    let c = s.cap("quiet-error");
    assert!(
        c.rc == 1
            && c.stdout.is_empty()
            && c.stderr.starts_with("qemu-shim: error: unknown arch 'vax'")
            && c.stderr.matches('\n').count() == 1,
        "{c}"
    );
    let v = json("uninstall");
    assert_eq!(
        v["removed"],
        serde_json::json!(["qemu-shim-aarch64"]),
        "{v}"
    );
    assert!(
        v["files_removed"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(interp.to_str().unwrap())),
        "{v}"
    );
    assert_runs(&s.cap("uninstall-quiet"), "");
    let c = s.cap("tty");
    assert!(
        c.rc == 0
            && c.stdout
                .contains("\rqemu-shim: writing the interpreter file: ")
            && c.stdout.contains("registered qemu-shim-aarch64"),
        "{c}"
    );
    let c = s.cap("tty-quiet");
    assert!(c.rc == 0 && c.stdout.is_empty(), "{c}");
}

/// Uninstalling some arches drops their lines from the binfmt.d file and
/// keeps the others'; uninstalling the rest removes the file.
#[test]
fn uninstall_of_some_arches_rewrites_the_binfmt_d_file() {
    let s = Scratch::new("persist-partial");
    sandbox_caps(
        As::Root,
        &s,
        r#"
I="--emulator-dir $EMUS --install-dir $S/inst --binfmt-d-dir $S/bd"
cap install "$CLI" install aarch64 s390x --no-carry --persist $I
cap conf-both cat "$S/bd/zz-qemu-shim.conf"
cap some "$CLI" uninstall s390x --json --install-dir "$S/inst" --binfmt-d-dir "$S/bd"
cap conf-one cat "$S/bd/zz-qemu-shim.conf"
cap rest "$CLI" uninstall --json --install-dir "$S/inst" --binfmt-d-dir "$S/bd"
cap left ls -A "$S/bd"
"#,
    );
    s.installed();
    let names = |text: &str| -> Vec<String> {
        parse_binfmt_d(text)
            .into_iter()
            .map(|l| l.unwrap().name)
            .collect()
    };
    assert_eq!(
        names(&s.cap("conf-both").stdout),
        ["qemu-shim-s390x", "qemu-shim-aarch64"]
    );
    let conf = s.join("bd/zz-qemu-shim.conf");
    let c = s.cap("some");
    let v: serde_json::Value =
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("{e}: {c}"));
    assert_eq!(v["removed"], serde_json::json!(["qemu-shim-s390x"]), "{v}");
    assert_eq!(v["binfmt_d_rewritten"], conf.to_str().unwrap(), "{v}");
    assert_eq!(names(&s.cap("conf-one").stdout), ["qemu-shim-aarch64"]);
    assert!(
        s.cap("conf-one").stdout.starts_with("# Written by"),
        "{}",
        s.cap("conf-one")
    );
    let c = s.cap("rest");
    let v: serde_json::Value =
        serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("{e}: {c}"));
    assert!(
        v["files_removed"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(conf.to_str().unwrap())),
        "{v}"
    );
    assert_runs(&s.cap("left"), "");
}
