//! Container engines through qemu-shim, for real (issue 12): the installer
//! image that scripts/build-image builds offline, run as tonistiigi/binfmt
//! is (`podman run --privileged IMAGE install|status|doctor|uninstall`),
//! foreign images holding no emulator run and built under podman, the
//! embedding variant (`install --no-carry`, the image brings its own
//! host-arch qemu), and the refusals (no `--privileged`); rootless podman
//! and docker running a foreign image through the host's registration; and
//! `qemu-shim run` inside a container, where the engine allows it and
//! where it does not.
//!
//! Most register in the **host's** binfmt_misc table — rootful podman
//! cannot run inside a private instance here — so those tests' names start
//! with `host_table_`, hold [`HostTable`] (a lock, and the table put back
//! as it was, even on failure), and remove the images, containers, users
//! and daemons they made, also when they fail halfway (a shell trap). Needs
//! root, podman, runc, uidmap and docker.io (scripts/test installs them)
//! and the image (`scripts/build-image localhost/qemu-shim:test`, which
//! scripts/test runs; `QEMU_SHIM_TEST_IMAGE` names another).

use std::process::Command;

use qemu_shim_suite::host_table::HostTable;
use qemu_shim_suite::{assert_runs, captured, cli, fixtures_dir, Captured, Scratch, CAP_SH};

/// The installer image the tests run.
fn image() -> String {
    std::env::var("QEMU_SHIM_TEST_IMAGE").unwrap_or_else(|_| "localhost/qemu-shim:test".into())
}

/// The container tests run one at a time: the first compares podman's
/// `qemu-shim-test-…` images before and after, and another test's image,
/// made and removed meanwhile, would read as one it removed (seen: a
/// second `.ci/run` pass failed so).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// podman as these machines need it (crun lacks CAP_SYS_RESOURCE here).
const PODMAN: &str = "podman --runtime runc --cgroup-manager=cgroupfs";

/// The images and containers podman holds of the kind the tests make
/// (named `…qemu-shim-test-…`, and untagged ones), to compare before and
/// after. Only those: another podman user may come and go meanwhile.
fn podman_state() -> (String, String) {
    let list = |args: &str| {
        let o = Command::new("sh")
            .args(["-c", &format!("{PODMAN} {args}")])
            .output()
            .expect("run podman");
        assert!(
            o.status.success(),
            "podman {args} failed (apt-get install podman runc; scripts/test does): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("qemu-shim-test-") || l.starts_with("<none>"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    (
        list("images --format '{{.Repository}}:{{.Tag}} {{.ID}}'"),
        list("ps -a --format '{{.Image}} {{.ID}}'"),
    )
}

/// The scenario, in one shell: `cap NAME CMD…` records each step (see
/// `CAP_SH`). Images it makes are tagged `$T-…` and removed on exit.
const SCENARIO: &str = r#"
P="$PODMAN"
RUN="run --rm --net=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
T=localhost/qemu-shim-test-$$
cleanup() {
	$P rmi -f "$T-arm64" "$T-s390x" "$T-debian" "$T-embed" "$T-built-arm64" "$T-built-s390x" \
		"$T-built-debian" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Foreign images holding no emulator: Debian's busybox-static, and the
# arm64 debootstrap root (real dynamic programs: dash, dpkg).
mkimg() { # DEBIAN-ARCH
	d=$S/img-$1
	mkdir -p "$d/bin"
	cp "$FIX/busybox/$1/busybox" "$d/bin/"
	for a in sh uname true cat; do ln -s busybox "$d/bin/$a"; done
	tar -C "$d" -cf "$d.tar" .
	$P import --arch "$1" "$d.tar" "$T-$1" >/dev/null
}
mkimg arm64
mkimg s390x
# (Its /proc is a symbolic link the fixture script leaves: an image needs a
# directory there.)
mkdir -p "$S/empty/proc"
tar -C "$FIX/debootstrap/arm64" --exclude=./proc -cf "$S/debian.tar" .
tar -C "$S/empty" -rf "$S/debian.tar" ./proc
$P import --arch arm64 "$S/debian.tar" "$T-debian" >/dev/null
# An arm64 image that brings the host-arch qemu at the path a --no-carry
# install registers (the installer image's /usr/local/bin).
d=$S/img-embed
mkdir -p "$d/bin" "$d/usr/local/bin"
cp "$FIX/busybox/arm64/busybox" "$d/bin/"
for a in sh uname; do ln -s busybox "$d/bin/$a"; done
cp "$FIX/qemu/qemu-aarch64-static" "$d/usr/local/bin/"
tar -C "$d" -cf "$d.tar" .
$P import --arch arm64 "$d.tar" "$T-embed" >/dev/null

# Without --privileged: one line, nothing registered.
cap unprivileged $P $RUN "$IMAGE" install
cap after-unprivileged "$CLI" status --json

# The interpreter file in the install container's layer: the entries work
# (the kernel pinned the file), but nothing reaches it by path afterwards.
# (Installed under a directory no host has: with the default one, a host
# that has its own install there would show its own file at that path.)
cap install-layer $P $RUN --privileged "$IMAGE" install --install-dir /qemu-shim-in-the-layer
cap layer-arm64 $P $RUN --platform linux/arm64 "$T-arm64" uname -m
cap layer-status "$CLI" status

# The install directory bind-mounted from the host at the same path: the
# way to run it (the registered path is then the file's path on the host).
mkdir "$S/lib"
V="-v $S/lib:$S/lib"
cap install $P $RUN --privileged $V "$IMAGE" install --install-dir "$S/lib"
cap file ls "$S/lib"
cap status-json $P $RUN --privileged $V "$IMAGE" status --json
cap doctor $P $RUN --privileged $V "$IMAGE" doctor
cap host-status "$CLI" status

# Foreign images run, and build: RUN steps execute foreign programs.
cap arm64 $P $RUN --platform linux/arm64 "$T-arm64" uname -m
cap s390x $P $RUN --platform linux/s390x "$T-s390x" uname -m
cap debian $P $RUN --platform linux/arm64 "$T-debian" sh -c 'dpkg --print-architecture; uname -m'
mkdir "$S/b-arm64" "$S/b-s390x" "$S/b-debian"
printf 'FROM %s\nRUN uname -m >/built-on && cat /built-on\n' "$T-arm64" >"$S/b-arm64/Containerfile"
printf 'FROM %s\nRUN uname -m >/built-on && cat /built-on\n' "$T-s390x" >"$S/b-s390x/Containerfile"
printf 'FROM %s\nRUN dpkg --print-architecture >/built-on && sh -c "uname -m >>/built-on"\n' \
	"$T-debian" >"$S/b-debian/Containerfile"
cap build-arm64 $P build --net=none --platform linux/arm64 -t "$T-built-arm64" "$S/b-arm64"
cap build-s390x $P build --net=none --platform linux/s390x -t "$T-built-s390x" "$S/b-s390x"
cap build-debian $P build --net=none --platform linux/arm64 -t "$T-built-debian" "$S/b-debian"
cap built-debian $P $RUN --platform linux/arm64 "$T-built-debian" cat /built-on

# Embedding: emulators by path, found in the program's own file system.
cap install-nocarry $P $RUN --privileged $V "$IMAGE" install --install-dir "$S/lib" --no-carry aarch64
cap embed $P $RUN --platform linux/arm64 "$T-embed" uname -m
cap embed-missing $P $RUN --platform linux/arm64 "$T-arm64" uname -m

cap uninstall $P $RUN --privileged $V "$IMAGE" uninstall --install-dir "$S/lib"
cap lib-after ls -A "$S/lib"
cap after-uninstall "$CLI" status --json
"#;

#[test]
fn host_table_podman_installer_image_foreign_images_builds_and_embedding() {
    let _serial = one_at_a_time();
    require_image();
    qemu_shim_suite::busybox("s390x");
    let s = Scratch::new("containers");
    let podman_before = podman_state();
    let table = HostTable::take();
    let before_owned = table.before().owned().len();
    run_scenario(&s, SCENARIO, &[]);
    // Puts the table back (also when the scenario panicked above), or
    // panics saying what it could not restore.
    drop(table);
    assert_eq!(
        podman_state(),
        podman_before,
        "images or containers left behind"
    );

    let caps = s.join("caps");
    let cap = |n: &str| -> Captured { captured(&caps, n) };
    let ok = |n: &str| {
        let c = cap(n);
        assert_eq!(c.rc, 0, "{c}");
        c
    };
    let owned = |c: &Captured| -> usize {
        let v: serde_json::Value = serde_json::from_str(&c.stdout).unwrap();
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["owned"].as_bool() == Some(true))
            .count()
    };

    // No --privileged: one line saying it is needed, nothing registered.
    let c = cap("unprivileged");
    let one_line = c
        .stderr
        .lines()
        .filter(|l| l.starts_with("qemu-shim"))
        .count()
        == 1;
    assert!(
        c.rc == 1 && one_line && c.stderr.contains("--privileged"),
        "{c}"
    );
    assert_eq!(owned(&ok("after-unprivileged")), before_owned);

    // In the container's layer: runs, but status says the file is gone.
    ok("install-layer");
    assert_eq!(ok("layer-arm64").stdout, "aarch64\n");
    let c = ok("layer-status");
    assert!(c.stdout.contains("not reachable by path"), "{c}");

    // Bind-mounted: the file on the host, status and doctor from the image.
    // A fresh container has binfmt_misc unmounted: install says the entries
    // last only while the host keeps its own mount (HostTable holds one, as
    // systemd does).
    let c = ok("install");
    assert!(
        c.stdout
            .contains("note: binfmt_misc was not mounted in this container, so install mounted it"),
        "{c}"
    );
    // The interpreter file and its install record (issue 13).
    assert_eq!(
        ok("file").stdout,
        "qemu-shim-interp\nqemu-shim-interp.state\n"
    );
    let c = ok("status-json");
    assert!(owned(&c) >= 30, "{c}");
    let c = ok("doctor");
    assert!(!c.stdout.contains("BROKEN"), "{c}");
    let c = ok("host-status");
    assert!(
        !c.stdout.contains("problem")
            && c.stdout.lines().any(|l| l.starts_with("aarch64 ")
                && l.contains(" qemu-shim-aarch64 ")
                && l.contains(" carried ")),
        "{c}"
    );

    // The seed's case: foreign images holding no emulator.
    assert_eq!(ok("arm64").stdout, "aarch64\n");
    assert_eq!(ok("s390x").stdout, "s390x\n");
    assert_eq!(ok("debian").stdout, "arm64\naarch64\n");
    for b in ["build-arm64", "build-s390x", "build-debian"] {
        ok(b);
    }
    assert_eq!(ok("built-debian").stdout, "arm64\naarch64\n");

    // Embedding: the image's own host-arch qemu runs it; without one, 127
    // and one line naming the path.
    ok("install-nocarry");
    assert_eq!(ok("embed").stdout, "aarch64\n");
    let c = cap("embed-missing");
    assert!(
        c.rc == 127
            && c.stderr
                .contains("no emulator for aarch64: /usr/local/bin/qemu-aarch64-static not found"),
        "{c}"
    );

    ok("uninstall");
    assert_eq!(owned(&ok("after-uninstall")), 0);
    assert_eq!(ok("lib-after").stdout, "", "uninstall left files");
}

/// For the scenarios below: an arm64 busybox root file system as a tarball
/// (`$S/arm64.tar`); the host's registration of qemu-shim (`register`: the
/// release CLI installs aarch64 in the host's table, the interpreter file
/// in `$S/lib`, through a binfmt_misc mount in a mount namespace of its
/// own, so the host's mounts stay as they are); and `shim_run ENGINE-RUN…
/// IMAGE`, which has the installer image's `qemu-shim run` (with
/// `--cache-dir $CACHE` if set) run the read-only busybox: `uname -m`,
/// and the interpreter of the entry that ran it.
const ARM64_AND_REGISTER: &str = r#"
d=$S/rootfs-arm64
mkdir -p "$d/bin"
cp "$FIX/busybox/arm64/busybox" "$d/bin/"
for a in sh uname; do ln -s busybox "$d/bin/$a"; done
tar -C "$d" -cf "$S/arm64.tar" .
chmod 0644 "$S/arm64.tar"
: >"$S/empty.toml"
register() {
	# The host's own mount where it has one (mounting it on itself is EBUSY).
	unshare --mount -- sh -euc '[ -e /proc/sys/fs/binfmt_misc/register ] ||
			mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
		exec "$CLI" install aarch64 --emulator-dir "$EMUS" --install-dir "$S/lib" --config "$S/empty.toml" --quiet'
}
shim_run() {
	"$@" run ${CACHE:+--cache-dir "$CACHE"} --emulator-dir /usr/local/bin -- /busybox sh -c \
		'uname -m; grep interpreter /proc/sys/fs/binfmt_misc/qemu-shim-aarch64'
}
"#;

/// Runs `script` with bash after [`CAP_SH`] and [`ARM64_AND_REGISTER`],
/// with the variables the scenarios use; asserts the script itself (its
/// setup, and its cleanup trap) succeeded.
fn scenario(s: &Scratch, script: &str, env: &[(&str, &str)]) {
    run_scenario(s, &format!("{ARM64_AND_REGISTER}{script}"), env);
}

/// Runs `script` with bash after [`CAP_SH`], `$CAPS` naming `s`'s caps
/// directory, with the variables the scenarios use; asserts the script
/// itself succeeded.
fn run_scenario(s: &Scratch, script: &str, env: &[(&str, &str)]) {
    let caps = s.join("caps");
    std::fs::create_dir_all(&caps).unwrap();
    let o = Command::new("bash")
        .args(["-euc", &format!("{CAP_SH}{script}")])
        .env("PODMAN", PODMAN)
        .env("IMAGE", image())
        .env("CLI", cli())
        .env("EMUS", qemu_shim_suite::emulator_dir())
        .env("FIX", fixtures_dir())
        .env("BB", qemu_shim_suite::busybox("arm64"))
        .env("S", s.path())
        .env("CAPS", &caps)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn bash");
    assert!(
        o.status.success(),
        "the scenario's setup or cleanup failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A label for the containers a test starts, unique to its scratch
/// directory: what it leaves behind can be told from what tests running
/// beside it (other checkouts' too) hold at the moment.
fn label(s: &Scratch) -> String {
    let name = s.path().file_name().unwrap().to_string_lossy();
    format!("qemu-shim-test={name}")
}

/// The containers labelled [`label`] that podman still holds.
fn left_behind(s: &Scratch) -> String {
    let o = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{PODMAN} ps -a --filter label={} --format '{{{{.ID}}}} {{{{.Names}}}}'",
                label(s)
            ),
        ])
        .output()
        .expect("run podman");
    assert!(
        o.status.success(),
        "podman ps: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Panics unless the installer image is there.
fn require_image() {
    let image = image();
    let have = Command::new("sh")
        .args(["-c", &format!("{PODMAN} image exists {image}")])
        .status()
        .expect("run podman");
    assert!(
        have.success(),
        "no image {image}: run `scripts/build-image {image}` (scripts/test does)"
    );
}

/// Asserts a captured command was refused by qemu-shim with exit 125 and
/// exactly one line, containing each of `parts`.
#[track_caller]
fn assert_run_refused(c: &Captured, parts: &[&str]) {
    let one_line = c.stderr.ends_with('\n') && c.stderr.matches('\n').count() == 1;
    assert!(
        c.rc == 125
            && c.stdout.is_empty()
            && one_line
            && c.stderr.starts_with("qemu-shim: error: ")
            && parts.iter().all(|p| c.stderr.contains(p)),
        "expected exit 125 and one line `qemu-shim: error: …` containing {parts:?}:\n{c}"
    );
}

/// What `shim_run` prints when `qemu-shim run` ran `uname -m` in its
/// private instance: the entry's interpreter file is in the run's own
/// cache, not a host install, so it did not ride on a host registration.
// An arm64 program: run caches the file for its arch alone (issue 18).
const RUN_PRIVATE: &str = "aarch64\ninterpreter /.cache/qemu-shim/qemu-shim-interp.aarch64\n";

/// podman's default seccomp profile (containers-common's), with `syscall`
/// no longer allowed: refused with the profile's default errno (ENOSYS),
/// or with `errno` when given (docker's profile answers EPERM).
fn seccomp_without(syscall: &str, errno: Option<u32>) -> String {
    let path = "/usr/share/containers/seccomp.json";
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path} (podman's containers-common): {e}"));
    let mut p: serde_json::Value = serde_json::from_str(&text).expect("seccomp.json");
    let mut removed = false;
    for rule in p["syscalls"].as_array_mut().expect("syscalls") {
        if rule["action"] == "SCMP_ACT_ALLOW" {
            if let Some(names) = rule["names"].as_array_mut() {
                let before = names.len();
                names.retain(|n| n != syscall);
                removed |= names.len() != before;
            }
        }
    }
    assert!(
        removed,
        "{path} does not allow {syscall}: nothing to take away"
    );
    if let Some(errno) = errno {
        p["syscalls"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "names": [syscall], "action": "SCMP_ACT_ERRNO", "errnoRet": errno
            }));
    }
    p.to_string()
}

/// Issue 12, item 3: `qemu-shim run` inside a container of the installer
/// image runs a foreign program in a private binfmt_misc instance where the
/// engine allows it — podman's defaults do — and where the engine forbids
/// it, prints one line naming what and exits 125. It never touches the
/// host's table (so no `host_table_` name): the private instance is
/// proven by the entry's interpreter, which lies in the run's own cache.
#[test]
fn podman_qemu_shim_run_in_a_container_runs_privately_or_names_what_is_forbidden() {
    let _serial = one_at_a_time();
    require_image();
    let s = Scratch::new("container-run");
    std::fs::write(s.join("no-unshare.json"), seccomp_without("unshare", None)).unwrap();
    std::fs::write(s.join("no-mount.json"), seccomp_without("mount", Some(1))).unwrap();
    scenario(
        &s,
        r#"
P="$PODMAN"
RUN="run --rm --net=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -v $BB:/busybox:ro --label $LABEL"
cap default shim_run $P $RUN "$IMAGE"
CACHE=/tmp/cache cap as-user shim_run $P $RUN --user 1000:1000 "$IMAGE"
CACHE=/tmp/cache cap read-only shim_run $P $RUN --read-only "$IMAGE"
cap no-unshare shim_run $P $RUN --security-opt seccomp="$S/no-unshare.json" "$IMAGE"
cap no-mount shim_run $P $RUN --security-opt seccomp="$S/no-mount.json" "$IMAGE"
cap no-setfcap shim_run $P $RUN --cap-drop SETFCAP "$IMAGE"
CACHE=/tmp/cache cap no-setfcap-user shim_run $P $RUN --cap-drop SETFCAP --user 1000:1000 "$IMAGE"
"#,
        &[("LABEL", &label(&s))],
    );
    assert_eq!(left_behind(&s), "", "containers left behind");
    assert_runs(&s.cap("default"), RUN_PRIVATE);
    // Another user, or a read-only root: the cache goes to /tmp.
    for name in ["as-user", "read-only"] {
        assert_runs(
            &s.cap(name),
            "aarch64\ninterpreter /tmp/cache/qemu-shim-interp.aarch64\n",
        );
    }
    assert_run_refused(
        &s.cap("no-unshare"),
        &[
            "the container's seccomp filter forbids creating user namespaces (unshare: function not implemented)",
            "--security-opt seccomp=unconfined",
        ],
    );
    assert_run_refused(
        &s.cap("no-mount"),
        &[
            "the container's seccomp filter forbids mount (mounting a private binfmt_misc: operation not permitted)",
            "--security-opt seccomp=unconfined",
        ],
    );
    assert_run_refused(
        &s.cap("no-setfcap"),
        &[
            "mapping root into a user namespace needs CAP_SETFCAP, which the container does not have",
            "--cap-add SETFCAP",
        ],
    );
    // Another user maps itself, which needs no capability.
    let c = s.cap("no-setfcap-user");
    assert!(c.rc == 0 && c.stdout.starts_with("aarch64\n"), "{c}");
}

/// The unprivileged user the rootless test runs podman as.
const ROOTLESS_USER: &str = "qemu-shim-rootless";

/// The user's lines in the files `useradd` and `userdel` change, to compare
/// before and after.
fn user_lines(user: &str) -> Vec<String> {
    ["/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.split(':').next() == Some(user))
                .map(|l| format!("{f}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The rootless scenario: an unprivileged user with subordinate ids runs an
/// arm64 image with podman, before and after qemu-shim is registered on the
/// host. The user is made if absent and then removed with all it made
/// (its storage, its pause process); one that was there stays, with
/// only the image this made removed.
const ROOTLESS: &str = r#"
U=qemu-shim-rootless
T=localhost/qemu-shim-test-$$
P="$PODMAN"
created= R= H=
as_user() {
	setpriv --reuid="$U" --regid="$U" --init-groups \
		env -i HOME="$H" PATH=/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR="$R" "$@"
}
cleanup() {
	if [ -n "$R" ]; then
		if [ -n "$created" ]; then
			as_user $P system reset -f >/dev/null 2>&1 || true
		else
			as_user $P rmi -f "$T-arm64" >/dev/null 2>&1 || true
		fi
		# The rootless pause process (reset stops it; a failed one may not).
		pause=$R/libpod/tmp/pause.pid
		if [ -s "$pause" ] && [ "$(stat -c %U "/proc/$(cat "$pause")" 2>/dev/null)" = "$U" ]; then
			kill "$(cat "$pause")" 2>/dev/null || true
		fi
		rm -rf "$R"
	fi
	if [ -n "$created" ]; then
		# Its exited processes may wait a moment to be reaped.
		for _ in $(seq 50); do
			userdel -r "$U" 2>/dev/null && break
			sleep 0.2
		done
		if id -u "$U" >/dev/null 2>&1; then
			echo "cannot remove the user $U: userdel -r $U" >&2
			exit 1
		fi
	fi
}
trap cleanup EXIT
if ! id -u "$U" >/dev/null 2>&1; then
	created=1
	useradd -m "$U"
fi
H=$(getent passwd "$U" | cut -d: -f6)
# Its own runtime directory (no login session makes /run/user/UID here):
# the pause process and its state are this run's. A short path, as
# /run/user/UID is: under $S (40 characters) every run waited 20 s for
# conmon, whose socket paths then pass the 108-byte limit.
R=$(mktemp -d /tmp/qsr.XXXXXX)
chown "$U:$U" "$R"

RUN="run --rm --net=none --platform linux/arm64"
cap info as_user $P info --format '{{.Host.Security.Rootless}} {{.Store.GraphDriverName}}'
as_user $P import --arch arm64 "$S/arm64.tar" "$T-arm64" >/dev/null
cap before as_user $P $RUN "$T-arm64" uname -m
register
cap after as_user $P $RUN "$T-arm64" uname -m
cap after-sh as_user $P $RUN "$T-arm64" sh -c 'uname -m; id -u'
"#;

/// Issue 12, item 3: rootless podman runs an arm64 image through the host's
/// qemu-shim registration. An unprivileged user with subordinate ids
/// (Debian's uidmap; `useradd -m` gives the ranges) runs podman with runc,
/// cgroupfs and no network (crun, systemd cgroups and slirp4netns do not
/// work or are not installed here); its storage is vfs, in its home.
#[test]
fn host_table_rootless_podman_runs_an_arm64_image_through_the_hosts_registration() {
    let _serial = one_at_a_time();
    assert!(
        std::path::Path::new("/usr/bin/newuidmap").exists(),
        "rootless podman needs newuidmap: apt-get install uidmap (scripts/test does)"
    );
    let users_before = user_lines(ROOTLESS_USER);
    let s = Scratch::new("rootless");
    let table = HostTable::take();
    scenario(&s, ROOTLESS, &[]);
    let before_empty = table.before().entries.is_empty();
    table.restore().unwrap();
    drop(table);
    assert_eq!(
        user_lines(ROOTLESS_USER),
        users_before,
        "the user {ROOTLESS_USER} was not left as found"
    );
    if users_before.is_empty() {
        assert!(
            !std::path::Path::new(&format!("/home/{ROOTLESS_USER}")).exists(),
            "its home was left behind"
        );
    }

    let c = s.cap("info");
    assert!(
        c.rc == 0 && c.stdout.starts_with("true "),
        "not rootless: {c}"
    );
    // Without a registration (when the host had none of its own): the
    // kernel cannot run it.
    if before_empty {
        let c = s.cap("before");
        assert!(c.rc != 0 && c.stderr.contains("exec format error"), "{c}");
    }
    let c = s.cap("after");
    assert!(c.rc == 0 && c.stdout == "aarch64\n", "{c}");
    // Root in the container is the user on the host, mapped.
    let c = s.cap("after-sh");
    assert!(c.rc == 0 && c.stdout == "aarch64\n0\n", "{c}");
}

/// Debian's docker client (docker.io). These VMs also carry a newer
/// client in /usr/local/bin, first on PATH.
const DOCKER: &str = "/usr/bin/docker";

/// The docker scenario: a daemon of its own (its data root, exec root,
/// socket, key and cgroup parent in places of its own: a system docker,
/// if any, is not touched), stopped by its pid at the end; the arm64
/// image and the installer image moved from podman with `podman save
/// --format docker-archive | docker load`, which keeps the arch (`docker
/// import` records none).
const DOCKER_SCENARIO: &str = r#"
P="$PODMAN"
T=localhost/qemu-shim-test-$$
CG=qemu-shim-test-docker-$$
dpid= R=
# What the daemon makes outside its own roots, whatever it is told.
had_run_docker= had_run_containerd=
[ ! -e /run/docker ] || had_run_docker=1
[ ! -e /run/containerd ] || had_run_containerd=1
cleanup() {
	$P rmi -f "$T-arm64" >/dev/null 2>&1 || true
	if [ -n "$dpid" ]; then
		kill "$dpid" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 "$dpid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$dpid" 2>/dev/null; then
			echo "dockerd ($dpid) did not stop in 30 s: killed" >&2
			kill -9 "$dpid" 2>/dev/null || true
		fi
		wait "$dpid" 2>/dev/null || true
	fi
	if [ -n "$R" ]; then
		# Its containerd, had it outlived the daemon.
		if [ -s "$R/x/containerd/containerd.pid" ]; then
			kill "$(cat "$R/x/containerd/containerd.pid")" 2>/dev/null || true
		fi
		# Mounts under its roots (none once it stopped cleanly).
		awk -v s="$S/" -v r="$R/" 'index($5, s) == 1 || index($5, r) == 1 { print $5 }' \
			/proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
		rm -rf "$R"
	fi
	[ -n "$had_run_docker" ] || rmdir /run/docker/plugins /run/docker 2>/dev/null || true
	[ -n "$had_run_containerd" ] || rmdir /run/containerd/s /run/containerd 2>/dev/null || true
	find /sys/fs/cgroup -maxdepth 2 -type d -name "$CG" -exec rmdir {} + 2>/dev/null || true
}
trap cleanup EXIT

# Short paths: containerd's sockets live under the exec root.
R=$(mktemp -d /tmp/qsd.XXXXXX)
# The daemon's identity key, which it writes to /etc/docker otherwise; and
# no /etc/docker/daemon.json.
printf '{"deprecated-key-path": "%s/key.json"}\n' "$R" >"$R/daemon.json"
/usr/sbin/dockerd --config-file "$R/daemon.json" --data-root "$S/docker" --exec-root "$R/x" \
	--pidfile "$R/pid" -H "unix://$R/sock" --cgroup-parent "/$CG" \
	--iptables=false --bridge=none --ip-masq=false >"$S/dockerd.log" 2>&1 &
dpid=$!
D="$DOCKER -H unix://$R/sock"
for _ in $(seq 300); do
	$D version >/dev/null 2>&1 && break
	if ! kill -0 "$dpid" 2>/dev/null; then
		echo "dockerd exited: $(tail -n 3 "$S/dockerd.log")" >&2
		exit 1
	fi
	sleep 0.2
done
$D version >/dev/null

$P import --arch arm64 "$S/arm64.tar" "$T-arm64" >/dev/null
$P save --format docker-archive "$T-arm64" | $D load >/dev/null
$P save --format docker-archive "$IMAGE" | $D load >/dev/null
cap arch $D image inspect --format '{{.Architecture}}' "$T-arm64"

RUN="run --rm --network none"
cap before $D $RUN --platform linux/arm64 "$T-arm64" uname -m
# qemu-shim run in a container: docker's default seccomp profile refuses
# unshare without CAP_SYS_ADMIN.
cap run-default shim_run $D $RUN -v "$BB:/busybox:ro" "$IMAGE"
cap run-unconfined shim_run $D $RUN --security-opt seccomp=unconfined -v "$BB:/busybox:ro" "$IMAGE"
cap run-sys-admin shim_run $D $RUN --cap-add SYS_ADMIN -v "$BB:/busybox:ro" "$IMAGE"
# The seed's scenario: qemu-shim registered on the host.
register
cap after $D $RUN --platform linux/arm64 "$T-arm64" uname -m
cap after-sh $D $RUN --platform linux/arm64 "$T-arm64" sh -c 'uname -m; echo $((6 * 7))'
# Refused the same with the host's entries there: the native probe, unable
# to make its private instance, must not take the arches they run for
# native ones.
cap run-default-registered shim_run $D $RUN -v "$BB:/busybox:ro" "$IMAGE"
"#;

/// Issue 12, item 4: Debian's docker engine (docker.io, 20.10) runs here:
/// an arm64 image loaded into it runs with `docker run --platform
/// linux/arm64` through the host's qemu-shim registration (exec format
/// error before). And item 3 under docker: its default seccomp profile
/// forbids what `qemu-shim run` needs, which the one line says; with the
/// profile lifted, or CAP_SYS_ADMIN, it runs in a private instance.
#[test]
fn host_table_docker_runs_an_arm64_image_and_names_its_seccomp_profile_to_qemu_shim_run() {
    let _serial = one_at_a_time();
    for f in ["/usr/sbin/dockerd", DOCKER] {
        assert!(
            std::path::Path::new(f).exists(),
            "{f} is missing: apt-get install docker.io (scripts/test does)"
        );
    }
    require_image();
    let s = Scratch::new("docker");
    let podman_images = |t: &str| {
        let o = Command::new("sh")
            .args([
                "-c",
                &format!("{PODMAN} images -q --filter reference='{t}'"),
            ])
            .output()
            .expect("run podman");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let table = HostTable::take();
    scenario(&s, DOCKER_SCENARIO, &[("DOCKER", DOCKER)]);
    let before_empty = table.before().entries.is_empty();
    table.restore().unwrap();
    drop(table);
    assert_eq!(
        podman_images("localhost/qemu-shim-test-*-arm64"),
        "",
        "podman images left behind"
    );

    assert_eq!(s.cap("arch").stdout, "arm64\n", "{}", s.cap("arch"));
    if before_empty {
        let c = s.cap("before");
        assert!(c.rc != 0 && c.stderr.contains("exec format error"), "{c}");
    }
    for name in ["run-default", "run-default-registered"] {
        assert_run_refused(
            &s.cap(name),
            &[
                "the container's seccomp filter forbids creating user namespaces (unshare: operation not permitted)",
                "--security-opt seccomp=unconfined",
            ],
        );
    }
    assert_runs(&s.cap("run-unconfined"), RUN_PRIVATE);
    assert_runs(&s.cap("run-sys-admin"), RUN_PRIVATE);
    assert_runs(&s.cap("after"), "aarch64\n");
    assert_runs(&s.cap("after-sh"), "aarch64\n42\n");
}
