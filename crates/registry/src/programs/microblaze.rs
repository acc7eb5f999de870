//! Probe programs for microblaze and microblazeel.

use super::{be32, le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "microblaze" => Header::new(false, true, 189, 0),
        "microblazeel" => Header::new(false, false, 189, 0),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // addik r5, r0, s; addik r12, r0, 1 (exit); brki r14, 0x8 (system
        // call).
        Kind::Exit(s) => vec![0x30a0_0000 | u32::from(s), 0x3180_0001, 0xb9cc_0008],
        Kind::Argv0 => vec![
            0xe8a1_0004, // lwi r5, r1, 4  (argv[0]; r1 points at argc)
            0xe0a5_0000, // lbui r5, r5, 0
            0x3180_0001, // addik r12, r0, 1  (exit)
            0xb9cc_0008, // brki r14, 0x8
        ],
        // geteuid32 (201), not the 16-bit geteuid (49).
        Kind::Euid => vec![
            0x3180_00c9, // addik r12, r0, 201  (geteuid32)
            0xb9cc_0008, // brki r14, 0x8  (result in r3)
            0x10a3_0000, // addk r5, r3, r0
            0x3180_0001, // addik r12, r0, 1  (exit)
            0xb9cc_0008, // brki r14, 0x8
        ],
    };
    Some(if arch == "microblazeel" {
        le32(&words)
    } else {
        be32(&words)
    })
}
