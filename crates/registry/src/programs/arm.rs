//! Probe programs for aarch64, aarch64_be, arm and armeb.

use super::{le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "aarch64" => Header::new(true, false, 183, 0),
        "aarch64_be" => Header::new(true, true, 183, 0),
        // EABI version 5: arm64 kernels run only EABI programs.
        "arm" => Header::new(false, false, 40, 0x0500_0000),
        // EABI 5 and EF_ARM_BE8.
        "armeb" => Header::new(false, true, 40, 0x0580_0000),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match (arch, kind) {
        // mov x0, #s; mov x8, #93 (exit); svc #0. A64 code is little-endian
        // also in big-endian programs.
        ("aarch64" | "aarch64_be", Kind::Exit(s)) => Some(le32(&[
            0xd280_0000 | u32::from(s) << 5,
            0xd280_0ba8,
            0xd400_0001,
        ])),
        ("aarch64" | "aarch64_be", Kind::Argv0) => Some(le32(&[
            0xf940_07e0, // ldr x0, [sp, #8]   (argv[0]; argc is at [sp])
            0x3940_0000, // ldrb w0, [x0]
            0xd280_0ba8, // mov x8, #93        (exit)
            0xd400_0001, // svc #0
        ])),
        ("aarch64" | "aarch64_be", Kind::Euid) => Some(le32(&[
            0xd280_15e8, // mov x8, #175       (geteuid; the result is in x0)
            0xd400_0001, // svc #0
            0xd280_0ba8, // mov x8, #93        (exit; takes the low byte of x0)
            0xd400_0001, // svc #0
        ])),
        // mov r0, #s; mov r7, #1 (exit, EABI); svc #0. Little-endian code
        // also for armeb, which is BE8 (data big-endian, code little-endian).
        ("arm" | "armeb", Kind::Exit(s)) => Some(le32(&[
            0xe3a0_0000 | u32::from(s),
            0xe3a0_7001,
            0xef00_0000,
        ])),
        // armeb: the loads are big-endian (BE8 data), so the pointer loaded
        // from the stack is right as it is; only the code is little-endian.
        ("arm" | "armeb", Kind::Argv0) => Some(le32(&[
            0xe59d_0004, // ldr r0, [sp, #4]   (argv[0]; argc is at [sp])
            0xe5d0_0000, // ldrb r0, [r0]
            0xe3a0_7001, // mov r7, #1         (exit)
            0xef00_0000, // svc #0
        ])),
        ("arm" | "armeb", Kind::Euid) => Some(le32(&[
            0xe3a0_70c9, // mov r7, #201       (geteuid32, not the 16-bit 49)
            0xef00_0000, // svc #0             (the result is in r0)
            0xe3a0_7001, // mov r7, #1         (exit; takes the low byte of r0)
            0xef00_0000, // svc #0
        ])),
        _ => None,
    }
}
