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
        // one argument). `mov #imm` sign-extends like m68k's moveq.
        Kind::Exit(s) => vec![0xe301, 0xe400 | u16::from(s), 0xc311],
        _ => return None,
    };
    Some(words16(&words, arch == "sh4eb"))
}
