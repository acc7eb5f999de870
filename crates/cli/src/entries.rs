//! qemu-shim's own binfmt_misc entries, as every command names them:
//! which entries are ours and for which arch ([`owned_arch`]), the
//! stand-ins an upgrade registers for a moment ([`STAND_IN_SUFFIX`]), the
//! flags install gives them ([`entry_flags`]), and the magic part of any
//! entry ([`pattern`]). install writes them; status, doctor, uninstall and
//! run read them (issue 14, item 2).

use qemu_shim_registry::arch::{self, Arch};
use qemu_shim_registry::binfmt;
#[cfg(test)]
use qemu_shim_registry::format::RegisterLine;
use qemu_shim_registry::format::{EntryFile, Flags};

use crate::analysis;

/// The flags of a default entry: see [`entry_flags`].
#[cfg(test)]
pub const ENTRY_FLAGS: Flags = Flags::F.union(Flags::P).union(Flags::C);

/// The flags of our entries. `P` always: the interpreter hands the program
/// its original argv[0]. `F` unless `--no-pin`: the interpreter file is
/// opened at registration, so the entry works in any chroot or mount
/// namespace. `O` when the emulators are carried: the kernel opens the
/// program and the carried emulator reads it from that descriptor, so
/// execute-only programs run, as with `O` on direct registration.
///
/// `C` (which implies `O`) when the emulators are carried, unless
/// `--no-credentials`: a setuid or setgid program runs with the program's
/// credentials, as it would natively. The kernel then starts the
/// interpreter with `AT_SECURE`, and the interpreter drops what the user
/// could steer the privileged emulator with (`secure_drops` in the
/// interpreter) and reads the program only from the kernel's descriptor.
/// Without carried emulators, neither `O` nor `C`: an emulator started by
/// path cannot receive the kernel's descriptor and re-opens the program by
/// path, which the user may swap after the kernel chose the credentials, so
/// the interpreter refuses `AT_SECURE` there; without `C` a setuid program
/// runs with the caller's credentials instead, as with the distros'
/// registrations.
pub fn entry_flags(carry: bool, pin: bool, credentials: bool) -> Flags {
    let mut f = Flags::P;
    if pin {
        f = f.union(Flags::F);
    }
    if carry {
        f = f.union(if credentials { Flags::C } else { Flags::O });
    }
    f
}

/// Suffix of the stand-in entries an upgrade registers while the
/// interpreter file is swapped (see `apply`).
pub const STAND_IN_SUFFIX: &str = ".next";

/// The arch of one of our entries, from its name.
pub fn owned_arch(name: &str) -> Option<&'static Arch> {
    name.strip_prefix(binfmt::OWNED_PREFIX)
        .and_then(arch::by_name)
}

/// The register line of our entry for `a`, with the default flags.
#[cfg(test)]
pub fn register_line(a: &Arch, interpreter: &str) -> RegisterLine {
    binfmt::register_line(a, interpreter, ENTRY_FLAGS)
}

/// The magic part of an entry, if it is a magic entry.
pub fn pattern(e: &EntryFile) -> Option<analysis::Pattern<'_>> {
    match (&e.magic, &e.extension) {
        (Some(magic), None) => Some(analysis::Pattern {
            offset: e.offset.unwrap_or(0),
            magic,
            mask: e.mask.as_deref(),
        }),
        _ => None,
    }
}
