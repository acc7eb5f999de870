//! Edge cases of the exec path: argc == 0, the interpreter started by
//! hand, a program deleted before its exec, nothing opening the program by
//! path, ARG_MAX, a program the caller cannot read.

use std::fs;
use std::process::Command;

use qemu_shim_suite::{sandbox_caps, set_mode, As, Scratch};

use super::{helper, probe, probed, tagged_outcomes, Outcome};

/// Checks an `argmax` sweep: every size either ran the probe to its end,
/// or was refused by the kernel's exec (E2BIG, reported by the helper), or
/// by the interpreter with one line and 126; at least one of each of the
/// first two, so the sweep straddles the limit. Returns (ran, kernel
/// refused, interpreter refused).
fn check_argmax(s: &Scratch, name: &str) -> (usize, usize, usize) {
    let (mut ran, mut kernel, mut shim) = (0, 0, 0);
    for (size, outcome) in tagged_outcomes(&s.join(&format!("{name}.report"))) {
        let read = |ext: &str| {
            fs::read_to_string(s.join(&format!("am/{name}.{size}.{ext}"))).unwrap_or_default()
        };
        let (out, err) = (read("out"), read("err"));
        let what = format!(
            "{name} at {size} bytes: {outcome:?}\n--- stdout (end)\n{}\n--- stderr\n{err}",
            &out[out.len().saturating_sub(200)..]
        );
        match outcome {
            Outcome::Exit(0) => {
                assert!(
                    out.starts_with("argc=") && out.ends_with("egid=0\n") && err.is_empty(),
                    "{what}"
                );
                ran += 1;
            }
            Outcome::Exit(98) => {
                assert!(err.ends_with("Argument list too long\n"), "{what}");
                kernel += 1;
            }
            Outcome::Exit(126) => {
                assert!(
                    out.is_empty()
                        && err.starts_with("qemu-shim: ")
                        && err.matches('\n').count() == 1
                        && err.contains("argument list too long"),
                    "{what}"
                );
                shim += 1;
            }
            _ => panic!("{what}"),
        }
    }
    assert!(
        ran > 0 && kernel > 0,
        "{name}: the sweep does not straddle the limit: {ran} ran, {kernel} refused"
    );
    (ran, kernel, shim)
}

#[test]
fn edge_cases_of_the_exec_path() {
    let s = Scratch::new("edge");
    let helper = helper(&s);
    fs::create_dir(s.join("edge")).unwrap();
    fs::create_dir(s.join("am")).unwrap();
    let probe_path = s.join("edge/probe");
    fs::write(&probe_path, probe()).unwrap();
    set_mode(&probe_path, 0o755);
    let o = Command::new("strace").arg("-V").output();
    assert!(
        o.is_ok_and(|o| o.status.success()),
        "strace is missing: apt-get install strace"
    );
    sandbox_caps(
        As::Root,
        &s,
        &format!(
            r#"
h={h}
p="$S/edge/probe"
install() {{ install_shim aarch64 "$@" >/dev/null; }}
install
# argc == 0: the kernel (>= 5.18) makes argv [""] for the program.
cap argc0 "$h" argc0 "$p"
# The interpreter started by hand: a program, no program, an empty argv.
cap hand "$S/inst/qemu-shim-interp" "$p" x y
cap hand-usage "$S/inst/qemu-shim-interp"
cap hand-argc0 "$h" argc0 "$S/inst/qemu-shim-interp"
# Deleted before the exec: it runs from the descriptor.
cp "$p" "$S/edge/deleted"
cap fexec "$h" fexec "$S/edge/deleted" deleted-arg0
cap fexec-gone test -e "$S/edge/deleted"
# Nothing opens the program by path (so replacing it after the exec
# changes nothing).
cap strace strace -f -o "$S/trace-carried" -e trace=open,openat,openat2 "$p"
"$h" argmax "$S/am/args" "$p" args >"$S/args.report"
"$h" argmax "$S/am/env" "$p" env >"$S/env.report"
install --no-carry
cap argc0-nocarry "$h" argc0 "$p"
cp "$p" "$S/edge/deleted2"
cap fexec-nocarry "$h" fexec "$S/edge/deleted2" x
cap strace-nocarry strace -f -o "$S/trace-path" -e trace=open,openat,openat2 "$p"
"$h" argmax "$S/am/args-nocarry" "$p" args >"$S/args-nocarry.report"
"$h" argmax "$S/am/env-nocarry" "$p" env >"$S/env-nocarry.report"
"#,
            h = helper.display()
        ),
    );
    let p = probe_path.display().to_string();

    for name in ["argc0", "argc0-nocarry"] {
        let c = s.cap(name);
        let got = probed(&c);
        assert_eq!(
            (got.get("argc"), &got.argv[..]),
            (Some(1), &[String::new()][..]),
            "{c}"
        );
        assert!(c.stderr.is_empty(), "{c}");
    }

    let c = s.cap("hand");
    assert_eq!(probed(&c).argv, [p.as_str(), "x", "y"], "{c}");
    for name in ["hand-usage", "hand-argc0"] {
        qemu_shim_suite::assert_refused(
            &s.cap(name),
            126,
            &["qemu-shim: usage: qemu-shim-interp PROGRAM"],
        );
    }

    // With O from the kernel's descriptor; by path through /dev/fd/N,
    // which the descriptor the program inherited keeps open.
    for (name, file, arg) in [
        ("fexec", "deleted", "deleted-arg0"),
        ("fexec-nocarry", "deleted2", "x"),
    ] {
        let c = s.cap(name);
        let path = s.join(&format!("edge/{file}")).display().to_string();
        assert_eq!(probed(&c).argv, [path.as_str(), arg], "{c}");
        assert!(c.stderr.is_empty(), "{c}");
    }
    assert_eq!(
        s.cap("fexec-gone").rc,
        1,
        "the program was not deleted before its exec"
    );

    let opened = |trace: &str| -> Vec<String> {
        fs::read_to_string(s.join(trace))
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!("\"{p}\"")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(s.cap("strace").rc, 0, "{}", s.cap("strace"));
    let carried = opened("trace-carried");
    assert!(
        carried.is_empty(),
        "the program was opened by path: {carried:#?}"
    );
    // The same check sees the by-path interpreter and emulator open it.
    assert_eq!(s.cap("strace-nocarry").rc, 0, "{}", s.cap("strace-nocarry"));
    assert!(
        !opened("trace-path").is_empty(),
        "strace saw no open by path with --no-carry"
    );

    for name in ["args", "env", "args-nocarry", "env-nocarry"] {
        let (ran, kernel, shim) = check_argmax(&s, name);
        // The carried emulator starts in place with the kernel's strings:
        // whatever the kernel accepts runs. By path the emulator's own
        // exec adds a few strings, and may fail (cleanly) just below the
        // kernel's limit.
        if !name.ends_with("nocarry") {
            assert_eq!(
                shim, 0,
                "{name}: refused by the interpreter below the kernel's limit"
            );
        }
        eprintln!("{name} near ARG_MAX: {ran} ran, {kernel} refused by the kernel (E2BIG), {shim} refused by the interpreter");
    }
}

#[test]
fn a_program_nobody_cannot_read_runs_with_o_and_is_refused_cleanly_without() {
    let s = Scratch::new("unreadable");
    // Made here, as root, so they stay root's inside nobody's sandbox.
    fs::create_dir(s.join("prot")).unwrap();
    let x = s.join("prot/probe");
    fs::write(&x, probe()).unwrap();
    set_mode(&x, 0o711);
    sandbox_caps(
        As::Nobody,
        &s,
        r#"
install() { install_shim aarch64 "$@"; }
cap install install
cap read cat "$S/prot/probe"
cap o "$S/prot/probe"
cap install-nocarry install --no-carry
cap no-o "$S/prot/probe"
"#,
    );
    s.installed();
    let c = s.cap("read");
    assert!(
        c.rc != 0 && c.stderr.contains("Permission denied"),
        "readable?\n{c}"
    );
    let c = s.cap("o");
    assert_eq!(probed(&c).argv, [x.display().to_string()], "{c}");
    assert_eq!(
        s.cap("install-nocarry").rc,
        0,
        "{}",
        s.cap("install-nocarry")
    );
    qemu_shim_suite::assert_refused(
        &s.cap("no-o"),
        126,
        &[&format!(
            "qemu-shim: {}: cannot open: permission denied",
            x.display()
        )],
    );
}
