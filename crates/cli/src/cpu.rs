//! The administrator's CPU model per arch (`cpu = "…"` in the config, issue
//! 15), checked before it is written into the interpreter file: qemu's
//! `-cpu help` lists models TCG cannot run (x86's `host`), so the check is
//! running that arch's probe program under the model, as every emulated
//! exec will.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use qemu_shim_registry::arch::Arch;
use qemu_shim_registry::programs::{self, Kind};

use crate::error::{Error, Result};

/// Longest a probe may take under a model (qemu's start-up is ~ms).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `a`'s exit(0) probe program with `emulator -cpu model`; `Ok` if it
/// exits 0. `at` says where the model was chosen (`config.toml:3`).
pub fn check(a: &Arch, emulator: &Path, model: &str, at: &str) -> Result<()> {
    let refused = |why: String| {
        Error::new(format!("{at}: cpu model \"{model}\" for {}: {why}", a.name)).hint(format!(
            "`{} -cpu help` lists the models; leave cpu out for qemu's default",
            emulator.display()
        ))
    };
    let program = programs::program(a.name, Kind::Exit(0))
        .ok_or_else(|| Error::new(format!("no probe program for {}", a.name)))?;
    let mut file = tempfile::Builder::new()
        .prefix("qemu-shim-cpu-probe.")
        .tempfile()
        .map_err(|e| Error::io("cannot create", &std::env::temp_dir(), &e))?;
    std::io::Write::write_all(&mut file, &program)
        .map_err(|e| Error::io("cannot write", file.path(), &e))?;
    // qemu-user refuses a program without an exec bit, silently (exit 1).
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(|e| Error::io("cannot chmod", file.path(), &e))?;
    // qemu reads its settings from QEMU_* variables too: only -cpu counts.
    let mut cmd = Command::new(emulator);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("QEMU_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("-cpu")
        .arg(model)
        .arg(file.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("cannot run", emulator, &e))?;
    let Some((status, err)) = crate::child::wait_for(&mut child, TIMEOUT)
        .map_err(|e| Error::io("cannot wait for", emulator, &e))?
    else {
        return Err(refused(format!(
            "the probe program did not finish in {} s",
            TIMEOUT.as_secs()
        )));
    };
    if status.success() {
        return Ok(());
    }
    // qemu's own words ("unable to find CPU model 'x'"), without its name.
    let said = err.lines().find(|l| !l.trim().is_empty()).map(|l| {
        l.split_once(": ")
            .filter(|(name, _)| !name.contains(' '))
            .map_or(l, |(_, rest)| rest)
            .trim()
            .to_string()
    });
    let why = match (said, status.code()) {
        (Some(s), _) => format!("qemu refuses it: {s}"),
        (None, Some(c)) => format!("the probe program exited {c} under it"),
        (None, None) => format!("the probe program died under it ({status})"),
    };
    Err(refused(why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_shim_registry::arch;

    #[test]
    fn a_model_qemu_runs_passes_and_others_are_refused_with_qemus_words() {
        let qemu = crate::plain_tests::fixture("qemu/qemu-arm-static");
        let arm = arch::by_name("arm").unwrap();
        check(arm, &qemu, "arm1176", "config.toml:2").unwrap();
        check(arm, &qemu, "cortex-a7", "config.toml:2").unwrap();
        let e = check(arm, &qemu, "pentium", "config.toml:2").unwrap_err();
        assert_eq!(
            e.message(),
            "config.toml:2: cpu model \"pentium\" for arm: qemu refuses it: unable to find CPU model 'pentium'"
        );
        assert!(e.hint_text().unwrap().contains("-cpu help"), "{e:?}");
    }
}
