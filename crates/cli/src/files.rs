//! The files install, uninstall and run write, and how they write them:
//! atomically (a temporary file beside the target, renamed over it), with
//! the old interpreter file kept under a second name while a run could
//! still undo ([`keep_old_file`]), the table's lock ([`lock_table`]), and
//! the removal of what a killed run left ([`remove_leftovers`]). One
//! module, so every command names its files the same way (issue 14,
//! item 2).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use qemu_shim_registry::binfmt::Binfmt;

use crate::error::{Error, Result};
use crate::interp;

pub use qemu_shim_interpfile::output::WRITE_CHUNK;

/// Writes `bytes` to `dest` through a temporary file in the same directory
/// renamed into place, so `dest` is at every moment the old file or the
/// whole new one. Mode 0755.
#[cfg(test)]
pub fn write_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_file_mode(dest, bytes, 0o755)
}

/// [`write_file`] with another mode.
pub fn write_file_mode(dest: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    write_file_by(dest, mode, &mut |f| {
        // In pieces of `WRITE_CHUNK`: see there.
        for (i, chunk) in bytes.chunks(WRITE_CHUNK).enumerate() {
            f.write_all_at(chunk, (i * WRITE_CHUNK) as u64)
                .map_err(|e| Error::io("cannot write", dest, &e))?;
        }
        Ok(())
    })
}

/// [`write_file_mode`] of what `write` writes into the new, empty file
/// (an interpreter file streamed by `qemu_shim_interpfile::Prepared`).
pub fn write_file_by(
    dest: &Path,
    mode: u32,
    write: &mut dyn FnMut(&fs::File) -> Result<()>,
) -> Result<()> {
    let tmp = beside(dest, "tmp");
    let written = (|| -> Result<()> {
        let io_err = |e: io::Error| Error::io("cannot write", dest, &e);
        // O_EXCL already refuses a link at the name; O_NOFOLLOW says so in
        // the call too, and O_CLOEXEC keeps it from any child.
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err)?;
        // The umask may have cleared bits of the mode asked for.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err)?;
        write(&f)?;
        f.sync_all().map_err(io_err)?;
        // Closed before it takes the path: an entry without F execs the
        // file by path, and a file still open for writing fails that exec
        // with ETXTBSY.
        drop(f);
        fs::rename(&tmp, dest).map_err(io_err)
    })();
    written.inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// A name for this run's own file beside `dest`, in `dest`'s directory (so
/// a rename or a hard link between the two never crosses file systems):
/// `.NAME.PID.KIND`, hidden, and never a name any other command reads.
/// [`remove_leftovers`] knows each kind.
pub fn beside(dest: &Path, kind: &str) -> PathBuf {
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.{kind}", std::process::id()))
}

/// What [`beside`] calls the old interpreter file kept while a run that
/// replaces it could still be undone (see [`keep_old_file`]).
pub const BACKUP_KIND: &str = "old.tmp";

/// An exclusive `flock` on a binfmt_misc table's directory, held for one
/// run of `install` or `uninstall`: two runs racing would each plan from
/// the table as it was, then trip over each other's entries (`EEXIST`, an
/// entry removed under the other's feet). Released when dropped or when the
/// process dies, so a killed run never leaves it taken. The directory
/// itself is locked, so no file is created for it; each binfmt_misc
/// instance (one per user namespace that mounts its own) has its own.
#[must_use = "the lock is released when dropped"]
pub struct TableLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

/// Takes the table's lock, waiting (and saying so on `out`) while another
/// run holds it.
pub fn lock_table(bf: &Binfmt, out: &mut dyn Write) -> Result<TableLock> {
    lock_table_noting(bf, out).map(|(lock, _)| lock)
}

/// [`lock_table`], also returning the note it wrote while it waited.
pub fn lock_table_noting(bf: &Binfmt, out: &mut dyn Write) -> Result<(TableLock, Option<String>)> {
    use nix::errno::Errno;
    use nix::fcntl::{Flock, FlockArg};
    let root = bf.root();
    let dir = fs::File::open(root).map_err(|e| Error::io("cannot open", root, &e))?;
    let lock_err = |e: Errno| Error::io("cannot lock", root, &io::Error::from(e));
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok((TableLock(l), None)),
        Err((dir, Errno::EWOULDBLOCK)) => {
            let note = format!(
                "waiting for another qemu-shim install or uninstall on {}",
                root.display()
            );
            let _ = writeln!(out, "note: {note}");
            let _ = out.flush();
            Flock::lock(dir, FlockArg::LockExclusive)
                .map(|l| (TableLock(l), Some(note)))
                .map_err(|(_, e)| lock_err(e))
        }
        Err((_, e)) => Err(lock_err(e)),
    }
}

/// Removes the files that runs killed while changing the interpreter file
/// left in `dir` (see [`beside`]): the new file being written
/// (`.qemu-shim-interp.PID.tmp`, see [`write_file`]) and the old one kept
/// for undoing (`.qemu-shim-interp.PID.old.tmp`, see [`keep_old_file`]),
/// and returns them. The run that left them is gone and cannot undo
/// anything any more: the next one installs afresh. Called with the
/// table's lock held;
/// a file whose writer is still alive (a run on another binfmt_misc
/// instance sharing the directory) is kept
/// ([`qemu_shim_registry::probe::pid_gone`]).
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", interp::FILE_NAME);
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .map(|n| n.strip_prefix("state.").unwrap_or(n))
            .and_then(|n| {
                n.strip_suffix(&format!(".{BACKUP_KIND}"))
                    .or_else(|| n.strip_suffix(".tmp"))
            })
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !qemu_shim_registry::probe::pid_gone(pid) {
            continue;
        }
        let path = e.path();
        if fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed.sort();
    removed
}

pub enum FileUndo {
    Remove(PathBuf),
    /// The old contents, and the mode to write them with.
    Restore(PathBuf, Vec<u8>, u32),
    /// The path, and the second name the old file was hard-linked to
    /// before the new file took the path.
    Relink(PathBuf, PathBuf),
}

impl FileUndo {
    /// Puts the file back; the error's text if that failed.
    pub fn undo(&self) -> std::result::Result<(), String> {
        match self {
            FileUndo::Restore(path, old, mode) => {
                write_file_mode(path, old, *mode).map_err(|e| e.to_string())
            }
            FileUndo::Remove(path) => {
                fs::remove_file(path).map_err(|e| Error::io("cannot remove", path, &e).to_string())
            }
            FileUndo::Relink(path, backup) => {
                // One rename: the path holds the new file or the old one,
                // never neither, as when the new one came.
                fs::rename(backup, path)
                    .map_err(|e| Error::io("cannot restore", path, &e).to_string())?;
                // Renaming a file over another name of the same file
                // changes nothing (POSIX): if the path somehow held the old
                // file still, its second name must go all the same.
                let _ = fs::remove_file(backup);
                Ok(())
            }
        }
    }

    /// The change stays: what undoing it needed goes. A second name left
    /// behind (this fails) is removed by the next run (see
    /// [`remove_leftovers`]).
    pub fn release(&self) {
        if let FileUndo::Relink(_, backup) = self {
            let _ = fs::remove_file(backup);
        }
    }
}

/// What undoes writing a new file to `path`, taken before the new file is
/// renamed over the old one: the old file hard-linked to a second name
/// beside it, so undoing is one rename back (the same inode: its bytes,
/// mode and owner, nothing copied; entries registered with `F` pin that
/// inode anyway, and are not affected). Where the file system refuses the
/// link (`EPERM`, `ENOTSUP`, `EMLINK`, or `EEXIST`: the name is taken, say
/// by a run in another pid namespace sharing the directory), the old
/// bytes are held in memory instead, which costs the file's size. Without
/// an old file, undoing removes the new one.
pub fn keep_old_file(path: &Path) -> Result<FileUndo> {
    let backup = beside(path, BACKUP_KIND);
    match fs::hard_link(path, &backup) {
        Ok(()) => return Ok(FileUndo::Relink(path.to_path_buf(), backup)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(FileUndo::Remove(path.to_path_buf()))
        }
        Err(_) => {}
    }
    let read = fs::read(path).and_then(|b| Ok((b, fs::metadata(path)?.permissions().mode())));
    match read {
        Ok((bytes, mode)) => Ok(FileUndo::Restore(path.to_path_buf(), bytes, mode & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileUndo::Remove(path.to_path_buf())),
        Err(e) => Err(Error::io("cannot read", path, &e)),
    }
}
