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
        ("x86_64", Kind::Argv0) => Some(
            [
                &[0x48, 0x8b, 0x44, 0x24, 0x08][..], // mov rax, [rsp+8]  (argv[0]; argc is at [rsp])
                &[0x0f, 0xb6, 0x38],                 // movzx edi, byte [rax]
                &[0xb8, 60, 0, 0, 0],                // mov eax, 60       (exit)
                &[0x0f, 0x05],                       // syscall
            ]
            .concat(),
        ),
        ("i386" | "i486", Kind::Argv0) => Some(
            [
                &[0x8b, 0x44, 0x24, 0x04][..], // mov eax, [esp+4]  (argv[0]; argc is at [esp])
                &[0x0f, 0xb6, 0x18],           // movzx ebx, byte [eax]
                &[0xb8, 1, 0, 0, 0],           // mov eax, 1        (exit)
                &[0xcd, 0x80],                 // int 0x80
            ]
            .concat(),
        ),
        ("x86_64", Kind::Euid) => Some(
            [
                &[0xb8, 107, 0, 0, 0][..], // mov eax, 107  (geteuid)
                &[0x0f, 0x05],             // syscall
                &[0x89, 0xc7],             // mov edi, eax  (exit takes the low byte)
                &[0xb8, 60, 0, 0, 0],      // mov eax, 60   (exit)
                &[0x0f, 0x05],             // syscall
            ]
            .concat(),
        ),
        ("i386" | "i486", Kind::Euid) => Some(
            [
                // geteuid32, not the 16-bit legacy geteuid (49).
                &[0xb8, 201, 0, 0, 0][..], // mov eax, 201  (geteuid32)
                &[0xcd, 0x80],             // int 0x80
                &[0x89, 0xc3],             // mov ebx, eax  (exit takes the low byte)
                &[0xb8, 1, 0, 0, 0],       // mov eax, 1    (exit)
                &[0xcd, 0x80],             // int 0x80
            ]
            .concat(),
        ),
        _ => None,
    }
}
