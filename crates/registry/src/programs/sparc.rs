//! Probe programs for sparc, sparc32plus and sparc64.

use super::{be32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "sparc" => Header::new(false, true, 2, 0),
        // EF_SPARC_32PLUS.
        "sparc32plus" => Header::new(false, true, 18, 0x100),
        "sparc64" => Header::new(true, true, 43, 0),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    // The system call trap: 0x10 for 32-bit programs, 0x6d for 64-bit.
    let ta = if arch == "sparc64" {
        0x91d0_206d
    } else {
        0x91d0_2010
    };
    match kind {
        // mov s, %o0; mov 1, %g1 (exit); ta
        Kind::Exit(s) => Some(be32(&[0x9010_2000 | u32::from(s), 0x8210_2001, ta])),
        _ => None,
    }
}
