//! The interpreter file's very small linker: writes the built interpreter,
//! its dispatch table, and the memory images of the emulators it carries,
//! for a [`Target`] host.
//!
//! The kernel maps the whole file with every exec (the entries are pinned
//! with F), so a carried emulator needs nothing from the namespace the
//! program runs in: not its path, not /proc. Layout:
//!
//! ```text
//! file offset / address (relative to the load address)
//! 0                   the built interpreter, unchanged but for its program
//!                     header table pointer and its dispatch-table region
//! A = align(end)      one new PT_LOAD (read-only), mapped by the kernel:
//!   A                   the new program header table (old headers + this one)
//!   A + ALIGN           emulator 1's memory image: each of its loadable
//!                       segments at its own offset, as it sits in memory
//!   …                   emulator 2's image, … (each ALIGN-aligned)
//! ```
//!
//! One segment for all images (not one per emulator): the kernel maps it
//! with a single mapping, so an emulated process carries one extra memory
//! area, not one per carried emulator, and the program header count stays
//! far below the kernel's limit of one page of headers. Every image is laid
//! out whole, its bss as zeros in the file, and the segment's memory size
//! equals its file size: any image can then be moved as one mapping (a
//! setuid exec moves a pre-relocated image). The interpreter sets each
//! carried segment's protection before jumping in (`crates/shim`,
//! `sys::launch`).

use goblin::elf::dynamic::{DT_NULL, DT_RELA, DT_RELACOUNT, DT_RELAENT, DT_RELASZ};
use goblin::elf::header::{ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_PHDR};
use goblin::elf::Elf;
use goblin::elf64::dynamic::Dyn;
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::elf64::program_header::{ProgramHeader, SIZEOF_PHDR};
use goblin::elf64::reloc::{Rela, SIZEOF_RELA};
use qemu_shim_registry_core::dispatch::{
    self, Carried, Convention, Entry, Fix, Segment, MAX_SEGMENTS, PROT_EXEC, PROT_READ, PROT_WRITE,
};
use scroll::{Pread, Pwrite, LE};

use crate::error::{Error, Result};
use crate::region;
use crate::target::Target;

/// Alignment of the carried segment and of each image in it: 64 KiB, the
/// largest page size of the hosts qemu-shim supports (aarch64 kernels may
/// use 4, 16 or 64 KiB pages), so the same layout maps on all of them.
pub const ALIGN: u64 = 0x10000;

/// An emulator to carry.
pub struct Carry<'a> {
    /// Arch name, as in the arch table.
    pub arch: &'a str,
    /// Where it was found (recorded for `status`).
    pub path: &'a [u8],
    /// The qemu CPU model chosen for it; empty for qemu's default.
    pub cpu: &'a [u8],
    /// Its image, planned from its file by [`plan`]. The bytes themselves
    /// are not held here: [`build`] reads each file again when it copies
    /// it, so only one emulator is in memory at a time.
    pub plan: ImagePlan,
}

/// An emulator the interpreter will exec by path.
pub struct ByPath<'a> {
    pub arch: &'a str,
    pub path: &'a [u8],
    /// Its command line: qemu's (`ExecByPath`) or the plain one of box64
    /// and FEX (`ExecPlain`).
    pub convention: Convention,
    /// The qemu CPU model chosen for it; empty for qemu's default.
    pub cpu: &'a [u8],
}

impl<'a> ByPath<'a> {
    fn entry(&self) -> Entry<'a> {
        Entry {
            arch: self.arch,
            convention: self.convention,
            path: self.path,
            cpu: self.cpu,
        }
    }
}

/// The ELF header of `file`, if it is a little-endian ELF64 file.
pub(crate) fn header64(file: &[u8]) -> Option<Header> {
    let h: Header = file.pread_with(0, LE).ok()?;
    let ident_ok = h.e_ident[..4] == *b"\x7fELF"
        && h.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64
        && h.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2LSB;
    ident_ok.then_some(h)
}

/// The `count` program headers at `offset` of `file`.
fn program_headers(file: &[u8], offset: u64, count: u16) -> Option<Vec<ProgramHeader>> {
    (0..usize::from(count))
        .map(|i| {
            let at = usize::try_from(offset).ok()?.checked_add(i * SIZEOF_PHDR)?;
            file.pread_with(at, LE).ok()
        })
        .collect()
}

/// The loadable segments of an interpreter file, from its `head` (see
/// [`crate::read_head`]): (file offset, address, bytes in the file) each,
/// in header order. `None` if the head is not a little-endian ELF64 file
/// or its program headers lie outside it.
pub fn loadable_segments(head: &[u8]) -> Option<Vec<(u64, u64, u64)>> {
    let header = header64(head)?;
    Some(
        program_headers(head, header.e_phoff, header.e_phnum)?
            .iter()
            .filter(|h| h.p_type == PT_LOAD)
            .map(|h| (h.p_offset, h.p_vaddr, h.p_filesz))
            .collect(),
    )
}

/// The fixed address of a pre-relocated interpreter file: the address of
/// its first loadable segment if it is a fixed-address executable.
pub fn prelink_base(file: &[u8]) -> Option<u64> {
    // The header and program headers only: see `region::sections` for why
    // not goblin's whole parse.
    let header = header64(file)?;
    if header.e_type != ET_EXEC || usize::from(header.e_phentsize) != SIZEOF_PHDR {
        return None;
    }
    program_headers(file, header.e_phoff, header.e_phnum)?
        .iter()
        .find(|h| h.p_type == PT_LOAD)
        .map(|h| h.p_vaddr)
}

/// An emulator's image, planned. Compared whole when the file is read
/// again: equal plans mean the layout chosen from the first read fits the
/// bytes copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// The copies to make: file offset, offset in the image, length.
    copies: Vec<(u64, u64, u64)>,
    /// Size in memory, ALIGN-aligned.
    span: u64,
    /// Its description for the table (image offset 0).
    carried: Carried,
    /// The image's lowest address in the emulator's own numbering.
    min_vaddr: u64,
    /// What pre-relocating it takes, if it can be.
    relocs: Option<Relocs>,
}

/// The relative relocations of a static PIE, found through its dynamic
/// section (addresses in the emulator's own numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Relocs {
    /// Start of the RELA table, and its entry size.
    rela: u64,
    relaent: u64,
    /// How many entries at its start are relative (DT_RELACOUNT).
    count: u64,
    /// Where the values of DT_RELA, DT_RELASZ and DT_RELACOUNT are, and
    /// what they are.
    rela_at: (u64, u64),
    relasz_at: (u64, u64),
    count_at: (u64, u64),
}

/// `DT_RELR` (packed relative relocations; goblin 0.10 does not name it).
const DT_RELR: u64 = 36;

/// Finds what pre-relocation needs: a dynamic section with DT_RELA,
/// DT_RELASZ and DT_RELACOUNT, and no DT_RELR (packed relocations are not
/// handled; such an image is relocated at run time as usual).
fn find_relocs(elf: &Elf<'_>, file: &[u8]) -> Option<Relocs> {
    const DYN: u64 = 16;
    let dynamic = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_DYNAMIC)?;
    let bytes = file.get(
        usize::try_from(dynamic.p_offset).ok()?
            ..usize::try_from(dynamic.p_offset.checked_add(dynamic.p_filesz)?).ok()?,
    )?;
    let (mut rela, mut relasz, mut relaent, mut count) = (None, None, SIZEOF_RELA as u64, None);
    for i in 0..bytes.len() / DYN as usize {
        let d: Dyn = bytes.pread_with(i * DYN as usize, LE).ok()?;
        // Where the value sits in memory, and the value.
        let at = (dynamic.p_vaddr + i as u64 * DYN + 8, d.d_val);
        match d.d_tag {
            DT_NULL => break,
            DT_RELA => rela = Some(at),
            DT_RELASZ => relasz = Some(at),
            DT_RELAENT => relaent = d.d_val,
            DT_RELACOUNT => count = Some(at),
            DT_RELR => return None,
            _ => {}
        }
    }
    let (rela_at, relasz_at, count_at) = (rela?, relasz?, count?);
    if relaent != SIZEOF_RELA as u64 || count_at.1.checked_mul(relaent)? > relasz_at.1 {
        return None;
    }
    Some(Relocs {
        rela: rela_at.1,
        relaent,
        count: count_at.1,
        rela_at,
        relasz_at,
        count_at,
    })
}

/// Plans how an emulator file would sit in the interpreter file for
/// `target`, from its loadable segments, or says why it cannot be carried:
/// it must be a static PIE for that host whose image fits the dispatch
/// table. The plan is all [`build`] needs of the file but its bytes, so the
/// caller can drop them until then.
pub fn plan(file: &[u8], target: Target) -> std::result::Result<ImagePlan, String> {
    let elf = Elf::parse(file).map_err(|e| format!("not a readable ELF file ({e})"))?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != target.machine() {
        return Err("not an executable for this host".into());
    }
    if elf.header.e_type != ET_DYN {
        // A fixed-address executable would want its own addresses: only
        // position-independent images can sit inside the interpreter file.
        return Err("not position-independent (static-pie)".into());
    }
    if elf.program_headers.iter().any(|p| p.p_type == PT_INTERP) {
        return Err("dynamically linked".into());
    }
    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    if loads.is_empty() || loads.len() > MAX_SEGMENTS {
        return Err(format!("{} loadable segments", loads.len()));
    }
    let page = loads
        .iter()
        .map(|p| p.p_align.max(4096))
        .max()
        .unwrap_or(4096);
    if page > ALIGN || !page.is_power_of_two() {
        return Err(format!("segment alignment {page:#x} above {ALIGN:#x}"));
    }
    let floor = |v: u64| v & !(page - 1);
    let ceil = |v: u64| v.div_ceil(page) * page;
    let min_vaddr = floor(loads.iter().map(|p| p.p_vaddr).min().unwrap_or(0));
    let mut copies = Vec::new();
    let mut segments = Vec::new();
    let mut end = 0u64;
    for p in &loads {
        let in_file = p
            .p_offset
            .checked_add(p.p_filesz)
            .is_some_and(|e| e <= file.len() as u64);
        if !in_file || p.p_filesz > p.p_memsz {
            return Err("malformed loadable segment".into());
        }
        let v = p.p_vaddr - min_vaddr;
        copies.push((p.p_offset, v, p.p_filesz));
        let mut prot = 0;
        if p.p_flags & PF_R != 0 {
            prot |= PROT_READ;
        }
        if p.p_flags & PF_W != 0 {
            prot |= PROT_WRITE;
        }
        if p.p_flags & PF_X != 0 {
            prot |= PROT_EXEC;
        }
        let start = floor(v);
        segments.push(Segment {
            offset: start,
            len: ceil(v + p.p_memsz) - start,
            prot,
        });
        end = end.max(v + p.p_memsz);
    }
    // The emulator's own program headers must be in its image: its C
    // library finds its TLS and RELRO segments through AT_PHDR.
    let phoff = elf.header.e_phoff;
    let phdr = loads
        .iter()
        .find(|p| {
            p.p_offset <= phoff
                && phoff + (elf.header.e_phnum as u64 * SIZEOF_PHDR as u64)
                    <= p.p_offset + p.p_filesz
        })
        .map(|p| phoff - p.p_offset + p.p_vaddr - min_vaddr)
        .ok_or("its program headers are not in a loadable segment")?;
    let entry = elf
        .header
        .e_entry
        .checked_sub(min_vaddr)
        .filter(|e| {
            segments
                .iter()
                .any(|s| s.prot & PROT_EXEC != 0 && (s.offset..s.offset + s.len).contains(e))
        })
        .ok_or("its entry point is not in an executable segment")?;
    let carried = Carried::new(0, entry, phdr, elf.header.e_phnum, &segments)
        .ok_or("too many loadable segments")?;
    let span = end.div_ceil(ALIGN) * ALIGN;
    Ok(ImagePlan {
        copies,
        span,
        carried,
        min_vaddr,
        relocs: find_relocs(&elf, file),
    })
}

/// Builds the interpreter file for `target`: `shim` (the interpreter built
/// for that host) with a dispatch table naming `carried` and `by_path`
/// emulators, and the images of `carried`.
///
/// `read(i)` gives the bytes of `carried[i]`'s file again. Each is read,
/// copied into the file and dropped before the next, so memory holds the
/// file being built and one emulator, not every emulator (about 340 MB for
/// all of qemu's, too much next to the file for a 1 GB board). A file
/// whose plan no longer matches the one in `carried` changed since it was
/// planned, and is refused rather than copied into a layout made for
/// other bytes.
///
/// With `base`, the file is pre-relocated: a fixed-address executable at
/// `base` whose carried images already hold the pointers for where they
/// will sit (their relative relocations applied and taken out of their
/// dynamic sections), so no emulated process writes them again.
pub fn build(
    shim: &[u8],
    target: Target,
    carried: &[Carry<'_>],
    by_path: &[ByPath<'_>],
    flags: u16,
    base: Option<u64>,
    read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let region = region::region(shim)?;
    let interp = Interpreter::read(shim, target)?;
    let mut entries: Vec<Entry<'_>> = Vec::new();
    if carried.is_empty() {
        let mut file = shim.to_vec();
        entries.extend(by_path.iter().map(ByPath::entry));
        write_region(&mut file, region, &entries, flags)?;
        return Ok(file);
    }

    let layout = Layout::new(shim, &interp, carried);
    let (header, headers) = interp.with_segment(&layout, base)?;
    let mut file = vec![0u8; (layout.seg_offset + layout.seg_size) as usize];
    file[..shim.len()].copy_from_slice(shim);
    write_elf(&mut file, header, layout.seg_offset as usize, &headers)?;
    let descs = copy_images(&mut file, &layout, carried, target, base, read)?;
    // The table last: it records which images were pre-relocated.
    for (c, d) in carried.iter().zip(&descs) {
        entries.push(Entry {
            arch: c.arch,
            convention: Convention::Carried(*d),
            path: c.path,
            cpu: c.cpu,
        });
    }
    entries.extend(by_path.iter().map(ByPath::entry));
    write_region(&mut file, region, &entries, flags)?;
    Ok(file)
}

/// The interpreter's ELF header and program headers, checked to be a
/// little-endian ELF64 file for the target with a loadable segment.
struct Interpreter {
    header: Header,
    headers: Vec<ProgramHeader>,
    /// The end of its memory image (of its highest `PT_LOAD`).
    mem_end: u64,
}

impl Interpreter {
    fn read(shim: &[u8], target: Target) -> Result<Interpreter> {
        let header = header64(shim)
            .filter(|h| usize::from(h.e_phentsize) == SIZEOF_PHDR)
            .ok_or_else(|| Error::new("the interpreter is not a 64-bit little-endian ELF file"))?;
        if header.e_machine != target.machine() {
            return Err(Error::new(format!(
                "the interpreter is built for ELF machine {}, not for {}",
                header.e_machine,
                target.name()
            ))
            .hint("pass the qemu-shim-interp built for this host"));
        }
        let headers = program_headers(shim, header.e_phoff, header.e_phnum)
            .ok_or_else(|| Error::new("the interpreter's program headers lie outside it"))?;
        let mem_end = headers
            .iter()
            .filter(|h| h.p_type == PT_LOAD)
            .map(|h| h.p_vaddr + h.p_memsz)
            .max()
            .ok_or_else(|| Error::new("the interpreter has no loadable segment"))?;
        Ok(Interpreter {
            header,
            headers,
            mem_end,
        })
    }

    /// The built file's ELF header and program headers: the interpreter's,
    /// plus the carried segment inserted after the last `PT_LOAD` (loadable
    /// segments stay sorted), the table itself moved to the segment's start;
    /// with `base`, a fixed-address executable at `base`.
    fn with_segment(
        self,
        layout: &Layout,
        base: Option<u64>,
    ) -> Result<(Header, Vec<ProgramHeader>)> {
        let Interpreter {
            mut header,
            mut headers,
            ..
        } = self;
        let seg = ProgramHeader {
            p_type: PT_LOAD,
            p_flags: PF_R,
            p_offset: layout.seg_offset,
            p_vaddr: layout.seg_vaddr,
            p_paddr: layout.seg_vaddr,
            p_filesz: layout.seg_size,
            p_memsz: layout.seg_size,
            p_align: ALIGN,
        };
        let last_load = headers
            .iter()
            .rposition(|h| h.p_type == PT_LOAD)
            .unwrap_or(headers.len() - 1);
        headers.insert(last_load + 1, seg);
        for h in headers.iter_mut().filter(|h| h.p_type == PT_PHDR) {
            h.p_offset = layout.seg_offset;
            h.p_vaddr = layout.seg_vaddr;
            h.p_paddr = layout.seg_vaddr;
            h.p_filesz = layout.table_size;
            h.p_memsz = layout.table_size;
        }
        header.e_phoff = layout.seg_offset;
        header.e_phnum = u16::try_from(headers.len())
            .map_err(|_| Error::new("the interpreter has too many program headers"))?;
        if let Some(base) = base {
            // A fixed-address executable: every address moves up by `base`.
            // The interpreter still relocates its own few pointers at start
            // (it finds its base from its ELF header), so nothing else
            // changes.
            header.e_type = ET_EXEC;
            header.e_entry += base;
            for h in headers.iter_mut() {
                h.p_vaddr += base;
                h.p_paddr += base;
            }
        }
        Ok((header, headers))
    }
}

/// Where the carried segment goes, and each image in it.
struct Layout {
    /// The segment's address and file offset: past the interpreter in
    /// memory and in the file, both ALIGN-aligned so offset and address
    /// agree modulo the page size.
    seg_vaddr: u64,
    seg_offset: u64,
    /// The size of the new program header table, at the segment's start.
    table_size: u64,
    /// Each carried image's offset in the segment.
    placed: Vec<u64>,
    /// The segment's size, in the file and in memory alike: every image
    /// whole in the file, bss included, so the segment has no memory beyond
    /// its file part. Then any image can be moved as one mapping (a setuid
    /// exec moves a pre-relocated image), and kernels before 6.7, which
    /// zero the tail of a segment's last file page and fail when it is
    /// read-only, have nothing to zero.
    seg_size: u64,
}

impl Layout {
    fn new(shim: &[u8], interp: &Interpreter, carried: &[Carry<'_>]) -> Layout {
        let seg_vaddr = interp.mem_end.div_ceil(ALIGN) * ALIGN;
        let seg_offset = (shim.len() as u64).div_ceil(ALIGN) * ALIGN;
        let table_size = ((interp.headers.len() + 1) * SIZEOF_PHDR) as u64;
        let mut cursor = table_size.div_ceil(ALIGN) * ALIGN;
        let mut placed = Vec::new();
        for c in carried {
            placed.push(cursor);
            cursor += c.plan.span;
        }
        Layout {
            seg_vaddr,
            seg_offset,
            table_size,
            placed,
            seg_size: cursor,
        }
    }
}

/// Copies each carried image into `file` where `layout` placed it, reading
/// its file again (`read(i)`, one at a time) and refusing one whose plan
/// changed since; with `base`, pre-relocates it. Returns each image's
/// description for the table.
fn copy_images(
    file: &mut [u8],
    layout: &Layout,
    carried: &[Carry<'_>],
    target: Target,
    base: Option<u64>,
    read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<Vec<Carried>> {
    let mut descs = Vec::new();
    for (i, (c, at)) in carried.iter().zip(&layout.placed).enumerate() {
        let p = &c.plan;
        let bytes = read(i)?;
        // The layout was made from the first read: the bytes copied must be
        // planned the same way, or the table and the image would disagree.
        // Planning them again is cheap next to reading them.
        if plan(&bytes, target).as_ref() != Ok(p) {
            return Err(changed(c.path));
        }
        let start = (layout.seg_offset + at) as usize;
        for &(off, v, len) in &p.copies {
            let to = start + v as usize;
            file[to..to + len as usize].copy_from_slice(&bytes[off as usize..(off + len) as usize]);
        }
        drop(bytes);
        let mut d = p.carried;
        d.image = layout.seg_vaddr + at;
        if let (Some(base), Some(r)) = (base, p.relocs) {
            let bias = base + layout.seg_vaddr + at - p.min_vaddr;
            let image = &mut file[start..start + p.span as usize];
            if let Some(fixes) = prelink(image, p.min_vaddr, bias, &r, target) {
                d = d.prelinked(p.span, &fixes).unwrap_or(d);
            }
        }
        descs.push(d);
    }
    Ok(descs)
}

/// Writes the ELF header and, at `phoff`, the program header table.
fn write_elf(
    file: &mut [u8],
    header: Header,
    phoff: usize,
    headers: &[ProgramHeader],
) -> Result<()> {
    fn short(e: impl std::fmt::Display) -> Error {
        Error::new(format!("cannot write the ELF headers: {e}"))
    }
    file.pwrite_with(header, 0, LE).map_err(short)?;
    debug_assert_eq!(SIZEOF_EHDR, 64);
    for (i, h) in headers.iter().enumerate() {
        file.pwrite_with(*h, phoff + i * SIZEOF_PHDR, LE)
            .map_err(short)?;
    }
    Ok(())
}

/// The error for an emulator file that changed between its two reads.
pub fn changed(path: &[u8]) -> Error {
    Error::new(format!(
        "the emulator {} changed while the interpreter file was being built",
        String::from_utf8_lossy(path)
    ))
    .hint("run the command again once it is no longer being replaced")
}

/// Applies the relative relocations of one image (`image`: its bytes as in
/// memory, from `min_vaddr`) for load bias `bias`, and takes them out of its
/// dynamic section so its C library does not apply them again. Returns the
/// words that undo that (see [`Fix`]); `None` if the table is not what
/// [`find_relocs`] promised, leaving the image as it was.
fn prelink(
    image: &mut [u8],
    min_vaddr: u64,
    bias: u64,
    r: &Relocs,
    target: Target,
) -> Option<Vec<Fix>> {
    let at = |v: u64| -> Option<usize> { usize::try_from(v.checked_sub(min_vaddr)?).ok() };
    // Check every entry first: nothing is written unless all are relative.
    let mut places = Vec::with_capacity(r.count as usize);
    for i in 0..r.count {
        let rela: Rela = image.pread_with(at(r.rela + i * r.relaent)?, LE).ok()?;
        if rela.r_info as u32 != target.r_relative() {
            return None;
        }
        let place = at(rela.r_offset)?;
        image.get(place..place + 8)?;
        places.push((place, bias.wrapping_add(rela.r_addend as u64)));
    }
    for (place, value) in places {
        image.pwrite_with(value, place, LE).ok()?;
    }
    let taken = r.count * r.relaent;
    let fixes = vec![
        Fix {
            offset: r.rela_at.0 - min_vaddr,
            value: r.rela_at.1,
        },
        Fix {
            offset: r.relasz_at.0 - min_vaddr,
            value: r.relasz_at.1,
        },
        Fix {
            offset: r.count_at.0 - min_vaddr,
            value: r.count_at.1,
        },
    ];
    for (f, new) in fixes
        .iter()
        .zip([r.rela_at.1 + taken, r.relasz_at.1 - taken, 0])
    {
        image
            .pwrite_with(new, usize::try_from(f.offset).ok()?, LE)
            .ok()?;
    }
    Some(fixes)
}

fn write_region(
    image: &mut [u8],
    region: std::ops::Range<usize>,
    entries: &[Entry<'_>],
    flags: u16,
) -> Result<()> {
    dispatch::encode(entries, flags, &mut image[region])
        .map_err(|e| Error::new(format!("cannot write the dispatch table: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::elf_with_section;
    use goblin::elf::section_header::SHT_PROGBITS;

    const T: Target = Target::X86_64;

    /// A little-endian ELF64 program header.
    fn phdr(p_type: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(SIZEOF_PHDR);
        h.extend(p_type.to_le_bytes());
        h.extend(flags.to_le_bytes());
        for v in [offset, vaddr, vaddr, filesz, memsz, 0x1000] {
            h.extend(v.to_le_bytes());
        }
        h
    }

    /// A stand-in for a built interpreter: a dispatch-table section and
    /// one loadable segment over the whole file.
    fn shim() -> Vec<u8> {
        let mut region = vec![0u8; dispatch::REGION_SIZE];
        region[..16].copy_from_slice(&dispatch::EMPTY_REGION_HEADER);
        let mut f = elf_with_section(dispatch::SECTION, &region, SHT_PROGBITS);
        let phoff = f.len() as u64;
        let len = phoff + SIZEOF_PHDR as u64;
        f.extend(phdr(PT_LOAD, PF_R | PF_X, 0, 0, len, len));
        f[18..20].copy_from_slice(&T.machine().to_le_bytes());
        f[32..40].copy_from_slice(&phoff.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    /// A stand-in for a static-pie emulator: one executable loadable
    /// segment holding its headers and `memsz - 0x200` bytes of bss.
    fn emulator(memsz: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        f[18..20].copy_from_slice(&T.machine().to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x100u64.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&(SIZEOF_PHDR as u16).to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[64..64 + SIZEOF_PHDR].copy_from_slice(&phdr(PT_LOAD, PF_R | PF_X, 0, 0, 0x200, memsz));
        f[0x100..0x110].copy_from_slice(b"emulator's code.");
        f
    }

    fn carry(file: &[u8]) -> Carry<'static> {
        Carry {
            arch: "aarch64",
            path: b"/q/qemu-aarch64-static",
            cpu: b"",
            plan: plan(file, T).unwrap(),
        }
    }

    #[test]
    fn an_emulator_read_again_unchanged_is_copied_as_planned() {
        let emu = emulator(0x300);
        let carried = [carry(&emu)];
        let mut reads = Vec::new();
        let file = build(&shim(), T, &carried, &[], 0, None, &mut |i| {
            reads.push(i);
            Ok(emu.clone())
        })
        .unwrap();
        assert_eq!(reads, [0], "read once, when copied");
        let seg = (shim().len() as u64).div_ceil(ALIGN) * ALIGN + ALIGN;
        assert_eq!(&file[seg as usize..][..emu.len()], &emu[..]);
        let table = crate::read_spec(&file).unwrap();
        assert!(table.carry);
    }

    #[test]
    fn an_emulator_whose_layout_changed_since_planned_is_refused() {
        let carried = [carry(&emulator(0x300))];
        for (now, what) in [
            (emulator(0x20000), "bigger in memory"),
            (b"#!/bin/sh\n".to_vec(), "not ELF"),
        ] {
            let e =
                build(&shim(), T, &carried, &[], 0, None, &mut |_| Ok(now.clone())).unwrap_err();
            assert!(
                e.message().contains("/q/qemu-aarch64-static changed while"),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn an_emulator_that_cannot_be_read_again_fails_the_build() {
        let carried = [carry(&emulator(0x300))];
        let r = build(&shim(), T, &carried, &[], 0, None, &mut |_| {
            Err(Error::new("cannot read the emulator: gone"))
        });
        assert!(r.unwrap_err().message().contains("gone"));
    }
}
