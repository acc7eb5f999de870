//! Where a built interpreter file goes. The linker ([`crate::link`]) hands
//! an [`Output`] the file's bytes in order, from offset 0 to its end, as
//! three kinds of pieces: bytes it made, zeros, and bytes unchanged from an
//! emulator file. Nothing holds the whole file (hundreds of MB with every
//! emulator carried):
//!
//! - [`FileOut`] writes a new file with positioned writes, leaves zeros as
//!   holes (the file is sparse) and, where the file system shares extents
//!   (btrfs, XFS with reflink), clones an emulator's unchanged pages
//!   instead of copying them; plain writes where it does not.
//! - [`Compare`] tells whether an existing file holds exactly those bytes,
//!   reading it piece by piece (the no-op check of a re-install).
//! - `Vec<u8>` collects them in memory, for small files and tests.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// File system block size assumed for holes and clones. A range is only
/// cloned if both ends are aligned to it; a file system with larger blocks
/// refuses (EINVAL) and the range is written instead.
pub const PAGE: u64 = 4096;

/// Bytes per write: the kernel's fault-around window (and [`crate::ALIGN`]).
/// The page cache keeps a file in folios as large as the writes that filled
/// it (ext4 on Linux 6.18, here), and a fault in a mapping maps the whole
/// folio: written in larger pieces, every emulated process would count
/// megabytes more of the file in its RSS than once the pages come back from
/// disk (measured: docs/self-contained.md).
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Where the linker puts a file, piece by piece, in order.
pub trait Output {
    /// The file will be `len` bytes long. Called once, first.
    fn begin(&mut self, len: u64) -> Result<()> {
        let _ = len;
        Ok(())
    }
    /// The next bytes of the file.
    fn bytes(&mut self, bytes: &[u8]) -> Result<()>;
    /// The next `len` bytes are zeros.
    fn zeros(&mut self, len: u64) -> Result<()>;
    /// The next bytes are `bytes`, which were read from `src` at `src_at`
    /// (an emulator's unchanged pages): an output may take them from the
    /// file instead (share its extents).
    fn copy(&mut self, src: &File, src_at: u64, bytes: &[u8]) -> Result<()> {
        let _ = (src, src_at);
        self.bytes(bytes)
    }
    /// Whether the rest of the file is of no interest any more (a
    /// comparison that found a difference): the linker then stops early.
    fn done(&self) -> bool {
        false
    }
}

impl Output for Vec<u8> {
    fn begin(&mut self, len: u64) -> Result<()> {
        self.reserve(usize::try_from(len).unwrap_or(0));
        Ok(())
    }
    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
    fn zeros(&mut self, len: u64) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Error::new("the file is too large"))?;
        self.resize(self.len() + len, 0);
        Ok(())
    }
}

/// Writes a new, empty file: sized first (so every range not written is a
/// hole), then positioned writes of at most [`WRITE_CHUNK`] bytes, skipping
/// zero pages; an emulator's unchanged page-aligned ranges are cloned from
/// its file where the file system can (`FICLONERANGE`), else written.
pub struct FileOut<'a> {
    file: &'a File,
    /// Named in errors.
    path: &'a Path,
    at: u64,
    /// Cleared by the first refusal that says the file system (or the pair
    /// of file systems) cannot share extents at all.
    clone: bool,
    progress: &'a mut dyn FnMut(u64),
    /// What the output did, for measurements and tests.
    pub stats: Stats,
}

/// Bytes a [`FileOut`] wrote, cloned and left as holes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub written: u64,
    pub cloned: u64,
    pub holes: u64,
}

impl<'a> FileOut<'a> {
    /// An output to `file`, which must be empty and open for writing;
    /// `path` names it in errors; `progress` is told the offset reached
    /// after each piece.
    pub fn new(file: &'a File, path: &'a Path, progress: &'a mut dyn FnMut(u64)) -> FileOut<'a> {
        FileOut {
            file,
            path,
            at: 0,
            clone: true,
            progress,
            stats: Stats::default(),
        }
    }

    fn err(&self, e: &io::Error) -> Error {
        Error::io("cannot write", self.path, e)
    }

    /// Writes `bytes` at the current offset, leaving zero pages as holes.
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let mut i = 0usize;
        while i < bytes.len() {
            // The piece up to the next page boundary of the file.
            let at = self.at + i as u64;
            let n = ((PAGE - at % PAGE) as usize).min(bytes.len() - i);
            if bytes[i..i + n].iter().all(|&b| b == 0) {
                self.stats.holes += n as u64;
                i += n;
                continue;
            }
            // A run of pages that are not all zeros, up to WRITE_CHUNK.
            let start = i;
            i += n;
            while i < bytes.len() && i - start < WRITE_CHUNK {
                let n = (PAGE as usize).min(bytes.len() - i);
                if bytes[i..i + n].iter().all(|&b| b == 0) {
                    break;
                }
                i += n;
            }
            let end = i.min(start + WRITE_CHUNK);
            self.file
                .write_all_at(&bytes[start..end], self.at + start as u64)
                .map_err(|e| self.err(&e))?;
            self.stats.written += (end - start) as u64;
            i = end;
        }
        self.at += bytes.len() as u64;
        (self.progress)(self.at);
        Ok(())
    }
}

impl Output for FileOut<'_> {
    fn begin(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| self.err(&e))
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes)
    }

    fn zeros(&mut self, len: u64) -> Result<()> {
        self.at += len;
        self.stats.holes += len;
        (self.progress)(self.at);
        Ok(())
    }

    fn copy(&mut self, src: &File, src_at: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        let aligned =
            self.at.is_multiple_of(PAGE) && src_at.is_multiple_of(PAGE) && len.is_multiple_of(PAGE);
        if let (true, true, Some(n)) = (self.clone, aligned, NonZeroU64::new(len)) {
            let cloned = reflink_copy::ReflinkBlockBuilder::new(src, self.file, n)
                .from_offset(src_at)
                .to_offset(self.at)
                .reflink_block();
            match cloned {
                Ok(()) => {
                    self.at += len;
                    self.stats.cloned += len;
                    (self.progress)(self.at);
                    return Ok(());
                }
                // This range only (a file system with larger blocks, say):
                // written below.
                Err(e) if e.raw_os_error() == Some(EINVAL) => {}
                // No sharing here (ext4, tmpfs; another file system than
                // the emulator's; no such ioctl): never again for this file.
                Err(_) => self.clone = false,
            }
        }
        self.write(bytes)
    }
}

/// `EINVAL`: the same number on every Linux arch.
const EINVAL: i32 = 22;

/// Bytes per read when comparing.
const COMPARE_CHUNK: usize = 1 << 20;

/// Compares the pieces with an existing file, reading it piece by piece;
/// [`Compare::same`] after the linker is done says whether they were all
/// equal. Done (so the linker stops) at the first difference.
pub struct Compare<'a> {
    old: &'a File,
    path: &'a Path,
    at: u64,
    same: bool,
    buf: Vec<u8>,
}

impl<'a> Compare<'a> {
    /// A comparison with `old`, named `path` in errors.
    pub fn new(old: &'a File, path: &'a Path) -> Compare<'a> {
        Compare {
            old,
            path,
            at: 0,
            same: true,
            buf: Vec::new(),
        }
    }

    /// Whether every piece so far equalled the file.
    pub fn same(&self) -> bool {
        self.same
    }

    /// Compares the next `len` bytes of the file with `want(offset, got)`.
    fn next(&mut self, len: u64, want: &mut dyn FnMut(usize, &[u8]) -> bool) -> Result<()> {
        if !self.same {
            return Ok(());
        }
        self.buf.resize(COMPARE_CHUNK, 0);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(COMPARE_CHUNK as u64) as usize;
            let got = &mut self.buf[..n];
            match self.old.read_exact_at(got, self.at + done) {
                Ok(()) => {}
                // Shorter than it said: not the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.same = false;
                    return Ok(());
                }
                Err(e) => return Err(Error::io("cannot read", self.path, &e)),
            }
            if !want(done as usize, got) {
                self.same = false;
                return Ok(());
            }
            done += n as u64;
        }
        self.at += len;
        Ok(())
    }
}

impl Output for Compare<'_> {
    fn begin(&mut self, len: u64) -> Result<()> {
        let old = self
            .old
            .metadata()
            .map_err(|e| Error::io("cannot read", self.path, &e))?
            .len();
        self.same = old == len;
        Ok(())
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.next(bytes.len() as u64, &mut |at, got| {
            got == &bytes[at..at + got.len()]
        })
    }

    fn zeros(&mut self, len: u64) -> Result<()> {
        self.next(len, &mut |_, got| got.iter().all(|&b| b == 0))
    }

    fn done(&self) -> bool {
        !self.same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(out: &mut dyn Output, src: &File, image: &[u8]) {
        out.begin(image.len() as u64).unwrap();
        out.bytes(&image[..100]).unwrap();
        out.zeros(PAGE - 100).unwrap();
        out.copy(src, 0, &image[PAGE as usize..3 * PAGE as usize])
            .unwrap();
        out.zeros(2 * PAGE).unwrap();
        out.bytes(&image[5 * PAGE as usize..]).unwrap();
    }

    /// 100 bytes, zeros to the page, two pages copied, two zero pages, a
    /// page of zeros then 10 bytes inside one written piece.
    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 6 * PAGE as usize + 10];
        v[..100].fill(7);
        v[PAGE as usize..3 * PAGE as usize].fill(9);
        v[6 * PAGE as usize..].fill(3);
        v
    }

    #[test]
    fn a_file_output_writes_the_pieces_with_holes_for_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let image = image();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, &image[PAGE as usize..3 * PAGE as usize]).unwrap();
        let src = File::open(&src_path).unwrap();
        let path = dir.path().join("out");
        let f = File::create_new(&path).unwrap();
        let mut reached = 0;
        let mut progress = |at| reached = at;
        let mut out = FileOut::new(&f, &path, &mut progress);
        pieces(&mut out, &src, &image);
        let stats = out.stats;
        assert_eq!(std::fs::read(&path).unwrap(), image);
        assert_eq!(reached, image.len() as u64);
        // Two copied pages, cloned or written; the rest written only where
        // not zero: 100 bytes and the last 10.
        assert_eq!(stats.written + stats.cloned, 2 * PAGE + 110);
        assert_eq!(
            stats.holes,
            (PAGE - 100) + 2 * PAGE + PAGE,
            "zero pages are not written"
        );
    }

    #[test]
    fn a_comparison_finds_every_difference_and_stops_at_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let image = image();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, &image[PAGE as usize..3 * PAGE as usize]).unwrap();
        let src = File::open(&src_path).unwrap();
        let path = dir.path().join("old");
        let compare = |old: &[u8]| {
            std::fs::write(&path, old).unwrap();
            let f = File::open(&path).unwrap();
            let mut c = Compare::new(&f, &path);
            pieces(&mut c, &src, &image);
            c.same()
        };
        assert!(compare(&image));
        // A byte changed in each kind of piece, and in the zeros.
        for at in [
            0,
            99,
            100,
            PAGE as usize,
            4 * PAGE as usize,
            image.len() - 1,
        ] {
            let mut other = image.clone();
            other[at] ^= 1;
            assert!(!compare(&other), "byte {at}");
        }
        assert!(!compare(&image[..image.len() - 1]));
        let mut longer = image.clone();
        longer.push(0);
        assert!(!compare(&longer));
    }

    #[test]
    fn a_vec_collects_the_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let image = image();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, b"").unwrap();
        let src = File::open(&src_path).unwrap();
        let mut v = Vec::new();
        pieces(&mut v, &src, &image);
        assert_eq!(v, image);
    }
}
