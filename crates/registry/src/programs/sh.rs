//! Probe programs for sh4 and sh4eb.

use super::{words16, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "sh4" => Header::new(false, false, 42, 0),
        "sh4eb" => Header::new(false, true, 42, 0),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u16> = match kind {
        // mov #1, r3 (exit); mov #s, r4; trapa #0x11 (a system call with
        // one argument). `mov #imm` sign-extends like m68k's moveq; the
        // kernel keeps only the low byte of the status anyway.
        Kind::Exit(s) => vec![0xe301, 0xe400 | u16::from(s), 0xc311],
        Kind::Argv0 => vec![
            0x54f1, // mov.l @(4,r15), r4  (argv[0]; r15 points at argc)
            0x6440, // mov.b @r4, r4  (sign-extends; only the low byte counts)
            0xe301, // mov #1, r3  (exit)
            0xc311, // trapa #0x11
        ],
        // geteuid32 is 201, past mov's signed 8-bit immediate: 100 + 101.
        Kind::Euid => vec![
            0xe364, // mov #100, r3
            0x7365, // add #101, r3  (geteuid32)
            0xc310, // trapa #0x10  (no arguments; result in r0)
            0x6403, // mov r0, r4
            0xe301, // mov #1, r3  (exit)
            0xc311, // trapa #0x11
        ],
    };
    Some(words16(&words, arch == "sh4eb"))
}
