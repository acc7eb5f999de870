//! The config file's reader (crates/cli's `config`: the `toml` crate into
//! serde types that deny unknown keys, plus our checks), on arbitrary
//! text: never a panic; a mistake is one line, `PATH:LINE: what`, with a
//! line that exists and no control character (a name quoted from the file
//! is escaped); a file it accepts, written back as TOML (by the `toml`
//! crate's serializer, one `[arch.NAME]` table per choice under the arch's
//! own name), reads back as the same choices.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qemu_shim_cli::config::{self, Config};

const PATH: &str = "/etc/qemu-shim/config.toml";

#[derive(serde::Serialize)]
struct File {
    arch: BTreeMap<&'static str, Table>,
}

#[derive(serde::Serialize)]
struct Table {
    emulator: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<String>,
}

/// What a config means: (arch, emulator, path, cpu) in the order written.
fn meaning(c: &Config) -> Vec<(&'static str, &'static str, Option<String>, Option<String>)> {
    c.choices
        .iter()
        .map(|ch| {
            let path = ch.path.as_ref().map(|p| {
                p.to_str()
                    .expect("a path read from TOML is UTF-8")
                    .to_owned()
            });
            (ch.arch.name, ch.kind.name(), path, ch.cpu.clone())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // The reader takes text: a file that is not UTF-8 fails in the read,
    // before parsing (an I/O error naming the file).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.matches('\n').count() + 1;
    let c = match config::from_text(Path::new(PATH), text) {
        Ok(c) => c,
        Err(e) => {
            let m = e.message();
            assert!(
                !m.chars().any(char::is_control),
                "not one printable line: {m:?}"
            );
            assert!(e.hint_text().is_some_and(|h| !h.contains('\n')));
            let rest = m
                .strip_prefix(PATH)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_else(|| panic!("does not name the file: {m:?}"));
            let (line, what) = rest
                .split_once(": ")
                .unwrap_or_else(|| panic!("no line: {m:?}"));
            let line: usize = line.parse().unwrap_or_else(|_| panic!("no line: {m:?}"));
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {m:?}");
            assert!(!what.trim().is_empty(), "says nothing: {m:?}");
            return;
        }
    };
    assert_eq!(c.source.as_deref(), Some(Path::new(PATH)));
    let meant = meaning(&c);
    for (i, ch) in c.choices.iter().enumerate() {
        assert!(
            c.choices[..i]
                .iter()
                .all(|o| !std::ptr::eq(o.arch, ch.arch)),
            "{} twice",
            ch.arch.name
        );
        assert!(ch.path.as_ref().is_none_or(|p| p.is_absolute()));
        assert!(
            ch.cpu.is_none() || !ch.kind.plain(),
            "cpu beside {}",
            ch.kind.name()
        );
        let at = c.whereabouts(ch.arch).expect("a choice has a place");
        let line: usize = at.rsplit(':').next().unwrap().parse().unwrap();
        assert!((1..=lines).contains(&line), "{at} of {lines} lines");
    }
    let names: Vec<&str> = c.choices.iter().map(|ch| ch.arch.name).collect();
    let cpus = c.cpu_models(&names);
    assert_eq!(
        cpus.len(),
        c.choices.iter().filter(|ch| ch.cpu.is_some()).count()
    );

    // Written back as TOML, it reads as the same choices (the order
    // written may differ: compare sorted by arch).
    let file = File {
        arch: meant
            .iter()
            .map(|(a, k, p, cpu)| {
                (
                    *a,
                    Table {
                        emulator: k,
                        path: p.clone(),
                        cpu: cpu.clone(),
                    },
                )
            })
            .collect(),
    };
    let written = toml::to_string(&file).expect("a config serialises");
    let back = config::from_text(Path::new(PATH), &written)
        .unwrap_or_else(|e| panic!("{written:?} does not read back: {e}"));
    let (mut a, mut b) = (meant, meaning(&back));
    a.sort();
    b.sort();
    assert_eq!(a, b, "{written:?}");
});
