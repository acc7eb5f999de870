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
    let v9 = arch == "sparc64";
    // The system call trap: 0x10 for 32-bit programs (sparc32plus too),
    // 0x6d for 64-bit.
    let ta = if v9 { 0x91d0_206d } else { 0x91d0_2010 };
    let exit = [0x8210_2001, ta]; // mov 1, %g1 (exit); ta
    let words: Vec<u32> = match kind {
        // mov s, %o0; then exit.
        Kind::Exit(s) => [0x9010_2000 | u32::from(s)]
            .into_iter()
            .chain(exit)
            .collect(),
        // At entry %sp points at a register save area of 16 words, then
        // argc, then argv. 64-bit programs have 8-byte words and a %sp
        // biased by -2047; sparc32plus has the 32-bit layout.
        Kind::Argv0 => [
            if v9 {
                0xd05b_a887 // ldx [%sp + 2047 + 128 + 8], %o0
            } else {
                0xd003_a044 // ld [%sp + 64 + 4], %o0
            },
            0xd00a_0000, // ldub [%o0], %o0
        ]
        .into_iter()
        .chain(exit)
        .collect(),
        // The result is in %o0, already exit's argument. 32-bit programs'
        // geteuid (49) returns a 16-bit uid; geteuid32 (69) the whole.
        Kind::Euid => [
            if v9 {
                0x8210_2031 // mov 49, %g1 (geteuid)
            } else {
                0x8210_2045 // mov 69, %g1 (geteuid32)
            },
            ta,
        ]
        .into_iter()
        .chain(exit)
        .collect(),
    };
    Some(be32(&words))
}
