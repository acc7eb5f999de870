//! `qemu-shim install`: write the configured interpreter and register one
//! binfmt_misc entry per foreign arch, idempotently, undoing this run's
//! changes if a step fails.
//!
//! The plan is computed before anything is touched: which arches, which
//! emulators, the interpreter image with its table, and for each entry
//! whether it is new, unchanged, to be re-enabled, or to be replaced. Then
//! the file is written and the entries changed, each step recorded in a
//! [`Journal`] that can undo it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::{self, Arch, ARCHES};
use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::format::{EntryFile, RegisterLine};
use serde::Serialize;

use crate::analysis;
use crate::config;
use crate::emulator::{self, Search};
use crate::entries::{entry_flags, owned_arch, pattern, STAND_IN_SUFFIX};
use crate::error::{Error, Result};
use crate::files::{
    keep_old_file, lock_table_noting, remove_leftovers, write_file_by, write_file_mode, FileUndo,
};
use crate::interp::{self, Spec};
use crate::origin;
use crate::persist;
use crate::progress::Progress;
use crate::report::size_text;
use crate::root;
use crate::select;
use crate::sources;
use crate::trust::{self, Role};

/// What `install` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Arch or platform names; empty: every foreign arch with an emulator.
    pub arches: Vec<String>,
    /// `--emulator-dir`; empty: the default search path.
    pub emulator_dirs: Vec<PathBuf>,
    pub install_dir: PathBuf,
    /// `--interpreter`; `None`: next to this program.
    pub interpreter: Option<PathBuf>,
    /// `--binfmt-dir`; `None`: the default root, mounted if needed.
    pub binfmt_dir: Option<PathBuf>,
    /// Carry the emulators in the interpreter file (else: started by path).
    pub carry: bool,
    /// Register with `F`.
    pub pin: bool,
    /// Register with `C` (only with `carry`; see [`entry_flags`]).
    pub credentials: bool,
    /// Pre-relocate the carried emulators for a fixed address.
    pub prelink: bool,
    /// Also write the binfmt.d file (see [`persist`]).
    pub persist: bool,
    /// Where the binfmt.d file goes.
    pub binfmt_d_dir: PathBuf,
    /// `--config`; `None`: [`config::DEFAULT_PATH`] if it exists.
    pub config: Option<PathBuf>,
    /// `--allow-untrusted-emulators`: take emulators and the interpreter
    /// that others could change (see [`check_source`]).
    pub allow_untrusted: bool,
    /// Show progress on stderr if it is a terminal.
    pub progress: bool,
    /// Write no text report (`--quiet`, `--json`).
    pub quiet: bool,
    /// List every entry, not only those that changed (`--verbose`).
    pub verbose: bool,
    /// Register no arch: rebuild the file for our entries already on it
    /// (`uninstall` shrinking a file, see there). `arches` is ignored.
    pub rebuild_only: bool,
}

/// What an install did: `install --json`'s report.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The interpreter file.
    pub interpreter: String,
    /// It was written by this run (else it was already as wanted).
    pub interpreter_written: bool,
    /// Our entries on that file, in arch-table order.
    pub entries: Vec<EntrySummary>,
    /// Arches that would have been registered but have no emulator.
    pub no_emulator: Vec<&'static str>,
    /// The binfmt.d file, when there is one to keep (`--persist`).
    pub binfmt_d: Option<FileSummary>,
    /// Nothing was changed.
    pub unchanged: bool,
    /// Carried emulators whose file changed since the previous install,
    /// with the versions before and after.
    pub emulators_updated: Vec<Updated>,
    /// The interpreter file's size in bytes, as installed.
    pub interpreter_size: u64,
    /// How many emulators it carries (the others are started by path).
    pub emulators_carried: usize,
    /// Files a killed run left, removed by this one.
    pub leftovers_removed: Vec<String>,
    /// The report's `note:` lines, without `note: `.
    pub notes: Vec<String>,
}

/// One entry in [`Summary`].
#[derive(Debug, Serialize)]
pub struct EntrySummary {
    pub name: String,
    pub arch: &'static str,
    /// `registered`, `unchanged`, `enabled` or `replaced`.
    pub action: &'static str,
    /// Why an entry was replaced.
    pub reason: Option<String>,
    /// Flag letters registered.
    pub flags: String,
    /// Where the emulator was found.
    pub emulator: String,
    /// Named on the command line (else an entry of ours on the same file,
    /// kept working).
    pub asked: bool,
}

/// A file in [`Summary`].
#[derive(Debug, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub written: bool,
}

/// The changes `install` makes to a binfmt_misc table: [`Binfmt`] in real
/// runs; a fake in the tests of undoing a failed run.
pub trait Table {
    fn register(&self, line: &RegisterLine) -> Result<()>;
    fn remove(&self, name: &str) -> Result<()>;
    fn set_enabled(&self, name: &str, on: bool) -> Result<()>;
}

impl Table for Binfmt {
    fn register(&self, line: &RegisterLine) -> Result<()> {
        Binfmt::register(self, line).map_err(|e| {
            // Someone registered the name since we listed the table: say
            // what is there now.
            if e.kind() == binfmt::ErrorKind::Exists {
                if let Ok(Some(other)) = self.read(&line.name) {
                    return Error::new(format!(
                        "cannot register {}: another process registered an entry of that name meanwhile (interpreter {}, flags {})",
                        line.name,
                        other.interpreter,
                        other.raw_flags
                    ))
                    .hint("run install again once the other tool is done");
                }
            }
            Error::from(e)
        })
    }
    fn remove(&self, name: &str) -> Result<()> {
        Ok(Binfmt::remove(self, name)?)
    }
    fn set_enabled(&self, name: &str, on: bool) -> Result<()> {
        Ok(Binfmt::set_enabled(self, name, on)?)
    }
}

/// What happens to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Register,
    Unchanged,
    Enable,
    /// Replace the existing entry (kept for undo); the reason is reported.
    Replace(Box<EntryFile>, String),
}

#[derive(Debug)]
struct Step {
    arch: &'static Arch,
    line: RegisterLine,
    emulator: PathBuf,
    action: Action,
    /// Not asked for: an entry of ours on the same interpreter file, kept.
    carried: bool,
}

/// Runs `install`, writing the report to `out`; returns it as data too.
///
/// Read what is there, plan, carry the plan out, report: every step below
/// reads or changes the system except [`plan`], which decides from what
/// the others read.
pub fn install(opts: &Options, out: &mut dyn Write) -> Result<Summary> {
    let mut progress = Progress::for_terminal(opts.progress);
    let req = request(opts, &mut progress)?;
    let table = open_locked(opts, out)?;
    let mut place = locate(opts, &table.bf, &req.owners)?;
    let found = find_emulators(opts, &req, &table.existing, &place)?;
    let spec = spec_for(opts, &req.cfg, &found, place.old_config.as_ref())?;
    let built = build_or_keep(&req, &spec, &found, &mut place, &mut progress)?;
    let state = read_state(opts, &place, &built, &spec)?;
    let plan = plan(&Inputs {
        emulators: &found.emulators,
        want: Want {
            dest: &place.dest_str,
            carry: opts.carry,
            by_path: &built.by_path,
            pin: opts.pin,
            credentials: opts.credentials,
            others: &found.others,
        },
        existing: &table.existing,
        file_changed: built.changed,
        persist: opts.persist,
        old_persist: state.old_persist.as_deref(),
        old_record: place.old_record.as_ref(),
        sources: &state.sources,
        dest_stamp: state.dest_stamp,
    })?;
    if plan.persist.is_some() {
        check_binfmt_d(&opts.binfmt_d_dir, &state.persist_path, &req.owners)?;
    }
    carry_out(&table.bf, &plan, &place, &built, &state, &mut progress)?;
    progress.clear();
    let leftovers = remove_leftovers(&place.dir.path);
    let sum = summarize(
        opts, &req, &table, &place, &found, &built, &state, &plan, leftovers,
    );
    if !opts.quiet {
        write_text(out, &sum, opts.verbose);
    }
    Ok(sum)
}

/// What the command line and the config ask for, and the interpreter
/// image to configure: decided before anything is touched.
struct Request {
    native: Vec<&'static Arch>,
    probe_note: Option<String>,
    /// Arches were named (else: every foreign arch with an emulator).
    explicit: bool,
    chosen: Vec<&'static Arch>,
    /// The search path, or why `--emulator-dir` cannot be searched: an
    /// error only for an arch that needs it (one the installed file
    /// carries can be kept).
    search: Result<Search>,
    /// The administrator's per-arch emulator choice, read now and written
    /// into the table: the interpreter never reads it.
    cfg: config::Config,
    /// Whose files and directories this run trusts (see `trust`): root's,
    /// and the caller's own (the same, as root).
    owners: trust::Owners,
    host: Option<&'static str>,
    /// The interpreter image and where it was read.
    source: PathBuf,
    shim: Vec<u8>,
}

fn request(opts: &Options, progress: &mut Progress) -> Result<Request> {
    progress.say("qemu-shim: probing which arches this machine runs natively");
    let (native, probe_note) = select::native()?;
    // `all` (or nothing named) is every foreign arch with an emulator.
    // Rebuilding only: no arch is named, our entries on the file stay.
    let named = if opts.rebuild_only {
        Some(Vec::new())
    } else {
        select::names(&opts.arches)?
    };
    let chosen = match &named {
        Some(names) => select::resolve_foreign(names, &native)?,
        None => select::foreign(&native),
    };
    let euid = nix::unistd::geteuid().as_raw();
    let cfg = config::load(opts.config.as_deref(), euid)?;
    let owners = trust::Owners::system().and(euid);
    let source = match &opts.interpreter {
        Some(p) => p.clone(),
        None => interp::default_source()?,
    };
    let shim = fs::read(&source).map_err(|e| {
        let err = Error::io("cannot read the interpreter", &source, &e);
        if e.kind() == io::ErrorKind::NotFound && opts.interpreter.is_none() {
            err.hint("build it with `cargo build --release --workspace`, or pass --interpreter")
        } else {
            err
        }
    })?;
    interp::region(&shim).map_err(|e| e.context(format!("interpreter {}", source.display())))?;
    check_source(opts, &owners, "the interpreter to install", &source)?;
    Ok(Request {
        native,
        probe_note,
        explicit: named.is_some(),
        chosen,
        search: Search::new(&opts.emulator_dirs),
        cfg,
        owners,
        host: qemu_shim_registry::probe::host_arch().map(|a| a.name),
        source,
        shim,
    })
}

/// The binfmt_misc table this run changes, locked until the run ends:
/// another install or uninstall on it waits, then plans from what this
/// one left.
struct LockedTable {
    bf: Binfmt,
    /// This run mounted it (see `root`).
    mounted_here: bool,
    _lock: crate::files::TableLock,
    /// Quiet, the note on waiting for the lock goes into the report.
    lock_note: Option<String>,
    /// Its entries as the run starts, in the kernel's order.
    existing: Vec<(String, EntryFile)>,
}

fn open_locked(opts: &Options, out: &mut dyn Write) -> Result<LockedTable> {
    let (bf, mounted_here) = root::open_for_change(opts.binfmt_dir.as_deref())?;
    // The note is printed while waiting; quiet, it goes to the report's
    // notes instead (`--json`).
    let (lock, lock_note) = if opts.quiet {
        lock_table_noting(&bf, &mut io::sink())?
    } else {
        (lock_table_noting(&bf, out)?.0, None)
    };
    let existing = bf.list()?;
    Ok(LockedTable {
        bf,
        mounted_here,
        _lock: lock,
        lock_note,
        existing,
    })
}

/// Where the interpreter file goes, and what is installed there now.
struct Place {
    dir: InstallDir,
    dest: PathBuf,
    dest_str: String,
    /// The installed file, open; never read whole (hundreds of MB with
    /// carried emulators, on top of the new image): its table comes from
    /// its headers, and it is compared with the new image piece by piece.
    /// Taken (closed) once compared.
    old_file: Option<fs::File>,
    old_config: Option<Spec>,
    installed: origin::Installed,
    /// Its install record, read before the file may change (a record
    /// names the file it describes); its bytes too, to put back if this
    /// run fails.
    record_path: PathBuf,
    old_record: Option<sources::Record>,
    old_record_bytes: Option<Vec<u8>>,
}

fn locate(opts: &Options, bf: &Binfmt, owners: &trust::Owners) -> Result<Place> {
    let dir = plan_install_dir(&opts.install_dir)?;
    preflight(bf, &dir)?;
    let dest = dir.path.join(interp::FILE_NAME);
    check_install_dir(&dir, &dest, owners)?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| {
            Error::new(format!(
                "install directory {} is not UTF-8",
                dir.path.display()
            ))
        })?
        .to_owned();
    let old_file = open_installed(&dest)?;
    let old_config = old_file.as_ref().and_then(installed_config);
    let installed = origin::Installed::read(&dest, old_file.as_ref());
    Ok(Place {
        record_path: sources::path_for(&dest),
        old_record: sources::read(&dest).ok().flatten(),
        old_record_bytes: fs::read(sources::path_for(&dest)).ok(),
        dir,
        dest,
        dest_str,
        old_file,
        old_config,
        installed,
    })
}

/// The emulators of the new table.
struct Found {
    /// Arch and emulator, in arch-table order (for a kept arch, the path
    /// the installed file's table names).
    emulators: Vec<(&'static Arch, PathBuf)>,
    /// Arches re-registered from the installed file's own copy.
    kept: Vec<&'static Arch>,
    /// Arches whose emulator takes the plain command line (box64, FEX).
    plain: Vec<String>,
    /// Arches that would have been registered but have no emulator.
    missing: Vec<&'static Arch>,
    /// Entries of ours on the same file, not asked for: they stay, so the
    /// new table must still name their emulators.
    others: Vec<&'static Arch>,
}

/// Finds the emulators for the arches asked for, then for our entries on
/// the same file that were not asked for; checks that those that will run
/// as root are trusted.
fn find_emulators(
    opts: &Options,
    req: &Request,
    existing: &[(String, EntryFile)],
    place: &Place,
) -> Result<Found> {
    let finder = origin::Finder {
        cfg: &req.cfg,
        search: &req.search,
        given: !opts.emulator_dirs.is_empty(),
        installed: &place.installed,
        host: req.host,
    };
    let mut r = Resolved::default();
    let missing = find_asked(opts, req, &finder, &mut r)?;
    let others = find_others(existing, &place.dest_str, &finder, &mut r)?;
    let Resolved {
        mut found,
        kept,
        plain,
    } = r;
    for (a, p) in found.iter().filter(|(a, _)| !select::is_in(a, &kept)) {
        check_source(
            opts,
            &req.owners,
            &format!("the emulator for {}", a.name),
            p,
        )?;
    }
    found.sort_by_key(|(a, _)| ARCHES.iter().position(|r| std::ptr::eq(r, *a)));
    Ok(Found {
        emulators: found,
        kept,
        plain,
        missing,
        others,
    })
}

/// Finds the emulators of the arches asked for into `r`; returns those
/// without one. An error when an arch named on the command line has none,
/// or when no arch has one (unless only rebuilding).
fn find_asked(
    opts: &Options,
    req: &Request,
    finder: &origin::Finder<'_>,
    r: &mut Resolved,
) -> Result<Vec<&'static Arch>> {
    let mut missing: Vec<&'static Arch> = Vec::new();
    for a in &req.chosen {
        r.take(a, finder.find(a, false)?, &mut missing);
    }
    if req.explicit && !missing.is_empty() {
        return Err(no_emulator(
            req.search.as_ref().map_err(Error::clone)?,
            &missing,
        ));
    }
    if r.found.is_empty() && !opts.rebuild_only {
        let search = req.search.as_ref().map_err(Error::clone)?;
        return Err(Error::new(format!(
            "no emulator found for any foreign arch: looked for qemu-<arch>-static or qemu-<arch> in {}",
            dirs_text(search)
        ))
        .hint(search.hint()));
    }
    Ok(missing)
}

/// Finds into `r` the emulators of our entries on `dest_str` that were not
/// asked for (they stay, so the new table must name them); returns their
/// arches. An error when one has no emulator known, or when nothing is
/// left to build.
fn find_others(
    existing: &[(String, EntryFile)],
    dest_str: &str,
    finder: &origin::Finder<'_>,
    r: &mut Resolved,
) -> Result<Vec<&'static Arch>> {
    let mut others = Vec::new();
    let mut unknown = Vec::new();
    for (name, entry) in existing {
        let Some(a) = owned_arch(name) else { continue };
        if entry.interpreter != dest_str || r.found.iter().any(|(f, _)| std::ptr::eq(*f, a)) {
            continue;
        }
        others.push(a);
        r.take(a, finder.find(a, true)?, &mut unknown);
    }
    if let Some(a) = unknown.first() {
        return Err(Error::new(format!(
            "{} uses {dest_str}, but no emulator for {} is known to keep it working",
            binfmt::entry_name(a.name),
            a.name
        ))
        .hint(format!(
            "`qemu-shim uninstall {}`, or pass --emulator-dir",
            a.name
        )));
    }
    if r.found.is_empty() {
        return Err(Error::new(format!(
            "no entry of qemu-shim uses {dest_str}: nothing to rebuild"
        )));
    }
    Ok(others)
}

/// The interpreter file's table for `found`, its CPU models checked.
fn spec_for(
    opts: &Options,
    cfg: &config::Config,
    found: &Found,
    old_config: Option<&Spec>,
) -> Result<Spec> {
    let cpu = cpu_models(cfg, &found.emulators)?;
    // A pre-relocated file keeps its address across installs, so an
    // install that changes nothing else writes the same file.
    let prelink_base = if opts.carry && opts.prelink {
        match old_config.and_then(|c| c.prelink_base) {
            Some(b) => Some(b),
            None => Some(interp::random_base()?),
        }
    } else {
        None
    };
    Ok(Spec {
        target: interp::target(),
        flags: interp::flags_for_running_kernel(),
        carry: opts.carry,
        prelink_base,
        emulators: found
            .emulators
            .iter()
            .map(|(a, p)| (a.name.to_string(), p.clone()))
            .collect(),
        plain: found.plain.clone(),
        cpu,
    })
}

/// Builds the file for `spec` and compares it with the installed one; or,
/// when an arch was found nowhere but carried in the installed file, keeps
/// that file as it is (if it is exactly what this run would build).
fn build_or_keep<'a>(
    req: &'a Request,
    spec: &'a Spec,
    found: &Found,
    place: &mut Place,
    progress: &mut Progress,
) -> Result<Built<'a>> {
    let old_file = place.old_file.take();
    if found.kept.is_empty() {
        let (p, seen, changed) = build_and_compare(
            &req.shim,
            &req.source,
            spec,
            &place.dest,
            old_file,
            progress,
        )?;
        return Ok(Built {
            by_path: p.by_path.clone(),
            prepared: Some(p),
            seen,
            changed,
        });
    }
    drop(old_file);
    check_keep(
        spec,
        &place.installed,
        place.old_record.as_ref(),
        &found.kept,
        &place.dest,
    )?;
    let by_path = spec
        .emulators
        .iter()
        .filter(|(a, _)| !place.installed.carries(a))
        .map(|(a, _)| (a.clone(), "not carried in the installed file".to_string()))
        .collect();
    Ok(Built {
        prepared: None,
        by_path,
        seen: Vec::new(),
        changed: false,
    })
}

/// The rest of what the plan is made from: the binfmt.d file and the
/// install record as they are, and the record's emulators as they are now.
struct State {
    persist_path: PathBuf,
    old_persist: Option<String>,
    /// What each emulator is as this run reads it, for the install record.
    sources: Vec<sources::Source>,
    /// The installed file's stamp; `None` when it is rewritten.
    dest_stamp: Option<sources::FileStamp>,
}

fn read_state(opts: &Options, place: &Place, built: &Built<'_>, spec: &Spec) -> Result<State> {
    let persist_path = persist::path_in(&opts.binfmt_d_dir);
    // Without --persist, a file that cannot be read is none of our business.
    let old_persist = match persist::read(&persist_path) {
        Ok(t) => t,
        Err(e) if opts.persist => return Err(e),
        Err(_) => None,
    };
    // A kept file keeps its record (`check_keep` found it true).
    let sources = match (&place.old_record, built.prepared.is_none()) {
        (Some(r), true) => r.emulators.clone(),
        _ => record_sources(
            spec,
            &built.by_path,
            opts.carry,
            &built.seen,
            place.old_record.as_ref(),
        )?,
    };
    let dest_stamp = if built.changed {
        None
    } else {
        Some(stamp_of(&place.dest)?)
    };
    Ok(State {
        persist_path,
        old_persist,
        sources,
        dest_stamp,
    })
}

/// The stamp of the file at `path`, for the install record.
fn stamp_of(path: &Path) -> Result<sources::FileStamp> {
    fs::metadata(path)
        .map(|m| sources::FileStamp::of(&m))
        .map_err(|e| Error::io("cannot read", path, &e))
}

/// What [`plan`] decides from: everything the other steps read.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    emulators: &'a [(&'static Arch, PathBuf)],
    want: Want<'a>,
    /// The table as it is, in the kernel's order.
    existing: &'a [(String, EntryFile)],
    /// The new interpreter file differs from the installed one (or there
    /// is none).
    file_changed: bool,
    /// `--persist`.
    persist: bool,
    /// The binfmt.d file as it is.
    old_persist: Option<&'a str>,
    /// The install record as it is.
    old_record: Option<&'a sources::Record>,
    /// The record's emulators as this run reads them.
    sources: &'a [sources::Source],
    /// The installed file's stamp; `None` when it is rewritten.
    dest_stamp: Option<sources::FileStamp>,
}

/// What install changes: the whole of it, decided before anything is
/// touched.
#[derive(Debug)]
struct Plan {
    /// Write the interpreter file (else it is already as wanted, or kept).
    write_file: bool,
    /// One per emulator, in table order.
    steps: Vec<Step>,
    /// Stand-ins left by an upgrade that was killed midway: removed.
    strays: Vec<(String, EntryFile)>,
    /// The binfmt.d file when there is one to keep: its text, and whether
    /// that differs from the file's.
    persist: Option<(String, bool)>,
    /// Rewrite the install record (with the file, or alone when only a
    /// stamp moved: a package reinstalled with the same bytes).
    write_record: bool,
    /// Neither the file, the entries nor the binfmt.d file change.
    unchanged: bool,
}

/// Plans the whole install from its inputs: a pure function, tested
/// without a kernel. `Err` for a line binfmt_misc would refuse.
fn plan(i: &Inputs<'_>) -> Result<Plan> {
    let EntryPlan { steps, strays } =
        plan_entries(i.emulators, &i.want, i.existing, i.file_changed)?;
    // The binfmt.d file: with --persist, or when one already registers
    // entries on this interpreter file (kept in step, or the next boot
    // would bring back entries this run replaced).
    let keep_in_step = i
        .old_persist
        .is_some_and(|t| persist::names_interpreter(t, i.want.dest));
    let persist = (i.persist || keep_in_step).then(|| {
        let lines: Vec<RegisterLine> = steps.iter().map(|s| s.line.clone()).collect();
        let text = persist::render(&lines);
        let changed = Some(text.as_str()) != i.old_persist;
        (text, changed)
    });
    let write_record = match i.dest_stamp {
        None => true,
        Some(stamp) => i.old_record != Some(&record(stamp, i.sources)),
    };
    let unchanged = !i.file_changed
        && !persist.as_ref().is_some_and(|(_, changed)| *changed)
        && strays.is_empty()
        && steps.iter().all(|s| s.action == Action::Unchanged);
    Ok(Plan {
        write_file: i.file_changed,
        steps,
        strays,
        persist,
        write_record,
        unchanged,
    })
}

/// The install record of a file stamped `interpreter`.
fn record(interpreter: sources::FileStamp, emulators: &[sources::Source]) -> sources::Record {
    sources::Record {
        format: sources::FORMAT,
        interpreter,
        emulators: emulators.to_vec(),
    }
}

/// Carries `plan` out: the file, the entries, the record, the binfmt.d
/// file (last: it names only entries that are in place), each step in the
/// journal; any failure undoes the run's changes.
fn carry_out(
    bf: &Binfmt,
    plan: &Plan,
    place: &Place,
    built: &Built<'_>,
    state: &State,
    progress: &mut Progress,
) -> Result<()> {
    if plan.unchanged && !plan.write_record {
        return Ok(());
    }
    let mut j = Journal::new(bf);
    j.progress = std::mem::take(progress);
    let done = apply(
        &mut j,
        &place.dir.missing,
        &place.dest,
        built,
        plan.write_file,
        &plan.steps,
        &plan.strays,
    )
    .and_then(|()| {
        if plan.write_record {
            write_record(&mut j, place, state)
        } else {
            Ok(())
        }
    })
    .and_then(|()| match &plan.persist {
        Some((text, true)) => write_persist(
            &mut j,
            &state.persist_path,
            text,
            state.old_persist.as_deref(),
        ),
        _ => Ok(()),
    });
    if let Err(e) = done {
        return Err(j.rollback(e));
    }
    j.commit();
    Ok(())
}

/// The report as data, from what the run read, planned and did.
#[allow(clippy::too_many_arguments)]
fn summarize(
    opts: &Options,
    req: &Request,
    table: &LockedTable,
    place: &Place,
    found: &Found,
    built: &Built<'_>,
    state: &State,
    plan: &Plan,
    leftovers: Vec<PathBuf>,
) -> Summary {
    // Bytes outside what is carried (say, a section not loaded) may change
    // without changing the file: only a rewritten file updated anything.
    let emulators_updated = if plan.write_file {
        updated_emulators(place.old_record.as_ref(), &state.sources)
    } else {
        Vec::new()
    };
    let n = found.emulators.len();
    Summary {
        interpreter_size: fs::metadata(&place.dest).map(|m| m.len()).unwrap_or(0),
        emulators_carried: n - built.by_path.len().min(n),
        interpreter: place.dest_str.clone(),
        interpreter_written: plan.write_file,
        entries: plan.steps.iter().map(entry_summary).collect(),
        no_emulator: found.missing.iter().map(|a| a.name).collect(),
        binfmt_d: plan.persist.as_ref().map(|(_, changed)| FileSummary {
            path: state.persist_path.display().to_string(),
            written: *changed,
        }),
        unchanged: plan.unchanged,
        emulators_updated,
        leftovers_removed: leftovers.iter().map(|p| p.display().to_string()).collect(),
        notes: notes(opts, req, table, place, found, built, plan),
    }
}

fn entry_summary(s: &Step) -> EntrySummary {
    let (action, reason) = match &s.action {
        Action::Register => ("registered", None),
        Action::Unchanged => ("unchanged", None),
        Action::Enable => ("enabled", None),
        Action::Replace(_, why) => ("replaced", Some(why.clone())),
    };
    EntrySummary {
        name: s.line.name.clone(),
        arch: s.arch.name,
        action,
        reason,
        flags: s.line.flags.to_string(),
        emulator: s.emulator.display().to_string(),
        asked: !s.carried,
    }
}

/// The report's notes: what the user should know beyond what changed.
fn notes(
    opts: &Options,
    req: &Request,
    table: &LockedTable,
    place: &Place,
    found: &Found,
    built: &Built<'_>,
    plan: &Plan,
) -> Vec<String> {
    let mut notes = Vec::new();
    notes.extend(table.lock_note.clone());
    notes.extend(overlap_notes(&plan.steps, &table.existing));
    if let Ok(false) = table.bf.status_enabled() {
        notes.push(format!(
            "binfmt_misc is disabled as a whole (hint: echo 1 > {}/status)",
            table.bf.root().display()
        ));
    }
    if opts.carry {
        for (arch, why) in &built.by_path {
            notes.push(format!(
                "the emulator for {arch} is started by path, not carried: {why}"
            ));
        }
    }
    if !found.kept.is_empty() {
        let paths: Vec<String> = found
            .kept
            .iter()
            .filter_map(|a| place.installed.path(a.name))
            .map(|p| p.display().to_string())
            .collect();
        notes.push(format!(
            "the emulator for {} is gone ({}): registered from the copy {} carries, which gets no updates until it is back",
            select::names_of(&found.kept),
            paths.join(", "),
            place.dest_str
        ));
    }
    for s in plan
        .steps
        .iter()
        .filter(|s| select::is_in(s.arch, &req.native))
    {
        notes.push(format!(
            "{} is for {}, which this machine runs natively (hint: qemu-shim uninstall {})",
            s.line.name, s.arch.name, s.arch.name
        ));
    }
    if let Some(n) = &req.probe_note {
        notes.push(format!("native arches: {n}"));
    }
    if let Some(n) = root::mount_lifetime_note(table.mounted_here) {
        notes.push(n.to_string());
    }
    notes
}

/// The emulators found for an install, as [`origin::Finder`] finds them.
#[derive(Default)]
struct Resolved {
    /// Arch and emulator path (for a kept arch, the path its table names).
    found: Vec<(&'static Arch, PathBuf)>,
    /// Arches re-registered from the installed file's own copy.
    kept: Vec<&'static Arch>,
    /// Arches whose emulator takes the plain command line (box64, FEX).
    plain: Vec<String>,
}

impl Resolved {
    fn take(&mut self, a: &'static Arch, o: origin::Origin, missing: &mut Vec<&'static Arch>) {
        match o {
            origin::Origin::Found { path, plain } => {
                if plain {
                    self.plain.push(a.name.to_string());
                }
                self.found.push((a, path));
            }
            origin::Origin::Kept(path) => {
                self.kept.push(a);
                self.found.push((a, path));
            }
            origin::Origin::Missing => missing.push(a),
        }
    }
}

/// What each carried emulator was when read for the build: path, stamp,
/// hash and version (see `sources`).
type Seen = Vec<(PathBuf, sources::FileStamp, String, Option<String>)>;

/// Builds the interpreter file for `config` and compares it with the
/// installed one (`old_file`, dropped after): the built file, what was
/// read for it, and whether it differs.
fn build_and_compare<'a>(
    shim: &'a [u8],
    source: &Path,
    config: &'a Spec,
    dest: &Path,
    old_file: Option<fs::File>,
    progress: &mut Progress,
) -> Result<(interp::Prepared<'a>, Seen, bool)> {
    progress.say(&format!(
        "qemu-shim: building the interpreter file ({} emulators)",
        config.emulators.len()
    ));
    // What each carried emulator was, as it is read for the build: its
    // stamp, hash and version go into the install record (see `sources`).
    let mut seen: Seen = Vec::new();
    // Planned now (each emulator read once, one at a time); written, or
    // compared with the installed file, piece by piece (see
    // `qemu_shim_interpfile::Prepared`): never whole in memory.
    let built = interp::prepare_with(shim, config, &mut |path, stamp, bytes| {
        let version = config
            .emulators
            .iter()
            .find(|(_, p)| p == path)
            .and_then(|(a, _)| arch::by_name(a))
            .and_then(|a| {
                crate::status::find_version(bytes, format!("{} version ", a.emulator).as_bytes())
            });
        seen.push((
            path.to_path_buf(),
            sources::FileStamp::from(stamp),
            sources::sha256_hex(bytes),
            version,
        ));
    })
    .map_err(|e| e.context(format!("interpreter {}", source.display())))?;
    let file_changed = match &old_file {
        // Its errors name the file or the emulator that failed.
        Some(f) => !built.same_as(f, dest)?,
        None => true,
    };
    // Undoing needs no copy of the old file either: `apply` keeps it under
    // a second name (see `keep_old_file`).
    drop(old_file);
    Ok((built, seen, file_changed))
}

/// Refuses to keep the installed file for the `kept` arches (emulators
/// found nowhere, carried there) unless it is exactly what this run would
/// build: the same table (arches, paths, options) and every other source
/// unchanged since the record. A new file cannot take a kept copy: it is
/// laid out and pre-relocated for the old one, not the emulator's file.
fn check_keep(
    config: &Spec,
    installed: &origin::Installed,
    record: Option<&sources::Record>,
    kept: &[&'static Arch],
    dest: &Path,
) -> Result<()> {
    let why = if installed.spec.as_ref() != Some(config) {
        let had: Vec<&str> = installed
            .spec
            .iter()
            .flat_map(|s| &s.emulators)
            .map(|(a, _)| a.as_str())
            .collect();
        let new: Vec<&str> = config
            .emulators
            .iter()
            .map(|(a, _)| a.as_str())
            .filter(|a| !had.contains(a))
            .collect();
        Some(if new.is_empty() {
            "this run changes its table".to_string()
        } else {
            format!("this run adds {}", new.join(", "))
        })
    } else {
        config
            .emulators
            .iter()
            .filter(|(a, _)| !kept.iter().any(|k| k.name == a))
            .find(|(a, p)| {
                let now = fs::metadata(p).ok().map(|m| sources::FileStamp::of(&m));
                let was = record
                    .and_then(|r| r.source(a))
                    .filter(|s| Path::new(&s.path) == p.as_path())
                    .map(|s| s.stamp);
                now.is_none() || now != was
            })
            .map(|(a, p)| format!("the emulator for {a} ({}) changed", p.display()))
    };
    let Some(why) = why else { return Ok(()) };
    let names = select::names_of(kept);
    let paths: Vec<String> = kept
        .iter()
        .filter_map(|a| installed.path(a.name))
        .map(|p| p.display().to_string())
        .collect();
    Err(Error::new(format!(
        "cannot rebuild {}: {why}, but the emulator for {names} is gone ({}), and the copy that file carries cannot be moved into a new one",
        dest.display(),
        paths.join(", ")
    ))
    .hint(format!(
        "put it back, pass --emulator-dir with a directory that holds it, or `qemu-shim uninstall {}` first",
        kept.iter().map(|a| a.name).collect::<Vec<_>>().join(" ")
    )))
}

/// The install record's emulators for a file built from `config`: carried
/// ones as [`interp::build_with`] saw them (`seen`), those started by path
/// stamped now (their version taken from the `old` record while the stamp
/// holds, so an install that changes nothing reads no emulator whole).
fn record_sources(
    config: &Spec,
    by_path: &[(String, String)],
    carry: bool,
    seen: &[(PathBuf, sources::FileStamp, String, Option<String>)],
    old: Option<&sources::Record>,
) -> Result<Vec<sources::Source>> {
    let mut emulators = Vec::new();
    for (a, p) in &config.emulators {
        let carried = carry && !by_path.iter().any(|(n, _)| n == a);
        let seen = seen.iter().find(|(sp, ..)| sp == p);
        let (stamp, sha256, version) = match seen {
            Some((_, stamp, sha, version)) => {
                (*stamp, carried.then(|| sha.clone()), version.clone())
            }
            None => {
                // Started by path: its stamp, and its version read once
                // now so `status` need not read it while the stamp holds.
                let m =
                    fs::metadata(p).map_err(|e| Error::io("cannot read the emulator", p, &e))?;
                let stamp = sources::FileStamp::of(&m);
                let recorded = old
                    .and_then(|r| r.source(a))
                    .filter(|s| s.stamp == stamp && Path::new(&s.path) == p.as_path());
                let version = match recorded {
                    Some(s) => s.version.clone(),
                    None => arch::by_name(a).and_then(|r| {
                        let bytes = fs::read(p).ok()?;
                        let needle = format!("{} version ", r.emulator);
                        crate::status::find_version(&bytes, needle.as_bytes())
                    }),
                };
                (stamp, None, version)
            }
        };
        emulators.push(sources::Source {
            arch: a.clone(),
            path: p.display().to_string(),
            carried,
            stamp,
            sha256,
            version,
        });
    }
    Ok(emulators)
}

/// A carried emulator whose bytes differ from the previous install's.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Updated {
    pub arch: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The carried emulators of `new` whose content differs from `old`'s
/// record of the same arch.
fn updated_emulators(old: Option<&sources::Record>, new: &[sources::Source]) -> Vec<Updated> {
    let Some(old) = old else { return Vec::new() };
    new.iter()
        .filter_map(|n| {
            let o = old.source(&n.arch)?;
            let changed = match (&o.sha256, &n.sha256) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            changed.then(|| Updated {
                arch: n.arch.clone(),
                from: o.version.clone(),
                to: n.version.clone(),
            })
        })
        .collect()
}

/// Refuses, unless `--allow-untrusted-emulators`, an emulator or the
/// interpreter to install that someone other than root could change (the
/// file, a directory on its path, a link on the way: [`trust::check`]):
/// it runs as root whenever root, or a setuid program, runs a foreign
/// program, carried in the interpreter file or started by path (issue 10).
fn check_source(opts: &Options, owners: &trust::Owners, what: &str, path: &Path) -> Result<()> {
    if opts.allow_untrusted {
        return Ok(());
    }
    trust::check(path, owners, Role::Target)
        .map(|_| ())
        .map_err(|u| {
            u.error(what, path).hint(format!(
                "{}, or pass --allow-untrusted-emulators (dangerous: see --help)",
                u.hint()
            ))
        })
}

fn dirs_text(search: &Search) -> String {
    let dirs: Vec<String> = search
        .dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    dirs.join(", ")
}

fn no_emulator(search: &Search, missing: &[&'static Arch]) -> Error {
    let msg = match missing {
        [a] => format!(
            "no emulator for {}: {}",
            a.name,
            emulator::looked_for(search, a)
        ),
        _ => format!(
            "no emulator for {}: looked for qemu-<arch>-static or qemu-<arch> in {}",
            select::names_of(missing),
            dirs_text(search)
        ),
    };
    Error::new(msg).hint(search.hint())
}

/// The enabled entry that the kernel tries before `name` and that overlaps
/// `a`'s files, if any: ours would not run those files.
fn shadowed_by(existing: &[(String, EntryFile)], name: &str, a: &Arch) -> Option<String> {
    for (n, e) in existing {
        if n == name {
            return None;
        }
        if e.enabled && pattern(e).is_some_and(|p| p.relation(a) != analysis::Relation::Disjoint) {
            return Some(n.clone());
        }
    }
    None
}

/// What the entries should be: the interpreter file they name, how its
/// emulators are started, the flags asked for, and which arches are
/// entries of ours not asked for (kept on the same file).
#[derive(Clone, Copy)]
struct Want<'a> {
    dest: &'a str,
    carry: bool,
    /// Arches the file starts by path (with why), not carried.
    by_path: &'a [(String, String)],
    pin: bool,
    credentials: bool,
    others: &'a [&'static Arch],
}

/// What install does to the table's entries.
#[derive(Debug)]
struct EntryPlan {
    /// One per emulator, in table order.
    steps: Vec<Step>,
    /// Stand-ins left by an upgrade that was killed midway: removed.
    strays: Vec<(String, EntryFile)>,
}

/// Plans the entries for `emulators` against the table as it is
/// (`existing`, in the kernel's order), given whether the interpreter file
/// changes: a pure function of its inputs, tested without a kernel. `Err`
/// for a line binfmt_misc would refuse (an install path it does not take).
fn plan_entries(
    emulators: &[(&'static Arch, PathBuf)],
    want: &Want<'_>,
    existing: &[(String, EntryFile)],
    file_changed: bool,
) -> Result<EntryPlan> {
    let mut steps = Vec::new();
    for (a, emu) in emulators {
        // An emulator started by path cannot take the kernel's descriptor:
        // its entry gets neither O nor C (see `entry_flags`).
        let carried_here = want.carry && !want.by_path.iter().any(|(n, _)| n == a.name);
        let flags = entry_flags(carried_here, want.pin, want.credentials);
        let line = binfmt::register_line(a, want.dest, flags);
        line.validate().map_err(|e| {
            Error::new(format!("cannot register {}: {e}", line.name))
                .hint("choose an install directory whose path binfmt_misc accepts")
        })?;
        let action = match existing.iter().find(|(n, _)| *n == line.name) {
            None => Action::Register,
            Some((_, e)) => decide(&line, e, file_changed, shadowed_by(existing, &line.name, a)),
        };
        steps.push(Step {
            arch: a,
            line,
            emulator: emu.clone(),
            action,
            carried: select::is_in(a, want.others),
        });
    }
    let strays = existing
        .iter()
        .filter(|(n, _)| n.starts_with(binfmt::OWNED_PREFIX) && n.ends_with(STAND_IN_SUFFIX))
        .cloned()
        .collect();
    Ok(EntryPlan { steps, strays })
}

/// What to do with an existing entry named like ours.
fn decide(
    line: &RegisterLine,
    e: &EntryFile,
    file_changed: bool,
    shadowed: Option<String>,
) -> Action {
    let mut want = line.expected_entry();
    want.enabled = e.enabled;
    let replace = |why: String| Action::Replace(Box::new(e.clone()), why);
    if want != *e {
        let why = if e.interpreter != line.interpreter {
            format!("was {}", e.interpreter)
        } else if e.raw_flags != want.raw_flags {
            format!(
                "flags were {}",
                if e.raw_flags.is_empty() {
                    "none"
                } else {
                    &e.raw_flags
                }
            )
        } else {
            "magic or mask differed".to_string()
        };
        return replace(why);
    }
    if file_changed {
        return replace("interpreter file changed".into());
    }
    if let Some(other) = shadowed {
        if e.enabled {
            return replace(format!("{other} was tried first"));
        }
    }
    if e.enabled {
        Action::Unchanged
    } else {
        Action::Enable
    }
}

/// The new interpreter file as [`apply`] writes it: streamed, never whole
/// in memory.
trait NewFile {
    fn file_size(&self) -> Result<u64>;
    /// Writes it into `f` (new, empty; `dest` names it in errors), telling
    /// `progress` the bytes done.
    fn write_to(&self, f: &fs::File, dest: &Path, progress: &mut dyn FnMut(u64)) -> Result<()>;
}

impl NewFile for interp::Prepared<'_> {
    fn file_size(&self) -> Result<u64> {
        Ok(interp::Prepared::file_size(self)?)
    }
    fn write_to(&self, f: &fs::File, dest: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
        self.write_file(f, dest, progress)?;
        Ok(())
    }
}

/// The interpreter file this run installs: built (planned, and streamed
/// when written), or, with an arch whose emulator is gone but carried
/// there, the installed file kept as it is (`prepared` is `None`, and the
/// file is never rewritten: see [`check_keep`]).
struct Built<'a> {
    prepared: Option<interp::Prepared<'a>>,
    /// Arches started by path, and why.
    by_path: Vec<(String, String)>,
    /// What each carried emulator was when read for the build.
    seen: Seen,
    /// It differs from the installed file (or there is none).
    changed: bool,
}

impl NewFile for Built<'_> {
    fn file_size(&self) -> Result<u64> {
        match &self.prepared {
            Some(p) => NewFile::file_size(p),
            None => Err(Error::new(
                "internal: the kept interpreter file is not rewritten",
            )),
        }
    }
    fn write_to(&self, f: &fs::File, dest: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
        match &self.prepared {
            Some(p) => p.write_to(f, dest, progress),
            None => Err(Error::new(
                "internal: the kept interpreter file is not rewritten",
            )),
        }
    }
}

/// Bytes, for the tests of [`apply`].
#[cfg(test)]
impl<const N: usize> NewFile for [u8; N] {
    fn file_size(&self) -> Result<u64> {
        Ok(N as u64)
    }
    fn write_to(&self, f: &fs::File, dest: &Path, _: &mut dyn FnMut(u64)) -> Result<()> {
        std::os::unix::fs::FileExt::write_all_at(f, self, 0)
            .map_err(|e| Error::io("cannot write", dest, &e))
    }
}

/// Writes the file and changes the entries, recording each step in `j`.
///
/// Entries being replaced keep running programs while the file changes:
/// the new file takes the final path whole (written beside it, then
/// renamed), then stand-in entries (newest, so tried first) naming that
/// path are registered, and only then do the entries proper move over. At
/// every moment one of our entries runs each arch with a whole interpreter
/// file: a pinned old entry its old file, an unpinned one whatever file the
/// path holds. The stand-ins name the final path, not a staged one: an
/// entry without F opens its interpreter by path at every exec, and a
/// staged name is gone once renamed. Stand-ins also when only the entries
/// change (flags, say): between an entry's removal and its new
/// registration, its programs would find no entry.
#[allow(clippy::too_many_arguments)]
fn apply(
    j: &mut Journal<'_>,
    missing_dirs: &[PathBuf],
    dest: &Path,
    image: &dyn NewFile,
    file_changed: bool,
    steps: &[Step],
    strays: &[(String, EntryFile)],
) -> Result<()> {
    create_dirs(j, missing_dirs)?;
    if file_changed {
        write_new_file(j, dest, image)?;
    }
    let stand_ins = register_stand_ins(j, steps, strays)?;
    change_entries(j, steps)?;
    drop_stand_ins(j, &stand_ins)?;
    remove_strays(j, strays, &stand_ins)
}

/// Writes the install record beside the interpreter file (what it was
/// built from, with the new file's stamp).
fn write_record(j: &mut Journal<'_>, place: &Place, state: &State) -> Result<()> {
    let text = sources::text(&record(stamp_of(&place.dest)?, &state.sources))?;
    write_file_mode(&place.record_path, text.as_bytes(), 0o644)?;
    j.record = Some(match &place.old_record_bytes {
        Some(b) => FileUndo::Restore(place.record_path.clone(), b.clone(), 0o644),
        None => FileUndo::Remove(place.record_path.clone()),
    });
    Ok(())
}

/// Creates the install directory's missing parents, outermost first.
fn create_dirs(j: &mut Journal<'_>, missing_dirs: &[PathBuf]) -> Result<()> {
    for d in missing_dirs {
        // 0755 whatever the umask: see `trust::create_dir`.
        trust::create_dir(d, 0o755).map_err(|e| Error::io("cannot create", d, &e))?;
        j.created_dirs.push(d.clone());
    }
    Ok(())
}

/// The entries proper are in place: the stand-ins go. Undoing the run
/// from here needs none of them either.
fn drop_stand_ins(j: &mut Journal<'_>, stand_ins: &[String]) -> Result<()> {
    for name in stand_ins {
        j.bf.remove(name)?;
        j.ops
            .retain(|op| !matches!(op, Undo::Unregister(n) if n == name));
    }
    Ok(())
}

/// Removes the stray entries a killed run left (stand-ins among them were
/// already replaced by this run's own and removed with them).
fn remove_strays(
    j: &mut Journal<'_>,
    strays: &[(String, EntryFile)],
    stand_ins: &[String],
) -> Result<()> {
    for (name, old) in strays {
        if stand_ins.contains(name) {
            continue;
        }
        j.bf.remove(name)?;
        j.ops
            .push(Undo::Reregister(name.clone(), Box::new(old.clone())));
    }
    Ok(())
}

/// Streams the new interpreter file into place; the old one is kept under
/// a second name until the run ends (see `keep_old_file`).
fn write_new_file(j: &mut Journal<'_>, dest: &Path, image: &dyn NewFile) -> Result<()> {
    // Taken before the new file is renamed over the old one.
    let undo = keep_old_file(dest)?;
    let total = image.file_size()?;
    let p = &mut j.progress;
    let written = write_file_by(dest, 0o755, &mut |f| {
        image.write_to(f, dest, &mut |done| {
            p.bytes("qemu-shim: writing the interpreter file", done, total)
        })
    });
    if let Err(e) = written {
        // The path still holds the old file: nothing to undo.
        undo.release();
        return Err(e);
    }
    j.file = Some(undo);
    Ok(())
}

/// Registers a stand-in (`NAME.next`) for each entry being replaced;
/// returns their names.
fn register_stand_ins(
    j: &mut Journal<'_>,
    steps: &[Step],
    strays: &[(String, EntryFile)],
) -> Result<Vec<String>> {
    let mut stand_ins = Vec::new();
    for s in steps
        .iter()
        .filter(|s| matches!(s.action, Action::Replace(..)))
    {
        let mut l = s.line.clone();
        l.name = format!("{}{STAND_IN_SUFFIX}", s.line.name);
        // A stand-in a killed run left under this name would make the
        // registration fail (EEXIST) on every later run: it goes first.
        if let Some((_, old)) = strays.iter().find(|(n, _)| *n == l.name) {
            j.bf.remove(&l.name)?;
            j.ops
                .push(Undo::Reregister(l.name.clone(), Box::new(old.clone())));
        }
        j.bf.register(&l)?;
        j.ops.push(Undo::Unregister(l.name.clone()));
        stand_ins.push(l.name);
    }
    Ok(stand_ins)
}

/// Registers, enables or replaces each entry as planned.
fn change_entries(j: &mut Journal<'_>, steps: &[Step]) -> Result<()> {
    for s in steps {
        if s.action != Action::Unchanged {
            j.progress
                .say(&format!("qemu-shim: registering {}", s.line.name));
        }
        match &s.action {
            Action::Unchanged => {}
            Action::Register => {
                j.bf.register(&s.line)?;
                j.ops.push(Undo::Unregister(s.line.name.clone()));
            }
            Action::Enable => {
                j.bf.set_enabled(&s.line.name, true)?;
                j.ops.push(Undo::Disable(s.line.name.clone()));
            }
            Action::Replace(old, _) => {
                j.bf.remove(&s.line.name)?;
                j.ops
                    .push(Undo::Reregister(s.line.name.clone(), old.clone()));
                j.bf.register(&s.line)?;
                j.ops.push(Undo::Unregister(s.line.name.clone()));
            }
        }
    }
    Ok(())
}

/// The install directory as planned: its absolute path (the part that
/// exists with links resolved, so the path registered is the file's real
/// path) and the directories still to create, outermost first.
#[derive(Debug, PartialEq, Eq)]
struct InstallDir {
    path: PathBuf,
    missing: Vec<PathBuf>,
    /// The deepest directory that exists: where the file system is checked.
    existing: PathBuf,
    /// The directory as asked, made absolute (links not resolved): what
    /// [`check_install_dir`] walks and names.
    asked: PathBuf,
}

fn plan_install_dir(dir: &Path) -> Result<InstallDir> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("cannot resolve", dir, &e))?
            .join(dir)
    };
    // Split into the part that exists and the names below it.
    let mut tail = Vec::new();
    let mut p = abs.as_path();
    while fs::symlink_metadata(p).is_err() {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            break;
        };
        tail.push(name.to_os_string());
        p = parent;
    }
    let existing = fs::canonicalize(p).map_err(|e| Error::io("cannot resolve", p, &e))?;
    if !existing.is_dir() {
        return Err(Error::new(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let mut path = existing.clone();
    let mut missing = Vec::new();
    for name in tail.iter().rev() {
        if name == ".." || name == "." {
            return Err(Error::new(format!(
                "install directory {} has . or .. below a directory that does not exist",
                dir.display()
            )));
        }
        path.push(name);
        missing.push(path.clone());
    }
    Ok(InstallDir {
        path,
        missing,
        existing,
        asked: abs,
    })
}

/// Refuses an install directory, or an interpreter file already in it,
/// that someone other than root could change: they could rename a file of
/// theirs over the interpreter, which every entry serves to every foreign
/// program, setuid ones included (issue 10). Every directory on the way is
/// checked as asked, links followed ([`trust::check`]); the install
/// directory itself may not be sticky. When it does not exist yet, the
/// directories above it are checked (a sticky one, as /tmp, passes: this
/// run creates the rest, 0755, and nobody else can rename or remove them).
fn check_install_dir(dir: &InstallDir, dest: &Path, owners: &trust::Owners) -> Result<()> {
    let role = if dir.missing.is_empty() {
        Role::Target
    } else {
        Role::Parent
    };
    match trust::check(&dir.asked, owners, role) {
        Ok(_) => {}
        // Not there yet: everything above it passed.
        Err(u) if u.is_missing() && !dir.missing.is_empty() => {}
        Err(u) => return Err(u.error("install directory", &dir.asked)),
    }
    match trust::check(dest, owners, Role::Target) {
        Ok(_) => Ok(()),
        Err(u) if u.is_missing() => Ok(()),
        Err(u) => Err(u
            .error("the installed interpreter file", dest)
            .hint(format!(
                "someone else could have changed it: remove {} and install again",
                u.path.display()
            ))),
    }
}

/// Refuses, when this run writes the binfmt.d file, a binfmt.d directory
/// (or file there) that someone other than root could change: systemd
/// applies every file in it at boot, and an entry dropped there with `C`
/// runs whatever it names as the owner of every setuid program it matches
/// (issue 10). A directory that does not exist yet is checked up to the
/// part that exists (this run creates the last one, 0755; a parent that is
/// missing too makes the write fail, and the run is undone).
fn check_binfmt_d(dir: &Path, file: &Path, owners: &trust::Owners) -> Result<()> {
    for (what, path) in [("binfmt.d directory", dir), ("binfmt.d file", file)] {
        match trust::check(path, owners, Role::Target) {
            Ok(_) => {}
            Err(u) if u.is_missing() => return Ok(()),
            Err(u) => return Err(u.error(what, path)),
        }
    }
    Ok(())
}

/// Refuses, before anything is changed, what would fail halfway: a table
/// mounted read-only or not writable by us, and an install directory on a
/// file system the kernel will not execute from (with `F` it opens the
/// interpreter for execution at registration; /tmp is often `noexec`).
fn preflight(bf: &Binfmt, dir: &InstallDir) -> Result<()> {
    use nix::sys::statvfs::{statvfs, FsFlags};
    use nix::unistd::{access, AccessFlags};
    let root = bf.root();
    if let Ok(st) = statvfs(root) {
        if st.flags().contains(FsFlags::ST_RDONLY) {
            return Err(Error::new(format!(
                "binfmt_misc at {} is mounted read-only",
                root.display()
            ))
            .hint("in a container, run qemu-shim install on the host"));
        }
    }
    let register = root.join("register");
    if let Err(e) = access(&register, AccessFlags::W_OK) {
        return Err(Error::io("cannot write", &register, &io::Error::from(e)));
    }
    if let Ok(st) = statvfs(&dir.existing) {
        if st.flags().contains(FsFlags::ST_NOEXEC) {
            return Err(Error::new(format!(
                "{} is on a file system mounted noexec: the kernel cannot run the interpreter from there",
                dir.path.display()
            ))
            .hint("choose another --install-dir"));
        }
        if st.flags().contains(FsFlags::ST_RDONLY) {
            return Err(Error::new(format!(
                "{} is on a read-only file system",
                dir.path.display()
            ))
            .hint("choose another --install-dir"));
        }
    }
    Ok(())
}

/// The installed interpreter file at `path`, open for reading; `None` if
/// there is none. A directory there is refused as reading it would be.
fn open_installed(path: &Path) -> Result<Option<fs::File>> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read", path, &e)),
    };
    let meta = f
        .metadata()
        .map_err(|e| Error::io("cannot read", path, &e))?;
    if meta.is_dir() {
        let e = io::Error::from(nix::errno::Errno::EISDIR);
        return Err(Error::io("cannot read", path, &e));
    }
    Ok(Some(f))
}

/// The table an installed interpreter file was configured with, read from
/// the start of the file up to the end of its header tables (the
/// interpreter's own part, tens of KB: its table and section names lie
/// there), not from the carried emulators after it. `None` if it is not
/// an interpreter file we can read, as for a whole file that fails.
fn installed_config(f: &fs::File) -> Option<Spec> {
    interp::read_spec(&interp::read_head(f).ok()??).ok()
}

/// Writes the binfmt.d file (mode 0644), creating its directory if it is
/// missing, recording both in `j`.
fn write_persist(j: &mut Journal<'_>, path: &Path, text: &str, old: Option<&str>) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            trust::create_dir(dir, 0o755).map_err(|e| Error::io("cannot create", dir, &e))?;
            j.created_dirs.push(dir.to_path_buf());
        }
    }
    write_file_mode(path, text.as_bytes(), 0o644)?;
    j.persist = Some(match old {
        Some(t) => FileUndo::Restore(path.to_path_buf(), t.as_bytes().to_vec(), 0o644),
        None => FileUndo::Remove(path.to_path_buf()),
    });
    Ok(())
}

enum Undo {
    Unregister(String),
    Reregister(String, Box<EntryFile>),
    Disable(String),
}

/// This run's changes, to undo if a later step fails.
struct Journal<'a> {
    bf: &'a dyn Table,
    created_dirs: Vec<PathBuf>,
    file: Option<FileUndo>,
    /// The binfmt.d file, written last.
    persist: Option<FileUndo>,
    /// The install record (see `sources`), written after the file.
    record: Option<FileUndo>,
    ops: Vec<Undo>,
    /// Cleared when the journal ends, before the report or the error.
    progress: Progress,
}

impl<'a> Journal<'a> {
    fn new(bf: &'a dyn Table) -> Journal<'a> {
        Journal {
            bf,
            created_dirs: Vec::new(),
            file: None,
            persist: None,
            record: None,
            ops: Vec::new(),
            progress: Progress::off(),
        }
    }

    /// Keeps the changes; what only undoing needed goes.
    fn commit(self) {
        if let Some(f) = &self.file {
            f.release();
        }
    }

    /// Undoes what was done, newest first, and returns `err` saying whether
    /// that worked. The file comes back first: an entry re-registered with
    /// `F` pins whatever file is at its path at that moment.
    fn rollback(mut self, err: Error) -> Error {
        self.progress.clear();
        let mut failures: Vec<String> = Vec::new();
        for f in [&self.record, &self.persist, &self.file]
            .into_iter()
            .flatten()
        {
            if let Err(e) = f.undo() {
                failures.push(e);
            }
        }
        for op in self.ops.iter().rev() {
            let r = match op {
                Undo::Unregister(name) => self.bf.remove(name),
                Undo::Disable(name) => self.bf.set_enabled(name, false),
                Undo::Reregister(name, old) => match old.register_line(name) {
                    Some(line) => self.bf.register(&line).and_then(|()| {
                        if old.enabled {
                            Ok(())
                        } else {
                            self.bf.set_enabled(name, false)
                        }
                    }),
                    None => {
                        failures.push(format!(
                            "cannot recreate {name}: it had no magic or extension"
                        ));
                        Ok(())
                    }
                },
            };
            if let Err(e) = r {
                failures.push(e.to_string());
            }
        }
        for d in self.created_dirs.iter().rev() {
            // Only empty directories go: anything else in them is not ours.
            let _ = fs::remove_dir(d);
        }
        if failures.is_empty() {
            Error::new(format!("{}; this run's changes were undone", err.message()))
                .with_hint_of(&err)
        } else {
            Error::new(format!(
                "{}; undoing this run's changes also failed: {}",
                err.message(),
                failures.join("; ")
            ))
            .with_hint_of(&err)
        }
    }
}

/// Notes on others' entries that also match an arch we serve: ours is
/// tried first now, but removing ours hands those files to them.
fn overlap_notes(steps: &[Step], existing: &[(String, EntryFile)]) -> Vec<String> {
    let mut notes = Vec::new();
    for s in steps {
        for (n, e) in existing {
            if n.starts_with(binfmt::OWNED_PREFIX) {
                continue;
            }
            let overlaps =
                pattern(e).is_some_and(|p| p.relation(s.arch) != analysis::Relation::Disjoint);
            if e.enabled && overlaps {
                notes.push(format!(
                    "{n} ({}) also matches {} programs; {} is tried first",
                    e.interpreter, s.arch.name, s.line.name
                ));
            }
        }
    }
    notes
}

/// Writes the report's text: what changed, one line each (all entries
/// with `verbose`), one line for the entries left as they were (issue 18,
/// item 6), the interpreter file with its size, then the notes.
pub fn write_text(out: &mut dyn Write, sum: &Summary, verbose: bool) {
    for f in &sum.leftovers_removed {
        let _ = writeln!(out, "removed    {f} (left by an interrupted run)");
    }
    if let Some(f) = &sum.binfmt_d {
        let what = if f.written { "written" } else { "unchanged" };
        let _ = writeln!(out, "{what:<10} {}", f.path);
    }
    write_entries(out, sum, verbose);
    write_interpreter(out, sum);
    if !sum.no_emulator.is_empty() {
        let _ = writeln!(out, "no emulator for: {}", sum.no_emulator.join(", "));
    }
    // What the new file carries that the old did not.
    for u in &sum.emulators_updated {
        let _ = writeln!(
            out,
            "updated    the {} emulator: {} -> {}",
            u.arch,
            u.from.as_deref().unwrap_or("version unknown"),
            u.to.as_deref().unwrap_or("version unknown")
        );
    }
    if sum.unchanged {
        let _ = writeln!(out, "nothing to do: already installed");
    }
    for n in &sum.notes {
        let _ = writeln!(out, "note: {n}");
    }
}

/// One line per entry changed (every entry with `verbose`), one for those
/// left as they were, one for the other entries re-registered on the
/// changed file.
fn write_entries(out: &mut dyn Write, sum: &Summary, verbose: bool) {
    // Entries not asked for are re-registered only because the file they
    // share changed: one line for all of them.
    let (kept, listed): (Vec<&EntrySummary>, Vec<&EntrySummary>) = sum
        .entries
        .iter()
        .partition(|e| !e.asked && sum.interpreter_written && e.action == "replaced");
    let (shown, same): (Vec<&EntrySummary>, Vec<&EntrySummary>) = listed
        .into_iter()
        .partition(|e| verbose || e.action != "unchanged");
    let width = shown.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &shown {
        let why = match (e.action, &e.reason) {
            ("enabled", _) => " (was disabled)".to_string(),
            (_, Some(why)) => format!(" ({why})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<10} {:<width$}  {}{why}",
            e.action, e.name, e.emulator
        );
    }
    if !same.is_empty() {
        let names: Vec<&str> = same.iter().map(|e| e.arch).collect();
        let _ = writeln!(
            out,
            "unchanged  {} {}: {} (--verbose lists them)",
            same.len(),
            if same.len() == 1 { "entry" } else { "entries" },
            names.join(", ")
        );
    }
    if !kept.is_empty() {
        let names: Vec<&str> = kept.iter().map(|e| e.arch).collect();
        let _ = writeln!(
            out,
            "replaced   {} other qemu-shim entries on the same interpreter file, which changed: {}",
            kept.len(),
            names.join(", ")
        );
    }
}

/// The interpreter file: written or unchanged, its size, how many
/// emulators it carries.
fn write_interpreter(out: &mut dyn Write, sum: &Summary) {
    let carried = match sum.emulators_carried {
        1 => "1 emulator carried".to_string(),
        n => format!("{n} emulators carried"),
    };
    let _ = writeln!(
        out,
        "{:<10} {} ({}, {carried})",
        if sum.interpreter_written {
            "written"
        } else {
            "unchanged"
        },
        sum.interpreter,
        size_text(sum.interpreter_size)
    );
}

/// The CPU models the config chooses for the arches in the new table
/// (qemu's only: a plain emulator's `cpu` is refused when the config is
/// read), each checked by running its arch's probe program under it with
/// the emulator the table will start.
fn cpu_models(
    cfg: &config::Config,
    emulators: &[(&'static Arch, PathBuf)],
) -> Result<Vec<(String, String)>> {
    let names: Vec<&str> = emulators.iter().map(|(a, _)| a.name).collect();
    let models = cfg.cpu_models(&names);
    for (arch, model) in &models {
        let (a, emulator) = emulators
            .iter()
            .find(|(a, _)| a.name == arch)
            .expect("models are chosen from these arches");
        let at = cfg.whereabouts(a).unwrap_or_else(|| "config".into());
        crate::cpu::check(a, emulator, model, &at)?;
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::{register_line, ENTRY_FLAGS};
    #[allow(unused_imports)]
    use crate::files::*;
    use crate::testutil::TempDir;
    use std::cell::{Cell, RefCell};
    use std::os::unix::fs::PermissionsExt;

    /// A table in memory, newest entry first, whose `fail_at`-th change fails.
    struct Fake {
        entries: RefCell<Vec<(String, EntryFile)>>,
        calls: Cell<usize>,
        fail_at: usize,
    }

    impl Fake {
        fn tick(&self) -> Result<()> {
            let n = self.calls.get() + 1;
            self.calls.set(n);
            if n == self.fail_at {
                return Err(Error::new("injected failure"));
            }
            Ok(())
        }
        fn sorted(&self) -> Vec<(String, EntryFile)> {
            let mut v = self.entries.borrow().clone();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
    }

    impl Table for Fake {
        fn register(&self, line: &RegisterLine) -> Result<()> {
            self.tick()?;
            let mut e = self.entries.borrow_mut();
            if e.iter().any(|(n, _)| *n == line.name) {
                return Err(Error::new("exists"));
            }
            e.insert(0, (line.name.clone(), line.expected_entry()));
            Ok(())
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.tick()?;
            let mut e = self.entries.borrow_mut();
            let i = e
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| Error::new("absent"))?;
            e.remove(i);
            Ok(())
        }
        fn set_enabled(&self, name: &str, on: bool) -> Result<()> {
            self.tick()?;
            let mut e = self.entries.borrow_mut();
            let (_, entry) = e
                .iter_mut()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::new("absent"))?;
            entry.enabled = on;
            Ok(())
        }
    }

    fn aarch64() -> &'static Arch {
        arch::by_name("aarch64").unwrap()
    }

    fn named(name: &str, interp: &str) -> RegisterLine {
        let mut l = register_line(aarch64(), interp);
        l.name = name.into();
        l
    }

    fn step(line: RegisterLine, action: Action) -> Step {
        Step {
            arch: aarch64(),
            line,
            emulator: PathBuf::from("/q"),
            action,
            carried: false,
        }
    }

    /// A table with an entry to replace (other flags), one to re-enable,
    /// one unchanged and someone else's; the steps that install would take.
    fn scenario(dest: &str, fail_at: usize) -> (Fake, Vec<Step>) {
        let mut old_a = named("qemu-shim-a", dest);
        old_a.flags = "OCF".parse().unwrap();
        let old_a = old_a.expected_entry();
        let mut c = named("qemu-shim-c", dest).expected_entry();
        c.enabled = false;
        let d = named("qemu-shim-d", dest).expected_entry();
        let other = named("qemu-aarch64", "/usr/bin/qemu-aarch64-static").expected_entry();
        let fake = Fake {
            entries: RefCell::new(vec![
                ("qemu-shim-a".into(), old_a.clone()),
                ("qemu-aarch64".into(), other),
                ("qemu-shim-c".into(), c),
                ("qemu-shim-d".into(), d),
            ]),
            calls: Cell::new(0),
            fail_at,
        };
        let steps = vec![
            step(
                named("qemu-shim-a", dest),
                Action::Replace(Box::new(old_a), "x".into()),
            ),
            step(named("qemu-shim-b", dest), Action::Register),
            step(named("qemu-shim-c", dest), Action::Enable),
            step(named("qemu-shim-d", dest), Action::Unchanged),
        ];
        (fake, steps)
    }

    #[test]
    fn a_failure_at_any_step_undoes_every_change() {
        // register the stand-in for a, remove a, register a, register b,
        // enable c, remove the stand-in: six changes.
        for fail_at in 1..=6 {
            let t = TempDir::new();
            let dest = t.path().join("qemu-shim-interp");
            std::fs::write(&dest, b"old").unwrap();
            let (fake, steps) = scenario(dest.to_str().unwrap(), fail_at);
            let before = fake.sorted();
            let mut j = Journal::new(&fake);
            let err = apply(&mut j, &[], &dest, b"new", true, &steps, &[]).unwrap_err();
            assert_eq!(err.message(), "injected failure");
            let err = j.rollback(err);
            assert_eq!(
                err.message(),
                "injected failure; this run's changes were undone",
                "fail_at {fail_at}"
            );
            assert_eq!(fake.sorted(), before, "fail_at {fail_at}");
            assert_eq!(std::fs::read(&dest).unwrap(), b"old", "fail_at {fail_at}");
            assert_eq!(
                files_in(t.path()),
                ["qemu-shim-interp"],
                "fail_at {fail_at}"
            );
        }
    }

    /// The names in `dir`, sorted.
    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn inode(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn a_replaced_file_is_kept_under_a_second_name_until_the_run_ends() {
        use std::os::unix::fs::MetadataExt;
        for fail in [true, false] {
            let t = TempDir::new();
            let dest = t.path().join("qemu-shim-interp");
            std::fs::write(&dest, b"old").unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o750)).unwrap();
            let old_inode = inode(&dest);
            // Fails registering b, after the file was replaced.
            let (fake, steps) = scenario(dest.to_str().unwrap(), if fail { 3 } else { 0 });
            let mut j = Journal::new(&fake);
            let done = apply(&mut j, &[], &dest, b"new", true, &steps, &[]);
            assert_eq!(std::fs::read(&dest).unwrap(), b"new");
            // Not a copy: a second name of the old file, beside it.
            let backup = beside(&dest, BACKUP_KIND);
            assert_eq!(inode(&backup), old_inode);
            assert_eq!(std::fs::metadata(&backup).unwrap().nlink(), 1);
            assert!(matches!(j.file, Some(FileUndo::Relink(..))));
            if fail {
                j.rollback(done.unwrap_err());
                // The old file itself is back: bytes, mode, inode.
                assert_eq!(inode(&dest), old_inode);
                assert_eq!(std::fs::read(&dest).unwrap(), b"old");
                let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o750);
            } else {
                done.unwrap();
                j.commit();
                assert_eq!(std::fs::read(&dest).unwrap(), b"new");
            }
            assert_eq!(files_in(t.path()), ["qemu-shim-interp"], "fail {fail}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_written_leaves_no_second_name() {
        let t = TempDir::new();
        let dest = t.path().join("qemu-shim-interp");
        std::fs::write(&dest, b"old").unwrap();
        let old_inode = inode(&dest);
        // The temporary file's name is taken: writing fails before the
        // rename.
        let tmp = beside(&dest, "tmp");
        std::fs::create_dir(&tmp).unwrap();
        let (fake, steps) = scenario(dest.to_str().unwrap(), 0);
        let mut j = Journal::new(&fake);
        let err = apply(&mut j, &[], &dest, b"new", true, &steps, &[]).unwrap_err();
        assert!(err.message().starts_with("cannot write"), "{err}");
        assert!(j.file.is_none());
        assert_eq!(fake.calls.get(), 0);
        j.rollback(err);
        assert_eq!(inode(&dest), old_inode);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        std::fs::remove_dir(&tmp).unwrap();
        assert_eq!(files_in(t.path()), ["qemu-shim-interp"]);
    }

    #[test]
    fn without_a_second_name_the_old_bytes_are_kept_in_memory() {
        for fail in [true, false] {
            let t = TempDir::new();
            let dest = t.path().join("qemu-shim-interp");
            std::fs::write(&dest, b"old").unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o750)).unwrap();
            // The name is taken (EEXIST), as a file system without hard
            // links would refuse (EPERM): not ours, left alone.
            let taken = beside(&dest, BACKUP_KIND);
            std::fs::write(&taken, b"not ours").unwrap();
            let (fake, steps) = scenario(dest.to_str().unwrap(), if fail { 3 } else { 0 });
            let mut j = Journal::new(&fake);
            let done = apply(&mut j, &[], &dest, b"new", true, &steps, &[]);
            assert!(matches!(&j.file, Some(FileUndo::Restore(_, b, 0o750)) if b == b"old"));
            if fail {
                j.rollback(done.unwrap_err());
                assert_eq!(std::fs::read(&dest).unwrap(), b"old");
                let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o750);
            } else {
                done.unwrap();
                j.commit();
                assert_eq!(std::fs::read(&dest).unwrap(), b"new");
            }
            assert_eq!(std::fs::read(&taken).unwrap(), b"not ours");
            assert_eq!(files_in(t.path()).len(), 2);
        }
    }

    #[test]
    fn the_installed_table_is_read_from_the_head_of_the_file() {
        use qemu_shim_interpfile::test_support::elf_with_section;
        use qemu_shim_registry::dispatch;
        let mut region = vec![0u8; dispatch::REGION_SIZE];
        region[..16].copy_from_slice(&dispatch::EMPTY_REGION_HEADER);
        let mut image = elf_with_section(
            dispatch::SECTION,
            &region,
            goblin::elf::section_header::SHT_PROGBITS,
        );
        let config = Spec {
            emulators: vec![("s390x".into(), PathBuf::from("/opt/q/qemu-s390x"))],
            ..Spec::default()
        };
        qemu_shim_interpfile::configure(&mut image, &config).unwrap();
        let t = TempDir::new();
        let path = t.path().join("qemu-shim-interp");
        std::fs::write(&path, &image).unwrap();
        let head = interp::read_head(&std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(
            head.map(|h| h.len()),
            Some(image.len()),
            "the test file ends with its section headers"
        );
        // What follows (carried emulators) is not read.
        image.resize(image.len() + (4 << 20), 0xee);
        std::fs::write(&path, &image).unwrap();
        let f = open_installed(&path).unwrap().unwrap();
        assert_eq!(installed_config(&f), Some(config));
        // Not an interpreter file, too short, none, a directory.
        for bytes in [&b"#!/bin/sh\n"[..], &image[..100]] {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(
                installed_config(&open_installed(&path).unwrap().unwrap()),
                None
            );
        }
        std::fs::remove_file(&path).unwrap();
        assert!(open_installed(&path).unwrap().is_none());
        std::fs::create_dir(&path).unwrap();
        let e = open_installed(&path).unwrap_err();
        assert!(e.message().starts_with("cannot read"), "{e}");
    }

    #[test]
    fn a_run_without_failure_makes_every_change() {
        let t = TempDir::new();
        let dest = t.path().join("qemu-shim-interp");
        let (fake, steps) = scenario(dest.to_str().unwrap(), 0);
        let mut j = Journal::new(&fake);
        apply(&mut j, &[], &dest, b"new", true, &steps, &[]).unwrap();
        j.commit();
        // Four changes plus the stand-in for a, registered and removed.
        assert_eq!(fake.calls.get(), 6);
        let got = fake.sorted();
        for (name, e) in &got {
            if name.starts_with("qemu-shim-") {
                assert_eq!(
                    *e,
                    named(name, dest.to_str().unwrap()).expected_entry(),
                    "{name}"
                );
            }
        }
        assert_eq!(got.len(), 5);
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn undoing_a_first_install_removes_the_file_and_created_dirs() {
        let t = TempDir::new();
        let dir = plan_install_dir(&t.path().join("a/b")).unwrap();
        let real = std::fs::canonicalize(t.path()).unwrap();
        assert_eq!(dir.missing, vec![real.join("a"), real.join("a/b")]);
        assert_eq!(dir.existing, real);
        assert!(!t.path().join("a").exists(), "planning creates nothing");
        let dest = dir.path.join("qemu-shim-interp");
        let (fake, steps) = scenario(dest.to_str().unwrap(), 2);
        let mut j = Journal::new(&fake);
        let err = apply(&mut j, &dir.missing, &dest, b"new", true, &steps, &[]).unwrap_err();
        assert!(dest.exists());
        j.rollback(err);
        assert!(!t.path().join("a").exists());
    }

    #[test]
    fn install_dir_is_resolved_through_links() {
        let t = TempDir::new();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
        let dir = plan_install_dir(&t.path().join("link/sub")).unwrap();
        let real = std::fs::canonicalize(t.path()).unwrap();
        assert_eq!(dir.path, real.join("real/sub"));
        assert_eq!(dir.missing, vec![real.join("real/sub")]);
        let file = t.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(plan_install_dir(&file.join("x")).is_err());
    }

    #[test]
    fn the_plan_registers_keeps_enables_and_replaces_without_a_kernel() {
        let a = arch::by_name("aarch64").unwrap();
        let s390x = arch::by_name("s390x").unwrap();
        let riscv = arch::by_name("riscv64").unwrap();
        let dest = "/i/qemu-shim-interp";
        let emulators = vec![
            (s390x, PathBuf::from("/e/qemu-s390x-static")),
            (a, PathBuf::from("/e/qemu-aarch64-static")),
            (riscv, PathBuf::from("/e/qemu-riscv64-static")),
        ];
        let by_path = vec![("riscv64".to_string(), "not a static-pie".to_string())];
        let want = Want {
            dest,
            carry: true,
            by_path: &by_path,
            pin: true,
            credentials: true,
            others: &[s390x],
        };
        // aarch64's entry as install made it, disabled; s390x's as made;
        // a stand-in a killed upgrade left.
        let mut off = binfmt::register_line(a, dest, ENTRY_FLAGS).expected_entry();
        off.enabled = false;
        let same = binfmt::register_line(s390x, dest, ENTRY_FLAGS).expected_entry();
        let stray = binfmt::register_line(a, dest, ENTRY_FLAGS).expected_entry();
        let existing = vec![
            ("qemu-shim-aarch64.next".to_string(), stray),
            ("qemu-shim-s390x".to_string(), same),
            ("qemu-shim-aarch64".to_string(), off),
        ];
        let plan = plan_entries(&emulators, &want, &existing, false).unwrap();
        let got: Vec<(&str, &Action, String, bool)> = plan
            .steps
            .iter()
            .map(|s| (s.arch.name, &s.action, s.line.flags.to_string(), s.carried))
            .collect();
        assert_eq!(
            got,
            [
                ("s390x", &Action::Unchanged, "POCF".to_string(), true),
                ("aarch64", &Action::Enable, "POCF".to_string(), false),
                // Started by path: neither O nor C.
                ("riscv64", &Action::Register, "PF".to_string(), false),
            ]
        );
        assert_eq!(plan.strays.len(), 1);
        assert_eq!(plan.strays[0].0, "qemu-shim-aarch64.next");
        // A new file replaces every entry on it.
        let plan = plan_entries(&emulators, &want, &existing, true).unwrap();
        assert!(plan.steps[..2].iter().all(
            |s| matches!(&s.action, Action::Replace(_, why) if why == "interpreter file changed")
        ));
        // A path binfmt_misc refuses is an error before anything is done.
        let long = format!("/{}/qemu-shim-interp", "d".repeat(2000));
        let want = Want {
            dest: &long,
            ..want
        };
        let e = plan_entries(&emulators, &want, &existing, false).unwrap_err();
        assert!(
            e.message().starts_with("cannot register qemu-shim-s390x: "),
            "{e:?}"
        );
    }

    /// Issue 14, item 2: the whole install (file, entries, binfmt.d file,
    /// install record) is planned from what was read, without a kernel.
    #[test]
    fn the_plan_decides_file_entries_binfmt_d_and_record_from_what_was_read() {
        let a = aarch64();
        let dest = "/i/qemu-shim-interp";
        let emulators = vec![(a, PathBuf::from("/e/qemu-aarch64-static"))];
        let line = binfmt::register_line(a, dest, ENTRY_FLAGS);
        let existing = vec![("qemu-shim-aarch64".to_string(), line.expected_entry())];
        let stamp = |ino| sources::FileStamp {
            dev: 1,
            ino,
            size: 2,
            mtime: [3, 0],
            ctime: [4, 0],
        };
        let sources = vec![sources::Source {
            arch: "aarch64".into(),
            path: "/e/qemu-aarch64-static".into(),
            carried: true,
            stamp: stamp(9),
            sha256: Some("ab".into()),
            version: None,
        }];
        let old_record = record(stamp(7), &sources);
        let persisted = persist::render(std::slice::from_ref(&line));
        let base = Inputs {
            emulators: &emulators,
            want: Want {
                dest,
                carry: true,
                by_path: &[],
                pin: true,
                credentials: true,
                others: &[],
            },
            existing: &existing,
            file_changed: false,
            persist: false,
            old_persist: None,
            old_record: Some(&old_record),
            sources: &sources,
            dest_stamp: Some(stamp(7)),
        };
        // Installed as wanted: nothing to do, no binfmt.d file to keep.
        let p = plan(&base).unwrap();
        assert!(p.unchanged && !p.write_file && !p.write_record, "{p:?}");
        assert_eq!(p.persist, None);
        // The same bytes under a new stamp (a package reinstalled): only
        // the record is rewritten.
        let p = plan(&Inputs {
            dest_stamp: Some(stamp(8)),
            ..base
        })
        .unwrap();
        assert!(p.unchanged && p.write_record, "{p:?}");
        // A new file: written, its entries replaced, a record for it.
        let p = plan(&Inputs {
            file_changed: true,
            dest_stamp: None,
            ..base
        })
        .unwrap();
        assert!(!p.unchanged && p.write_file && p.write_record, "{p:?}");
        assert!(matches!(p.steps[0].action, Action::Replace(..)));
        // --persist writes the binfmt.d file once, then finds it in step.
        let p = plan(&Inputs {
            persist: true,
            ..base
        })
        .unwrap();
        assert_eq!(p.persist, Some((persisted.clone(), true)));
        assert!(!p.unchanged);
        let p = plan(&Inputs {
            persist: true,
            old_persist: Some(&persisted),
            ..base
        })
        .unwrap();
        assert_eq!(p.persist, Some((persisted.clone(), false)));
        assert!(p.unchanged);
        // Without --persist, a binfmt.d file naming this interpreter file
        // is kept in step; one naming another is none of ours.
        let p = plan(&Inputs {
            old_persist: Some(&persisted),
            ..base
        })
        .unwrap();
        assert_eq!(p.persist, Some((persisted.clone(), false)));
        let other = persisted.replace(dest, "/elsewhere/qemu-shim-interp");
        let p = plan(&Inputs {
            old_persist: Some(&other),
            ..base
        })
        .unwrap();
        assert_eq!(p.persist, None);
    }

    #[test]
    fn decide_tells_unchanged_enable_and_replace_apart() {
        let line = named("qemu-shim-a", "/i");
        let same = line.expected_entry();
        assert_eq!(decide(&line, &same, false, None), Action::Unchanged);
        let mut off = same.clone();
        off.enabled = false;
        assert_eq!(decide(&line, &off, false, None), Action::Enable);
        assert!(
            matches!(decide(&line, &same, true, None), Action::Replace(_, why) if why == "interpreter file changed")
        );
        assert!(
            matches!(decide(&line, &same, false, Some("qemu-aarch64".into())), Action::Replace(_, why) if why == "qemu-aarch64 was tried first")
        );
        let other = named("qemu-shim-a", "/elsewhere").expected_entry();
        assert!(
            matches!(decide(&line, &other, false, None), Action::Replace(_, why) if why == "was /elsewhere")
        );
        let mut flags = named("qemu-shim-a", "/i");
        flags.flags = "OCF".parse().unwrap();
        assert!(
            matches!(decide(&line, &flags.expected_entry(), false, None), Action::Replace(_, why) if why == "flags were OCF")
        );
    }

    #[test]
    fn entries_carry_credentials_and_pin_by_default() {
        let l = register_line(aarch64(), "/usr/local/lib/qemu-shim/qemu-shim-interp");
        assert_eq!(l.flags.to_string(), "POCF");
        assert_eq!(entry_flags(true, true, true), ENTRY_FLAGS);
        assert_eq!(entry_flags(true, true, false).to_string(), "POF");
        assert_eq!(entry_flags(true, false, true).to_string(), "POC");
        assert_eq!(entry_flags(true, false, false).to_string(), "PO");
        // By path the interpreter refuses AT_SECURE: no C (and no O)
        // whatever was asked.
        assert_eq!(entry_flags(false, true, true).to_string(), "PF");
        assert_eq!(entry_flags(false, true, false).to_string(), "PF");
        assert_eq!(entry_flags(false, false, true).to_string(), "P");
        assert_eq!(l.name, "qemu-shim-aarch64");
        l.validate().unwrap();
    }

    #[test]
    fn leftovers_of_dead_writers_go_and_the_rest_stays() {
        let t = TempDir::new();
        let me = std::process::id();
        // pid_max is at most 2^22: 999999999 never runs.
        let names = [
            ".qemu-shim-interp.999999999.tmp".to_string(),
            ".qemu-shim-interp.999999998.old.tmp".to_string(),
            format!(".qemu-shim-interp.{me}.tmp"),
            format!(".qemu-shim-interp.{me}.old.tmp"),
            ".qemu-shim-interp.x1.tmp".to_string(),
            ".qemu-shim-interp.x1.old.tmp".to_string(),
            ".qemu-shim-interp.old.tmp".to_string(),
            ".qemu-shim-interp..tmp".to_string(),
            "qemu-shim-interp".to_string(),
            ".other.999999999.tmp".to_string(),
        ];
        for n in &names {
            std::fs::write(t.path().join(n), b"x").unwrap();
        }
        let removed = remove_leftovers(t.path());
        assert_eq!(
            removed,
            vec![t.path().join(&names[1]), t.path().join(&names[0])]
        );
        for n in &names[2..] {
            assert!(t.path().join(n).exists(), "{n} removed");
        }
        assert!(remove_leftovers(&t.path().join("missing")).is_empty());
    }

    #[test]
    fn a_second_run_waits_for_the_table_lock_and_says_so() {
        let t = TempDir::new();
        let bf = Binfmt::new(t.path());
        let mut out = Vec::new();
        let first = lock_table(&bf, &mut out).unwrap();
        assert!(out.is_empty());
        let (tx, rx) = std::sync::mpsc::channel();
        let root = t.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let mut out = Vec::new();
            let lock = lock_table(&Binfmt::new(&root), &mut out).unwrap();
            tx.send(()).unwrap();
            drop(lock);
            String::from_utf8(out).unwrap()
        });
        // Held by the first: the second does not get it.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err());
        drop(first);
        rx.recv().unwrap();
        let said = second.join().unwrap();
        assert!(
            said.starts_with("note: waiting for another qemu-shim"),
            "{said}"
        );
    }

    #[test]
    fn written_file_replaces_the_old_one_whole() {
        let t = TempDir::new();
        let dest = t.path().join("f");
        std::fs::write(&dest, b"old").unwrap();
        write_file(&dest, b"new contents").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new contents");
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
