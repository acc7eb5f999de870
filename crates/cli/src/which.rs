//! `qemu-shim which FILE`: what the file is, which binfmt_misc entry the
//! kernel would run it with, and which emulator would run it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use qemu_shim_registry::arch::{self, Arch};
use qemu_shim_registry::binfmt;
use qemu_shim_registry::elf::{self, ElfError, Header};
use qemu_shim_registry::format::BINPRM_BUF_SIZE;

use crate::select;

use crate::error::{Error, Result};
use crate::interp;
use crate::root;
use crate::{EXIT_FAILED, EXIT_OK};

/// Largest program header table read to validate a file; the kernel's ELF
/// loader takes no more than one page of them.
const MAX_READ: usize = 1 << 20;

/// What the file's header says.
#[derive(Debug)]
pub enum FileKind {
    NotElf,
    /// An ELF file of a known arch; `Err` when it would be refused as malformed.
    Elf(Option<&'static Arch>, std::result::Result<(), ElfError>),
}

/// Reads what the kernel would see of `path`: the first
/// [`BINPRM_BUF_SIZE`] bytes (zero-padded, as the kernel's buffer is), and
/// what the header's validation needs.
pub fn examine(path: &Path) -> Result<(Vec<u8>, FileKind)> {
    let mut f = File::open(path).map_err(|e| Error::io("cannot open", path, &e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io("cannot read", path, &e))?;
    if !meta.is_file() {
        return Err(Error::new(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut head = Vec::with_capacity(BINPRM_BUF_SIZE);
    (&mut f)
        .take(BINPRM_BUF_SIZE as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("cannot read", path, &e))?;
    let kind =
        classify_file(&f, &head, meta.len()).map_err(|e| Error::io("cannot read", path, &e))?;
    head.resize(BINPRM_BUF_SIZE, 0);
    Ok((head, kind))
}

fn classify_file(f: &File, head: &[u8], size: u64) -> std::io::Result<FileKind> {
    if !head.starts_with(b"\x7fELF") {
        return Ok(FileKind::NotElf);
    }
    let a = arch::classify(head);
    // The interpreter's order, so both give one verdict: the header, then
    // the arch, then the program headers.
    let checked = match Header::parse(head) {
        Err(e) => Err(e),
        Ok(_) if a.is_none() => Ok(()),
        Ok(h) => {
            let (off, len) = h.phdr_range();
            let end = usize::try_from(off).ok().and_then(|o| o.checked_add(len));
            // Read the program headers too (they need not be in the first
            // bytes); a table beyond what we read is judged by validate.
            let mut buf = head.to_vec();
            if let Some(end) = end.filter(|&e| e > buf.len() && e <= MAX_READ && (e as u64) <= size)
            {
                buf.resize(end, 0);
                f.read_exact_at(&mut buf[head.len()..], head.len() as u64)?;
            }
            elf::validate(&buf, size).map(|_| ())
        }
    };
    Ok(FileKind::Elf(a, checked))
}

/// Runs `which`; returns the exit code (0: an entry matches, 1: none).
pub fn which(file: &Path, binfmt_dir: Option<&Path>, out: &mut dyn Write) -> Result<u8> {
    let (head, kind) = examine(file)?;
    let (native, _) = select::native()?;
    let is_native = |a: &Arch| select::is_in(a, &native);
    let what = match &kind {
        FileKind::NotElf => "not an ELF program".to_string(),
        // The interpreter's words for the same files (issue 18, item 5).
        FileKind::Elf(None, Err(e)) => format!("{e}: qemu-shim refuses to run it"),
        FileKind::Elf(None, Ok(())) => {
            let machine = head.get(18..20).map_or(0, |b| {
                if head.get(5) == Some(&2) {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                }
            });
            format!("unknown machine: ELF e_machine {machine} (no arch qemu-shim knows)")
        }
        FileKind::Elf(Some(a), checked) => {
            let role = if is_native(a) {
                "native: the CPU runs it"
            } else {
                "foreign"
            };
            match checked {
                Ok(()) => format!("{} ({role})", a.name),
                Err(e) => format!("{} ({role}), but {e}: qemu-shim refuses to run it", a.name),
            }
        }
    };
    let _ = writeln!(out, "file:        {}", file.display());
    let _ = writeln!(out, "arch:        {what}");

    let bf = root::open_for_read(binfmt_dir);
    if !bf.is_mounted() {
        let _ = writeln!(
            out,
            "entry:       none (binfmt_misc is not mounted at {})",
            bf.root().display()
        );
        return Ok(EXIT_FAILED);
    }
    if !bf.status_enabled()? {
        let _ = writeln!(
            out,
            "entry:       none (binfmt_misc is disabled at {})",
            bf.root().display()
        );
        return Ok(EXIT_FAILED);
    }
    let Some((name, e)) = bf.winner(&head)? else {
        let how = match &kind {
            FileKind::Elf(Some(a), _) if is_native(a) => {
                "none: the kernel runs it natively".to_string()
            }
            FileKind::Elf(Some(a), _) => format!(
                "none: nothing is registered for {}; running it fails with \"Exec format error\"",
                a.name
            ),
            FileKind::Elf(None, _) => {
                "none: the kernel's own ELF loader takes it (it runs if this CPU can run it)"
                    .to_string()
            }
            FileKind::NotElf => "none: the kernel's own loaders take it (#! scripts run; \
                                 anything else fails with \"Exec format error\")"
                .to_string(),
        };
        let _ = writeln!(out, "entry:       {how}");
        return Ok(EXIT_FAILED);
    };
    let owned = name.starts_with(binfmt::OWNED_PREFIX);
    let _ = writeln!(
        out,
        "entry:       {name}{} (flags {})",
        if owned { ", qemu-shim's" } else { "" },
        if e.raw_flags.is_empty() {
            "none"
        } else {
            &e.raw_flags
        }
    );
    let _ = writeln!(out, "interpreter: {}", e.interpreter);
    if owned {
        let emulator = match &kind {
            FileKind::Elf(Some(a), Ok(())) => {
                match interp::read_spec_file(Path::new(&e.interpreter)) {
                    Ok(cfg) => match cfg.emulator(a.name) {
                        Some(p) => p.display().to_string(),
                        None => format!("none: the interpreter's table has no {} emulator", a.name),
                    },
                    Err(err) => format!("unknown: {err}"),
                }
            }
            FileKind::Elf(Some(_), Err(err)) => format!("none: the interpreter refuses it ({err})"),
            _ => "none: the interpreter refuses it (no arch it knows)".to_string(),
        };
        let _ = writeln!(out, "emulator:    {emulator}");
    } else {
        let _ = writeln!(
            out,
            "emulator:    {} (not qemu-shim's entry)",
            e.interpreter
        );
    }
    if let FileKind::Elf(Some(a), _) = &kind {
        if is_native(a) {
            let _ = writeln!(
                out,
                "note: {name} matches a native program: the kernel hands it to that entry instead of running it"
            );
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn script_is_not_elf() {
        let t = TempDir::new();
        let p = t.path().join("s");
        std::fs::write(&p, b"#!/bin/sh\n").unwrap();
        let (head, kind) = examine(&p).unwrap();
        assert!(matches!(kind, FileKind::NotElf), "{kind:?}");
        assert_eq!(head.len(), BINPRM_BUF_SIZE);
    }

    #[test]
    fn truncated_elf_of_a_known_arch_is_classified_but_refused() {
        let a = arch::by_name("aarch64").unwrap();
        let t = TempDir::new();
        let p = t.path().join("x");
        std::fs::write(&p, a.magic).unwrap();
        let (_, kind) = examine(&p).unwrap();
        match kind {
            FileKind::Elf(Some(got), Err(_)) => assert_eq!(got.name, "aarch64"),
            k => panic!("{k:?}"),
        }
    }

    /// Issue 18, item 5: `which` and the interpreter give one verdict on a
    /// 7-byte `\x7fELF` file (the header first), and on an unknown machine.
    #[test]
    fn verdicts_are_the_interpreters() {
        let t = TempDir::new();
        let p = t.path().join("seven");
        std::fs::write(&p, b"\x7fELF\x02\x01\x01").unwrap();
        let (_, kind) = examine(&p).unwrap();
        assert!(
            matches!(kind, FileKind::Elf(None, Err(ElfError::Truncated))),
            "{kind:?}"
        );
        assert_eq!(ElfError::Truncated.to_string(), "truncated ELF file");
        // A complete header of machine 0xbeef, its segments not checked:
        // the interpreter stops at the machine.
        let a = arch::by_name("aarch64").unwrap();
        let mut h = vec![0u8; 64];
        h[..a.magic.len()].copy_from_slice(a.magic);
        h[18..20].copy_from_slice(&0xbeefu16.to_le_bytes());
        h[20] = 1;
        h[52] = 64;
        h[54] = 56;
        h[56] = 1;
        let p = t.path().join("machine");
        std::fs::write(&p, &h).unwrap();
        let (_, kind) = examine(&p).unwrap();
        assert!(matches!(kind, FileKind::Elf(None, Ok(()))), "{kind:?}");
    }

    #[test]
    fn directory_is_an_error() {
        let t = TempDir::new();
        assert!(examine(t.path()).is_err());
    }
}
