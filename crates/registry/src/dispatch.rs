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
//!       convention   u8           Convention
//!       path length  u16          emulator path, NUL included
//!       name bytes, path bytes (path ends with NUL)
//! ```

/// Name of the section that holds the table in the interpreter binary.
pub const SECTION: &str = ".qemu_shim_table";
/// Size of the reserved region, in bytes.
pub const REGION_SIZE: usize = 8192;
/// First bytes of the region.
pub const MAGIC: [u8; 8] = *b"QSHIMTBL";
/// Format version this build reads and writes.
pub const VERSION: u16 = 1;
/// The kernel lacks `AT_FLAGS_PRESERVE_ARGV0` (Linux < 5.12) and the entries
/// were registered with `P`: the interpreter must take argv in the P layout
/// without the kernel's word for it.
pub const FLAG_ASSUME_P: u16 = 1;

const HEADER: usize = 16;

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
pub enum Convention {
    /// `execve(path, [path, "-0", argv0, "--", program, args…], envp)`:
    /// qemu's command line, the program re-opened by path.
    ExecByPath,
}

impl Convention {
    fn to_byte(self) -> u8 {
        match self {
            Convention::ExecByPath => 0,
        }
    }
    fn from_byte(b: u8) -> Option<Convention> {
        match b {
            0 => Some(Convention::ExecByPath),
            _ => None,
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

#[cfg(feature = "std")]
impl std::error::Error for TableError {}

/// One row of the table, borrowed from the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Arch name, as in [`crate::arch::ARCHES`].
    pub arch: &'a str,
    /// How to start the emulator.
    pub convention: Convention,
    /// Emulator path, without the trailing NUL.
    pub path: &'a [u8],
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
        let conv = Convention::from_byte(*r.get(1).ok_or(TableError::Corrupt)?)
            .ok_or(TableError::Corrupt)?;
        let path_len = usize::from(u16_at(r, 2).ok_or(TableError::Corrupt)?);
        let name_end = 4 + name_len;
        let path_end = name_end + path_len;
        let name = r.get(4..name_end).ok_or(TableError::Corrupt)?;
        let path = r.get(name_end..path_end).ok_or(TableError::Corrupt)?;
        let name = core::str::from_utf8(name).map_err(|_| TableError::BadString)?;
        // The path must end with its NUL and hold no other.
        let (last, path) = path.split_last().ok_or(TableError::BadString)?;
        if *last != 0 || path.is_empty() || path.contains(&0) || name.is_empty() {
            return Err(TableError::BadString);
        }
        self.rest = r.get(path_end..).ok_or(TableError::Corrupt)?;
        Ok(Some(Entry {
            arch: name,
            convention: conv,
            path,
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
        let end = at + 4 + name.len() + usize::from(path_len);
        let dst = region.get_mut(at..end).ok_or(TableError::TooLarge)?;
        dst[0] = name.len() as u8;
        dst[1] = e.convention.to_byte();
        dst[2..4].copy_from_slice(&path_len.to_le_bytes());
        dst[4..4 + name.len()].copy_from_slice(name);
        dst[4 + name.len()..4 + name.len() + e.path.len()].copy_from_slice(e.path);
        // The final byte stays 0: the path's NUL.
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
            },
            Entry {
                arch: "s390x",
                convention: Convention::ExecByPath,
                path: b"/opt/q/qemu-s390x",
            },
        ];
        let mut region = [0xaau8; REGION_SIZE];
        let used = encode(&entries, FLAG_ASSUME_P, &mut region).unwrap();
        let t = Table::parse(&region).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.flags(), FLAG_ASSUME_P);
        assert_eq!(t.iter().collect::<Vec<_>>(), entries);
        assert_eq!(t.find("s390x").unwrap().path, b"/opt/q/qemu-s390x");
        assert!(t.find("ppc64le").is_none());
        assert!(region[used..].iter().all(|&b| b == 0));
    }

    #[test]
    fn other_version_is_refused() {
        let mut region = [0u8; REGION_SIZE];
        encode(&[], 0, &mut region).unwrap();
        region[8] = 2;
        assert_eq!(Table::parse(&region).unwrap_err(), TableError::Version(2));
    }

    #[test]
    fn count_disagreeing_with_entries_is_corrupt() {
        let e = [Entry {
            arch: "aarch64",
            convention: Convention::ExecByPath,
            path: b"/q",
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
            }];
            assert_eq!(
                encode(&e, 0, &mut region).unwrap_err(),
                TableError::BadString
            );
        }
    }

    #[test]
    fn table_too_large_for_region_is_refused() {
        let long = [b'x'; 200];
        let e = [Entry {
            arch: "aarch64",
            convention: Convention::ExecByPath,
            path: &long,
        }];
        let mut region = [0u8; 100];
        assert_eq!(
            encode(&e, 0, &mut region).unwrap_err(),
            TableError::TooLarge
        );
    }
}
