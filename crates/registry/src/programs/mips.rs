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

/// The system call numbers of `exit` in each ABI.
fn exit_nr(arch: &str) -> u16 {
    match arch {
        "mips" | "mipsel" => 4001,
        "mipsn32" | "mipsn32el" => 6058,
        _ => 5058,
    }
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // li $a0, s; li $v0, exit; syscall
        Kind::Exit(s) => vec![
            0x2404_0000 | u32::from(s),
            0x2402_0000 | u32::from(exit_nr(arch)),
            0x0000_000c,
        ],
        _ => return None,
    };
    Some(if arch.ends_with("el") {
        le32(&words)
    } else {
        be32(&words)
    })
}
