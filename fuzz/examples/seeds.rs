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
//!   of the arch table, and what the kernel shows for it.
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
