//! Install in constant memory (issue 16, item 1): the interpreter file is
//! streamed into place one emulator at a time, so `install`'s peak RSS
//! does not grow with the number of arches. Measured with GNU time's `%M`
//! (the process's `ru_maxrss`), on a first install and on a re-install that
//! changes nothing (which compares the installed file piece by piece),
//! each in a private binfmt_misc instance.

use std::fs;

use qemu_shim_registry::arch::ARCHES;
use qemu_shim_suite::{assert_ok, emulator_dir, sandbox, As, Scratch};

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
