//! The administrator's per-arch emulator choice, `/etc/qemu-shim/config.toml`
//! (or `install --config FILE`): read by `install` and written into the
//! interpreter file's table; the interpreter never reads it.
//!
//! ```toml
//! # qemu (the default) for every arch not named here.
//! [arch.x86_64]                  # any arch name install takes: "linux/amd64", amd64, …
//! emulator = "box64"             # "qemu", "box64" or "fex"
//! path = "/usr/local/bin/box64"  # optional; default: looked up like qemu's
//!
//! [arch."linux/386"]
//! emulator = "fex"
//!
//! [arch.arm]
//! cpu = "arm1176"                # qemu's -cpu model for this arch
//! ```
//!
//! `cpu` chooses the CPU model qemu emulates for an arch (qemu's `-cpu`;
//! `emulator` may then be left out: qemu is implied). `install` checks it
//! by running that arch's probe program under the model, and writes it
//! into the table; the interpreter passes `-cpu MODEL` to qemu at every
//! exec — unless an unprivileged user set `QEMU_CPU` for their own program
//! (debugging stays possible; a setuid program ignores it). box64 and FEX
//! take no CPU model: a `cpu` key with them is refused.
//!
//! Each emulator is started with the command line it takes:
//! - `qemu`: carried in the interpreter file, or by path with
//!   `-0 ARGV0 --` (`--no-carry`, or an emulator that cannot be carried);
//!   `path` names a qemu-user other than the one found in the emulator
//!   directories.
//! - `box64`, `fex` (`FEXInterpreter`): by path, `EMULATOR PROGRAM ARGS…`
//!   (`dispatch::Convention::ExecPlain`), the command line their own
//!   binfmt_misc registrations hand them without `P` (box64's binfmt.d line
//!   has no flags). Neither takes an argv0 option, so the program's argv0 is
//!   not passed on; the entries get neither `O` nor `C`, as for any
//!   emulator started by path. box64 runs x86_64 programs, FEX x86_64 and
//!   i386 ones; both on non-x86 hosts only (FEX on arm64 only).
//!
//! The file decides what runs as root for every user's foreign programs,
//! so when `install` runs as root it refuses a file that is not owned by
//! root or is writable by group or others, a symbolic link, and a file in a
//! directory others could change (see [`crate::trust`]).
//!
//! It is TOML, read with the `toml` crate into serde types that deny
//! unknown keys: any valid TOML spelling works (literal strings, escapes,
//! inline tables, dotted keys), and a typo is never silently ignored — an
//! unknown key, table, arch or emulator, or bad TOML, is one line naming
//! the file, the line and what is wrong.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use qemu_shim_registry::arch::{self, Arch};

use crate::emulator::Search;
use crate::error::{Error, Result};
use crate::trust;

/// Where `install` reads the config unless `--config` says.
pub const DEFAULT_PATH: &str = "/etc/qemu-shim/config.toml";

/// An emulator other than qemu, or qemu itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    Qemu,
    Box64,
    Fex,
}

impl EmulatorKind {
    fn parse(s: &str) -> Option<EmulatorKind> {
        match s {
            "qemu" => Some(EmulatorKind::Qemu),
            "box64" => Some(EmulatorKind::Box64),
            "fex" => Some(EmulatorKind::Fex),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EmulatorKind::Qemu => "qemu",
            EmulatorKind::Box64 => "box64",
            EmulatorKind::Fex => "fex",
        }
    }

    /// Whether it takes the plain command line (`EMULATOR PROGRAM ARGS…`).
    pub fn plain(self) -> bool {
        self != EmulatorKind::Qemu
    }

    /// The program name looked for in the emulator directories (qemu's
    /// depends on the arch: the caller's search handles it).
    fn program(self) -> Option<&'static str> {
        match self {
            EmulatorKind::Qemu => None,
            EmulatorKind::Box64 => Some("box64"),
            EmulatorKind::Fex => Some("FEXInterpreter"),
        }
    }

    /// The guest arches it runs, `None`: any.
    fn guests(self) -> Option<&'static [&'static str]> {
        match self {
            EmulatorKind::Qemu => None,
            EmulatorKind::Box64 => Some(&["x86_64"]),
            EmulatorKind::Fex => Some(&["x86_64", "i386"]),
        }
    }

    /// The hosts it runs on, `None`: any.
    fn hosts(self) -> Option<&'static [&'static str]> {
        match self {
            EmulatorKind::Qemu => None,
            EmulatorKind::Box64 => Some(&["aarch64", "riscv64", "loongarch64", "ppc64le"]),
            EmulatorKind::Fex => Some(&["aarch64"]),
        }
    }
}

/// One `[arch.NAME]` table.
#[derive(Debug, Clone)]
pub struct Choice {
    pub arch: &'static Arch,
    pub kind: EmulatorKind,
    /// `path`, if given.
    pub path: Option<PathBuf>,
    /// `cpu`, if given: qemu's CPU model for this arch.
    pub cpu: Option<String>,
    /// The line of its table header, for messages.
    line: usize,
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it was read from (`None`: no file, every arch uses qemu).
    pub source: Option<PathBuf>,
    pub choices: Vec<Choice>,
}

impl Config {
    /// The CPU model chosen for each of `arches` the file gives one, for
    /// the interpreter file's table. Only qemu's: [`parse`] refuses `cpu`
    /// beside box64 or FEX, so no model is ever chosen for a plain arch.
    pub fn cpu_models(&self, arches: &[&str]) -> Vec<(String, String)> {
        self.choices
            .iter()
            .filter(|c| arches.contains(&c.arch.name))
            .filter_map(|c| Some((c.arch.name.to_string(), c.cpu.clone()?)))
            .collect()
    }

    /// The file and line of `a`'s table, for messages (`config:LINE` when
    /// the config was not read from a file).
    pub fn whereabouts(&self, a: &Arch) -> Option<String> {
        let c = self.choice(a)?;
        Some(format!(
            "{}:{}",
            self.source
                .as_deref()
                .unwrap_or(Path::new("config"))
                .display(),
            c.line
        ))
    }

    /// The choice for `a`, if the file names it.
    pub fn choice(&self, a: &Arch) -> Option<&Choice> {
        self.choices.iter().find(|c| std::ptr::eq(c.arch, a))
    }

    /// The emulator for `a` and whether it takes the plain command line:
    /// the file's choice, else qemu as `search` finds it. `Ok(None)`: no
    /// qemu found for an arch the file does not name. An emulator the file
    /// names but that is not there is an error: the administrator asked for
    /// it.
    pub fn emulator(
        &self,
        a: &'static Arch,
        search: &Search,
        host: Option<&str>,
    ) -> Result<Option<(PathBuf, bool)>> {
        let Some(c) = self.choice(a) else {
            return Ok(search.find(a).map(|p| (p, false)));
        };
        let here = |what: String| {
            Error::new(format!(
                "{}:{}: {what}",
                self.source
                    .as_deref()
                    .unwrap_or(Path::new("config"))
                    .display(),
                c.line
            ))
        };
        if let Some(guests) = c.kind.guests() {
            if !guests.contains(&a.name) {
                return Err(here(format!(
                    "{} does not run {} programs (it runs {})",
                    c.kind.name(),
                    a.name,
                    guests.join(", ")
                ))
                .hint("use emulator = \"qemu\" for it"));
            }
        }
        if let (Some(hosts), Some(host)) = (c.kind.hosts(), host) {
            if !hosts.contains(&host) {
                return Err(here(format!(
                    "{} runs on {} hosts only; this one is {host}",
                    c.kind.name(),
                    hosts.join(", ")
                ))
                .hint("use emulator = \"qemu\" for it"));
            }
        }
        let path = match (&c.path, c.kind.program()) {
            (Some(p), _) => {
                if !crate::emulator::is_executable_file(p) {
                    return Err(here(format!(
                        "{} for {} is not an executable file: {}",
                        c.kind.name(),
                        a.name,
                        p.display()
                    )));
                }
                p.clone()
            }
            (None, None) => search.find(a).ok_or_else(|| {
                here(format!(
                    "no qemu for {}: {}",
                    a.name,
                    crate::emulator::looked_for(search, a)
                ))
            })?,
            (None, Some(program)) => search
                .dirs()
                .iter()
                .map(|d| d.join(program))
                .find(|p| crate::emulator::is_executable_file(p))
                .ok_or_else(|| {
                    let dirs: Vec<String> = search
                        .dirs()
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect();
                    here(format!(
                        "{} for {}: no {program} in {}",
                        c.kind.name(),
                        a.name,
                        dirs.join(", ")
                    ))
                    .hint("give its path with path = \"…\", or pass --emulator-dir")
                })?,
        };
        Ok(Some((path, c.kind.plain())))
    }
}

/// Reads the config: `path` if given (it must exist), else
/// [`DEFAULT_PATH`] if it exists. `euid` is the caller's effective uid:
/// root refuses a file others could have written, or could swap (see
/// [`open_checked`]).
pub fn load(path: Option<&Path>, euid: u32) -> Result<Config> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_PATH), false),
    };
    let Some(text) = open_checked(path, required, euid)? else {
        return Ok(Config::default());
    };
    from_text(path, &text)
}

/// Parses `text`, read from `path`: a mistake is the one line the user
/// sees, `PATH:LINE: what is wrong`. The fuzz target `config` runs this on
/// arbitrary text.
pub fn from_text(path: &Path, text: &str) -> Result<Config> {
    let mut c = parse(text).map_err(|(line, msg)| {
        Error::new(format!("{}:{line}: {msg}", path.display()))
            .hint("see `qemu-shim install --help` for the config file's format")
    })?;
    c.source = Some(path.to_path_buf());
    Ok(c)
}

/// The config's text; `None` if there is no file and none is `required`.
/// As root, the file is opened once, without following a symbolic link at
/// its end (`O_NOFOLLOW`; `O_NONBLOCK` so a FIFO there cannot stall
/// install), its owner and mode are taken from that descriptor (the file
/// judged is the file read, whatever happens to the path meanwhile), then
/// every directory above it is checked ([`trust::check`]). Checking those by path after the
/// open is sound: a directory on the way that others could change is on
/// the way at both moments, as every directory before it is one they
/// cannot change. Not root: read as it is, the file only affects what this
/// user installs.
fn open_checked(path: &Path, required: bool, euid: u32) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: &std::io::Error| Error::io("cannot read the config", path, e);
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    if euid == 0 {
        opts.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) if euid == 0 && e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(Error::new(format!(
                "the config {} is a symbolic link: refusing it",
                path.display()
            ))
            .hint("give the path of the file itself"))
        }
        Err(e) => return Err(cannot(&e)),
    };
    if euid == 0 {
        let meta = f.metadata().map_err(|e| cannot(&e))?;
        if !meta.is_file() {
            return Err(Error::new(format!(
                "the config {} is not a regular file",
                path.display()
            )));
        }
        check_owner(path, meta.uid(), meta.mode(), euid)?;
        let owners = trust::Owners::system().and(euid);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| cannot(&e))?.join(path)
        };
        if let Some(dir) = abs.parent() {
            // The directory holds a file root owns: a sticky one (others
            // cannot rename or remove that file) passes, as on the way.
            trust::check(dir, &owners, trust::Role::Parent)
                .map_err(|u| u.error("the config", path))?;
        }
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| cannot(&e))?;
    Ok(Some(text))
}

/// As root, refuses a file not owned by root or writable by group or
/// others: whoever can write it chooses what runs every user's foreign
/// programs.
fn check_owner(path: &Path, uid: u32, mode: u32, euid: u32) -> Result<()> {
    if euid != 0 {
        return Ok(());
    }
    trust::judge(path, uid, mode, &trust::Owners::system(), true)
        .map_err(|u| u.error("the config", path))
}

/// The file as serde reads it: `[arch.NAME]` tables, nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    arch: std::collections::BTreeMap<String, toml::Spanned<ArchToml>>,
}

/// One `[arch.NAME]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchToml {
    emulator: Option<toml::Spanned<String>>,
    path: Option<toml::Spanned<String>>,
    cpu: Option<toml::Spanned<String>>,
}

/// Whether `model` can be a qemu `-cpu` argument: a model name with
/// optional `,property=value` settings (`max`, `cortex-a7`, `z14.2-base`,
/// `max,sve=off`). Anything else (spaces, quotes, an option-like leading
/// `-`) is refused before qemu sees it; qemu itself judges the name.
fn cpu_syntax(model: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._+-,=".contains(c);
    if model.is_empty() {
        return Err("cpu must not be empty (leave it out for qemu's default)".into());
    }
    if model.len() > 128 {
        return Err(format!(
            "cpu model is {} bytes long; at most 128",
            model.len()
        ));
    }
    if model.starts_with(['-', ',', '=']) || !model.chars().all(ok_char) {
        return Err(format!(
            "cpu \"{model}\" is not a qemu CPU model (letters, digits and . _ + - , = only)"
        ));
    }
    Ok(())
}

/// Parses the file's text; an error is its line number and message, one
/// line of printable text.
pub fn parse(text: &str) -> std::result::Result<Config, (usize, String)> {
    read(text).map_err(|(line, msg)| (line, crate::error::printable(&msg)))
}

/// [`parse`], its messages as written.
fn read(text: &str) -> std::result::Result<Config, (usize, String)> {
    let line_of = |at: usize| text.get(..at).map_or(1, |t| t.matches('\n').count() + 1);
    let file: FileToml = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(s.start));
        (line, e.message().trim_end_matches('\n').replace('\n', " "))
    })?;
    // In the order written, for messages and the table.
    let mut tables: Vec<(String, toml::Spanned<ArchToml>)> = file.arch.into_iter().collect();
    tables.sort_by_key(|(_, t)| t.span().start);
    let mut choices: Vec<Choice> = Vec::new();
    for (name, table) in tables {
        let line = line_of(table.span().start);
        let arch = arch::lookup(&name).ok_or_else(|| (line, format!("unknown arch '{name}'")))?;
        if choices.iter().any(|c| std::ptr::eq(c.arch, arch)) {
            return Err((line, format!("{} is configured twice", arch.name)));
        }
        let t = table.into_inner();
        // A table with only a CPU model is about qemu.
        let kind = match (&t.emulator, &t.cpu) {
            (Some(emulator), _) => EmulatorKind::parse(emulator.get_ref()).ok_or_else(|| {
                (
                    line_of(emulator.span().start),
                    format!(
                        "unknown emulator \"{}\": qemu, box64 or fex",
                        emulator.get_ref()
                    ),
                )
            })?,
            (None, Some(_)) => EmulatorKind::Qemu,
            (None, None) => {
                return Err((
                    line,
                    format!("[arch.{name}] has no emulator = … (or cpu = …)"),
                ))
            }
        };
        let cpu = match t.cpu {
            None => None,
            Some(c) => {
                let at = line_of(c.span().start);
                if kind.plain() {
                    return Err((
                        at,
                        format!(
                            "{} takes no CPU model: cpu is a qemu setting (leave it out for {})",
                            kind.name(),
                            arch.name
                        ),
                    ));
                }
                cpu_syntax(c.get_ref()).map_err(|m| (at, m))?;
                Some(c.into_inner())
            }
        };
        let path = match t.path {
            None => None,
            Some(p) => {
                let path = PathBuf::from(p.get_ref());
                if !path.is_absolute() {
                    return Err((
                        line_of(p.span().start),
                        format!("path must be absolute: {}", p.get_ref()),
                    ));
                }
                Some(path)
            }
        };
        choices.push(Choice {
            arch,
            kind,
            path,
            cpu,
            line,
        });
    }
    Ok(Config {
        source: None,
        choices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    const EXAMPLE: &str = r#"
# qemu for everything else
[arch.x86_64]                  # box64 for x86_64 programs
emulator = "box64"
path = "/usr/local/bin/box64"  # its path

[arch."linux/386"]
emulator = "fex"

[arch.arm64]
emulator = "qemu"
path = "/opt/qemu #8/qemu-aarch64"
"#;

    /// Each choice as (arch, emulator, path), in the order written.
    fn choices_of(c: &Config) -> Vec<(&'static str, EmulatorKind, Option<&Path>)> {
        c.choices
            .iter()
            .map(|c| (c.arch.name, c.kind, c.path.as_deref()))
            .collect()
    }

    #[test]
    fn the_documented_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(
            choices_of(&c),
            [
                (
                    "x86_64",
                    EmulatorKind::Box64,
                    Some(Path::new("/usr/local/bin/box64"))
                ),
                ("i386", EmulatorKind::Fex, None),
                (
                    "aarch64",
                    EmulatorKind::Qemu,
                    Some(Path::new("/opt/qemu #8/qemu-aarch64"))
                ),
            ]
        );
        assert!(c.choices[0].kind.plain() && !c.choices[2].kind.plain());
    }

    #[test]
    fn cpu_models_imply_qemu_and_reach_the_table_for_their_arches_only() {
        let c = parse(
            "[arch.armhf]\ncpu = 'arm1176'\n[arch.aarch64]\nemulator = \"qemu\"\ncpu = \"max,sve=off\"\n[arch.s390x]\nemulator = \"qemu\"\n",
        )
        .unwrap();
        assert_eq!(c.choices[0].kind, EmulatorKind::Qemu);
        assert_eq!(
            c.cpu_models(&["arm", "aarch64", "s390x"]),
            [
                ("arm".to_string(), "arm1176".to_string()),
                ("aarch64".to_string(), "max,sve=off".to_string())
            ]
        );
        assert_eq!(c.cpu_models(&["aarch64"]).len(), 1);
        assert_eq!(c.whereabouts(c.choices[1].arch).unwrap(), "config:3");
    }

    #[test]
    fn mistakes_are_refused_with_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("[arch.vax]\nemulator = \"qemu\"", 1, "unknown arch 'vax'"),
            (
                "[arch.x86_64]\nemulater = \"box64\"",
                2,
                "unknown field `emulater`, expected one of `emulator`, `path`, `cpu`",
            ),
            (
                "[arch.x86_64]\nemulator = \"rosetta\"",
                2,
                "unknown emulator \"rosetta\": qemu, box64 or fex",
            ),
            (
                "[arch.x86_64]\nemulator = box64",
                2,
                "string values must be quoted",
            ),
            (
                "[arch.x86_64]\nemulator = \"box64",
                2,
                "invalid basic string",
            ),
            ("[arch.x86_64]\npath = \"/x\"", 1, "no emulator"),
            (
                "[arch.x86_64]\nemulator = \"box64\"\ncpu = \"max\"",
                3,
                "box64 takes no CPU model: cpu is a qemu setting (leave it out for x86_64)",
            ),
            (
                "[arch.arm]\ncpu = \"arm1176 -d\"",
                2,
                "cpu \"arm1176 -d\" is not a qemu CPU model (letters, digits and . _ + - , = only)",
            ),
            ("[arch.arm]\ncpu = \"-d\"", 2, "is not a qemu CPU model"),
            ("[arch.arm]\ncpu = \"\"", 2, "cpu must not be empty"),
            ("[arch.arm]\ncpu = 7", 2, "invalid type"),
            (
                "[arch.x86_64]\npath = \"box64\"\nemulator = \"box64\"",
                2,
                "absolute",
            ),
            ("emulator = \"box64\"", 1, "unknown field `emulator`"),
            ("[emulators]\n", 1, "unknown field `emulators`"),
            (
                "[arch.amd64]\nemulator = \"box64\"\n[arch.x86_64]",
                3,
                "configured twice",
            ),
            (
                "[arch.x86_64]\nemulator = \"box64\"\nemulator = \"fex\"",
                3,
                "duplicate key",
            ),
            (
                "[arch.x86_64]\nemulator = \"box64\" x",
                2,
                "expected newline",
            ),
        ];
        for (text, line, msg) in cases {
            let (l, m) = parse(text).unwrap_err();
            assert!(!m.contains('\n'), "{text:?}: not one line: {m}");
            assert_eq!((l, m.contains(msg)), (*line, true), "{text:?}: {l}: {m}");
        }
        assert!(parse("# nothing\n\n").unwrap().choices.is_empty());
    }

    /// Found by the fuzz target `config` (issue 17.1): a name or value
    /// written with a TOML escape (`"l1l\nux/arm28"`) was echoed raw, so
    /// the error was two lines (and could carry terminal escapes).
    #[test]
    fn names_and_values_with_control_characters_are_shown_escaped() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "# tesg\n[arch.\"l1l\\nux/arm28\"]\nemulator = \"ild\"\n",
                2,
                "unknown arch 'l1l\\nux/arm28'",
            ),
            (
                "[arch.x86_64]\nemulator = \"box\\u001b[2J64\"",
                2,
                "unknown emulator \"box\\u{1b}[2J64\"",
            ),
            (
                "[arch.arm]\ncpu = \"max\\r\"",
                2,
                "cpu \"max\\r\" is not a qemu CPU model",
            ),
            (
                "[arch.x86_64]\nemulator = \"box64\"\npath = \"a\\nb\"",
                3,
                "path must be absolute: a\\nb",
            ),
            ("[arch.x86_64]\n\"e\\tx\" = 1", 2, "unknown field `e\\tx`"),
        ];
        for (text, line, msg) in cases {
            let (l, m) = parse(text).unwrap_err();
            assert!(!m.chars().any(char::is_control), "{text:?}: {m:?}");
            assert_eq!((l, m.contains(msg)), (*line, true), "{text:?}: {l}: {m}");
        }
    }

    #[test]
    fn root_refuses_a_file_others_could_write() {
        let p = Path::new("/etc/qemu-shim/config.toml");
        assert!(check_owner(p, 0, 0o100644, 0).is_ok());
        let e = check_owner(p, 1000, 0o100644, 0).unwrap_err();
        assert!(e.message().contains("owned by uid 1000"), "{e}");
        let e = check_owner(p, 0, 0o100664, 0).unwrap_err();
        assert!(e.message().contains("writable by its group"), "{e}");
        let e = check_owner(p, 0, 0o100646, 0).unwrap_err();
        assert!(e.message().contains("writable by everyone"), "{e}");
        // Not root: the file only affects what this user installs.
        assert!(check_owner(p, 1000, 0o100666, 1000).is_ok());
    }

    #[test]
    fn load_reads_a_file_and_a_missing_default_is_no_config() {
        let d = TempDir::new();
        let p = d.path().join("config.toml");
        fs::write(&p, EXAMPLE).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let c = load(Some(&p), 0).unwrap();
        assert_eq!(c.choices.len(), 3);
        assert_eq!(c.source.as_deref(), Some(p.as_path()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(load(Some(&p), 0).is_err());
        let missing = d.path().join("none.toml");
        assert!(load(Some(&missing), 0).is_err(), "--config must exist");
        fs::write(&p, "[arch.x86_64]\nemulator = \"box64\"\nbad").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(Some(&p), 0).unwrap_err();
        assert!(
            e.message()
                .ends_with("config.toml:3: key with no value, expected `=`"),
            "{e}"
        );
    }

    /// Issue 14: the hand-written subset refused valid TOML.
    #[test]
    fn any_valid_toml_spelling_is_read() {
        for text in [
            // literal strings, escapes
            "[arch.x86_64]\nemulator = 'box64'\npath = '/opt/b\\x/box64'",
            "[arch.x86_64]\nemulator = \"box\\u0036\\u0034\"\npath = \"/opt/b\\\\x/box64\"",
            // an inline table, dotted keys
            "arch.x86_64 = { emulator = \"box64\", path = \"/opt/b\\\\x/box64\" }",
            "[arch]\nx86_64.emulator = \"box64\"\nx86_64.path = '/opt/b\\x/box64'",
        ] {
            let c = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert_eq!(
                choices_of(&c),
                [(
                    "x86_64",
                    EmulatorKind::Box64,
                    Some(Path::new("/opt/b\\x/box64"))
                )],
                "{text:?}"
            );
        }
    }

    /// Issue 10, item 5: the config was checked by path, then read by path
    /// again, and a symbolic link (or a directory others could change) led
    /// root to whatever the link's owner chose.
    #[test]
    fn root_refuses_a_linked_config_and_one_in_a_directory_others_can_change() {
        let d = TempDir::new();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let good = d.path().join("good.toml");
        fs::write(&good, EXAMPLE).unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(Some(&good), 0).is_ok());
        let link = d.path().join("link.toml");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let e = load(Some(&link), 0).unwrap_err();
        assert!(
            e.message().contains(&format!(
                "{} is a symbolic link: refusing it",
                link.display()
            )),
            "{e}"
        );
        // Not root: a user's own link to their own file is theirs to use.
        assert!(load(Some(&link), 1000).is_ok());
        // The same file in a directory anyone can write.
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let inside = open.join("config.toml");
        fs::copy(&good, &inside).unwrap();
        fs::set_permissions(&inside, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(Some(&inside), 0).unwrap_err();
        assert!(
            e.message()
                .contains(&format!("{} is writable by everyone", open.display())),
            "{e}"
        );
    }

    #[test]
    fn emulator_choice_checks_guest_host_and_path() {
        let d = TempDir::new();
        let box64 = d.path().join("box64");
        fs::write(&box64, "").unwrap();
        fs::set_permissions(&box64, fs::Permissions::from_mode(0o755)).unwrap();
        let search = Search::new(&[d.path().to_path_buf()]).unwrap();
        let x86_64 = arch::by_name("x86_64").unwrap();
        let i386 = arch::by_name("i386").unwrap();
        let c = parse("[arch.x86_64]\nemulator = \"box64\"\n[arch.i386]\nemulator = \"box64\"")
            .unwrap();
        // Found in the emulator directories, plain command line.
        assert_eq!(
            c.emulator(x86_64, &search, Some("aarch64")).unwrap(),
            Some((box64.clone(), true))
        );
        let e = c.emulator(x86_64, &search, Some("x86_64")).unwrap_err();
        assert!(e.message().contains("box64 runs on aarch64"), "{e}");
        let e = c.emulator(i386, &search, Some("aarch64")).unwrap_err();
        assert!(e.message().contains("box64 does not run i386"), "{e}");
        let c = parse("[arch.x86_64]\nemulator = \"fex\"").unwrap();
        let e = c.emulator(x86_64, &search, Some("aarch64")).unwrap_err();
        assert!(e.message().contains("no FEXInterpreter in"), "{e}");
        let c = parse("[arch.x86_64]\nemulator = \"fex\"\npath = \"/nonexistent/FEX\"").unwrap();
        let e = c.emulator(x86_64, &search, Some("aarch64")).unwrap_err();
        assert!(e.message().contains("not an executable file"), "{e}");
        // Arches the file does not name: qemu as searched (none here).
        let a = arch::by_name("s390x").unwrap();
        assert_eq!(c.emulator(a, &search, Some("aarch64")).unwrap(), None);
    }
}
