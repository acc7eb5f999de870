//! Where each arch's emulator comes from in an install (issue 18, item 1):
//! the config's choice; else `--emulator-dir` when given; else the file
//! the last install to this interpreter file took it from (its install
//! record, see `sources`, or the path in its table), then the default
//! search path. An arch whose emulator is found nowhere but whose image
//! the installed file carries is re-registered from that file as it is
//! ([`Origin::Kept`]): the copy can be kept, not carried into a new file
//! (it is laid out and pre-relocated, not the emulator's file).

use std::fs;
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::Arch;
use qemu_shim_registry::dispatch::{Convention, Table};

use crate::config::Config;
use crate::emulator::{self, Search};
use crate::error::{Error, Result};
use crate::interp::{self, Spec};
use crate::sources;

/// What the installed interpreter file says about its emulators.
#[derive(Debug, Default)]
pub struct Installed {
    /// Its table, if it is an interpreter file we can read.
    pub spec: Option<Spec>,
    /// Arches whose image it carries.
    pub carried: Vec<String>,
    /// The source paths its install record names, read even when the
    /// record describes another file: they are where to look, not facts
    /// about this one (the emulator found is checked as any other).
    recorded: Vec<(String, PathBuf)>,
}

impl Installed {
    /// Reads the head of the installed file `f` (at `dest`) and the record
    /// beside it.
    pub fn read(dest: &Path, f: Option<&fs::File>) -> Installed {
        let head = f.and_then(|f| interp::read_head(f).ok().flatten());
        let spec = head.as_deref().and_then(|h| interp::read_spec(h).ok());
        let carried = head
            .as_deref()
            .and_then(|h| {
                let range = interp::region(h).ok()?;
                let table = Table::parse(h.get(range)?).ok()?;
                Some(
                    table
                        .iter()
                        .filter(|e| matches!(e.convention, Convention::Carried(_)))
                        .map(|e| e.arch.to_string())
                        .collect(),
                )
            })
            .unwrap_or_default();
        let recorded = sources::read_paths(dest);
        Installed {
            spec,
            carried,
            recorded,
        }
    }

    /// Whether the installed file carries `arch`'s image.
    pub fn carries(&self, arch: &str) -> bool {
        self.carried.iter().any(|a| a == arch)
    }

    /// Whether `arch`'s emulator takes the plain command line there.
    fn plain(&self, arch: &str) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| s.plain.iter().any(|a| a == arch))
    }

    /// The emulator path the installed file names for `arch`.
    pub fn path(&self, arch: &str) -> Option<&Path> {
        self.spec.as_ref().and_then(|s| s.emulator(arch))
    }

    /// Where the last install took `arch`'s emulator from, if a runnable
    /// file is still there: the record's path, else the table's. With
    /// `plain` false, a box64 or FEX choice is not taken for qemu.
    fn remembered(&self, arch: &str, plain: bool) -> Option<(PathBuf, bool)> {
        let is_plain = self.plain(arch);
        if is_plain && !plain {
            return None;
        }
        let recorded = self
            .recorded
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, p)| p.as_path());
        [recorded, self.path(arch)]
            .into_iter()
            .flatten()
            .find(|p| emulator::is_executable_file(p))
            .map(|p| (p.to_path_buf(), is_plain))
    }
}

/// Where one arch's emulator comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file to read now; `plain`: it takes the plain command line.
    Found {
        path: PathBuf,
        plain: bool,
    },
    /// Found nowhere, but the installed file carries it: that file stays
    /// as it is. The path its table names (gone).
    Kept(PathBuf),
    Missing,
}

/// Looks emulators up for one install.
pub struct Finder<'a> {
    pub cfg: &'a Config,
    /// The search path, or why `--emulator-dir` cannot be searched.
    pub search: &'a std::result::Result<Search, Error>,
    /// `--emulator-dir` was given: only it is searched for qemu.
    pub given: bool,
    pub installed: &'a Installed,
    pub host: Option<&'static str>,
}

impl Finder<'_> {
    /// The emulator for `a`. `other`: an entry not asked for, on the same
    /// file, which keeps a box64 or FEX choice it had.
    pub fn find(&self, a: &'static Arch, other: bool) -> Result<Origin> {
        let kept = || {
            self.installed
                .carries(a.name)
                .then(|| self.installed.path(a.name).map(Path::to_path_buf))
                .flatten()
                .map(Origin::Kept)
        };
        if self.cfg.choice(a).is_some() {
            let search = self.search.as_ref().map_err(Error::clone)?;
            return Ok(match self.cfg.emulator(a, search, self.host)? {
                Some((path, plain)) => Origin::Found { path, plain },
                None => Origin::Missing,
            });
        }
        let found = match self.search {
            Ok(search) if self.given => search.find(a).map(|p| (p, false)),
            Ok(search) => self
                .installed
                .remembered(a.name, other)
                .or_else(|| search.find(a).map(|p| (p, false))),
            Err(e) => return kept().ok_or_else(|| e.clone()),
        };
        Ok(match found {
            Some((path, plain)) => Origin::Found { path, plain },
            None => kept().unwrap_or(Origin::Missing),
        })
    }
}
