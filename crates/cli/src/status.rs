//! `qemu-shim status`: every binfmt_misc entry, ours and others', in the
//! kernel's match order, which arch each is for, and which entry wins each
//! arch; as text or JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use qemu_shim_registry::binfmt::{self, Binfmt};
use qemu_shim_registry::format::EntryFile;
use serde::Serialize;

use crate::analysis::{self, EntryView};
use crate::emulator;
use crate::error::Result;
use crate::install::{owned_arch, pattern};
use crate::interp::{self, Config};

/// The whole report; its JSON form is `status --json`'s output.
#[derive(Debug, Serialize)]
pub struct Status {
    pub binfmt_misc: RootStatus,
    /// Every entry, in the order the kernel tries them (newest first).
    pub entries: Vec<EntryStatus>,
    /// Every arch some enabled entry matches, in arch-table order.
    pub arches: Vec<ArchStatus>,
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

/// Builds the report from entries in match order; `config` reads an
/// interpreter file's table (cached per path).
pub fn build(
    root: &Path,
    mounted: bool,
    enabled: Option<bool>,
    entries: &[(String, EntryFile)],
    mut config: impl FnMut(&Path) -> Result<Config>,
) -> Status {
    let views: Vec<EntryView<'_>> = entries
        .iter()
        .map(|(_, e)| EntryView {
            enabled: e.enabled,
            pattern: pattern(e),
        })
        .collect();
    let winners = analysis::winners(&views);
    let mut configs: BTreeMap<String, std::result::Result<Config, String>> = BTreeMap::new();

    let mut out = Vec::new();
    for (i, (name, e)) in entries.iter().enumerate() {
        let arch = views[i].pattern.and_then(|p| p.arch());
        let owned = name.starts_with(binfmt::OWNED_PREFIX);
        let mut emulator_path = None;
        let mut problem = None;
        if owned {
            let cfg = configs.entry(e.interpreter.clone()).or_insert_with(|| {
                config(Path::new(&e.interpreter)).map_err(|err| err.to_string())
            });
            match (owned_arch(name), cfg) {
                (None, _) => problem = Some("its name names no arch qemu-shim knows".into()),
                (Some(_), Err(err)) => problem = Some(err.clone()),
                (Some(a), Ok(cfg)) => match cfg.emulator(a.name) {
                    None => {
                        problem = Some(format!(
                            "the interpreter's table has no {} emulator",
                            a.name
                        ))
                    }
                    Some(p) => {
                        emulator_path = Some(p.display().to_string());
                        if !emulator::is_executable_file(p) {
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
    Status {
        binfmt_misc: RootStatus {
            root: root.display().to_string(),
            mounted,
            enabled,
        },
        entries: out,
        arches,
    }
}

/// Reads the table at `bf` (never mounting it) into a report.
pub fn collect(bf: &Binfmt) -> Result<Status> {
    let mounted = bf.is_mounted();
    if !mounted {
        return Ok(build(
            bf.root(),
            false,
            None,
            &[],
            |_| Ok(Config::default()),
        ));
    }
    let enabled = bf.status_enabled()?;
    let entries = bf.list()?;
    Ok(build(
        bf.root(),
        true,
        Some(enabled),
        &entries,
        interp::read_config_file,
    ))
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
        let _ = writeln!(out, "binfmt_misc: {} is not mounted; no entries", r.root);
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
        "  {:<wn$}  {:<wa$}  ENABLED  {:<wf$}  INTERPRETER",
        "NAME", "ARCH", "FLAGS"
    );
    for e in &s.entries {
        let mut tail = e.interpreter.clone();
        if let Some(emu) = &e.emulator {
            tail.push_str(&format!(" -> {emu}"));
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
            "  {:<wn$}  {:<wa$}  {:<7}  {:<wf$}  {tail}",
            e.name,
            e.arch.unwrap_or("-"),
            if e.enabled { "yes" } else { "no" },
            e.flags,
        );
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
            Ok(Config {
                flags: 0,
                carry: false,
                prelink_base: None,
                emulators: vec![("aarch64".into(), PathBuf::from("/nonexistent/qemu-aarch64"))],
            })
        })
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
