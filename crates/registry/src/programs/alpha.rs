//! Probe programs for alpha.

use super::{le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "alpha").then_some(Header::new(true, false, 0x9026, 0))
}

/// `lda $0, 1($31)` (exit); `call_pal callsys`. The status is in $16.
const EXIT: [u32; 2] = [0x201f_0001, 0x0000_0083];

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    let words: Vec<u32> = match kind {
        // lda $16, s($31); then exit.
        Kind::Exit(s) => [0x221f_0000 | u32::from(s)]
            .into_iter()
            .chain(EXIT)
            .collect(),
        // $30 points at argc; argv[0] is the next quadword. The byte load
        // is ldq_u + extbl, which every alpha has (ldbu needs BWX).
        Kind::Argv0 => [
            0xa61e_0008, // ldq $16, 8($30)
            0x2c30_0000, // ldq_u $1, 0($16)
            0x4830_00d0, // extbl $1, $16, $16
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
        // Alpha has no geteuid: getxuid returns the uid in $0 and the
        // euid in $20 (a4).
        Kind::Euid => [
            0x201f_0018, // lda $0, 24($31) (getxuid)
            0x0000_0083, // call_pal callsys
            0x47f4_0410, // bis $31, $20, $16 (mov $20, $16)
        ]
        .into_iter()
        .chain(EXIT)
        .collect(),
    };
    Some(le32(&words))
}
