//! Probe programs for s390x.

use super::{Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "s390x").then_some(Header::new(true, true, 22, 0))
}

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // lghi %r2, s; svc 1 (exit)
        Kind::Exit(s) => Some(vec![0xa7, 0x29, 0, s, 0x0a, 0x01]),
        Kind::Argv0 => Some(
            [
                // %r15 is the stack pointer; argc is at 0(%r15).
                &[0xe3, 0x20, 0xf0, 0x08, 0x00, 0x04][..], // lg %r2, 8(%r15)  (argv[0])
                &[0xe3, 0x20, 0x20, 0x00, 0x00, 0x90],     // llgc %r2, 0(%r2)
                &[0x0a, 0x01],                             // svc 1 (exit)
            ]
            .concat(),
        ),
        // s390x has only the 32-bit-uid geteuid, number 201, which fits
        // svc's immediate; the result comes back in %r2, exit's argument.
        Kind::Euid => Some(vec![
            0x0a, 201, // svc 201 (geteuid)
            0x0a, 0x01, // svc 1 (exit; takes the low byte of %r2)
        ]),
    }
}
