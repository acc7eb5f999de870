//! The interpreter file: finding its dispatch-table region, writing a table
//! into a copy of the built interpreter, and reading an installed file's
//! table back.
//!
//! The built `qemu-shim-interp` reserves [`dispatch::REGION_SIZE`] bytes in
//! the section [`dispatch::SECTION`], starting with [`dispatch::MAGIC`]. The
//! section is located through the section header table (goblin); the region
//! is patched in place, so the interpreter's code and layout are untouched.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB};
use goblin::elf::section_header::SHT_NOBITS;
use goblin::elf::{Elf, SectionHeader};
use goblin::strtab::Strtab;
use qemu_shim_registry::dispatch::{self, Convention, Entry, Table};

use crate::error::{Error, Result};
use crate::link;

/// File name of the interpreter, both next to the CLI and once installed.
pub const FILE_NAME: &str = "qemu-shim-interp";

/// Hint for an interpreter binary that cannot be used.
const BUILD_HINT: &str = "build it with `cargo build --release --workspace`, \
     or pass the built qemu-shim-interp with --interpreter";

/// The interpreter to install when none is named: `qemu-shim-interp` next to
/// the running `qemu-shim` (so a `cargo build` tree works as is).
pub fn default_source() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::io(
            "cannot find the running executable",
            Path::new("qemu-shim"),
            &e,
        )
        .hint("pass the interpreter with --interpreter")
    })?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    Ok(dir.join(FILE_NAME))
}

/// The section headers of `image` and the names they point at: only what
/// finding a section needs. Not goblin's whole `Elf::parse`, which also reads
/// the dynamic section through the program headers: an installed,
/// pre-relocated interpreter file is a fixed-address executable whose
/// dynamic section keeps the interpreter's position-independent values.
fn sections(image: &[u8]) -> std::result::Result<(Vec<SectionHeader>, Strtab<'_>), String> {
    let header = Elf::parse_header(image).map_err(|e| e.to_string())?;
    let container = if header.e_ident[EI_CLASS] == ELFCLASS64 {
        Container::Big
    } else {
        Container::Little
    };
    let endian = Endian::from(header.e_ident[EI_DATA] == ELFDATA2LSB);
    let ctx = Ctx::new(container, endian);
    let shdrs = SectionHeader::parse(image, header.e_shoff as usize, header.e_shnum as usize, ctx)
        .map_err(|e| e.to_string())?;
    let names = shdrs
        .get(usize::from(header.e_shstrndx))
        .ok_or("no section name table")?;
    let strtab = Strtab::parse(image, names.sh_offset as usize, names.sh_size as usize, 0)
        .map_err(|e| e.to_string())?;
    Ok((shdrs, strtab))
}

/// The byte range of the dispatch-table region in an interpreter image.
pub fn region(image: &[u8]) -> Result<Range<usize>> {
    let (shdrs, strtab) = sections(image)
        .map_err(|e| Error::new(format!("not a readable ELF file ({e})")).hint(BUILD_HINT))?;
    let sh = shdrs
        .iter()
        .find(|sh| strtab.get_at(sh.sh_name) == Some(dispatch::SECTION))
        .ok_or_else(|| {
            Error::new(format!(
                "no {} section: not a qemu-shim interpreter",
                dispatch::SECTION
            ))
            .hint(BUILD_HINT)
        })?;
    if sh.sh_type == SHT_NOBITS {
        return Err(Error::new(format!(
            "its {} section holds no file bytes",
            dispatch::SECTION
        ))
        .hint(BUILD_HINT));
    }
    let start = usize::try_from(sh.sh_offset).ok();
    let size = usize::try_from(sh.sh_size).ok();
    let range = match (start, size) {
        (Some(s), Some(n)) => s.checked_add(n).map(|e| s..e),
        _ => None,
    };
    let range = range.filter(|r| r.end <= image.len()).ok_or_else(|| {
        Error::new(format!(
            "its {} section lies outside the file",
            dispatch::SECTION
        ))
    })?;
    if range.len() < dispatch::REGION_SIZE {
        return Err(Error::new(format!(
            "its {} section is {} bytes, smaller than the {} this qemu-shim writes",
            dispatch::SECTION,
            range.len(),
            dispatch::REGION_SIZE
        ))
        .hint(BUILD_HINT));
    }
    if !image[range.clone()].starts_with(&dispatch::MAGIC) {
        return Err(Error::new(format!(
            "its {} section does not start with the table magic",
            dispatch::SECTION
        ))
        .hint(BUILD_HINT));
    }
    Ok(range.start..range.start + dispatch::REGION_SIZE)
}

/// What an interpreter file is configured with: table flags and, per arch,
/// the emulator it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `dispatch::FLAG_*` bits.
    pub flags: u16,
    /// Arch name and emulator path, in table order.
    pub emulators: Vec<(String, PathBuf)>,
    /// Whether the emulators' images are carried in the file (else they
    /// are started by path).
    pub carry: bool,
    /// With carried images: pre-relocate the file for this fixed address.
    pub prelink_base: Option<u64>,
    /// Arches whose emulator takes the plain command line (box64, FEX:
    /// `EMULATOR PROGRAM ARGS…`, see `Convention::ExecPlain`); always
    /// started by path, never carried.
    pub plain: Vec<String>,
}

impl Config {
    /// The convention of `arch`'s emulator when started by path.
    pub fn convention_by_path(&self, arch: &str) -> Convention {
        if self.plain.iter().any(|a| a == arch) {
            Convention::ExecPlain
        } else {
            Convention::ExecByPath
        }
    }

    /// The emulator this interpreter starts for `arch`.
    pub fn emulator(&self, arch: &str) -> Option<&Path> {
        self.emulators
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, p)| p.as_path())
    }
}

/// Writes `config` into the region of `image` (a copy of the built
/// interpreter).
pub fn configure(image: &mut [u8], config: &Config) -> Result<()> {
    let range = region(image)?;
    let entries: Vec<Entry<'_>> = config
        .emulators
        .iter()
        .map(|(arch, path)| Entry {
            arch,
            convention: config.convention_by_path(arch),
            path: path.as_os_str().as_bytes(),
        })
        .collect();
    dispatch::encode(&entries, config.flags, &mut image[range])
        .map_err(|e| Error::new(format!("cannot write the dispatch table: {e}")))?;
    Ok(())
}

/// The interpreter file [`build`] made, and the arches whose emulator it
/// could not carry (with why): those are started by path.
pub struct Built {
    pub image: Vec<u8>,
    pub by_path: Vec<(String, String)>,
}

/// Builds the interpreter file from the built interpreter `shim`: its table
/// configured with `config`, and, when `config.carry`, the emulators'
/// images (read from their paths now). An emulator that cannot be carried
/// (dynamically linked, not position-independent) is started by path
/// instead: the convention is recorded per emulator in the table.
///
/// Each carried emulator is read twice, never all at once: first to plan
/// it (and drop its bytes), then to copy it into the file (see
/// [`link::build`]). One that is replaced or written between the two reads
/// is refused with one error, not copied into a layout made for its old
/// bytes.
pub fn build(shim: &[u8], config: &Config) -> Result<Built> {
    if !config.carry {
        let mut image = shim.to_vec();
        configure(&mut image, config)?;
        let by_path = config
            .emulators
            .iter()
            .map(|(a, _)| (a.clone(), "--no-carry".to_string()))
            .collect();
        return Ok(Built { image, by_path });
    }
    // Each emulator is read, planned and dropped in turn. All are read
    // before anything is built, as when they were all held at once: one
    // that cannot be read fails the build first.
    let mut seen = Vec::new();
    for (_, p) in &config.emulators {
        let file = read_emulator(p)?;
        let plan = link::plan(&file.bytes);
        seen.push((file.stamp, plan));
    }
    let mut carried = Vec::new();
    let mut carried_from = Vec::new();
    let mut by_path = Vec::new();
    let mut by_path_why = Vec::new();
    for ((arch, file_path), (stamp, plan)) in config.emulators.iter().zip(seen) {
        let path = file_path.as_os_str().as_bytes();
        let convention = config.convention_by_path(arch);
        if convention == Convention::ExecPlain {
            by_path.push(link::ByPath {
                arch,
                path,
                convention,
            });
            by_path_why.push((
                arch.clone(),
                "not qemu: configured in the config file".into(),
            ));
            continue;
        }
        match plan {
            Ok(plan) => {
                carried.push(link::Carry { arch, path, plan });
                carried_from.push((file_path, stamp));
            }
            Err(why) => {
                by_path.push(link::ByPath {
                    arch,
                    path,
                    convention,
                });
                by_path_why.push((arch.clone(), why));
            }
        }
    }
    let mut read_again = |i: usize| -> Result<Vec<u8>> {
        let (path, stamp) = carried_from[i];
        let file = read_emulator(path)?;
        if file.stamp != stamp {
            return Err(link::changed(path.as_os_str().as_bytes()));
        }
        Ok(file.bytes)
    };
    let image = link::build(
        shim,
        &carried,
        &by_path,
        config.flags,
        config.prelink_base,
        &mut read_again,
    )?;
    Ok(Built {
        image,
        by_path: by_path_why,
    })
}

/// An emulator file's bytes, and what identifies that version of it.
struct EmulatorFile {
    bytes: Vec<u8>,
    stamp: Stamp,
}

/// Which file and which version of it: device, inode, size, and change
/// and modification times (nanoseconds). Taken from the open descriptor the
/// bytes are read from, so a file renamed over the path between the two
/// reads shows as another inode. A write keeping all of them (within one
/// timestamp tick) can still slip by: [`link::build`] then also compares
/// the layout it plans from the bytes, so the file written is at worst
/// the one those bytes make, never a mix of two layouts.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn read_emulator(path: &Path) -> Result<EmulatorFile> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let err = |e: std::io::Error| Error::io("cannot read the emulator", path, &e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let stat = |f: &std::fs::File| -> std::io::Result<Stamp> {
        let m = f.metadata()?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    };
    let stamp = stat(&f).map_err(err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(err)?;
    // Written while being read: the bytes may mix two versions.
    if stat(&f).map_err(err)? != stamp || bytes.len() as u64 != stamp.len {
        return Err(link::changed(path.as_os_str().as_bytes()));
    }
    Ok(EmulatorFile { bytes, stamp })
}

/// Reads the table of an interpreter image.
pub fn read_config(image: &[u8]) -> Result<Config> {
    let range = region(image)?;
    let table = Table::parse(&image[range]).map_err(|e| Error::new(e.to_string()))?;
    Ok(Config {
        flags: table.flags(),
        carry: table
            .iter()
            .any(|e| matches!(e.convention, Convention::Carried(_))),
        prelink_base: link::prelink_base(image),
        plain: table
            .iter()
            .filter(|e| e.convention == Convention::ExecPlain)
            .map(|e| e.arch.to_string())
            .collect(),
        emulators: table
            .iter()
            .map(|e| {
                (
                    e.arch.to_string(),
                    PathBuf::from(std::ffi::OsStr::from_bytes(e.path)),
                )
            })
            .collect(),
    })
}

/// Reads the table of the interpreter file at `path` (its head only, see
/// [`read_head`]).
pub fn read_config_file(path: &Path) -> Result<Config> {
    let read = |path: &Path| -> std::io::Result<Option<Vec<u8>>> {
        read_head(&std::fs::File::open(path)?)
    };
    let head = read(path)
        .map_err(|e| Error::io("cannot read", path, &e))?
        .ok_or_else(|| Error::new(format!("{}: not a 64-bit ELF file", path.display())))?;
    read_config(&head).map_err(|e| e.context(path.display()))
}

/// The start of an interpreter file: everything up to the end of both of
/// its header tables — the interpreter's own part, its table region, and
/// (in a file with carried emulators) the program header table at the start
/// of their segment — without the emulators' images (hundreds of MB).
/// Enough for [`read_config`] and [`region`]. `Ok(None)` if the file is not
/// a 64-bit ELF file.
pub fn read_head(file: &std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    const EHDR: u64 = 64;
    let size = file.metadata()?.len();
    if size < EHDR {
        return Ok(None);
    }
    let mut ehdr = [0u8; EHDR as usize];
    file.read_exact_at(&mut ehdr, 0)?;
    if ehdr[..4] != *b"\x7fELF" || ehdr[EI_CLASS] != ELFCLASS64 {
        return Ok(None);
    }
    let u64_at = |at: usize| u64::from_le_bytes(ehdr[at..at + 8].try_into().unwrap_or([0; 8]));
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([ehdr[at], ehdr[at + 1]]));
    let phend = u64_at(32).saturating_add(u16_at(54) * u16_at(56));
    let shend = u64_at(40).saturating_add(u16_at(58) * u16_at(60));
    let len = phend.max(shend).max(EHDR).min(size);
    let mut head = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut head, 0)?;
    Ok(Some(head))
}

/// Whether the interpreter must assume the `P` argv layout without the
/// kernel's `AT_FLAGS` bit, which Linux sets only from 5.12 on.
///
/// A release that cannot be parsed also answers yes: every entry qemu-shim
/// registers has `P`, so the kernel hands over the `P` layout whatever
/// `AT_FLAGS` says, and assuming it is never wrong for our entries.
pub fn needs_assume_p(release: &str) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|s| s.parse::<u32>().ok());
    let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) < (5, 12),
        _ => true,
    }
}

/// The table flags for the running kernel.
pub fn flags_for_running_kernel() -> u16 {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if needs_assume_p(&release) {
        dispatch::FLAG_ASSUME_P
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{elf_with_section, TempDir};
    use goblin::elf::section_header::SHT_PROGBITS;

    fn empty_region(size: usize) -> Vec<u8> {
        let mut r = vec![0u8; size];
        r[..16].copy_from_slice(&dispatch::EMPTY_REGION_HEADER);
        r
    }

    fn config() -> Config {
        Config {
            flags: dispatch::FLAG_ASSUME_P,
            carry: false,
            prelink_base: None,
            emulators: vec![
                (
                    "aarch64".into(),
                    PathBuf::from("/usr/bin/qemu-aarch64-static"),
                ),
                ("s390x".into(), PathBuf::from("/opt/q/qemu-s390x")),
                ("x86_64".into(), PathBuf::from("/usr/local/bin/box64")),
            ],
            plain: vec!["x86_64".into()],
        }
    }

    #[test]
    fn configure_then_read_back_round_trips() {
        let mut image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE),
            SHT_PROGBITS,
        );
        let before = image.clone();
        assert_eq!(read_config(&image).unwrap(), Config::default());
        configure(&mut image, &config()).unwrap();
        assert_eq!(read_config(&image).unwrap(), config());
        let r = region(&image).unwrap();
        // Only the region changed.
        assert_eq!(image.len(), before.len());
        assert_eq!(image[..r.start], before[..r.start]);
        assert_eq!(image[r.end..], before[r.end..]);
        assert_eq!(
            config().emulator("s390x"),
            Some(Path::new("/opt/q/qemu-s390x"))
        );
    }

    #[test]
    fn larger_section_is_patched_in_its_first_region_size_bytes() {
        let mut image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE + 100),
            SHT_PROGBITS,
        );
        let r = region(&image).unwrap();
        assert_eq!(r.len(), dispatch::REGION_SIZE);
        configure(&mut image, &config()).unwrap();
        assert_eq!(read_config(&image).unwrap(), config());
    }

    #[test]
    fn missing_section_is_refused_with_a_build_hint() {
        let image = elf_with_section(".data", &empty_region(dispatch::REGION_SIZE), SHT_PROGBITS);
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("no .qemu_shim_table section"), "{e}");
        assert!(e.hint_text().unwrap().contains("cargo build"), "{e}");
    }

    #[test]
    fn small_section_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE - 1),
            SHT_PROGBITS,
        );
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("smaller than"), "{e}");
    }

    #[test]
    fn section_without_magic_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &vec![0u8; dispatch::REGION_SIZE],
            SHT_PROGBITS,
        );
        let e = region(&image).unwrap_err();
        assert!(e.message().contains("magic"), "{e}");
    }

    #[test]
    fn nobits_section_is_refused() {
        let image = elf_with_section(
            dispatch::SECTION,
            &empty_region(dispatch::REGION_SIZE),
            SHT_NOBITS,
        );
        assert!(region(&image).is_err());
    }

    #[test]
    fn not_elf_is_refused_not_a_panic() {
        for image in [
            &b""[..],
            b"#!/bin/sh\necho placeholder\n",
            b"\x7fELF\x02\x01",
        ] {
            assert!(region(image).is_err());
        }
    }

    #[test]
    fn an_emulator_replaced_between_reads_is_told_apart() {
        let dir = TempDir::new();
        let path = dir.path().join("qemu-aarch64-static");
        std::fs::write(&path, b"the same bytes").unwrap();
        // Kept linked so the replacement cannot reuse its inode number.
        std::fs::hard_link(&path, dir.path().join("old")).unwrap();
        let first = read_emulator(&path).unwrap();
        assert!(read_emulator(&path).unwrap().stamp == first.stamp);
        let new = dir.path().join("new");
        std::fs::write(&new, b"the same bytes").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let second = read_emulator(&path).unwrap();
        assert_eq!(second.bytes, first.bytes);
        assert!(second.stamp != first.stamp);
    }

    #[test]
    fn an_emulator_that_cannot_be_read_is_named() {
        let dir = TempDir::new();
        let path = dir.path().join("qemu-arm-static");
        let config = Config {
            carry: true,
            emulators: vec![("arm".into(), path.clone())],
            ..Config::default()
        };
        let e = build(&[], &config).err().unwrap();
        assert!(e.message().contains("cannot read the emulator"), "{e}");
        assert!(e.message().contains(&*path.to_string_lossy()), "{e}");
    }

    #[test]
    fn kernels_before_5_12_need_assume_p() {
        assert!(needs_assume_p("5.11.22-generic"));
        assert!(needs_assume_p("4.19.0-27-amd64"));
        assert!(!needs_assume_p("5.12.0"));
        assert!(!needs_assume_p("6.18.0-1-amd64"));
        assert!(!needs_assume_p("10.0"));
        assert!(needs_assume_p("garbage"));
        assert!(needs_assume_p(""));
    }
}
