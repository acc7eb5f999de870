//! Probe programs for hexagon.
//!
//! Every instruction here is a packet of its own, so each word has the
//! "end of packet" parse bits (15:14 = 0b11). Linux system calls use the
//! generic numbers: the number in r6, the arguments from r0, then
//! `trap0(#1)`; the result comes back in r0. At entry r29 (the stack
//! pointer) points at argc, followed by the argv pointers.

use super::{le32, Header, Kind};

/// `EM_QDSP6` (`EM_HEXAGON`).
const EM_HEXAGON: u16 = 164;
/// e_flags: the ISA version, here V67. qemu picks its CPU model from it
/// and refuses a program whose version it does not know (such as 0);
/// every qemu with hexagon support knows V67.
const EF_HEXAGON_MACH_V67: u32 = 0x67;

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "hexagon").then_some(Header::new(false, false, EM_HEXAGON, EF_HEXAGON_MACH_V67))
}

/// `Rd = #imm` (transfer immediate) for 0 <= imm < 512: imm[8:0] sits at
/// bits 13:5 and the register at bits 4:0.
const fn set(rd: u32, imm: u32) -> u32 {
    0x7800_c000 | imm << 5 | rd
}

/// `exit` and `geteuid` in the generic system call table.
const NR_EXIT: u32 = 93;
const NR_GETEUID: u32 = 175;

/// `trap0(#1)`: a Linux system call.
const TRAP0: u32 = 0x5400_c004;

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words = match kind {
        Kind::Exit(s) => vec![
            set(0, u32::from(s)), // r0 = #s
            set(6, NR_EXIT),      // r6 = #93 (exit)
            TRAP0,                // trap0(#1)
        ],
        Kind::Argv0 => vec![
            0x919d_c020,     // r0 = memw(r29+#4)   (argv[0]; argc is at [r29])
            0x9120_c000,     // r0 = memub(r0+#0)
            set(6, NR_EXIT), // r6 = #93 (exit)
            TRAP0,           // trap0(#1)
        ],
        Kind::Euid => vec![
            set(6, NR_GETEUID), // r6 = #175 (geteuid); the result is in r0
            TRAP0,              // trap0(#1)
            set(6, NR_EXIT),    // r6 = #93 (exit), with the euid in r0
            TRAP0,              // trap0(#1)
        ],
    };
    Some(le32(&words))
}
