//! Golden hashes of interpreter files: the linker's output for a fixed set
//! of configurations, pinned so that a refactoring of the linker (issue 14:
//! moving it into a library crate) is proved byte-identical.
//!
//! Inputs: the release interpreter and Debian's emulators from the fixture
//! cache, a fixed pre-relocation base (install draws one at random) and
//! fixed table flags. Each built file is hashed after one normalisation:
//! the emulator paths in its dispatch table become `/golden/NAME` (the
//! fixture cache sits in a different directory in every checkout); every
//! other byte counts.
//!
//! `tests/golden/interpreter-files.txt` records the SHA-256 of each input and
//! output. When an input differs (the interpreter was rebuilt from changed
//! sources, or the fixtures changed), the recorded outputs say nothing
//! about this build and the test fails saying so: re-record with
//! `QEMU_SHIM_GOLDEN=update` in a commit that changes no linker code.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use qemu_shim_registry_core::arch::ARCHES;
use qemu_shim_registry_core::dispatch::{self, Entry, Table, FLAG_ASSUME_P};
use sha2::{Digest, Sha256};

use qemu_shim_interpfile::{build, region, Spec, Target};

/// The recorded hashes, relative to this crate.
const GOLDEN: &str = "tests/golden/interpreter-files.txt";

/// The built interpreter's file name.
const INTERP: &str = "qemu-shim-interp";

/// A pre-relocation base inside [`Target::prelink_range`] of an x86_64
/// host, 2 MiB aligned. The files are an x86_64 host's (the interpreter
/// built here is), whatever this test runs on.
const BASE: u64 = 0x2345_6780_0000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo_root().join(p),
        None => repo_root().join("target"),
    }
}

/// Where the fetched emulators are.
fn fixture_qemu_dir() -> PathBuf {
    std::env::var_os("QEMU_SHIM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("fixtures"))
        .join("qemu")
}

/// Symbolic links to the fetched emulators in `dir`, a directory whose path
/// length does not depend on the checkout: the table holds each emulator's
/// full path, and 31 of them must fit its 16 KiB wherever the checkout is.
fn link_emulators(dir: &Path) {
    let fixtures = fixture_qemu_dir();
    let entries = fs::read_dir(&fixtures).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `scripts/fetch-fixtures` first",
            fixtures.display()
        )
    });
    for e in entries {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
    }
}

fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every arch of the table with a fetched emulator, but those an x86_64
/// host runs natively (as install leaves them out), in table order, with
/// its emulator.
fn all_foreign(dir: &Path) -> Vec<(String, PathBuf)> {
    let native = ["x86_64", "i386", "i486"];
    let found: Vec<(String, PathBuf)> = ARCHES
        .iter()
        .filter(|a| !native.contains(&a.name))
        .map(|a| {
            (
                a.name.to_string(),
                dir.join(format!("{}-static", a.emulator)),
            )
        })
        .filter(|(_, p)| p.is_file())
        .collect();
    assert!(
        found.len() >= 30,
        "only {} emulators in {}: run `scripts/fetch-fixtures` first",
        found.len(),
        dir.display()
    );
    found
}

fn only(dir: &Path, names: &[&str]) -> Vec<(String, PathBuf)> {
    all_foreign(dir)
        .into_iter()
        .filter(|(a, _)| names.contains(&a.as_str()))
        .collect()
}

/// The configurations pinned: every emulator carried and pre-relocated
/// (install's default), one arch, `--no-prelink`, `--no-carry` on a kernel
/// before 5.12 (the assume-P flag), a config file naming a plain
/// emulator (box64/FEX; qemu-aarch64 stands in) beside carried ones, and
/// one choosing CPU models for two arches.
fn configs(dir: &Path) -> Vec<(&'static str, Spec)> {
    vec![
        (
            "all-carried-prelinked",
            Spec {
                target: Target::X86_64,
                flags: 0,
                emulators: all_foreign(dir),
                carry: true,
                prelink_base: Some(BASE),
                plain: vec![],
                cpu: vec![],
            },
        ),
        (
            "aarch64-carried-prelinked",
            Spec {
                target: Target::X86_64,
                flags: 0,
                emulators: only(dir, &["aarch64"]),
                carry: true,
                prelink_base: Some(BASE),
                plain: vec![],
                cpu: vec![],
            },
        ),
        (
            "all-carried-no-prelink",
            Spec {
                target: Target::X86_64,
                flags: 0,
                emulators: all_foreign(dir),
                carry: true,
                prelink_base: None,
                plain: vec![],
                cpu: vec![],
            },
        ),
        (
            "all-by-path-assume-p",
            Spec {
                target: Target::X86_64,
                flags: FLAG_ASSUME_P,
                emulators: all_foreign(dir),
                carry: false,
                prelink_base: None,
                plain: vec![],
                cpu: vec![],
            },
        ),
        (
            "plain-aarch64-with-carried",
            Spec {
                target: Target::X86_64,
                flags: 0,
                emulators: only(dir, &["aarch64", "riscv64", "s390x"]),
                carry: true,
                prelink_base: Some(BASE),
                plain: vec!["aarch64".into()],
                cpu: vec![],
            },
        ),
        (
            "cpu-models-carried-prelinked",
            Spec {
                target: Target::X86_64,
                flags: 0,
                emulators: only(dir, &["aarch64", "arm", "s390x"]),
                carry: true,
                prelink_base: Some(BASE),
                plain: vec![],
                cpu: vec![
                    ("arm".into(), "arm1176".into()),
                    ("aarch64".into(), "max,pauth-impdef=on".into()),
                ],
            },
        ),
    ]
}

/// `image` with each emulator path in its table replaced by
/// `/golden/FILE-NAME`, the rest of the table region as `encode` leaves it.
fn normalised(mut image: Vec<u8>) -> Vec<u8> {
    let range = region(&image).unwrap();
    let region = image[range.clone()].to_vec();
    let table = Table::parse(&region).unwrap();
    let paths: Vec<Vec<u8>> = table
        .iter()
        .map(|e| {
            let name = Path::new(std::str::from_utf8(e.path).unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            format!("/golden/{name}").into_bytes()
        })
        .collect();
    let entries: Vec<Entry<'_>> = table
        .iter()
        .zip(&paths)
        .map(|(e, p)| Entry { path: p, ..e })
        .collect();
    let mut fresh = vec![0u8; range.len()];
    dispatch::encode(&entries, table.flags(), &mut fresh).unwrap();
    image[range].copy_from_slice(&fresh);
    image
}

/// The inputs' and outputs' hashes, one `KIND NAME SHA256` line each.
fn record() -> String {
    let shim_path = target_dir().join("release").join(INTERP);
    let shim = fs::read(&shim_path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}: run `cargo build --release --workspace` first",
            shim_path.display()
        )
    });
    let links = tempfile::tempdir().unwrap();
    link_emulators(links.path());
    let mut out = String::new();
    let _ = writeln!(out, "input {} {}", INTERP, sha256(&shim));
    for (_, p) in all_foreign(links.path()) {
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let _ = writeln!(out, "input {name} {}", sha256(&fs::read(&p).unwrap()));
    }
    for (name, config) in configs(links.path()) {
        let built = build(&shim, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
        let _ = writeln!(out, "output {name} {}", sha256(&normalised(built.image)));
    }
    out
}

fn lines_of<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.split(' ').next() == Some(kind))
        .collect()
}

#[test]
fn interpreter_files_match_their_golden_hashes() {
    let got = record();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("QEMU_SHIM_GOLDEN").is_some_and(|v| v == "update") {
        let header = "# Golden hashes of interpreter files (crates/interpfile/tests/golden.rs).\n\
                      # Re-record: QEMU_SHIM_GOLDEN=update cargo test -p qemu-shim-interpfile --test golden\n";
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{header}{got}")).unwrap();
        return;
    }
    let want =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        lines_of(&got, "input"),
        lines_of(&want, "input"),
        "the interpreter or the emulators differ from those the golden hashes were recorded \
         with, so the recorded outputs say nothing about this build: if that is intended, \
         re-record with QEMU_SHIM_GOLDEN=update in a commit that changes no linker code"
    );
    assert_eq!(
        lines_of(&got, "output"),
        lines_of(&want, "output"),
        "the same inputs now make other interpreter files"
    );
}

#[test]
fn the_normalisation_only_touches_the_table_paths() {
    // Two builds that differ only in where the emulator is read from
    // normalise to the same bytes; a different base does not.
    let shim = fs::read(target_dir().join("release").join(INTERP)).unwrap();
    let emu = all_foreign(&fixture_qemu_dir())
        .into_iter()
        .find(|(a, _)| a == "riscv64")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("elsewhere-qemu-riscv64-static");
    fs::copy(&emu.1, &copy).unwrap();
    let build = |path: &Path, base: u64| {
        let config = Spec {
            target: Target::X86_64,
            flags: 0,
            emulators: vec![("riscv64".into(), path.to_path_buf())],
            carry: true,
            prelink_base: Some(base),
            plain: vec![],
            cpu: vec![],
        };
        build(&shim, &config).unwrap().image
    };
    let a = build(&emu.1, BASE);
    let renamed = tmp.path().join("qemu-riscv64-static");
    fs::rename(&copy, &renamed).unwrap();
    let b = build(&renamed, BASE);
    assert_ne!(a, b, "the table holds no path?");
    assert_eq!(normalised(a.clone()), normalised(b));
    let c = build(&emu.1, BASE + 0x20_0000);
    assert_ne!(normalised(a), normalised(c));
}
