//! Differential: whatever the core's checks accept (`elf::validate`),
//! goblin must parse too, and the two must read the same header fields and
//! the same program headers. A disagreement means one of them reads a
//! field at the wrong place or in the wrong byte order.
#![no_main]

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::{program_header::ProgramHeader, Elf};
use libfuzzer_sys::fuzz_target;
use qemu_shim_registry::elf;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = elf::validate(data, data.len() as u64) else {
        return;
    };
    let g = Elf::parse_header(data).expect("core accepted a header goblin cannot parse");
    assert_eq!(g.e_machine, h.machine);
    assert_eq!(g.e_type, h.e_type);
    assert_eq!(g.e_flags, h.flags);
    assert_eq!(g.e_phoff, h.phoff);
    assert_eq!(g.e_phnum, h.phnum);
    assert_eq!(g.e_phentsize, h.phentsize);
    let container = match h.class {
        elf::Class::Elf32 => Container::Little,
        elf::Class::Elf64 => Container::Big,
    };
    let endian = match h.data {
        elf::Data::Little => Endian::Little,
        elf::Data::Big => Endian::Big,
    };
    assert_eq!(g.container().unwrap(), container);
    assert_eq!(g.endianness().unwrap(), endian);
    let ctx = Ctx::new(container, endian);
    let phdrs = ProgramHeader::parse(data, h.phoff as usize, usize::from(h.phnum), ctx)
        .expect("core accepted program headers goblin cannot parse");
    let loads: Vec<_> = phdrs.iter().filter(|p| p.p_type == 1).collect();
    assert!(!loads.is_empty(), "core accepted a file without PT_LOAD");
    for p in loads {
        // What the core promised of every loadable segment.
        let end = p
            .p_offset
            .checked_add(p.p_filesz)
            .expect("offset+filesz overflows");
        assert!(end <= data.len() as u64, "segment outside the file");
        assert!(p.p_filesz <= p.p_memsz);
        if p.p_align > 1 {
            assert!(p.p_align.is_power_of_two());
            assert_eq!(p.p_offset % p.p_align, p.p_vaddr % p.p_align);
        }
    }
    let interps: Vec<_> = phdrs.iter().filter(|p| p.p_type == 3).collect();
    let (off, len) = h.phdr_range();
    let table = &data[off as usize..off as usize + len];
    match (h.interp_range(table), interps.as_slice()) {
        (Some((o, n)), [p]) => assert_eq!((o, n), (p.p_offset, p.p_filesz)),
        (None, [_]) => panic!("one PT_INTERP, core found none"),
        (Some(_), _) => panic!("core found a PT_INTERP goblin does not see once"),
        (None, _) => {}
    }
});
