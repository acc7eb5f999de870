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

use goblin::elf::header::{EM_AARCH64, EM_X86_64, ET_DYN};
use goblin::elf::program_header::{PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD, PT_PHDR};
use goblin::elf::Elf;
use qemu_shim_registry::dispatch::{
    self, Carried, Convention, Entry, Segment, MAX_SEGMENTS, PROT_EXEC, PROT_READ, PROT_WRITE,
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
    /// The emulator file's bytes.
    pub file: &'a [u8],
}

/// An emulator the interpreter will exec by path.
pub struct ByPath<'a> {
    pub arch: &'a str,
    pub path: &'a [u8],
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

/// How one emulator will sit in the interpreter file.
struct Plan<'a> {
    carry: &'a Carry<'a>,
    /// Its loadable segments: (file offset, vaddr, filesz) relative to
    /// `min_vaddr`, for copying.
    copies: Vec<(u64, u64, u64)>,
    /// Its image size in memory, ALIGN-aligned.
    span: u64,
    /// Image size in the file (up to its last file byte).
    file_span: u64,
    carried_without_image: Carried,
}

/// An emulator's image, planned: the copies to make (file offset, offset in
/// the image, length), its size in memory and in the file (each from the
/// image's start), and its description for the table (image offset 0).
type ImagePlan = (Vec<(u64, u64, u64)>, u64, u64, Carried);

/// Reads an emulator's loadable segments. An emulator can be carried if it
/// is a static PIE for this host whose image fits the dispatch table: (copies, span, file span,
/// description with image offset 0).
fn plan_image(file: &[u8]) -> std::result::Result<ImagePlan, String> {
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
    let (mut end, mut file_end) = (0u64, 0u64);
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
        file_end = file_end.max(v + p.p_filesz);
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
    Ok((copies, span, file_end, carried))
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
pub fn build(
    shim: &[u8],
    carried: &[Carry<'_>],
    by_path: &[ByPath<'_>],
    flags: u16,
) -> Result<Vec<u8>> {
    let region = interp::region(shim)?;
    let mut plans = Vec::new();
    for c in carried {
        let (copies, span, file_span, d) = plan_image(c.file).map_err(|why| {
            Error::new(format!(
                "cannot carry {}: {why}",
                String::from_utf8_lossy(c.path)
            ))
            .hint("use --no-carry to run it by path")
        })?;
        plans.push(Plan {
            carry: c,
            copies,
            span,
            file_span,
            carried_without_image: d,
        });
    }

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
    if plans.is_empty() {
        for b in by_path {
            entries.push(Entry {
                arch: b.arch,
                convention: Convention::ExecByPath,
                path: b.path,
            });
        }
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
    for p in &plans {
        placed.push(cursor);
        cursor += p.span;
    }
    let last = plans.len() - 1;
    // Rounded up so the file part ends on a page boundary: kernels before
    // 6.7 zero the rest of the last file page of a segment with bss and
    // fail the exec if that page is not writable.
    let file_size_in_seg = (placed[last] + plans[last].file_span).div_ceil(ALIGN) * ALIGN;
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

    let mut descs = Vec::new();
    for (p, at) in plans.iter().zip(&placed) {
        let mut d = p.carried_without_image;
        d.image = seg_vaddr + at;
        descs.push(d);
    }
    for (p, d) in plans.iter().zip(&descs) {
        entries.push(Entry {
            arch: p.carry.arch,
            convention: Convention::Carried(*d),
            path: p.carry.path,
        });
    }
    for b in by_path {
        entries.push(Entry {
            arch: b.arch,
            convention: Convention::ExecByPath,
            path: b.path,
        });
    }
    write_region(&mut new_shim, region, &entries, flags)?;

    // Everything not written stays zero: the padding, and the bss of every
    // image but the last (the last one's is memory size beyond the file).
    let total = seg_offset + file_size_in_seg;
    let mut file = vec![0u8; total as usize];
    file[..new_shim.len()].copy_from_slice(&new_shim);
    let put = |file: &mut Vec<u8>, at: u64, bytes: &[u8]| {
        file[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut file, seg_offset, &headers.concat());
    for (p, at) in plans.iter().zip(&placed) {
        for &(off, v, len) in &p.copies {
            put(
                &mut file,
                seg_offset + at + v,
                &p.carry.file[off as usize..(off + len) as usize],
            );
        }
    }
    Ok(file)
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
