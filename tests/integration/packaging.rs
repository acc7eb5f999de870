//! Issue 13: emulator updates never go unnoticed (the install record beside
//! the interpreter file, compared by `status` and `doctor`, refreshed by
//! `install`), and the Debian package (tests/integration/deb-package.sh).

use std::fs;

use qemu_shim_suite::{sandbox_caps, As, Captured, Scratch};

fn json(c: &Captured) -> serde_json::Value {
    assert_eq!(c.rc, 0, "{c}");
    serde_json::from_str(&c.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{c}"))
}

/// The one emulator `status --json` lists for the interpreter file.
#[track_caller]
fn emulator(c: &Captured) -> serde_json::Value {
    let v = json(c);
    let e = &v["interpreters"][0]["emulators"];
    assert_eq!(e.as_array().map(Vec::len), Some(1), "{c}");
    e[0].clone()
}

/// A carried emulator whose file is replaced (as a package upgrade does) is
/// reported stale by `status` and makes `doctor` exit 1 with the fix;
/// `install` then carries the new one and says which changed; the same
/// bytes under a new inode are not stale and do not rewrite the file; a
/// removed source is a note, not a failure.
#[test]
fn a_changed_emulator_source_is_stale_until_install_and_a_gone_one_is_a_note() {
    let s = Scratch::new("stale");
    let emus = qemu_shim_suite::emulator_dir();
    fs::create_dir(s.join("emus")).unwrap();
    fs::copy(
        emus.join("qemu-aarch64-static"),
        s.join("emus/qemu-aarch64-static"),
    )
    .unwrap();
    sandbox_caps(
        As::Root,
        &s,
        r#"
E="$S/emus/qemu-aarch64-static"
I="$CLI install aarch64 --emulator-dir $S/emus --install-dir $S/inst"
D="$CLI doctor --binfmt-d-dir $S/bd"
# A new build, renamed over as dpkg does: the version text changed in place.
replace() { sed "$1" "$E" >"$S/new"; chmod 755 "$S/new"; mv "$S/new" "$E"; }
cap first $I
cap fresh "$CLI" status --json
cap fresh-doctor $D
replace 's/aarch64 version 7\.2\.[0-9]*/aarch64 version 7.2.99/'
cap stale "$CLI" status --json
cap stale-text "$CLI" status
cap stale-doctor $D
cap refresh $I --json
cap refreshed "$CLI" status --json
cap inode-before stat -c %i "$S/inst/qemu-shim-interp"
replace ''
cap same-bytes $I --json
cap inode-after stat -c %i "$S/inst/qemu-shim-interp"
cap same-bytes-status "$CLI" status --json
rm "$E"
cap vanished "$CLI" status --json
cap vanished-doctor $D
"#,
    );
    assert_eq!(s.cap("first").rc, 0, "{}", s.cap("first"));
    let e = emulator(&s.cap("fresh"));
    assert_eq!(e["source"], "current", "{e}");
    let version = e["version"].as_str().expect("a version").to_string();
    // What runs here, as tonistiigi/binfmt spells it: the arch just
    // registered (its probe ran through the entry), not one without an
    // entry.
    let supported = json(&s.cap("fresh"))["supported"].clone();
    assert!(
        supported.as_array().is_some_and(
            |a| a.iter().any(|p| p == "linux/arm64") && !a.iter().any(|p| p == "linux/s390x")
        ),
        "{supported}"
    );
    let c = s.cap("fresh-doctor");
    assert!(c.rc == 0 && !c.stdout.contains("stale"), "{c}");

    let new_version = version
        .split_once(' ')
        .map(|(_, rest)| format!("7.2.99 {rest}"))
        .expect("a version with a package part");
    let e = emulator(&s.cap("stale"));
    assert_eq!(e["source"], "stale", "{e}");
    assert_eq!(e["version"], version.as_str(), "{e}");
    assert_eq!(e["source_version"], new_version.as_str(), "{e}");
    let c = s.cap("stale-text");
    assert!(
        c.stdout.contains("STALE:") && c.stdout.contains("(hint: qemu-shim install)"),
        "{c}"
    );
    let c = s.cap("stale-doctor");
    assert_eq!(c.rc, 1, "{c}");
    let l: Vec<&str> = c.stdout.lines().filter(|l| l.contains("stale")).collect();
    assert!(
        l.len() == 1
            && l[0].starts_with("BROKEN  aarch64: the carried emulator is stale: ")
            && l[0].contains("(fix: qemu-shim install"),
        "{c}"
    );

    let r = json(&s.cap("refresh"));
    assert_eq!(r["interpreter_written"], true, "{r}");
    assert_eq!(
        r["emulators_updated"],
        serde_json::json!([{"arch": "aarch64", "from": version, "to": new_version}]),
        "{r}"
    );
    assert_eq!(emulator(&s.cap("refreshed"))["source"], "current");

    // The same bytes again, renamed over (a package reinstalled): only the
    // record is refreshed, the interpreter file stays as it was.
    let r = json(&s.cap("same-bytes"));
    assert_eq!(r["interpreter_written"], false, "{r}");
    assert_eq!(r["emulators_updated"], serde_json::json!([]), "{r}");
    assert_eq!(s.cap("inode-before").stdout, s.cap("inode-after").stdout);
    assert_eq!(emulator(&s.cap("same-bytes-status"))["source"], "current");

    assert_eq!(emulator(&s.cap("vanished"))["source"], "vanished");
    let c = s.cap("vanished-doctor");
    assert_eq!(c.rc, 0, "{c}");
    assert!(
        c.stdout.lines().any(|l| l.starts_with("note    aarch64: ")
            && l.contains("is gone since install: the carried copy runs but gets no updates")),
        "{c}"
    );
}

/// The .deb scripts/build-deb made; panics when it is missing or older
/// than the release CLI (built from older sources).
fn built_deb() -> std::path::PathBuf {
    let dir = qemu_shim_suite::target_dir().join("debian");
    let deb = fs::read_dir(&dir)
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no .deb in {}: run scripts/build-deb first (scripts/test does)",
                dir.display()
            )
        });
    let mtime = |p: &std::path::Path| fs::metadata(p).and_then(|m| m.modified()).unwrap();
    assert!(
        mtime(&deb) >= mtime(&qemu_shim_suite::cli()),
        "{} is older than the release CLI: run scripts/build-deb again",
        deb.display()
    );
    deb
}

/// The debootstrap'ed root and the two qemu-user-static packages
/// scripts/fetch-deb-fixtures caches.
fn deb_cache(name: &str) -> std::path::PathBuf {
    let p = qemu_shim_suite::target_dir().join("deb-cache").join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-deb-fixtures first (scripts/test does)",
        p.display()
    );
    p
}

#[track_caller]
fn ok(c: &Captured) {
    assert_eq!(c.rc, 0, "{c}");
}

/// The aarch64 row of `status --json`'s interpreter file.
#[track_caller]
fn aarch64_emulator(c: &Captured) -> serde_json::Value {
    let v = json(c);
    let i = &v["interpreters"][0];
    assert_eq!(i["path"], "/var/lib/qemu-shim/qemu-shim-interp", "{c}");
    i["emulators"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["arch"] == "aarch64"))
        .cloned()
        .unwrap_or_else(|| panic!("no aarch64 emulator:\n{c}"))
}

/// The entry the kernel runs aarch64 programs with, per `status --json`.
fn aarch64_winner(c: &Captured) -> String {
    let v = json(c);
    v["arches"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["arch"] == "aarch64"))
        .and_then(|a| a["winner"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Issue 13, item 2: the package built by scripts/build-deb, in a Debian 12
/// chroot whose binfmt_misc is this test's private instance. Installed where
/// binfmt_misc cannot be mounted it configures with one warning; then it
/// registers on configure, follows a qemu-user-static upgrade through its
/// dpkg trigger (new carried copies, ours first again over Debian's own
/// entry), drops its registration when the emulators are removed and
/// brings it back when they return, and purges to nothing, leaving
/// others' entries alone.
#[test]
fn deb_package_registers_follows_qemu_upgrades_and_purges_clean() {
    let s = Scratch::new("deb");
    let deb = built_deb();
    let root = s.join("root");
    // Copied by the host's root: the cached root holds device nodes, which
    // a user namespace cannot create.
    let cp = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(deb_cache("bookworm-amd64"))
        .arg(&root)
        .status()
        .expect("spawn cp");
    assert!(cp.success(), "cp -a of the cached root failed");
    let pkg = root.join("pkg");
    fs::create_dir(&pkg).unwrap();
    fs::copy(&deb, pkg.join("qemu-shim.deb")).unwrap();
    for n in ["qemu-old.deb", "qemu-new.deb"] {
        fs::copy(deb_cache(n), pkg.join(n)).unwrap();
    }
    fs::copy(qemu_shim_suite::busybox("arm64"), pkg.join("busybox")).unwrap();
    let version_of = |n: &str| {
        let o = std::process::Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb_cache(n))
            .arg("Version")
            .output()
            .expect("spawn dpkg-deb");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (old, new) = (version_of("qemu-old.deb"), version_of("qemu-new.deb"));
    qemu_shim_suite::sandbox_full_map(
        &s,
        &format!("R=\"$S/root\"\n{}", include_str!("deb-package.sh")),
    );

    // 1. binfmt_misc cannot be mounted: configured, one warning.
    ok(&s.cap("qemu-old"));
    let c = s.cap("no-proc");
    ok(&c);
    let warnings: Vec<&str> = c
        .stderr
        .lines()
        .filter(|l| l.contains("qemu-shim"))
        .collect();
    assert!(
        warnings.len() == 1
            && warnings[0].starts_with("qemu-shim: warning: registration pending: ")
            && warnings[0].ends_with("(apply it with: qemu-shim install --persist)"),
        "{c}"
    );
    assert_eq!(s.cap("no-proc-status").stdout, "install ok installed");
    assert_eq!(s.cap("no-proc-left").stdout, "/usr/bin/qemu-shim\n");

    // 2. Purged, then installed: registered on configure, persisted.
    ok(&s.cap("purge-pending"));
    assert_eq!(s.cap("purge-pending-left").stdout, "");
    let c = s.cap("install");
    ok(&c);
    let left = s.cap("installed-left").stdout;
    for want in [
        "qemu-shim-aarch64\n",
        "/var/lib/qemu-shim\n",
        "/etc/binfmt.d/zz-qemu-shim.conf\n",
    ] {
        assert!(left.contains(want), "{want:?} missing:\n{left}\n{c}");
    }
    qemu_shim_suite::assert_runs(&s.cap("run-old"), "aarch64\n");
    let e = aarch64_emulator(&s.cap("status-old"));
    assert!(
        e["version"].as_str().is_some_and(|v| v.contains(&old)),
        "{e}"
    );
    assert_eq!(e["source"], "current", "{e}");
    let supported = json(&s.cap("status-old"))["supported"].clone();
    assert!(
        supported.as_array().is_some_and(
            |a| a.iter().any(|p| p == "linux/arm64") && a.iter().any(|p| p == "linux/amd64")
        ),
        "{supported}"
    );

    // 3. Debian's entry won, then qemu-user-static upgraded: the trigger
    //    carried the new emulators and put ours first again.
    assert_eq!(aarch64_winner(&s.cap("distro-status")), "qemu-aarch64");
    let c = s.cap("upgrade");
    ok(&c);
    let updated: Vec<&str> = c
        .stdout
        .lines()
        .filter(|l| l.starts_with("qemu-shim: updated the aarch64 emulator: "))
        .collect();
    assert!(
        updated.len() == 1 && updated[0].contains(&old) && updated[0].contains(&new),
        "{c}"
    );
    qemu_shim_suite::assert_runs(&s.cap("run-new"), "aarch64\n");
    let st = s.cap("status-new");
    let e = aarch64_emulator(&st);
    assert!(
        e["version"].as_str().is_some_and(|v| v.contains(&new)),
        "{e}\n{c}"
    );
    assert_eq!(e["source"], "current", "{e}");
    assert_eq!(aarch64_winner(&st), "qemu-shim-aarch64", "{st}");
    assert_ne!(s.cap("inode-old").stdout, s.cap("inode-new").stdout);
    let d = s.cap("doctor-new");
    assert!(d.rc == 0 && !d.stdout.contains("stale"), "{d}");

    // 4. Emulators removed: our registration goes, with one warning;
    //    back with them.
    let c = s.cap("remove-qemu");
    ok(&c);
    assert!(
        c.stderr
            .contains("qemu-shim: warning: no emulator left: qemu-shim's registration removed"),
        "{c}"
    );
    assert_eq!(s.cap("removed-left").stdout, "/usr/bin/qemu-shim\n");
    ok(&s.cap("reinstall-qemu"));
    assert!(
        s.cap("reinstalled-left")
            .stdout
            .contains("qemu-shim-aarch64\n"),
        "{}",
        s.cap("reinstalled-left")
    );

    // 5. Purged: nothing of ours left, the other entry kept.
    ok(&s.cap("purge"));
    assert_eq!(s.cap("purged-left").stdout, "", "{}", s.cap("purge"));
    assert!(
        s.cap("others").stdout.contains("someone-else\n"),
        "{}",
        s.cap("others")
    );

    // 6. In a container: the host's entry of ours is left alone both ways.
    let c = s.cap("container-install");
    ok(&c);
    assert!(
        c.stderr
            .contains("qemu-shim: warning: in a container: registration skipped"),
        "{c}"
    );
    ok(&s.cap("container-purge"));
    assert_eq!(
        s.cap("container-left").stdout,
        "qemu-shim-aarch64\n",
        "{}",
        s.cap("container-purge")
    );
}
