//! Issue 13: emulator updates never go unnoticed (the install record beside
//! the interpreter file, compared by `status` and `doctor`, refreshed by
//! `install`).

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
