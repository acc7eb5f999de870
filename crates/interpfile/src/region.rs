//! The dispatch-table region of an interpreter file: finding it, writing a
//! table into it, and reading an installed file's table back.
//!
//! The built `qemu-shim-interp` reserves [`dispatch::REGION_SIZE`] bytes in
//! the section [`dispatch::SECTION`], starting with [`dispatch::MAGIC`]. The
//! section is located through the section header table (goblin); the region
//! is patched in place, so the interpreter's code and layout are untouched.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB};
use goblin::elf::section_header::SHT_NOBITS;
use goblin::elf::{Elf, SectionHeader};
use goblin::elf64::header::{Header, SIZEOF_EHDR};
use goblin::strtab::Strtab;
use qemu_shim_registry_core::dispatch::{self, Convention, Entry, Table};
use scroll::{Pread, LE};

use crate::error::{Error, Result};
use crate::link;
use crate::spec::Spec;

/// Hint for an interpreter binary that cannot be used.
const BUILD_HINT: &str = "build it with `cargo build --release --workspace`, \
     or pass the built qemu-shim-interp with --interpreter";

/// The section headers of `image` and the names they point at: only what
/// finding a section needs. Not goblin's whole `Elf::parse`, which also reads
/// the dynamic section through the program headers: an installed,
/// pre-relocated interpreter file is a fixed-address executable whose
/// dynamic section keeps the interpreter's position-independent values.
fn sections(image: &[u8]) -> std::result::Result<(Vec<SectionHeader>, Strtab<'_>), String> {
    let header = Elf::parse_header(image).map_err(|e| e.to_string())?;
    let container = if header.e_ident[EI_CLASS] == ELFCLASS64 {
        Container::Big
    } else {
        Container::Little
    };
    let endian = Endian::from(header.e_ident[EI_DATA] == ELFDATA2LSB);
    let ctx = Ctx::new(container, endian);
    let shdrs = SectionHeader::parse(image, header.e_shoff as usize, header.e_shnum as usize, ctx)
        .map_err(|e| e.to_string())?;
    let names = shdrs
        .get(usize::from(header.e_shstrndx))
        .ok_or("no section name table")?;
    let strtab = Strtab::parse(image, names.sh_offset as usize, names.sh_size as usize, 0)
        .map_err(|e| e.to_string())?;
    Ok((shdrs, strtab))
}

/// The byte range of the dispatch-table region in an interpreter image.
pub fn region(image: &[u8]) -> Result<Range<usize>> {
    let (shdrs, strtab) = sections(image)
        .map_err(|e| Error::new(format!("not a readable ELF file ({e})")).hint(BUILD_HINT))?;
    let sh = shdrs
        .iter()
        .find(|sh| strtab.get_at(sh.sh_name) == Some(dispatch::SECTION))
        .ok_or_else(|| {
            Error::new(format!(
                "no {} section: not a qemu-shim interpreter",
                dispatch::SECTION
            ))
            .hint(BUILD_HINT)
        })?;
    if sh.sh_type == SHT_NOBITS {
        return Err(Error::new(format!(
            "its {} section holds no file bytes",
            dispatch::SECTION
        ))
        .hint(BUILD_HINT));
    }
    let start = usize::try_from(sh.sh_offset).ok();
    let size = usize::try_from(sh.sh_size).ok();
    let range = match (start, size) {
        (Some(s), Some(n)) => s.checked_add(n).map(|e| s..e),
        _ => None,
    };
    let range = range.filter(|r| r.end <= image.len()).ok_or_else(|| {
        Error::new(format!(
            "its {} section lies outside the file",
            dispatch::SECTION
        ))
    })?;
    if range.len() < dispatch::REGION_SIZE {
        return Err(Error::new(format!(
            "its {} section is {} bytes, smaller than the {} this qemu-shim writes",
            dispatch::SECTION,
            range.len(),
            dispatch::REGION_SIZE
        ))
        .hint(BUILD_HINT));
    }
    if !image[range.clone()].starts_with(&dispatch::MAGIC) {
        return Err(Error::new(format!(
            "its {} section does not start with the table magic",
            dispatch::SECTION
        ))
        .hint(BUILD_HINT));
    }
    Ok(range.start..range.start + dispatch::REGION_SIZE)
}

/// Writes `spec`'s table into the region of `image` (a copy of the built
/// interpreter).
pub fn configure(image: &mut [u8], spec: &Spec) -> Result<()> {
    let range = region(image)?;
    let entries: Vec<Entry<'_>> = spec
        .emulators
        .iter()
        .map(|(arch, path)| Entry {
            arch,
            convention: spec.convention_by_path(arch),
            path: path.as_os_str().as_bytes(),
            cpu: spec.cpu(arch),
        })
        .collect();
    dispatch::encode(&entries, spec.flags, &mut image[range])
        .map_err(|e| Error::new(format!("cannot write the dispatch table: {e}")))?;
    Ok(())
}

/// The host arch an interpreter image is built for, from its ELF header.
fn machine(image: &[u8]) -> Option<crate::Target> {
    crate::Target::by_machine(link::header64(image)?.e_machine)
}

/// Reads the table of an interpreter image.
pub fn read_spec(image: &[u8]) -> Result<Spec> {
    let range = region(image)?;
    let table = Table::parse(&image[range]).map_err(|e| Error::new(e.to_string()))?;
    Ok(Spec {
        flags: table.flags(),
        carry: table
            .iter()
            .any(|e| matches!(e.convention, Convention::Carried(_))),
        prelink_base: link::prelink_base(image),
        target: machine(image).unwrap_or_default(),
        plain: table
            .iter()
            .filter(|e| e.convention == Convention::ExecPlain)
            .map(|e| e.arch.to_string())
            .collect(),
        cpu: table
            .iter()
            .filter(|e| !e.cpu.is_empty())
            .map(|e| {
                (
                    e.arch.to_string(),
                    String::from_utf8_lossy(e.cpu).into_owned(),
                )
            })
            .collect(),
        emulators: table
            .iter()
            .map(|e| {
                (
                    e.arch.to_string(),
                    PathBuf::from(std::ffi::OsStr::from_bytes(e.path)),
                )
            })
            .collect(),
    })
}

/// Reads the table of the interpreter file at `path` (its head only, see
/// [`read_head`]).
pub fn read_spec_file(path: &Path) -> Result<Spec> {
    let read = |path: &Path| -> std::io::Result<Option<Vec<u8>>> {
        read_head(&std::fs::File::open(path)?)
    };
    let head = read(path)
        .map_err(|e| Error::io("cannot read", path, &e))?
        .ok_or_else(|| Error::new(format!("{}: not a 64-bit ELF file", path.display())))?;
    read_spec(&head).map_err(|e| e.context(path.display()))
}

/// The start of an interpreter file: everything up to the end of both of
/// its header tables — the interpreter's own part, its table region, and
/// (in a file with carried emulators) the program header table at the start
/// of their segment — without the emulators' images (hundreds of MB).
/// Enough for [`read_spec`] and [`region`]. `Ok(None)` if the file is not
/// a 64-bit ELF file.
pub fn read_head(file: &std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    if size < SIZEOF_EHDR as u64 {
        return Ok(None);
    }
    let mut ehdr = [0u8; SIZEOF_EHDR];
    file.read_exact_at(&mut ehdr, 0)?;
    let Ok(h) = ehdr.pread_with::<Header>(0, LE) else {
        return Ok(None);
    };
    if h.e_ident[..4] != *b"\x7fELF" || h.e_ident[EI_CLASS] != ELFCLASS64 {
        return Ok(None);
    }
    let table_end = |offset: u64, entsize: u16, count: u16| {
        offset.saturating_add(u64::from(entsize) * u64::from(count))
    };
    let phend = table_end(h.e_phoff, h.e_phentsize, h.e_phnum);
    let shend = table_end(h.e_shoff, h.e_shentsize, h.e_shnum);
    let len = phend.max(shend).max(SIZEOF_EHDR as u64).min(size);
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut head, 0)?;
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::elf_with_section;
    use goblin::elf::section_header::SHT_PROGBITS;

    fn empty_region(size: usize) -> Vec<u8> {
        let mut r = vec![0u8; size];
        r[..16].copy_from_slice(&dispatch::EMPTY_REGION_HEADER);
        r
    }

    fn spec() -> Spec {
        Spec {
            target: crate::Target::default(),
            flags: dispatch::FLAG_ASSUME_P,
            carry: false,
            prelink_base: None,
            emulators: vec![
                (
                    "aarch64".into(),
                    PathBuf::from("/usr/bin/qemu-aarch64-static"),
                ),
                ("s390x".into(), PathBuf::from("/opt/q/qemu-s390x")),
                ("x86_64".into(), PathBuf::from("/usr/local/bin/box64")),
            ],
            plain: vec!["x86_64".into()],
            cpu: vec![("aarch64".into(), "max,pauth-impdef=on".into())],
        }
    }

    #[test]
    fn configure_then_read_back_round_trips() {
        let mut image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE),
            SHT_PROGBITS,
        );
        let before = image.clone();
        assert_eq!(read_spec(&image).unwrap(), Spec::default());
        configure(&mut image, &spec()).unwrap();
        assert_eq!(read_spec(&image).unwrap(), spec());
        let r = region(&image).unwrap();
        // Only the region changed.
        assert_eq!(image.len(), before.len());
        assert_eq!(image[..r.start], before[..r.start]);
        assert_eq!(image[r.end..], before[r.end..]);
        assert_eq!(
            spec().emulator("s390x"),
            Some(Path::new("/opt/q/qemu-s390x"))
        );
    }

    #[test]
    fn larger_section_is_patched_in_its_first_region_size_bytes() {
        let mut image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE + 100),
            SHT_PROGBITS,
        );
        let r = region(&image).unwrap();
        assert_eq!(r.len(), dispatch::REGION_SIZE);
        configure(&mut image, &spec()).unwrap();
        assert_eq!(read_spec(&image).unwrap(), spec());
    }

    #[test]
    fn missing_section_is_refused_with_a_build_hint() {
        let image = elf_with_section(".data", &empty_region(dispatch::REGION_SIZE), SHT_PROGBITS);
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("no .qemu_shim_table section"), "{e}");
        assert!(e.hint_text().unwrap().contains("cargo build"), "{e}");
    }

    #[test]
    fn small_section_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE - 1),
            SHT_PROGBITS,
        );
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("smaller than"), "{e}");
    }

    #[test]
    fn section_without_magic_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &vec![0u8; dispatch::REGION_SIZE],
            SHT_PROGBITS,
        );
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("magic"), "{e}");
    }

    #[test]
    fn nobits_section_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE),
            SHT_NOBITS,
        );
        assert!(region(&image).is_err());
    }

    #[test]
    fn not_elf_is_refused_not_a_panic() {
        for image in [
            &b""[..],
            b"#!/bin/sh\necho placeholder\n",
            b"\x7fELF\x02\x01",
        ] {
            assert!(region(image).is_err());
        }
    }
}
