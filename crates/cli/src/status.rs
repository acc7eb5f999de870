//! `qemu-shim status`: which entry runs each arch's programs, qemu-shim's
//! entry for it and the emulator that entry starts (carried or by path,
//! its version, and whether its source changed since install); with
//! `--verbose`, every binfmt_misc entry, ours and others', in the kernel's
//! match order, and the interpreter files our entries use; with arch names,
//! everything about those arches.
//!
//! The report is data ([`Status`], built by [`build`] from the table):
//! `--json` prints it, [`write_text`] renders it for people.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use qemu_shim_registry::arch::{self, Arch};
use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::dispatch::{Carried, Convention, Entry, Table, PROT_READ};
use qemu_shim_registry::format::EntryFile;
use serde::Serialize;

use crate::analysis::{self, EntryView};
use crate::emulator;
use crate::entries::{owned_arch, pattern, STAND_IN_SUFFIX};
use crate::error::{Error, Result};
use crate::interp::{self, Spec};
use crate::report::{human_size, Table as TextTable};
use crate::sources::{self, Freshness};

/// The whole report; its JSON form is `status --json`'s output.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The platforms programs actually run for, docker spelling
    /// (`linux/arm64`, `linux/arm/v7`, …), as tonistiigi/binfmt reports
    /// them: the host's own first, then the other native ones and those
    /// whose tiny probe program just ran through the table (see
    /// [`verify_platforms`]). Arches without a platform name are left out.
    pub supported: Vec<&'static str>,
    /// The names of the enabled entries, sorted (tonistiigi/binfmt's
    /// `emulators`: what its status lists from the directory).
    pub emulators: Vec<String>,
    /// The arches this machine's CPU runs itself (qemu's names, arch-table
    /// order), as the registry's probe found them.
    pub native: Vec<&'static str>,
    pub binfmt_misc: RootStatus,
    /// Every arch an entry matches or qemu-shim has an entry for, sorted
    /// by name; with arch names given, only those.
    pub arches: Vec<ArchStatus>,
    /// Every entry, in the order the kernel tries them (newest first).
    pub entries: Vec<EntryStatus>,
    /// The interpreter files our entries use, in the order the entries
    /// first name them.
    pub interpreters: Vec<InterpreterStatus>,
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
    /// The qemu CPU model the administrator chose for this arch (config
    /// `cpu`, issue 15): qemu runs with `-cpu MODEL`; `null` for qemu's
    /// default.
    pub cpu: Option<String>,
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

/// One arch: what runs its programs, and qemu-shim's entry for it.
#[derive(Debug, Serialize)]
pub struct ArchStatus {
    /// qemu's name.
    pub arch: &'static str,
    /// Its docker/OCI platform name (`linux/arm64`, `linux/arm/v7`);
    /// `null` for arches docker has no name for.
    pub platform: Option<&'static str>,
    /// The entry the kernel runs for this arch's programs: the first
    /// enabled one that matches them; `null` when none does (then this
    /// CPU runs them if `native`, else nothing does).
    pub winner: Option<String>,
    /// This machine's CPU runs the arch itself.
    pub native: bool,
    /// The winner matches only some of the arch's programs.
    pub partial: bool,
    /// Later enabled entries that also match, never (or only partly) reached.
    pub shadowed: Vec<String>,
    /// Disabled entries for this arch (the kernel skips them).
    pub disabled: Vec<String>,
    /// qemu-shim's entry for this arch; `null` when none is registered.
    pub qemu_shim: Option<OursStatus>,
}

/// qemu-shim's entry for one arch.
#[derive(Debug, Serialize)]
pub struct OursStatus {
    /// `qemu-shim-ARCH`.
    pub entry: String,
    pub enabled: bool,
    /// Registered with F.
    pub pinned: bool,
    pub flags: String,
    pub interpreter: String,
    /// What is wrong with it, if anything (the same as its entry's).
    pub problem: Option<String>,
    /// The emulator its interpreter file starts for the arch; `null` when
    /// the file cannot be read or names none.
    pub emulator: Option<EmulatorStatus>,
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
    read: impl FnMut(&Path) -> Result<InterpreterFile>,
) -> Status {
    let views: Vec<EntryView<'_>> = entries
        .iter()
        .map(|(_, e)| EntryView {
            enabled: e.enabled,
            pattern: pattern(e),
        })
        .collect();
    let winners = analysis::winners(&views);
    let (files, order) = read_files(entries, read);
    let out = entry_statuses(entries, &views, &winners, &files);
    let arches = arch_rows(entries, &out, &winners, &files);
    let interpreters = order
        .into_iter()
        .map(|path| interpreter_status(entries, &files, path))
        .collect();
    let mut emulators: Vec<String> = entries
        .iter()
        .filter(|(_, e)| e.enabled)
        .map(|(n, _)| n.clone())
        .collect();
    emulators.sort();
    Status {
        supported: Vec::new(),
        emulators,
        native: Vec::new(),
        binfmt_misc: RootStatus {
            root: root.display().to_string(),
            mounted,
            enabled,
        },
        arches,
        entries: out,
        interpreters,
    }
}

/// Each entry as the report shows it, with the arches it runs and those
/// an earlier entry takes from it.
fn entry_statuses(
    entries: &[(String, EntryFile)],
    views: &[EntryView<'_>],
    winners: &[analysis::Winner],
    files: &Files,
) -> Vec<EntryStatus> {
    entries
        .iter()
        .enumerate()
        .map(|(i, (name, e))| {
            let arch = views[i].pattern.and_then(|p| p.arch());
            let mut s = entry_status(name, e, arch, files.get(&e.interpreter));
            s.wins = winners
                .iter()
                .filter(|w| w.entry == i)
                .map(|w| w.arch.name)
                .collect();
            s.shadowed = winners
                .iter()
                .filter(|w| w.shadowed.contains(&i))
                .map(|w| w.arch.name)
                .collect();
            s
        })
        .collect()
}

/// The interpreter file at `path` as the report shows it: its emulators,
/// each marked used when an entry of ours on this file runs its arch, or
/// why it could not be read.
fn interpreter_status(
    entries: &[(String, EntryFile)],
    files: &Files,
    path: String,
) -> InterpreterStatus {
    match files.get(&path) {
        Some(Ok(f)) => InterpreterStatus {
            emulators: f
                .emulators
                .iter()
                .cloned()
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
            problem: Some(problem.clone()),
        },
        None => InterpreterStatus {
            path,
            size: None,
            emulators: Vec::new(),
            problem: None,
        },
    }
}

/// The interpreter files read, by path.
type Files = BTreeMap<String, std::result::Result<InterpreterFile, String>>;

/// Reads each interpreter file our entries name, once; and the paths in
/// the order the entries first name them.
fn read_files(
    entries: &[(String, EntryFile)],
    mut read: impl FnMut(&Path) -> Result<InterpreterFile>,
) -> (Files, Vec<String>) {
    let mut files = Files::new();
    let mut order = Vec::new();
    for (name, e) in entries {
        if name.starts_with(binfmt::OWNED_PREFIX) && !files.contains_key(&e.interpreter) {
            order.push(e.interpreter.clone());
            let file = read(Path::new(&e.interpreter)).map_err(|err| err.to_string());
            files.insert(e.interpreter.clone(), file);
        }
    }
    (files, order)
}

/// One entry as the report shows it (its `wins` and `shadowed` left for
/// the caller): for ours, the emulator its interpreter file names and
/// what is wrong, if anything.
fn entry_status(
    name: &str,
    e: &EntryFile,
    arch: Option<&'static Arch>,
    file: Option<&std::result::Result<InterpreterFile, String>>,
) -> EntryStatus {
    let owned = name.starts_with(binfmt::OWNED_PREFIX);
    let (emulator_path, problem) = if owned {
        check_ours(name, arch, file)
    } else {
        (None, None)
    };
    EntryStatus {
        name: name.to_string(),
        arch: arch.map(|a| a.name),
        enabled: e.enabled,
        flags: e.raw_flags.clone(),
        pinned: e.raw_flags.contains('F'),
        interpreter: e.interpreter.clone(),
        owned,
        emulator: emulator_path,
        wins: Vec::new(),
        shadowed: Vec::new(),
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
    }
}

/// For one of our entries: the emulator its interpreter file names for
/// its arch, and what is wrong with it, if anything.
fn check_ours(
    name: &str,
    arch: Option<&'static Arch>,
    file: Option<&std::result::Result<InterpreterFile, String>>,
) -> (Option<String>, Option<String>) {
    let mut emulator_path = None;
    let mut problem = None;
    match (owned_arch(name), file) {
        (None, _) if name.ends_with(STAND_IN_SUFFIX) => {
            problem = Some(
                "a stand-in left by an interrupted install (`qemu-shim install` removes it)".into(),
            )
        }
        (None, _) => problem = Some("its name names no arch qemu-shim knows".into()),
        (Some(_), None) => problem = Some("its interpreter file was not read".into()),
        (Some(_), Some(Err(err))) => problem = Some(err.clone()),
        (Some(a), Some(Ok(file))) => match file.config.emulator(a.name) {
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
        if let Some(named) = owned_arch(name) {
            if arch.is_none_or(|m| !std::ptr::eq(m, named)) {
                problem = Some(format!("its magic does not match {} programs", named.name));
            }
        }
    }
    (emulator_path, problem)
}

/// One row per arch that an entry matches (enabled or not) or that
/// qemu-shim has an entry for, sorted by arch name.
fn arch_rows(
    entries: &[(String, EntryFile)],
    out: &[EntryStatus],
    winners: &[analysis::Winner],
    files: &Files,
) -> Vec<ArchStatus> {
    let mut names: Vec<&'static str> = winners.iter().map(|w| w.arch.name).collect();
    names.extend(out.iter().filter_map(|e| e.arch));
    names.extend(
        out.iter()
            .filter(|e| e.owned && !e.name.ends_with(STAND_IN_SUFFIX))
            .filter_map(|e| owned_arch(&e.name).map(|a| a.name)),
    );
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let w = winners.iter().find(|w| w.arch.name == name);
            let ours = out
                .iter()
                .find(|e| e.owned && owned_arch(&e.name).is_some_and(|a| a.name == name))
                .map(|e| OursStatus {
                    entry: e.name.clone(),
                    enabled: e.enabled,
                    pinned: e.pinned,
                    flags: e.flags.clone(),
                    interpreter: e.interpreter.clone(),
                    problem: e.problem.clone(),
                    emulator: match files.get(&e.interpreter) {
                        Some(Ok(f)) => f.emulators.iter().find(|m| m.arch == name).cloned(),
                        _ => None,
                    },
                });
            ArchStatus {
                arch: name,
                platform: arch::by_name(name).and_then(Arch::platform),
                winner: w.map(|w| entries[w.entry].0.clone()),
                native: false,
                partial: w.is_some_and(|w| w.partial),
                shadowed: w.map_or_else(Vec::new, |w| {
                    w.shadowed.iter().map(|&i| entries[i].0.clone()).collect()
                }),
                disabled: out
                    .iter()
                    .filter(|e| !e.enabled && e.arch == Some(name))
                    .map(|e| e.name.clone())
                    .collect(),
                qemu_shim: ours,
            }
        })
        .collect()
}

/// Keeps only the rows of `only` (the arches named on the command line).
pub fn keep_arches(s: &mut Status, only: &[&'static Arch]) {
    s.arches.retain(|a| only.iter().any(|o| o.name == a.arch));
    for o in only {
        if !s.arches.iter().any(|a| a.arch == o.name) {
            s.arches.push(ArchStatus {
                arch: o.name,
                platform: o.platform(),
                winner: None,
                native: s.native.contains(&o.name),
                partial: false,
                shadowed: Vec::new(),
                disabled: Vec::new(),
                qemu_shim: None,
            });
        }
    }
    s.arches.sort_by_key(|a| a.arch);
}

/// Fills `s.supported`: the native arches (the registry's probe), then
/// each arch an enabled entry wins whose probe program, executed now
/// through the kernel, exits as it was written to (the status doctor
/// checks). Probes that cannot be written or run (a read-only or noexec
/// TMPDIR) leave their arch out: status still reports the table.
pub fn verify_platforms(s: &mut Status) {
    use qemu_shim_registry::programs::{self, Kind};
    let native = crate::select::native().map(|(n, _)| n).unwrap_or_default();
    s.native = native.iter().map(|a| a.name).collect();
    for a in &mut s.arches {
        a.native = s.native.contains(&a.arch);
    }
    let mut probes = crate::doctor::Probes::default();
    let mut runs: Vec<&'static Arch> = native;
    let status_on = s.binfmt_misc.enabled == Some(true);
    for w in s.arches.iter().filter(|w| status_on && w.winner.is_some()) {
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
    s.supported = supported(&runs, qemu_shim_registry::probe::host_arch());
}

/// The platform names of `runs` as buildkit's `SupportedPlatforms` (what
/// tonistiigi/binfmt prints) orders them: the host's own first, then the
/// others (here in arch-table order); arm answers for `linux/arm/v7` and
/// `linux/arm/v6`, as there.
fn supported(runs: &[&'static Arch], host: Option<&'static Arch>) -> Vec<&'static str> {
    let host = host.filter(|h| select_has(runs, h));
    let order = host.into_iter().chain(
        arch::ARCHES
            .iter()
            .filter(|a| select_has(runs, a) && host.is_none_or(|h| !std::ptr::eq(h, *a))),
    );
    let mut out = Vec::new();
    for a in order {
        out.extend(a.platform());
        if a.platform() == Some("linux/arm/v7") {
            out.extend(a.platforms.iter().copied().filter(|p| *p == "linux/arm/v6"));
        }
    }
    out
}

fn select_has(set: &[&'static Arch], a: &Arch) -> bool {
    crate::select::is_in(a, set)
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
    let image = Image {
        file: &file,
        path,
        // Table offsets count from the load address: the lowest segment's page.
        base: loads.iter().map(|l| l.1).min().unwrap_or(0) & !0xfff,
        loads: &loads,
        size,
    };
    // What the install was made from: compared by stamp, the content read
    // only when a stamp differs.
    let record = crate::sources::read(path);
    let emulators = table
        .iter()
        .map(|e| emulator_status(&image, &record, e))
        .collect();
    Ok(InterpreterFile {
        config,
        size,
        emulators,
    })
}

/// An interpreter file opened for reading its emulators' bytes.
struct Image<'a> {
    file: &'a File,
    path: &'a Path,
    /// Its loadable segments.
    loads: &'a [Load],
    size: u64,
    /// The load address the table's offsets count from.
    base: u64,
}

/// What the install record says of the emulators, as [`sources::read`]
/// returns it.
type RecordRead = std::result::Result<Option<sources::Record>, String>;

/// One row of the interpreter's table: the emulator, its version, and
/// whether its source changed since install.
fn emulator_status(image: &Image<'_>, record: &RecordRead, e: Entry<'_>) -> EmulatorStatus {
    let emulator = String::from_utf8_lossy(e.path).into_owned();
    let needle = format!("{} version ", emulator_name(e.arch, e.path));
    let carried = matches!(e.convention, Convention::Carried(_));
    let (freshness, recorded) = match recorded_source(record, e.arch, &emulator, carried) {
        Ok(s) => sources::check(s, &needle),
        Err(why) => (Freshness::Unknown(why), None),
    };
    let version = match e.convention {
        Convention::Carried(c) => carried_version(image, &c, &needle),
        // By path: the version recorded at install while the file's
        // stamp is unchanged; read from the file only otherwise.
        _ => match (&freshness, recorded) {
            (Freshness::Unknown(_), _) | (_, None) => {
                version_of_file(Path::new(std::ffi::OsStr::from_bytes(e.path)), &needle)
            }
            (_, v) => v,
        },
    };
    EmulatorStatus {
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
        cpu: interp::cpu_model(e.cpu),
        used: true,
    }
}

/// The install record's source of `arch`'s emulator, if the record names
/// this one; else why its freshness is unknown.
fn recorded_source<'r>(
    record: &'r RecordRead,
    arch: &str,
    emulator: &str,
    carried: bool,
) -> std::result::Result<&'r sources::Source, String> {
    match record {
        Ok(Some(r)) => r
            .source(arch)
            .filter(|s| s.path == emulator && s.carried == carried)
            .ok_or_else(|| "the install record does not name this emulator".to_string()),
        Ok(None) => Err(
            "no install record (installed by an older qemu-shim; `qemu-shim install` writes one)"
                .to_string(),
        ),
        Err(why) => Err(why.clone()),
    }
}

/// A carried emulator's version, from its read-only data in the
/// interpreter file; the last read-only segment (.rodata) is searched
/// first.
fn carried_version(image: &Image<'_>, c: &Carried, needle: &str) -> Option<String> {
    c.segments()
        .iter()
        .rev()
        .filter(|s| s.prot == PROT_READ)
        .find_map(|seg| {
            let at = image.base.wrapping_add(c.image).wrapping_add(seg.offset);
            let bytes =
                segment_bytes(image.file, image.path, image.loads, image.size, at, seg.len)?;
            find_version(&bytes, needle.as_bytes())
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

/// How much of the report the text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// One row per arch, and a line for each problem.
    Summary,
    /// The summary, then every entry in match order and every interpreter
    /// file with its emulators.
    Verbose,
    /// Everything about each arch in the report (`status ARCH…`).
    Arches,
}

/// Writes the report as text for people.
pub fn write_text(out: &mut dyn Write, s: &Status, detail: Detail) {
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
    if detail == Detail::Arches {
        for a in &s.arches {
            write_arch(out, s, a);
        }
        return;
    }
    if s.entries.is_empty() {
        let _ = writeln!(out, "no entries");
        return;
    }
    write_arch_table(out, s);
    write_findings(out, s);
    if !s.supported.is_empty() {
        let _ = writeln!(
            out,
            "platforms that run here (probed): {}",
            s.supported.join(" ")
        );
    }
    if detail == Detail::Verbose {
        write_entries(out, s);
        for i in &s.interpreters {
            write_interpreter(out, i);
        }
    } else {
        let _ = writeln!(
            out,
            "(one arch in full: qemu-shim status ARCH; every entry and interpreter file: --verbose)"
        );
    }
}

/// The first word of a version (`7.2.22` of `7.2.22 (Debian …)`), or `?`.
fn short_version(v: Option<&str>) -> &str {
    v.and_then(|v| v.split_whitespace().next()).unwrap_or("?")
}

/// The entry named `name`.
fn entry<'a>(s: &'a Status, name: &str) -> Option<&'a EntryStatus> {
    s.entries.iter().find(|e| e.name == name)
}

/// What runs the arch's programs, in a few words: the winner's emulator
/// if it is ours (or ours, when nothing runs them), else the winner's
/// interpreter.
fn emulator_cell(s: &Status, a: &ArchStatus) -> String {
    let ours = a.qemu_shim.as_ref();
    let ours_wins = match (&a.winner, ours) {
        (Some(w), Some(o)) => *w == o.entry,
        (None, _) => true,
        (Some(_), None) => false,
    };
    if ours_wins {
        let cpu = |m: &EmulatorStatus| {
            m.cpu
                .as_ref()
                .map_or(String::new(), |c| format!(" -cpu {c}"))
        };
        return match ours.and_then(|o| o.emulator.as_ref()) {
            Some(m) if m.carried => {
                format!("carried {}{}", short_version(m.version.as_deref()), cpu(m))
            }
            // The path is in `status ARCH` and --verbose: the table stays narrow.
            Some(m) => format!("by path {}{}", short_version(m.version.as_deref()), cpu(m)),
            None => "-".into(),
        };
    }
    a.winner
        .as_deref()
        .and_then(|w| entry(s, w))
        .map_or_else(|| "-".into(), |e| e.interpreter.clone())
}

/// How qemu-shim's emulator compares with its source, in a word or two.
fn source_cell(a: &ArchStatus) -> String {
    match a.qemu_shim.as_ref().and_then(|o| o.emulator.as_ref()) {
        None => "-".into(),
        Some(m) => match m.source {
            "stale" => format!("STALE (now {})", short_version(m.source_version.as_deref())),
            "vanished" if m.carried => "vanished".into(),
            // A file started by path that is gone is a missing emulator,
            // a problem of the entry.
            "vanished" => "-".into(),
            other => other.into(),
        },
    }
}

/// The table a person reads first: one row per arch, by name.
fn write_arch_table(out: &mut dyn Write, s: &Status) {
    if s.arches.is_empty() {
        let _ = writeln!(out, "no entry matches programs of a known arch");
        return;
    }
    let mut t = TextTable::new(&[
        "ARCH",
        "PLATFORM",
        "QEMU-SHIM",
        "RUN BY",
        "EMULATOR",
        "SOURCE",
    ]);
    for a in &s.arches {
        let ours = match &a.qemu_shim {
            None => "-",
            Some(o) if o.problem.is_some() => "problem",
            Some(o) if !o.enabled => "disabled",
            Some(o) if !o.pinned => "not pinned",
            Some(_) => "enabled",
        };
        let mut run_by = match &a.winner {
            Some(w) => w.clone(),
            None if a.native => "the CPU (native)".into(),
            None => "nothing".into(),
        };
        if a.partial {
            run_by.push_str(" (some)");
        }
        if !a.shadowed.is_empty() {
            run_by.push_str(&format!(" over {}", a.shadowed.join(", ")));
        }
        t.row(vec![
            a.arch.to_string(),
            a.platform.unwrap_or("-").to_string(),
            ours.to_string(),
            run_by,
            emulator_cell(s, a),
            source_cell(a),
        ]);
    }
    t.write(out, "");
}

/// One line for each thing to act on or know: entries for no single arch,
/// problems, stale emulators, winners of only some programs.
fn write_findings(out: &mut dyn Write, s: &Status) {
    let others: Vec<String> = s
        .entries
        .iter()
        .filter(|e| e.arch.is_none() && !e.owned)
        .map(|e| {
            let what = match &e.extension {
                Some(x) => format!("extension .{x}"),
                None => "magic of no single arch".into(),
            };
            let on = if e.enabled { "" } else { ", disabled" };
            format!("{} ({what}{on})", e.name)
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "other entries: {}", others.join(", "));
    }
    // One line per problem, naming the entries that have it: an
    // interpreter file that cannot be read is every entry's problem.
    let mut problems: Vec<(&str, Vec<&str>)> = Vec::new();
    for e in &s.entries {
        let Some(p) = e.problem.as_deref() else {
            continue;
        };
        match problems.iter_mut().find(|(q, _)| *q == p) {
            Some((_, names)) => names.push(&e.name),
            None => problems.push((p, vec![&e.name])),
        }
    }
    for (p, names) in problems {
        let who = match names.as_slice() {
            [_, _, _, _, ..] => format!("{} entries ({}, …)", names.len(), names[0]),
            _ => names.join(", "),
        };
        let _ = writeln!(out, "problem: {who}: {p}");
    }
    for a in &s.arches {
        if let Some(m) = a.qemu_shim.as_ref().and_then(|o| o.emulator.as_ref()) {
            if m.source == "stale" {
                let _ = writeln!(out, "{}: {}", a.arch, stale_text(m));
            }
        }
    }
    for a in s.arches.iter().filter(|a| a.partial) {
        let _ = writeln!(
            out,
            "note: {} matches only some {} programs; the others go to later entries or run natively",
            a.winner.as_deref().unwrap_or_default(),
            a.arch
        );
    }
}

fn stale_text(m: &EmulatorStatus) -> String {
    format!(
        "STALE: {} is now {}; programs still run the carried {} (hint: qemu-shim install)",
        m.emulator,
        m.source_version.as_deref().unwrap_or("another version"),
        m.version.as_deref().unwrap_or("copy")
    )
}

/// Everything about one arch: what runs its programs, our entry and its
/// emulator, then every entry that matches them.
fn write_arch(out: &mut dyn Write, s: &Status, a: &ArchStatus) {
    let _ = writeln!(out);
    match a.platform {
        Some(p) => {
            let _ = writeln!(out, "{} ({p})", a.arch);
        }
        None => {
            let _ = writeln!(out, "{}", a.arch);
        }
    }
    let mut t = TextTable::default();
    t.row(vec!["run by:".into(), run_by_text(s, a)]);
    match &a.qemu_shim {
        None => t.row(vec!["qemu-shim:".into(), "no entry".into()]),
        Some(o) => ours_rows(&mut t, s, o),
    }
    t.write(out, "  ");
    write_related_entries(out, s, a);
}

/// What runs the arch's programs, as `run by:` says it.
fn run_by_text(s: &Status, a: &ArchStatus) -> String {
    let Some(w) = &a.winner else {
        return if a.native {
            "this CPU: the arch is native and no enabled entry matches it".into()
        } else {
            "nothing: no enabled entry matches its programs".into()
        };
    };
    let mut v = w.clone();
    if entry(s, w).is_some_and(|e| e.owned) {
        v.push_str(" (qemu-shim's)");
    }
    if a.partial {
        v.push_str(", for some of its programs only");
    }
    if !a.shadowed.is_empty() {
        v.push_str(&format!(", over {}", a.shadowed.join(", ")));
    }
    v
}

/// Our entry's rows: the entry, its interpreter file, the emulator it
/// starts (CPU model, source), any problem.
fn ours_rows(t: &mut TextTable, s: &Status, o: &OursStatus) {
    let mut kv = |k: &str, v: String| t.row(vec![format!("{k}:"), v]);
    kv(
        "qemu-shim",
        format!(
            "{}: {}, flags {}, {}",
            o.entry,
            if o.enabled { "enabled" } else { "disabled" },
            if o.flags.is_empty() { "none" } else { &o.flags },
            if o.pinned { "pinned" } else { "not pinned" }
        ),
    );
    let file = s.interpreters.iter().find(|i| i.path == o.interpreter);
    let size = file.and_then(|i| i.size).map(human_size);
    kv(
        "interpreter",
        match size {
            Some(size) => format!("{} ({size})", o.interpreter),
            None => o.interpreter.clone(),
        },
    );
    if let Some(m) = &o.emulator {
        let version = m.version.as_deref().unwrap_or("version unknown");
        let name = emulator_name(&m.arch, m.emulator.as_bytes());
        kv(
            "emulator",
            if m.carried {
                format!("{name} {version}, carried (from {})", m.emulator)
            } else {
                format!("{name} {version}, by path: {}", m.emulator)
            },
        );
        if let Some(c) = &m.cpu {
            kv("cpu", format!("{c} (qemu -cpu, from the config)"));
        }
        kv("source", source_text(m));
    }
    if let Some(p) = &o.problem {
        kv("problem", p.clone());
    }
}

/// The emulator against the file it was installed from, as `source:` says.
fn source_text(m: &EmulatorStatus) -> String {
    match m.source {
        "stale" => stale_text(m),
        "vanished" if m.carried => format!(
            "vanished: {} is gone; this copy gets no updates",
            m.emulator
        ),
        "unknown" => format!(
            "unknown: {}",
            m.source_note.as_deref().unwrap_or("no install record")
        ),
        other => other.to_string(),
    }
}

/// Every entry that matches the arch's programs, in the kernel's order,
/// with its role.
fn write_related_entries(out: &mut dyn Write, s: &Status, a: &ArchStatus) {
    let related: Vec<&EntryStatus> = s
        .entries
        .iter()
        .filter(|e| {
            e.arch == Some(a.arch) || e.wins.contains(&a.arch) || e.shadowed.contains(&a.arch)
        })
        .collect();
    if related.is_empty() {
        return;
    }
    let _ = writeln!(out, "  entries, in the order the kernel tries them:");
    let mut t = TextTable::default();
    for e in related {
        let role = if e.wins.contains(&a.arch) {
            "runs them"
        } else if e.shadowed.contains(&a.arch) {
            "shadowed"
        } else if !e.enabled {
            "disabled"
        } else {
            ""
        };
        t.row(vec![
            e.name.clone(),
            if e.enabled { "enabled" } else { "disabled" }.into(),
            if e.flags.is_empty() { "-" } else { &e.flags }.into(),
            e.interpreter.clone(),
            role.into(),
        ]);
    }
    t.write(out, "    ");
}

/// Every entry, in the kernel's order (`--verbose`).
fn write_entries(out: &mut dyn Write, s: &Status) {
    let n = s.entries.len();
    let _ = writeln!(
        out,
        "{n} {}, in the order the kernel tries them:",
        if n == 1 { "entry" } else { "entries" }
    );
    let mut t = TextTable::new(&["NAME", "ARCH", "ENABLED", "FLAGS", "PINNED", "INTERPRETER"]);
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
            tail.push_str(&format!(
                "  ({how} by {} for {})",
                a.winner.as_deref().unwrap_or_default(),
                a.arch
            ));
        }
        if let Some(p) = &e.problem {
            tail.push_str(&format!("  (problem: {p})"));
        }
        t.row(vec![
            e.name.clone(),
            e.arch.unwrap_or("-").into(),
            if e.enabled { "yes" } else { "no" }.into(),
            if e.flags.is_empty() { "-" } else { &e.flags }.into(),
            if e.pinned { "yes" } else { "no" }.into(),
            tail,
        ]);
    }
    t.write(out, "  ");
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
    let mut t = TextTable::default();
    for m in &i.emulators {
        let version = m.version.as_deref().unwrap_or("version unknown");
        let mut how = if m.carried {
            format!("carried  {version}  (from {})", m.emulator)
        } else {
            format!("by path  {}  {version}", m.emulator)
        };
        if let Some(c) = &m.cpu {
            how.push_str(&format!("  -cpu {c}"));
        }
        match m.source {
            "stale" => how.push_str(&format!("  {}", stale_text(m))),
            "vanished" if m.carried => {
                how.push_str("  (its source is gone: this copy gets no updates)")
            }
            _ => {}
        }
        t.row(vec![m.arch.clone(), how]);
    }
    t.write(out, "  ");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::register_line;
    use crate::error::Error;
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
                cpu: None,
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
        let arches = v["arches"].as_array().unwrap();
        assert_eq!(arches.len(), 1, "{v}");
        let a = &arches[0];
        assert_eq!(a["arch"], "aarch64");
        assert_eq!(a["platform"], "linux/arm64");
        assert_eq!(a["winner"], "qemu-shim-aarch64");
        assert_eq!(a["partial"], false);
        assert_eq!(a["shadowed"], serde_json::json!(["qemu-aarch64"]));
        assert_eq!(a["disabled"], serde_json::json!([]));
        let o = &a["qemu_shim"];
        assert_eq!(o["entry"], "qemu-shim-aarch64");
        assert_eq!(o["enabled"], true);
        assert_eq!(o["pinned"], true);
        assert_eq!(o["flags"], "POCF");
        assert_eq!(o["interpreter"], "/opt/qemu-shim/qemu-shim-interp");
        assert!(o["problem"].as_str().unwrap().contains("missing"), "{o}");
        assert_eq!(o["emulator"]["carried"], false);
        assert_eq!(o["emulator"]["source"], "current");
        // tonistiigi/binfmt's two lists come first, as its status prints
        // them: `emulators` names the enabled entries, sorted.
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(
            text.starts_with(
                r#"{"supported":[],"emulators":["qemu-aarch64","qemu-shim-aarch64"],"#
            ),
            "{text}"
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
                "cpu": null,
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
        let text = render(&s, Detail::Verbose);
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
        let text = render(&s, Detail::Summary);
        assert!(
            text.contains(
                "\nproblem: qemu-shim-aarch64: cannot read /x/qemu-shim-interp: no such file\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\naarch64  linux/arm64  problem    qemu-shim-aarch64  -         -\n"),
            "{text}"
        );
    }

    /// The text of `s` at `detail`.
    fn render(s: &Status, detail: Detail) -> String {
        let mut text = Vec::new();
        write_text(&mut text, s, detail);
        String::from_utf8(text).unwrap()
    }

    /// Issue 18, item 6: one row per arch, sorted by name (the kernel's
    /// order is newest first), saying whose entry runs it over which, the
    /// emulator and its source.
    #[test]
    fn arch_table_is_one_row_per_arch_sorted_by_name() {
        let a = arch::by_name("aarch64").unwrap();
        let ours = register_line(a, "/i/qemu-shim-interp");
        let mut theirs = register_line(a, "/usr/bin/qemu-aarch64-static");
        theirs.name = "qemu-aarch64".into();
        theirs.flags = "OCF".parse().unwrap();
        let s390x = arch::by_name("s390x").unwrap();
        let mut other = register_line(s390x, "/usr/bin/qemu-s390x-static");
        other.name = "qemu-s390x".into();
        other.flags = Default::default();
        let riscv = arch::by_name("riscv64").unwrap();
        let off = register_line(riscv, "/i/qemu-shim-interp");
        let entries = vec![
            (other.name.clone(), entry(&other, true)),
            (off.name.clone(), entry(&off, false)),
            (ours.name.clone(), entry(&ours, true)),
            (theirs.name.clone(), entry(&theirs, true)),
        ];
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| {
            let mut f = file(true, "/usr/bin/qemu-aarch64-static");
            f.config.emulators.push(("riscv64".into(), "/q/r".into()));
            let mut m = f.emulators[0].clone();
            m.arch = "riscv64".into();
            m.emulator = "/q/r".into();
            m.source = "stale";
            m.source_version = Some("7.2.99 (new)".into());
            f.emulators.push(m);
            Ok(f)
        });
        let text = render(&s, Detail::Summary);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "binfmt_misc: /b (mounted, enabled)",
                "ARCH     PLATFORM       QEMU-SHIM  RUN BY                               EMULATOR                    SOURCE",
                "aarch64  linux/arm64    enabled    qemu-shim-aarch64 over qemu-aarch64  carried 7.2.22              current",
                "riscv64  linux/riscv64  disabled   nothing                              carried 7.2.22              STALE (now 7.2.99)",
                "s390x    linux/s390x    -          qemu-s390x                           /usr/bin/qemu-s390x-static  -",
                "riscv64: STALE: /q/r is now 7.2.99 (new); programs still run the carried 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3) (hint: qemu-shim install)",
                "(one arch in full: qemu-shim status ARCH; every entry and interpreter file: --verbose)",
            ],
            "{text}"
        );
        // Nothing the table leaves out is lost: --verbose has every entry
        // and interpreter file.
        let verbose = render(&s, Detail::Verbose);
        assert!(
            verbose.starts_with(&text[..text.find("(one arch").unwrap()]),
            "{verbose}"
        );
        for want in [
            "4 entries, in the order the kernel tries them:",
            "  qemu-s390x         s390x    yes      -      no      /usr/bin/qemu-s390x-static",
            "interpreter /i/qemu-shim-interp (1234 bytes): carries 2 emulators",
            "(shadowed by qemu-shim-aarch64 for aarch64)",
        ] {
            assert!(verbose.contains(want), "{want:?} missing:\n{verbose}");
        }
    }

    #[test]
    fn one_arch_in_full() {
        let mut s = sample();
        keep_arches(
            &mut s,
            &[
                arch::by_name("s390x").unwrap(),
                arch::by_name("aarch64").unwrap(),
            ],
        );
        let names: Vec<&str> = s.arches.iter().map(|a| a.arch).collect();
        assert_eq!(names, ["aarch64", "s390x"]);
        let text = render(&s, Detail::Arches);
        assert_eq!(
            text,
            "binfmt_misc: /b (mounted, enabled)

aarch64 (linux/arm64)
  run by:       qemu-shim-aarch64 (qemu-shim's), over qemu-aarch64
  qemu-shim:    qemu-shim-aarch64: enabled, flags POCF, pinned
  interpreter:  /opt/qemu-shim/qemu-shim-interp (1234 bytes)
  emulator:     qemu-aarch64 version unknown, by path: /nonexistent/qemu-aarch64
  source:       current
  problem:      emulator /nonexistent/qemu-aarch64 is missing
  entries, in the order the kernel tries them:
    qemu-shim-aarch64  enabled  POCF  /opt/qemu-shim/qemu-shim-interp  runs them
    qemu-aarch64       enabled  OCF   /usr/bin/qemu-aarch64-static     shadowed

s390x (linux/s390x)
  run by:     nothing: no enabled entry matches its programs
  qemu-shim:  no entry
"
        );
    }

    #[test]
    fn one_problem_of_many_entries_is_one_line() {
        let lines: Vec<_> = ["aarch64", "s390x", "arm", "riscv64", "ppc64le"]
            .iter()
            .map(|n| register_line(arch::by_name(n).unwrap(), "/gone/qemu-shim-interp"))
            .collect();
        let entries: Vec<_> = lines
            .iter()
            .map(|l| (l.name.clone(), entry(l, true)))
            .collect();
        let gone = || Err(Error::new("cannot read /gone/qemu-shim-interp: gone"));
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| gone());
        let text = render(&s, Detail::Summary);
        let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem")).collect();
        assert_eq!(
            problems,
            ["problem: 5 entries (qemu-shim-aarch64, …): cannot read /gone/qemu-shim-interp: gone"],
            "{text}"
        );
        let s = build(Path::new("/b"), true, Some(true), &entries[..2], |_| gone());
        let text = render(&s, Detail::Summary);
        assert!(
            text.contains(
                "\nproblem: qemu-shim-aarch64, qemu-shim-s390x: cannot read /gone/qemu-shim-interp: gone\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_entry_without_f_is_not_pinned_in_its_row() {
        let a = arch::by_name("aarch64").unwrap();
        let mut ours = register_line(a, "/i/qemu-shim-interp");
        ours.flags = "POC".parse().unwrap();
        let entries = vec![(ours.name.clone(), entry(&ours, true))];
        let s = build(Path::new("/b"), true, Some(true), &entries, |_| {
            Ok(file(true, "/q/qemu-aarch64-static"))
        });
        let text = render(&s, Detail::Summary);
        let row: Vec<&str> = text.lines().nth(2).unwrap().split("  ").collect();
        assert!(row.contains(&"not pinned"), "{text}");
        assert_eq!(
            s.arches[0].qemu_shim.as_ref().map(|o| o.pinned),
            Some(false)
        );
    }

    #[test]
    fn supported_lists_the_host_first_then_arm_v7_and_v6() {
        let by = |n| arch::by_name(n).unwrap();
        let runs = [
            by("s390x"),
            by("arm"),
            by("x86_64"),
            by("i386"),
            by("sparc"),
        ];
        assert_eq!(
            supported(&runs, Some(by("x86_64"))),
            [
                "linux/amd64",
                "linux/386",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/s390x"
            ]
        );
        // A host whose own arch did not run is not listed for it.
        assert_eq!(
            supported(&[by("s390x")], Some(by("aarch64"))),
            ["linux/s390x"]
        );
    }

    #[test]
    fn unmounted_and_empty_tables_say_so_in_one_line() {
        let s = build(Path::new("/b"), false, None, &[], |_| unreachable!());
        assert_eq!(
            render(&s, Detail::Summary),
            "binfmt_misc: /b is not mounted; no entries can be read\n"
        );
        let s = build(Path::new("/b"), true, Some(true), &[], |_| unreachable!());
        assert_eq!(
            render(&s, Detail::Summary),
            "binfmt_misc: /b (mounted, enabled)\nno entries\n"
        );
    }

    #[test]
    fn text_names_the_shadowing_entry() {
        let text = render(&sample(), Detail::Verbose);
        let line = text
            .lines()
            .find(|l| l.contains("qemu-aarch64-static"))
            .unwrap();
        assert!(line.contains("shadowed by qemu-shim-aarch64"), "{text}");
        // The extension entry is for no arch: one line under the table.
        assert!(
            text.contains("\nother entries: python (extension .py, disabled)\n"),
            "{text}"
        );
    }
}
