//! What an interpreter file is built from ([`Spec`]), and building it:
//! reading the emulators (twice each, never all at once) and handing them
//! to the linker.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use qemu_shim_registry_core::dispatch::Convention;

use crate::error::{Error, Result};
use crate::link;
use crate::region::configure;
use crate::target::Target;

/// What an interpreter file is built from: the host arch it is for, table
/// flags and, per arch, the emulator it starts and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    /// The host the file runs on (its interpreter's and carried emulators'
    /// arch).
    pub target: Target,
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
    /// Arch name and the qemu CPU model (`-cpu`) the administrator chose
    /// for it (issue 15); arches not listed get qemu's default. Never for
    /// a plain arch.
    pub cpu: Vec<(String, String)>,
}

impl Spec {
    /// The convention of `arch`'s emulator when started by path.
    pub fn convention_by_path(&self, arch: &str) -> Convention {
        if self.plain.iter().any(|a| a == arch) {
            Convention::ExecPlain
        } else {
            Convention::ExecByPath
        }
    }

    /// The CPU model chosen for `arch`, as the table holds it (empty for
    /// qemu's default).
    pub fn cpu(&self, arch: &str) -> &[u8] {
        self.cpu
            .iter()
            .find(|(a, _)| a == arch)
            .map_or(&[][..], |(_, m)| m.as_bytes())
    }

    /// The emulator this interpreter starts for `arch`.
    pub fn emulator(&self, arch: &str) -> Option<&Path> {
        self.emulators
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, p)| p.as_path())
    }
}

/// The interpreter file [`build`] made, and the arches whose emulator it
/// could not carry (with why): those are started by path.
pub struct Built {
    pub image: Vec<u8>,
    pub by_path: Vec<(String, String)>,
}

/// Builds the interpreter file from the built interpreter `shim`: its table
/// configured with `spec`, and, when `spec.carry`, the emulators'
/// images (read from their paths now). An emulator that cannot be carried
/// (dynamically linked, not position-independent) is started by path
/// instead: the convention is recorded per emulator in the table.
///
/// Each carried emulator is read twice, never all at once: first to plan
/// it (and drop its bytes), then to copy it into the file (see
/// [`link::build`]). One that is replaced or written between the two reads
/// is refused with one error, not copied into a layout made for its old
/// bytes.
pub fn build(shim: &[u8], spec: &Spec) -> Result<Built> {
    build_with(shim, spec, &mut |_, _, _| {})
}

/// [`build`], calling `inspect` with each emulator's path, [`Stamp`] and
/// bytes as they are first read (carried files only; with `carry` off no
/// emulator is read): the CLI records what it installed from (issue 13)
/// without reading hundreds of MB a third time.
pub fn build_with(
    shim: &[u8],
    spec: &Spec,
    inspect: &mut dyn FnMut(&Path, &Stamp, &[u8]),
) -> Result<Built> {
    if !spec.carry {
        let mut image = shim.to_vec();
        configure(&mut image, spec)?;
        let by_path = spec
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
    for (_, p) in &spec.emulators {
        let file = read_emulator(p)?;
        inspect(p, &file.stamp, &file.bytes);
        let plan = link::plan(&file.bytes, spec.target);
        seen.push((file.stamp, plan));
    }
    let mut carried = Vec::new();
    let mut carried_from = Vec::new();
    let mut by_path = Vec::new();
    let mut by_path_why = Vec::new();
    for ((arch, file_path), (stamp, plan)) in spec.emulators.iter().zip(seen) {
        let path = file_path.as_os_str().as_bytes();
        let convention = spec.convention_by_path(arch);
        if convention == Convention::ExecPlain {
            by_path.push(link::ByPath {
                arch,
                path,
                convention,
                cpu: spec.cpu(arch),
            });
            by_path_why.push((arch.clone(), "not qemu: configured in the spec file".into()));
            continue;
        }
        match plan {
            Ok(plan) => {
                carried.push(link::Carry {
                    arch,
                    path,
                    cpu: spec.cpu(arch),
                    plan,
                });
                carried_from.push((file_path, stamp));
            }
            Err(why) => {
                by_path.push(link::ByPath {
                    arch,
                    path,
                    convention,
                    cpu: spec.cpu(arch),
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
        spec.target,
        &carried,
        &by_path,
        spec.flags,
        spec.prelink_base,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

fn read_emulator(path: &Path) -> Result<EmulatorFile> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::io("cannot read the emulator", path, &e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let stat = |f: &std::fs::File| -> std::io::Result<Stamp> { Ok(Stamp::of(&f.metadata()?)) };
    let stamp = stat(&f).map_err(err)?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(err)?;
    // Written while being read: the bytes may mix two versions.
    if stat(&f).map_err(err)? != stamp || bytes.len() as u64 != stamp.len {
        return Err(link::changed(path.as_os_str().as_bytes()));
    }
    Ok(EmulatorFile { bytes, stamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emulator_replaced_between_reads_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu-arm-static");
        let config = Spec {
            carry: true,
            emulators: vec![("arm".into(), path.clone())],
            ..Spec::default()
        };
        let e = build(&[], &config).err().unwrap();
        assert!(e.message().contains("cannot read the emulator"), "{e}");
        assert!(e.message().contains(&*path.to_string_lossy()), "{e}");
    }
}
