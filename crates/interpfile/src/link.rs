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

use std::fs::File;

use crate::error::{Error, Result};
use crate::output::{Output, PAGE, WRITE_CHUNK};
use crate::region;
use crate::target::Target;

/// Alignment of the carried segment and of each image in it: 64 KiB, the
/// largest page size of the hosts qemu-shim supports (aarch64 kernels may
/// use 4, 16 or 64 KiB pages), so the same layout maps on all of them.
pub const ALIGN: u64 = 0x10000;

/// The largest image carried (in memory, bss included): far above any
/// emulator's (qemu's are about 20 MiB), far below what would make the
/// file absurd.
const MAX_SPAN: u64 = 1 << 30;

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
    /// What pre-relocating it takes, if it can be (every entry relative,
    /// every word it writes inside the image).
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
    if span > MAX_SPAN {
        return Err(format!("its image is {} MiB in memory", span >> 20));
    }
    // Pre-relocated only if it can be whole: every entry relative, every
    // word in the image. Checked now so the table, written first, can say.
    let image = Image {
        file,
        copies: &copies,
        min_vaddr,
        span,
    };
    let relocs = find_relocs(&elf, file)
        .filter(|r| relocation_writes(&image, r, 0, target, &mut |_| {}).is_some());
    Ok(ImagePlan {
        copies,
        span,
        carried,
        min_vaddr,
        relocs,
    })
}

/// How the linker gets each carried emulator again, one at a time.
pub trait Emulators {
    /// Reads `carried[i]`'s file again into `buf` (its old contents
    /// dropped, its allocation reused: one emulator's worth of memory for
    /// the whole file). Returns the file, open, if an [`Output`] may take
    /// the bytes from it (share its extents).
    fn read(&mut self, i: usize, buf: &mut Vec<u8>) -> Result<Option<File>>;
    /// Called once `carried[i]`'s image went to the output: fails if its
    /// file changed since [`Emulators::read`] (what an output took from the
    /// file itself may then differ from the bytes checked).
    fn check(&mut self, i: usize, file: Option<&File>) -> Result<()> {
        let _ = (i, file);
        Ok(())
    }
    /// The size of the largest file, if known: one buffer of that size
    /// then serves them all, never grown (a grown one leaves the old
    /// behind in the allocator's heap).
    fn largest(&self) -> usize {
        0
    }
}

/// Emulators given as bytes only (tests, callers without files).
impl Emulators for &mut dyn FnMut(usize) -> Result<Vec<u8>> {
    fn read(&mut self, i: usize, buf: &mut Vec<u8>) -> Result<Option<File>> {
        *buf = self(i)?;
        Ok(None)
    }
}

/// What the linker makes a file of: `shim` (the interpreter built for
/// `target`) with a dispatch table naming `carried` and `by_path`
/// emulators and table `flags`, and the images of `carried`.
///
/// With `base`, the file is pre-relocated: a fixed-address executable at
/// `base` whose carried images already hold the pointers for where they
/// will sit (their relative relocations applied and taken out of their
/// dynamic sections), so no emulated process writes them again.
pub struct Link<'a> {
    pub shim: &'a [u8],
    pub target: Target,
    pub carried: &'a [Carry<'a>],
    pub by_path: &'a [ByPath<'a>],
    pub flags: u16,
    pub base: Option<u64>,
}

/// [`Link::write`] into memory: the whole file as bytes (tests and small
/// files; hundreds of MB with every emulator carried). `read(i)` gives the
/// bytes of `carried[i]`'s file again.
pub fn build(
    shim: &[u8],
    target: Target,
    carried: &[Carry<'_>],
    by_path: &[ByPath<'_>],
    flags: u16,
    base: Option<u64>,
    mut read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut file = Vec::new();
    Link {
        shim,
        target,
        carried,
        by_path,
        flags,
        base,
    }
    .write(&mut read, &mut file)?;
    Ok(file)
}

impl Link<'_> {
    /// The size of the file, without reading any emulator.
    pub fn file_size(&self) -> Result<u64> {
        region::region(self.shim)?;
        let interp = Interpreter::read(self.shim, self.target)?;
        if self.carried.is_empty() {
            return Ok(self.shim.len() as u64);
        }
        let layout = Layout::new(self.shim, &interp, self.carried);
        Ok(layout.seg_offset + layout.seg_size)
    }

    /// Hands the file to `out`, in order, one emulator at a time: each is
    /// read again (`emus.read(i)`), checked to plan as it did, relocated
    /// piece by piece and handed on before the next is read, so memory
    /// holds one emulator and a few pages, never the file. A file whose
    /// plan no longer matches the one in `carried` changed since it was
    /// planned, and is refused rather than copied into a layout made for
    /// other bytes. Stops early once `out` is [`Output::done`].
    pub fn write(&self, emus: &mut dyn Emulators, out: &mut dyn Output) -> Result<()> {
        let region = region::region(self.shim)?;
        let interp = Interpreter::read(self.shim, self.target)?;
        let mut entries: Vec<Entry<'_>> = Vec::new();
        if self.carried.is_empty() {
            let mut file = self.shim.to_vec();
            entries.extend(self.by_path.iter().map(ByPath::entry));
            write_region(&mut file, region, &entries, self.flags)?;
            out.begin(file.len() as u64)?;
            return out.bytes(&file);
        }

        let layout = Layout::new(self.shim, &interp, self.carried);
        let (header, headers) = interp.with_segment(&layout, self.base)?;
        // The table first, at the file's start: whether an image is
        // pre-relocated was decided when it was planned.
        for (c, at) in self.carried.iter().zip(&layout.placed) {
            entries.push(Entry {
                arch: c.arch,
                convention: Convention::Carried(describe(&c.plan, &layout, *at, self.base)),
                path: c.path,
                cpu: c.cpu,
            });
        }
        entries.extend(self.by_path.iter().map(ByPath::entry));
        let mut head = self.shim.to_vec();
        head.pwrite_with(header, 0, LE).map_err(short)?;
        debug_assert_eq!(SIZEOF_EHDR, 64);
        write_region(&mut head, region, &entries, self.flags)?;
        out.begin(layout.seg_offset + layout.seg_size)?;
        out.bytes(&head)?;
        out.zeros(layout.seg_offset - head.len() as u64)?;
        let mut table = vec![0u8; headers.len() * SIZEOF_PHDR];
        for (i, h) in headers.iter().enumerate() {
            table.pwrite_with(*h, i * SIZEOF_PHDR, LE).map_err(short)?;
        }
        out.bytes(&table)?;
        let first = layout.placed.first().copied().unwrap_or(layout.seg_size);
        out.zeros(first - table.len() as u64)?;

        // Reused from one emulator to the next, so memory does not grow
        // with their number.
        let mut scratch = Scratch {
            bytes: Vec::with_capacity(emus.largest()),
            ..Scratch::default()
        };
        for (i, (c, at)) in self.carried.iter().zip(&layout.placed).enumerate() {
            if out.done() {
                return Ok(());
            }
            let p = &c.plan;
            let file = emus.read(i, &mut scratch.bytes)?;
            // The layout was made from the first read: the bytes copied
            // must be planned the same way, or the table and the image
            // would disagree. Planning them again is cheap next to reading
            // them.
            if plan(&scratch.bytes, self.target).as_ref() != Ok(p) {
                return Err(changed(c.path));
            }
            scratch.writes.clear();
            if let (Some(base), Some(r)) = (self.base, p.relocs) {
                let bias = base
                    .wrapping_add(layout.seg_vaddr + at)
                    .wrapping_sub(p.min_vaddr);
                let image = Image {
                    file: &scratch.bytes,
                    copies: &p.copies,
                    min_vaddr: p.min_vaddr,
                    span: p.span,
                };
                let writes = &mut scratch.writes;
                writes.reserve_exact(usize::try_from(r.count).unwrap_or(0).saturating_add(3));
                relocation_writes(&image, &r, bias, self.target, &mut |w| writes.push(w))
                    .ok_or_else(|| changed(c.path))?;
            }
            emit_image(out, p, file.as_ref(), &mut scratch)?;
            emus.check(i, file.as_ref())?;
        }
        Ok(())
    }
}

fn short(e: impl std::fmt::Display) -> Error {
    Error::new(format!("cannot write the ELF headers: {e}"))
}

/// A carried image's description for the table, at `at` in the segment.
fn describe(p: &ImagePlan, layout: &Layout, at: u64, base: Option<u64>) -> Carried {
    let mut d = p.carried;
    d.image = layout.seg_vaddr + at;
    if let (Some(_), Some(r)) = (base, p.relocs) {
        // The words pre-relocation changes in the dynamic section, and
        // their old values: what undoes it (a setuid exec moves the image).
        // In the image, as `plan` checked.
        let fixes = [r.rela_at, r.relasz_at, r.count_at].map(|(v, value)| Fix {
            offset: v - p.min_vaddr,
            value,
        });
        d = d.prelinked(p.span, &fixes).unwrap_or(d);
    }
    d
}

/// An image as the emulator file describes it: the plan's copies of the
/// file's bytes, in memory from `min_vaddr`, `span` bytes.
struct Image<'a> {
    file: &'a [u8],
    copies: &'a [(u64, u64, u64)],
    min_vaddr: u64,
    span: u64,
}

impl Image<'_> {
    /// Its bytes from `from` (an offset in the image) into `buf`: each copy
    /// in turn (a later one wins where two overlap), zeros elsewhere.
    fn read(&self, from: u64, buf: &mut [u8]) {
        buf.fill(0);
        let to = from + buf.len() as u64;
        for &(off, v, len) in self.copies {
            let (s, e) = (v.max(from), (v + len).min(to));
            if s < e {
                let src = (off + s - v) as usize;
                buf[(s - from) as usize..(e - from) as usize]
                    .copy_from_slice(&self.file[src..src + (e - s) as usize]);
            }
        }
    }
}

/// The writes that pre-relocate one image for load bias `bias`, handed to
/// `each`: each relative relocation's word (its place in the image, its
/// value), in table order, then the three words of the dynamic section
/// that take the relocations out of it (so its C library does not apply
/// them again). A later write wins where two meet. `None` (and what was
/// handed on is to be dropped) unless every entry is relative and every
/// place lies in the image, so that an image is relocated whole or not at
/// all.
fn relocation_writes(
    image: &Image<'_>,
    r: &Relocs,
    bias: u64,
    target: Target,
    each: &mut dyn FnMut((u64, u64)),
) -> Option<()> {
    let in_image = |v: u64| -> Option<u64> {
        let at = v.checked_sub(image.min_vaddr)?;
        (at.checked_add(8)? <= image.span).then_some(at)
    };
    let mut e = [0u8; SIZEOF_RELA];
    for i in 0..r.count {
        let at = r
            .rela
            .wrapping_add(i.wrapping_mul(r.relaent))
            .checked_sub(image.min_vaddr)?;
        if at.checked_add(SIZEOF_RELA as u64)? > image.span {
            return None;
        }
        image.read(at, &mut e);
        let rela: Rela = e.pread_with(0, LE).ok()?;
        if rela.r_info as u32 != target.r_relative() {
            return None;
        }
        each((
            in_image(rela.r_offset)?,
            bias.wrapping_add(rela.r_addend as u64),
        ));
    }
    let taken = r.count * r.relaent;
    for ((v, _), new) in [r.rela_at, r.relasz_at, r.count_at].into_iter().zip([
        r.rela_at.1.wrapping_add(taken),
        r.relasz_at.1.wrapping_sub(taken),
        0,
    ]) {
        each((in_image(v)?, new));
    }
    Some(())
}

/// What writing an image needs besides the emulator, kept from one image
/// to the next.
#[derive(Default)]
struct Scratch {
    /// The emulator's file.
    bytes: Vec<u8>,
    /// Its pre-relocation writes, in order.
    writes: Vec<(u64, u64)>,
    /// Their indices sorted by place.
    order: Vec<usize>,
    /// Pages some write meets.
    dirty: Vec<bool>,
    /// A piece made in memory.
    buf: Vec<u8>,
}

/// How one page of an image gets into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageKind {
    /// All zeros (bss, gaps between segments).
    Zero,
    /// One copy's bytes, unchanged, from this file offset.
    Copy(u64),
    /// Anything else: made in memory (pre-relocated words, a segment's
    /// partial first or last page).
    Made,
}

/// Hands one image (`p.span` bytes) to `out`: zero pages as zeros,
/// unchanged pages as copies of the emulator's file (an output may share
/// them), the rest made in memory a few pages at a time with the `writes`
/// applied in order.
fn emit_image(
    out: &mut dyn Output,
    p: &ImagePlan,
    file: Option<&File>,
    scratch: &mut Scratch,
) -> Result<()> {
    let Scratch {
        bytes,
        writes,
        order,
        dirty,
        buf,
    } = scratch;
    let image = Image {
        file: bytes,
        copies: &p.copies,
        min_vaddr: p.min_vaddr,
        span: p.span,
    };
    let pages = p.span / PAGE;
    dirty.clear();
    dirty.resize(pages as usize, false);
    for &(place, _) in writes.iter() {
        for at in [place, place + 7] {
            if let Some(d) = dirty.get_mut((at / PAGE) as usize) {
                *d = true;
            }
        }
    }
    // The writes by place, to find those of a piece.
    order.clear();
    order.reserve_exact(writes.len());
    order.extend(0..writes.len());
    order.sort_by_key(|&i| writes[i].0);
    let kind = |page: u64| -> PageKind {
        if dirty[page as usize] {
            return PageKind::Made;
        }
        let (from, to) = (page * PAGE, (page + 1) * PAGE);
        let mut kind = PageKind::Zero;
        for &(off, v, len) in &p.copies {
            if v >= to || v + len <= from {
                continue;
            }
            if kind != PageKind::Zero || v > from || v + len < to {
                return PageKind::Made;
            }
            kind = PageKind::Copy(off + from - v);
        }
        kind
    };
    let mut page = 0u64;
    while page < pages {
        let first = kind(page);
        let mut end = page + 1;
        while end < pages {
            let next = kind(end);
            let same = match (first, next) {
                (PageKind::Copy(a), PageKind::Copy(b)) => b == a + (end - page) * PAGE,
                (a, b) => a == b,
            };
            if !same {
                break;
            }
            end += 1;
        }
        let (from, to) = (page * PAGE, end * PAGE);
        match first {
            PageKind::Zero => out.zeros(to - from)?,
            PageKind::Copy(off) => {
                let bytes = &bytes[off as usize..(off + to - from) as usize];
                match file {
                    Some(f) => out.copy(f, off, bytes)?,
                    None => out.bytes(bytes)?,
                }
            }
            PageKind::Made => {
                let mut at = from;
                while at < to {
                    let n = (to - at).min(WRITE_CHUNK as u64);
                    buf.resize(n as usize, 0);
                    image.read(at, buf);
                    apply(buf, at, writes, order);
                    out.bytes(buf)?;
                    at += n;
                }
            }
        }
        if out.done() {
            return Ok(());
        }
        page = end;
    }
    Ok(())
}

/// Applies to `buf` (image bytes from `from`) the `writes` that meet it,
/// in their order (`order`: their indices sorted by place).
fn apply(buf: &mut [u8], from: u64, writes: &[(u64, u64)], order: &[usize]) {
    let to = from + buf.len() as u64;
    let lo = from.saturating_sub(7);
    let start = order.partition_point(|&i| writes[i].0 < lo);
    let mut here: Vec<usize> = order[start..]
        .iter()
        .copied()
        .take_while(|&i| writes[i].0 < to)
        .collect();
    here.sort_unstable();
    for i in here {
        let (place, value) = writes[i];
        for (k, b) in value.to_le_bytes().into_iter().enumerate() {
            let at = place + k as u64;
            if (from..to).contains(&at) {
                buf[(at - from) as usize] = b;
            }
        }
    }
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

/// The error for an emulator file that changed between its two reads.
pub fn changed(path: &[u8]) -> Error {
    Error::new(format!(
        "the emulator {} changed while the interpreter file was being built",
        String::from_utf8_lossy(path)
    ))
    .hint("run the command again once it is no longer being replaced")
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
    fn writes_that_straddle_a_piece_land_in_both_in_table_order() {
        // Words at the end of one piece and across into the next, one
        // written twice (the later wins), one overlapping another.
        let writes = [
            (4, 0x1111_1111_1111_1111),
            (12, 0x2222_2222_2222_2222),
            (4, 0x3333_3333_3333_3333),
            (14, 0x4444_4444_4444_4444),
        ];
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(|&i| writes[i].0);
        let mut whole = [0u8; 32];
        apply(&mut whole, 0, &writes, &order);
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        apply(&mut a, 0, &writes, &order);
        apply(&mut b, 16, &writes, &order);
        assert_eq!([a, b].concat(), whole);
        assert_eq!(whole[4..12], [0x33; 8]);
        assert_eq!(whole[12..14], [0x22; 2]);
        assert_eq!(whole[14..22], [0x44; 8]);
        assert_eq!(whole[22..], [0; 10]);
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
