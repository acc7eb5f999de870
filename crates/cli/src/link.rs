//! The CLI's very small linker: writes the interpreter file, which holds the
//! built interpreter, its dispatch table, and the memory images of the
//! emulators it carries.
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
//! far below the kernel's limit of one page of headers. Images are laid out
//! with their bss, as zeros in the file, but for the last, whose bss is
//! memory beyond the file's part of the segment. The interpreter sets each carried
//! segment's protection before jumping in (`crates/shim`, `sys::launch`).

use goblin::elf::header::{EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};
use goblin::elf::Elf;
use qemu_shim_registry::dispatch::{
    self, Carried, Convention, Entry, Fix, Segment, MAX_SEGMENTS, PROT_EXEC, PROT_READ, PROT_WRITE,
};

use crate::error::{Error, Result};
use crate::interp;

/// Alignment of the carried segment and of each image in it: 64 KiB, the
/// largest page size of the hosts qemu-shim supports (aarch64 kernels may
/// use 4, 16 or 64 KiB pages), so the same layout maps on all of them.
pub const ALIGN: u64 = 0x10000;

/// Bytes of one ELF64 program header.
const PHENT: usize = 56;

/// An emulator to carry.
pub struct Carry<'a> {
    /// Arch name, as in the arch table.
    pub arch: &'a str,
    /// Where it was found (recorded for `status`).
    pub path: &'a [u8],
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
}

impl<'a> ByPath<'a> {
    fn entry(&self) -> Entry<'a> {
        Entry {
            arch: self.arch,
            convention: self.convention,
            path: self.path,
        }
    }
}

/// The ELF machine of the host this CLI was built for, which is the
/// interpreter's too.
pub fn host_machine() -> u16 {
    if cfg!(target_arch = "aarch64") {
        EM_AARCH64
    } else {
        EM_X86_64
    }
}

/// The fixed address of a pre-relocated interpreter file: the address of
/// its first loadable segment if it is a fixed-address executable.
pub fn prelink_base(file: &[u8]) -> Option<u64> {
    // The header and program headers only: see `interp::sections` for why
    // not goblin's whole parse.
    let header = Elf::parse_header(file).ok()?;
    if header.e_type != ET_EXEC || header.e_phentsize as usize != PHENT {
        return None;
    }
    let phoff = header.e_phoff as usize;
    let table = file.get(phoff..phoff + usize::from(header.e_phnum) * PHENT)?;
    table
        .chunks_exact(PHENT)
        .find(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PT_LOAD)
        .and_then(|h| h.get(16..24)?.try_into().ok().map(u64::from_le_bytes))
}

/// A fresh fixed address for a pre-relocated interpreter file, drawn at
/// random in a range clear of where the kernel places stacks, mmap areas,
/// the vdso and position-independent programs, and of where guest programs
/// load: x86_64 [32 TiB, 64 TiB) of its 128 TiB; aarch64 (whose kernels
/// may give user space only 39 bits, 512 GiB) [256 GiB, 384 GiB). 2 MiB
/// aligned.
pub fn random_base() -> Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| Error::new(format!("cannot read /dev/urandom: {e}")))?;
    let r = u64::from_le_bytes(b);
    let (lo, len) = if cfg!(target_arch = "aarch64") {
        (0x40_0000_0000u64, 0x20_0000_0000u64)
    } else {
        (0x2000_0000_0000u64, 0x2000_0000_0000u64)
    };
    Ok((lo + r % len) & !0x1f_ffff)
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

const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_RELR: u64 = 36;
const DT_RELACOUNT: u64 = 0x6fff_fff9;

/// The host's relative relocation type.
fn r_relative() -> u32 {
    if cfg!(target_arch = "aarch64") {
        1027
    } else {
        8
    }
}

/// Finds what pre-relocation needs: a dynamic section with DT_RELA,
/// DT_RELASZ and DT_RELACOUNT, and no DT_RELR (packed relocations are not
/// handled; such an image is relocated at run time as usual).
fn find_relocs(elf: &Elf<'_>, file: &[u8]) -> Option<Relocs> {
    use goblin::elf::program_header::PT_DYNAMIC;
    let dynamic = elf
        .program_headers
        .iter()
        .find(|p| p.p_type == PT_DYNAMIC)?;
    let bytes =
        file.get(dynamic.p_offset as usize..(dynamic.p_offset + dynamic.p_filesz) as usize)?;
    let (mut rela, mut relasz, mut relaent, mut count) = (None, None, 24, None);
    for (i, d) in bytes.chunks_exact(16).enumerate() {
        let tag = u64::from_le_bytes(d[..8].try_into().ok()?);
        let val = u64::from_le_bytes(d[8..].try_into().ok()?);
        let at = (dynamic.p_vaddr + i as u64 * 16 + 8, val);
        match tag {
            DT_NULL => break,
            DT_RELA => rela = Some(at),
            DT_RELASZ => relasz = Some(at),
            DT_RELAENT => relaent = val,
            DT_RELACOUNT => count = Some(at),
            DT_RELR => return None,
            _ => {}
        }
    }
    let (rela_at, relasz_at, count_at) = (rela?, relasz?, count?);
    if relaent != 24 || count_at.1.checked_mul(relaent)? > relasz_at.1 {
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

/// Plans how an emulator file would sit in the interpreter file, from its
/// loadable segments, or says why it cannot be carried: it must be a static
/// PIE for this host whose image fits the dispatch table. The plan is all
/// [`build`] needs of the file but its bytes, so the caller can drop them
/// until then.
pub fn plan(file: &[u8]) -> std::result::Result<ImagePlan, String> {
    let elf = Elf::parse(file).map_err(|e| format!("not a readable ELF file ({e})"))?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != host_machine() {
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
                && phoff + (elf.header.e_phnum as u64 * PHENT as u64) <= p.p_offset + p.p_filesz
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

fn le_u16(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| Error::new("truncated interpreter ELF header"))
}

fn le_u64(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| Error::new("truncated interpreter ELF header"))
}

/// Builds the interpreter file: `shim` (the built interpreter) with a
/// dispatch table naming `carried` and `by_path` emulators, and the images
/// of `carried`.
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
    carried: &[Carry<'_>],
    by_path: &[ByPath<'_>],
    flags: u16,
    base: Option<u64>,
    read: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let region = interp::region(shim)?;

    // The built interpreter's headers: ELF64, little-endian, this host.
    let phoff = le_u64(shim, 32)? as usize;
    let phentsize = le_u16(shim, 54)? as usize;
    let phnum = le_u16(shim, 56)? as usize;
    if phentsize != PHENT || shim.get(4) != Some(&2) || shim.get(5) != Some(&1) {
        return Err(Error::new(
            "the interpreter is not a 64-bit little-endian ELF file",
        ));
    }
    let phdrs = shim
        .get(phoff..phoff + phnum * PHENT)
        .ok_or_else(|| Error::new("the interpreter's program headers lie outside it"))?;
    let mut headers: Vec<[u8; PHENT]> = phdrs
        .chunks_exact(PHENT)
        .map(|c| c.try_into().unwrap_or([0; PHENT]))
        .collect();
    let p_type = |h: &[u8; PHENT]| u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let field =
        |h: &[u8; PHENT], at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or([0; 8]));
    let mem_end = headers
        .iter()
        .filter(|h| p_type(h) == PT_LOAD)
        .map(|h| field(h, 16) + field(h, 40))
        .max()
        .ok_or_else(|| Error::new("the interpreter has no loadable segment"))?;

    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut new_shim = shim.to_vec();
    if carried.is_empty() {
        entries.extend(by_path.iter().map(ByPath::entry));
        write_region(&mut new_shim, region, &entries, flags)?;
        return Ok(new_shim);
    }

    // Where the carried segment goes: past the interpreter in memory and in
    // the file, both ALIGN-aligned so offset and address agree modulo the
    // page size.
    let seg_vaddr = mem_end.div_ceil(ALIGN) * ALIGN;
    let seg_offset = (shim.len() as u64).div_ceil(ALIGN) * ALIGN;
    let table_size = ((headers.len() + 1) * PHENT) as u64;
    let mut cursor = table_size.div_ceil(ALIGN) * ALIGN;
    let mut placed = Vec::new();
    for c in carried {
        placed.push(cursor);
        cursor += c.plan.span;
    }
    // Every image whole in the file, bss included: the segment has no
    // memory beyond its file part, so any image can be moved as one
    // mapping (a setuid exec moves a pre-relocated image), and kernels
    // before 6.7, which zero the tail of a segment's last file page and
    // fail when it is read-only, have nothing to zero.
    let file_size_in_seg = cursor;
    let mem_size_in_seg = cursor;

    // The new program header table: the old one plus the carried segment,
    // inserted after the last PT_LOAD (loadable segments stay sorted).
    let mut seg = [0u8; PHENT];
    seg[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
    seg[4..8].copy_from_slice(&PF_R.to_le_bytes());
    seg[8..16].copy_from_slice(&seg_offset.to_le_bytes());
    seg[16..24].copy_from_slice(&seg_vaddr.to_le_bytes());
    seg[24..32].copy_from_slice(&seg_vaddr.to_le_bytes());
    seg[32..40].copy_from_slice(&file_size_in_seg.to_le_bytes());
    seg[40..48].copy_from_slice(&mem_size_in_seg.to_le_bytes());
    seg[48..56].copy_from_slice(&ALIGN.to_le_bytes());
    let last_load = headers
        .iter()
        .rposition(|h| p_type(h) == PT_LOAD)
        .unwrap_or(headers.len() - 1);
    headers.insert(last_load + 1, seg);
    for h in headers.iter_mut().filter(|h| p_type(h) == PT_PHDR) {
        h[8..16].copy_from_slice(&seg_offset.to_le_bytes());
        h[16..24].copy_from_slice(&seg_vaddr.to_le_bytes());
        h[24..32].copy_from_slice(&seg_vaddr.to_le_bytes());
        h[32..40].copy_from_slice(&table_size.to_le_bytes());
        h[40..48].copy_from_slice(&table_size.to_le_bytes());
    }
    new_shim[32..40].copy_from_slice(&seg_offset.to_le_bytes());
    new_shim[56..58].copy_from_slice(&(headers.len() as u16).to_le_bytes());
    if let Some(base) = base {
        // A fixed-address executable: every address moves up by `base`.
        // The interpreter still relocates its own few pointers at start
        // (it finds its base from its ELF header), so nothing else changes.
        new_shim[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        let entry = le_u64(&new_shim, 24)? + base;
        new_shim[24..32].copy_from_slice(&entry.to_le_bytes());
        for h in headers.iter_mut() {
            for at in [16, 24] {
                let v = field(h, at) + base;
                h[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    let total = seg_offset + file_size_in_seg;
    let mut file = vec![0u8; total as usize];
    file[..new_shim.len()].copy_from_slice(&new_shim);
    let put = |file: &mut Vec<u8>, at: u64, bytes: &[u8]| {
        file[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut file, seg_offset, &headers.concat());
    let mut descs = Vec::new();
    for (i, (c, at)) in carried.iter().zip(&placed).enumerate() {
        let p = &c.plan;
        let bytes = read(i)?;
        // The layout above was made from the first read: the bytes copied
        // must be planned the same way, or the table and the image would
        // disagree. Planning them again is cheap next to reading them.
        if plan(&bytes).as_ref() != Ok(p) {
            return Err(changed(c.path));
        }
        for &(off, v, len) in &p.copies {
            put(
                &mut file,
                seg_offset + at + v,
                &bytes[off as usize..(off + len) as usize],
            );
        }
        drop(bytes);
        let mut d = p.carried;
        d.image = seg_vaddr + at;
        if let (Some(base), Some(r)) = (base, p.relocs) {
            let start = (seg_offset + at) as usize;
            let len = p.span as usize;
            let bias = base + seg_vaddr + at - p.min_vaddr;
            if let Some(fixes) = prelink(&mut file[start..start + len], p.min_vaddr, bias, &r) {
                d = d.prelinked(p.span, &fixes).unwrap_or(d);
            }
        }
        descs.push(d);
    }
    // The table last: it records which images were pre-relocated.
    for (c, d) in carried.iter().zip(&descs) {
        entries.push(Entry {
            arch: c.arch,
            convention: Convention::Carried(*d),
            path: c.path,
        });
    }
    entries.extend(by_path.iter().map(ByPath::entry));
    let mut head = file[..new_shim.len()].to_vec();
    write_region(&mut head, region, &entries, flags)?;
    file[..head.len()].copy_from_slice(&head);
    Ok(file)
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
fn prelink(image: &mut [u8], min_vaddr: u64, bias: u64, r: &Relocs) -> Option<Vec<Fix>> {
    let at = |v: u64| -> Option<usize> { usize::try_from(v.checked_sub(min_vaddr)?).ok() };
    let word = |image: &[u8], v: u64| -> Option<u64> {
        let i = at(v)?;
        Some(u64::from_le_bytes(image.get(i..i + 8)?.try_into().ok()?))
    };
    // Check every entry first: nothing is written unless all are relative.
    let mut places = Vec::with_capacity(r.count as usize);
    for i in 0..r.count {
        let e = r.rela + i * r.relaent;
        let (offset, info, addend) = (word(image, e)?, word(image, e + 8)?, word(image, e + 16)?);
        if info as u32 != r_relative() {
            return None;
        }
        let place = at(offset)?;
        image.get(place..place + 8)?;
        places.push((place, bias.wrapping_add(addend)));
    }
    for (place, value) in places {
        image[place..place + 8].copy_from_slice(&value.to_le_bytes());
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
        let i = f.offset as usize;
        image.get_mut(i..i + 8)?.copy_from_slice(&new.to_le_bytes());
    }
    Some(fixes)
}

fn write_region(
    image: &mut [u8],
    region: std::ops::Range<usize>,
    entries: &[Entry<'_>],
    flags: u16,
) -> Result<()> {
    let dst = &mut image[region];
    dispatch::encode(entries, flags, dst)
        .map_err(|e| Error::new(format!("cannot write the dispatch table: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::elf_with_section;
    use goblin::elf::section_header::SHT_PROGBITS;

    /// A little-endian ELF64 program header.
    fn phdr(p_type: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(PHENT);
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
        let len = phoff + PHENT as u64;
        f.extend(phdr(PT_LOAD, PF_R | PF_X, 0, 0, len, len));
        f[18..20].copy_from_slice(&host_machine().to_le_bytes());
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
        f[18..20].copy_from_slice(&host_machine().to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&0x100u64.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&(PHENT as u16).to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[64..64 + PHENT].copy_from_slice(&phdr(PT_LOAD, PF_R | PF_X, 0, 0, 0x200, memsz));
        f[0x100..0x110].copy_from_slice(b"emulator's code.");
        f
    }

    fn carry(file: &[u8]) -> Carry<'static> {
        Carry {
            arch: "aarch64",
            path: b"/q/qemu-aarch64-static",
            plan: plan(file).unwrap(),
        }
    }

    #[test]
    fn an_emulator_read_again_unchanged_is_copied_as_planned() {
        let emu = emulator(0x300);
        let carried = [carry(&emu)];
        let mut reads = Vec::new();
        let file = build(&shim(), &carried, &[], 0, None, &mut |i| {
            reads.push(i);
            Ok(emu.clone())
        })
        .unwrap();
        assert_eq!(reads, [0], "read once, when copied");
        let seg = (shim().len() as u64).div_ceil(ALIGN) * ALIGN + ALIGN;
        assert_eq!(&file[seg as usize..][..emu.len()], &emu[..]);
        let table = interp::read_config(&file).unwrap();
        assert!(table.carry);
    }

    #[test]
    fn an_emulator_whose_layout_changed_since_planned_is_refused() {
        let carried = [carry(&emulator(0x300))];
        for (now, what) in [
            (emulator(0x20000), "bigger in memory"),
            (b"#!/bin/sh\n".to_vec(), "not ELF"),
        ] {
            let e = build(&shim(), &carried, &[], 0, None, &mut |_| Ok(now.clone())).unwrap_err();
            assert!(
                e.message().contains("/q/qemu-aarch64-static changed while"),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn an_emulator_that_cannot_be_read_again_fails_the_build() {
        let carried = [carry(&emulator(0x300))];
        let r = build(&shim(), &carried, &[], 0, None, &mut |_| {
            Err(Error::new("cannot read the emulator: gone"))
        });
        assert!(r.unwrap_err().message().contains("gone"));
    }
}
