//! Property tests of every parser that reads what someone else wrote: the
//! ELF header checks (`elf::Header::parse`, `check_segments`, `validate`,
//! and `arch::classify`), the dispatch table the interpreter reads at every
//! exec (`dispatch::Table::parse`), and the kernel's text formats
//! (`RegisterLine`, `EntryFile`, `parse_binfmt_d`).
//!
//! Each property runs a few thousand cases from a fixed seed, so a run is
//! deterministic and a failure names the case that reproduces it. The
//! inputs are real headers (the committed cross-toolchain headers and the
//! tiny per-arch programs of `probe::exit_program`) and valid tables and
//! lines, damaged in the ways that find bugs: bytes overwritten, bits
//! flipped, fields set to boundary values, cut short, extended.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use goblin::container::{Container, Ctx};
use goblin::elf::program_header::{ProgramHeader, PT_LOAD};
use goblin::elf::Elf;
use qemu_shim_registry::arch::{self, ARCHES};
use qemu_shim_registry::dispatch::{
    self, Carried, Convention, Entry, Segment, Table, TableError, MAX_SEGMENTS, REGION_SIZE,
};
use qemu_shim_registry::elf::{self, Class, Header, MAX_PHDR_BYTES};
use qemu_shim_registry::format::{parse_binfmt_d, EntryFile, Flags, Kind, RegisterLine};
use qemu_shim_registry::probe;

/// A small deterministic generator (splitmix64): no dependency, and the
/// same cases on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max` random bytes.
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        self.bytes(n)
    }
    /// A size below `usual`, or once in `one_in` times below `rare`.
    fn size(&mut self, one_in: usize, rare: usize, usual: usize) -> usize {
        let max = if self.chance(one_in) { rare } else { usual };
        self.below(max)
    }
}

/// Runs `f` on case `i`, turning a panic into a failure that shows the
/// input, so the case can be replayed.
fn case<T: std::fmt::Debug>(what: &str, i: usize, input: &T, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what}: case {i} panicked (see above) on input {input:?}");
    }
}

// ---------------------------------------------------------------------------
// ELF headers

/// The committed cross-toolchain headers (`tests/fixtures/headers/*.hex`).
fn committed_headers() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/headers");
    let mut out = Vec::new();
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    names.sort();
    for p in names {
        let text = fs::read_to_string(&p).unwrap();
        let bytes: Vec<u8> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split_whitespace())
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        out.push(bytes);
    }
    assert!(
        out.len() > 40,
        "too few committed headers in {}",
        dir.display()
    );
    out
}

/// Whole, valid programs: one per arch that has a generator.
fn whole_programs() -> Vec<Vec<u8>> {
    let v: Vec<Vec<u8>> = ARCHES
        .iter()
        .filter_map(|a| probe::exit_program(a.name))
        .collect();
    assert!(v.len() > 25, "too few generated programs");
    v
}

/// Values that sit on the edges the checks test.
fn boundary(rng: &mut Rng, len: usize) -> u64 {
    let len = len as u64;
    *rng.pick(&[
        0,
        1,
        2,
        3,
        0x20,
        0x38,
        0x40,
        0x7f,
        0x80,
        0xff,
        0x100,
        0xfff,
        0x1000,
        0xffff,
        0x1_0000,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
        u64::MAX - 1,
        len.wrapping_sub(1),
        len,
        len + 1,
        len / 2,
        (MAX_PHDR_BYTES / 56) as u64,
        (MAX_PHDR_BYTES / 56 + 1) as u64,
        (MAX_PHDR_BYTES / 32) as u64,
        (MAX_PHDR_BYTES / 32 + 1) as u64,
    ])
}

/// Damages `buf` in one of several ways.
fn damage(rng: &mut Rng, buf: &mut Vec<u8>) {
    // Most of the interesting bytes: the header and the first program
    // headers.
    let hot = buf.len().clamp(1, 64 + 3 * 56);
    match rng.below(7) {
        0 => {
            let at = rng.below(hot);
            if let Some(b) = buf.get_mut(at) {
                *b = rng.next() as u8;
            }
        }
        1 => {
            let at = rng.below(buf.len().max(1));
            if let Some(b) = buf.get_mut(at) {
                *b ^= 1 << rng.below(8);
            }
        }
        2 | 3 => {
            // A field-sized write of a boundary value, either byte order.
            let width = *rng.pick(&[2usize, 4, 8]);
            let at = rng.below(hot) & !(width - 1);
            let v = boundary(rng, buf.len());
            let bytes = if rng.chance(2) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let src = if rng.chance(2) {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            if let Some(dst) = buf.get_mut(at..at + width) {
                dst.copy_from_slice(src);
            }
        }
        4 => {
            let n = rng.below(buf.len() + 1);
            buf.truncate(n);
        }
        5 => {
            let n = rng.below(300);
            let extra = rng.bytes(n);
            buf.extend_from_slice(&extra);
        }
        _ => {
            // Identification bytes: class, byte order, version.
            let at = 4 + rng.below(3);
            if let Some(b) = buf.get_mut(at) {
                *b = *rng.pick(&[0, 1, 2, 3, 0xff]);
            }
        }
    }
}

/// Checks one buffer: no panic anywhere, and whatever `validate` accepts,
/// an independent parser (goblin) reads the same way, with every loadable
/// segment inside the file.
fn check_elf(buf: &[u8], file_size: u64) {
    let _ = arch::classify(buf);
    let parsed = Header::parse(buf);
    if let Ok(h) = parsed {
        let (off, len) = h.phdr_range();
        assert!(len <= MAX_PHDR_BYTES);
        // check_segments on whatever slice the caller may hand it.
        if let Some(start) = usize::try_from(off).ok().filter(|&o| o <= buf.len()) {
            let _ = h.check_segments(&buf[start..], file_size);
            let _ = h.check_segments(&buf[start..(start + len).min(buf.len())], file_size);
        }
        let _ = h.check_segments(&[], file_size);
        let _ = h.check_segments(buf, u64::MAX);
    }
    let Ok(h) = elf::validate(buf, file_size) else {
        return;
    };
    assert_eq!(parsed, Ok(h));
    if file_size != buf.len() as u64 {
        return;
    }
    let g = Elf::parse_header(buf).expect("validate accepted what goblin cannot read");
    assert_eq!(g.e_machine, h.machine);
    assert_eq!(g.e_phnum, h.phnum);
    assert_eq!(g.e_phoff, h.phoff);
    let container = if h.class == Class::Elf64 {
        Container::Big
    } else {
        Container::Little
    };
    assert_eq!(g.container().unwrap(), container);
    let ctx = Ctx::new(container, g.endianness().unwrap());
    let phdrs = ProgramHeader::parse(buf, h.phoff as usize, usize::from(h.phnum), ctx)
        .expect("validate accepted program headers goblin cannot read");
    let loads: Vec<_> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    assert!(!loads.is_empty(), "accepted without a loadable segment");
    for p in loads {
        let end = p.p_offset.checked_add(p.p_filesz);
        assert!(
            end.is_some_and(|e| e <= buf.len() as u64),
            "accepted a segment outside the file: {p:?}"
        );
        assert!(p.p_filesz <= p.p_memsz, "accepted filesz > memsz: {p:?}");
        assert!(
            p.p_filesz == p.p_memsz || p.is_write(),
            "accepted a read-only segment with a zero-filled part: {p:?}"
        );
    }
}

#[test]
fn damaged_elf_headers_never_panic_and_accepted_ones_are_sound() {
    let seeds: Vec<Vec<u8>> = committed_headers()
        .into_iter()
        .chain(whole_programs())
        .collect();
    // The seeds themselves: whole programs validate, committed headers
    // (first bytes only) at least parse.
    for s in &seeds {
        check_elf(s, s.len() as u64);
    }
    for p in whole_programs() {
        elf::validate(&p, p.len() as u64).expect("a generated program is valid");
    }
    let mut rng = Rng::new(0x5eed_e1f0);
    let mut accepted = 0;
    const CASES: usize = 30_000;
    for i in 0..CASES {
        let mut buf = rng.pick(&seeds).clone();
        for _ in 0..1 + rng.below(4) {
            damage(&mut rng, &mut buf);
        }
        let size = match rng.below(8) {
            0 => rng.next() >> rng.below(64),
            1 => (buf.len() as u64).saturating_sub(1 + rng.below(64) as u64),
            _ => buf.len() as u64,
        };
        case("ELF", i, &(&buf, size), || check_elf(&buf, size));
        accepted += usize::from(elf::validate(&buf, buf.len() as u64).is_ok());
    }
    // Not a property, a check that the damage is mild enough to reach the
    // segment checks (and not only the magic).
    assert!(
        accepted > CASES / 50,
        "only {accepted} of {CASES} damaged headers validate: the generator is too harsh"
    );
}

/// qemu-user 7.2 dies by SIGSEGV loading a read-only segment whose memory
/// size exceeds its file size (found by the damaged-program corpus in the
/// suite's tests/integration/hostile.rs): such a file is refused, a
/// writable one kept.
#[test]
fn read_only_segments_with_a_zero_filled_part_are_refused() {
    let p = probe::exit_program("aarch64").unwrap();
    let len = p.len() as u64;
    // The one program header: p_flags at 68, p_memsz at 104 (ELF64).
    let with = |flags: u32, memsz: u64| {
        let mut f = p.clone();
        f[68..72].copy_from_slice(&flags.to_le_bytes());
        f[104..112].copy_from_slice(&memsz.to_le_bytes());
        elf::validate(&f, len).map(|_| ())
    };
    assert_eq!(with(5, len), Ok(()));
    assert_eq!(with(5, len + 1), Err(elf::ElfError::ZeroFillNotWritable));
    assert_eq!(
        with(4, len + 0x10000),
        Err(elf::ElfError::ZeroFillNotWritable)
    );
    assert_eq!(with(7, len + 1), Ok(()));
    assert_eq!(with(6, len + 0x10000), Ok(()));
}

#[test]
fn arbitrary_bytes_after_the_elf_magic_never_panic() {
    let mut rng = Rng::new(0xe1f_b17e5);
    for i in 0..20_000 {
        let n = rng.below(400);
        let mut buf = b"\x7fELF".to_vec();
        buf.extend_from_slice(&rng.bytes(n));
        if rng.chance(2) && buf.len() > 6 {
            buf[4] = 1 + rng.below(2) as u8;
            buf[5] = 1 + rng.below(2) as u8;
            buf[6] = 1;
        }
        let size = if rng.chance(4) {
            rng.next()
        } else {
            buf.len() as u64
        };
        case("ELF bytes", i, &buf, || check_elf(&buf, size));
    }
}

// ---------------------------------------------------------------------------
// The dispatch table

fn arch_name(rng: &mut Rng) -> String {
    if rng.chance(2) {
        return rng.pick(ARCHES).name.to_string();
    }
    let n = 1 + rng.below(30);
    (0..n)
        .map(|_| char::from(*rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789_-")))
        .collect()
}

fn emulator_path(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.size(20, 3000, 120);
    (0..n).map(|_| 1 + rng.below(255) as u8).collect()
}

fn convention(rng: &mut Rng) -> Convention {
    if rng.chance(2) {
        return Convention::ExecByPath;
    }
    let n = rng.below(MAX_SEGMENTS + 1);
    let segs: Vec<Segment> = (0..n)
        .map(|_| Segment {
            offset: rng.next(),
            len: rng.next(),
            prot: rng.next() as u32,
        })
        .collect();
    Convention::Carried(
        Carried::new(rng.next(), rng.next(), rng.next(), rng.next() as u16, &segs)
            .expect("at most MAX_SEGMENTS"),
    )
}

#[test]
fn dispatch_tables_round_trip_and_damaged_ones_never_panic() {
    let mut rng = Rng::new(0xd15_7a7c4);
    let mut round_trips = 0;
    for i in 0..4_000 {
        let n = rng.size(10, 80, 8);
        let names: Vec<String> = (0..n).map(|_| arch_name(&mut rng)).collect();
        let paths: Vec<Vec<u8>> = (0..n).map(|_| emulator_path(&mut rng)).collect();
        let entries: Vec<Entry<'_>> = names
            .iter()
            .zip(&paths)
            .map(|(a, p)| Entry {
                arch: a,
                convention: convention(&mut rng),
                path: p,
                cpu: if rng.next().is_multiple_of(2) {
                    b"max"
                } else {
                    b""
                },
            })
            .collect();
        let flags = rng.next() as u16;
        let mut region = vec![0u8; REGION_SIZE];
        match dispatch::encode(&entries, flags, &mut region) {
            Ok(used) => {
                round_trips += 1;
                let t = Table::parse(&region).unwrap_or_else(|e| {
                    panic!("case {i}: encoded table does not parse: {e}: {entries:?}")
                });
                assert_eq!(t.flags(), flags, "case {i}");
                assert_eq!(t.len(), entries.len(), "case {i}");
                assert_eq!(t.iter().collect::<Vec<_>>(), entries, "case {i}");
                for e in &entries {
                    // The first entry of a name is the one found.
                    let first = entries.iter().find(|x| x.arch == e.arch);
                    assert_eq!(t.find(e.arch).as_ref(), first, "case {i}");
                }
                // A region cut anywhere inside the table is refused, not
                // misread.
                let cut = rng.below(used);
                assert!(
                    Table::parse(&region[..cut]).is_err(),
                    "case {i}: cut at {cut}"
                );
            }
            Err(TableError::TooLarge) => {}
            Err(e) => panic!("case {i}: encode refused valid entries: {e}: {entries:?}"),
        }
        // Damaged regions: whatever parses must be self-consistent.
        for _ in 0..4 {
            let mut bad = region.clone();
            for _ in 0..1 + rng.below(6) {
                match rng.below(4) {
                    0 => {
                        let at = rng.below(64.min(bad.len()));
                        bad[at] = rng.next() as u8;
                    }
                    1 => {
                        let at = rng.below(bad.len());
                        bad[at] = rng.next() as u8;
                    }
                    2 => {
                        let at = rng.below(bad.len());
                        bad[at] ^= 1 << rng.below(8);
                    }
                    _ => {
                        // Lengths and counts: the used size, the count.
                        let at = *rng.pick(&[12usize, 14, 16, 18, 20]);
                        let v = rng.next() as u16;
                        bad[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            case("table", i, &bad.get(..64), || {
                if let Ok(t) = Table::parse(&bad) {
                    let all: Vec<Entry<'_>> = t.iter().collect();
                    assert_eq!(all.len(), t.len());
                    for e in &all {
                        assert!(!e.arch.is_empty() && !e.path.is_empty());
                        assert!(!e.path.contains(&0));
                        let _ = t.find(e.arch);
                    }
                }
            });
        }
    }
    assert!(round_trips > 3_000, "only {round_trips} tables fitted");
    // Arbitrary bytes, with and without the magic and version.
    for i in 0..5_000 {
        let n = rng.below(REGION_SIZE + 100);
        let mut bytes = rng.bytes(n);
        if rng.chance(2) && bytes.len() >= 10 {
            bytes[..8].copy_from_slice(&dispatch::MAGIC);
            bytes[8..10].copy_from_slice(&dispatch::VERSION.to_le_bytes());
        }
        case("table bytes", i, &bytes.get(..32), || {
            if let Ok(t) = Table::parse(&bytes) {
                assert_eq!(t.iter().count(), t.len());
            }
        });
    }
}

// ---------------------------------------------------------------------------
// The kernel's text formats

/// Up to `usual` characters of `alphabet`, once in 20 times up to `rare`.
fn text_field(rng: &mut Rng, alphabet: &[u8], usual: usize, rare: usize) -> String {
    let n = rng.size(20, rare + 1, usual + 1);
    (0..n).map(|_| char::from(*rng.pick(alphabet))).collect()
}

/// A register line built from parts, usually valid, sometimes not.
fn register_line(rng: &mut Rng) -> RegisterLine {
    let name_chars = b"abcdefghijklmnopqrstuvwxyz-_.0123456789:|#/ \\";
    let path_chars = b"/abcdefghijklmnopqrstuvwxyz-_.0123456789:|# \\x";
    let kind = if rng.chance(4) {
        Kind::Extension(text_field(rng, name_chars, 12, 12))
    } else {
        let len = rng.size(10, 300, 40);
        let magic = rng.bytes(len);
        let mask = if rng.chance(3) {
            None
        } else if rng.chance(10) {
            Some(rng.some_bytes(40))
        } else {
            Some(rng.bytes(len))
        };
        Kind::Magic {
            offset: if rng.chance(10) {
                rng.below(1000)
            } else {
                rng.below(40)
            },
            magic,
            mask,
        }
    };
    let flags = ["", "P", "O", "C", "F", "POCF", "PF", "OC", "PO"];
    RegisterLine {
        name: text_field(rng, name_chars, 20, 300),
        kind,
        interpreter: text_field(rng, path_chars, 40, 2000),
        flags: rng.pick(&flags).parse::<Flags>().unwrap(),
    }
}

/// Damages a line of text: characters replaced, inserted, removed, cut.
fn damage_text(rng: &mut Rng, s: &str) -> String {
    let alphabet = b":|#\\xX0123456789abcdefABCDEFMEPOCF/\n\r\t +-.";
    let mut b = s.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] = *rng.pick(alphabet);
            }
            1 => {
                let at = rng.below(b.len() + 1);
                b.insert(at, *rng.pick(alphabet));
            }
            2 if !b.is_empty() => {
                let at = rng.below(b.len());
                b.remove(at);
            }
            _ => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn register_lines_round_trip_and_damaged_ones_never_panic() {
    let mut rng = Rng::new(0x2e9_15e7);
    let mut valid = 0;
    for i in 0..20_000 {
        let line = register_line(&mut rng);
        let text = line.to_string();
        if line.validate().is_ok() {
            valid += 1;
            let back: RegisterLine = text
                .parse()
                .unwrap_or_else(|e| panic!("case {i}: {text:?} does not parse: {e}"));
            assert_eq!(back, line, "case {i}: {text:?}");
        }
        let bad = damage_text(&mut rng, &text);
        case("register line", i, &bad, || {
            if let Ok(l) = bad.parse::<RegisterLine>() {
                // Whatever parses has a canonical form that reads back the
                // same.
                let canon = l.to_string();
                let again: RegisterLine = canon
                    .parse()
                    .unwrap_or_else(|e| panic!("canonical {canon:?} does not parse: {e}"));
                assert_eq!(again, l, "{canon:?}");
                assert_eq!(again.to_string(), canon);
                let _ = l.expected_entry();
            }
        });
    }
    assert!(valid > 5_000, "only {valid} generated lines were valid");
}

/// An entry file as the kernel prints it, usually.
fn entry_text(rng: &mut Rng) -> String {
    let line = register_line(rng);
    let e = line.expected_entry();
    let mut t = String::from(if rng.chance(3) {
        "disabled\n"
    } else {
        "enabled\n"
    });
    t += &format!("interpreter {}\n", e.interpreter);
    t += &format!("flags: {}\n", e.raw_flags);
    if let Some(ext) = &e.extension {
        t += &format!("extension .{ext}\n");
    } else {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        t += &format!("offset {}\n", e.offset.unwrap_or(0));
        t += &format!("magic {}\n", hex(e.magic.as_deref().unwrap_or(&[])));
        if let Some(m) = &e.mask {
            t += &format!("mask {}\n", hex(m));
        }
    }
    if rng.chance(5) {
        t += "some future line\n";
    }
    t
}

#[test]
fn entry_files_and_binfmt_d_never_panic() {
    let mut rng = Rng::new(0xe7_7e1e);
    for i in 0..20_000 {
        let good = entry_text(&mut rng);
        let text = if rng.chance(3) {
            good
        } else {
            damage_text(&mut rng, &good)
        };
        let header = rng.some_bytes(300);
        case("entry file", i, &text, || {
            if let Ok(e) = EntryFile::parse(&text) {
                let _ = e.matches(&header);
                if let Some(l) = e.register_line("x") {
                    let _ = l.validate();
                    let _ = l.to_string();
                }
            }
        });
    }
    for i in 0..3_000 {
        let mut text = String::new();
        for _ in 0..rng.below(8) {
            match rng.below(4) {
                0 => text += "# a comment\n",
                1 => text += "   \n",
                _ => {
                    let l = register_line(&mut rng).to_string();
                    let l = if rng.chance(2) {
                        damage_text(&mut rng, &l)
                    } else {
                        l
                    };
                    text += &l;
                    text.push('\n');
                }
            }
        }
        case("binfmt.d", i, &text, || {
            for l in parse_binfmt_d(&text).into_iter().flatten() {
                let canon = l.to_string();
                assert_eq!(canon.parse::<RegisterLine>().as_ref(), Ok(&l), "{canon:?}");
            }
        });
    }
}
