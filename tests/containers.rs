//! Container engines through qemu-shim, for real (issue 12): the installer
//! image that scripts/build-image builds offline, run as tonistiigi/binfmt
//! is (`podman run --privileged IMAGE install|status|doctor|uninstall`),
//! foreign images holding no emulator run and built under podman, the
//! embedding variant (`install --no-carry`, the image brings its own
//! host-arch qemu), and the refusals (no `--privileged`).
//!
//! These register in the **host's** binfmt_misc table — rootful podman
//! cannot run inside a private instance here — so each test's name starts
//! with `host_table_`, holds [`HostTable`] (a lock, and the table put back
//! as it was, even on failure), and removes the images and containers it
//! made. Needs root, podman and runc (scripts/test installs them) and the
//! image (`scripts/build-image localhost/qemu-shim:test`, which scripts/test
//! runs).

use std::process::Command;

use qemu_shim_suite::host_table::HostTable;
use qemu_shim_suite::{captured, cli, fixtures_dir, Captured, Scratch, CAP_SH};

/// The installer image the tests run.
fn image() -> String {
    std::env::var("QEMU_SHIM_TEST_IMAGE").unwrap_or_else(|_| "localhost/qemu-shim:test".into())
}

/// podman as these machines need it (crun lacks CAP_SYS_RESOURCE here).
const PODMAN: &str = "podman --runtime runc --cgroup-manager=cgroupfs";

/// The images and containers podman holds, to compare before and after.
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
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    (
        list("images --format '{{.Repository}}:{{.Tag}} {{.ID}}'"),
        list("ps -a --format '{{.ID}} {{.Names}}'"),
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
cap install-layer $P $RUN --privileged "$IMAGE" install
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
    let image = image();
    let fix = fixtures_dir();
    qemu_shim_suite::busybox("s390x");
    let have = Command::new("sh")
        .args(["-c", &format!("{PODMAN} image exists {image}")])
        .status()
        .expect("run podman");
    assert!(
        have.success(),
        "no image {image}: run `scripts/build-image {image}` (scripts/test does)"
    );
    let s = Scratch::new("containers");
    let caps = s.join("caps");
    std::fs::create_dir(&caps).unwrap();
    let podman_before = podman_state();
    let table = HostTable::take();
    let o = Command::new("bash")
        .args(["-euc", &format!("{CAP_SH}{SCENARIO}")])
        .env("PODMAN", PODMAN)
        .env("IMAGE", &image)
        .env("CLI", cli())
        .env("FIX", &fix)
        .env("S", s.path())
        .env("CAPS", &caps)
        .output()
        .expect("spawn bash");
    let before_owned = table.before().owned().len();
    let restored = table.restore();
    drop(table);
    assert!(
        o.status.success(),
        "the scenario's setup failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    restored.unwrap();
    assert_eq!(
        podman_state(),
        podman_before,
        "images or containers left behind"
    );

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
        !c.stdout.contains("problem") && c.stdout.contains("carried qemu-aarch64"),
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
