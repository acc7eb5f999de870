//! Probe programs for or1k.

use super::{be32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "or1k").then_some(Header::new(false, true, 92, 0))
}

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // l.addi r3, r0, s; l.addi r11, r0, 93 (exit); l.sys 1
        Kind::Exit(s) => Some(be32(&[
            0x9c60_0000 | u32::from(s),
            0x9d60_005d,
            0x2000_0001,
        ])),
        _ => None,
    }
}
