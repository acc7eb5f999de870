//! The arch table: one row per foreign arch qemu-user can run.
//!
//! Each row is what the kernel matches (magic and mask at an offset, the
//! binfmt_misc rule `(byte ^ magic) & mask == 0`), which emulator runs it,
//! and the docker/OCI platform names users write for it. The interpreter
//! classifies a program with exactly these rows, so what was registered and
//! what is dispatched cannot disagree.
//!
//! Source: qemu's `scripts/qemu-binfmt-conf.sh`, each row checked here
//! (see the table's notes for how each was checked).

/// How a row of the table was checked against real program headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Against a real program from Debian's archive (busybox-static).
    RealBinary,
    /// Against an object assembled and linked by Debian's cross binutils.
    CrossBinutils,
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
}

/// Every arch qemu-shim knows, in a fixed order.
pub static ARCHES: &[Arch] = &[Arch {
    name: "aarch64",
    emulator: "qemu-aarch64",
    platforms: &["linux/arm64", "linux/arm64/v8"],
    offset: 0,
    magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
    mask: b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    checked: Checked::RealBinary,
}];

/// The row matching `header`, if any. Rows never overlap (the tests check it
/// against real headers), so the first match is the only one.
pub fn classify(header: &[u8]) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.matches(header))
}

/// The row named `name` (qemu's target name, e.g. `aarch64`).
pub fn by_name(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

/// The row for a name as users write it: qemu's target name (`aarch64`) or
/// any of its platform names (`linux/arm64`).
pub fn lookup(name: &str) -> Option<&'static Arch> {
    by_name(name).or_else(|| ARCHES.iter().find(|a| a.platforms.contains(&name)))
}
