//! What install costs (issue 16, items 1 and 2).
//!
//! Memory: the interpreter file is streamed into place one emulator at a
//! time, so `install`'s peak RSS does not grow with the number of arches.
//! Measured with GNU time's `%M` (the process's `ru_maxrss`), on a first
//! install and on a re-install that changes nothing (which compares the
//! installed file piece by piece), each in a private binfmt_misc instance.
//!
//! Disk: the file's zero ranges are holes, and on a file system that shares
//! extents (btrfs, loop-mounted in a private mount namespace) the carried
//! emulators' unchanged pages share them with the emulator files.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use qemu_shim_registry::arch::ARCHES;
use qemu_shim_suite::{
    assert_ok, cli, emulator_dir, interp, sandbox, userns_env, As, Scratch, PRIVATE_BINFMT_SH,
};

/// What the peak of installing every arch may exceed that of installing
/// only the one with the largest emulator: what grows with the number of
/// arches (the table, the install record), with room for the allocator.
/// Building the file in memory, as install did before issue 16, costs the
/// whole file (336 MiB for 31 arches).
const MARGIN_KB: u64 = 8 * 1024;

/// The limit issue 16 sets for all of Debian's emulators.
const LIMIT_KB: u64 = 64 * 1024;

/// Peak RSS in kB of a first install and of a re-install of `arches`
/// (empty: every foreign arch), each run under GNU time, and how many
/// entries the first registered.
fn peaks(tag: &str, arches: &str) -> (u64, u64, usize) {
    let s = Scratch::new(tag);
    let script = r#"
for run in first again; do
	/usr/bin/time -o "$S/$run.kb" -f %M \
		"$CLI" install --quiet --emulator-dir "$EMUS" --install-dir "$S/inst" \
		--interpreter "$INTERP" $ARCHES
done
ls /proc/sys/fs/binfmt_misc | grep -c '^qemu-shim-' >"$S/entries"
"#;
    let o = sandbox(
        As::Root,
        script,
        &[
            ("S", s.path().as_os_str()),
            ("ARCHES", std::ffi::OsStr::new(arches)),
        ],
    );
    assert_ok(&o);
    let read = |name: &str| -> u64 {
        let t = fs::read_to_string(s.join(name)).unwrap();
        t.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {t:?}: {e}"))
    };
    (read("first.kb"), read("again.kb"), read("entries") as usize)
}

#[test]
fn install_memory_does_not_grow_with_the_number_of_arches() {
    // The arch whose emulator is the largest file: a streamed install
    // holds one emulator at a time, so this one sets the floor.
    let native = ["x86_64", "i386", "i486"];
    let (largest, _) = ARCHES
        .iter()
        .filter(|a| !native.contains(&a.name))
        .filter_map(|a| {
            let p = emulator_dir().join(format!("{}-static", a.emulator));
            Some((a.name, fs::metadata(p).ok()?.len()))
        })
        .max_by_key(|(_, len)| *len)
        .expect("no emulator fixtures: run scripts/fetch-fixtures");
    let (one_first, one_again, one_n) = peaks("mem-one", largest);
    let (all_first, all_again, all_n) = peaks("mem-all", "");
    assert_eq!(one_n, 1);
    assert!(all_n >= 30, "only {all_n} arches registered");
    eprintln!(
        "peak RSS: {largest} {one_first}/{one_again} kB, {all_n} arches \
         {all_first}/{all_again} kB (first install/re-install)"
    );
    for (what, one, all) in [
        ("first install", one_first, all_first),
        ("re-install", one_again, all_again),
    ] {
        assert!(
            all <= one + MARGIN_KB,
            "{what}: {all} kB for {all_n} arches against {one} kB for {largest} alone: \
             install's memory grows with the number of arches"
        );
        assert!(
            all <= LIMIT_KB,
            "{what}: {all} kB for {all_n} arches, above {LIMIT_KB} kB"
        );
    }
}

/// The arches the disk test carries: three emulators, about 37 MiB.
const DISK_ARCHES: &str = "aarch64 arm s390x";

/// Runs `script` with `sh -euc` under `wrap` (a command that runs the rest
/// of its arguments: `env`, or `unshare --mount …`). In it, `$S` is the
/// scratch directory, `copy_emulators DIR` copies the emulators of
/// [`DISK_ARCHES`] into DIR (files of their own: no extent shared with the
/// fixtures), and `install_into EMUS INST` installs them from EMUS into INST
/// in a private binfmt_misc instance (user and mount namespace).
fn disk_script(s: &Scratch, wrap: &[&str], script: &str) {
    let inner = s.join("install.sh");
    fs::write(
        &inner,
        format!(
            "{PRIVATE_BINFMT_SH}\
if [ -e /etc/qemu-shim ]; then mount -t tmpfs -o mode=0755 qemu-shim-test /etc/qemu-shim; fi
\"$CLI\" install --quiet --emulator-dir \"$1\" --install-dir \"$2\" --interpreter \"$INTERP\" {DISK_ARCHES}
"
        ),
    )
    .unwrap();
    let helpers = format!(
        r#"copy_emulators() {{
	mkdir -p "$1"
	for a in {DISK_ARCHES}; do
		cp --reflink=never "$EMUS/qemu-$a-static" "$1/"
	done
	sync
}}
install_into() {{
	unshare --user --map-root-user --mount -- sh -eu "$S/install.sh" "$1" "$2"
}}
"#
    );
    let o = Command::new(wrap[0])
        .args(&wrap[1..])
        .args(["sh", "-euc", &format!("{helpers}{script}"), "disk"])
        .env("S", s.path())
        .env("CLI", cli())
        .env("INTERP", interp())
        .env("EMUS", emulator_dir())
        .envs(userns_env())
        .stdin(Stdio::null())
        .output()
        .expect("spawn sh");
    assert_ok(&o);
}

/// Whether this kernel can mount btrfs (built in, or its module loads).
fn kernel_has_btrfs() -> bool {
    let listed = || {
        fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("btrfs"))
        })
    };
    listed()
        || (Command::new("modprobe")
            .arg("btrfs")
            .status()
            .is_ok_and(|s| s.success())
            && listed())
}

/// Asserts the file at `path` has holes: at least the 60 KiB of zeros
/// after its program header table are not allocated.
fn assert_sparse(path: &Path) {
    let m = fs::metadata(path).unwrap();
    assert!(
        m.blocks() * 512 + 32 * 1024 <= m.len(),
        "{}: not sparse: {} bytes allocated for {} bytes",
        path.display(),
        m.blocks() * 512,
        m.len()
    );
}

#[test]
fn the_interpreter_file_is_sparse_and_shares_the_emulators_extents_on_btrfs() {
    // Where the scratch directory is (ext4 here): holes, no sharing.
    let s = Scratch::new("disk");
    disk_script(
        &s,
        &["env"],
        r#"copy_emulators "$S/q"
install_into "$S/q" "$S/inst"
"#,
    );
    assert_sparse(&s.join("inst/qemu-shim-interp"));

    if !kernel_has_btrfs() {
        eprintln!("btrfs part skipped: this kernel cannot mount btrfs (not in /proc/filesystems, no module)");
        return;
    }
    // A btrfs image loop-mounted in a private mount namespace (gone, and
    // its loop device with it, when the namespace ends), the emulators
    // copied into it, the file installed beside them.
    disk_script(
        &s,
        &["unshare", "--mount", "--propagation", "private", "--"],
        r#"truncate -s 1G "$S/btrfs.img"
mkfs.btrfs -q "$S/btrfs.img"
mkdir "$S/mnt"
mount -o loop "$S/btrfs.img" "$S/mnt"
trap 'umount "$S/mnt"' EXIT
copy_emulators "$S/mnt/q"
install_into "$S/mnt/q" "$S/mnt/inst"
btrfs filesystem du --raw "$S/mnt/inst/qemu-shim-interp" | tail -n 1 >"$S/du"
stat -c %s "$S/mnt/inst/qemu-shim-interp" >"$S/len"
"#,
    );
    let du = fs::read_to_string(s.join("du")).unwrap();
    let f: Vec<u64> = du
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap_or_else(|e| panic!("{du:?}: {e}")))
        .collect();
    let (total, exclusive, shared) = (f[0], f[1], f[2]);
    let len: u64 = fs::read_to_string(s.join("len"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("btrfs: {len} bytes, {total} allocated, {exclusive} exclusive, {shared} shared");
    assert!(
        exclusive * 4 < len && shared * 2 > len,
        "on btrfs, {exclusive} of {total} bytes are the file's own, {shared} shared with the \
         emulators: the unchanged pages were copied, not shared"
    );
}
