//! Small ELF builders for unit tests, here and in the CLI (feature
//! `test-support`).

/// A minimal little-endian ELF64 file with a section header table holding
/// the null section, a PROGBITS section `name` with `contents`, and
/// `.shstrtab`. Enough for section lookup; nothing runs it.
pub fn elf_with_section(name: &str, contents: &[u8], sh_type: u32) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize

    let data_off = f.len();
    f.extend_from_slice(contents);
    let mut strtab = vec![0u8];
    let name_off = strtab.len();
    strtab.extend_from_slice(name.as_bytes());
    strtab.push(0);
    let shstr_name_off = strtab.len();
    strtab.extend_from_slice(b".shstrtab\0");
    let strtab_off = f.len();
    f.extend_from_slice(&strtab);
    // Section headers are 8-byte aligned.
    while f.len() & 7 != 0 {
        f.push(0);
    }
    let shoff = f.len();
    let sh = |name: usize, ty: u32, off: usize, size: usize| {
        let mut s = vec![0u8; 64];
        s[..4].copy_from_slice(&(name as u32).to_le_bytes());
        s[4..8].copy_from_slice(&ty.to_le_bytes());
        s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        s[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        s[48..56].copy_from_slice(&1u64.to_le_bytes());
        s
    };
    f.extend(sh(0, 0, 0, 0));
    f.extend(sh(name_off, sh_type, data_off, contents.len()));
    f.extend(sh(shstr_name_off, 3, strtab_off, strtab.len()));
    f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    f[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
    f[62..64].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
    f
}
