//! Writes the fuzz targets' seed corpora from real inputs (scripts/fuzz runs
//! it before fuzzing):
//!
//! - ELF headers: the first 4 KiB of every fixture program (Debian's
//!   busybox-static and qemu-user-static), each behind the 4-byte file
//!   size `elf_header` reads first, and every probe program the registry
//!   builds (whole: `elf_vs_goblin` validates whole files);
//! - dispatch tables: the table regions of interpreter files built by the
//!   interpfile library from the release interpreter and the fixture
//!   emulators, in the configurations install writes (all carried and
//!   pre-relocated, one arch, `--no-prelink`, `--no-carry`, a plain entry);
//! - register lines and entry files: what install registers for every row
//!   of the arch table, and what the kernel shows for it;
//! - config files: every TOML example of README.md and of the config
//!   module's documentation, and the configs the tests write (good ones
//!   and the mistakes they expect refused).
//!
//! Usage: seeds OUTDIR SHIM QEMU_DIR FIXTURE_FILE...

use std::fs;
use std::path::{Path, PathBuf};

use qemu_shim_interpfile::{build, region, Spec, Target};
use qemu_shim_registry::arch::ARCHES;
use qemu_shim_registry::format::{Flags, Kind, RegisterLine};
use qemu_shim_registry::programs::{self, Kind as Probe};

fn main() {
    if let Err(e) = run() {
        eprintln!("seeds: {e}");
        std::process::exit(1);
    }
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let p = dir.join(name);
    fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}

fn run() -> Result<(), String> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out, shim, qemu, files @ ..] = args.as_slice() else {
        return Err("usage: seeds OUTDIR SHIM QEMU_DIR FIXTURE_FILE...".into());
    };
    let (elf, goblin, table) = (
        out.join("elf_header"),
        out.join("elf_vs_goblin"),
        out.join("dispatch_table"),
    );
    let (lines, entries) = (out.join("register_line"), out.join("entry_file"));
    config_seeds(&out.join("config"))?;

    for f in files {
        let bytes = fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut seed = (bytes.len() as u32).to_le_bytes().to_vec();
        seed.extend_from_slice(&bytes[..bytes.len().min(4096)]);
        // busybox/arm64/busybox → arm64-busybox: names stay apart.
        let name: Vec<_> = f.iter().rev().take(2).collect();
        let name = format!(
            "{}-{}",
            name[name.len() - 1].to_string_lossy(),
            name[0].to_string_lossy()
        );
        put(&elf, &name, &seed)?;
    }
    for a in ARCHES {
        for (k, kind) in [
            ("exit", Probe::Exit(0)),
            ("argv0", Probe::Argv0),
            ("euid", Probe::Euid),
        ] {
            if let Some(p) = programs::program(a.name, kind) {
                put(&goblin, &format!("{}-{k}", a.name), &p)?;
                let mut seed = (p.len() as u32).to_le_bytes().to_vec();
                seed.extend_from_slice(&p);
                put(&elf, &format!("probe-{}-{k}", a.name), &seed)?;
            }
        }
        let line = RegisterLine {
            name: format!("qemu-shim-{}", a.name),
            kind: Kind::Magic {
                offset: a.offset,
                magic: a.magic.to_vec(),
                mask: Some(a.mask.to_vec()),
            },
            interpreter: "/usr/lib/qemu-shim/qemu-shim-interp".into(),
            flags: Flags::P.union(Flags::C).union(Flags::F),
        };
        put(&lines, a.name, line.to_string().as_bytes())?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        // What the kernel shows for it (fs/binfmt_misc.c, bm_entry_read),
        // behind the 128 header bytes entry_file matches against.
        let mut seed = vec![0u8; 128];
        if let Some(p) = programs::program(a.name, Probe::Exit(0)) {
            seed[..p.len().min(128)].copy_from_slice(&p[..p.len().min(128)]);
        }
        seed.extend_from_slice(
            format!(
                "enabled\ninterpreter {}\nflags: POCF\noffset {}\nmagic {}\nmask {}\n",
                line.interpreter,
                a.offset,
                hex(a.magic),
                hex(a.mask)
            )
            .as_bytes(),
        );
        put(&entries, a.name, &seed)?;
    }

    let image = fs::read(shim).map_err(|e| format!("{}: {e}", shim.display()))?;
    let mut emulators = Vec::new();
    for a in ARCHES {
        let p = qemu.join(format!("{}-static", a.emulator));
        if p.exists() {
            emulators.push((a.name.to_string(), p));
        }
    }
    if emulators.is_empty() {
        return Err(format!("no emulators in {}", qemu.display()));
    }
    let base = Target::X86_64.prelink_range().0;
    let one = vec![emulators[0].clone()];
    let one_arch = emulators[0].0.clone();
    let configs: [(&str, Vec<(String, PathBuf)>, bool, Option<u64>, Vec<String>); 5] = [
        ("all-carried", emulators.clone(), true, Some(base), vec![]),
        ("one-arch", one.clone(), true, Some(base), vec![]),
        ("no-prelink", emulators.clone(), true, None, vec![]),
        ("no-carry", emulators.clone(), false, None, vec![]),
        ("plain", one, false, None, vec![emulators[0].0.clone()]),
    ];
    for (name, emulators, carry, prelink_base, plain) in configs {
        let spec = Spec {
            target: Target::X86_64,
            flags: 0,
            emulators,
            carry,
            prelink_base,
            plain,
            // A CPU model (issue 15) in one of them.
            cpu: if name == "one-arch" {
                vec![(one_arch.clone(), "max".into())]
            } else {
                vec![]
            },
        };
        let built = build(&image, &spec).map_err(|e| format!("{name}: {e}"))?;
        let r = region(&built.image).map_err(|e| format!("{name}: {e}"))?;
        put(&table, name, &built.image[r])?;
    }
    Ok(())
}

/// The configs the tests write (tests/integration run.rs, settings.rs,
/// install_trust.rs; crates/cli config.rs's unit tests): good ones, and
/// mistakes the tests expect refused with their line.
const TEST_CONFIGS: &[&str] = &[
    "# test config\n[arch.\"linux/arm64\"]\nemulator = \"qemu\"\npath = \"/tmp/s/alt/my-aarch64-build\"\n",
    "[arch.arm64]\nemulator = \"qemu\"\npath = \"/tmp/s/alt/my-aarch64-build\"\n",
    "[arch.aarch64]\nemulator = \"qemu\"\npath = \"/home/nobody/qemu-aarch64\"\n",
    "[arch.arm64]\nemulator = \"rosetta\"\n",
    "# nothing to choose\n",
    "[arch.armel]\ncpu = \"arm1176\"\n",
    "[arch.arm]\ncpu = \"pentium\"\n",
    "[arch.arm]\nemulator = \"box64\"\ncpu = \"max\"\n",
    "[arch.armhf]\ncpu = 'arm1176'\n[arch.aarch64]\nemulator = \"qemu\"\ncpu = \"max,sve=off\"\n[arch.s390x]\nemulator = \"qemu\"\n",
    "[arch.x86_64]\nemulator = \"box64\"\npath = \"/usr/local/bin/box64\"\n[arch.\"linux/386\"]\nemulator = \"fex\"\n[arch.arm64]\nemulator = \"qemu\"\npath = \"/opt/qemu #8/qemu-aarch64\"\n",
    "[arch.x86_64]\nemulator = 'box64'\npath = '/opt/b\\x/box64'",
    "[arch.x86_64]\nemulator = \"box\\u0036\\u0034\"\npath = \"/opt/b\\\\x/box64\"",
    "arch.x86_64 = { emulator = \"box64\", path = \"/opt/b\\\\x/box64\" }",
    "[arch]\nx86_64.emulator = \"box64\"\nx86_64.path = '/opt/b\\x/box64'",
    "[arch.vax]\nemulator = \"qemu\"",
    "[arch.x86_64]\nemulater = \"box64\"",
    "[arch.x86_64]\nemulator = box64",
    "[arch.x86_64]\npath = \"/x\"",
    "[arch.arm]\ncpu = \"arm1176 -d\"",
    "[arch.arm]\ncpu = 7",
    "[arch.x86_64]\npath = \"box64\"\nemulator = \"box64\"",
    "[emulators]\n",
    "[arch.amd64]\nemulator = \"box64\"\n[arch.x86_64]",
    "[arch.x86_64]\nemulator = \"box64\"\nemulator = \"fex\"",
];

/// The ```toml blocks of `text` (Markdown, or `//!` doc lines).
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let line = line
            .strip_prefix("//!")
            .map_or(line, |l| l.strip_prefix(' ').unwrap_or(l));
        match (&mut block, line.trim_end()) {
            (None, "```toml") => block = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn config_seeds(dir: &Path) -> Result<(), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut n = 0;
    for doc in ["README.md", "crates/cli/src/config.rs"] {
        let p = repo.join(doc);
        let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let blocks = toml_blocks(&text);
        if blocks.is_empty() {
            return Err(format!("{}: no ```toml example", p.display()));
        }
        for b in blocks {
            put(dir, &format!("doc-{n}"), b.as_bytes())?;
            n += 1;
        }
    }
    for (i, c) in TEST_CONFIGS.iter().enumerate() {
        put(dir, &format!("test-{i}"), c.as_bytes())?;
    }
    Ok(())
}
