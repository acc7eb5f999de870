//! What an install was made from: the emulator files the interpreter file
//! carries or starts, each with the `stat` stamp it had, its content hash
//! and its version, kept in a state file beside the interpreter file
//! (`qemu-shim-interp.state`), so `status` and `doctor` can tell a carried
//! copy that no longer matches its source (a security update of
//! qemu-user-static) without reading the emulators (issue 13).
//!
//! Why a file beside the interpreter and not a trailer in it: the stamps
//! (device and inode numbers, times) are facts of one machine, while the
//! interpreter file is a function of the emulators' bytes — the golden tests
//! pin it byte for byte, and an install whose emulators were reinstalled
//! unchanged (new inode, same bytes) must not rewrite hundreds of MB. The
//! state file is small, rewritten on its own, and carries its own format
//! version; the interpreter file's format is untouched. The record names
//! the interpreter file it describes (device, inode, size, mtime): a record
//! left beside another file is not believed.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::interp::{self, Stamp};

/// The state file's format version this build reads and writes.
pub const FORMAT: u32 = crate::cli::STATE_FORMAT;

/// The state file's name beside the interpreter file.
pub fn path_for(interpreter: &Path) -> PathBuf {
    let mut name = interpreter
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| interp::FILE_NAME.into());
    name.push(".state");
    interpreter.with_file_name(name)
}

/// A file's `stat` stamp as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Seconds, nanoseconds.
    pub mtime: [i64; 2],
    pub ctime: [i64; 2],
}

impl From<&Stamp> for FileStamp {
    fn from(s: &Stamp) -> FileStamp {
        FileStamp {
            dev: s.dev,
            ino: s.ino,
            size: s.len,
            mtime: [s.mtime.0, s.mtime.1],
            ctime: [s.ctime.0, s.ctime.1],
        }
    }
}

impl FileStamp {
    pub fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp::from(&Stamp::of(m))
    }

    /// The same file, unchanged, as far as a stamp of the interpreter file
    /// tells: its ctime is left out, since an install keeps the old file
    /// under a second name while it could still undo (a link changes it).
    fn same_interpreter(&self, other: &FileStamp) -> bool {
        (self.dev, self.ino, self.size, self.mtime)
            == (other.dev, other.ino, other.size, other.mtime)
    }
}

/// One emulator the interpreter file was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub arch: String,
    pub path: String,
    /// Its image is in the interpreter file (else started by path).
    pub carried: bool,
    pub stamp: FileStamp,
    /// Hex SHA-256 of the bytes carried; `None` for one started by path,
    /// which always runs what is at its path.
    pub sha256: Option<String>,
    pub version: Option<String>,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// The interpreter file this record describes.
    pub interpreter: FileStamp,
    pub emulators: Vec<Source>,
}

impl Record {
    pub fn source(&self, arch: &str) -> Option<&Source> {
        self.emulators.iter().find(|s| s.arch == arch)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The record beside `interpreter`: `Ok(None)` when there is none (an
/// install by a qemu-shim before issue 13), `Err` with why it cannot be
/// believed (unreadable, another format, or it describes another file).
pub fn read(interpreter: &Path) -> Result<Option<Record>, String> {
    let path = path_for(interpreter);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), e.kind())),
    };
    // The version first, so a newer format is named as such, not as garbage.
    #[derive(Deserialize)]
    struct Head {
        format: u32,
    }
    let head: Head = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a qemu-shim state file ({e})", path.display()))?;
    if head.format != FORMAT {
        return Err(format!(
            "{} has format {}, this qemu-shim reads format {FORMAT} (written by another release)",
            path.display(),
            head.format
        ));
    }
    let record: Record = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a qemu-shim state file ({e})", path.display()))?;
    let now = std::fs::metadata(interpreter)
        .map_err(|e| format!("cannot read {}: {}", interpreter.display(), e.kind()))?;
    if !record.interpreter.same_interpreter(&FileStamp::of(&now)) {
        return Err(format!(
            "{} describes another {} (replaced since)",
            path.display(),
            interpreter.display()
        ));
    }
    Ok(Some(record))
}

/// The source path of each emulator the record beside `interpreter`
/// names, whatever file it describes now (the interpreter file may be gone
/// or replaced): where install looks first when no --emulator-dir is given
/// (issue 18, item 1). Empty when there is no record of this format.
pub fn read_paths(interpreter: &Path) -> Vec<(String, PathBuf)> {
    let Ok(text) = std::fs::read(path_for(interpreter)) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Record>(&text) {
        Ok(r) if r.format == FORMAT => r
            .emulators
            .into_iter()
            .map(|s| (s.arch, PathBuf::from(s.path)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The state file's text for `record`.
pub fn text(record: &Record) -> crate::error::Result<String> {
    serde_json::to_string_pretty(record)
        .map_err(|e| crate::error::Error::new(format!("cannot write JSON: {e}")))
}

/// How an emulator compares with the file it was installed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The same bytes as at install (by path: whatever is there runs).
    Current,
    /// A carried copy whose source changed: the interpreter runs the old
    /// one. The version now at the path, if found.
    Stale(Option<String>),
    /// The source is gone: the carried copy still runs but gets no updates.
    Vanished,
    /// No record to compare with, or it could not be read: why.
    Unknown(String),
}

impl Freshness {
    /// The word `status --json` prints.
    pub fn word(&self) -> &'static str {
        match self {
            Freshness::Current => "current",
            Freshness::Stale(_) => "stale",
            Freshness::Vanished => "vanished",
            Freshness::Unknown(_) => "unknown",
        }
    }
}

/// Largest source file read to compare its content or find its version.
const MAX_FILE: u64 = 256 << 20;

/// Compares `src` with its file now: its stamp first, the content (hash)
/// only when the stamp differs. For one started by path, also the version
/// now at the path when the stamp differs (else the recorded one).
pub fn check(src: &Source, needle: &str) -> (Freshness, Option<String>) {
    let path = Path::new(&src.path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return (Freshness::Vanished, src.version.clone())
        }
        Err(e) => {
            return (
                Freshness::Unknown(format!("cannot read {}: {}", path.display(), e.kind())),
                src.version.clone(),
            )
        }
    };
    if FileStamp::of(&meta) == src.stamp {
        return (Freshness::Current, src.version.clone());
    }
    let bytes = if meta.is_file() && meta.len() <= MAX_FILE {
        std::fs::read(path).ok()
    } else {
        None
    };
    let now_version = bytes
        .as_deref()
        .and_then(|b| crate::status::find_version(b, needle.as_bytes()));
    if !src.carried {
        return (Freshness::Current, now_version);
    }
    let same = match (&bytes, &src.sha256) {
        (Some(b), Some(h)) => sha256_hex(b) == *h,
        _ => false,
    };
    if same {
        (Freshness::Current, src.version.clone())
    } else {
        (Freshness::Stale(now_version), src.version.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, bytes: &[u8]) -> Source {
        let path = dir.join("qemu-aarch64-static");
        std::fs::write(&path, bytes).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        Source {
            arch: "aarch64".into(),
            path: path.display().to_string(),
            carried: true,
            stamp: FileStamp::of(&m),
            sha256: Some(sha256_hex(bytes)),
            version: Some("7.2.15".into()),
        }
    }

    const NEEDLE: &str = "qemu-aarch64 version ";

    #[test]
    fn an_untouched_source_is_current() {
        let dir = crate::testutil::TempDir::new();
        let s = source(dir.path(), b"qemu-aarch64 version 7.2.15\0");
        assert_eq!(
            check(&s, NEEDLE),
            (Freshness::Current, Some("7.2.15".into()))
        );
    }

    #[test]
    fn a_source_with_new_bytes_is_stale_and_names_its_version() {
        let dir = crate::testutil::TempDir::new();
        let s = source(dir.path(), b"qemu-aarch64 version 7.2.15\0");
        // Renamed over, as dpkg installs a new version.
        let new = dir.path().join("new");
        std::fs::write(&new, b"qemu-aarch64 version 7.2.22\0").unwrap();
        std::fs::rename(&new, &s.path).unwrap();
        assert_eq!(
            check(&s, NEEDLE),
            (
                Freshness::Stale(Some("7.2.22".into())),
                Some("7.2.15".into())
            )
        );
    }

    #[test]
    fn the_same_bytes_under_a_new_stamp_are_current() {
        let dir = crate::testutil::TempDir::new();
        let s = source(dir.path(), b"qemu-aarch64 version 7.2.15\0");
        let new = dir.path().join("new");
        std::fs::write(&new, b"qemu-aarch64 version 7.2.15\0").unwrap();
        std::fs::rename(&new, &s.path).unwrap();
        assert_eq!(check(&s, NEEDLE).0, Freshness::Current);
    }

    #[test]
    fn a_removed_source_has_vanished() {
        let dir = crate::testutil::TempDir::new();
        let s = source(dir.path(), b"x");
        std::fs::remove_file(&s.path).unwrap();
        assert_eq!(check(&s, NEEDLE).0, Freshness::Vanished);
    }

    #[test]
    fn a_by_path_source_is_never_stale_and_reports_the_version_there() {
        let dir = crate::testutil::TempDir::new();
        let mut s = source(dir.path(), b"qemu-aarch64 version 7.2.15\0");
        s.carried = false;
        s.sha256 = None;
        std::fs::remove_file(&s.path).unwrap();
        std::fs::write(&s.path, b"qemu-aarch64 version 8.0\0").unwrap();
        assert_eq!(check(&s, NEEDLE), (Freshness::Current, Some("8.0".into())));
    }

    #[test]
    fn a_record_is_read_back_and_refused_for_another_file_or_format() {
        let dir = crate::testutil::TempDir::new();
        let interp = dir.path().join(interp::FILE_NAME);
        std::fs::write(&interp, b"interpreter").unwrap();
        assert_eq!(read(&interp), Ok(None));
        let rec = Record {
            format: FORMAT,
            interpreter: FileStamp::of(&std::fs::metadata(&interp).unwrap()),
            emulators: vec![source(dir.path(), b"x")],
        };
        std::fs::write(path_for(&interp), text(&rec).unwrap()).unwrap();
        assert_eq!(read(&interp), Ok(Some(rec.clone())));
        // A newer format is named, not misread.
        let written = std::fs::read_to_string(path_for(&interp)).unwrap();
        std::fs::write(
            path_for(&interp),
            written.replace("\"format\": 1", "\"format\": 2"),
        )
        .unwrap();
        let e = read(&interp).unwrap_err();
        assert!(e.contains("has format 2"), "{e}");
        // Beside a replaced interpreter file, the record is not believed.
        std::fs::write(path_for(&interp), text(&rec).unwrap()).unwrap();
        let new = dir.path().join("new");
        std::fs::write(&new, b"another interpreter").unwrap();
        std::fs::rename(&new, &interp).unwrap();
        let e = read(&interp).unwrap_err();
        assert!(e.contains("describes another"), "{e}");
    }
}
