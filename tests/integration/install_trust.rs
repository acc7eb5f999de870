//! What `install` trusts (issue 10, items 3, 4 and 5's config bullet), on
//! the real kernel in a private binfmt_misc instance: the directories it
//! creates are 0755 whatever the umask; an install directory, a binfmt.d
//! directory, an emulator, the interpreter it installs or the config that
//! someone other than root could change (the file, a directory on its
//! path, a symbolic link on the way) is refused with one line naming it and
//! its owner or mode, and nothing is registered; `--allow-untrusted-emulators`
//! lets the emulators and the interpreter through.
//!
//! The scripts run as root of a namespace that maps the host's root to
//! itself (the suite runs as root): files the test gives to uid 65534 show
//! as owned by 65534 there, root's as root's. The same install as the
//! mapped root of an unprivileged user's namespace is covered by
//! tests/integration/permissions.rs, which must keep passing.

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::Path;

use qemu_shim_suite::{
    assert_refused, emulator_dir, interp, sandbox_caps, set_mode, As, Captured, Scratch,
};

/// Gives `path` (not what is under it) to host uid/gid 65534.
fn give_away(path: &Path) {
    chown(path, Some(65534), Some(65534))
        .unwrap_or_else(|e| panic!("chown {} (needs root): {e}", path.display()));
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A directory `rel` in `s` with exactly `mode`.
fn dir(s: &Scratch, rel: &str, mode: u32) -> String {
    let p = s.join(rel);
    fs::create_dir_all(&p).unwrap();
    set_mode(&p, mode);
    p.display().to_string()
}

#[track_caller]
fn assert_ok(c: &Captured) {
    assert!(c.rc == 0, "expected success:\n{c}");
}

/// Item 3: `umask 000` made the install directory and the binfmt.d
/// directory world-writable (anyone could then rename a file over the
/// interpreter or drop a `C` entry into binfmt.d); `umask 077` made them
/// unreadable for the users whose programs the unpinned entries run.
#[test]
fn directories_install_creates_are_0755_whatever_the_umask() {
    let s = Scratch::new("trust-umask");
    sandbox_caps(
        As::Root,
        &s,
        r#"
I() { "$CLI" install aarch64 --persist --emulator-dir "$EMUS" "$@"; }
(umask 000; cap open I --binfmt-d-dir "$S/bd" --install-dir "$S/a/b/inst")
(umask 000; cap open-again I --binfmt-d-dir "$S/bd" --install-dir "$S/a/b/inst")
(umask 077; cap closed I --binfmt-d-dir "$S/bd2" --install-dir "$S/c/inst")
"#,
    );
    assert_ok(&s.cap("open"));
    // What the first run made, the second accepts.
    assert_ok(&s.cap("open-again"));
    assert_ok(&s.cap("closed"));
    for d in ["a", "a/b", "a/b/inst", "bd", "c", "c/inst", "bd2"] {
        assert_eq!(mode_of(&s.join(d)), 0o755, "{d}");
    }
    for f in ["a/b/inst/qemu-shim-interp", "c/inst/qemu-shim-interp"] {
        assert_eq!(mode_of(&s.join(f)), 0o755, "{f}");
    }
    for f in ["bd/zz-qemu-shim.conf", "bd2/zz-qemu-shim.conf"] {
        assert_eq!(mode_of(&s.join(f)), 0o644, "{f}");
    }
}

/// Item 3: an install directory or binfmt.d directory that someone other
/// than root can change — itself, a directory above it, or through a
/// symbolic link in such a directory — is refused before anything is
/// registered. A root-owned sticky directory (as /tmp) may lie on the way,
/// not be the install directory itself.
#[test]
fn untrusted_install_and_binfmt_d_directories_are_refused() {
    let s = Scratch::new("trust-dirs");
    let gw = dir(&s, "gw", 0o775);
    let ww_inst = dir(&s, "ww-inst", 0o777);
    let sticky_inst = dir(&s, "sticky-inst", 0o1777);
    let nobody_inst = dir(&s, "nobody-inst", 0o755);
    give_away(&s.join("nobody-inst"));
    let nobody_parent = dir(&s, "nobody-parent", 0o755);
    give_away(&s.join("nobody-parent"));
    let ww = dir(&s, "ww", 0o777);
    dir(&s, "real", 0o755);
    symlink(s.join("real"), s.join("ww/link")).unwrap();
    let ww_bd = dir(&s, "ww-bd", 0o777);
    dir(&s, "sticky", 0o1777);
    // An interpreter file already in place that uid 65534 owns.
    dir(&s, "pre", 0o755);
    let pre_file = s.join("pre/qemu-shim-interp");
    fs::copy(interp(), &pre_file).unwrap();
    give_away(&pre_file);
    sandbox_caps(
        As::Root,
        &s,
        r#"
I() { "$CLI" install aarch64 --emulator-dir "$EMUS" "$@"; }
cap gw-parent I --install-dir "$S/gw/inst"
cap ww-inst I --install-dir "$S/ww-inst"
cap sticky-inst I --install-dir "$S/sticky-inst"
cap nobody-inst I --install-dir "$S/nobody-inst"
cap nobody-parent I --install-dir "$S/nobody-parent/inst"
cap ww-link I --install-dir "$S/ww/link/inst"
cap pre I --install-dir "$S/pre"
cap ww-bd I --install-dir "$S/inst" --persist --binfmt-d-dir "$S/ww-bd"
cap gw-bd I --install-dir "$S/inst" --persist --binfmt-d-dir "$S/gw/bd"
cap table ls /proc/sys/fs/binfmt_misc
cap sticky-parent I --install-dir "$S/sticky/inst"
chmod 0666 "$S/sticky/inst/qemu-shim-interp"
cap loose-file I --install-dir "$S/sticky/inst"
"#,
    );
    let refused = |name: &str, parts: &[&str]| {
        let mut all = vec!["qemu-shim: error: ", "refusing it"];
        all.extend_from_slice(parts);
        assert_refused(&s.cap(name), 1, &all);
    };
    refused("gw-parent", &[&gw, "writable by its group", "mode 0775"]);
    refused("ww-inst", &[&ww_inst, "writable by everyone", "mode 0777"]);
    refused(
        "sticky-inst",
        &[&sticky_inst, "writable by everyone", "mode 1777"],
    );
    refused("nobody-inst", &[&nobody_inst, "owned by uid 65534"]);
    refused("nobody-parent", &[&nobody_parent, "owned by uid 65534"]);
    refused("ww-link", &[&ww, "writable by everyone", "mode 0777"]);
    refused(
        "pre",
        &[&pre_file.display().to_string(), "owned by uid 65534"],
    );
    refused("ww-bd", &[&ww_bd, "writable by everyone", "mode 0777"]);
    refused("gw-bd", &[&gw, "writable by its group", "mode 0775"]);
    // Refused before anything was registered or written.
    assert_eq!(s.cap("table").stdout, "register\nstatus\n");
    assert!(!s.join("inst").exists() && !s.join("gw/inst").exists());
    assert!(!s.join("real/inst").exists());
    assert_eq!(
        fs::read(&pre_file).unwrap(),
        fs::read(interp()).unwrap(),
        "the untrusted file was changed"
    );
    // /tmp's case: a root-owned sticky directory on the way is accepted.
    assert_ok(&s.cap("sticky-parent"));
    // An installed file someone else may have changed is not kept as is.
    refused(
        "loose-file",
        &[
            &s.join("sticky/inst/qemu-shim-interp").display().to_string(),
            "writable by everyone",
            "mode 0666",
        ],
    );
}

/// Item 4: an emulator or interpreter that someone other than root could
/// change (its owner, its mode, its directory, a link to it, the config's
/// `path =`) would run as root for every user's programs, carried or by
/// path: refused unless `--allow-untrusted-emulators`. Item 5: a config
/// reached through a symbolic link is refused.
#[test]
fn untrusted_emulators_and_interpreters_are_refused_unless_allowed() {
    let s = Scratch::new("trust-emus");
    let emu = emulator_dir().join("qemu-aarch64-static");
    let copy = |d: &str, mode: u32| {
        dir(&s, d, 0o755);
        let p = s.join(&format!("{d}/qemu-aarch64-static"));
        fs::copy(&emu, &p).unwrap();
        set_mode(&p, mode);
        p.display().to_string()
    };
    let nobody_emu = copy("emu-nobody", 0o755);
    give_away(Path::new(&nobody_emu));
    let open_emu = copy("emu-0777", 0o777);
    copy("emu-ww", 0o755);
    let emu_ww = dir(&s, "emu-ww", 0o777);
    dir(&s, "emu-link", 0o755);
    symlink(&nobody_emu, s.join("emu-link/qemu-aarch64-static")).unwrap();
    let link_emu = s.join("emu-link/qemu-aarch64-static").display().to_string();
    dir(&s, "interp", 0o755);
    let nobody_interp = s.join("interp/qemu-shim-interp");
    fs::copy(interp(), &nobody_interp).unwrap();
    give_away(&nobody_interp);
    let nobody_interp = nobody_interp.display().to_string();
    let config = s.join("config.toml");
    fs::write(
        &config,
        format!("[arch.aarch64]\nemulator = \"qemu\"\npath = \"{nobody_emu}\"\n"),
    )
    .unwrap();
    set_mode(&config, 0o644);
    let good = s.join("good.toml");
    fs::write(&good, "# nothing to choose\n").unwrap();
    set_mode(&good, 0o644);
    symlink(&good, s.join("link.toml")).unwrap();
    sandbox_caps(
        As::Root,
        &s,
        r#"
I() { "$CLI" install aarch64 --install-dir "$S/inst" "$@"; }
cap nobody I --emulator-dir "$S/emu-nobody"
cap nobody-by-path I --no-carry --emulator-dir "$S/emu-nobody"
cap open I --emulator-dir "$S/emu-0777"
cap ww-dir I --emulator-dir "$S/emu-ww"
cap link I --emulator-dir "$S/emu-link"
cap config I --emulator-dir "$EMUS" --config "$S/config.toml"
cap interp I --emulator-dir "$EMUS" --interpreter "$S/interp/qemu-shim-interp"
cap config-link I --emulator-dir "$EMUS" --config "$S/link.toml"
cap table ls /proc/sys/fs/binfmt_misc
cap allowed I --emulator-dir "$S/emu-nobody" --interpreter "$S/interp/qemu-shim-interp" --allow-untrusted-emulators
cap allowed-by-path I --no-carry --emulator-dir "$S/emu-0777" --allow-untrusted-emulators
"#,
    );
    let refused = |name: &str, parts: &[&str]| {
        let mut all = vec!["qemu-shim: error: ", "refusing it"];
        all.extend_from_slice(parts);
        assert_refused(&s.cap(name), 1, &all);
    };
    let flag = "--allow-untrusted-emulators";
    for name in ["nobody", "nobody-by-path"] {
        refused(
            name,
            &[
                "emulator for aarch64",
                &nobody_emu,
                "owned by uid 65534",
                flag,
            ],
        );
    }
    refused(
        "open",
        &[&open_emu, "writable by everyone", "mode 0777", flag],
    );
    refused(
        "ww-dir",
        &[&emu_ww, "writable by everyone", "mode 0777", flag],
    );
    // Named by the path given, and by the file the link leads to.
    refused(
        "link",
        &[&link_emu, &nobody_emu, "owned by uid 65534", flag],
    );
    refused("config", &[&nobody_emu, "owned by uid 65534", flag]);
    refused(
        "interp",
        &["interpreter", &nobody_interp, "owned by uid 65534", flag],
    );
    assert_refused(
        &s.cap("config-link"),
        1,
        &[
            "qemu-shim: error: ",
            &s.join("link.toml").display().to_string(),
            "symbolic link",
        ],
    );
    assert_eq!(s.cap("table").stdout, "register\nstatus\n");
    assert_ok(&s.cap("allowed"));
    assert_ok(&s.cap("allowed-by-path"));
}
