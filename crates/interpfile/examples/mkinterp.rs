//! Writes an interpreter file for an aarch64 host, without registering
//! anything: the aarch64-host checks (scripts/aarch64-host/run) run it on
//! this x86_64 machine. The target arch is the library's parameter, so this
//! is a native program; `install` cannot do it (it builds for the host it
//! runs on, and registers).
//!
//! Usage: mkinterp SHIM OUT [--no-carry] [--no-prelink] [--assume-p] [--cpu=ARCH=MODEL]... ARCH=EMULATOR...
//!
//! SHIM is the built aarch64 qemu-shim-interp; each ARCH=EMULATOR names an
//! emulator (a static-pie aarch64 qemu) for a row of the arch table. The
//! defaults are install's: carried, pre-relocated at a random address.
//! `--assume-p` sets the table flag that makes the interpreter read the P
//! argv layout (`[interp, prog, argv0, args…]`) without AT_FLAGS (install
//! sets it on kernels before 5.12; the checks run on ≥ 6.7). `--cpu=ARCH=MODEL`
//! records a qemu CPU model for ARCH, as the config's `cpu` does.

use std::path::PathBuf;
use std::process::ExitCode;

use qemu_shim_interpfile::{build, read_spec, Spec, Target};
use qemu_shim_registry_core::arch;
use qemu_shim_registry_core::dispatch::FLAG_ASSUME_P;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkinterp: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let target = Target::Aarch64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut carry, mut prelink, mut assume_p) = (true, true, false);
    let mut paths = Vec::new();
    let mut emulators = Vec::new();
    let mut cpu = Vec::new();
    for a in args {
        match a.as_str() {
            "--no-carry" => carry = false,
            "--no-prelink" => prelink = false,
            "--assume-p" => assume_p = true,
            _ if a.starts_with("--cpu=") => {
                let (name, model) = a["--cpu=".len()..]
                    .split_once('=')
                    .ok_or("--cpu=ARCH=MODEL")?;
                cpu.push((name.to_string(), model.to_string()));
            }
            _ => match a.split_once('=') {
                Some((name, path)) => {
                    let row = arch::by_name(name).ok_or(format!("unknown arch {name}"))?;
                    emulators.push((row.name.to_string(), PathBuf::from(path)));
                }
                None => paths.push(PathBuf::from(a)),
            },
        }
    }
    let [shim, out] = <[PathBuf; 2]>::try_from(paths).map_err(|_| {
        "usage: mkinterp SHIM OUT [--no-carry] [--no-prelink] [--assume-p] [--cpu=ARCH=MODEL]... ARCH=EMULATOR..."
    })?;
    if emulators.is_empty() {
        return Err("no ARCH=EMULATOR given".into());
    }
    let image = std::fs::read(&shim).map_err(|e| format!("cannot read {}: {e}", shim.display()))?;
    let prelink_base = if carry && prelink {
        Some(target.random_base().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let spec = Spec {
        target,
        flags: if assume_p { FLAG_ASSUME_P } else { 0 },
        emulators,
        carry,
        prelink_base,
        plain: Vec::new(),
        cpu,
    };
    let built = build(&image, &spec).map_err(|e| e.to_string())?;
    for (arch, why) in &built.by_path {
        if carry {
            return Err(format!("{arch} was not carried: {why}"));
        }
    }
    std::fs::write(&out, &built.image)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", out.display()))?;
    let back = read_spec(&built.image).map_err(|e| e.to_string())?;
    println!(
        "{}: {} bytes, carry={}, prelink_base={}, flags={:#x}",
        out.display(),
        built.image.len(),
        back.carry,
        back.prelink_base
            .map_or("none".into(), |b| format!("{b:#x}")),
        back.flags
    );
    Ok(())
}
