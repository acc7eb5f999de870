//! The checks every exec runs on the program's first bytes (crates/registry/
//! core's `elf` and `arch`): header, program-header table, segments, the
//! PT_INTERP path, and the arch classification. They must never panic, and
//! the two ways the interpreter and the CLI call them must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_shim_registry::{arch, elf};

fuzz_target!(|data: &[u8]| {
    // The file's size is not the bytes read: the interpreter reads a
    // prefix of a file that may be longer. Take it from the input's first
    // bytes so both "table beyond the read" and "beyond the file" happen.
    let (size, head) = match data.split_first_chunk::<4>() {
        Some((s, rest)) => (u64::from(u32::from_le_bytes(*s)), rest),
        None => return,
    };
    let whole = elf::validate(head, size);
    // The interpreter's way: parse, then the table read from the prefix,
    // then the segments. Same verdict as validate when the table is in
    // the prefix.
    if let Ok(h) = elf::Header::parse(head) {
        let (off, len) = h.phdr_range();
        assert!(len <= elf::MAX_PHDR_BYTES);
        let table = usize::try_from(off)
            .ok()
            .and_then(|s| Some((s, s.checked_add(len)?)))
            .and_then(|(s, e)| head.get(s..e));
        if let Some(phdrs) = table {
            let split = h.check_segments(phdrs, size).map(|()| h);
            assert_eq!(split, whole, "validate and parse+check_segments disagree");
            if let Some((o, n)) = h.interp_range(phdrs) {
                if let Some(p) = elf::interp_path(head, o, n) {
                    assert!(!p.is_empty() && !p.contains(&0));
                }
            }
        }
    } else {
        assert!(whole.is_err());
    }
    if whole.is_ok() {
        if let Some(a) = arch::classify(head) {
            assert!(a.matches(head));
        }
    }
});
