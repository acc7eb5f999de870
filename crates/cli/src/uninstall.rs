//! `qemu-shim uninstall`: remove qemu-shim's entries, then the interpreter
//! files no entry of ours uses any more. Entries not named `qemu-shim-*`
//! are never touched.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use qemu_shim_registry::binfmt;

use crate::error::{Error, Result};
use crate::interp;
use crate::root;
use crate::select;

/// What `uninstall` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Arch or platform names; empty: all of our entries.
    pub arches: Vec<String>,
    /// Where an unused interpreter file may also be left.
    pub install_dir: PathBuf,
    pub binfmt_dir: Option<PathBuf>,
}

/// Runs `uninstall`, writing the report to `out`.
pub fn uninstall(opts: &Options, out: &mut dyn Write) -> Result<()> {
    let named = select::resolve(&opts.arches)?;
    let bf = root::open_for_read(opts.binfmt_dir.as_deref());
    let mounted = bf.is_mounted();
    if !mounted && opts.binfmt_dir.is_some() {
        return Err(root::not_mounted(bf.root()));
    }
    // Held until this run ends, as by install.
    let _lock = if mounted {
        Some(crate::install::lock_table(&bf, out)?)
    } else {
        None
    };
    let existing = if mounted { bf.list()? } else { Vec::new() };

    let targets: Vec<String> = if named.is_empty() {
        existing
            .iter()
            .filter(|(n, _)| n.starts_with(binfmt::OWNED_PREFIX))
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        named.iter().map(|a| binfmt::entry_name(a.name)).collect()
    };

    let mut lines = Vec::new();
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut removed = 0usize;
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
                lines.push(format!("removed        {name}"));
            }
            None => lines.push(format!("not registered {name}")),
        }
    }
    if !mounted {
        lines.push(format!(
            "binfmt_misc is not mounted at {}: no entries",
            bf.root().display()
        ));
    }

    // Interpreter files: those the removed entries used, and, when removing
    // everything, the one in the install directory (a failed or partial
    // earlier run may have left it without entries).
    let install_dir = fs::canonicalize(&opts.install_dir).unwrap_or(opts.install_dir.clone());
    if named.is_empty() {
        files.insert(install_dir.join(interp::FILE_NAME));
        // What a killed install left would keep the directory.
        for f in crate::install::remove_leftovers(&install_dir) {
            lines.push(format!(
                "removed        {} (left by an interrupted run)",
                f.display()
            ));
        }
    }
    let remaining = if mounted { bf.list()? } else { Vec::new() };
    for f in &files {
        let in_use = remaining
            .iter()
            .any(|(n, e)| n.starts_with(binfmt::OWNED_PREFIX) && Path::new(&e.interpreter) == f);
        if in_use {
            lines.push(format!("kept           {} (still used)", f.display()));
            continue;
        }
        if remove_interpreter(f)? {
            lines.push(format!("removed        {}", f.display()));
            if let Some(dir) = f.parent() {
                // The install directory goes too once empty; any other file
                // in it keeps it.
                if dir == install_dir && fs::remove_dir(dir).is_ok() {
                    lines.push(format!("removed        {}", dir.display()));
                }
            }
        }
    }
    if lines.is_empty() {
        lines.push("nothing to do: no qemu-shim entries".into());
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(())
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
    Ok(true)
}
