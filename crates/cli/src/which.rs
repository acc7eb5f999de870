//! `qemu-shim which FILE`: what the file is, which binfmt_misc entry the
//! kernel would run it with, and which emulator would run it (carried in
//! the interpreter file, or started by path). The answer is data
//! ([`Which`]): `--json` prints it, [`write_text`] renders it; the exit
//! code says whether anything runs the file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use qemu_shim_registry::arch::{self, Arch};
use qemu_shim_registry::binfmt;
use qemu_shim_registry::elf::{self, ElfError, Header};
use qemu_shim_registry::format::{EntryFile, BINPRM_BUF_SIZE};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::interp;
use crate::root;
use crate::select;
use crate::{EXIT_FAILED, EXIT_OK};

/// Largest program header table read to validate a file; the kernel's ELF
/// loader takes no more than one page of them.
const MAX_READ: usize = 1 << 20;

/// What the file's header says.
#[derive(Debug)]
pub enum FileKind {
    NotElf,
    /// An ELF file: its arch if qemu-shim knows it, its `e_machine` if the
    /// header could be read (the registry core's header check, the one the
    /// interpreter runs), and `Err` when the interpreter would refuse it
    /// as malformed.
    Elf {
        arch: Option<&'static Arch>,
        machine: Option<u16>,
        checked: std::result::Result<(), ElfError>,
    },
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
    let arch = arch::classify(head);
    let header = Header::parse(head);
    // The interpreter's order, so both give one verdict: the header, then
    // the arch, then the program headers.
    let checked = match header {
        Err(e) => Err(e),
        Ok(_) if arch.is_none() => Ok(()),
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
    Ok(FileKind::Elf {
        arch,
        machine: header.ok().map(|h| h.machine),
        checked,
    })
}

/// What `which` found, as data: `which --json` prints it as is, the text
/// is rendered from it ([`write_text`]).
#[derive(Debug, Serialize)]
pub struct Which {
    pub file: String,
    /// `elf` or `not_elf`.
    pub kind: &'static str,
    /// The arch the header names (qemu's name); `null` when not ELF, or a
    /// machine qemu-shim does not know.
    pub arch: Option<&'static str>,
    /// Its docker/OCI platform name (`linux/arm64`), if it has one.
    pub platform: Option<&'static str>,
    /// The header's `e_machine`, when the header could be read.
    pub machine: Option<u16>,
    /// This machine's CPU runs the arch itself.
    pub native: bool,
    /// Why the interpreter would refuse the file (its own words, the same
    /// check), if it would.
    pub refused: Option<String>,
    /// The binfmt_misc entry the kernel would hand the file to; `null`:
    /// none (see `no_entry`).
    pub entry: Option<WhichEntry>,
    /// Why no entry takes the file, when none does.
    pub no_entry: Option<String>,
    /// What would run it: `native` (the CPU, or the kernel's own loaders),
    /// `emulator` (an entry's emulator or interpreter), `nothing`.
    pub runs: &'static str,
    /// Facts worth a line of their own.
    pub notes: Vec<String>,
}

/// The entry that takes the file.
#[derive(Debug, Serialize)]
pub struct WhichEntry {
    pub name: String,
    /// Named `qemu-shim-*`.
    pub owned: bool,
    /// Flag letters as the kernel prints them.
    pub flags: String,
    pub interpreter: String,
    /// For ours: the emulator the interpreter file's table names for the
    /// arch; for others': their interpreter. `null` when there is none.
    pub emulator: Option<String>,
    /// For ours: the emulator's image is in the interpreter file (`false`:
    /// started by path, in the program's mount namespace). `null` for
    /// others' entries, or when the table cannot be read.
    pub carried: Option<bool>,
    /// For ours: the qemu CPU model the administrator chose for the arch
    /// (`-cpu`, config `cpu`); `null` for qemu's default or others' entries.
    pub cpu: Option<String>,
    /// Why ours would not run it (the interpreter's table has no emulator
    /// for the arch, it refuses the file, the file cannot be read).
    pub problem: Option<String>,
}

/// Runs `which`: the report and its exit code (0: something runs the file,
/// natively or through an entry; 1: nothing does).
pub fn which(file: &Path, binfmt_dir: Option<&Path>) -> Result<(Which, u8)> {
    let (head, kind) = examine(file)?;
    let (native, _) = select::native()?;
    let mut w = describe(file, &kind, &native);
    // What runs the file when no entry takes it: the CPU for a native
    // program, the kernel's script loader for `#!`.
    let natively = w.native && w.refused.is_none() || head.starts_with(b"#!");
    match winner(binfmt_dir, &head, &kind, &native)? {
        Err(why) => {
            w.no_entry = Some(why);
            w.runs = if natively { "native" } else { "nothing" };
        }
        Ok((name, e)) => {
            let entry = entry_report(name, &e, &w);
            // Ours refuses what it cannot run; another's interpreter is
            // taken at its word.
            w.runs = if entry.problem.is_none() {
                "emulator"
            } else {
                "nothing"
            };
            if w.native {
                w.notes.push(format!(
                    "{} matches a native program: the kernel hands it to that entry instead of running it",
                    entry.name
                ));
            }
            w.entry = Some(entry);
        }
    }
    let code = if w.runs == "nothing" {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    Ok((w, code))
}

/// The report on the file alone (what it is, which arch, whether the
/// interpreter would refuse it), before any entry is looked at.
fn describe(file: &Path, kind: &FileKind, native: &[&'static Arch]) -> Which {
    let (arch, machine, refused) = match kind {
        FileKind::NotElf => (None, None, None),
        FileKind::Elf {
            arch,
            machine,
            checked,
        } => (
            *arch,
            *machine,
            match (arch, checked) {
                (_, Err(e)) => Some(e.to_string()),
                (None, Ok(())) => Some(format!(
                    "unknown machine: ELF e_machine {} (no arch qemu-shim knows)",
                    machine.unwrap_or(0)
                )),
                (Some(_), Ok(())) => None,
            },
        ),
    };
    Which {
        file: file.display().to_string(),
        kind: if matches!(kind, FileKind::NotElf) {
            "not_elf"
        } else {
            "elf"
        },
        arch: arch.map(|a| a.name),
        platform: arch.and_then(|a| a.platform()),
        machine,
        native: arch.is_some_and(|a| select::is_in(a, native)),
        refused,
        entry: None,
        no_entry: None,
        runs: "nothing",
        notes: Vec::new(),
    }
}

/// The entry the kernel would hand the file to, or why none would.
fn winner(
    binfmt_dir: Option<&Path>,
    head: &[u8],
    kind: &FileKind,
    native: &[&'static Arch],
) -> Result<std::result::Result<(String, EntryFile), String>> {
    let bf = root::open_for_read(binfmt_dir);
    if !bf.is_mounted() {
        return Ok(Err(format!(
            "binfmt_misc is not mounted at {}",
            bf.root().display()
        )));
    }
    if !bf.status_enabled()? {
        return Ok(Err(format!(
            "binfmt_misc is disabled at {}",
            bf.root().display()
        )));
    }
    let arch = match kind {
        FileKind::Elf { arch, .. } => *arch,
        FileKind::NotElf => None,
    };
    Ok(bf.winner(head)?.ok_or_else(|| match (kind, arch) {
        (FileKind::Elf { .. }, Some(a)) if select::is_in(a, native) => {
            "the kernel runs it natively".to_string()
        }
        (FileKind::Elf { .. }, Some(a)) => format!(
            "nothing is registered for {}; running it fails with \"Exec format error\"",
            a.name
        ),
        (FileKind::Elf { .. }, None) => {
            "the kernel's own ELF loader takes it (it runs if this CPU can run it)".to_string()
        }
        (FileKind::NotElf, _) => "the kernel's own loaders take it (#! scripts run; \
                                  anything else fails with \"Exec format error\")"
            .to_string(),
    }))
}

/// The winning entry as reported: another's names its interpreter as the
/// emulator; ours is read through its interpreter file's table for the
/// file's arch (or says why the interpreter refuses the file).
fn entry_report(name: String, e: &EntryFile, w: &Which) -> WhichEntry {
    let owned = name.starts_with(binfmt::OWNED_PREFIX);
    let mut entry = WhichEntry {
        owned,
        flags: e.raw_flags.clone(),
        interpreter: e.interpreter.clone(),
        emulator: None,
        carried: None,
        cpu: None,
        problem: None,
        name,
    };
    if !owned {
        entry.emulator = Some(e.interpreter.clone());
        return entry;
    }
    let arch = w.arch.and_then(arch::by_name);
    match (arch, &w.refused) {
        (Some(a), None) => match interp::read_spec_file(Path::new(&e.interpreter)) {
            Ok(cfg) => match cfg.emulator(a.name) {
                Some(p) => {
                    entry.emulator = Some(p.display().to_string());
                    entry.carried = Some(cfg.carry && !cfg.plain.iter().any(|x| x == a.name));
                    entry.cpu = interp::cpu_model(cfg.cpu(a.name));
                }
                None => {
                    entry.problem = Some(format!(
                        "the interpreter's table has no {} emulator",
                        a.name
                    ))
                }
            },
            Err(err) => entry.problem = Some(err.to_string()),
        },
        (_, Some(why)) => entry.problem = Some(format!("the interpreter refuses it ({why})")),
        (None, None) => {
            entry.problem = Some("the interpreter refuses it (no arch it knows)".into())
        }
    }
    entry
}

/// Writes the report for people: one `key: value` line each.
pub fn write_text(out: &mut dyn Write, w: &Which) {
    let role = if w.native {
        "native: the CPU runs it"
    } else {
        "foreign"
    };
    let what = match (w.kind, w.arch, &w.refused) {
        ("not_elf", _, _) => "not an ELF program".to_string(),
        (_, None, Some(why)) => format!("{why}: qemu-shim refuses to run it"),
        (_, None, None) => "ELF, no arch qemu-shim knows".to_string(),
        (_, Some(a), None) => format!("{a} ({role})"),
        (_, Some(a), Some(why)) => format!("{a} ({role}), but {why}: qemu-shim refuses to run it"),
    };
    let _ = writeln!(out, "file:        {}", w.file);
    let _ = writeln!(out, "arch:        {what}");
    let Some(e) = &w.entry else {
        let _ = writeln!(
            out,
            "entry:       none: {}",
            w.no_entry.as_deref().unwrap_or("no entry matches it")
        );
        return;
    };
    let _ = writeln!(
        out,
        "entry:       {}{} (flags {})",
        e.name,
        if e.owned { ", qemu-shim's" } else { "" },
        if e.flags.is_empty() { "none" } else { &e.flags }
    );
    let _ = writeln!(out, "interpreter: {}", e.interpreter);
    let emulator = match (&e.emulator, e.carried, &e.problem) {
        (_, _, Some(p)) => format!("none: {p}"),
        (Some(p), Some(true), None) => format!("{p} (carried in the interpreter file)"),
        (Some(p), Some(false), None) => format!("{p} (started by path)"),
        (Some(p), None, None) if !e.owned => format!("{p} (not qemu-shim's entry)"),
        (Some(p), None, None) => p.clone(),
        (None, _, None) => "unknown".into(),
    };
    let _ = writeln!(out, "emulator:    {emulator}");
    if let Some(c) = &e.cpu {
        let _ = writeln!(out, "cpu:         {c} (qemu -cpu, from the config)");
    }
    for n in &w.notes {
        let _ = writeln!(out, "note: {n}");
    }
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
            FileKind::Elf {
                arch: Some(got),
                checked: Err(_),
                ..
            } => assert_eq!(got.name, "aarch64"),
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
            matches!(
                kind,
                FileKind::Elf {
                    arch: None,
                    machine: None,
                    checked: Err(ElfError::Truncated)
                }
            ),
            "{kind:?}"
        );
        assert_eq!(ElfError::Truncated.to_string(), "truncated ELF file");
        // A complete header of machine 0xbeef, its segments not checked:
        // the interpreter stops at the machine. The machine is the header
        // check's reading, in either byte order.
        let p = t.path().join("machine");
        for big in [false, true] {
            std::fs::write(&p, elf64_header(big, 0xbeef)).unwrap();
            let (_, kind) = examine(&p).unwrap();
            assert!(
                matches!(
                    kind,
                    FileKind::Elf {
                        arch: None,
                        machine: Some(0xbeef),
                        checked: Ok(())
                    }
                ),
                "big-endian {big}: {kind:?}"
            );
        }
    }

    /// A 64-byte ELF64 executable header (one program header) of `machine`.
    fn elf64_header(big_endian: bool, machine: u16) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // ELFCLASS64
        h[5] = if big_endian { 2 } else { 1 };
        h[6] = 1; // EV_CURRENT
        h[16..18].copy_from_slice(&u16b(2)); // ET_EXEC
        h[18..20].copy_from_slice(&u16b(machine));
        let version = if big_endian {
            1u32.to_be_bytes()
        } else {
            1u32.to_le_bytes()
        };
        h[20..24].copy_from_slice(&version);
        h[52..54].copy_from_slice(&u16b(64)); // e_ehsize
        h[54..56].copy_from_slice(&u16b(56)); // e_phentsize
        h[56..58].copy_from_slice(&u16b(1)); // e_phnum
        h
    }

    fn report(arch: Option<&'static str>, native: bool) -> Which {
        Which {
            file: "/p".into(),
            kind: "elf",
            arch,
            platform: arch.and_then(|a| arch::by_name(a)?.platform()),
            machine: Some(183),
            native,
            refused: None,
            entry: None,
            no_entry: None,
            runs: "nothing",
            notes: Vec::new(),
        }
    }

    fn render(w: &Which) -> String {
        let mut out = Vec::new();
        write_text(&mut out, w);
        String::from_utf8(out).unwrap()
    }

    /// Issue 18, item 7: the text says whether the emulator is carried,
    /// and is rendered from the same value `--json` prints.
    #[test]
    fn text_says_whether_the_emulator_is_carried() {
        let mut w = report(Some("aarch64"), false);
        w.runs = "emulator";
        w.entry = Some(WhichEntry {
            name: "qemu-shim-aarch64".into(),
            owned: true,
            flags: "POCF".into(),
            interpreter: "/i/qemu-shim-interp".into(),
            emulator: Some("/usr/bin/qemu-aarch64-static".into()),
            carried: Some(true),
            cpu: None,
            problem: None,
        });
        assert_eq!(
            render(&w),
            "file:        /p
arch:        aarch64 (foreign)
entry:       qemu-shim-aarch64, qemu-shim's (flags POCF)
interpreter: /i/qemu-shim-interp
emulator:    /usr/bin/qemu-aarch64-static (carried in the interpreter file)
"
        );
        if let Some(e) = w.entry.as_mut() {
            e.carried = Some(false);
        }
        assert!(render(&w).contains("qemu-aarch64-static (started by path)\n"));
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["entry"]["carried"], false);
        assert_eq!(v["runs"], "emulator");
        assert_eq!(v["platform"], "linux/arm64");
        assert_eq!(v["machine"], 183);
    }

    #[test]
    fn text_without_an_entry_says_why() {
        let mut w = report(Some("i386"), true);
        w.runs = "native";
        w.no_entry = Some("the kernel runs it natively".into());
        assert_eq!(
            render(&w),
            "file:        /p
arch:        i386 (native: the CPU runs it)
entry:       none: the kernel runs it natively
"
        );
        let mut w = report(None, false);
        w.refused = Some("unknown machine: ELF e_machine 48879 (no arch qemu-shim knows)".into());
        assert!(render(&w).contains(
            "arch:        unknown machine: ELF e_machine 48879 (no arch qemu-shim knows): qemu-shim refuses to run it\n"
        ));
    }

    #[test]
    fn directory_is_an_error() {
        let t = TempDir::new();
        assert!(examine(t.path()).is_err());
    }
}
