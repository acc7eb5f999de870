//! Probe programs for hppa.

use super::{be32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    // PA-RISC 1.1.
    (arch == "hppa").then_some(Header::new(false, true, 15, 0x210))
}

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // ldi s, %r26; ble 0x100(%sr2, %r0) (the gateway page); ldi 1, %r20
        // (exit, in the branch's delay slot). ldi's 14-bit immediate keeps
        // its sign in the low bit, so a small positive value is shifted
        // left once.
        Kind::Exit(s) => Some(be32(&[
            0x341a_0000 | u32::from(s) << 1,
            0xe400_8200,
            0x3414_0002,
        ])),
        _ => None,
    }
}
