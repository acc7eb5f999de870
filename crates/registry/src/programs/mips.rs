//! Probe programs for the six MIPS rows: o32, n32 and n64, each big- and
//! little-endian.

use super::{be32, le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        // o32 (EF_MIPS_ABI_O32), MIPS I.
        "mips" => Header::new(false, true, 8, 0x1000),
        "mipsel" => Header::new(false, false, 8, 0x1000),
        // n32 (EF_MIPS_ABI2), MIPS III.
        "mipsn32" => Header::new(false, true, 8, 0x2000_0020),
        "mipsn32el" => Header::new(false, false, 8, 0x2000_0020),
        // n64, MIPS III.
        "mips64" => Header::new(true, true, 8, 0x2000_0000),
        "mips64el" => Header::new(true, false, 8, 0x2000_0000),
        _ => return None,
    })
}

/// The system call numbers of `exit` and `geteuid` in each ABI (o32
/// counts from 4000, n64 from 5000, n32 from 6000). MIPS has no
/// 16-bit-uid calls, so `geteuid` is the 32-bit one.
fn nrs(arch: &str) -> (u16, u16) {
    match arch {
        "mips" | "mipsel" => (4001, 4049),
        "mipsn32" | "mipsn32el" => (6058, 6105),
        _ => (5058, 5105),
    }
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let (exit, geteuid) = nrs(arch);
    let exit = u32::from(exit);
    let words: Vec<u32> = match kind {
        // li $a0, s; li $v0, exit; syscall
        Kind::Exit(s) => vec![0x2404_0000 | u32::from(s), 0x2402_0000 | exit, 0x0000_000c],
        // argc is at 0($sp), argv[0] right after it: 4 bytes in o32 and
        // n32 (ELF32), 8 in n64.
        Kind::Argv0 => vec![
            if arch.starts_with("mips64") {
                0xdfa4_0008 // ld $a0, 8($sp)
            } else {
                0x8fa4_0004 // lw $a0, 4($sp)
            },
            0x0000_0000,        // nop (MIPS I load delay slot: $a0 not ready yet)
            0x9084_0000,        // lbu $a0, 0($a0)
            0x2402_0000 | exit, // li $v0, exit
            0x0000_000c,        // syscall
        ],
        Kind::Euid => vec![
            0x2402_0000 | u32::from(geteuid), // li $v0, geteuid
            0x0000_000c,                      // syscall  (result in $v0)
            0x0040_2025,                      // move $a0, $v0  (or $a0, $v0, $zero)
            0x2402_0000 | exit,               // li $v0, exit
            0x0000_000c,                      // syscall
        ],
    };
    Some(if arch.ends_with("el") {
        le32(&words)
    } else {
        be32(&words)
    })
}
