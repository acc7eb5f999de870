//! The interpreter's refusals: exit 126 (cannot run) or 127 (no emulator)
//! and exactly one line on stderr, whether started by hand or by the
//! kernel. The damaged programs are made here from a copy of a busybox
//! fixture: no committed binaries.

use std::fs;
use std::path::Path;
use std::process::Command;

use qemu_shim_suite::{assert_refused, busybox, interp, sandbox_caps, As, Captured, Scratch};

/// Runs the release interpreter by hand (not through binfmt_misc).
fn by_hand(args: &[&Path]) -> Captured {
    let o = Command::new(interp())
        .args(args)
        .output()
        .expect("spawn qemu-shim-interp");
    Captured {
        name: format!("qemu-shim-interp {args:?}"),
        rc: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A copy of the `deb` busybox, cut to `len` bytes (all if `None`) and
/// patched with `patches` (offset, little-endian bytes).
fn damaged(
    s: &Scratch,
    name: &str,
    deb: &str,
    len: Option<usize>,
    patches: &[(usize, &[u8])],
) -> std::path::PathBuf {
    let mut b = fs::read(busybox(deb)).expect("read busybox fixture");
    if let Some(n) = len {
        b.truncate(n);
    }
    for (off, bytes) in patches {
        b[*off..*off + bytes.len()].copy_from_slice(bytes);
    }
    let p = s.join(name);
    fs::write(&p, b).expect("write damaged copy");
    p
}

#[test]
fn by_hand_bad_targets_are_refused_with_126_and_one_line() {
    let s = Scratch::new("bad-targets");
    let text = s.join("text");
    fs::write(&text, "#!/bin/sh\necho not a program\n").unwrap();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (text, "not an ELF program"),
        // 40 bytes: less than a 64-bit ELF header.
        (
            damaged(&s, "cut-header", "arm64", Some(40), &[]),
            "truncated ELF file",
        ),
        // Header complete, program header table cut off.
        (
            damaged(&s, "cut-phdrs", "arm64", Some(64), &[]),
            "malformed ELF file: program headers outside the file",
        ),
        // Loadable segments reach past the end of the file.
        (
            damaged(&s, "cut-body", "arm64", Some(64 * 1024), &[]),
            "malformed ELF file: segment outside the file",
        ),
        // e_machine (offset 18) set to a machine no arch row has.
        (
            damaged(
                &s,
                "machine",
                "arm64",
                None,
                &[(18, &0xbeefu16.to_le_bytes())],
            ),
            "unknown machine: ELF e_machine 48879",
        ),
        // e_phentsize (64-bit: offset 54; 32-bit: offset 42) that is not
        // the size of a program header.
        (
            damaged(
                &s,
                "phentsize64",
                "arm64",
                None,
                &[(54, &7u16.to_le_bytes())],
            ),
            "malformed ELF header: bad program header size",
        ),
        (
            damaged(
                &s,
                "phentsize32",
                "armhf",
                None,
                &[(42, &7u16.to_le_bytes())],
            ),
            "malformed ELF header: bad program header size",
        ),
        // e_phoff (64-bit: offset 32) far past the end of the file.
        (
            damaged(
                &s,
                "phoff",
                "arm64",
                None,
                &[(32, &(1u64 << 40).to_le_bytes())],
            ),
            "malformed ELF file: program headers outside the file",
        ),
        // e_type (offset 16) ET_REL: an object file, not a program.
        (
            damaged(
                &s,
                "relocatable",
                "arm64",
                None,
                &[(16, &1u16.to_le_bytes())],
            ),
            "ELF file is not an executable",
        ),
        (s.path().to_path_buf(), "not a regular file"),
        (s.join("missing"), "cannot open: no such file or directory"),
    ];
    for (path, reason) in &cases {
        let c = by_hand(&[path]);
        assert_refused(
            &c,
            126,
            &[&format!("qemu-shim: {}: {reason}", path.display())],
        );
    }
}

#[test]
fn by_hand_without_arguments_prints_usage_with_126() {
    let c = by_hand(&[]);
    assert_refused(&c, 126, &["qemu-shim: usage: qemu-shim-interp PROGRAM"]);
}

/// The interpreter as built (no table) looks for Debian's emulator in
/// /usr/bin. /usr/bin is hidden behind an empty tmpfs in the sandbox's
/// mount namespace, so the result does not depend on what the host has.
#[test]
fn unconfigured_interpreter_without_emulator_exits_127_naming_the_path() {
    let s = Scratch::new("unconfigured");
    busybox("arm64");
    sandbox_caps(
        As::Root,
        &s,
        r#"
mount -t tmpfs tmpfs /usr/bin
# Only shell builtins from here on: every program in /usr/bin is hidden.
cap run "$INTERP" "$FIX/busybox/arm64/busybox" true
"#,
    );
    assert_refused(
        &s.cap("run"),
        127,
        &["no emulator for aarch64: /usr/bin/qemu-aarch64-static not found"],
    );
}

/// Installed with `--no-carry`, the interpreter starts the emulators it was
/// installed with by path; one gone or unusable must be reported, by path,
/// both by hand and when the kernel starts it. (Carried emulators do not
/// need the file: tests/integration/kernel_exec.rs.)
#[test]
fn installed_interpreter_reports_missing_emulators() {
    let s = Scratch::new("emulator-gone");
    busybox("arm64");
    busybox("armhf");
    sandbox_caps(
        As::Root,
        &s,
        r#"
mkdir "$S/emus"
cp "$EMUS/qemu-aarch64-static" "$S/emus/"
cap install "$CLI" install aarch64 --no-carry --emulator-dir "$S/emus" --install-dir "$S/inst"
cap before "$FIX/busybox/arm64/busybox" true
# armhf has no entry (the kernel would not start us): by hand only.
cap other-arch "$S/inst/qemu-shim-interp" "$FIX/busybox/armhf/busybox" true
chmod a-x "$S/emus/qemu-aarch64-static"
cap kernel-noexec "$FIX/busybox/arm64/busybox" true
rm "$S/emus/qemu-aarch64-static"
cap kernel-gone "$FIX/busybox/arm64/busybox" true
cap hand-gone "$S/inst/qemu-shim-interp" "$FIX/busybox/arm64/busybox" true
"#,
    );
    s.installed();
    let c = s.cap("before");
    assert!(
        c.rc == 0 && c.stderr.is_empty(),
        "the emulator worked before it was removed:\n{c}"
    );

    let bb = busybox("arm64");
    let emu = s.join("emus/qemu-aarch64-static");
    assert_refused(
        &s.cap("other-arch"),
        127,
        &[&format!(
            "qemu-shim: {}: no emulator for arm",
            busybox("armhf").display()
        )],
    );
    assert_refused(
        &s.cap("kernel-noexec"),
        126,
        &[
            &format!("qemu-shim: {}: ", bb.display()),
            "not executable",
            &emu.display().to_string(),
        ],
    );
    for name in ["kernel-gone", "hand-gone"] {
        assert_refused(
            &s.cap(name),
            127,
            &[&format!(
                "qemu-shim: {}: no emulator for aarch64: {} not found",
                bb.display(),
                emu.display()
            )],
        );
    }
}
