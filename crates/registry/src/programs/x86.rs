//! Probe programs for x86_64, i386 and i486.

use super::{Header, Kind};

pub(super) fn header(arch: &str) -> Option<Header> {
    Some(match arch {
        "x86_64" => Header::new(true, false, 62, 0),
        "i386" => Header::new(false, false, 3, 0),
        // EM_486: obsolete, same code; Linux's i386 loader accepts it.
        "i486" => Header::new(false, false, 6, 0),
        _ => return None,
    })
}

pub(super) fn code(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    match (arch, kind) {
        // mov edi, s; mov eax, 60 (exit); syscall
        ("x86_64", Kind::Exit(s)) => Some(vec![0xbf, s, 0, 0, 0, 0xb8, 60, 0, 0, 0, 0x0f, 0x05]),
        // mov ebx, s; mov eax, 1 (exit); int 0x80
        ("i386" | "i486", Kind::Exit(s)) => {
            Some(vec![0xbb, s, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0xcd, 0x80])
        }
        _ => None,
    }
}
