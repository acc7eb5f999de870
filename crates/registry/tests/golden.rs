//! Golden tests of the arch table against real program headers.
//!
//! Three corpora: Debian's busybox-static for eight foreign arches and
//! Debian's qemu-*-static (x86_64 host programs), both fetched into the
//! fixture cache by `scripts/fetch-fixtures`; and the headers of tiny
//! programs made by cross toolchains, committed under
//! `tests/fixtures/headers/` by `scripts/gen-cross-headers`. Every header
//! must match exactly the row it was made for, and the table's invariants
//! (the kernel's limits, unique names) must hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::{self, Arch, Checked, ARCHES};
use qemu_shim_registry::elf;

/// Debian arch of each busybox-static fixture, and the row it must match.
const BUSYBOX: &[(&str, &str)] = &[
    ("arm64", "aarch64"),
    ("armel", "arm"),
    ("armhf", "arm"),
    ("mips64el", "mips64el"),
    ("mipsel", "mipsel"),
    ("ppc64el", "ppc64le"),
    ("s390x", "s390x"),
    ("i386", "i386"),
];

/// Emulators Debian's qemu-user-static ships that no row uses: qemu's
/// binfmt script does not list these targets.
const UNUSED_EMULATORS: &[&str] = &["qemu-cris", "qemu-nios2"];

/// The fixture cache, as `scripts/fetch-fixtures` lays it out.
fn fixtures() -> PathBuf {
    match std::env::var_os("QEMU_SHIM_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"),
    }
}

fn missing(path: &Path) -> ! {
    panic!(
        "fixture {} is missing: run scripts/fetch-fixtures (as root) first",
        path.display()
    )
}

/// The first 4096 bytes of a program and its real size.
fn read_prefix(path: &Path) -> (Vec<u8>, u64) {
    let Ok(file) = fs::File::open(path) else {
        missing(path)
    };
    let size = file
        .metadata()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let mut buf = Vec::with_capacity(4096);
    file.take(4096)
        .read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (buf, size)
}

/// The rows matching `header`, by name.
fn matching(header: &[u8]) -> Vec<&'static str> {
    ARCHES
        .iter()
        .filter(|a| a.matches(header))
        .map(|a| a.name)
        .collect()
}

/// Asserts `header` matches row `want` and no other, by the kernel's rule
/// and by `classify`.
fn assert_only(header: &[u8], want: &str, what: &str) {
    assert_eq!(matching(header), [want], "{what}: rows matched");
    assert_eq!(
        arch::classify(header).map(|a| a.name),
        Some(want),
        "{what}: classify"
    );
}

/// A committed cross-toolchain header: row, variant, bytes.
struct HexHeader {
    row: String,
    variant: String,
    bytes: Vec<u8>,
}

fn headers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/headers")
}

/// Parses the `<row>-<variant>.hex` files: `#` lines are comments, the rest
/// is whitespace-separated hex bytes.
fn hex_headers() -> Vec<HexHeader> {
    let dir = headers_dir();
    let mut out = Vec::new();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("reading the headers dir").path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".hex"))
        else {
            continue;
        };
        let (row, variant) = stem
            .split_once('-')
            .unwrap_or_else(|| panic!("{}: name is not <row>-<variant>.hex", path.display()));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bytes = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace)
            .map(|b| {
                u8::from_str_radix(b, 16)
                    .unwrap_or_else(|e| panic!("{}: bad byte {b:?}: {e}", path.display()))
            })
            .collect();
        out.push(HexHeader {
            row: row.to_owned(),
            variant: variant.to_owned(),
            bytes,
        });
    }
    out.sort_by(|a, b| (&a.row, &a.variant).cmp(&(&b.row, &b.variant)));
    assert!(!out.is_empty(), "no headers in {}", dir.display());
    out
}

/// The qemu-*-static programs in the fixture cache.
fn qemu_programs() -> Vec<PathBuf> {
    let dir = fixtures().join("qemu");
    let Ok(entries) = fs::read_dir(&dir) else {
        missing(&dir)
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("reading the qemu fixture dir").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("qemu-") && n.ends_with("-static"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        missing(&dir.join("qemu-aarch64-static"));
    }
    out
}

#[test]
fn busybox_fixtures_match_their_row_only_and_validate() {
    for &(debian, row) in BUSYBOX {
        let path = fixtures().join("busybox").join(debian).join("busybox");
        let (buf, size) = read_prefix(&path);
        let what = format!("busybox-static:{debian}");
        assert_only(&buf, row, &what);
        if let Err(e) = elf::validate(&buf, size) {
            panic!("{what}: elf::validate: {e}");
        }
    }
}

#[test]
fn qemu_programs_are_x86_64_and_validate() {
    for path in qemu_programs() {
        let (buf, size) = read_prefix(&path);
        let what = path.display().to_string();
        assert_only(&buf, "x86_64", &what);
        if let Err(e) = elf::validate(&buf, size) {
            panic!("{what}: elf::validate: {e}");
        }
    }
}

#[test]
fn every_emulator_is_in_debians_package() {
    let shipped: BTreeSet<String> = qemu_programs()
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_suffix("-static"))
        .map(str::to_owned)
        .collect();
    for a in ARCHES {
        assert!(
            shipped.contains(a.emulator),
            "{}: {} is not in qemu-user-static ({:?})",
            a.name,
            a.emulator,
            shipped
        );
    }
    // The other way round: an emulator Debian adds shows up here, so the
    // table is reviewed when the package changes.
    for e in &shipped {
        assert!(
            ARCHES.iter().any(|a| a.emulator == e) || UNUSED_EMULATORS.contains(&e.as_str()),
            "qemu-user-static ships {e}, which no row uses"
        );
    }
}

#[test]
fn cross_headers_match_their_row_only() {
    for h in hex_headers() {
        let what = format!("{}-{}.hex", h.row, h.variant);
        assert!(arch::by_name(&h.row).is_some(), "{what}: no row {}", h.row);
        assert_only(&h.bytes, &h.row, &what);
        // The header is a program's, of the kind its name says: both
        // ET_EXEC and ET_DYN must match, so the corpus must hold both.
        let hdr = elf::Header::parse(&h.bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        let want = if h.variant.ends_with("pie") { 3 } else { 2 };
        assert_eq!(hdr.e_type, want, "{what}: e_type");
    }
}

#[test]
fn checked_says_what_the_corpus_holds() {
    let mut cross: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for h in hex_headers() {
        let t = elf::Header::parse(&h.bytes).map_or(0, |hdr| hdr.e_type);
        cross.entry(h.row).or_default().insert(t);
    }
    let real: BTreeSet<&str> = BUSYBOX
        .iter()
        .map(|&(_, row)| row)
        .chain(["x86_64"])
        .collect();
    for a in ARCHES {
        let kinds = cross.get(a.name);
        // or1k's only Debian toolchain (bare-metal or1k-elf) links no PIE.
        let pie_needed = a.name != "or1k";
        let both = kinds.is_some_and(|k| k.contains(&2) && (k.contains(&3) || !pie_needed));
        match a.checked {
            Checked::RealBinary => assert!(real.contains(a.name), "{}: no real binary", a.name),
            Checked::CrossBinutils | Checked::CrossLlvm => assert!(
                both,
                "{}: needs an exec and a pie header in {}",
                a.name,
                headers_dir().display()
            ),
            Checked::ByHand => assert!(
                kinds.is_none() && !real.contains(a.name),
                "{}: has real headers now: mark how it is checked",
                a.name
            ),
        }
    }
}

#[test]
fn no_header_in_the_corpus_matches_two_rows() {
    let mut corpus: Vec<(String, Vec<u8>)> = hex_headers()
        .into_iter()
        .map(|h| (format!("{}-{}.hex", h.row, h.variant), h.bytes))
        .collect();
    for &(debian, _) in BUSYBOX {
        let path = fixtures().join("busybox").join(debian).join("busybox");
        corpus.push((path.display().to_string(), read_prefix(&path).0));
    }
    for path in qemu_programs() {
        corpus.push((path.display().to_string(), read_prefix(&path).0));
    }
    for (what, bytes) in &corpus {
        let m = matching(bytes);
        assert!(m.len() == 1, "{what} matches {m:?}");
    }
}

#[test]
fn no_two_rows_can_match_one_header() {
    // Two rows can both match some header unless a byte both compare has a
    // bit both compare set differently.
    for (i, a) in ARCHES.iter().enumerate() {
        for b in &ARCHES[i + 1..] {
            let disjoint = (0..256usize).any(|at| {
                let byte = |r: &Arch| {
                    at.checked_sub(r.offset)
                        .and_then(|j| Some((*r.magic.get(j)?, *r.mask.get(j)?)))
                };
                match (byte(a), byte(b)) {
                    (Some((ma, ka)), Some((mb, kb))) => (ma ^ mb) & ka & kb != 0,
                    _ => false,
                }
            });
            assert!(disjoint, "rows {} and {} overlap", a.name, b.name);
        }
    }
}

#[test]
fn rows_are_well_formed() {
    let mut names = BTreeSet::new();
    let mut platforms = BTreeSet::new();
    for a in ARCHES {
        assert!(!a.magic.is_empty(), "{}: empty magic", a.name);
        assert_eq!(
            a.magic.len(),
            a.mask.len(),
            "{}: magic/mask lengths",
            a.name
        );
        assert!(a.offset + a.magic.len() <= 256, "{}: past byte 256", a.name);
        for (i, (m, k)) in a.magic.iter().zip(a.mask).enumerate() {
            assert_eq!(
                m & !k,
                0,
                "{}: magic byte {i} has bits the mask drops",
                a.name
            );
        }
        // The rows compare `\x7fELF` and the class and byte order.
        assert_eq!(a.offset, 0, "{}", a.name);
        assert_eq!(&a.magic[..4], b"\x7fELF", "{}", a.name);
        assert_eq!(&a.mask[..6], b"\xff\xff\xff\xff\xff\xff", "{}", a.name);
        assert!(
            a.emulator.starts_with("qemu-") && !a.emulator.ends_with("-static"),
            "{}: emulator {}",
            a.name,
            a.emulator
        );
        assert!(names.insert(a.name), "duplicate row name {}", a.name);
        for &p in a.platforms {
            assert!(p.starts_with("linux/"), "{}: platform {p}", a.name);
            assert!(platforms.insert(p), "platform {p} on two rows");
        }
        assert_eq!(arch::by_name(a.name).map(|r| r.name), Some(a.name));
        assert_eq!(arch::lookup(a.name).map(|r| r.name), Some(a.name));
        for &p in a.platforms {
            assert_eq!(arch::lookup(p).map(|r| r.name), Some(a.name), "{p}");
        }
        assert_eq!(a.platform(), a.platforms.first().copied());
    }
    assert!(arch::lookup("linux/unknown").is_none());
}

/// Every spelling of every row (qemu's name, Debian's, the platform names
/// with and without `linux/`, each in upper case too, and each after
/// `qemu-shim-`) is claimed by that row only, and `lookup` finds it: no name
/// a user types can mean two arches (issue 18, item 3).
#[test]
fn every_spelling_names_exactly_one_row() {
    let spellings = |a: &'static arch::Arch| {
        let mut v: Vec<String> = vec![a.name.to_string()];
        v.extend(a.debian.iter().map(|d| d.to_string()));
        for p in a.platforms {
            v.push(p.to_string());
            v.push(p.strip_prefix("linux/").unwrap().to_string());
        }
        v
    };
    for a in ARCHES {
        for s in spellings(a) {
            let claimed: Vec<&str> = ARCHES
                .iter()
                .filter(|r| spellings(r).contains(&s))
                .map(|r| r.name)
                .collect();
            assert_eq!(claimed, [a.name], "{s} is a spelling of {claimed:?}");
            for typed in [
                s.clone(),
                s.to_uppercase(),
                format!("qemu-shim-{s}"),
                format!("QEMU-SHIM-{}", s.to_uppercase()),
            ] {
                assert_eq!(
                    arch::lookup(&typed).map(|r| r.name),
                    Some(a.name),
                    "{typed}"
                );
            }
        }
    }
    // Debian's names as quickstart and apt print them.
    for (debian, qemu) in [
        ("armhf", "arm"),
        ("armel", "arm"),
        ("ppc64el", "ppc64le"),
        ("mips64el", "mips64el"),
        ("powerpc", "ppc"),
        ("loong64", "loongarch64"),
        ("arm64", "aarch64"),
        ("amd64", "x86_64"),
    ] {
        assert_eq!(arch::lookup(debian).map(|r| r.name), Some(qemu), "{debian}");
    }
    // The emulator's name (the distros' entries are named after it).
    assert_eq!(
        arch::lookup("qemu-aarch64").map(|r| r.name),
        Some("aarch64")
    );
    for no in [
        "",
        "qemu-shim-",
        "qemu-",
        "linux/",
        "arm64,riscv64",
        "all",
        "qemu-shim-qemu-shim-arm64",
    ] {
        assert!(arch::lookup(no).is_none(), "{no:?}");
    }
}

#[test]
fn familiar_names_and_qemu_targets() {
    let get = |n| arch::by_name(n).unwrap();
    assert_eq!(get("aarch64").familiar_name(), "arm64");
    assert_eq!(get("ppc64le").familiar_name(), "ppc64el");
    assert_eq!(get("arm").familiar_name(), "arm");
    assert_eq!(get("sparc").familiar_name(), "sparc");
    assert_eq!(get("i486").qemu_target(), "i386");
    for a in ARCHES {
        assert_eq!(format!("qemu-{}", a.qemu_target()), a.emulator);
    }
}

#[test]
fn every_qemu_binfmt_target_has_a_row() {
    // qemu's scripts/qemu-binfmt-conf.sh target list.
    let qemu = "i386 i486 alpha arm armeb sparc sparc32plus sparc64 ppc ppc64 ppc64le m68k \
                mips mipsel mipsn32 mipsn32el mips64 mips64el sh4 sh4eb s390x aarch64 \
                aarch64_be hppa riscv32 riscv64 xtensa xtensaeb microblaze microblazeel or1k \
                x86_64 hexagon loongarch64";
    let want: Vec<&str> = qemu.split_whitespace().collect();
    let have: Vec<&str> = ARCHES.iter().map(|a| a.name).collect();
    assert_eq!(have, want);
}

/// A real header with one field changed.
fn busybox_header(debian: &str) -> Vec<u8> {
    read_prefix(&fixtures().join("busybox").join(debian).join("busybox")).0
}

#[test]
fn mips_abi2_flag_decides_o32_or_n32() {
    // busybox mipsel is o32; the same header with EF_MIPS_ABI2 set is n32.
    let mut h = busybox_header("mipsel");
    assert_eq!(h[36] & 0x20, 0, "fixture is o32");
    h[36] |= 0x20;
    assert_only(&h, "mipsn32el", "mipsel busybox with EF_MIPS_ABI2");
    // Other e_flags bits (ISA level, PIC, NaN encoding) do not matter.
    let mut h = busybox_header("mipsel");
    h[37] ^= 0xff;
    h[38] ^= 0xff;
    h[39] ^= 0xff;
    h[36] ^= 0xdf;
    assert_only(&h, "mipsel", "mipsel busybox with other e_flags");
}

#[test]
fn only_executables_and_shared_objects_match() {
    for (debian, row) in [("arm64", "aarch64"), ("s390x", "s390x")] {
        let h = busybox_header(debian);
        // e_type at 16, in the file's byte order (arm64 LE, s390x BE).
        let at = if h[5] == 1 { 16 } else { 17 };
        for (e_type, want) in [
            (0u8, None),
            (1, None),
            (2, Some(row)),
            (3, Some(row)),
            (4, None),
        ] {
            let mut h = h.clone();
            h[at] = e_type;
            assert_eq!(
                arch::classify(&h).map(|a| a.name),
                want,
                "{debian} with e_type {e_type}"
            );
        }
    }
}

#[test]
fn abi_version_and_osabi_do_not_decide_the_arch() {
    // EI_ABIVERSION: binutils writes 1 (MIPS PLT) and 3 (MIPS32r6 o32).
    for v in [0u8, 1, 3, 5] {
        let mut h = busybox_header("mipsel");
        h[8] = v;
        assert_only(&h, "mipsel", &format!("EI_ABIVERSION {v}"));
    }
    // EI_OSABI: 0 (System V) and 3 (GNU/Linux) both occur in busybox.
    for v in [0u8, 3, 97] {
        let mut h = busybox_header("armel");
        h[7] = v;
        assert_only(&h, "arm", &format!("EI_OSABI {v}"));
    }
}

#[test]
fn truncated_headers_match_nothing() {
    let h = busybox_header("arm64");
    for len in [0, 4, 16, 19] {
        assert_eq!(matching(&h[..len]), Vec::<&str>::new(), "{len} bytes");
    }
    assert_eq!(matching(&h[..20]), ["aarch64"]);
}
