//! `qemu-shim uninstall`: remove qemu-shim's entries, then the interpreter
//! files no entry of ours uses any more. Entries not named `qemu-shim-*`
//! are never touched.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::Arch;
use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::format::{EntryFile, RegisterLine};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::interp;
use crate::persist;
use crate::root;
use crate::select;

/// What `uninstall` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Arch or platform names; empty: all of our entries.
    pub arches: Vec<String>,
    /// Where an unused interpreter file may also be left.
    pub install_dir: PathBuf,
    /// Only entries whose interpreter is the file in `install_dir`.
    pub only_install_dir: bool,
    pub binfmt_dir: Option<PathBuf>,
    /// Where `install --persist` wrote its binfmt.d file.
    pub binfmt_d_dir: PathBuf,
}

/// What an uninstall did: `uninstall --json`'s report, and what
/// [`write_text`] renders.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Entries removed.
    pub removed: Vec<String>,
    /// Entries asked for that were not registered.
    pub not_registered: Vec<String>,
    /// binfmt_misc is not mounted at the default root: no entry was
    /// removed (the root, and why it is not mounted).
    pub not_mounted: Option<NotMounted>,
    /// Files removed: interpreter files, leftovers of killed runs, the
    /// install directory, the binfmt.d file.
    pub files_removed: Vec<String>,
    /// Of `files_removed`, those a killed run left.
    pub leftovers_removed: Vec<String>,
    /// Interpreter files kept because entries of ours still use them.
    pub files_kept: Vec<String>,
    /// Of `files_kept`, those that still carry the emulators of the
    /// entries removed, with why they could not be rebuilt without them.
    pub not_rebuilt: Vec<NotRebuilt>,
    /// Interpreter files still used, rewritten without the emulators no
    /// entry of ours uses any more.
    pub files_shrunk: Vec<Shrunk>,
    /// The binfmt.d file, when it was rewritten with fewer lines.
    pub binfmt_d_rewritten: Option<String>,
    /// `--only-install-dir`: the only interpreter file whose entries were
    /// considered.
    pub only_interpreter: Option<String>,
}

/// Why nothing was removed from the table: see [`Summary`].
#[derive(Debug, Serialize)]
pub struct NotMounted {
    pub root: String,
    pub why: String,
}

/// A file kept with emulators no entry uses: see [`Summary`].
#[derive(Debug, Serialize)]
pub struct NotRebuilt {
    pub path: String,
    pub why: String,
}

/// An interpreter file rewritten without some emulators.
#[derive(Debug, Serialize)]
pub struct Shrunk {
    pub path: String,
    /// The arches whose emulators it no longer carries or names.
    pub dropped: Vec<String>,
    /// Its size before and after, in bytes.
    pub size_before: u64,
    pub size_after: u64,
    /// Our entries on it, registered again so each pins the new file.
    pub registered_again: Vec<String>,
}

/// Runs `uninstall`: plans which entries go, removes them, then the files
/// they leave unused, prunes the binfmt.d file, and shrinks the files
/// still used. `out` gets only the note printed while waiting for the
/// table's lock; the report is returned as data ([`write_text`] renders
/// it).
pub fn uninstall(opts: &Options, out: &mut dyn Write) -> Result<Summary> {
    // `all` (or nothing named) is every entry of ours.
    let named = match select::names(&opts.arches)? {
        Some(names) => select::resolve(&names, None)?,
        None => Vec::new(),
    };
    let bf = root::open_for_read(opts.binfmt_dir.as_deref());
    let mounted = bf.is_mounted();
    if !mounted && opts.binfmt_dir.is_some() {
        return Err(root::not_mounted(bf.root()));
    }
    // Held until this run ends, as by install.
    let mut lock = if mounted {
        Some(crate::files::lock_table(&bf, out)?)
    } else {
        None
    };
    let existing = if mounted { bf.list()? } else { Vec::new() };
    let install_dir = fs::canonicalize(&opts.install_dir).unwrap_or(opts.install_dir.clone());
    let plan = plan(opts, &named, &existing, &install_dir);

    let mut sum = Summary {
        not_registered: plan.not_registered.clone(),
        not_mounted: (!mounted).then(|| NotMounted {
            root: bf.root().display().to_string(),
            why: root::unmounted_why().to_string(),
        }),
        only_interpreter: opts
            .only_install_dir
            .then(|| plan.own_file[0].display().to_string()),
        ..Summary::default()
    };
    remove_entries(&bf, &plan.remove, &mut sum)?;
    if named.is_empty() {
        // What a killed install left would keep the directory.
        for f in crate::files::remove_leftovers(&install_dir) {
            sum.files_removed.push(f.display().to_string());
            sum.leftovers_removed.push(f.display().to_string());
        }
    }
    let remaining = if mounted { bf.list()? } else { Vec::new() };
    let shrinking = remove_unused_files(&plan.files, &remaining, &install_dir, &mut sum)?;
    // Before shrinking: install keeps the binfmt.d file in step.
    prune_binfmt_d(opts, &named, &plan, &mut sum)?;
    for (f, users) in &shrinking {
        match shrink(f, users, opts, &bf, &mut lock, out) {
            Ok(Some(s)) => {
                sum.files_shrunk.push(s);
                continue;
            }
            Ok(None) => {}
            Err(why) => sum.not_rebuilt.push(NotRebuilt {
                path: f.display().to_string(),
                why: why.message().to_string(),
            }),
        }
        sum.files_kept.push(f.display().to_string());
    }
    Ok(sum)
}

/// What uninstall removes, decided from the table as it is.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The install directory's file, as given and as resolved: an entry
    /// names the path install wrote.
    own_file: [PathBuf; 2],
    /// Entries to remove, with the interpreter file each names.
    remove: Vec<(String, String)>,
    /// Entries asked for that are not registered.
    not_registered: Vec<String>,
    /// Interpreter files to remove once no entry of ours uses them: those
    /// the entries removed use, and, when removing everything, the one in
    /// the install directory (a failed or partial earlier run may have
    /// left it without entries).
    files: BTreeSet<PathBuf>,
}

/// Plans which entries go (`named` arches, or every entry of ours) and
/// which files may go with them: a pure function of the table.
fn plan(
    opts: &Options,
    named: &[&'static Arch],
    existing: &[(String, EntryFile)],
    install_dir: &Path,
) -> Plan {
    let own_file = [
        opts.install_dir.join(interp::FILE_NAME),
        install_dir.join(interp::FILE_NAME),
    ];
    let wanted = |e: &EntryFile| {
        !opts.only_install_dir || own_file.iter().any(|f| Path::new(&e.interpreter) == f)
    };
    let targets: Vec<String> = if named.is_empty() {
        existing
            .iter()
            .filter(|(n, e)| n.starts_with(binfmt::OWNED_PREFIX) && wanted(e))
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        named
            .iter()
            .map(|a| binfmt::entry_name(a.name))
            // Named, but another install's: not ours to remove here.
            .filter(|n| existing.iter().all(|(en, e)| en != n || wanted(e)))
            .collect()
    };
    let mut remove = Vec::new();
    let mut not_registered = Vec::new();
    for name in targets {
        match existing.iter().find(|(n, _)| *n == name) {
            Some((_, e)) => remove.push((name, e.interpreter.clone())),
            None => not_registered.push(name),
        }
    }
    let mut files: BTreeSet<PathBuf> = remove.iter().map(|(_, i)| PathBuf::from(i)).collect();
    if named.is_empty() {
        files.insert(install_dir.join(interp::FILE_NAME));
    }
    Plan {
        own_file,
        remove,
        not_registered,
        files,
    }
}

/// Removes the planned entries; a failure says how many went before.
fn remove_entries(bf: &Binfmt, remove: &[(String, String)], sum: &mut Summary) -> Result<()> {
    for (name, _) in remove {
        bf.remove(name).map_err(|err| {
            let e = Error::from(err);
            match sum.removed.len() {
                0 => e,
                n => e.context(format!("removed {n} entries, then")),
            }
        })?;
        sum.removed.push(name.clone());
    }
    Ok(())
}

/// An interpreter file still used, and the entries of ours that use it.
type StillUsed = (PathBuf, Vec<(String, EntryFile)>);

/// Removes the interpreter files among `files` that no entry of ours in
/// `remaining` uses (and the install directory once empty); returns those
/// still used, with their users: removing entries leaves their emulators
/// in the file, which is rebuilt without them, or kept saying why not
/// (issue 18, item 2).
fn remove_unused_files(
    files: &BTreeSet<PathBuf>,
    remaining: &[(String, EntryFile)],
    install_dir: &Path,
    sum: &mut Summary,
) -> Result<Vec<StillUsed>> {
    let mut shrinking = Vec::new();
    for f in files {
        let users: Vec<(String, EntryFile)> = remaining
            .iter()
            .filter(|(n, e)| n.starts_with(binfmt::OWNED_PREFIX) && Path::new(&e.interpreter) == f)
            .cloned()
            .collect();
        if !users.is_empty() {
            shrinking.push((f.clone(), users));
            continue;
        }
        if remove_interpreter(f)? {
            sum.files_removed.push(f.display().to_string());
            if let Some(dir) = f.parent() {
                // The install directory goes too once empty; any other file
                // in it keeps it.
                if dir == install_dir && fs::remove_dir(dir).is_ok() {
                    sum.files_removed.push(dir.display().to_string());
                }
            }
        }
    }
    Ok(shrinking)
}

/// The binfmt.d file: the lines of the entries removed go, and those on
/// an interpreter file that is gone (entries a reboot lost); once no line
/// is left, the file goes. Lines on other interpreter files stay: they are
/// another install's (a test's private table, say).
fn prune_binfmt_d(
    opts: &Options,
    named: &[&'static Arch],
    plan: &Plan,
    sum: &mut Summary,
) -> Result<()> {
    let persist_path = persist::path_in(&opts.binfmt_d_dir);
    let Some(text) = persist::read(&persist_path)? else {
        return Ok(());
    };
    let all = persist::lines_of(&text);
    let keep = lines_to_keep(&all, named, plan, |p| p.exists());
    if keep.is_empty() {
        fs::remove_file(&persist_path)
            .map_err(|e| Error::io("cannot remove", &persist_path, &e))?;
        sum.files_removed.push(persist_path.display().to_string());
    } else if keep.len() < all.len() {
        crate::files::write_file_mode(&persist_path, persist::render(&keep).as_bytes(), 0o644)?;
        sum.binfmt_d_rewritten = Some(persist_path.display().to_string());
    }
    Ok(())
}

/// The binfmt.d lines that stay (see [`prune_binfmt_d`]); `exists` tells
/// whether an interpreter file is still there.
fn lines_to_keep(
    all: &[RegisterLine],
    named: &[&'static Arch],
    plan: &Plan,
    exists: impl Fn(&Path) -> bool,
) -> Vec<RegisterLine> {
    all.iter()
        .filter(|l| {
            let removed_now = plan
                .remove
                .iter()
                .any(|(n, i)| *n == l.name && *i == l.interpreter);
            let file_gone = (named.is_empty()
                || named.iter().any(|a| binfmt::entry_name(a.name) == l.name))
                && plan.files.contains(Path::new(&l.interpreter))
                && !exists(Path::new(&l.interpreter));
            !(removed_now || file_gone)
        })
        .cloned()
        .collect()
}

/// Writes the report's text: one line per entry and per file, in the
/// order the run went (entries, files removed, the binfmt.d file, files
/// still used, by path), or that there was nothing to do.
pub fn write_text(out: &mut dyn Write, sum: &Summary) {
    let mut lines = Vec::new();
    for name in &sum.removed {
        lines.push(format!("removed        {name}"));
    }
    for name in &sum.not_registered {
        lines.push(format!("not registered {name}"));
    }
    if let Some(n) = &sum.not_mounted {
        lines.push(format!(
            "binfmt_misc is not mounted at {}: no entries removed ({})",
            n.root, n.why
        ));
    }
    for f in &sum.files_removed {
        if sum.leftovers_removed.contains(f) {
            lines.push(format!("removed        {f} (left by an interrupted run)"));
        } else {
            lines.push(format!("removed        {f}"));
        }
    }
    if let Some(f) = &sum.binfmt_d_rewritten {
        lines.push(format!(
            "rewritten      {f} (without the lines of the entries removed)"
        ));
    }
    // Files still used, in the order they were handled (by path).
    let mut used: Vec<(&str, String)> = sum
        .files_shrunk
        .iter()
        .map(|s| {
            let line = format!(
                "rewritten      {} without the emulators for {} ({} -> {})",
                s.path,
                s.dropped.join(", "),
                crate::report::size_text(s.size_before),
                crate::report::size_text(s.size_after)
            );
            (s.path.as_str(), line)
        })
        .collect();
    for f in &sum.files_kept {
        let line = match sum.not_rebuilt.iter().find(|n| n.path == *f) {
            None => format!("kept           {f} (still used)"),
            Some(n) => format!(
                "kept           {f} (still used; it still carries the emulators of the entries removed, as it cannot be rebuilt: {})",
                n.why
            ),
        };
        used.push((f.as_str(), line));
    }
    used.sort_by(|a, b| Path::new(a.0).cmp(Path::new(b.0)));
    lines.extend(used.into_iter().map(|(_, l)| l));
    if lines.is_empty() {
        lines.push(match &sum.only_interpreter {
            Some(f) => format!("nothing to do: no qemu-shim entries use {f}"),
            None => "nothing to do: no qemu-shim entries".into(),
        });
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

/// Rebuilds the interpreter file `f`, which `users` (entries of ours)
/// still use, without the emulators none of them runs: the file install
/// would write for those entries, from the files they were installed from
/// and with the same options (carried, pre-relocated, flags). Install's
/// own steps do it: the new file is renamed into place and every entry on
/// it is registered again, so each pins the new file (with F an entry
/// holds the file it was registered with: left alone, the old entries
/// would keep the old file's blocks on disk, and it is freed only once the
/// last of them is replaced). `Ok(None)`: it carries nothing unused.
/// `Err`: why it cannot be rebuilt (an emulator's file gone, say).
fn shrink(
    f: &Path,
    users: &[(String, EntryFile)],
    opts: &Options,
    bf: &Binfmt,
    lock: &mut Option<crate::files::TableLock>,
    out: &mut dyn Write,
) -> Result<Option<Shrunk>> {
    let spec = interp::read_spec_file(f)?;
    // Started by path, an emulator costs a line of the table: nothing to
    // gain from rewriting the file and registering every entry again.
    if !spec.carry {
        return Ok(None);
    }
    let used: Vec<&str> = users
        .iter()
        .filter_map(|(n, _)| crate::entries::owned_arch(n))
        .map(|a| a.name)
        .collect();
    let dropped: Vec<String> = spec
        .emulators
        .iter()
        .map(|(a, _)| a.clone())
        .filter(|a| !used.contains(&a.as_str()))
        .collect();
    let Some((_, first)) = users.first() else {
        return Ok(None);
    };
    if dropped.is_empty() {
        return Ok(None);
    }
    let (Some(dir), true) = (
        f.parent(),
        f.file_name() == Some(interp::FILE_NAME.as_ref()),
    ) else {
        return Err(Error::new(format!("it is not named {}", interp::FILE_NAME)));
    };
    let size_before = fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    // Install takes the table's lock itself (a second flock of this
    // process would wait for the first): ours is handed over, then taken
    // back for what follows.
    let had_lock = lock.take().is_some();
    let rebuilt = crate::install::install(
        &crate::install::Options {
            arches: Vec::new(),
            rebuild_only: true,
            emulator_dirs: Vec::new(),
            install_dir: dir.to_path_buf(),
            interpreter: None,
            binfmt_dir: opts.binfmt_dir.clone(),
            carry: spec.carry,
            pin: first.raw_flags.contains('F'),
            credentials: first.raw_flags.contains('C'),
            prelink: spec.prelink_base.is_some(),
            persist: false,
            binfmt_d_dir: opts.binfmt_d_dir.clone(),
            config: None,
            allow_untrusted: false,
            progress: false,
            quiet: true,
            verbose: false,
        },
        &mut io::sink(),
    );
    if had_lock {
        *lock = Some(crate::files::lock_table(bf, out)?);
    }
    let rebuilt = rebuilt?;
    Ok(Some(Shrunk {
        path: f.display().to_string(),
        dropped,
        size_before,
        size_after: rebuilt.interpreter_size,
        registered_again: rebuilt
            .entries
            .iter()
            .filter(|e| e.action == "replaced")
            .map(|e| e.name.clone())
            .collect(),
    }))
}

/// Deletes `path` if it is an interpreter file qemu-shim installed: named
/// like one and holding a dispatch table. Returns whether it was deleted.
fn remove_interpreter(path: &Path) -> Result<bool> {
    if path.file_name() != Some(interp::FILE_NAME.as_ref()) {
        return Ok(false);
    }
    let image = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("cannot read", path, &e)),
    };
    if interp::region(&image).is_err() {
        return Ok(false);
    }
    fs::remove_file(path).map_err(|e| Error::io("cannot remove", path, &e))?;
    // Its install record goes with it (it describes no other file).
    let record = crate::sources::path_for(path);
    match fs::remove_file(&record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io("cannot remove", &record, &e))
        }
        _ => {}
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_shim_registry::arch;
    use qemu_shim_registry::format::Flags;

    fn opts(only_install_dir: bool) -> Options {
        Options {
            arches: Vec::new(),
            install_dir: PathBuf::from("/i"),
            only_install_dir,
            binfmt_dir: None,
            binfmt_d_dir: PathBuf::from("/etc/binfmt.d"),
        }
    }

    fn entry(arch: &str, interp: &str) -> (String, EntryFile) {
        let a = arch::by_name(arch).unwrap();
        let line = binfmt::register_line(a, interp, Flags::P.union(Flags::F));
        (line.name.clone(), line.expected_entry())
    }

    /// Issue 14, item 2: what goes is planned from the table alone.
    #[test]
    fn the_plan_takes_ours_only_and_the_files_they_leave() {
        let mine = "/i/qemu-shim-interp";
        let theirs = "/other/qemu-shim-interp";
        let mut foreign = entry("riscv64", "/usr/bin/qemu-riscv64");
        foreign.0 = "qemu-riscv64".into();
        let existing = vec![entry("aarch64", mine), entry("s390x", theirs), foreign];
        // Everything of ours; the install dir's file too.
        let p = plan(&opts(false), &[], &existing, Path::new("/i"));
        let names: Vec<&str> = p.remove.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["qemu-shim-aarch64", "qemu-shim-s390x"]);
        let files: Vec<&Path> = p.files.iter().map(PathBuf::as_path).collect();
        assert_eq!(files, [Path::new(mine), Path::new(theirs)]);
        // --only-install-dir: another install's entry stays.
        let p = plan(&opts(true), &[], &existing, Path::new("/i"));
        assert_eq!(p.remove, [("qemu-shim-aarch64".into(), mine.into())]);
        // Named: one registered, one not, one another install's.
        let named: Vec<&'static Arch> = ["s390x", "ppc64le", "aarch64"]
            .iter()
            .map(|n| arch::by_name(n).unwrap())
            .collect();
        let p = plan(&opts(true), &named, &existing, Path::new("/i"));
        assert_eq!(p.remove, [("qemu-shim-aarch64".into(), mine.into())]);
        assert_eq!(p.not_registered, ["qemu-shim-ppc64le"]);
        assert_eq!(p.files.len(), 1, "only the file the removed entry used");
    }

    #[test]
    fn binfmt_d_loses_the_lines_removed_and_those_on_files_gone() {
        let mine = "/i/qemu-shim-interp";
        let existing = vec![entry("aarch64", mine)];
        let p = plan(&opts(false), &[], &existing, Path::new("/i"));
        let line = |a: &str, interp: &str| {
            binfmt::register_line(arch::by_name(a).unwrap(), interp, Flags::P)
        };
        let all = vec![
            line("aarch64", mine),
            // Lost by a reboot, its file now gone.
            line("s390x", mine),
            // Another install's.
            line("riscv64", "/other/qemu-shim-interp"),
        ];
        let keep = lines_to_keep(&all, &[], &p, |_| false);
        assert_eq!(keep, [all[2].clone()]);
        // The file still there: only the removed entry's line goes.
        let keep = lines_to_keep(&all, &[], &p, |_| true);
        assert_eq!(keep, all[1..]);
    }

    #[test]
    fn the_text_is_rendered_from_the_data_alone() {
        let text = |s: &Summary| {
            let mut out = Vec::new();
            write_text(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            text(&Summary::default()),
            "nothing to do: no qemu-shim entries\n"
        );
        let s = Summary {
            only_interpreter: Some("/i/qemu-shim-interp".into()),
            ..Summary::default()
        };
        assert_eq!(
            text(&s),
            "nothing to do: no qemu-shim entries use /i/qemu-shim-interp\n"
        );
        let s = Summary {
            removed: vec!["qemu-shim-aarch64".into()],
            not_registered: vec!["qemu-shim-s390x".into()],
            files_removed: vec!["/i/x.tmp".into(), "/etc/binfmt.d/qemu-shim.conf".into()],
            leftovers_removed: vec!["/i/x.tmp".into()],
            files_kept: vec!["/b/qemu-shim-interp".into(), "/c/qemu-shim-interp".into()],
            not_rebuilt: vec![NotRebuilt {
                path: "/c/qemu-shim-interp".into(),
                why: "gone".into(),
            }],
            files_shrunk: vec![Shrunk {
                path: "/a/qemu-shim-interp".into(),
                dropped: vec!["riscv64".into()],
                size_before: 2048,
                size_after: 1024,
                registered_again: vec![],
            }],
            ..Summary::default()
        };
        assert_eq!(
            text(&s),
            "removed        qemu-shim-aarch64\n\
             not registered qemu-shim-s390x\n\
             removed        /i/x.tmp (left by an interrupted run)\n\
             removed        /etc/binfmt.d/qemu-shim.conf\n\
             rewritten      /a/qemu-shim-interp without the emulators for riscv64 (2.0 KiB -> 1.0 KiB)\n\
             kept           /b/qemu-shim-interp (still used)\n\
             kept           /c/qemu-shim-interp (still used; it still carries the emulators of the entries removed, as it cannot be rebuilt: gone)\n"
        );
    }
}
