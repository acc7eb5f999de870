//! Probe programs for xtensa and xtensaeb.
//!
//! Xtensa instructions are 24 bits wide (the 16-bit "density" forms are an
//! option some cores lack, so none are used). A big-endian core does not
//! byte-swap the little-endian encoding: it mirrors the instruction's
//! field layout, so `op0`, which is the low nibble of the first byte in
//! little-endian, is the high nibble of the first byte in big-endian, and
//! every 4-bit field moves to the other half of its byte, while an 8-bit
//! immediate stays a whole byte in place. The instructions are therefore
//! written as their fields and laid out by [`rri8`] and [`rrr`].
//!
//! Linux system calls (windowed ABI, as qemu's `cpu_loop` decodes them):
//! the number in a2, the arguments in a6, a3, a4, a5, a8, a9, then
//! `syscall`; the result comes back in a2. At entry a1 (the stack pointer)
//! points at argc, followed by the argv pointers.

use super::{Header, Kind};

/// `EM_XTENSA`.
const EM_XTENSA: u16 = 94;

pub(super) fn header(arch: &str) -> Option<Header> {
    // e_flags 0: neither the kernel nor qemu looks at them (binutils puts
    // the core's mach number, 0 for the generic one, and marks for
    // property tables this file does not have).
    Some(match arch {
        "xtensa" => Header::new(false, false, EM_XTENSA, 0),
        "xtensaeb" => Header::new(false, true, EM_XTENSA, 0),
        _ => return None,
    })
}

/// `exit` on Linux/xtensa (`__NR_exit`; the table has its own numbers).
const NR_EXIT: u16 = 118;
/// `geteuid` on Linux/xtensa (32-bit ids; there is no 16-bit variant).
const NR_GETEUID: u16 = 140;

/// An RRI8-format instruction: op0, t, s, r (4 bits each) and an 8-bit
/// immediate, in little- or big-endian field order.
fn rri8(be: bool, op0: u8, t: u8, s: u8, r: u8, imm8: u8) -> [u8; 3] {
    if be {
        [op0 << 4 | t, s << 4 | r, imm8]
    } else {
        [t << 4 | op0, r << 4 | s, imm8]
    }
}

/// An RRR-format instruction: op0, t, s, r, op1, op2 (4 bits each).
fn rrr(be: bool, op0: u8, t: u8, s: u8, r: u8, op1: u8, op2: u8) -> [u8; 3] {
    if be {
        [op0 << 4 | t, s << 4 | r, op1 << 4 | op2]
    } else {
        [t << 4 | op0, r << 4 | s, op2 << 4 | op1]
    }
}

/// `movi at, imm` (12-bit signed immediate: imm[11:8] in the s field).
fn movi(be: bool, t: u8, imm: u16) -> [u8; 3] {
    rri8(be, 0x2, t, (imm >> 8) as u8 & 0xf, 0xa, imm as u8)
}

/// `syscall`.
fn syscall(be: bool) -> [u8; 3] {
    rrr(be, 0x0, 0, 0, 0x5, 0, 0)
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let be = match arch {
        "xtensa" => false,
        "xtensaeb" => true,
        _ => return None,
    };
    let insns: Vec<[u8; 3]> = match kind {
        Kind::Exit(s) => vec![
            movi(be, 6, u16::from(s)), // movi a6, s
            movi(be, 2, NR_EXIT),      // movi a2, 118 (exit)
            syscall(be),               // syscall
        ],
        Kind::Argv0 => vec![
            rri8(be, 0x2, 3, 1, 0x2, 1), // l32i a3, a1, 4   (argv[0]; argc is at [a1])
            rri8(be, 0x2, 6, 3, 0x0, 0), // l8ui a6, a3, 0
            movi(be, 2, NR_EXIT),        // movi a2, 118 (exit)
            syscall(be),                 // syscall
        ],
        Kind::Euid => vec![
            movi(be, 2, NR_GETEUID),       // movi a2, 140 (geteuid)
            syscall(be),                   // syscall
            rrr(be, 0x0, 2, 2, 6, 0, 0x2), // or a6, a2, a2   (mov a6, a2)
            movi(be, 2, NR_EXIT),          // movi a2, 118 (exit)
            syscall(be),                   // syscall
        ],
    };
    Some(insns.concat())
}
