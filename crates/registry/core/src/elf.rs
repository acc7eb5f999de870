//! ELF header validation: what must hold of a program before it is handed to
//! an emulator.
//!
//! The interpreter reads the first bytes of the target, parses the file
//! header with [`Header::parse`], makes sure it holds the program header
//! table ([`Header::phdr_range`]), and checks every program header with
//! [`Header::check_segments`]. Nothing here allocates or panics: every read
//! is bounds-checked and every sum is checked for overflow.

/// Bytes of the ELF identification (`e_ident`).
pub const EI_NIDENT: usize = 16;
/// Largest program header table accepted, in bytes. The Linux ELF loader
/// refuses tables above one 4 KiB page (`load_elf_phdrs`), so no program the
/// kernel could run natively needs more.
pub const MAX_PHDR_BYTES: usize = 4096;

const PT_LOAD: u32 = 1;
/// The segment naming the program's loader (its "program interpreter").
const PT_INTERP: u32 = 3;
/// Segment flag: writable.
const PF_W: u32 = 2;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Why a file is not a program an emulator should be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfError {
    /// The file does not start with `\x7fELF`.
    NotElf,
    /// The file ends inside the ELF header or the program header table.
    Truncated,
    /// `EI_CLASS` is neither 32- nor 64-bit.
    BadClass,
    /// `EI_DATA` is neither little- nor big-endian.
    BadData,
    /// `EI_VERSION` or `e_version` is not 1.
    BadVersion,
    /// `e_type` is not an executable or a shared object.
    NotExecutable,
    /// `e_ehsize` does not match the class.
    BadHeaderSize,
    /// `e_phentsize` does not match the class.
    BadPhentsize,
    /// No program headers, or a table larger than the kernel accepts.
    BadPhnum,
    /// The program header table lies (partly) outside the file.
    PhdrsOutsideFile,
    /// A loadable segment's file bytes lie outside the file.
    SegmentOutsideFile,
    /// A loadable segment has more bytes in the file than in memory.
    FileSizeOverMemSize,
    /// A loadable segment's alignment is not a power of two, or its offset
    /// and address disagree modulo that alignment.
    BadAlignment,
    /// A loadable segment's address range wraps around.
    SegmentOverflow,
    /// A loadable segment that is not writable has a zero-filled part
    /// (more bytes in memory than in the file). No linker makes one (none
    /// of a Debian system's programs and libraries has one), and qemu-user
    /// before 8.1 dies by SIGSEGV loading it: it zeroes that part in place,
    /// in a page it has just mapped without write permission.
    ZeroFillNotWritable,
    /// No loadable segment at all.
    NoLoadableSegment,
}

impl ElfError {
    /// A short lower-case phrase for error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ElfError::NotElf => "not an ELF program",
            ElfError::Truncated => "truncated ELF file",
            ElfError::BadClass => "malformed ELF header: bad class",
            ElfError::BadData => "malformed ELF header: bad byte order",
            ElfError::BadVersion => "malformed ELF header: bad version",
            ElfError::NotExecutable => "ELF file is not an executable",
            ElfError::BadHeaderSize => "malformed ELF header: bad header size",
            ElfError::BadPhentsize => "malformed ELF header: bad program header size",
            ElfError::BadPhnum => "malformed ELF header: bad program header count",
            ElfError::PhdrsOutsideFile => "malformed ELF file: program headers outside the file",
            ElfError::SegmentOutsideFile => "malformed ELF file: segment outside the file",
            ElfError::FileSizeOverMemSize => {
                "malformed ELF file: segment larger in file than in memory"
            }
            ElfError::BadAlignment => "malformed ELF file: bad segment alignment",
            ElfError::SegmentOverflow => "malformed ELF file: segment address overflows",
            ElfError::ZeroFillNotWritable => {
                "malformed ELF file: zero-filled part of a read-only segment"
            }
            ElfError::NoLoadableSegment => "malformed ELF file: no loadable segment",
        }
    }
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for ElfError {}

/// 32- or 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Elf32,
    Elf64,
}

/// Byte order of the file's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Little,
    Big,
}

/// The fields of a validated ELF file header that the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub class: Class,
    pub data: Data,
    pub e_type: u16,
    pub machine: u16,
    pub flags: u32,
    pub phoff: u64,
    pub phentsize: u16,
    pub phnum: u16,
}

/// Reads integers of the file's byte order at bounds-checked offsets.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    data: Data,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfError> {
        let end = at.checked_add(N).ok_or(ElfError::Truncated)?;
        let s = self.buf.get(at..end).ok_or(ElfError::Truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.bytes::<2>(at)?;
        Ok(match self.data {
            Data::Little => u16::from_le_bytes(b),
            Data::Big => u16::from_be_bytes(b),
        })
    }
    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.bytes::<4>(at)?;
        Ok(match self.data {
            Data::Little => u32::from_le_bytes(b),
            Data::Big => u32::from_be_bytes(b),
        })
    }
    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let b = self.bytes::<8>(at)?;
        Ok(match self.data {
            Data::Little => u64::from_le_bytes(b),
            Data::Big => u64::from_be_bytes(b),
        })
    }
    /// A word of the file's class: 4 bytes for ELF32, 8 for ELF64.
    fn word(&self, class: Class, at: usize) -> Result<u64, ElfError> {
        match class {
            Class::Elf32 => self.u32(at).map(u64::from),
            Class::Elf64 => self.u64(at),
        }
    }
}

impl Header {
    /// Parses and checks the file header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Header, ElfError> {
        match buf.get(..4) {
            Some(b"\x7fELF") => {}
            Some(_) => return Err(ElfError::NotElf),
            None if buf.iter().zip(b"\x7fELF").all(|(a, b)| a == b) => {
                return Err(ElfError::Truncated)
            }
            None => return Err(ElfError::NotElf),
        }
        let ident = buf.get(..EI_NIDENT).ok_or(ElfError::Truncated)?;
        let class = match ident[4] {
            1 => Class::Elf32,
            2 => Class::Elf64,
            _ => return Err(ElfError::BadClass),
        };
        let data = match ident[5] {
            1 => Data::Little,
            2 => Data::Big,
            _ => return Err(ElfError::BadData),
        };
        if ident[6] != 1 {
            return Err(ElfError::BadVersion);
        }
        let (ehsize, phentsize_want) = match class {
            Class::Elf32 => (52usize, 32u16),
            Class::Elf64 => (64usize, 56u16),
        };
        if buf.len() < ehsize {
            return Err(ElfError::Truncated);
        }
        let r = Reader { buf, data };
        let e_type = r.u16(16)?;
        let machine = r.u16(18)?;
        if r.u32(20)? != 1 {
            return Err(ElfError::BadVersion);
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(ElfError::NotExecutable);
        }
        // Offsets of e_phoff, e_flags, e_ehsize, e_phentsize, e_phnum.
        let (phoff_at, flags_at) = match class {
            Class::Elf32 => (28, 36),
            Class::Elf64 => (32, 48),
        };
        let phoff = r.word(class, phoff_at)?;
        let flags = r.u32(flags_at)?;
        if usize::from(r.u16(flags_at + 4)?) != ehsize {
            return Err(ElfError::BadHeaderSize);
        }
        let phentsize = r.u16(flags_at + 6)?;
        if phentsize != phentsize_want {
            return Err(ElfError::BadPhentsize);
        }
        let phnum = r.u16(flags_at + 8)?;
        if phnum == 0 || usize::from(phnum) * usize::from(phentsize) > MAX_PHDR_BYTES {
            return Err(ElfError::BadPhnum);
        }
        Ok(Header {
            class,
            data,
            e_type,
            machine,
            flags,
            phoff,
            phentsize,
            phnum,
        })
    }

    /// Where the program header table is: file offset and length in bytes
    /// (at most [`MAX_PHDR_BYTES`]).
    pub fn phdr_range(&self) -> (u64, usize) {
        (
            self.phoff,
            usize::from(self.phnum) * usize::from(self.phentsize),
        )
    }

    /// Checks the program header table `phdrs` (exactly the bytes at
    /// [`Header::phdr_range`]) against a file of `file_size` bytes: every
    /// loadable segment inside the file, no larger in the file than in
    /// memory, with a sane alignment and no address overflow.
    pub fn check_segments(&self, phdrs: &[u8], file_size: u64) -> Result<(), ElfError> {
        let (off, len) = self.phdr_range();
        match off.checked_add(len as u64) {
            Some(end) if end <= file_size => {}
            _ => return Err(ElfError::PhdrsOutsideFile),
        }
        if phdrs.len() < len {
            return Err(ElfError::Truncated);
        }
        let r = Reader {
            buf: phdrs,
            data: self.data,
        };
        let mut loads = 0u32;
        for i in 0..usize::from(self.phnum) {
            let at = i * usize::from(self.phentsize);
            let seg = match self.class {
                Class::Elf32 => Segment {
                    kind: r.u32(at)?,
                    flags: r.u32(at + 24)?,
                    offset: r.u32(at + 4)?.into(),
                    vaddr: r.u32(at + 8)?.into(),
                    filesz: r.u32(at + 16)?.into(),
                    memsz: r.u32(at + 20)?.into(),
                    align: r.u32(at + 28)?.into(),
                    addr_max: u32::MAX.into(),
                },
                Class::Elf64 => Segment {
                    kind: r.u32(at)?,
                    flags: r.u32(at + 4)?,
                    offset: r.u64(at + 8)?,
                    vaddr: r.u64(at + 16)?,
                    filesz: r.u64(at + 32)?,
                    memsz: r.u64(at + 40)?,
                    align: r.u64(at + 48)?,
                    addr_max: u64::MAX,
                },
            };
            if seg.kind == PT_LOAD {
                seg.check(file_size)?;
                loads += 1;
            }
        }
        if loads == 0 {
            return Err(ElfError::NoLoadableSegment);
        }
        Ok(())
    }
}

impl Header {
    /// Where the program's loader path (its PT_INTERP segment) lies in the
    /// file: offset and size in bytes, from `phdrs` (the table, as for
    /// [`Header::check_segments`]). `None` for a program without one (a
    /// static program), with more than one (no guess at which counts), or
    /// when the table cannot be read.
    pub fn interp_range(&self, phdrs: &[u8]) -> Option<(u64, u64)> {
        let r = Reader {
            buf: phdrs,
            data: self.data,
        };
        let mut found = None;
        for i in 0..usize::from(self.phnum) {
            let at = i.checked_mul(usize::from(self.phentsize))?;
            if r.u32(at).ok()? != PT_INTERP {
                continue;
            }
            let range = match self.class {
                Class::Elf32 => (r.u32(at + 4).ok()?.into(), r.u32(at + 16).ok()?.into()),
                Class::Elf64 => (r.u64(at + 8).ok()?, r.u64(at + 32).ok()?),
            };
            if found.replace(range).is_some() {
                return None;
            }
        }
        found
    }
}

/// The loader path in a PT_INTERP segment of `size` bytes at `offset`,
/// read from `head` (the file's first bytes): the bytes before its first
/// NUL, as qemu reads it. `None` when the segment is not all within
/// `head`, holds no NUL (qemu refuses that program itself), or names an
/// empty path.
pub fn interp_path(head: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    let seg = head.get(start..end)?;
    let nul = seg.iter().position(|&b| b == 0)?;
    seg.get(..nul).filter(|p| !p.is_empty())
}

struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
    addr_max: u64,
}

impl Segment {
    fn check(&self, file_size: u64) -> Result<(), ElfError> {
        match self.offset.checked_add(self.filesz) {
            Some(end) if end <= file_size => {}
            _ => return Err(ElfError::SegmentOutsideFile),
        }
        if self.filesz > self.memsz {
            return Err(ElfError::FileSizeOverMemSize);
        }
        if self.filesz < self.memsz && self.flags & PF_W == 0 {
            return Err(ElfError::ZeroFillNotWritable);
        }
        match self.vaddr.checked_add(self.memsz) {
            Some(end) if end <= self.addr_max => {}
            _ => return Err(ElfError::SegmentOverflow),
        }
        if self.align > 1 {
            if !self.align.is_power_of_two() {
                return Err(ElfError::BadAlignment);
            }
            if self.offset % self.align != self.vaddr % self.align {
                return Err(ElfError::BadAlignment);
            }
        }
        Ok(())
    }
}

/// Validates a whole header when `buf` holds the file's first bytes and the
/// program header table lies within them. Callers that read only a prefix
/// use [`Header::parse`], read the table, then [`Header::check_segments`].
pub fn validate(buf: &[u8], file_size: u64) -> Result<Header, ElfError> {
    let h = Header::parse(buf)?;
    let (off, len) = h.phdr_range();
    let start = usize::try_from(off).map_err(|_| ElfError::PhdrsOutsideFile)?;
    let end = start.checked_add(len).ok_or(ElfError::PhdrsOutsideFile)?;
    let phdrs = match buf.get(start..end) {
        Some(p) => p,
        None => {
            // The table is not within `buf`: outside the file, or beyond
            // what the caller read.
            return Err(if (end as u64) > file_size {
                ElfError::PhdrsOutsideFile
            } else {
                ElfError::Truncated
            });
        }
    };
    h.check_segments(phdrs, file_size)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 little-endian header at 0 with its table at 64, the given
    /// program headers (type, offset, size), and `tail` at 0x200.
    fn file64(phdrs: &[(u32, u64, u64)], tail: &[u8]) -> [u8; 1024] {
        let mut f = [0u8; 1024];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&3u16.to_le_bytes());
        f[18..20].copy_from_slice(&183u16.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, &(kind, off, size)) in phdrs.iter().enumerate() {
            let at = 64 + i * 56;
            f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        }
        f[0x200..0x200 + tail.len()].copy_from_slice(tail);
        f
    }

    fn loader(f: &[u8]) -> Option<&[u8]> {
        let h = Header::parse(f).unwrap();
        let (off, len) = h.phdr_range();
        let phdrs = &f[off as usize..off as usize + len];
        let (o, n) = h.interp_range(phdrs)?;
        interp_path(f, o, n)
    }

    const LD: &[u8] = b"/lib/ld-linux-aarch64.so.1\0";

    #[test]
    fn the_loader_path_is_read_up_to_its_nul() {
        let f = file64(
            &[(PT_LOAD, 0, 1024), (PT_INTERP, 0x200, LD.len() as u64)],
            LD,
        );
        assert_eq!(loader(&f), Some(&b"/lib/ld-linux-aarch64.so.1"[..]));
    }

    #[test]
    fn no_loader_path_when_there_is_no_clear_one() {
        // Static: no PT_INTERP.
        assert_eq!(loader(&file64(&[(PT_LOAD, 0, 1024)], LD)), None);
        // Two PT_INTERP: not guessed at.
        let two = [(PT_INTERP, 0x200, 27), (PT_INTERP, 0x200, 27)];
        assert_eq!(loader(&file64(&two, LD)), None);
        // Beyond what was read, or overflowing.
        assert_eq!(loader(&file64(&[(PT_INTERP, 0x3f0, 27)], LD)), None);
        assert_eq!(loader(&file64(&[(PT_INTERP, u64::MAX, 2)], LD)), None);
        // No NUL within the segment, or an empty path.
        assert_eq!(loader(&file64(&[(PT_INTERP, 0x200, 5)], LD)), None);
        assert_eq!(loader(&file64(&[(PT_INTERP, 0x200, 4)], b"\0abc")), None);
    }
}
