//! Probe programs for ppc, ppc64 (ELFv1) and ppc64le (ELFv2).

use super::{be32, le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "ppc" => Header::new(false, true, 20, 0),
        // ELFv1 (e_flags 1): the entry is a function descriptor.
        "ppc64" => Header {
            descriptor: true,
            ..Header::new(true, true, 21, 1)
        },
        // ELFv2.
        "ppc64le" => Header::new(true, false, 21, 2),
        _ => return None,
    })
}

/// `li r0, 1` (exit); `sc`. The status is in r3.
const EXIT: [u32; 2] = [0x3800_0001, 0x4400_0002];

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // li r3, s; then exit.
        Kind::Exit(s) => [0x3860_0000 | u32::from(s)]
            .into_iter()
            .chain(EXIT)
            .collect(),
        // r1 points at argc; argv[0] follows it, one pointer on.
        Kind::Argv0 => [
            if arch == "ppc" {
                0x8061_0004 // lwz r3, 4(r1)
            } else {
                0xe861_0008 // ld r3, 8(r1)
            },
            0x8863_0000, // lbz r3, 0(r3)
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
        // The same numbers on ppc and ppc64, whose uids are 32-bit; the
        // result is in r3, already exit's argument.
        Kind::Euid => [
            0x3800_0031, // li r0, 49 (geteuid)
            0x4400_0002, // sc
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
    };
    Some(if arch == "ppc64le" {
        le32(&words)
    } else {
        be32(&words)
    })
}
