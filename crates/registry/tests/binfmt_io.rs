//! binfmt_misc I/O and the register-line parser checked against the real kernel, in private instances.
//!
//! Each `#[test]` here spawns this same test binary inside a new user and
//! mount namespace (`unshare --user --map-root-user --mount`, Linux >= 6.7)
//! to run one `#[ignore]`d `inside_*` test there, once a new binfmt_misc
//! instance is mounted there and proven private and empty
//! (tests/private-binfmt.sh): the host's table is never read or changed,
//! whether or not the host has binfmt_misc mounted, and the tests can run
//! in parallel. (The test harness is multithreaded and cannot unshare a
//! user namespace itself.) The `inside_*` tests refuse to run anywhere but
//! in such an instance.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_shim_registry::binfmt::{Binfmt, ErrorKind, DEFAULT_ROOT};
use qemu_shim_registry::format::{Flags, Kind, ParseErrorKind, RegisterLine};

#[path = "../src/test_support.rs"]
#[allow(dead_code)] // qemu() is for the unit tests
mod test_support;
use test_support::{assert_in_private_instance, run_in_private_instance};

/// Runs the ignored test `name` of this binary under `wrapper` (a command
/// and its arguments), with `env` set, and fails with its output unless
/// exactly that one test ran and passed.
fn run_wrapped(wrapper: &[&str], name: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("path of this test binary");
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(&exe)
        .args(["--exact", name, "--ignored", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", wrapper[0]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A filter that matches nothing also exits 0: insist the test ran.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} under {wrapper:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Runs the ignored test `name` of this binary in a private binfmt_misc
/// instance ([`run_in_private_instance`]).
fn run_inside(name: &str) {
    run_in_private_instance(&format!("{}::{name}", module_path!()));
}

/// The private binfmt_misc instance this test was started in, at the
/// default root, still empty. Panics anywhere else: the tests below
/// register entries, which must never reach the host's table.
fn private_table() -> Binfmt {
    assert_in_private_instance();
    let table = Binfmt::new(DEFAULT_ROOT);
    assert!(
        table.list().unwrap().is_empty(),
        "the private binfmt_misc instance is not empty"
    );
    table
}

/// How many mounts sit on the default root in this mount namespace.
fn mounts_on_default_root() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(DEFAULT_ROOT))
        .count()
}

/// Writes `line` to `register` in one `write()`, returning the errno on failure.
fn register_raw(line: &[u8]) -> Result<(), i32> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(Path::new(DEFAULT_ROOT).join("register"))
        .expect("open register");
    match f.write(line) {
        Ok(n) if n == line.len() => Ok(()),
        Ok(n) => panic!("register took {n} of {} bytes", line.len()),
        Err(e) => Err(e.raw_os_error().expect("an errno")),
    }
}

fn names(table: &Binfmt) -> Vec<String> {
    table.list().unwrap().into_iter().map(|(n, _)| n).collect()
}

fn magic_line(name: &str, magic: &[u8], interpreter: &str) -> RegisterLine {
    RegisterLine {
        name: name.into(),
        kind: Kind::Magic {
            offset: 0,
            magic: magic.to_vec(),
            mask: None,
        },
        interpreter: interpreter.into(),
        flags: Flags::NONE,
    }
}

/// A scratch directory for this test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// Match order

#[test]
fn list_order_is_the_kernels_match_order() {
    run_inside("inside_list_order");
}

#[test]
#[ignore = "runs inside a private namespace via list_order_is_the_kernels_match_order"]
fn inside_list_order() {
    let table = private_table();
    for n in ["A", "B", "C"] {
        table
            .register(&magic_line(n, format!("\x7fQQ{n}").as_bytes(), "/bin/true"))
            .unwrap();
    }
    assert_eq!(names(&table), ["C", "B", "A"]);
    table.remove("B").unwrap();
    assert_eq!(names(&table), ["C", "A"]);
    table
        .register(&magic_line("B", b"\x7fQQB", "/bin/true"))
        .unwrap();
    assert_eq!(names(&table), ["B", "C", "A"]);
    // Looking up a name before registering it must not move it: the
    // kernel drops failed lookups on binfmt_misc.
    assert_eq!(table.read("D").unwrap(), None);
    table
        .register(&magic_line("E", b"\x7fQQE", "/bin/true"))
        .unwrap();
    table
        .register(&magic_line("D", b"\x7fQQD", "/bin/true"))
        .unwrap();
    assert_eq!(names(&table), ["D", "E", "B", "C", "A"]);
}

#[test]
fn winner_is_the_entry_the_kernel_runs() {
    run_inside("inside_winner");
}

#[test]
#[ignore = "runs inside a private namespace via winner_is_the_entry_the_kernel_runs"]
fn inside_winner() {
    let table = private_table();
    let dir = scratch("winner");
    // Interpreters that say who they are; a program both entries match.
    for who in ["old", "new"] {
        let path = dir.join(who);
        fs::write(&path, format!("#!/bin/sh\necho {who}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let prog = dir.join("prog");
    fs::write(&prog, b"\x7fQQprogram").unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
    let header = fs::read(&prog).unwrap();
    let ran = || -> Option<String> {
        let out = Command::new(&prog).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let winner = || table.winner(&header).unwrap().map(|(n, _)| n);

    let interp = |who: &str| dir.join(who).to_str().unwrap().to_owned();
    table
        .register(&magic_line("old", b"\x7fQQ", &interp("old")))
        .unwrap();
    table
        .register(&magic_line("new", b"\x7fQ", &interp("new")))
        .unwrap();
    assert_eq!(winner().as_deref(), Some("new"));
    assert_eq!(ran().as_deref(), Some("new"));

    table.set_enabled("new", false).unwrap();
    assert!(!table.read("new").unwrap().unwrap().enabled);
    assert_eq!(winner().as_deref(), Some("old"));
    assert_eq!(ran().as_deref(), Some("old"));

    table.set_enabled("new", true).unwrap();
    fs::write(Path::new(DEFAULT_ROOT).join("status"), "0").unwrap();
    assert!(!table.status_enabled().unwrap());
    assert_eq!(winner(), None);
    assert_eq!(
        ran(),
        None,
        "the kernel ran the program with the table disabled"
    );
    fs::write(Path::new(DEFAULT_ROOT).join("status"), "1").unwrap();
    assert!(table.status_enabled().unwrap());
    assert_eq!(winner().as_deref(), Some("new"));
}

// ---------------------------------------------------------------------------
// Errors from the real kernel

#[test]
fn io_errors_have_the_right_kind() {
    run_inside("inside_io_errors");
}

#[test]
#[ignore = "runs inside a private namespace via io_errors_have_the_right_kind"]
fn inside_io_errors() {
    let table = private_table();
    // A directory with no binfmt_misc on it. (Not the default root of a
    // new namespace: that shows the host's instance where the host has one
    // mounted.)
    let bare = Binfmt::new(scratch("not-mounted"));
    assert!(!bare.is_mounted());
    assert_eq!(bare.list().unwrap_err().kind(), ErrorKind::NotMounted);
    assert!(table.status_enabled().unwrap());
    // On a mounted root, mount_default does nothing: no second mount.
    let mounts = mounts_on_default_root();
    assert!(mounts >= 1);
    Binfmt::mount_default().expect("mounting a mounted root is a no-op");
    assert_eq!(
        mounts_on_default_root(),
        mounts,
        "mount_default mounted again"
    );

    let line = magic_line("dup", b"\x7fQQ", "/bin/true");
    table.register(&line).unwrap();
    let e = table.register(&line).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exists, "{e}");
    assert!(e.to_string().contains("\"dup\""), "{e}");
    assert_eq!(
        table.read("dup").unwrap(),
        Some(line.expected_entry()),
        "the entry reads back as the line said"
    );

    assert_eq!(
        table.remove("absent").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        table.set_enabled("absent", true).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    table.remove("dup").unwrap();
    assert_eq!(table.read("dup").unwrap(), None);

    // F: the kernel opens the interpreter at registration.
    let mut missing = magic_line("f", b"\x7fQQ", "/no/such/interpreter");
    missing.flags = Flags::F;
    let e = table.register(&missing).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("/no/such/interpreter"), "{e}");

    // The same instance mounted read-only elsewhere.
    let ro = scratch("ro-mount");
    nix::mount::mount(
        Some("binfmt_misc"),
        &ro,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let e = Binfmt::new(&ro).register(&line).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
    assert!(e.to_string().contains(ro.to_str().unwrap()), "{e}");
}

#[test]
fn not_root_is_permission_denied() {
    // A root that only root may write, used as user nobody.
    let dir = scratch("not-root");
    fs::write(dir.join("register"), "").unwrap();
    fs::write(dir.join("status"), "enabled\n").unwrap();
    fs::set_permissions(dir.join("register"), fs::Permissions::from_mode(0o200)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: run the check here.
        check_permission_denied(&dir);
        return;
    }
    run_wrapped(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        "inside_not_root",
        &[("QEMU_SHIM_REGISTRY_TEST_ROOT", dir.to_str().unwrap())],
    );
}

#[test]
#[ignore = "runs as user nobody via not_root_is_permission_denied"]
fn inside_not_root() {
    assert!(!nix::unistd::geteuid().is_root(), "must run unprivileged");
    let dir = std::env::var("QEMU_SHIM_REGISTRY_TEST_ROOT").expect("root from the caller");
    check_permission_denied(Path::new(&dir));
}

fn check_permission_denied(root: &Path) {
    let e = Binfmt::new(root)
        .register(&magic_line("x", b"\x7fQQ", "/bin/true"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("run as root"), "{e}");
}

// ---------------------------------------------------------------------------
// The parser against the kernel

/// Register lines at the edges of the kernel's parser. Every one is
/// written to the kernel and parsed by `RegisterLine::from_str`; both must
/// agree (see `inside_kernel_agrees_with_from_str`).
fn edge_cases() -> Vec<String> {
    let g = r"\x7fQQ";
    let mut cases: Vec<String> = [
        // Trailing newline and flags.
        format!(":a:M::{g}::/bin/true:"),
        format!(":a:M::{g}::/bin/true:\n"),
        format!(":a:M::{g}::/bin/true:\n\n"),
        format!(":a:M::{g}::/bin/true"),
        format!(":a:M::{g}::/bin/true:X"),
        format!(":a:M::{g}::/bin/true:p"),
        format!(":a:M::{g}::/bin/true:PP"),
        format!(":a:M::{g}::/bin/true:P\nP"),
        format!(":a:M::{g}::/bin/true: "),
        format!(":a:M::{g}::/bin/true:P:"),
        format!(":a:M::{g}::/bin/true:FCOP"),
        format!(":a:M::{g}::/bin/true:CF"),
        format!(":a:M::{g}::/bin/true:F\n"),
        // Names.
        format!("::M::{g}::/bin/true:"),
        format!(":.:M::{g}::/bin/true:"),
        format!(":..:M::{g}::/bin/true:"),
        format!(":...:M::{g}::/bin/true:"),
        format!(":a/b:M::{g}::/bin/true:"),
        format!(":register:M::{g}::/bin/true:"),
        format!(":status:M::{g}::/bin/true:"),
        format!(":{}:M::{g}::/bin/true:", "n".repeat(255)),
        format!(":{}:M::{g}::/bin/true:", "n".repeat(256)),
        format!(":a b:M::{g}::/bin/true:"),
        format!(":a\nb:M::{g}::/bin/true:"),
        format!(":a\0b:M::{g}::/bin/true:"),
        // Types.
        format!(":a:X::{g}::/bin/true:"),
        format!(":a:MM::{g}::/bin/true:"),
        format!(":a:m::{g}::/bin/true:"),
        format!(":a:::{g}::/bin/true:"),
        // Offsets.
        format!(":a:M:0:{g}::/bin/true:"),
        format!(":a:M:+5:{g}::/bin/true:"),
        format!(":a:M:-0:{g}::/bin/true:"),
        format!(":a:M:-1:{g}::/bin/true:"),
        format!(":a:M:+-1:{g}::/bin/true:"),
        format!(":a:M:-+0:{g}::/bin/true:"),
        format!(":a:M:5\n:{g}::/bin/true:"),
        format!(":a:M: 5:{g}::/bin/true:"),
        format!(":a:M:5 :{g}::/bin/true:"),
        format!(":a:M:0x10:{g}::/bin/true:"),
        format!(":a:M:007:{g}::/bin/true:"),
        r":a:M:255:\x41::/bin/true:".into(),
        r":a:M:256:\x41::/bin/true:".into(),
        r":a:M:2147483647:\x41::/bin/true:".into(),
        r":a:M:2147483648:\x41::/bin/true:".into(),
        r":a:M:99999999999999999999:\x41::/bin/true:".into(),
        // Magic.
        ":a:M::::/bin/true:".into(),
        r":a:M::\x::/bin/true:".into(),
        r":a:M::\x4::/bin/true:".into(),
        r":a:M::\x4g::/bin/true:".into(),
        r":a:M::\xzz::/bin/true:".into(),
        r":a:M::\X41::/bin/true:".into(),
        r":a:M::abc::/bin/true:".into(),
        r":a:M::\\x41::/bin/true:".into(),
        r":a:M::\\xzz::/bin/true:".into(),
        r":a:M::\n\t::/bin/true:".into(),
        r":a:M::ab\::/bin/true:".into(),
        r":a:M::\x3a\x3A::/bin/true:".into(),
        r":a:M::\x00::/bin/true:".into(),
        ":a:M::a\0b::/bin/true:".into(),
        ":a:M::\0ab::/bin/true:".into(),
        format!(":a:M::A{}::/bin/true:", "B".repeat(255)),
        format!(":a:M::A{}::/bin/true:", "B".repeat(256)),
        format!(":a:M:1:A{}::/bin/true:", "B".repeat(255)),
        // Mask.
        r":a:M::\x41\x42:\xff::/bin/true:".into(),
        r":a:M::\x41\x42:\xff\xff\xff::/bin/true:".into(),
        r":a:M::\x41\x42:\xff\x0f:/bin/true:".into(),
        r":a:M::\x41\x42:zz:/bin/true:".into(),
        ":a:M::\\x41\\x42:\\xff\0zz:/bin/true:".into(),
        ":a:M::\\x41\\x42:\0zz:/bin/true:".into(),
        r":a:M::\x41\x42:\x:/bin/true:".into(),
        // Extensions.
        ":a:E::exe::/bin/true:".into(),
        ":a:E::.exe::/bin/true:".into(),
        ":a:E::::/bin/true:".into(),
        ":a:E::a/b::/bin/true:".into(),
        ":a:E:junk:exe:junk:/bin/true:".into(),
        r":a:E::\x41::/bin/true:".into(),
        ":a:E::e\0x::/bin/true:".into(),
        ":a:E::exe::/bin/true:CF".into(),
        // Interpreter.
        format!(":a:M::{g}:::"),
        format!(":a:M::{g}::/no/such/interp:"),
        format!(":a:M::{g}::/opt/x y/z:"),
        format!(":a:M::{g}::/bin/tr\0ue:"),
        format!(":a:M::{g}:::/bin/true:"),
        // Delimiters.
        format!("|a|M||{g}||/bin/true|"),
        format!("|a:b|M||{g}||/bin/true|P"),
        r"xaxMxx\x41xx/bin/truex".into(),
        "\0a\0M\0\0\\x41\0\0/bin/true\0".into(),
        // Lengths.
        ":a:E::e::/:".into(),
        ":a:E::e::/".into(),
    ]
    .into();
    let head = format!(":a:M::{g}::");
    for len in [1920, 1921] {
        let interp = "/".repeat(len - head.len() - 1);
        cases.push(format!("{head}{interp}:"));
    }
    cases
}

/// xorshift64*: a fixed sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick(&mut self, list: &[&'static str]) -> &'static str {
        list[self.below(list.len())]
    }

    /// Mostly (3 in 4) the first item, the usual valid choice.
    fn pick_valid(&mut self, list: &[&'static str]) -> &'static str {
        if self.below(4) == 0 {
            self.pick(list)
        } else {
            list[0]
        }
    }
}

/// Pseudo-random register lines built from fragments the parser treats
/// specially (fixed seed: the same lines on every run).
fn random_cases(count: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Valid choices come first and are picked more often (`Rng::pick_valid`).
    const DELIMS: &[&str] = &[":", "|", "x", "\\", "1", "P", "\n"];
    const NAMES: &[&str] = &[
        "a", "a b", "a\nb", "...", "", ".", "..", "a/b", "register", "a\0b",
    ];
    const TYPES: &[&str] = &["M", "E", "X", "", "MM"];
    const OFFSETS: &[&str] = &[
        "",
        "0",
        "5",
        "+5",
        "-0",
        "255",
        "5\n",
        "-1",
        "256",
        " 5",
        "0x1",
        "2147483648",
    ];
    const MAGICS: &[&str] = &[
        "\\x41",
        "\\x7fQQ",
        "ab\\",
        "\\\\x41",
        "a\0b",
        "\\x00",
        "\\X41",
        "\\x41\\x42",
        "\\x3a",
        "",
        "\\x",
        "\\x4",
        "\\xzz",
        "\0a",
    ];
    const MASKS: &[&str] = &[
        "",
        "\\xff",
        "zz",
        "\0zz",
        "\\xff\\xff",
        "\\x",
        "\\xff\0",
        "\\x0f\\xf0",
    ];
    const INTERPS: &[&str] = &["/bin/true", "/x y", "a:b", "", "/bin/tr\0ue"];
    const FLAGS: &[&str] = &[
        "", "P", "F", "CF", "POCF", "PP", "P\n", "X", "p", "\n\n", " ",
    ];
    const NOISE: &[&str] = &[":", "\\", "x", "\\x4", "\n", "\0", "P", "/", "9", "|"];
    (0..count)
        .map(|_| {
            let d = rng.pick_valid(DELIMS);
            let fields = [
                rng.pick_valid(NAMES),
                rng.pick_valid(TYPES),
                rng.pick_valid(OFFSETS),
                rng.pick_valid(MAGICS),
                rng.pick_valid(MASKS),
                rng.pick_valid(INTERPS),
            ];
            let mut line = String::from(d);
            for f in fields {
                line.push_str(f);
                line.push_str(d);
            }
            line.push_str(rng.pick_valid(FLAGS));
            // Sometimes drop or insert a character somewhere.
            match rng.pick(&["keep", "keep", "drop", "insert"]) {
                "drop" if !line.is_empty() => {
                    let at = rng.below(line.len());
                    line.remove(at);
                }
                "insert" => {
                    let at = rng.below(line.len() + 1);
                    line.insert_str(at, rng.pick(NOISE));
                }
                _ => {}
            }
            line
        })
        .collect()
}

#[test]
fn kernel_agrees_with_from_str() {
    run_inside("inside_kernel_agrees_with_from_str");
}

#[test]
#[ignore = "runs inside a private namespace via kernel_agrees_with_from_str"]
fn inside_kernel_agrees_with_from_str() {
    let table = private_table();
    let mut accepted = 0;
    let cases: Vec<String> = edge_cases().into_iter().chain(random_cases(5000)).collect();
    for text in &cases {
        let ours = text.parse::<RegisterLine>();
        let kernel = register_raw(text.as_bytes());
        // EINVAL is the parser; EEXIST and ENAMETOOLONG are the name
        // ("register", "status", > 255 bytes), which from_str refuses too.
        // Any other error is F's interpreter failing to open: the line
        // parsed, but the kernel opens the interpreter before it looks at
        // the name, so from_str may still refuse the name.
        match kernel {
            Ok(()) => assert!(ours.is_ok(), "{text:?}: kernel accepted, from_str {ours:?}"),
            Err(nix::libc::EINVAL | nix::libc::EEXIST | nix::libc::ENAMETOOLONG) => {
                assert!(
                    ours.is_err(),
                    "{text:?}: kernel {kernel:?}, from_str {ours:?}"
                )
            }
            Err(_) => assert!(
                ours.as_ref().map_or_else(
                    |e| e.kind() == ParseErrorKind::Name,
                    |l| l.flags.contains(Flags::F)
                ),
                "{text:?}: kernel {kernel:?}, from_str {ours:?}"
            ),
        }
        if kernel.is_ok() {
            accepted += 1;
            let line = ours.unwrap();
            let listed = table.list().unwrap();
            assert_eq!(listed.len(), 1, "{text:?}");
            let (name, entry) = &listed[0];
            assert_eq!(name, &line.name, "{text:?}");
            // An interpreter or extension holding a newline cannot be read
            // back (the entry file is line-based); everything else must.
            let newline = match &line.kind {
                Kind::Extension(e) => e.contains('\n'),
                Kind::Magic { .. } => false,
            } || line.interpreter.contains('\n');
            if !newline {
                assert_eq!(
                    entry,
                    &line.expected_entry(),
                    "{text:?} reads back differently"
                );
            }
            table.remove(name).unwrap();
            // What Display writes registers the same entry again, unless
            // escaping every magic byte makes it longer than the kernel
            // takes (the 1920-byte edge case).
            match line.validate() {
                Err(e) if e.kind() == ParseErrorKind::Length && text.len() > 1900 => continue,
                Err(e) => panic!("{text:?} parsed but does not validate: {e}"),
                Ok(()) => {}
            }
            table.register(&line).unwrap();
            assert_eq!(table.read(name).unwrap().as_ref(), Some(entry), "{line}");
            table.remove(name).unwrap();
        }
    }
    // The cases must exercise both sides.
    assert!(
        accepted > 50 && accepted < cases.len() - 50,
        "{accepted} of {} accepted",
        cases.len()
    );
}

// ---------------------------------------------------------------------------
// Native probing ignores the caller's table

#[test]
fn probe_is_not_answered_by_an_existing_entry() {
    run_inside("inside_probe_ignores_existing_entry");
}

#[test]
#[ignore = "runs inside a private namespace via probe_is_not_answered_by_an_existing_entry"]
fn inside_probe_ignores_existing_entry() {
    use qemu_shim_registry::{arch, probe};
    let table = private_table();
    let Some(host) = probe::host_arch() else {
        panic!("this host's arch is not in the arch table")
    };
    // An entry for every probed arch, as a distro's qemu-user-binfmt would
    // have, whose interpreter exits 1: if it answered, no probe would
    // report a native arch.
    for row in arch::ARCHES.iter().filter(|a| a.name != host.name) {
        table
            .register(&RegisterLine {
                name: format!("distro-{}", row.name),
                kind: Kind::Magic {
                    offset: row.offset,
                    magic: row.magic.to_vec(),
                    mask: Some(row.mask.to_vec()),
                },
                interpreter: "/bin/false".into(),
                flags: Flags::NONE,
            })
            .unwrap();
    }
    let dir = scratch("probe-existing");
    let report = probe::probe_in(&dir).unwrap();
    assert_eq!(
        report.method,
        probe::Method::PrivateInstance,
        "{:?}",
        report.note
    );
    let native: Vec<&str> = report.native().iter().map(|a| a.name).collect();
    if host.name == "x86_64" {
        assert_eq!(native, ["x86_64", "i386", "i486"], "{report:#?}");
        // The entries do answer outside the probe's instance.
        let p = dir.join("i386-here");
        fs::write(&p, probe::exit_program("i386").unwrap()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let st = Command::new(&p).status().unwrap();
        assert_eq!(
            st.code(),
            Some(1),
            "the distro-i386 entry (/bin/false) ran it"
        );
    }
    // And the table the probe ran beside is untouched.
    assert_eq!(names(&table).len(), arch::ARCHES.len() - 1);
}
