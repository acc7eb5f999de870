//! Probe programs for ppc, ppc64 (ELFv1) and ppc64le (ELFv2).

use super::{be32, le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "ppc" => Header::new(false, true, 20, 0),
        // ELFv1 (e_flags 1): the entry is a function descriptor.
        "ppc64" => Header {
            descriptor: true,
            ..Header::new(true, true, 21, 1)
        },
        // ELFv2.
        "ppc64le" => Header::new(true, false, 21, 2),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // li r3, s; li r0, 1 (exit); sc
        Kind::Exit(s) => vec![0x3860_0000 | u32::from(s), 0x3800_0001, 0x4400_0002],
        _ => return None,
    };
    Some(if arch == "ppc64le" {
        le32(&words)
    } else {
        be32(&words)
    })
}
