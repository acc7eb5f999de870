//! The kernel's descriptor and the standard ones (issue 10, item 1): a
//! program sees its standard descriptors as its caller left them, and a
//! closed stdin never lets qemu reopen the program by path.

use std::fs;
use std::path::Path;

use qemu_shim_suite::{compile_c, sandbox_full_map, set_mode, Scratch};

use super::direct_qemu_aarch64;

/// Source of `fds` (`fds.c`), an aarch64 program built here with the cross
/// C compiler: it writes to the file named by argv[1] what its descriptors
/// 0, 1 and 2 are — `-` closed, `p` the program's own file, `n` /dev/null,
/// `f` /dev/full, `o` anything else — then its euid: `-oo euid=0`.
const FDS_C: &str = include_str!("fds.c");

/// Compiles `fds` (see [`FDS_C`]) for aarch64, statically, to `out`.
fn fds_program(out: &Path) {
    compile_c("aarch64-linux-gnu-gcc", FDS_C, out);
}

/// How a caller leaves the standard descriptors (the sandbox's stdin is
/// /dev/null, `cap` sends stdout and stderr to files), and what a program
/// must see: `-` closed, `n` /dev/null, `o` a file — never `p`, its own
/// file. A setuid program's C library (glibc, qemu's and the program's own,
/// both in secure mode) opens each closed one, as it does natively:
/// /dev/full for stdin, /dev/null for stdout and stderr ([`secure_seen`]).
const STDIO_CASES: [(&str, &str, &str); 5] = [
    ("open", "", "noo"),
    ("no-stdin", "<&-", "-oo"),
    ("none", "<&- >&- 2>&-", "---"),
    ("no-stdout", ">&-", "n-o"),
    ("no-stderr", "2>&-", "no-"),
];

/// What a setuid program sees where the caller left `seen`: glibc in
/// secure mode opens /dev/full on a closed stdin and /dev/null on a closed
/// stdout or stderr.
fn secure_seen(seen: &str) -> String {
    seen.chars()
        .enumerate()
        .map(|(fd, c)| match (fd, c) {
            (0, '-') => 'f',
            (_, '-') => 'n',
            (_, c) => c,
        })
        .collect()
}

#[test]
fn a_closed_stdin_never_lets_qemu_reopen_the_program_by_path_issue_10() {
    // The kernel puts the program's descriptor (AT_EXECFD) on the lowest
    // free fd: 0 when the caller closed stdin. qemu takes AT_EXECFD == 0
    // for "none" and opens the program by path — for a setuid program with
    // its credentials, a path the caller can swap (measured: 111 of 400
    // runs of the caller's own program as root). Execute-only programs
    // show it deterministically: qemu cannot open them by path.
    let s = Scratch::new("execfd");
    fs::create_dir(s.join("prot")).unwrap();
    fs::create_dir(s.join("out")).unwrap();
    std::os::unix::fs::chown(s.join("out"), Some(65534), Some(65534)).unwrap();
    let (xonly, suid, plain) = (
        s.join("prot/xonly"),
        s.join("prot/suid"),
        s.join("prot/plain"),
    );
    fds_program(&plain);
    fs::copy(&plain, &xonly).unwrap();
    fs::copy(&plain, &suid).unwrap();
    set_mode(&xonly, 0o711);
    set_mode(&suid, 0o4711);
    set_mode(&plain, 0o755);
    let runs = |tag: &str, prog: &str| -> String {
        STDIO_CASES
            .iter()
            .map(|(case, redir, _)| {
                format!(
                    "cap {tag}-{case} nobody sh -c 'exec \"$0\" \"$1\" {redir}' \
                     \"$S/prot/{prog}\" \"$S/out/{tag}-{case}\"\n"
                )
            })
            .collect()
    };
    let direct = direct_qemu_aarch64("POCF");
    sandbox_full_map(
        &s,
        &format!(
            r#"
install() {{ install_shim aarch64 "$@"; }}
trace() {{
	strace -f -u nobody -o "$S/out/$1.trace" -e trace=execve,open,openat,openat2 \
		sh -c 'exec "$0" "$1" <&-' "$S/prot/suid" "$S/out/$1"
}}
cap install install
{carried_x}{carried_s}cap trace-carried trace trace-carried
cap install-prelink-off install --no-prelink
{noprelink_s}cap trace-noprelink trace trace-noprelink
cap install-nocarry install --no-carry
{nocarry}"$CLI" uninstall --install-dir "$S/inst" >/dev/null
# For comparison, qemu registered directly as Debian does (POCF).
printf '%s' '{direct}' >/proc/sys/fs/binfmt_misc/register
cap direct-no-stdin nobody sh -c 'exec "$0" "$1" <&-' "$S/prot/xonly" "$S/out/direct"
"#,
            carried_x = runs("xonly", "xonly"),
            carried_s = runs("suid", "suid"),
            noprelink_s = runs("suid-noprelink", "suid"),
            nocarry = runs("nocarry", "plain"),
        ),
    );
    for step in ["install", "install-prelink-off", "install-nocarry"] {
        assert_eq!(s.cap(step).rc, 0, "{}", s.cap(step));
    }
    // Every program ran and saw the standard descriptors exactly as its
    // caller left them: closed stays closed, and none is the program file.
    for (tag, euid) in [
        ("xonly", 65534),
        ("suid", 0),
        ("suid-noprelink", 0),
        ("nocarry", 65534),
    ] {
        for (case, _, seen) in STDIO_CASES {
            let seen = if euid == 0 {
                secure_seen(seen)
            } else {
                seen.to_owned()
            };
            let name = format!("{tag}-{case}");
            let c = s.cap(&name);
            let report = fs::read_to_string(s.join(&format!("out/{name}"))).unwrap_or_default();
            assert_eq!(
                (c.rc, report.as_str()),
                (0, format!("{seen} euid={euid}\n").as_str()),
                "{name}: the program did not run, or saw other descriptors or credentials:\n{c}"
            );
        }
    }
    // With stdin closed, nothing opens the setuid program by its path: not
    // the interpreter, not qemu (pre-relocated or moved to a random
    // address for the setuid exec).
    let suid_path = format!("\"{}\"", suid.display());
    for name in ["trace-carried", "trace-noprelink"] {
        let c = s.cap(name);
        let report = fs::read_to_string(s.join(&format!("out/{name}"))).unwrap_or_default();
        assert_eq!(
            (c.rc, report.as_str()),
            (0, "foo euid=0\n"),
            "{name}: the setuid program did not run under strace as root:\n{c}"
        );
        let trace = fs::read_to_string(s.join(&format!("out/{name}.trace"))).unwrap();
        assert!(
            trace.contains("execve("),
            "{name}: strace saw nothing:\n{trace}"
        );
        let opened: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("open") && l.contains(&suid_path))
            .collect();
        assert!(
            opened.is_empty(),
            "{name}: the setuid program was opened by path: {opened:#?}"
        );
    }
    // Documented, not asserted: Debian's own registration has the hole.
    eprintln!(
        "qemu registered directly with POCF, execute-only program, stdin closed: exit {}",
        s.cap("direct-no-stdin").rc
    );
}
