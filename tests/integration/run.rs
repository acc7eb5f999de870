//! `qemu-shim run` on the real kernel, as a real unprivileged user (host
//! uid 65534, no capabilities, HOME a scratch directory): foreign programs
//! run in a private binfmt_misc instance, the exit status and death by a
//! signal pass through, the cached interpreter file is reused until an
//! emulator changes, and the host's table is never touched. Also
//! `install --config`, the per-arch emulator choice of the same issue.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use qemu_shim_suite::{
    as_nobody, busybox, cli, emulator_dir, give_to_nobody, sandbox_caps, stderr, stdout,
    userns_env, As, Scratch, PRIVATE_BINFMT_SH,
};

/// A scratch dir with `emus/` (copies of the aarch64 and s390x emulators
/// only: the cached file stays small), `bin/busybox` (arm64, with an
/// `uname` link: busybox picks its applet by argv0), `bin/bb-s390x/busybox`
/// `home/` owned by nobody, and `no-config.toml`, empty: every `run` here
/// names it (or another) with `--config`, so no test reads the host's
/// /etc/qemu-shim/config.toml.
fn setup(tag: &str) -> Scratch {
    let s = Scratch::new(tag);
    fs::create_dir(s.join("emus")).unwrap();
    for name in ["qemu-aarch64-static", "qemu-s390x-static"] {
        fs::copy(emulator_dir().join(name), s.join("emus").join(name)).unwrap();
    }
    fs::create_dir_all(s.join("bin/bb-s390x")).unwrap();
    fs::copy(busybox("arm64"), s.join("bin/busybox")).unwrap();
    fs::copy(busybox("s390x"), s.join("bin/bb-s390x/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", s.join("bin/uname")).unwrap();
    fs::create_dir(s.join("home")).unwrap();
    give_to_nobody(&s.join("home"));
    fs::write(s.join("no-config.toml"), "").unwrap();
    s
}

/// `qemu-shim run --emulator-dir emus [--config no-config.toml] ARGS…` as
/// host uid 65534 without any capability, with HOME the scratch home, in
/// the scratch dir. The empty config goes in unless ARGS name one.
fn run_as_nobody(s: &Scratch, args: &[&str]) -> Output {
    let mut nobody = as_nobody();
    nobody.arg(cli());
    run_with(s, nobody, &s.join("home"), args)
}

/// As [`run_as_nobody`], but as the caller (root, in CI) with HOME `home`.
fn run_as_caller(s: &Scratch, home: &Path, args: &[&str]) -> Output {
    run_with(s, Command::new(cli()), home, args)
}

/// Appends `run --emulator-dir emus [--config no-config.toml] ARGS…` to
/// `cmd` (the CLI, or a wrapper then the CLI) and runs it in the scratch
/// dir with a clean environment and HOME `home`.
fn run_with(s: &Scratch, mut cmd: Command, home: &Path, args: &[&str]) -> Output {
    let own_config = args
        .iter()
        .take_while(|a| **a != "--")
        .any(|a| *a == "--config");
    cmd.arg("run")
        .arg("--emulator-dir")
        .arg(s.join("emus"))
        .args(
            (!own_config)
                .then(|| ["--config".into(), s.join("no-config.toml")])
                .into_iter()
                .flatten(),
        )
        .args(args)
        .current_dir(s.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("spawn qemu-shim")
}

/// The cached interpreter file for the arch set `set` (`""`: every
/// foreign arch, as for a native program; `"aarch64"`: an arm64 program's).
fn cached(s: &Scratch, set: &str) -> PathBuf {
    let name = match set {
        "" => "qemu-shim-interp".to_string(),
        set => format!("qemu-shim-interp.{set}"),
    };
    s.join("home/.cache/qemu-shim").join(name)
}

/// The host's binfmt_misc directory as seen from here: its entry names, or
/// that it is not mounted.
fn host_table() -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir("/proc/sys/fs/binfmt_misc") {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => vec![format!("unreadable: {e}")],
    };
    v.sort();
    v
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

#[test]
fn foreign_programs_run_as_the_caller_and_the_status_passes_through() {
    let s = setup("run-basic");
    let before = host_table();
    let o = run_as_nobody(
        &s,
        &[
            "--",
            "sh",
            "-c",
            "id -u; id -g; bin/uname -m; bin/bb-s390x/busybox uname -m; \
             grep -h flags /proc/sys/fs/binfmt_misc/qemu-shim-aarch64; exit 7",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", show(&o));
    assert_eq!(
        stdout(&o),
        "65534\n65534\naarch64\ns390x\nflags: POF\n",
        "{}",
        show(&o)
    );
    // The interpreter file is cached in the caller's home, theirs.
    let m = fs::metadata(cached(&s, "")).expect("cached interpreter file");
    assert_eq!(m.uid(), 65534);
    assert_eq!(host_table(), before, "the host's table changed");
}

/// With a populated "host" table (a private instance standing in for the
/// host's, with an entry of another tool), `run` neither sees nor changes
/// it, and the program sees only `run`'s own entries.
#[test]
fn a_populated_outer_table_is_untouched_and_unseen() {
    let s = setup("run-outer");
    let script = format!(
        r#"{PRIVATE_BINFMT_SH}
printf ':other-tool:M::QSHIMTEST::/bin/true:' >/proc/sys/fs/binfmt_misc/register
ls /proc/sys/fs/binfmt_misc >"{s}/before"
{cli} run --emulator-dir "{s}/emus" --config "{s}/no-config.toml" -- sh -c 'ls /proc/sys/fs/binfmt_misc; bin/uname -m' >"{s}/inside"
ls /proc/sys/fs/binfmt_misc >"{s}/after"
cat /proc/sys/fs/binfmt_misc/other-tool >"{s}/other""#,
        s = s.path().display(),
        cli = cli().display()
    );
    fs::create_dir(s.join("root-home")).unwrap();
    let o = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--",
            "sh",
            "-eu",
            "-c",
        ])
        .arg(&script)
        .envs(userns_env())
        .env("HOME", s.join("root-home"))
        .current_dir(s.path())
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare");
    assert!(o.status.success(), "{}", show(&o));
    let read = |n: &str| fs::read_to_string(s.join(n)).unwrap();
    assert_eq!(read("before"), "other-tool\nregister\nstatus\n");
    assert_eq!(read("after"), read("before"));
    assert!(read("other").starts_with("enabled\ninterpreter /bin/true\n"));
    let inside = read("inside");
    assert!(!inside.contains("other-tool"), "{inside}");
    assert!(
        inside.contains("qemu-shim-aarch64\nqemu-shim-s390x\nregister\nstatus\naarch64\n"),
        "{inside}"
    );
}

#[test]
fn death_by_a_signal_passes_through() {
    let s = setup("run-signal");
    // The emulated shell kills itself: its death is the caller's to see.
    let o = run_as_nobody(&s, &["--", "bin/busybox", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(o.status.signal(), Some(15), "{}", show(&o));
    // And a shell reports it as 128+N.
    let line = format!(
        "{} run --emulator-dir {} --config no-config.toml -- bin/busybox sh -c 'kill -KILL $$'; echo \"status $?\"",
        cli().display(),
        s.join("emus").display()
    );
    let o = run_as_nobody_sh(&s, &line);
    assert!(stdout(&o).contains("status 137"), "{}", show(&o));
}

/// `sh -c LINE` as nobody, as [`run_as_nobody`] does for the CLI.
fn run_as_nobody_sh(s: &Scratch, line: &str) -> Output {
    as_nobody()
        .args(["sh", "-c", line])
        .current_dir(s.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", s.join("home"))
        .stdin(Stdio::null())
        .output()
        .expect("spawn setpriv")
}

fn identity(p: &Path) -> (u64, i64, i64) {
    let m = fs::metadata(p).expect("cached interpreter file");
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[test]
fn the_cached_interpreter_is_reused_until_an_emulator_changes() {
    let s = setup("run-cache");
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    let first = identity(&cached(&s, "aarch64"));
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    assert_eq!(
        identity(&cached(&s, "aarch64")),
        first,
        "rebuilt with nothing changed"
    );

    // An upgraded emulator (here: a new modification time) is picked up.
    let emu = s.join("emus/qemu-aarch64-static");
    let f = fs::File::options().write(true).open(&emu).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    assert_ne!(
        identity(&cached(&s, "aarch64")),
        first,
        "not rebuilt for a changed emulator"
    );

    // An emulator removed: its arch is no longer registered, the file is
    // rebuilt without it.
    fs::remove_file(s.join("emus/qemu-s390x-static")).unwrap();
    let o = run_as_nobody(&s, &["--", "sh", "-c", "ls /proc/sys/fs/binfmt_misc"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(stdout(&o).contains("qemu-shim-aarch64"), "{}", show(&o));
    assert!(!stdout(&o).contains("qemu-shim-s390x"), "{}", show(&o));
}

#[test]
fn a_program_that_cannot_start_exits_126_or_127_with_one_line() {
    let s = setup("run-errors");
    let o = run_as_nobody(&s, &["--", "./no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", show(&o));
    assert!(
        stderr(&o).starts_with("qemu-shim: error: cannot run ./no-such-program: "),
        "{}",
        show(&o)
    );
    fs::write(s.join("not-exec"), "data").unwrap();
    fs::set_permissions(s.join("not-exec"), fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_as_nobody(&s, &["--", "./not-exec"]);
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));
}

#[test]
fn disabled_user_namespaces_are_named_and_exit_125() {
    let s = setup("run-nouserns");
    // user.max_user_namespaces is per user namespace: set to 0 in a
    // throwaway one, it disables them for what runs inside only.
    let line = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run --emulator-dir {} --config no-config.toml -- true",
        cli().display(),
        s.join("emus").display()
    );
    fs::create_dir(s.join("root-home")).unwrap();
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "--", "sh", "-c", &line])
        .env("HOME", s.join("root-home"))
        .current_dir(s.path())
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare");
    assert_eq!(o.status.code(), Some(125), "{}", show(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{}", show(&o));
    assert!(err.contains("user namespaces are disabled"), "{}", show(&o));
    assert!(err.contains("qemu-shim install"), "{}", show(&o));
}

#[test]
fn install_config_names_the_emulator_for_an_arch_and_must_be_roots() {
    let s = setup("config");
    // The arm64 qemu under a name the emulator search would never find.
    fs::create_dir(s.join("alt")).unwrap();
    fs::copy(
        emulator_dir().join("qemu-aarch64-static"),
        s.join("alt/my-aarch64-build"),
    )
    .unwrap();
    let config = format!(
        "# test config\n[arch.\"linux/arm64\"]\nemulator = \"qemu\"\npath = \"{}\"\n",
        s.join("alt/my-aarch64-build").display()
    );
    fs::write(s.join("config.toml"), &config).unwrap();
    fs::set_permissions(s.join("config.toml"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(s.join("loose.toml"), &config).unwrap();
    fs::set_permissions(s.join("loose.toml"), fs::Permissions::from_mode(0o666)).unwrap();
    sandbox_caps(
        As::Root,
        &s,
        r#"
cap loose "$CLI" install --emulator-dir "$S/emus" --install-dir "$S/inst" --config "$S/loose.toml"
cap loose-ls ls /proc/sys/fs/binfmt_misc
cap install "$CLI" install --emulator-dir "$S/emus" --install-dir "$S/inst" --config "$S/config.toml"
cap which "$CLI" which "$S/bin/busybox"
cap uname "$S/bin/uname" -m
cap s390x "$S/bin/bb-s390x/busybox" uname -m
"#,
    );
    let c = s.cap("loose");
    assert!(
        c.rc == 1
            && c.stderr
                .contains("loose.toml is writable by everyone: refusing it")
            && c.stderr.lines().count() == 1,
        "{c}"
    );
    assert_eq!(
        s.cap("loose-ls").stdout,
        "register\nstatus\n",
        "nothing registered"
    );
    s.installed();
    let c = s.cap("which");
    assert!(c.stdout.contains("alt/my-aarch64-build"), "{c}");
    assert_eq!(s.cap("uname").stdout, "aarch64\n");
    // Arches the file does not name keep qemu as searched.
    assert_eq!(s.cap("s390x").stdout, "s390x\n");
}

#[test]
fn run_takes_the_per_arch_emulator_choice_too() {
    let s = setup("run-config");
    fs::create_dir(s.join("alt")).unwrap();
    fs::copy(
        emulator_dir().join("qemu-aarch64-static"),
        s.join("alt/my-aarch64-build"),
    )
    .unwrap();
    fs::write(
        s.join("config.toml"),
        format!(
            "[arch.arm64]\nemulator = \"qemu\"\npath = \"{}\"\n",
            s.join("alt/my-aarch64-build").display()
        ),
    )
    .unwrap();
    let config = s.join("config.toml");
    let o = run_as_nobody(
        &s,
        &[
            "--config",
            config.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "bin/uname -m; bin/bb-s390x/busybox uname -m",
        ],
    );
    assert_eq!(stdout(&o), "aarch64\ns390x\n", "{}", show(&o));
    let stamp = fs::read_to_string(s.join("home/.cache/qemu-shim/qemu-shim-interp.stamp")).unwrap();
    assert!(
        stamp.contains("emulator aarch64 qemu ") && stamp.contains("alt/my-aarch64-build"),
        "{stamp}"
    );
    // A config that cannot be used stops run before anything starts.
    fs::write(
        s.join("config.toml"),
        "[arch.arm64]\nemulator = \"rosetta\"\n",
    )
    .unwrap();
    let o = run_as_nobody(&s, &["--config", config.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", show(&o));
    assert!(
        stderr(&o).contains("config.toml:2: unknown emulator"),
        "{}",
        show(&o)
    );
}

/// One line on stderr, `qemu-shim: error: cache directory …`, holding each
/// of `parts`, exit 125, and nothing on stdout: how `run` refuses a cache
/// directory.
#[track_caller]
fn assert_cache_refused(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    assert!(
        o.status.code() == Some(125)
            && stdout(o).is_empty()
            && err.lines().count() == 1
            && err.starts_with("qemu-shim: error: cache directory ")
            && parts.iter().all(|p| err.contains(p)),
        "expected exit 125 and one line `qemu-shim: error: cache directory …` with {parts:?}:\n{}",
        show(o)
    );
}

/// Issue 10, item 2: root running with another user's HOME (what `sudo -E`
/// does) must not take that user's cache. Here nobody builds a cache, then
/// swaps their cached interpreter file for a program of their own; root's
/// run with nobody's HOME would otherwise find a matching stamp and
/// register the planted file, which then runs every foreign program as
/// root.
#[test]
fn another_users_cache_is_refused_not_run_as_root() {
    let s = setup("run-foreign-cache");
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    // nobody's planted "interpreter": records who ran it.
    let planted = cached(&s, "aarch64");
    fs::remove_file(&planted).unwrap();
    let src = s.join("planted.c");
    fs::write(
        &src,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n\
             int main(void) {{ FILE *f = fopen(\"{}/ran-as\", \"w\"); \
             if (f) fprintf(f, \"%u\\n\", (unsigned)getuid()); return 0; }}\n",
            s.path().display()
        ),
    )
    .unwrap();
    let cc = Command::new("cc")
        .arg("-o")
        .arg(&planted)
        .arg(&src)
        .output()
        .expect("cc (apt-get install gcc)");
    assert!(cc.status.success(), "{}", show(&cc));
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o755)).unwrap();
    // Open to all, as an attacker leaves it: root in run's namespace (which
    // maps only root) may then reach the file, as on a host with sudo -E.
    for d in ["home", "home/.cache", "home/.cache/qemu-shim"] {
        fs::set_permissions(s.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    give_to_nobody(&s.join("home"));

    let o = run_as_caller(&s, &s.join("home"), &["--", "bin/uname", "-m"]);
    assert!(
        !s.join("ran-as").exists(),
        "the planted program ran, as uid {}",
        fs::read_to_string(s.join("ran-as")).unwrap_or_default()
    );
    assert_cache_refused(&o, &["is owned by uid 65534", "refusing it"]);
    // --cache-dir naming it is refused the same way.
    let cache = s.join("home/.cache/qemu-shim");
    let cache = cache.to_str().unwrap();
    let o = run_as_caller(
        &s,
        &s.join("root-home-unused"),
        &["--cache-dir", cache, "--", "bin/uname", "-m"],
    );
    assert!(!s.join("ran-as").exists(), "the planted program ran");
    assert_cache_refused(&o, &["is owned by uid 65534"]);
}

/// Issue 10, item 2: a cache directory, or a directory above it, that
/// others may write is refused (they could swap the cached file), with the
/// fix in the hint.
#[test]
fn a_cache_dir_others_can_write_is_refused() {
    let s = setup("run-loose-cache");
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    let cache = s.join("home/.cache/qemu-shim");
    let dot_cache = s.join("home/.cache");

    fs::set_permissions(&cache, fs::Permissions::from_mode(0o770)).unwrap();
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    let chmod = format!("chmod go-w {}", cache.display());
    assert_cache_refused(&o, &["is writable by its group: refusing it", &chmod]);
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();

    fs::set_permissions(&dot_cache, fs::Permissions::from_mode(0o777)).unwrap();
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    let what = format!("{} is writable by everyone", dot_cache.display());
    assert_cache_refused(&o, &[&what]);
    fs::set_permissions(&dot_cache, fs::Permissions::from_mode(0o700)).unwrap();

    // A directory above, owned by another (non-root) user, is refused even
    // where it is not writable: its owner could rename what is below it.
    let theirs = s.join("theirs");
    fs::create_dir_all(theirs.join("mine")).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
    std::os::unix::fs::chown(theirs.join("mine"), Some(65534), Some(65534)).unwrap();
    let dir = theirs.join("mine/cache");
    let o = run_as_nobody(
        &s,
        &[
            "--cache-dir",
            dir.to_str().unwrap(),
            "--",
            "bin/uname",
            "-m",
        ],
    );
    let what = format!("{} is owned by uid 4242", theirs.display());
    assert_cache_refused(&o, &[&what]);
    assert!(!dir.exists(), "created below a refused directory");

    // The same again as it should be: accepted.
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
}

/// The directories `run` makes for its cache are 0700 whatever the umask
/// (set explicitly, not left to it).
#[test]
fn cache_directories_are_made_0700_whatever_the_umask() {
    let s = setup("run-umask");
    for (umask, sub) in [("0000", "a"), ("0077", "b")] {
        let dir = s.join(&format!("home/{sub}/cache"));
        let line = format!(
            "umask {umask} && exec {} run --emulator-dir {} --cache-dir {} -- bin/uname -m",
            cli().display(),
            s.join("emus").display(),
            dir.display()
        );
        let o = run_as_nobody_sh(&s, &line);
        assert_eq!(stdout(&o), "aarch64\n", "umask {umask}: {}", show(&o));
        for d in [s.join(&format!("home/{sub}")), dir] {
            let m = fs::metadata(&d).unwrap();
            assert_eq!(
                (m.uid(), m.mode() & 0o7777),
                (65534, 0o700),
                "umask {umask}: {}",
                d.display()
            );
        }
    }
}

/// Issue 18, item 5: `run` names a directory as such, and a cache it cannot
/// write points at the way out for a user without root (another cache
/// directory), not at root. Both before anything runs: 126 and 125.
#[test]
fn run_errors_say_what_is_wrong_and_how_a_user_fixes_it() {
    let s = setup("run-errors");
    let o = run_as_nobody(&s, &["--", "/tmp"]);
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    assert_eq!(
        stderr(&o),
        "qemu-shim: error: cannot run /tmp: is a directory\n",
        "{}",
        show(&o)
    );

    // A HOME nobody cannot enter (root's, mode 0700).
    let closed = s.join("closed");
    fs::create_dir(&closed).unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o700)).unwrap();
    let o = as_nobody()
        .arg(cli())
        .args(["run", "--emulator-dir"])
        .arg(s.join("emus"))
        .arg("--config")
        .arg(s.join("no-config.toml"))
        .args(["--", "true"])
        .current_dir(s.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &closed)
        .stdin(Stdio::null())
        .output()
        .expect("spawn setpriv");
    assert_eq!(o.status.code(), Some(125), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "qemu-shim: error: cache directory {}/.cache/qemu-shim: ",
            closed.display()
        )) && err.ends_with(
            ": permission denied (hint: pass --cache-dir DIR or set XDG_CACHE_HOME to a \
             directory of your own; sudo -E hands root the caller's HOME, sudo -H does not)\n"
        ) && err.matches('\n').count() == 1,
        "{}",
        show(&o)
    );
}

/// Issue 18, item 2: run registers the program's own arch (from its ELF
/// header) unless --arch names others, and caches one file per arch set,
/// so a user's cache holds the emulators their programs use.
#[test]
fn run_registers_the_programs_own_arch_or_those_named_and_caches_per_set() {
    let s = setup("run-arch");
    let o = run_as_nobody(&s, &["--", "bin/uname", "-m"]);
    assert_eq!(stdout(&o), "aarch64\n", "{}", show(&o));
    let o = run_as_nobody(
        &s,
        &[
            "--",
            "bin/bb-s390x/busybox",
            "ls",
            "/proc/sys/fs/binfmt_misc",
        ],
    );
    assert_eq!(
        stdout(&o),
        "qemu-shim-s390x\nregister\nstatus\n",
        "{}",
        show(&o)
    );
    let o = run_as_nobody(
        &s,
        &[
            "--arch",
            "s390x,arm64",
            "--",
            "bin/bb-s390x/busybox",
            "ls",
            "/proc/sys/fs/binfmt_misc",
        ],
    );
    assert_eq!(
        stdout(&o),
        "qemu-shim-aarch64\nqemu-shim-s390x\nregister\nstatus\n",
        "{}",
        show(&o)
    );
    let mut files: Vec<String> = fs::read_dir(s.join("home/.cache/qemu-shim"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "qemu-shim-interp.aarch64",
            "qemu-shim-interp.aarch64.stamp",
            "qemu-shim-interp.s390x",
            "qemu-shim-interp.s390x+aarch64",
            "qemu-shim-interp.s390x+aarch64.stamp",
            "qemu-shim-interp.s390x.stamp",
        ]
    );
    // One emulator's worth (qemu-aarch64-static is about 12 MiB, the file
    // with both about 25).
    let one = fs::metadata(cached(&s, "aarch64")).unwrap().len();
    let both = fs::metadata(cached(&s, "s390x+aarch64")).unwrap().len();
    assert!(one < 16 << 20 && both > one + (8 << 20), "{one} {both}");
    let stamp =
        fs::read_to_string(s.join("home/.cache/qemu-shim/qemu-shim-interp.aarch64.stamp")).unwrap();
    assert!(
        stamp.contains("emulator aarch64 qemu ") && !stamp.contains("emulator s390x"),
        "{stamp}"
    );
    // An arch not registered: the kernel cannot run the program (execvp
    // then hands it to /bin/sh, which fails on its bytes).
    let o = run_as_nobody(
        &s,
        &[
            "--arch",
            "arm64",
            "--",
            "bin/bb-s390x/busybox",
            "uname",
            "-m",
        ],
    );
    assert!(
        !o.status.success() && !stdout(&o).contains("s390x"),
        "{}",
        show(&o)
    );
    let o = run_as_nobody(&s, &["--arch", "arm65", "--", "true"]);
    assert!(
        o.status.code() == Some(125) && stderr(&o).contains("unknown arch 'arm65'"),
        "{}",
        show(&o)
    );
}
