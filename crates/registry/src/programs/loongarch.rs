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
        Kind::Argv0 => Some(le32(&[
            0x28c0_2064, // ld.d $a0, $sp, 8          (argv[0]; argc is at 0($sp))
            0x2a00_0084, // ld.bu $a0, $a0, 0
            0x0281_740b, // addi.w $a7, $zero, 93     (exit)
            0x002b_0000, // syscall 0
        ])),
        Kind::Euid => Some(le32(&[
            0x0282_bc0b, // addi.w $a7, $zero, 175    (geteuid; the result is in $a0)
            0x002b_0000, // syscall 0
            0x0281_740b, // addi.w $a7, $zero, 93     (exit; takes the low byte of $a0)
            0x002b_0000, // syscall 0
        ])),
    }
}
