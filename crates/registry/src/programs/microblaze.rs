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
        _ => return None,
    };
    Some(if arch == "microblazeel" {
        le32(&words)
    } else {
        be32(&words)
    })
}
