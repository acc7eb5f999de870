//! Probe programs for riscv64 and riscv32.

use super::{le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "riscv64" => Header::new(true, false, 243, 0),
        "riscv32" => Header::new(false, false, 243, 0),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // li a0, s; li a7, 93 (exit); ecall
        Kind::Exit(s) => Some(le32(&[
            u32::from(s) << 20 | 0x513,
            0x05d0_0893,
            0x0000_0073,
        ])),
        Kind::Argv0 => Some(le32(&[
            // argv[0], after argc: pointers are 8 bytes in riscv64, 4 in riscv32.
            if arch == "riscv64" {
                0x0081_3503 // ld a0, 8(sp)
            } else {
                0x0041_2503 // lw a0, 4(sp)
            },
            0x0005_4503, // lbu a0, 0(a0)
            0x05d0_0893, // li a7, 93  (exit)
            0x0000_0073, // ecall
        ])),
        // Both use the generic syscall table: no 16-bit geteuid to avoid.
        Kind::Euid => Some(le32(&[
            0x0af0_0893, // li a7, 175 (geteuid; the result is in a0)
            0x0000_0073, // ecall
            0x05d0_0893, // li a7, 93  (exit; takes the low byte of a0)
            0x0000_0073, // ecall
        ])),
    }
}
