//! Probe programs for alpha.

use super::{le32, Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    (arch == "alpha").then_some(Header::new(true, false, 0x9026, 0))
}

pub(super) fn code(_arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match kind {
        // lda $16, s($31); lda $0, 1($31) (exit); call_pal callsys
        Kind::Exit(s) => Some(le32(&[
            0x221f_0000 | u32::from(s),
            0x201f_0001,
            0x0000_0083,
        ])),
        _ => None,
    }
}
