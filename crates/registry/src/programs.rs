//! Tiny probe programs, one set per arch: each is one ELF executable of a
//! few dozen bytes (the ELF header, one loadable segment, a handful of
//! instructions) that reports one thing through its exit status.
//!
//! - [`Kind::Exit`]: exits with a given status. The native probe
//!   ([`crate::probe`]) runs it to learn whether the CPU runs the arch;
//!   `qemu-shim doctor` runs it through the registered entry.
//! - [`Kind::Argv0`]: exits with the first byte of its `argv[0]`. Started
//!   with an argv[0] other than its path, it tells whether the kernel's P
//!   flag and the interpreter kept it.
//! - [`Kind::Euid`]: exits with the low byte of `geteuid()`. Made setuid to
//!   another user and started by a third, it tells whether the emulated
//!   program got the file's credentials (binfmt_misc's C flag).
//!
//! The instructions for each arch live in one file per family (below); this
//! file lays out the ELF file around them. Every program is run under its
//! qemu by the tests (`every_kind_runs_under_qemu`), which check the status.

mod alpha;
mod arm;
mod hexagon;
mod hppa;
mod loongarch;
mod m68k;
mod microblaze;
mod mips;
mod or1k;
mod ppc;
mod riscv;
mod s390x;
mod sh;
mod sparc;
mod x86;
mod xtensa;

use crate::arch;

/// What a probe program reports through its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `exit(status)`.
    Exit(u8),
    /// `exit(argv[0][0])`.
    Argv0,
    /// `exit(geteuid() & 0xff)`.
    Euid,
}

/// The kinds every arch with programs has.
pub const KINDS: [Kind; 3] = [Kind::Exit(0), Kind::Argv0, Kind::Euid];

/// The ELF header fields that make a program one of its row's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub elf64: bool,
    pub big_endian: bool,
    pub machine: u16,
    pub flags: u32,
    /// ppc64 ELFv1: the entry point is a function descriptor, not code.
    pub descriptor: bool,
}

impl Header {
    pub(crate) const fn new(elf64: bool, big_endian: bool, machine: u16, flags: u32) -> Header {
        Header {
            elf64,
            big_endian,
            machine,
            flags,
            descriptor: false,
        }
    }
}

/// One family's programs: the header for an arch name of the family, and
/// the instructions (entered at their first byte) for a kind.
struct Family {
    header: fn(&str) -> Option<Header>,
    code: fn(&str, Kind) -> Option<Vec<u8>>,
}

macro_rules! families {
    ($($m:ident),*) => {
        [$(Family { header: $m::header, code: $m::code }),*]
    };
}

const FAMILIES: [Family; 16] = families!(
    x86, arm, riscv, loongarch, ppc, s390x, mips, sparc, m68k, sh, alpha, hppa, or1k, microblaze,
    xtensa, hexagon
);

/// The program of `kind` for the arch table row named `arch`, or `None` if
/// there is none (a name not in the table, or an arch without that kind).
///
/// Every program passes [`crate::elf::validate`], [`crate::arch::classify`]
/// gives its own row, and it runs under qemu as on a CPU of that arch.
pub fn program(arch: &str, kind: Kind) -> Option<Vec<u8>> {
    arch::by_name(arch)?;
    FAMILIES.iter().find_map(|f| {
        let h = (f.header)(arch)?;
        let code = (f.code)(arch, kind)?;
        Some(with_descriptor(&h, &code))
    })
}

/// Where the programs are loaded: the usual base of a non-PIE executable,
/// mapped on every arch here and above any `mmap_min_addr`.
const BASE: u64 = 0x40_0000;
/// Segment alignment: the largest page size of the arches here (64 KiB),
/// so the kernel and qemu map the segment on any page size.
const ALIGN: u64 = 0x1_0000;

/// 32-bit instruction words, little-endian.
pub(crate) fn le32(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// 32-bit instruction words, big-endian.
pub(crate) fn be32(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// 16-bit instruction words, little- or big-endian.
pub(crate) fn words16(words: &[u16], big_endian: bool) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| {
            if big_endian {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            }
        })
        .collect()
}

/// Writes integers in the file's byte order.
struct Writer {
    big_endian: bool,
    out: Vec<u8>,
}

impl Writer {
    fn u16(&mut self, v: u16) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u64(&mut self, v: u64) {
        let b = if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    /// An address or offset: 8 bytes in ELF64, 4 in ELF32 (all values here
    /// are far below 4 GiB).
    fn word(&mut self, elf64: bool, v: u64) {
        if elf64 {
            self.u64(v);
        } else {
            self.u32(v as u32);
        }
    }
}

/// An executable of one `PT_LOAD` segment (read + execute) holding the
/// whole file: the ELF header, the program header, then `body`, whose
/// first byte is the entry point.
fn image(h: &Header, body: &[u8]) -> Vec<u8> {
    let (ehsize, phentsize) = if h.elf64 { (64u16, 56u16) } else { (52, 32) };
    let headers = u64::from(ehsize) + u64::from(phentsize);
    let size = headers + body.len() as u64;
    let mut w = Writer {
        big_endian: h.big_endian,
        out: Vec::with_capacity(size as usize),
    };
    // e_ident: magic, class, data, version 1, OS ABI 0 (System V), padding.
    w.out.extend_from_slice(b"\x7fELF");
    w.out.push(if h.elf64 { 2 } else { 1 });
    w.out.push(if h.big_endian { 2 } else { 1 });
    w.out.push(1);
    w.out.extend_from_slice(&[0; 9]);
    w.u16(2); // e_type: ET_EXEC
    w.u16(h.machine);
    w.u32(1); // e_version
    w.word(h.elf64, BASE + headers); // e_entry
    w.word(h.elf64, u64::from(ehsize)); // e_phoff
    w.word(h.elf64, 0); // e_shoff: no sections
    w.u32(h.flags);
    w.u16(ehsize);
    w.u16(phentsize);
    w.u16(1); // e_phnum
    w.u16(0); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx

    // The program header; its fields are ordered differently in ELF64.
    const PT_LOAD: u32 = 1;
    const PF_R_X: u32 = 4 | 1;
    w.u32(PT_LOAD);
    if h.elf64 {
        w.u32(PF_R_X);
        w.u64(0); // p_offset
        w.u64(BASE); // p_vaddr
        w.u64(BASE); // p_paddr
        w.u64(size); // p_filesz
        w.u64(size); // p_memsz
        w.u64(ALIGN);
    } else {
        w.u32(0); // p_offset
        w.u32(BASE as u32); // p_vaddr
        w.u32(BASE as u32); // p_paddr
        w.u32(size as u32); // p_filesz
        w.u32(size as u32); // p_memsz
        w.u32(PF_R_X);
        w.u32(ALIGN as u32);
    }
    w.out.extend_from_slice(body);
    w.out
}

/// `image` of `code`, behind an ELFv1 function descriptor where the
/// header asks for one.
fn with_descriptor(h: &Header, code: &[u8]) -> Vec<u8> {
    if !h.descriptor {
        return image(h, code);
    }
    // ELFv1 function descriptor: code address, TOC pointer, environment.
    // The code needs no TOC. The headers end 8-aligned (64 + 56 = 120).
    let headers = 64 + 56;
    let mut w = Writer {
        big_endian: h.big_endian,
        out: Vec::new(),
    };
    w.u64(BASE + headers + 24);
    w.u64(0);
    w.u64(0);
    w.out.extend_from_slice(code);
    image(h, &w.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::ARCHES;
    use crate::elf;
    use crate::test_support::qemu;
    use std::fs;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    /// A directory other users can read (the euid probes run as them),
    /// removed on drop.
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            let d = tempfile::Builder::new()
                .prefix("qemu-shim-programs-")
                .permissions(fs::Permissions::from_mode(0o755))
                .tempdir()
                .unwrap();
            Dir(d)
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.path().join(name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(&p)
                .unwrap();
            std::io::Write::write_all(&mut f, bytes).unwrap();
            p
        }
    }

    /// The exit status of `cmd`, retrying while a file it execs is still
    /// open for writing in a process another test thread is forking.
    fn code(cmd: &mut Command) -> Option<i32> {
        for _ in 0..50 {
            match cmd.stdin(Stdio::null()).stderr(Stdio::null()).status() {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(s) => return s.code(),
                Err(e) => panic!("cannot run {cmd:?}: {e}"),
            }
        }
        panic!("{cmd:?}: text file busy")
    }

    /// The rows that have programs: all but the ones listed in
    /// `programs_exist_for_every_row`.
    fn rows() -> Vec<&'static crate::arch::Arch> {
        ARCHES
            .iter()
            .filter(|a| program(a.name, Kind::Exit(0)).is_some())
            .collect()
    }

    #[test]
    fn programs_exist_for_every_row() {
        let missing: Vec<(&str, Kind)> = ARCHES
            .iter()
            .flat_map(|a| KINDS.iter().map(move |k| (a.name, *k)))
            .filter(|(a, k)| program(a, *k).is_none())
            .collect();
        assert_eq!(missing, [], "rows without a program of some kind");
        assert_eq!(program("no-such-arch", Kind::Exit(0)), None);
    }

    #[test]
    fn every_program_is_a_small_valid_elf_of_its_own_row() {
        for row in ARCHES {
            for kind in [Kind::Exit(0), Kind::Exit(42), Kind::Argv0, Kind::Euid] {
                let Some(p) = program(row.name, kind) else {
                    continue;
                };
                let h = elf::validate(&p, p.len() as u64)
                    .unwrap_or_else(|e| panic!("{} {kind:?}: {e}", row.name));
                assert_eq!(h.phnum, 1, "{}", row.name);
                assert_eq!(
                    arch::classify(&p).map(|a| a.name),
                    Some(row.name),
                    "{} {kind:?} classifies as another row",
                    row.name
                );
                assert!(p.len() <= 200, "{} {kind:?}: {} bytes", row.name, p.len());
            }
        }
    }

    #[test]
    fn the_exit_status_is_in_the_program() {
        for row in rows() {
            let zero = program(row.name, Kind::Exit(0)).unwrap();
            let other = program(row.name, Kind::Exit(42)).unwrap();
            assert_eq!(zero.len(), other.len(), "{}", row.name);
            assert_ne!(zero, other, "{}", row.name);
        }
    }

    /// Every program of every row, run under the row's qemu: the exit
    /// programs with three statuses, the argv0 programs with two argv[0]s
    /// (qemu's -0), the euid programs as two users (when root; otherwise
    /// as the user running the test).
    #[test]
    fn every_kind_runs_under_qemu() {
        let dir = Dir::new();
        let root = nix::unistd::geteuid().is_root();
        let mut wrong = Vec::new();
        for row in ARCHES {
            let emulator = qemu(row.emulator);
            let mut check = |what: String, cmd: &mut Command, want: i32| {
                let got = code(cmd);
                if got != Some(want) {
                    wrong.push(format!("{}: {what}: exited {got:?}, not {want}", row.name));
                }
            };
            for s in [0u8, 42, 200] {
                if let Some(p) = program(row.name, Kind::Exit(s)) {
                    let path = dir.write(&format!("{}-exit-{s}", row.name), &p);
                    check(
                        format!("exit({s})"),
                        Command::new(&emulator).arg(&path),
                        i32::from(s),
                    );
                }
            }
            if let Some(p) = program(row.name, Kind::Argv0) {
                let path = dir.write(&format!("{}-argv0", row.name), &p);
                for argv0 in ["Zprobe", "abc"] {
                    check(
                        format!("argv0 {argv0:?}"),
                        Command::new(&emulator).arg("-0").arg(argv0).arg(&path),
                        i32::from(argv0.as_bytes()[0]),
                    );
                }
            }
            if let Some(p) = program(row.name, Kind::Euid) {
                let path = dir.write(&format!("{}-euid", row.name), &p);
                if root {
                    // Real and effective uids differ, and one is above
                    // 65535: a program that reported the real uid, or used
                    // a 16-bit call (65534 for uids it cannot hold), exits
                    // otherwise. Except on sparc64, whose 64-bit geteuid
                    // (49) is whole in the kernel, but qemu before 8.0
                    // (Debian 12 has 7.2) treats it as the 32-bit ABI's
                    // 16-bit call (qemu issue 1394).
                    let big = if row.name == "sparc64" { 810 } else { 65578 };
                    for (ruid, euid) in [(377u32, big), (big, 377), (810, 377)] {
                        check(
                            format!("euid as ruid {ruid} euid {euid}"),
                            Command::new("setpriv")
                                .arg(format!("--ruid={ruid}"))
                                .arg(format!("--euid={euid}"))
                                .args(["--rgid=377", "--egid=377", "--clear-groups", "--"])
                                .arg(&emulator)
                                .arg(&path),
                            (euid & 0xff) as i32,
                        );
                    }
                } else {
                    let me = nix::unistd::geteuid().as_raw();
                    check(
                        format!("euid as uid {me}"),
                        Command::new(&emulator).arg(&path),
                        (me & 0xff) as i32,
                    );
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
