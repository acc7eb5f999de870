//! The dispatch table: what the CLI writes into the interpreter file and the
//! interpreter reads at every exec.
//!
//! The interpreter binary reserves [`REGION_SIZE`] bytes in a section named
//! [`SECTION`], starting with [`MAGIC`] and an empty table. The CLI copies the
//! binary and overwrites that region with [`encode`]; the interpreter reads
//! it with [`Table::parse`]. The format carries a version, so an interpreter
//! file written by another release is refused, not misread.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! 0   magic "QSHIMTBL"            8 bytes
//! 8   version                     u16  (VERSION)
//! 10  flags                       u16  (FLAG_*)
//! 12  entry count                 u16
//! 14  bytes used, header included u16
//! 16  entries, each:
//!       name length  u8           arch name, as in the arch table
//!       convention   u8           0 = exec by path, 1 = carried image,
//!                                 2 = plain command line (box64, FEX)
//!       path length  u16          emulator path, NUL included
//!       cpu length   u8           qemu CPU model (`-cpu`), NUL included;
//!                                 0 = none (qemu's default)
//!       name bytes, path bytes (path ends with NUL), cpu bytes (end with NUL)
//!       for a carried image only:
//!         image u64, entry u64, phdr u64   offsets from the interpreter's
//!                                          load address / the image's start
//!         span u64                         image size if pre-relocated, else 0
//!         phnum u16, segment count N u16, fix count M u16, reserved u16
//!         N x (offset u64, length u64, protection u32, reserved u32)
//!         M x (offset u64, value u64)      words that undo the pre-relocation
//! ```

/// Name of the section that holds the table in the interpreter binary.
pub const SECTION: &str = ".qemu_shim_table";
/// Size of the reserved region, in bytes. Version 1 had 8 KiB, which 31
/// carried emulators under paths of ~45 bytes already overflowed.
pub const REGION_SIZE: usize = 16384;
/// First bytes of the region.
pub const MAGIC: [u8; 8] = *b"QSHIMTBL";
/// Format version this build reads and writes. 2: a CPU model per entry
/// (issue 15), and a 16 KiB region.
pub const VERSION: u16 = 2;
/// The kernel lacks `AT_FLAGS_PRESERVE_ARGV0` (Linux < 5.12) and the entries
/// were registered with `P`: the interpreter must take argv in the P layout
/// without the kernel's word for it.
pub const FLAG_ASSUME_P: u16 = 1;

const HEADER: usize = 16;
/// Bytes of an entry before its name: name length, convention, path
/// length, CPU model length.
const ENTRY_HEADER: usize = 5;

/// The region as it sits in a freshly built interpreter: magic, version, no
/// flags, no entries. Such an interpreter is "unconfigured".
pub const EMPTY_REGION_HEADER: [u8; HEADER] = [
    b'Q',
    b'S',
    b'H',
    b'I',
    b'M',
    b'T',
    b'B',
    b'L',
    VERSION as u8,
    0,
    0,
    0,
    0,
    0,
    HEADER as u8,
    0,
];

/// How the interpreter starts an emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
// A few hundred bytes by value: no allocator in the interpreter to box it,
// and entries are read one at a time.
#[allow(clippy::large_enum_variant)]
pub enum Convention {
    /// `execve(path, [path, "-0", argv0, "--", program, args…], envp)`:
    /// qemu's command line, the program re-opened by path.
    ExecByPath,
    /// The emulator's memory image is carried inside the interpreter file
    /// (mapped by the kernel with the exec); the interpreter sets its
    /// protections and jumps to it with the kernel's calling convention
    /// for a binfmt_misc interpreter (AT_EXECFD, AT_FLAGS).
    Carried(Carried),
    /// `execve(path, [path, program, args…], envp)`: the plain command line
    /// of emulators that take the program as their first argument and have
    /// no option for argv0 (box64, FEXInterpreter: what their own
    /// binfmt_misc registrations hand them without `P`). The program is
    /// re-opened by path; the program's argv0 is not passed on.
    ExecPlain,
}

/// Most loadable segments a carried emulator may have.
pub const MAX_SEGMENTS: usize = 6;

/// Page protection bits, as mmap's PROT_*.
pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;

/// One range of a carried image and the protection it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// Offset from the image's start, page-aligned.
    pub offset: u64,
    /// Length in bytes, a whole number of pages.
    pub len: u64,
    /// PROT_* bits.
    pub prot: u32,
}

/// Where a carried emulator sits in the interpreter's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Image start, as an offset from the interpreter's load address.
    pub image: u64,
    /// Entry point, as an offset from the image's start.
    pub entry: u64,
    /// The emulator's program headers in memory, from the image's start.
    pub phdr: u64,
    /// Number of program headers.
    pub phnum: u16,
    segments: [Segment; MAX_SEGMENTS],
    nseg: u16,
    /// Non-zero when the image is pre-relocated for the address it sits
    /// at: its size, the range the interpreter moves to a random address
    /// for a setuid exec.
    pub span: u64,
    fixes: [Fix; MAX_FIXES],
    nfix: u16,
}

/// Most words a pre-relocated image needs restored to be relocated again.
pub const MAX_FIXES: usize = 4;

/// A word of a pre-relocated image and the value it had before: writing
/// the values back (into the emulator's dynamic section) makes its C
/// library apply its relocations at start-up again, for wherever the image
/// then is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fix {
    /// Offset from the image's start.
    pub offset: u64,
    /// The original value.
    pub value: u64,
}

impl Carried {
    /// Bytes of the fixed part a carried entry adds after its path.
    const FIXED_LEN: usize = 8 * 4 + 8;
    /// Bytes of each segment.
    const SEGMENT_LEN: usize = 24;
    /// Bytes of each fix.
    const FIX_LEN: usize = 16;

    /// Bytes a carried entry adds after its path.
    pub fn encoded_len(&self) -> usize {
        Self::FIXED_LEN
            + usize::from(self.nseg) * Self::SEGMENT_LEN
            + usize::from(self.nfix) * Self::FIX_LEN
    }

    /// The same image, marked pre-relocated: `span` bytes, undone by
    /// `fixes`. `None` if there are more than [`MAX_FIXES`] fixes.
    pub fn prelinked(mut self, span: u64, fixes: &[Fix]) -> Option<Carried> {
        self.fixes.get_mut(..fixes.len())?.copy_from_slice(fixes);
        self.nfix = fixes.len() as u16;
        self.span = span;
        Some(self)
    }

    /// The words that undo the pre-relocation (empty if not pre-relocated).
    pub fn fixes(&self) -> &[Fix] {
        self.fixes.get(..usize::from(self.nfix)).unwrap_or(&[])
    }

    /// A carried image description; `None` if there are more than
    /// [`MAX_SEGMENTS`] segments.
    pub fn new(image: u64, entry: u64, phdr: u64, phnum: u16, segs: &[Segment]) -> Option<Carried> {
        let mut segments = [Segment::default(); MAX_SEGMENTS];
        segments.get_mut(..segs.len())?.copy_from_slice(segs);
        Some(Carried {
            image,
            entry,
            phdr,
            phnum,
            segments,
            nseg: segs.len() as u16,
            span: 0,
            fixes: [Fix::default(); MAX_FIXES],
            nfix: 0,
        })
    }

    /// The ranges to protect, in order.
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..usize::from(self.nseg)).unwrap_or(&[])
    }

    fn encode(&self, out: &mut [u8]) {
        let mut w = Writer { out, at: 0 };
        w.u64(self.image);
        w.u64(self.entry);
        w.u64(self.phdr);
        w.u64(self.span);
        w.u16(self.phnum);
        w.u16(self.nseg);
        w.u16(self.nfix);
        w.u16(0);
        for s in self.segments() {
            w.u64(s.offset);
            w.u64(s.len);
            w.u32(s.prot);
            w.u32(0);
        }
        for f in self.fixes() {
            w.u64(f.offset);
            w.u64(f.value);
        }
    }

    /// Reads a carried description from the start of `b`; returns it and
    /// the bytes it took.
    fn decode(b: &[u8]) -> Option<(Carried, usize)> {
        let mut r = ByteReader { b, at: 0 };
        let image = r.u64()?;
        let entry = r.u64()?;
        let phdr = r.u64()?;
        let span = r.u64()?;
        let phnum = r.u16()?;
        let nseg = r.u16()?;
        let nfix = r.u16()?;
        r.u16()?;
        if usize::from(nseg) > MAX_SEGMENTS || usize::from(nfix) > MAX_FIXES {
            return None;
        }
        let mut segments = [Segment::default(); MAX_SEGMENTS];
        for s in segments.iter_mut().take(usize::from(nseg)) {
            *s = Segment {
                offset: r.u64()?,
                len: r.u64()?,
                prot: r.u32()?,
            };
            r.u32()?;
        }
        let mut fixes = [Fix::default(); MAX_FIXES];
        for f in fixes.iter_mut().take(usize::from(nfix)) {
            *f = Fix {
                offset: r.u64()?,
                value: r.u64()?,
            };
        }
        Some((
            Carried {
                image,
                entry,
                phdr,
                phnum,
                segments,
                nseg,
                span,
                fixes,
                nfix,
            },
            r.at,
        ))
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put<const N: usize>(&mut self, b: [u8; N]) {
        if let Some(dst) = self.out.get_mut(self.at..self.at + N) {
            dst.copy_from_slice(&b);
        }
        self.at += N;
    }
    fn u16(&mut self, v: u16) {
        self.put(v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) {
        self.put(v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) {
        self.put(v.to_le_bytes())
    }
}

struct ByteReader<'a> {
    b: &'a [u8],
    at: usize,
}

impl ByteReader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Some(out)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

impl Convention {
    fn to_byte(self) -> u8 {
        match self {
            Convention::ExecByPath => 0,
            Convention::Carried(_) => 1,
            Convention::ExecPlain => 2,
        }
    }
    fn extra_len(self) -> usize {
        match self {
            Convention::ExecByPath | Convention::ExecPlain => 0,
            Convention::Carried(c) => c.encoded_len(),
        }
    }
}

/// Why a region cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableError {
    /// The region does not start with [`MAGIC`].
    BadMagic,
    /// The region was written by a release with another format version.
    Version(u16),
    /// The region's contents are inconsistent.
    Corrupt,
    /// The entries do not fit in [`REGION_SIZE`] bytes.
    TooLarge,
    /// A name or path is empty, too long, or contains NUL.
    BadString,
}

impl TableError {
    /// A short lower-case phrase for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TableError::BadMagic => "no qemu-shim dispatch table",
            TableError::Version(_) => "dispatch table of another qemu-shim version",
            TableError::Corrupt => "corrupt dispatch table",
            TableError::TooLarge => "dispatch table too large",
            TableError::BadString => "bad name or path in dispatch table",
        }
    }
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Version(v) => write!(
                f,
                "{} (format {v}, this build reads {VERSION})",
                self.as_str()
            ),
            _ => f.write_str(self.as_str()),
        }
    }
}

impl core::error::Error for TableError {}

/// One row of the table, borrowed from the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Arch name, as in [`crate::arch::ARCHES`].
    pub arch: &'a str,
    /// How to start the emulator.
    pub convention: Convention,
    /// Emulator path, without the trailing NUL.
    pub path: &'a [u8],
    /// The qemu CPU model the administrator chose for this arch (qemu's
    /// `-cpu`), without the trailing NUL; empty for qemu's default.
    pub cpu: &'a [u8],
}

/// A parsed table.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    flags: u16,
    count: u16,
    entries: &'a [u8],
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

impl<'a> Table<'a> {
    /// Parses the region. Every entry is checked here, once, so lookups
    /// cannot fail later.
    pub fn parse(region: &'a [u8]) -> Result<Table<'a>, TableError> {
        if region.get(..8) != Some(&MAGIC[..]) {
            return Err(TableError::BadMagic);
        }
        let version = u16_at(region, 8).ok_or(TableError::Corrupt)?;
        if version != VERSION {
            return Err(TableError::Version(version));
        }
        let flags = u16_at(region, 10).ok_or(TableError::Corrupt)?;
        let count = u16_at(region, 12).ok_or(TableError::Corrupt)?;
        let used = usize::from(u16_at(region, 14).ok_or(TableError::Corrupt)?);
        let entries = region.get(HEADER..used).ok_or(TableError::Corrupt)?;
        let table = Table {
            flags,
            count,
            entries,
        };
        let mut n = 0u16;
        let mut it = table.raw_iter();
        loop {
            match it.next_entry() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break,
                Err(e) => return Err(e),
            }
        }
        if n != count {
            return Err(TableError::Corrupt);
        }
        Ok(table)
    }

    /// The table's `FLAG_*` bits.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether the table has no entries (an unconfigured interpreter).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn raw_iter(&self) -> RawIter<'a> {
        RawIter { rest: self.entries }
    }

    /// The entries, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'a>> + 'a {
        let mut it = self.raw_iter();
        core::iter::from_fn(move || it.next_entry().ok().flatten())
    }

    /// The entry for arch `name`.
    pub fn find(&self, name: &str) -> Option<Entry<'a>> {
        self.iter().find(|e| e.arch == name)
    }
}

struct RawIter<'a> {
    rest: &'a [u8],
}

impl<'a> RawIter<'a> {
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, TableError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let r = self.rest;
        let name_len = usize::from(*r.first().ok_or(TableError::Corrupt)?);
        let conv_byte = *r.get(1).ok_or(TableError::Corrupt)?;
        let path_len = usize::from(u16_at(r, 2).ok_or(TableError::Corrupt)?);
        let cpu_len = usize::from(*r.get(4).ok_or(TableError::Corrupt)?);
        let name_end = ENTRY_HEADER + name_len;
        let path_end = name_end + path_len;
        let cpu_end = path_end + cpu_len;
        let name = r.get(ENTRY_HEADER..name_end).ok_or(TableError::Corrupt)?;
        let path = r.get(name_end..path_end).ok_or(TableError::Corrupt)?;
        let cpu = r.get(path_end..cpu_end).ok_or(TableError::Corrupt)?;
        let path_end = cpu_end;
        let (conv, end) = match conv_byte {
            0 => (Convention::ExecByPath, path_end),
            2 => (Convention::ExecPlain, path_end),
            1 => {
                let extra = r.get(path_end..).ok_or(TableError::Corrupt)?;
                let (c, len) = Carried::decode(extra).ok_or(TableError::Corrupt)?;
                (Convention::Carried(c), path_end + len)
            }
            _ => return Err(TableError::Corrupt),
        };
        let name = core::str::from_utf8(name).map_err(|_| TableError::BadString)?;
        // The path must end with its NUL and hold no other.
        let (last, path) = path.split_last().ok_or(TableError::BadString)?;
        // The name as encode writes it: non-empty, no NUL.
        if *last != 0
            || path.is_empty()
            || path.contains(&0)
            || name.is_empty()
            || name.contains('\0')
        {
            return Err(TableError::BadString);
        }
        // The CPU model: none, or non-empty and ending with its only NUL.
        let cpu = match cpu.split_last() {
            None => cpu,
            Some((0, c)) if !c.is_empty() && !c.contains(&0) => c,
            Some(_) => return Err(TableError::BadString),
        };
        self.rest = r.get(end..).ok_or(TableError::Corrupt)?;
        Ok(Some(Entry {
            arch: name,
            convention: conv,
            path,
            cpu,
        }))
    }
}

/// Writes a table with `entries` and `flags` into `region` (the whole
/// reserved region; bytes after the table are zeroed). Returns the bytes used.
pub fn encode(entries: &[Entry<'_>], flags: u16, region: &mut [u8]) -> Result<usize, TableError> {
    if region.len() < HEADER {
        return Err(TableError::TooLarge);
    }
    let count = u16::try_from(entries.len()).map_err(|_| TableError::TooLarge)?;
    region.fill(0);
    let mut at = HEADER;
    for e in entries {
        let name = e.arch.as_bytes();
        if name.is_empty() || name.len() > usize::from(u8::MAX) || name.contains(&0) {
            return Err(TableError::BadString);
        }
        if e.path.is_empty() || e.path.contains(&0) {
            return Err(TableError::BadString);
        }
        let path_len = u16::try_from(e.path.len() + 1).map_err(|_| TableError::BadString)?;
        if e.cpu.contains(&0) {
            return Err(TableError::BadString);
        }
        let cpu_len = match e.cpu.len() {
            0 => 0,
            n => u8::try_from(n + 1).map_err(|_| TableError::BadString)?,
        };
        let name_end = at + ENTRY_HEADER + name.len();
        let cpu_at = name_end + usize::from(path_len);
        let path_end = cpu_at + usize::from(cpu_len);
        let end = path_end + e.convention.extra_len();
        let dst = region.get_mut(at..end).ok_or(TableError::TooLarge)?;
        dst[0] = name.len() as u8;
        dst[1] = e.convention.to_byte();
        dst[2..4].copy_from_slice(&path_len.to_le_bytes());
        dst[4] = cpu_len;
        dst[ENTRY_HEADER..name_end - at].copy_from_slice(name);
        dst[name_end - at..name_end - at + e.path.len()].copy_from_slice(e.path);
        dst[cpu_at - at..cpu_at - at + e.cpu.len()].copy_from_slice(e.cpu);
        // The bytes after the path and the CPU model stay 0: their NULs.
        if let Convention::Carried(c) = e.convention {
            c.encode(&mut dst[path_end - at..]);
        }
        at = end;
    }
    let used = u16::try_from(at).map_err(|_| TableError::TooLarge)?;
    region[..8].copy_from_slice(&MAGIC);
    region[8..10].copy_from_slice(&VERSION.to_le_bytes());
    region[10..12].copy_from_slice(&flags.to_le_bytes());
    region[12..14].copy_from_slice(&count.to_le_bytes());
    region[14..16].copy_from_slice(&used.to_le_bytes());
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn empty_region_header_parses_as_empty_table() {
        let mut region = [0u8; 64];
        region[..HEADER].copy_from_slice(&EMPTY_REGION_HEADER);
        let t = Table::parse(&region).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.flags(), 0);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let entries = [
            Entry {
                arch: "aarch64",
                convention: Convention::ExecByPath,
                path: b"/usr/bin/qemu-aarch64-static",
                cpu: b"",
            },
            Entry {
                arch: "s390x",
                convention: Convention::ExecByPath,
                path: b"/opt/q/qemu-s390x",
                cpu: b"",
            },
            Entry {
                arch: "x86_64",
                convention: Convention::ExecPlain,
                path: b"/usr/local/bin/box64",
                cpu: b"",
            },
        ];
        let mut region = [0xaau8; REGION_SIZE];
        let used = encode(&entries, FLAG_ASSUME_P, &mut region).unwrap();
        let t = Table::parse(&region).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.flags(), FLAG_ASSUME_P);
        assert_eq!(t.iter().collect::<Vec<_>>(), entries);
        assert_eq!(t.find("s390x").unwrap().path, b"/opt/q/qemu-s390x");
        assert!(t.find("ppc64le").is_none());
        assert!(region[used..].iter().all(|&b| b == 0));
    }

    #[test]
    fn carried_entries_round_trip_beside_by_path_ones() {
        let segs = [
            Segment {
                offset: 0,
                len: 0x228000,
                prot: PROT_READ,
            },
            Segment {
                offset: 0x228000,
                len: 0x47f000,
                prot: PROT_READ | PROT_EXEC,
            },
            Segment {
                offset: 0xa54000,
                len: 0x223000,
                prot: PROT_READ | PROT_WRITE,
            },
        ];
        let fixes = [
            Fix {
                offset: 0xbd6c30,
                value: 0x388,
            },
            Fix {
                offset: 0xbd6c40,
                value: 2256600,
            },
        ];
        let c = Carried::new(0x10000, 0x229ab0, 0x40, 12, &segs)
            .unwrap()
            .prelinked(0xc80000, &fixes)
            .unwrap();
        let entries = [
            Entry {
                arch: "aarch64",
                convention: Convention::Carried(c),
                path: b"/usr/bin/qemu-aarch64-static",
                cpu: b"",
            },
            Entry {
                arch: "s390x",
                convention: Convention::ExecByPath,
                path: b"/q",
                cpu: b"",
            },
        ];
        let mut region = [0u8; REGION_SIZE];
        encode(&entries, 0, &mut region).unwrap();
        let t = Table::parse(&region).unwrap();
        assert_eq!(t.iter().collect::<Vec<_>>(), entries);
        let Convention::Carried(back) = t.find("aarch64").unwrap().convention else {
            panic!("not carried")
        };
        assert_eq!(back.segments(), &segs);
        assert_eq!(back.fixes(), &fixes);
        assert_eq!(back.span, 0xc80000);
    }

    #[test]
    fn too_many_segments_are_refused() {
        let segs = [Segment::default(); MAX_SEGMENTS + 1];
        assert!(Carried::new(0, 0, 0, 0, &segs).is_none());
    }

    #[test]
    fn other_version_is_refused() {
        let mut region = [0u8; REGION_SIZE];
        encode(&[], 0, &mut region).unwrap();
        // Version 1 (no CPU models, 8 KiB): refused, not misread.
        region[8] = 1;
        assert_eq!(Table::parse(&region).unwrap_err(), TableError::Version(1));
        region[8] = 3;
        assert_eq!(Table::parse(&region).unwrap_err(), TableError::Version(3));
    }

    #[test]
    fn count_disagreeing_with_entries_is_corrupt() {
        let e = [Entry {
            arch: "aarch64",
            convention: Convention::ExecByPath,
            path: b"/q",
            cpu: b"",
        }];
        let mut region = [0u8; 128];
        encode(&e, 0, &mut region).unwrap();
        region[12] = 2;
        assert_eq!(Table::parse(&region).unwrap_err(), TableError::Corrupt);
    }

    #[test]
    fn truncated_entry_is_corrupt_not_a_panic() {
        let e = [Entry {
            arch: "aarch64",
            convention: Convention::ExecByPath,
            path: b"/q",
            cpu: b"",
        }];
        let mut region = [0u8; 128];
        let used = encode(&e, 0, &mut region).unwrap();
        for cut in HEADER..used {
            region[14..16].copy_from_slice(&(cut as u16).to_le_bytes());
            assert!(Table::parse(&region).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn path_with_nul_or_empty_is_refused() {
        let mut region = [0u8; 128];
        for p in [&b""[..], b"/a\0b"] {
            let e = [Entry {
                arch: "aarch64",
                convention: Convention::ExecByPath,
                path: p,
                cpu: b"",
            }];
            assert_eq!(
                encode(&e, 0, &mut region).unwrap_err(),
                TableError::BadString
            );
        }
    }

    /// Found by the fuzzer (fuzz/fuzz_targets/dispatch_table.rs): the
    /// reader took an arch name holding a NUL, which the writer refuses, so
    /// a table could read back as one that cannot be written.
    #[test]
    fn name_with_nul_is_refused_by_reader_as_by_writer() {
        let mut region = [0u8; 128];
        let e = [Entry {
            arch: "i3",
            convention: Convention::ExecByPath,
            path: b"/q",
            cpu: b"",
        }];
        let used = encode(&e, 0, &mut region).unwrap();
        assert!(Table::parse(&region[..used]).is_ok());
        region[HEADER + ENTRY_HEADER + 1] = 0; // "i3" -> "i\0"
        assert_eq!(
            Table::parse(&region[..used]).unwrap_err(),
            TableError::BadString
        );
        let nul = [Entry {
            arch: "i\0",
            ..e[0]
        }];
        assert_eq!(
            encode(&nul, 0, &mut region).unwrap_err(),
            TableError::BadString
        );
    }

    #[test]
    fn table_too_large_for_region_is_refused() {
        let long = [b'x'; 200];
        let e = [Entry {
            arch: "aarch64",
            convention: Convention::ExecByPath,
            path: &long,
            cpu: b"",
        }];
        let mut region = [0u8; 100];
        assert_eq!(
            encode(&e, 0, &mut region).unwrap_err(),
            TableError::TooLarge
        );
    }

    #[test]
    fn cpu_models_round_trip_and_a_bad_one_is_refused() {
        let entries = [
            Entry {
                arch: "arm",
                convention: Convention::ExecByPath,
                path: b"/usr/bin/qemu-arm-static",
                cpu: b"arm1176",
            },
            Entry {
                arch: "aarch64",
                convention: Convention::ExecByPath,
                path: b"/q",
                cpu: b"max,pauth-impdef=on",
            },
            Entry {
                arch: "s390x",
                convention: Convention::ExecByPath,
                path: b"/q2",
                cpu: b"",
            },
        ];
        let mut region = [0u8; REGION_SIZE];
        let used = encode(&entries, 0, &mut region).unwrap();
        let t = Table::parse(&region).unwrap();
        assert_eq!(t.iter().collect::<Vec<_>>(), entries);
        assert_eq!(t.find("arm").unwrap().cpu, b"arm1176");
        // A model holding a NUL cannot be written, nor read: its length
        // byte covering no NUL, or a NUL inside, is refused.
        let nul = [Entry {
            cpu: b"a\0b",
            ..entries[0]
        }];
        assert_eq!(
            encode(&nul, 0, &mut region).unwrap_err(),
            TableError::BadString
        );
        encode(&entries[..1], 0, &mut region).unwrap();
        let cpu_end = HEADER + ENTRY_HEADER + 3 + 25 + 8;
        region[cpu_end - 1] = b'x';
        assert_eq!(
            Table::parse(&region[..used]).unwrap_err(),
            TableError::BadString
        );
    }
}
