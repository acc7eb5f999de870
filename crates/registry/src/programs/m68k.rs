//! Probe programs for m68k.

use super::{Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "m68k").then_some(Header::new(false, true, 4, 0))
}

/// `moveq #1, %d0` (exit); `trap #0`. The status is in %d1; exit keeps
/// only its low 8 bits.
const EXIT: [u8; 4] = [0x70, 0x01, 0x4e, 0x40];

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let code: &[u8] = match kind {
        // moveq #1, %d0 (exit); moveq #s, %d1; trap #0. moveq sign-extends
        // its byte; exit keeps only the low 8 bits of the status, so any s
        // works.
        Kind::Exit(s) => return Some(vec![0x70, 0x01, 0x72, s, 0x4e, 0x40]),
        // %sp points at argc; argv[0] is the next long.
        Kind::Argv0 => &[
            0x20, 0x6f, 0x00, 0x04, // movea.l 4(%sp), %a0
            0x12, 0x10, // move.b (%a0), %d1
        ],
        // geteuid32 (201): m68k's geteuid (49) returns a 16-bit uid.
        Kind::Euid => &[
            0x20, 0x3c, 0x00, 0x00, 0x00, 0xc9, // move.l #201, %d0
            0x4e, 0x40, // trap #0
            0x22, 0x00, // move.l %d0, %d1
        ],
    };
    Some([code, &EXIT].concat())
}
