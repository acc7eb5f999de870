//! Probe programs for hppa.

use super::{be32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    // PA-RISC 1.1.
    (arch == "hppa").then_some(Header::new(false, true, 15, 0x210))
}

/// `ble 0x100(%sr2, %r0)` (the gateway page); `ldi 1, %r20` (exit, in the
/// branch's delay slot). The status is in %r26. ldi's 14-bit immediate
/// keeps its sign in the low bit, so a small positive value is shifted
/// left once.
const EXIT: [u32; 2] = [0xe400_8200, 0x3414_0002];

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // ldi s, %r26; then exit.
        Kind::Exit(s) => [0x341a_0000 | u32::from(s) << 1]
            .into_iter()
            .chain(EXIT)
            .collect(),
        // The stack grows up, and a program starts with argc in %r25 and
        // the address of argv in %r24 (as the kernel's start_thread and
        // qemu's init_thread set them), not found through %sp.
        Kind::Argv0 => [
            0x0f00_109a, // ldw 0(%r24), %r26
            0x0f40_101a, // ldb 0(%r26), %r26
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
        // hppa's uids are 32-bit: geteuid (49) is the whole.
        Kind::Euid => [
            0xe400_8200, // ble 0x100(%sr2, %r0)
            0x3414_0062, // ldi 49, %r20 (geteuid; delay slot)
            0x081c_025a, // copy %r28, %r26 (the result to exit's argument)
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
    };
    Some(be32(&words))
}
