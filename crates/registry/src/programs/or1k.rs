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
        Kind::Argv0 => Some(be32(&[
            0x8461_0004, // l.lwz r3, 4(r1)  (argv[0]; r1 points at argc)
            0x8c63_0000, // l.lbz r3, 0(r3)
            0x9d60_005d, // l.addi r11, r0, 93  (exit)
            0x2000_0001, // l.sys 1
        ])),
        // The generic system call table: geteuid is 175, 32-bit uids.
        Kind::Euid => Some(be32(&[
            0x9d60_00af, // l.addi r11, r0, 175  (geteuid)
            0x2000_0001, // l.sys 1  (result in r11)
            0xe06b_0004, // l.or r3, r11, r0
            0x9d60_005d, // l.addi r11, r0, 93  (exit)
            0x2000_0001, // l.sys 1
        ])),
    }
}
