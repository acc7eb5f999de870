//! The host arch an interpreter file is built for: its ELF machine, its
//! relative relocation type and where a pre-relocated file may sit.

use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use goblin::elf::reloc::{R_AARCH64_RELATIVE, R_X86_64_RELATIVE};

use crate::error::{Error, Result};

/// A host arch qemu-shim's interpreter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    X86_64,
    Aarch64,
}

impl Target {
    /// The arch this crate is compiled for, if the interpreter supports it.
    pub const fn host() -> Option<Target> {
        if cfg!(target_arch = "x86_64") {
            Some(Target::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Target::Aarch64)
        } else {
            None
        }
    }

    /// Its name in the arch table.
    pub fn name(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
        }
    }

    /// Every host arch the interpreter runs on.
    pub const ALL: [Target; 2] = [Target::X86_64, Target::Aarch64];

    /// The arch named `name` in the arch table, if the interpreter runs there.
    pub fn by_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The arch whose ELF `e_machine` is `machine`, if the interpreter runs
    /// there.
    pub fn by_machine(machine: u16) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.machine() == machine)
    }

    /// Its ELF `e_machine`: the interpreter's, and every carried emulator's.
    pub fn machine(self) -> u16 {
        match self {
            Target::X86_64 => EM_X86_64,
            Target::Aarch64 => EM_AARCH64,
        }
    }

    /// Its relative relocation type (`R_*_RELATIVE`), the only kind a
    /// static PIE's start-up applies and pre-relocation applies instead.
    pub fn r_relative(self) -> u32 {
        match self {
            Target::X86_64 => R_X86_64_RELATIVE,
            Target::Aarch64 => R_AARCH64_RELATIVE,
        }
    }

    /// Where a pre-relocated interpreter file may sit: a range clear of
    /// where the kernel places stacks, mmap areas, the vdso and
    /// position-independent programs, and of where guest programs load:
    /// x86_64 [32 TiB, 64 TiB) of its 128 TiB; aarch64 (whose kernels may
    /// give user space only 39 bits, 512 GiB) [256 GiB, 384 GiB). As
    /// (start, length).
    pub fn prelink_range(self) -> (u64, u64) {
        match self {
            Target::X86_64 => (0x2000_0000_0000, 0x2000_0000_0000),
            Target::Aarch64 => (0x40_0000_0000, 0x20_0000_0000),
        }
    }

    /// A fresh fixed address for a pre-relocated interpreter file, drawn at
    /// random in [`Target::prelink_range`], 2 MiB aligned.
    pub fn random_base(self) -> Result<u64> {
        let mut b = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .map_err(|e| Error::new(format!("cannot read /dev/urandom: {e}")))?;
        let (lo, len) = self.prelink_range();
        Ok((lo + u64::from_le_bytes(b) % len) & !0x1f_ffff)
    }
}

/// The host this crate is built for (x86_64 elsewhere, where the
/// interpreter does not run at all).
impl Default for Target {
    fn default() -> Target {
        Target::host().unwrap_or(Target::X86_64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bases_lie_in_the_range_2_mib_aligned() {
        for t in Target::ALL {
            let (lo, len) = t.prelink_range();
            for _ in 0..100 {
                let b = t.random_base().unwrap();
                assert!(
                    b >= lo && b < lo + len && b % 0x20_0000 == 0,
                    "{t:?} {b:#x}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip_and_match_the_relocation_numbers() {
        for t in Target::ALL {
            assert_eq!(Target::by_name(t.name()), Some(t));
            assert_eq!(Target::by_machine(t.machine()), Some(t));
        }
        assert_eq!(Target::X86_64.r_relative(), 8);
        assert_eq!(Target::Aarch64.r_relative(), 1027);
        assert_eq!(Target::by_name("riscv64"), None);
    }
}
