//! `qemu-shim uninstall`: remove qemu-shim's entries, then the interpreter
//! files no entry of ours uses any more. Entries not named `qemu-shim-*`
//! are never touched.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::format::EntryFile;
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

/// What an uninstall did: `uninstall --json`'s report.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Entries removed.
    pub removed: Vec<String>,
    /// Entries asked for that were not registered.
    pub not_registered: Vec<String>,
    /// Files removed: interpreter files, leftovers of killed runs, the
    /// install directory, the binfmt.d file.
    pub files_removed: Vec<String>,
    /// Interpreter files kept because entries of ours still use them.
    pub files_kept: Vec<String>,
    /// Interpreter files still used, rewritten without the emulators no
    /// entry of ours uses any more.
    pub files_shrunk: Vec<Shrunk>,
    /// The binfmt.d file, when it was rewritten with fewer lines.
    pub binfmt_d_rewritten: Option<String>,
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

/// Runs `uninstall`, writing the report to `out`; returns it as data too.
pub fn uninstall(opts: &Options, out: &mut dyn Write) -> Result<Summary> {
    let mut sum = Summary::default();
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
    // The install directory's file, as given and as resolved: an entry
    // names the path install wrote.
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

    let mut lines = Vec::new();
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut removed = 0usize;
    // (name, interpreter) of each entry removed: its line leaves the
    // binfmt.d file.
    let mut gone: Vec<(String, String)> = Vec::new();
    for name in &targets {
        match existing.iter().find(|(n, _)| n == name) {
            Some((_, e)) => {
                bf.remove(name).map_err(|err| {
                    let e = Error::from(err);
                    if removed > 0 {
                        e.context(format!("removed {removed} entries, then"))
                    } else {
                        e
                    }
                })?;
                removed += 1;
                files.insert(PathBuf::from(&e.interpreter));
                gone.push((name.clone(), e.interpreter.clone()));
                lines.push(format!("removed        {name}"));
                sum.removed.push(name.clone());
            }
            None => {
                lines.push(format!("not registered {name}"));
                sum.not_registered.push(name.clone());
            }
        }
    }
    if !mounted {
        lines.push(format!(
            "binfmt_misc is not mounted at {}: no entries removed ({})",
            bf.root().display(),
            crate::root::unmounted_why()
        ));
    }

    // Interpreter files: those the removed entries used, and, when removing
    // everything, the one in the install directory (a failed or partial
    // earlier run may have left it without entries).
    if named.is_empty() {
        files.insert(install_dir.join(interp::FILE_NAME));
        // What a killed install left would keep the directory.
        for f in crate::files::remove_leftovers(&install_dir) {
            sum.files_removed.push(f.display().to_string());
            lines.push(format!(
                "removed        {} (left by an interrupted run)",
                f.display()
            ));
        }
    }
    let remaining = if mounted { bf.list()? } else { Vec::new() };
    let mut shrinking: Vec<(PathBuf, Vec<(String, EntryFile)>)> = Vec::new();
    for f in &files {
        let in_use = remaining
            .iter()
            .any(|(n, e)| n.starts_with(binfmt::OWNED_PREFIX) && Path::new(&e.interpreter) == f);
        if in_use {
            // Removing entries leaves their emulators in the file: it is
            // rebuilt without them, or kept saying why not (issue 18, item 2).
            let users: Vec<&(String, EntryFile)> = remaining
                .iter()
                .filter(|(n, e)| {
                    n.starts_with(binfmt::OWNED_PREFIX) && Path::new(&e.interpreter) == f
                })
                .collect();
            // After the binfmt.d file below: install keeps it in step.
            shrinking.push((f.clone(), users.into_iter().cloned().collect::<Vec<_>>()));
            continue;
        }
        if remove_interpreter(f)? {
            lines.push(format!("removed        {}", f.display()));
            sum.files_removed.push(f.display().to_string());
            if let Some(dir) = f.parent() {
                // The install directory goes too once empty; any other file
                // in it keeps it.
                if dir == install_dir && fs::remove_dir(dir).is_ok() {
                    lines.push(format!("removed        {}", dir.display()));
                    sum.files_removed.push(dir.display().to_string());
                }
            }
        }
    }
    // The binfmt.d file: the lines of the entries removed go, and those on
    // an interpreter file that is gone (entries a reboot lost); once no
    // line is left, the file goes. Lines on other interpreter files stay:
    // they are another install's (a test's private table, say).
    let persist_path = persist::path_in(&opts.binfmt_d_dir);
    if let Some(text) = persist::read(&persist_path)? {
        let all = persist::lines_of(&text);
        let keep: Vec<_> = all
            .iter()
            .filter(|l| {
                let removed_now = gone
                    .iter()
                    .any(|(n, i)| *n == l.name && *i == l.interpreter);
                let file_gone = (named.is_empty()
                    || named.iter().any(|a| binfmt::entry_name(a.name) == l.name))
                    && files.contains(Path::new(&l.interpreter))
                    && !Path::new(&l.interpreter).exists();
                !(removed_now || file_gone)
            })
            .cloned()
            .collect();
        if keep.is_empty() {
            fs::remove_file(&persist_path)
                .map_err(|e| Error::io("cannot remove", &persist_path, &e))?;
            lines.push(format!("removed        {}", persist_path.display()));
            sum.files_removed.push(persist_path.display().to_string());
        } else if keep.len() < all.len() {
            crate::files::write_file_mode(&persist_path, persist::render(&keep).as_bytes(), 0o644)?;
            lines.push(format!(
                "rewritten      {} (without the lines of the entries removed)",
                persist_path.display()
            ));
            sum.binfmt_d_rewritten = Some(persist_path.display().to_string());
        }
    }
    for (f, users) in &shrinking {
        match shrink(f, users, opts, &bf, &mut lock, out) {
            Ok(None) => lines.push(format!("kept           {} (still used)", f.display())),
            Ok(Some(s)) => {
                lines.push(format!(
                    "rewritten      {} without the emulators for {} ({} -> {})",
                    s.path,
                    s.dropped.join(", "),
                    crate::install::size_text(s.size_before),
                    crate::install::size_text(s.size_after)
                ));
                sum.files_shrunk.push(s);
                continue;
            }
            Err(why) => lines.push(format!(
                "kept           {} (still used; it still carries the emulators of the entries removed, as it cannot be rebuilt: {})",
                f.display(),
                why.message()
            )),
        }
        sum.files_kept.push(f.display().to_string());
    }
    if lines.is_empty() {
        lines.push(if opts.only_install_dir {
            format!(
                "nothing to do: no qemu-shim entries use {}",
                own_file[0].display()
            )
        } else {
            "nothing to do: no qemu-shim entries".into()
        });
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(sum)
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
        .filter_map(|(n, _)| crate::install::owned_arch(n))
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
