//! The arch table: one row per foreign arch qemu-user can run.
//!
//! Each row is what the kernel matches (magic and mask at an offset, the
//! binfmt_misc rule `(byte ^ magic) & mask == 0`), which emulator runs it,
//! and the docker/OCI platform names users write for it. The interpreter
//! classifies a program with exactly these rows, so what was registered and
//! what is dispatched cannot disagree.
//!
//! Source: qemu's `scripts/qemu-binfmt-conf.sh` (its target list, up to
//! loongarch64), each row checked against real program headers where a
//! program could be had, and corrected where qemu's row is wrong or too
//! narrow: see [`ARCHES`].

/// How a row of the table was checked against real program headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Against real programs from Debian's archive (busybox-static; for
    /// x86_64, qemu-user-static's own programs).
    RealBinary,
    /// Against a program assembled and linked by Debian's cross binutils.
    CrossBinutils,
    /// Against a program compiled by rustc's LLVM backend and linked by
    /// rust-lld, for arches Debian ships no binutils for.
    CrossLlvm,
    /// Not checked against a real header: taken from qemu's script and
    /// reviewed by hand against the ELF specification for that machine.
    ByHand,
}

/// One foreign arch.
#[derive(Debug)]
pub struct Arch {
    /// qemu's target name; our binfmt_misc entry is `qemu-shim-<name>`.
    pub name: &'static str,
    /// The emulator's base name, without a `-static` suffix (`qemu-aarch64`).
    pub emulator: &'static str,
    /// docker/OCI platform names for this arch, canonical first (may be empty).
    pub platforms: &'static [&'static str],
    /// Debian's names for this arch (`dpkg --print-architecture`, including
    /// the ports), in the order users meet them; empty where Debian has none.
    /// Source: Debian's `dpkg` arch table (`/usr/share/dpkg/cputable` and
    /// the ports list); armhf and armel are two ABIs of the one `arm` row.
    pub debian: &'static [&'static str],
    /// Offset of `magic` in the file (the kernel allows offset + len <= 256).
    pub offset: usize,
    /// Bytes the kernel compares after masking.
    pub magic: &'static [u8],
    /// Bits of each byte that take part in the comparison; same length as `magic`.
    pub mask: &'static [u8],
    /// How this row was checked against real headers.
    pub checked: Checked,
}

impl Arch {
    /// Whether `header` (the first bytes of a file) matches this row, by the
    /// kernel's rule. A header too short to hold the magic does not match.
    pub fn matches(&self, header: &[u8]) -> bool {
        let Some(bytes) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        bytes
            .iter()
            .zip(self.magic)
            .zip(self.mask)
            .all(|((b, m), k)| (b ^ m) & k == 0)
    }

    /// The docker/OCI platform name, if the arch has one.
    pub fn platform(&self) -> Option<&'static str> {
        self.platforms.first().copied()
    }

    /// The name a user most likely knows the arch by, for messages: its
    /// Debian name when Debian has exactly one (`arm64`, `ppc64el`,
    /// `amd64`), else qemu's (`arm`, which is armhf or armel; `sparc`).
    pub fn familiar_name(&self) -> &'static str {
        match self.debian {
            [one] => one,
            _ => self.name,
        }
    }

    /// qemu's target name as qemu itself spells it in paths such as its
    /// loader prefix `/etc/qemu-binfmt/<target>`: the emulator's name
    /// without `qemu-` (i486 programs run on qemu-i386, so `i386`).
    pub fn qemu_target(&self) -> &'static str {
        self.emulator.strip_prefix("qemu-").unwrap_or(self.name)
    }

    /// Whether `name` (already without `qemu-shim-`) is one of this row's
    /// spellings, ignoring ASCII case: qemu's name, a Debian name, a
    /// platform name, or a platform name without its `linux/` part.
    fn answers_to(&self, name: &str) -> bool {
        let eq = |s: &str| s.eq_ignore_ascii_case(name);
        eq(self.name)
            || self.debian.iter().any(|d| eq(d))
            || self
                .platforms
                .iter()
                .any(|p| eq(p) || p.strip_prefix("linux/").is_some_and(eq))
    }
}

/// The prefix of every binfmt_misc entry qemu-shim registers
/// (`qemu-shim-aarch64`); status shows entries by that name, so users
/// type it back.
pub const ENTRY_PREFIX: &str = "qemu-shim-";

// ELF header fields the rows compare (System V gABI, "ELF Header").
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
/// ELFDATA2LSB.
const LE: u8 = 1;
/// ELFDATA2MSB.
const BE: u8 = 2;

// e_machine values, as in glibc's and binutils' elf.h.
const EM_SPARC: u16 = 2;
const EM_386: u16 = 3;
const EM_68K: u16 = 4;
const EM_486: u16 = 6;
const EM_MIPS: u16 = 8;
const EM_PARISC: u16 = 15;
const EM_SPARC32PLUS: u16 = 18;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_SH: u16 = 42;
const EM_SPARCV9: u16 = 43;
const EM_X86_64: u16 = 62;
const EM_OPENRISC: u16 = 92;
const EM_XTENSA: u16 = 94;
/// Hexagon.
const EM_QDSP6: u16 = 164;
const EM_AARCH64: u16 = 183;
const EM_MICROBLAZE: u16 = 189;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;
/// Not registered with the gABI; the value Linux and binutils use.
const EM_ALPHA: u16 = 0x9026;

/// Bytes most rows compare: `e_ident`, `e_type` and `e_machine`.
const LEN: usize = 20;
/// Bytes the 32-bit MIPS rows compare: up to the end of ELF32's `e_flags`.
const MIPS32_LEN: usize = 40;
/// `e_flags` bit set for the n32 ABI (o32 has it clear).
const EF_MIPS_ABI2: u8 = 0x20;

/// `EI_OSABI` mask of a row that accepts any OS/ABI byte (most rows, as
/// qemu's: old ARM OABI programs carry ELFOSABI_ARM, GNU ones 0 or 3).
const ANY_OSABI: u8 = 0x00;
/// `EI_OSABI` mask that accepts 0 to 3 (System V to GNU/Linux); qemu's
/// loongarch64 row.
const OSABI_0_TO_3: u8 = 0xfc;

/// The magic of the common rule: `\x7fELF`, the class, the byte order,
/// `EI_VERSION` 1, `EI_OSABI` and `EI_ABIVERSION` 0 (both masked below),
/// zero padding, `e_type` ET_EXEC (the mask lets ET_DYN through) and
/// `e_machine`, the last two in the file's byte order.
const fn magic(class: u8, data: u8, machine: u16) -> [u8; LEN] {
    let mut m = [0u8; LEN];
    m[0] = 0x7f;
    m[1] = b'E';
    m[2] = b'L';
    m[3] = b'F';
    m[4] = class;
    m[5] = data;
    m[6] = 1;
    let (e_type, e_machine) = if data == LE {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    } else {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    };
    m[16] = e_type[0];
    m[17] = e_type[1];
    m[18] = e_machine[0];
    m[19] = e_machine[1];
    m
}

/// The mask of the common rule: every bit compared except `EI_OSABI` (as
/// `osabi` says), `EI_ABIVERSION` (not at all) and bit 0 of `e_type`'s low
/// byte (so ET_EXEC 2 and ET_DYN 3 both match).
const fn mask(data: u8, osabi: u8) -> [u8; LEN] {
    let mut k = [0xffu8; LEN];
    k[7] = osabi;
    k[8] = 0;
    if data == LE {
        k[16] = 0xfe;
    } else {
        k[17] = 0xfe;
    }
    k
}

/// Where `e_flags`' least significant byte sits in an ELF32 header: the
/// field is at offset 36, in the file's byte order.
const fn elf32_flags_low_byte(data: u8) -> usize {
    if data == LE {
        36
    } else {
        39
    }
}

/// A 32-bit MIPS magic: the common rule, then `e_flags` with EF_MIPS_ABI2
/// set for n32 and clear for o32. Bytes 20..36 are not compared.
const fn mips32_magic(data: u8, n32: bool) -> [u8; MIPS32_LEN] {
    let head = magic(ELFCLASS32, data, EM_MIPS);
    let mut m = [0u8; MIPS32_LEN];
    let mut i = 0;
    while i < LEN {
        m[i] = head[i];
        i += 1;
    }
    if n32 {
        m[elf32_flags_low_byte(data)] = EF_MIPS_ABI2;
    }
    m
}

/// The mask for [`mips32_magic`]: the common mask, then only EF_MIPS_ABI2.
const fn mips32_mask(data: u8) -> [u8; MIPS32_LEN] {
    let head = mask(data, ANY_OSABI);
    let mut k = [0u8; MIPS32_LEN];
    let mut i = 0;
    while i < LEN {
        k[i] = head[i];
        i += 1;
    }
    k[elf32_flags_low_byte(data)] = EF_MIPS_ABI2;
    k
}

/// Every arch qemu-shim knows, in a fixed order: qemu's
/// `scripts/qemu-binfmt-conf.sh` target list, in its order.
///
/// # How each row was checked
///
/// The registry's golden tests (`crates/registry/tests/golden.rs`) check
/// every row against the headers below and assert that no header matches two
/// rows, and that no two rows can match one header at all (some byte both
/// compare differs).
///
/// - [`Checked::RealBinary`]: Debian bookworm's `busybox-static` (fetched by
///   `scripts/fetch-fixtures`) for aarch64 (arm64), arm (armel and armhf),
///   i386, mipsel, mips64el, ppc64le (ppc64el) and s390x; Debian's
///   `qemu-*-static` programs themselves for x86_64.
/// - [`Checked::CrossBinutils`]: a static ET_EXEC and an ET_DYN (PIE) made
///   by Debian's cross binutils (`scripts/gen-cross-headers`, committed as
///   `tests/fixtures/headers/*.hex`) for alpha, armeb (also BE8), sparc,
///   sparc32plus, sparc64, ppc, ppc64 (ELFv1 and ELFv2), m68k, mips, mipsn32,
///   mipsn32el, mips64, sh4, sh4eb, aarch64_be, hppa, riscv32 and riscv64
///   (and, besides the real ones, i386, x86_64, arm, aarch64, mipsel,
///   mips64el, ppc64le, s390x); for MIPS also MIPS32r6/MIPS64r6 and
///   non-PIC executables calling a shared library through a PLT. Also or1k
///   (a static ET_EXEC only) and xtensa, with Debian's bare-metal
///   `binutils-or1k-elf` and `binutils-xtensa-lx106`: their header fields
///   are the ones binfmt_misc compares in Linux programs too.
/// - [`Checked::CrossLlvm`]: hexagon and loongarch64, which bookworm has no
///   binutils for: a no_core crate compiled by rustc's LLVM backend, linked
///   by rust-lld (same script).
/// - [`Checked::ByHand`], no toolchain here: i486 (`EM_486` is obsolete; no
///   current toolchain writes it, but Linux's i386 loader still accepts it),
///   xtensaeb, microblaze and microblazeel. Their `e_machine` values are the
///   ones binutils' `include/elf/common.h` defines and its back ends write
///   (`EM_XTENSA` 94, `EM_MICROBLAZE` 189), and they are built by the same
///   [`magic`]/[`mask`] as the checked rows. Every row, these included, also
///   classifies the probe programs of `qemu_shim_registry::programs`, which
///   the tests run under that row's qemu.
///
/// # Where this differs from qemu's rows
///
/// - `EI_ABIVERSION` (byte 8) is not compared (qemu requires 0 except for
///   loongarch64). Binutils writes 1 into MIPS non-PIC executables that call
///   through a PLT and 3 into MIPS32r6 o32 ones (FP64): qemu's MIPS rows
///   miss both. The byte is an OS/ABI detail and says nothing about the arch.
/// - `EI_DATA` and `EI_VERSION` are compared exactly in every row (qemu's
///   i386, i486, x86_64 and alpha rows also let 0 through, which neither the
///   kernel, qemu nor [`crate::elf`] accepts).
/// - mips, mipsel, mipsn32 and mipsn32el compare `e_flags`' EF_MIPS_ABI2
///   (0x20; `e_flags` is at offset 36 in ELF32): qemu's o32 and n32 rows are
///   identical, so whichever was registered last ran both kinds. (Debian's
///   qemu 7.2 package makes the same fix.) mips64/mips64el need no flag:
///   n64 is the only 64-bit class ABI.
/// - microblaze and microblazeel match `EM_MICROBLAZE` (189), the value
///   binutils writes (`ELF_MACHINE_CODE` in `bfd/elf32-microblaze.c`; the old
///   unofficial 0xbaab is only accepted on input, as `ELF_MACHINE_ALT1`).
///   qemu's rows match only 0xbaab, so no program a current toolchain builds;
///   and its big-endian row also writes `e_type` in little-endian order
///   (`\x02\x00` at byte 16, where a big-endian ET_EXEC has `\x00\x02`), so it
///   never matched any big-endian file. Programs still carrying 0xbaab are
///   not matched here (qemu runs them; one binfmt_misc entry matches one
///   value).
/// - ppc64le compares the high byte of `e_machine` (qemu's mask skips it).
/// - `EI_OSABI` is ignored as in qemu's rows, except loongarch64 (0 to 3),
///   also as in qemu's.
///
/// Rows qemu's script does not list (Debian's qemu-user-static also ships
/// qemu-cris and qemu-nios2) are not here.
pub static ARCHES: &[Arch] = &[
    Arch {
        name: "i386",
        emulator: "qemu-i386",
        debian: &["i386"],
        platforms: &["linux/386"],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_386),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "i486",
        emulator: "qemu-i386",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_486),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::ByHand,
    },
    Arch {
        name: "alpha",
        emulator: "qemu-alpha",
        debian: &["alpha"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_ALPHA),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "arm",
        emulator: "qemu-arm",
        debian: &["armhf", "armel"],
        platforms: &["linux/arm/v7", "linux/arm", "linux/arm/v6", "linux/arm/v5"],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_ARM),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "armeb",
        emulator: "qemu-armeb",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_ARM),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "sparc",
        emulator: "qemu-sparc",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_SPARC),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "sparc32plus",
        emulator: "qemu-sparc32plus",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_SPARC32PLUS),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "sparc64",
        emulator: "qemu-sparc64",
        debian: &["sparc64"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS64, BE, EM_SPARCV9),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "ppc",
        emulator: "qemu-ppc",
        debian: &["powerpc"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_PPC),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "ppc64",
        emulator: "qemu-ppc64",
        debian: &["ppc64"],
        platforms: &["linux/ppc64"],
        offset: 0,
        magic: &magic(ELFCLASS64, BE, EM_PPC64),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "ppc64le",
        emulator: "qemu-ppc64le",
        debian: &["ppc64el"],
        platforms: &["linux/ppc64le"],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_PPC64),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "m68k",
        emulator: "qemu-m68k",
        debian: &["m68k"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_68K),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "mips",
        emulator: "qemu-mips",
        debian: &["mips"],
        platforms: &["linux/mips"],
        offset: 0,
        magic: &mips32_magic(BE, false),
        mask: &mips32_mask(BE),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "mipsel",
        emulator: "qemu-mipsel",
        debian: &["mipsel"],
        platforms: &["linux/mipsle"],
        offset: 0,
        magic: &mips32_magic(LE, false),
        mask: &mips32_mask(LE),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "mipsn32",
        emulator: "qemu-mipsn32",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &mips32_magic(BE, true),
        mask: &mips32_mask(BE),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "mipsn32el",
        emulator: "qemu-mipsn32el",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &mips32_magic(LE, true),
        mask: &mips32_mask(LE),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "mips64",
        emulator: "qemu-mips64",
        debian: &[],
        platforms: &["linux/mips64"],
        offset: 0,
        magic: &magic(ELFCLASS64, BE, EM_MIPS),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "mips64el",
        emulator: "qemu-mips64el",
        debian: &["mips64el"],
        platforms: &["linux/mips64le"],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_MIPS),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "sh4",
        emulator: "qemu-sh4",
        debian: &["sh4"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_SH),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "sh4eb",
        emulator: "qemu-sh4eb",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_SH),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "s390x",
        emulator: "qemu-s390x",
        debian: &["s390x"],
        platforms: &["linux/s390x"],
        offset: 0,
        magic: &magic(ELFCLASS64, BE, EM_S390),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "aarch64",
        emulator: "qemu-aarch64",
        debian: &["arm64"],
        platforms: &["linux/arm64", "linux/arm64/v8"],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_AARCH64),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "aarch64_be",
        emulator: "qemu-aarch64_be",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS64, BE, EM_AARCH64),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "hppa",
        emulator: "qemu-hppa",
        debian: &["hppa"],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_PARISC),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "riscv32",
        emulator: "qemu-riscv32",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_RISCV),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "riscv64",
        emulator: "qemu-riscv64",
        debian: &["riscv64"],
        platforms: &["linux/riscv64"],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_RISCV),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "xtensa",
        emulator: "qemu-xtensa",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_XTENSA),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "xtensaeb",
        emulator: "qemu-xtensaeb",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_XTENSA),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::ByHand,
    },
    Arch {
        name: "microblaze",
        emulator: "qemu-microblaze",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_MICROBLAZE),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::ByHand,
    },
    Arch {
        name: "microblazeel",
        emulator: "qemu-microblazeel",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_MICROBLAZE),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::ByHand,
    },
    Arch {
        name: "or1k",
        emulator: "qemu-or1k",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, BE, EM_OPENRISC),
        mask: &mask(BE, ANY_OSABI),
        checked: Checked::CrossBinutils,
    },
    Arch {
        name: "x86_64",
        emulator: "qemu-x86_64",
        debian: &["amd64"],
        platforms: &[
            "linux/amd64",
            "linux/amd64/v2",
            "linux/amd64/v3",
            "linux/amd64/v4",
        ],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_X86_64),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::RealBinary,
    },
    Arch {
        name: "hexagon",
        emulator: "qemu-hexagon",
        debian: &[],
        platforms: &[],
        offset: 0,
        magic: &magic(ELFCLASS32, LE, EM_QDSP6),
        mask: &mask(LE, ANY_OSABI),
        checked: Checked::CrossLlvm,
    },
    Arch {
        name: "loongarch64",
        emulator: "qemu-loongarch64",
        debian: &["loong64"],
        platforms: &["linux/loong64"],
        offset: 0,
        magic: &magic(ELFCLASS64, LE, EM_LOONGARCH),
        mask: &mask(LE, OSABI_0_TO_3),
        checked: Checked::CrossLlvm,
    },
];

/// The row matching `header`, if any. Rows never overlap (the tests check it
/// against real headers), so the first match is the only one.
pub fn classify(header: &[u8]) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.matches(header))
}

/// The row named `name` (qemu's target name, e.g. `aarch64`).
pub fn by_name(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

/// The row for a name as users write it, ignoring ASCII case: qemu's target
/// name (`aarch64`), a Debian arch name (`arm64`, `armhf`, `ppc64el`), any of
/// its platform names (`linux/arm64`), a platform name without its `linux/`
/// part, as docker and podman write arches (`arm64`, `amd64`, `386`,
/// `arm/v7`, `mips64le`), or any of these after `qemu-shim-` (our entry
/// names, as status shows them) or `qemu-` (the emulator's, and the
/// distros' entry names). No name is ambiguous: where one spelling is used
/// by two schemes (`arm`, `mips`, `i386`, `s390x`, `riscv64`), all name the
/// same row (the tests check every spelling of every row).
pub fn lookup(name: &str) -> Option<&'static Arch> {
    let find = |n: &str| ARCHES.iter().find(|a| a.answers_to(n));
    find(name).or_else(|| {
        let rest = strip_prefix_ignore_case(name, ENTRY_PREFIX)
            .or_else(|| strip_prefix_ignore_case(name, "qemu-"))?;
        find(rest)
    })
}

/// `s` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}
