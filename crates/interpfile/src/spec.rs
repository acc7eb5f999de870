//! What an interpreter file is built from ([`Spec`]), and building it:
//! reading the emulators (twice each, never all at once) and handing them
//! to the linker.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use qemu_shim_registry_core::dispatch::Convention;

use crate::error::{Error, Result};
use crate::link;
use crate::output::{Compare, FileOut, Output};
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

/// Builds the interpreter file from the built interpreter `shim` in
/// memory: [`prepare`], then [`Prepared::to_vec`]. For small files and
/// tests; a file with every emulator carried is hundreds of MB, which
/// [`Prepared::write_file`] writes holding one emulator at a time.
pub fn build(shim: &[u8], spec: &Spec) -> Result<Built> {
    build_with(shim, spec, &mut |_, _, _| {})
}

/// [`build`] with [`prepare_with`]'s `inspect`.
pub fn build_with(
    shim: &[u8],
    spec: &Spec,
    inspect: &mut dyn FnMut(&Path, &Stamp, &[u8]),
) -> Result<Built> {
    let prepared = prepare_with(shim, spec, inspect)?;
    let image = prepared.to_vec()?;
    Ok(Built {
        image,
        by_path: prepared.by_path,
    })
}

/// An interpreter file planned and ready to be written (or compared): the
/// built interpreter `shim`, its table configured with `spec`, and, when
/// `spec.carry`, the plan of each emulator's image. See [`prepare`].
pub struct Prepared<'a> {
    shim: &'a [u8],
    spec: &'a Spec,
    carried: Vec<link::Carry<'a>>,
    carried_from: Vec<(&'a Path, Stamp)>,
    by_path_entries: Vec<link::ByPath<'a>>,
    /// The arches whose emulator is started by path, and why.
    pub by_path: Vec<(String, String)>,
}

/// Plans the interpreter file from the built interpreter `shim`: its table
/// configured with `spec`, and, when `spec.carry`, the emulators' images
/// (each read now, planned and dropped in turn). An emulator that cannot
/// be carried (dynamically linked, not position-independent) is started by
/// path instead: the convention is recorded per emulator in the table.
///
/// Each carried emulator is read again, one at a time, whenever the file
/// is written or compared. One that is replaced or written since this
/// first read is refused with one error, not copied into a layout made for
/// its old bytes.
pub fn prepare<'a>(shim: &'a [u8], spec: &'a Spec) -> Result<Prepared<'a>> {
    prepare_with(shim, spec, &mut |_, _, _| {})
}

/// [`prepare`], calling `inspect` with each emulator's path, [`Stamp`] and
/// bytes as they are first read (carried files only; with `carry` off no
/// emulator is read): the CLI records what it installed from (issue 13)
/// without reading hundreds of MB once more.
pub fn prepare_with<'a>(
    shim: &'a [u8],
    spec: &'a Spec,
    inspect: &mut dyn FnMut(&Path, &Stamp, &[u8]),
) -> Result<Prepared<'a>> {
    let mut prepared = Prepared {
        shim,
        spec,
        carried: Vec::new(),
        carried_from: Vec::new(),
        by_path_entries: Vec::new(),
        by_path: Vec::new(),
    };
    if !spec.carry {
        prepared.by_path = spec
            .emulators
            .iter()
            .map(|(a, _)| (a.clone(), "--no-carry".to_string()))
            .collect();
        // What writing it would check.
        let mut image = shim.to_vec();
        configure(&mut image, spec)?;
        return Ok(prepared);
    }
    // Each emulator is read, planned and dropped in turn. All are read
    // before anything is built, as when they were all held at once: one
    // that cannot be read fails the build first.
    let mut seen = Vec::new();
    // One buffer for all, as large as the largest: memory does not grow
    // with their number.
    let largest = spec
        .emulators
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(largest).unwrap_or(0));
    for (_, p) in &spec.emulators {
        let (_, stamp) = read_into(p, &mut bytes)?;
        inspect(p, &stamp, &bytes);
        let plan = link::plan(&bytes, spec.target);
        seen.push((stamp, plan));
    }
    drop(bytes);
    for ((arch, file_path), (stamp, plan)) in spec.emulators.iter().zip(seen) {
        let path = file_path.as_os_str().as_bytes();
        let convention = spec.convention_by_path(arch);
        let by_path = link::ByPath {
            arch,
            path,
            convention,
            cpu: spec.cpu(arch),
        };
        if convention == Convention::ExecPlain {
            prepared.by_path_entries.push(by_path);
            prepared
                .by_path
                .push((arch.clone(), "not qemu: configured in the spec file".into()));
            continue;
        }
        match plan {
            Ok(plan) => {
                prepared.carried.push(link::Carry {
                    arch,
                    path,
                    cpu: spec.cpu(arch),
                    plan,
                });
                prepared.carried_from.push((file_path, stamp));
            }
            Err(why) => {
                prepared.by_path_entries.push(by_path);
                prepared.by_path.push((arch.clone(), why));
            }
        }
    }
    // The interpreter is checked now, not once the emulators are read
    // again.
    prepared.file_size()?;
    Ok(prepared)
}

impl Prepared<'_> {
    fn link(&self) -> link::Link<'_> {
        link::Link {
            shim: self.shim,
            target: self.spec.target,
            carried: &self.carried,
            by_path: &self.by_path_entries,
            flags: self.spec.flags,
            base: self.spec.prelink_base,
        }
    }

    /// The size of the file.
    pub fn file_size(&self) -> Result<u64> {
        if !self.spec.carry {
            return Ok(self.shim.len() as u64);
        }
        self.link().file_size()
    }

    /// Hands the file to `out`, in order, reading each carried emulator
    /// again (one at a time; see [`link::Link::write`]).
    pub fn write(&self, out: &mut dyn Output) -> Result<()> {
        if !self.spec.carry {
            let mut image = self.shim.to_vec();
            configure(&mut image, self.spec)?;
            out.begin(image.len() as u64)?;
            return out.bytes(&image);
        }
        let mut emus = Again {
            from: &self.carried_from,
        };
        self.link().write(&mut emus, out)
    }

    /// Writes the file into `file`, new and empty, open for writing (named
    /// `path` in errors): sparse, sharing the emulators' unchanged pages
    /// where the file system can (see [`FileOut`]). `progress` is told the
    /// bytes done so far.
    pub fn write_file(
        &self,
        file: &File,
        path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<crate::output::Stats> {
        let mut out = FileOut::new(file, path, progress);
        self.write(&mut out)?;
        Ok(out.stats)
    }

    /// Whether `old` (named `path` in errors) holds exactly this file,
    /// read piece by piece (and only up to the first difference).
    pub fn same_as(&self, old: &File, path: &Path) -> Result<bool> {
        let mut c = Compare::new(old, path);
        self.write(&mut c)?;
        Ok(c.same())
    }

    /// The whole file in memory.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut image = Vec::new();
        self.write(&mut image)?;
        Ok(image)
    }
}

/// The carried emulators read again, each checked to be the version first
/// read, before and after its image is written.
struct Again<'a> {
    from: &'a [(&'a Path, Stamp)],
}

impl link::Emulators for Again<'_> {
    fn read(&mut self, i: usize, buf: &mut Vec<u8>) -> Result<Option<File>> {
        let (path, stamp) = self.from[i];
        let (file, now) = read_into(path, buf)?;
        if now != stamp {
            return Err(link::changed(path.as_os_str().as_bytes()));
        }
        Ok(Some(file))
    }

    fn check(&mut self, i: usize, file: Option<&File>) -> Result<()> {
        let (path, stamp) = self.from[i];
        match file.map(|f| f.metadata().map(|m| Stamp::of(&m))) {
            Some(Ok(now)) if now != stamp => Err(link::changed(path.as_os_str().as_bytes())),
            Some(Err(e)) => Err(Error::io("cannot read the emulator", path, &e)),
            _ => Ok(()),
        }
    }

    fn largest(&self) -> usize {
        let max = self.from.iter().map(|(_, s)| s.len).max().unwrap_or(0);
        usize::try_from(max).unwrap_or(0)
    }
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

/// Reads the emulator at `path` into `buf` (replacing what it held, its
/// allocation reused), and returns it open and what version of it that was.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(File, Stamp)> {
    use std::io::Read;
    let err = |e: std::io::Error| Error::io("cannot read the emulator", path, &e);
    let mut f = File::open(path).map_err(err)?;
    let stat = |f: &File| -> std::io::Result<Stamp> { Ok(Stamp::of(&f.metadata()?)) };
    let stamp = stat(&f).map_err(err)?;
    buf.clear();
    // Exactly: a grown buffer would double.
    buf.reserve_exact(usize::try_from(stamp.len).unwrap_or(0));
    f.read_to_end(buf).map_err(err)?;
    // Written while being read: the bytes may mix two versions.
    if stat(&f).map_err(err)? != stamp || buf.len() as u64 != stamp.len {
        return Err(link::changed(path.as_os_str().as_bytes()));
    }
    Ok((f, stamp))
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
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let first = read_into(&path, &mut a).unwrap().1;
        assert!(read_into(&path, &mut b).unwrap().1 == first);
        let new = dir.path().join("new");
        std::fs::write(&new, b"the same bytes").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let second = read_into(&path, &mut b).unwrap().1;
        assert_eq!(a, b);
        assert!(second != first);
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
