//! `qemu-shim status`: every binfmt_misc entry, ours and others', in the
//! kernel's match order, which arch each is for, and which entry wins each
//! arch; the interpreter files our entries use, with the emulators each
//! carries or starts by path and their versions; as text or JSON.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use qemu_shim_registry::arch;
use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::dispatch::{Convention, Table, PROT_READ};
use qemu_shim_registry::format::EntryFile;
use serde::Serialize;

use crate::analysis::{self, EntryView};
use crate::emulator;
use crate::error::{Error, Result};
use crate::install::{owned_arch, pattern, STAND_IN_SUFFIX};
use crate::interp::{self, Spec};
use crate::sources::{self, Freshness};

/// The whole report; its JSON form is `status --json`'s output.
#[derive(Debug, Serialize)]
pub struct Status {
    pub binfmt_misc: RootStatus,
    /// Every entry, in the order the kernel tries them (newest first).
    pub entries: Vec<EntryStatus>,
    /// Every arch some enabled entry matches, in arch-table order.
    pub arches: Vec<ArchStatus>,
    /// The interpreter files our entries use, in the order the entries
    /// first name them.
    pub interpreters: Vec<InterpreterStatus>,
    /// The platforms programs actually run for, docker spelling
    /// (`linux/arm64`, `linux/arm/v7`, …), as tonistiigi/binfmt reports
    /// them: the native ones, and those whose tiny probe program just ran
    /// through the table (see [`verify_platforms`]). Arches without a
    /// platform name are left out.
    pub supported: Vec<&'static str>,
    /// Every entry's name, in match order (tonistiigi/binfmt's
    /// `emulators`).
    pub emulators: Vec<String>,
}

/// One interpreter file of ours.
#[derive(Debug, Serialize)]
pub struct InterpreterStatus {
    pub path: String,
    /// Bytes; `null` when the file cannot be read.
    pub size: Option<u64>,
    /// Its table's emulators, in table order.
    pub emulators: Vec<EmulatorStatus>,
    /// Why the file cannot be read, if it cannot.
    pub problem: Option<String>,
}

/// One emulator an interpreter file starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmulatorStatus {
    pub arch: String,
    /// Carried: where it was found at install time (a record only, the
    /// interpreter needs nothing there). By path: what the interpreter
    /// execs, in the mount namespace of each program.
    pub emulator: String,
    /// Its image is in the interpreter file.
    pub carried: bool,
    /// As `EMULATOR -version` prints it after `version `, e.g. `7.2.22
    /// (Debian 1:7.2+dfsg-7+deb12u18+b3)`: read from the carried image, or
    /// from the file at the path for one started by path; `null` when not
    /// found there.
    pub version: Option<String>,
    /// How it compares with the file it was installed from (issue 13):
    /// `current`; `stale` (carried, and the file at its path changed since
    /// install: the interpreter still runs the old copy, `qemu-shim
    /// install` refreshes it); `vanished` (the file is gone: the carried
    /// copy runs but gets no updates); `unknown` (no install record, see
    /// `source_note`).
    pub source: &'static str,
    /// When `stale`: the version of the file now at its path.
    pub source_version: Option<String>,
    /// When `unknown`: why.
    pub source_note: Option<String>,
    /// An entry of ours on this file runs this arch (else the file only
    /// holds it: an uninstall that could not rewrite the file, issue 18).
    pub used: bool,
}

/// What `status` reads from an interpreter file.
#[derive(Debug, Clone)]
pub struct InterpreterFile {
    pub config: Spec,
    pub size: u64,
    pub emulators: Vec<EmulatorStatus>,
}

#[derive(Debug, Serialize)]
pub struct RootStatus {
    pub root: String,
    pub mounted: bool,
    /// The table's own switch (`status` file); `null` when not mounted.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct EntryStatus {
    pub name: String,
    /// The one arch whose programs this entry matches (`null`: none, or several).
    pub arch: Option<&'static str>,
    pub enabled: bool,
    /// Flag letters as the kernel prints them.
    pub flags: String,
    /// Registered with F: the kernel opened the interpreter at
    /// registration, so the entry works in any mount namespace or chroot.
    pub pinned: bool,
    pub interpreter: String,
    /// Named `qemu-shim-*`: qemu-shim's to change.
    pub owned: bool,
    /// For ours: the emulator the interpreter file's table names for the arch.
    pub emulator: Option<String>,
    /// Arches for which the kernel runs this entry (first enabled match).
    pub wins: Vec<&'static str>,
    /// Arches this entry matches but an earlier entry takes first.
    pub shadowed: Vec<&'static str>,
    /// What is wrong with one of our entries, if anything.
    pub problem: Option<String>,
    /// `magic` or `extension`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub offset: Option<usize>,
    /// Hex, as the kernel prints it.
    pub magic: Option<String>,
    pub mask: Option<String>,
    pub extension: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ArchStatus {
    pub arch: &'static str,
    /// The entry the kernel runs for this arch's programs.
    pub winner: String,
    /// The winner matches only some of the arch's programs.
    pub partial: bool,
    /// Later enabled entries that also match, never (or only partly) reached.
    pub shadowed: Vec<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Builds the report from entries in match order; `read` reads an
/// interpreter file (once per path).
pub fn build(
    root: &Path,
    mounted: bool,
    enabled: Option<bool>,
    entries: &[(String, EntryFile)],
    mut read: impl FnMut(&Path) -> Result<InterpreterFile>,
) -> Status {
    let views: Vec<EntryView<'_>> = entries
        .iter()
        .map(|(_, e)| EntryView {
            enabled: e.enabled,
            pattern: pattern(e),
        })
        .collect();
    let winners = analysis::winners(&views);
    let mut files: BTreeMap<String, std::result::Result<InterpreterFile, String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();

    let mut out = Vec::new();
    for (i, (name, e)) in entries.iter().enumerate() {
        let arch = views[i].pattern.and_then(|p| p.arch());
        let owned = name.starts_with(binfmt::OWNED_PREFIX);
        let mut emulator_path = None;
        let mut problem = None;
        if owned {
            let file = files.entry(e.interpreter.clone()).or_insert_with(|| {
                order.push(e.interpreter.clone());
                read(Path::new(&e.interpreter)).map_err(|err| err.to_string())
            });
            match (owned_arch(name), file) {
                (None, _) if name.ends_with(STAND_IN_SUFFIX) => problem = Some(
                    "a stand-in left by an interrupted install (`qemu-shim install` removes it)"
                        .into(),
                ),
                (None, _) => problem = Some("its name names no arch qemu-shim knows".into()),
                (Some(_), Err(err)) => problem = Some(err.clone()),
                (Some(a), Ok(file)) => match file.config.emulator(a.name) {
                    None => {
                        problem = Some(format!(
                            "the interpreter's table has no {} emulator",
                            a.name
                        ))
                    }
                    Some(p) => {
                        emulator_path = Some(p.display().to_string());
                        // A carried emulator needs nothing at its path.
                        let carried = file.emulators.iter().any(|m| m.arch == a.name && m.carried);
                        if !carried && !emulator::is_executable_file(p) {
                            problem = Some(format!("emulator {} is missing", p.display()));
                        }
                    }
                },
            }
            if problem.is_none() {
                if let (Some(named), m) = (owned_arch(name), arch) {
                    if m.is_none_or(|m| !std::ptr::eq(m, named)) {
                        problem = Some(format!("its magic does not match {} programs", named.name));
                    }
                }
            }
        }
        out.push(EntryStatus {
            name: name.clone(),
            arch: arch.map(|a| a.name),
            enabled: e.enabled,
            flags: e.raw_flags.clone(),
            pinned: e.raw_flags.contains('F'),
            interpreter: e.interpreter.clone(),
            owned,
            emulator: emulator_path,
            wins: winners
                .iter()
                .filter(|w| w.entry == i)
                .map(|w| w.arch.name)
                .collect(),
            shadowed: winners
                .iter()
                .filter(|w| w.shadowed.contains(&i))
                .map(|w| w.arch.name)
                .collect(),
            problem,
            kind: if e.extension.is_some() {
                "extension"
            } else {
                "magic"
            },
            offset: e.offset,
            magic: e.magic.as_deref().map(hex),
            mask: e.mask.as_deref().map(hex),
            extension: e.extension.clone(),
        });
    }
    let arches = winners
        .iter()
        .map(|w| ArchStatus {
            arch: w.arch.name,
            winner: entries[w.entry].0.clone(),
            partial: w.partial,
            shadowed: w.shadowed.iter().map(|&i| entries[i].0.clone()).collect(),
        })
        .collect();
    let interpreters = order
        .into_iter()
        .map(|path| match files.remove(&path) {
            Some(Ok(f)) => InterpreterStatus {
                emulators: f
                    .emulators
                    .into_iter()
                    .map(|mut m| {
                        m.used = entries.iter().any(|(n, e)| {
                            e.interpreter == path && owned_arch(n).is_some_and(|a| a.name == m.arch)
                        });
                        m
                    })
                    .collect(),
                path,
                size: Some(f.size),
                problem: None,
            },
            Some(Err(problem)) => InterpreterStatus {
                path,
                size: None,
                emulators: Vec::new(),
                problem: Some(problem),
            },
            None => InterpreterStatus {
                path,
                size: None,
                emulators: Vec::new(),
                problem: None,
            },
        })
        .collect();
    Status {
        binfmt_misc: RootStatus {
            root: root.display().to_string(),
            mounted,
            enabled,
        },
        emulators: entries.iter().map(|(n, _)| n.clone()).collect(),
        entries: out,
        arches,
        interpreters,
        supported: Vec::new(),
    }
}

/// Fills `s.supported`: the native arches (the registry's probe), then
/// each arch an enabled entry wins whose probe program, executed now
/// through the kernel, exits as it was written to (the status doctor
/// checks). In arch-table order. Probes that cannot be written or run (a
/// read-only or noexec TMPDIR) leave their arch out: status still reports
/// the table.
pub fn verify_platforms(s: &mut Status) {
    use qemu_shim_registry::programs::{self, Kind};
    let native = crate::select::native().map(|(n, _)| n).unwrap_or_default();
    let mut probes = crate::doctor::Probes::default();
    let mut runs: Vec<&'static arch::Arch> = native;
    let status_on = s.binfmt_misc.enabled == Some(true);
    for w in s.arches.iter().filter(|_| status_on) {
        let Some(a) = arch::by_name(w.arch) else {
            continue;
        };
        if runs.iter().any(|r| std::ptr::eq(*r, a)) {
            continue;
        }
        let want = crate::doctor::PROBE_STATUS;
        let Some(program) = programs::program(a.name, Kind::Exit(want)) else {
            continue;
        };
        let ran = probes
            .write(a.name, &program)
            .and_then(|path| probes.exec(&path, None, None, want));
        if let Ok(Ok(())) = ran {
            runs.push(a);
        }
    }
    s.supported = arch::ARCHES
        .iter()
        .filter(|a| runs.iter().any(|r| std::ptr::eq(*r, *a)))
        .filter_map(|a| a.platform())
        .collect();
}

/// Longest version text kept.
const MAX_VERSION: usize = 200;
/// Largest emulator file read for the version of one started by path.
const MAX_EMULATOR_FILE: u64 = 256 << 20;

/// A loadable segment of the interpreter file: (file offset, address,
/// bytes in the file).
type Load = (u64, u64, u64);

fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| Error::io("cannot read", path, &e))?;
    Ok(buf)
}

/// Reads an interpreter file: its table, and the emulators with their
/// versions. Only the headers, the interpreter's own part and the
/// emulators' read-only data are read, not the whole file (hundreds of MB
/// with many emulators carried).
pub fn read_interpreter(path: &Path) -> Result<InterpreterFile> {
    let file = File::open(path).map_err(|e| Error::io("cannot read", path, &e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("cannot read", path, &e))?
        .len();
    let not_elf = || Error::new(format!("{}: not a 64-bit ELF file", path.display()));
    let head = interp::read_head(&file)
        .map_err(|e| Error::io("cannot read", path, &e))?
        .ok_or_else(not_elf)?;
    let loads: Vec<Load> =
        qemu_shim_interpfile::link::loadable_segments(&head).ok_or_else(not_elf)?;
    let config = interp::read_spec(&head).map_err(|e| e.context(path.display()))?;
    let region = interp::region(&head).map_err(|e| e.context(path.display()))?;
    let table = Table::parse(&head[region]).map_err(|e| {
        Error::new(format!("{}: {e}", path.display())).hint("run `qemu-shim install` again")
    })?;

    // Table offsets count from the load address: the lowest segment's page.
    let base = loads.iter().map(|l| l.1).min().unwrap_or(0) & !0xfff;

    // What the install was made from: compared by stamp, the content read
    // only when a stamp differs.
    let record = crate::sources::read(path);
    let mut emulators = Vec::new();
    for e in table.iter() {
        let emulator = String::from_utf8_lossy(e.path).into_owned();
        let name = emulator_name(e.arch, e.path);
        let needle = format!("{name} version ");
        let (carried, version) = match e.convention {
            Convention::Carried(c) => {
                // qemu's version text is in its read-only data; the last
                // read-only segment (.rodata) is searched first.
                let mut version = None;
                for seg in c.segments().iter().rev().filter(|s| s.prot == PROT_READ) {
                    let at = base.wrapping_add(c.image).wrapping_add(seg.offset);
                    let Some(bytes) = segment_bytes(&file, path, &loads, size, at, seg.len) else {
                        continue;
                    };
                    version = find_version(&bytes, needle.as_bytes());
                    if version.is_some() {
                        break;
                    }
                }
                (true, version)
            }
            _ => (false, None),
        };
        let src = match &record {
            Ok(Some(r)) => r
                .source(e.arch)
                .filter(|s| s.path == emulator && s.carried == carried)
                .ok_or_else(|| "the install record does not name this emulator".to_string()),
            Ok(None) => Err(
                "no install record (installed by an older qemu-shim; `qemu-shim install` writes one)"
                    .to_string(),
            ),
            Err(why) => Err(why.clone()),
        };
        let (freshness, recorded) = match src {
            Ok(s) => sources::check(s, &needle),
            Err(why) => (Freshness::Unknown(why), None),
        };
        let version = if carried {
            version
        } else {
            // By path: the version recorded at install while the file's
            // stamp is unchanged; read from the file only otherwise.
            match (&freshness, recorded) {
                (Freshness::Unknown(_), _) | (_, None) => {
                    version_of_file(Path::new(std::ffi::OsStr::from_bytes(e.path)), &needle)
                }
                (_, v) => v,
            }
        };
        emulators.push(EmulatorStatus {
            arch: e.arch.to_string(),
            emulator,
            carried,
            version,
            source: freshness.word(),
            source_version: match &freshness {
                Freshness::Stale(v) => v.clone(),
                _ => None,
            },
            source_note: match freshness {
                Freshness::Unknown(why) => Some(why),
                _ => None,
            },
            used: true,
        });
    }
    Ok(InterpreterFile {
        config,
        size,
        emulators,
    })
}

/// The name qemu prints before ` version`: the arch table's emulator name,
/// else the file name without `-static`.
fn emulator_name(arch_name: &str, path: &[u8]) -> String {
    if let Some(a) = arch::by_name(arch_name) {
        return a.emulator.to_string();
    }
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let base = String::from_utf8_lossy(base).into_owned();
    base.strip_suffix("-static").unwrap_or(&base).to_string()
}

/// The file bytes of `len` bytes at address `at` of the interpreter file,
/// as far as a loadable segment holds them in the file.
fn segment_bytes(
    file: &File,
    path: &Path,
    loads: &[Load],
    size: u64,
    at: u64,
    len: u64,
) -> Option<Vec<u8>> {
    let &(offset, vaddr, filesz) = loads
        .iter()
        .find(|&&(_, v, n)| v <= at && at < v.saturating_add(n))?;
    let start = offset.checked_add(at - vaddr)?;
    let end = start
        .saturating_add(len)
        .min(offset.saturating_add(filesz))
        .min(size);
    read_at(file, path, start, end.checked_sub(start)? as usize).ok()
}

/// The version an emulator file at `path` names, if it can be read.
fn version_of_file(path: &Path, needle: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_EMULATOR_FILE {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    find_version(&bytes, needle.as_bytes())
}

/// The text after the first `needle` in `hay`, up to a NUL or line end:
/// qemu's `-version` line is a literal `qemu-NAME version X (…)`.
pub fn find_version(hay: &[u8], needle: &[u8]) -> Option<String> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len()) == Some(needle) {
            let rest = &hay[at + needle.len()..];
            let end = rest
                .iter()
                .take(MAX_VERSION)
                .position(|&b| b == 0 || b == b'\n')?;
            let text = std::str::from_utf8(&rest[..end]).ok()?;
            if !text.is_empty() && text.chars().all(|c| !c.is_control()) {
                return Some(text.to_string());
            }
        }
        from = at + 1;
    }
    None
}

/// Reads the table at `bf` (never mounting it) into a report.
pub fn collect(bf: &Binfmt) -> Result<Status> {
    let mounted = bf.is_mounted();
    if !mounted {
        return Ok(build(bf.root(), false, None, &[], |_| {
            Err(Error::new("binfmt_misc is not mounted"))
        }));
    }
    let enabled = bf.status_enabled()?;
    let entries = bf.list()?;
    Ok(build(bf.root(), true, Some(enabled), &entries, |path| {
        read_interpreter(path).map_err(|e| match path.try_exists() {
            Ok(false) => unreachable_file(path),
            _ => e,
        })
    }))
}

/// What to say of an entry whose interpreter file is not at its path here:
/// the kernel opened it at registration (F) and still runs it, but nothing
/// can read it by path — typically an install from a container whose layer
/// held the file (the container is gone), or from another mount namespace.
fn unreachable_file(path: &Path) -> Error {
    Error::new(format!(
        "the interpreter file {} is not reachable by path here: the kernel keeps the file it \
         pinned (F) and the entry still runs, but it cannot be read, checked or updated \
         (installed from a container, or another mount namespace, or removed since)",
        path.display()
    ))
    .hint(
        "install again from the host, or from the installer image with the install directory \
         bind-mounted: -v /var/lib/qemu-shim:/usr/local/lib/qemu-shim",
    )
}

/// Writes the report as JSON.
pub fn write_json(out: &mut dyn Write, s: &Status) -> Result<()> {
    let text = serde_json::to_string_pretty(s)
        .map_err(|e| crate::error::Error::new(format!("cannot write JSON: {e}")))?;
    let _ = writeln!(out, "{text}");
    Ok(())
}

/// Writes the report as text for people.
pub fn write_text(out: &mut dyn Write, s: &Status) {
    let r = &s.binfmt_misc;
    if !r.mounted {
        let why = if Path::new(&r.root) == Path::new(binfmt::DEFAULT_ROOT) {
            format!(" ({})", crate::root::unmounted_why())
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "binfmt_misc: {} is not mounted; no entries can be read{why}",
            r.root
        );
        return;
    }
    let state = match r.enabled {
        Some(false) => "disabled: the kernel uses no entry",
        _ => "enabled",
    };
    let _ = writeln!(out, "binfmt_misc: {} (mounted, {state})", r.root);
    if s.entries.is_empty() {
        let _ = writeln!(out, "no entries");
        return;
    }
    write_arch_table(out, s);
    if !s.supported.is_empty() {
        let _ = writeln!(
            out,
            "platforms that run here (probed): {}",
            s.supported.join(" ")
        );
    }
    let n = s.entries.len();
    let _ = writeln!(
        out,
        "{n} {}, in the order the kernel tries them:",
        if n == 1 { "entry" } else { "entries" }
    );
    let wn = s
        .entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let wa = s
        .entries
        .iter()
        .map(|e| e.arch.map_or(1, str::len))
        .max()
        .unwrap_or(0)
        .max(4);
    let wf = s
        .entries
        .iter()
        .map(|e| e.flags.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "  {:<wn$}  {:<wa$}  ENABLED  {:<wf$}  PINNED  INTERPRETER",
        "NAME", "ARCH", "FLAGS"
    );
    for e in &s.entries {
        let mut tail = e.interpreter.clone();
        if let Some(emu) = &e.emulator {
            let carried = s.interpreters.iter().any(|i| {
                i.path == e.interpreter
                    && i.emulators
                        .iter()
                        .any(|m| Some(m.arch.as_str()) == e.arch && m.carried)
            });
            let how = if carried { "carried, from" } else { "->" };
            tail.push_str(&format!(" ({how} {emu})"));
        }
        for a in s.arches.iter().filter(|a| e.shadowed.contains(&a.arch)) {
            // A winner that matches only some of the arch's programs leaves
            // the rest to this entry.
            let how = if a.partial {
                "partly shadowed"
            } else {
                "shadowed"
            };
            tail.push_str(&format!("  ({how} by {} for {})", a.winner, a.arch));
        }
        if let Some(p) = &e.problem {
            tail.push_str(&format!("  (problem: {p})"));
        }
        let _ = writeln!(
            out,
            "  {:<wn$}  {:<wa$}  {:<7}  {:<wf$}  {:<6}  {tail}",
            e.name,
            e.arch.unwrap_or("-"),
            if e.enabled { "yes" } else { "no" },
            e.flags,
            if e.pinned { "yes" } else { "no" },
        );
    }
    for i in &s.interpreters {
        write_interpreter(out, i);
    }
    let partial: Vec<&ArchStatus> = s.arches.iter().filter(|a| a.partial).collect();
    for a in partial {
        let _ = writeln!(
            out,
            "note: {} matches only some {} programs; the others go to later entries or run natively",
            a.winner, a.arch
        );
    }
}

/// One row of the per-arch table: what runs this arch's programs.
struct ArchRow {
    arch: &'static str,
    platform: &'static str,
    winner: String,
    owner: &'static str,
    pinned: &'static str,
    emulator: String,
    version: String,
    also: String,
}

/// The table a person reads first: for each arch some enabled entry
/// matches, the entry that runs its programs, whose it is, whether it is
/// pinned, the emulator and its version, and the entries it shadows.
fn write_arch_table(out: &mut dyn Write, s: &Status) {
    if s.arches.is_empty() {
        let _ = writeln!(out, "no enabled entry runs programs of a known arch");
        return;
    }
    let rows: Vec<ArchRow> = s
        .arches
        .iter()
        .map(|a| {
            let e = s.entries.iter().find(|e| e.name == a.winner);
            let m = e.filter(|e| e.owned).and_then(|e| {
                s.interpreters
                    .iter()
                    .filter(|i| i.path == e.interpreter)
                    .flat_map(|i| &i.emulators)
                    .find(|m| m.arch == a.arch)
            });
            let emulator = match (e, m) {
                (_, Some(m)) if m.carried => {
                    format!("carried {}", emulator_name(&m.arch, m.emulator.as_bytes()))
                }
                (_, Some(m)) => m.emulator.clone(),
                (Some(e), None) => e.interpreter.clone(),
                (None, None) => "-".into(),
            };
            let mut notes = Vec::new();
            if a.partial {
                notes.push("matches only some programs".to_string());
            }
            if !a.shadowed.is_empty() {
                notes.push(format!("shadows {}", a.shadowed.join(", ")));
            }
            ArchRow {
                arch: a.arch,
                platform: arch::by_name(a.arch)
                    .and_then(|r| r.platform())
                    .unwrap_or("-"),
                winner: a.winner.clone(),
                owner: if e.is_some_and(|e| e.owned) {
                    "qemu-shim"
                } else {
                    "other"
                },
                pinned: if e.is_some_and(|e| e.pinned) {
                    "yes"
                } else {
                    "no"
                },
                emulator,
                version: m
                    .and_then(|m| m.version.clone())
                    .unwrap_or_else(|| "-".into()),
                also: if notes.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", notes.join("; "))
                },
            }
        })
        .collect();
    let w =
        |f: &dyn Fn(&ArchRow) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let wa = w(&|r| r.arch.len(), 4);
    let wp = w(&|r| r.platform.len(), 8);
    let ww = w(&|r| r.winner.len(), 6);
    let we = w(&|r| r.emulator.len(), 8);
    let wv = w(&|r| r.version.len(), 7);
    let _ = writeln!(
        out,
        "  {:<wa$}  {:<wp$}  {:<ww$}  OWNER      PINNED  {:<we$}  VERSION",
        "ARCH", "PLATFORM", "RUN BY", "EMULATOR"
    );
    for r in &rows {
        let line = format!(
            "  {:<wa$}  {:<wp$}  {:<ww$}  {:<9}  {:<6}  {:<we$}  {:<wv$}{}",
            r.arch, r.platform, r.winner, r.owner, r.pinned, r.emulator, r.version, r.also
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out);
}

/// Sizes for people: bytes below 1 MiB, else MiB with one decimal.
fn human_size(n: u64) -> String {
    if n < 1 << 20 {
        format!("{n} bytes")
    } else {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    }
}

fn write_interpreter(out: &mut dyn Write, i: &InterpreterStatus) {
    let Some(size) = i.size else {
        let _ = writeln!(
            out,
            "interpreter {}: {}",
            i.path,
            i.problem.as_deref().unwrap_or("not read")
        );
        return;
    };
    let carried = i.emulators.iter().filter(|m| m.carried).count();
    let by_path = i.emulators.len() - carried;
    let mut what = Vec::new();
    if carried > 0 {
        what.push(format!("carries {carried}"));
    }
    if by_path > 0 {
        what.push(format!("starts {by_path} by path"));
    }
    // What the file holds for no entry of ours (issue 18, item 2).
    let unused: Vec<&str> = i
        .emulators
        .iter()
        .filter(|m| !m.used)
        .map(|m| m.arch.as_str())
        .collect();
    let unused = if unused.is_empty() {
        String::new()
    } else {
        format!("; used by no entry: {}", unused.join(", "))
    };
    let _ = writeln!(
        out,
        "interpreter {} ({}): {} {}{unused}",
        i.path,
        human_size(size),
        what.join(", "),
        if i.emulators.len() == 1 {
            "emulator"
        } else {
            "emulators"
        }
    );
    let wa = i.emulators.iter().map(|m| m.arch.len()).max().unwrap_or(0);
    for m in &i.emulators {
        let version = m.version.as_deref().unwrap_or("version unknown");
        let mut how = if m.carried {
            format!("carried  {version}  (from {})", m.emulator)
        } else {
            format!("by path  {}  {version}", m.emulator)
        };
        match m.source {
            "stale" => how.push_str(&format!(
                "  STALE: {} is now {} (hint: qemu-shim install)",
                m.emulator,
                m.source_version.as_deref().unwrap_or("another version")
            )),
            "vanished" if m.carried => {
                how.push_str("  (its source is gone: this copy gets no updates)")
            }
            _ => {}
        }
        let _ = writeln!(out, "  {:<wa$}  {how}", m.arch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::install::register_line;
    use qemu_shim_registry::arch;
    use std::path::PathBuf;

    fn entry(line: &qemu_shim_registry::format::RegisterLine, enabled: bool) -> EntryFile {
        let mut e = line.expected_entry();
        e.enabled = enabled;
        e
    }

    fn sample() -> Status {
        let a = arch::by_name("aarch64").unwrap();
        let ours = register_line(a, "/opt/qemu-shim/qemu-shim-interp");
        let mut theirs = register_line(a, "/usr/bin/qemu-aarch64-static");
        theirs.name = "qemu-aarch64".into();
        theirs.flags = "OCF".parse().unwrap();
        let ext = qemu_shim_registry::format::RegisterLine {
            name: "python".into(),
            kind: qemu_shim_registry::format::Kind::Extension("py".into()),
            interpreter: "/usr/bin/python3".into(),
            flags: Default::default(),
        };
        let entries = vec![
            (ours.name.clone(), entry(&ours, true)),
            (theirs.name.clone(), entry(&theirs, true)),
            (ext.name.clone(), entry(&ext, false)),
        ];
        build(Path::new("/b"), true, Some(true), &entries, |p| {
            assert_eq!(p, Path::new("/opt/qemu-shim/qemu-shim-interp"));
            Ok(file(false, "/nonexistent/qemu-aarch64"))
        })
    }

    /// An interpreter file of 1234 bytes with one aarch64 emulator.
    fn file(carried: bool, emulator: &str) -> InterpreterFile {
        InterpreterFile {
            config: Spec {
                carry: carried,
                emulators: vec![("aarch64".into(), PathBuf::from(emulator))],
                ..Spec::default()
            },
            size: 1234,
            emulators: vec![EmulatorStatus {
                arch: "aarch64".into(),
                emulator: emulator.into(),
                carried,
                version: carried.then(|| "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)".into()),
                source: "current",
                source_version: None,
                source_note: None,
                used: true,
            }],
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        let e = &v["entries"];
        assert_eq!(e.as_array().unwrap().len(), 3);
        for (i, name) in ["qemu-shim-aarch64", "qemu-aarch64", "python"]
            .iter()
            .enumerate()
        {
            assert_eq!(e[i]["name"], *name);
            assert!(e[i]["enabled"].is_boolean());
            assert!(e[i]["owned"].is_boolean());
            assert!(e[i]["flags"].is_string());
            assert!(e[i]["interpreter"].is_string());
            assert!(e[i]["arch"].is_string() || e[i]["arch"].is_null());
        }
        assert_eq!(e[0]["arch"], "aarch64");
        assert_eq!(e[0]["owned"], true);
        assert_eq!(e[0]["flags"], "POCF");
        assert_eq!(e[0]["emulator"], "/nonexistent/qemu-aarch64");
        assert_eq!(e[0]["wins"], serde_json::json!(["aarch64"]));
        assert!(e[0]["problem"].as_str().unwrap().contains("missing"));
        assert_eq!(e[1]["owned"], false);
        assert_eq!(e[1]["flags"], "OCF");
        assert_eq!(e[1]["shadowed"], serde_json::json!(["aarch64"]));
        assert_eq!(e[1]["emulator"], serde_json::Value::Null);
        assert_eq!(e[2]["arch"], serde_json::Value::Null);
        assert_eq!(e[2]["type"], "extension");
        assert_eq!(e[2]["enabled"], false);
        assert_eq!(v["arches"][0]["arch"], "aarch64");
        assert_eq!(v["arches"][0]["winner"], "qemu-shim-aarch64");
        assert_eq!(
            v["arches"][0]["shadowed"],
            serde_json::json!(["qemu-aarch64"])
        );
        assert_eq!(v["binfmt_misc"]["mounted"], true);
        assert_eq!(e[0]["pinned"], true);
        assert_eq!(e[1]["pinned"], true);
        assert_eq!(e[2]["pinned"], false);
        let i = &v["interpreters"];
        assert_eq!(i.as_array().unwrap().len(), 1, "{i}");
        assert_eq!(i[0]["path"], "/opt/qemu-shim/qemu-shim-interp");
        assert_eq!(i[0]["size"], 1234);
        assert_eq!(i[0]["problem"], serde_json::Value::Null);
        assert_eq!(
            i[0]["emulators"],
            serde_json::json!([{
                "arch": "aarch64",
                "emulator": "/nonexistent/qemu-aarch64",
                "carried": false,
                "version": null,
                "source": "current",
                "source_version": null,
                "source_note": null,
                "used": true
            }])
        );
    }

    #[test]
    fn a_carried_emulator_needs_nothing_at_its_path() {
        let a = arch::by_name("aarch64").unwrap();
        let ours = register_line(a, "/i/qemu-shim-interp");
        let entries = vec![(ours.name.clone(), entry(&ours, true))];
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| {
            Ok(file(true, "/nonexistent/qemu-aarch64-static"))
        });
        assert_eq!(s.entries[0].problem, None);
        let mut text = Vec::new();
        write_text(&mut text, &s);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("(carried, from /nonexistent/qemu-aarch64-static)"),
            "{text}"
        );
        assert!(
            text.contains("interpreter /i/qemu-shim-interp (1234 bytes): carries 1 emulator\n"),
            "{text}"
        );
        assert!(
            text.contains("aarch64  carried  7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            "{text}"
        );
    }

    #[test]
    fn each_interpreter_file_is_read_once_and_listed_in_entry_order() {
        let a = arch::by_name("aarch64").unwrap();
        let s390x = arch::by_name("s390x").unwrap();
        let one = register_line(a, "/one/qemu-shim-interp");
        let two = register_line(s390x, "/two/qemu-shim-interp");
        let mut stand_in = register_line(a, "/one/qemu-shim-interp");
        stand_in.name = format!("qemu-shim-aarch64{STAND_IN_SUFFIX}");
        let entries = vec![
            (stand_in.name.clone(), entry(&stand_in, true)),
            (two.name.clone(), entry(&two, true)),
            (one.name.clone(), entry(&one, true)),
        ];
        let mut reads = Vec::new();
        let s = build(Path::new("/b"), true, Some(true), &entries, |p| {
            reads.push(p.to_path_buf());
            if p.starts_with("/two") {
                Err(Error::new("cannot read /two/qemu-shim-interp: gone"))
            } else {
                Ok(file(true, "/q"))
            }
        });
        assert_eq!(
            reads,
            [
                PathBuf::from("/one/qemu-shim-interp"),
                PathBuf::from("/two/qemu-shim-interp")
            ]
        );
        let paths: Vec<&str> = s.interpreters.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/one/qemu-shim-interp", "/two/qemu-shim-interp"]);
        assert_eq!(s.interpreters[1].size, None);
        assert_eq!(
            s.interpreters[1].problem.as_deref(),
            Some("cannot read /two/qemu-shim-interp: gone")
        );
        assert!(
            s.entries[0]
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("stand-in left by an interrupted install")),
            "{:?}",
            s.entries[0].problem
        );
    }

    #[test]
    fn version_is_the_text_after_the_needle_up_to_nul_or_newline() {
        let n = b"qemu-aarch64 version ";
        let hay = b"xx\0qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7)\0rest";
        assert_eq!(
            find_version(hay, n).as_deref(),
            Some("7.2.22 (Debian 1:7.2+dfsg-7)")
        );
        assert_eq!(
            find_version(b"qemu-aarch64 version 9.1\nCopyright", n).as_deref(),
            Some("9.1")
        );
        // A prefix of the needle first, then the real one.
        assert_eq!(
            find_version(b"qemu-aarch64 versio\0qemu-aarch64 version 8\0", n).as_deref(),
            Some("8")
        );
        // Another emulator's text is not this one's.
        assert_eq!(find_version(b"qemu-arm version 7.2\0", n), None);
        // Unterminated, empty, or not text: no version.
        assert_eq!(find_version(b"qemu-aarch64 version 7.2", n), None);
        assert_eq!(find_version(b"qemu-aarch64 version \0", n), None);
        assert_eq!(find_version(b"qemu-aarch64 version \x01\x02\0", n), None);
        assert_eq!(find_version(b"qemu-aarch64 version \xff\0", n), None);
        assert_eq!(find_version(b"", n), None);
    }

    #[test]
    fn emulator_name_is_the_arch_tables_or_the_file_name() {
        assert_eq!(emulator_name("aarch64", b"/x/whatever"), "qemu-aarch64");
        assert_eq!(emulator_name("nope", b"/x/qemu-foo-static"), "qemu-foo");
        assert_eq!(emulator_name("nope", b"qemu-foo"), "qemu-foo");
    }

    #[test]
    fn reading_a_file_that_is_not_an_interpreter_is_an_error_not_a_panic() {
        let t = crate::testutil::TempDir::new();
        for (name, bytes) in [
            ("empty", &b""[..]),
            ("text", b"#!/bin/sh\n"),
            ("elf32", b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0"),
            ("short", b"\x7fELF\x02\x01"),
        ] {
            let p = t.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert!(read_interpreter(&p).is_err(), "{name}");
        }
        assert!(read_interpreter(&t.path().join("missing")).is_err());
    }

    #[test]
    fn unreadable_interpreter_table_is_a_problem_not_a_failure() {
        let a = arch::by_name("aarch64").unwrap();
        let ours = register_line(a, "/x/qemu-shim-interp");
        let entries = vec![(ours.name.clone(), entry(&ours, true))];
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| {
            Err(Error::new("cannot read /x/qemu-shim-interp: no such file"))
        });
        assert_eq!(
            s.entries[0].problem.as_deref(),
            Some("cannot read /x/qemu-shim-interp: no such file")
        );
        let mut text = Vec::new();
        write_text(&mut text, &s);
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("problem: cannot read"), "{text}");
    }

    #[test]
    fn arch_table_says_who_runs_each_arch_at_a_glance() {
        let a = arch::by_name("aarch64").unwrap();
        let ours = register_line(a, "/i/qemu-shim-interp");
        let mut theirs = register_line(a, "/usr/bin/qemu-aarch64-static");
        theirs.name = "qemu-aarch64".into();
        theirs.flags = "OCF".parse().unwrap();
        let s390x = arch::by_name("s390x").unwrap();
        let mut other = register_line(s390x, "/usr/bin/qemu-s390x-static");
        other.name = "qemu-s390x".into();
        other.flags = Default::default();
        let entries = vec![
            (ours.name.clone(), entry(&ours, true)),
            (theirs.name.clone(), entry(&theirs, true)),
            (other.name.clone(), entry(&other, true)),
        ];
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| {
            Ok(file(true, "/usr/bin/qemu-aarch64-static"))
        });
        let mut text = Vec::new();
        write_text(&mut text, &s);
        let text = String::from_utf8(text).unwrap();
        let table: Vec<&str> = text.lines().skip(1).take(3).collect();
        assert_eq!(
            table,
            [
                "  ARCH     PLATFORM     RUN BY             OWNER      PINNED  EMULATOR                    VERSION",
                "  s390x    linux/s390x  qemu-s390x         other      no      /usr/bin/qemu-s390x-static  -",
                "  aarch64  linux/arm64  qemu-shim-aarch64  qemu-shim  yes     carried qemu-aarch64        7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)  (shadows qemu-aarch64)",
            ],
            "{text}"
        );
    }

    #[test]
    fn text_names_the_shadowing_entry() {
        let mut text = Vec::new();
        write_text(&mut text, &sample());
        let text = String::from_utf8(text).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("qemu-aarch64-static"))
            .unwrap();
        assert!(line.contains("shadowed by qemu-shim-aarch64"), "{text}");
    }
}
