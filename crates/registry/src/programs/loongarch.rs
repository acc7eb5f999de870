//! Probe programs for loongarch64.

use super::{le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    // Double-float ABI, object ABI v1: what toolchains write.
    (arch == "loongarch64").then_some(Header::new(true, false, 258, 0x43))
}

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // addi.w $a0, $zero, s; addi.w $a7, $zero, 93 (exit); syscall 0
        Kind::Exit(s) => Some(le32(&[
            0x0280_0004 | u32::from(s) << 10,
            0x0281_740b,
            0x002b_0000,
        ])),
        _ => None,
    }
}
