//! Probe programs for hexagon.

use super::{Header, Kind};

pub(super) fn header(_arch: &str) -> Option<Header> {
    None
}

pub(super) fn code(_arch: &str, _kind: Kind) -> Option<Vec<u8>> {
    None
}
