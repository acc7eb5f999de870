//! `qemu-shim`: installs, inspects and removes qemu-shim's binfmt_misc
//! registration. The binary (src/main.rs) only calls [`main`], which parses
//! the command line, calls [`run`], and turns its outcome into the exit
//! code in one place.
//!
//! A library so that what reads untrusted input can be reached from
//! outside the binary: the fuzz targets (fuzz/, `config`) link it. Only
//! [`main`] and [`config`] are public; the commands stay private modules.

#![forbid(unsafe_code)]

mod analysis;
mod child;
mod cli;
pub mod config;
mod cpu;
#[cfg(test)]
mod deploy_tests;
mod doctor;
mod emulator;
mod entries;
mod error;
mod files;
mod install;
mod interp;
mod origin;
mod persist;
#[cfg(test)]
mod plain_tests;
mod progress;
mod report;
mod root;
mod run;
mod select;
mod sources;
mod status;
#[cfg(test)]
mod testutil;
mod trust;
mod uninstall;
mod userdir;
mod which;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::report::write_json;

/// Exit code: the command did what was asked (`which`: something runs the
/// file, the CPU or an entry's emulator; `doctor`: nothing is broken).
pub const EXIT_OK: u8 = 0;
/// Exit code: the command failed, the reason printed as one line on stderr;
/// or `which` found nothing that runs the file, `doctor` something broken.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line was wrong (printed by clap).
pub const EXIT_USAGE: u8 = 2;

/// The whole program: parses the command line (clap prints usage errors and
/// exits 2), runs the command, prints its error as one line.
pub fn main() -> ExitCode {
    let cli = match cli::command()
        .try_get_matches_from(aliases(std::env::args_os().collect()))
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error(&e);
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// tonistiigi/binfmt's spellings (issue 18, item 7): `--install ARCHES` and
/// `--uninstall PATTERNS`, before any command (after global options only),
/// are the `install` and `uninstall` commands; what follows is theirs.
fn aliases(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()).map(str::to_owned) {
        if a == "--binfmt-dir" {
            i += 2;
            continue;
        }
        if a.starts_with("--binfmt-dir=") {
            i += 1;
            continue;
        }
        for (flag, command) in [("--install", "install"), ("--uninstall", "uninstall")] {
            if a == flag {
                args[i] = command.into();
            } else if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                let v = OsString::from(v);
                args.splice(i..=i, [OsString::from(command), v]);
            }
        }
        break;
    }
    args
}

/// Prints `e` as the one line the user sees.
fn print_error(e: &Error) {
    use crate::error::printable;
    use std::io::Write;
    // One write, one line (whatever a path in it holds), and no panic if
    // stderr is closed.
    let line = match e.hint_text() {
        Some(h) => format!(
            "qemu-shim: error: {} (hint: {})\n",
            printable(e.message()),
            printable(h)
        ),
        None => format!("qemu-shim: error: {}\n", printable(e.message())),
    };
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Runs the command; `Ok` carries the exit code of a command that ran to
/// its end (`which` answers 1 without failing).
fn run(cli: Cli) -> Result<u8, Error> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let binfmt_dir = cli.binfmt_dir;
    match cli.command {
        Command::Install(a) => install(a, binfmt_dir, &mut out),
        Command::Uninstall(a) => uninstall(a, binfmt_dir, &mut out),
        Command::Status(a) => status(a, binfmt_dir, &mut out),
        Command::Which(a) => which(a, binfmt_dir, &mut out),
        Command::Doctor(a) => doctor(a, binfmt_dir, &mut out),
        Command::Run(a) => {
            // Returns only when the program could not be started.
            drop(out);
            run_program(a, binfmt_dir)
        }
    }
}

fn install(
    a: cli::InstallArgs,
    binfmt_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let quiet = a.report.quiet || a.report.json;
    let sum = install::install(
        &install::Options {
            arches: a.arches,
            emulator_dirs: a.emulator_dir,
            install_dir: a.install_dir,
            interpreter: a.interpreter,
            binfmt_dir,
            carry: !a.no_carry,
            pin: !a.no_pin,
            prelink: !a.no_prelink,
            credentials: !a.no_credentials,
            config: a.config,
            allow_untrusted: a.allow_untrusted_emulators,
            persist: a.persist,
            binfmt_d_dir: a.binfmt_d_dir,
            progress: !quiet,
            quiet,
            verbose: a.verbose,
            rebuild_only: false,
        },
        out,
    )?;
    if a.report.json {
        write_json(out, &sum)?;
    }
    Ok(EXIT_OK)
}

fn uninstall(
    a: cli::UninstallArgs,
    binfmt_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let quiet = a.report.quiet || a.report.json;
    // Quiet, not even the note on waiting for the table's lock.
    let mut sink = std::io::sink();
    let sum = uninstall::uninstall(
        &uninstall::Options {
            arches: a.arches,
            install_dir: a.install_dir,
            only_install_dir: a.only_install_dir,
            binfmt_dir,
            binfmt_d_dir: a.binfmt_d_dir,
        },
        if quiet { &mut sink } else { out },
    )?;
    if a.report.json {
        write_json(out, &sum)?;
    } else if !quiet {
        uninstall::write_text(out, &sum);
    }
    Ok(EXIT_OK)
}

fn status(
    a: cli::StatusArgs,
    binfmt_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let bf = root::open_for_read(binfmt_dir.as_deref());
    // A directory named by hand that is not binfmt_misc is a mistake, not
    // an empty table (issue 18, item 5); the default root unmounted is a
    // fact status reports.
    if binfmt_dir.is_some() && !bf.is_mounted() {
        return Err(root::not_mounted(bf.root()));
    }
    // Names as install takes them; `all` (or none) is every arch.
    let only = match select::names(&a.arches)? {
        Some(names) => Some(select::resolve(&names, None)?),
        None => None,
    };
    let mut s = status::collect(&bf)?;
    status::verify_platforms(&mut s);
    if let Some(only) = &only {
        status::keep_arches(&mut s, only);
    }
    if a.json {
        write_json(out, &s)?;
    } else {
        let detail = match (&only, a.verbose) {
            (Some(_), _) => status::Detail::Arches,
            (None, true) => status::Detail::Verbose,
            (None, false) => status::Detail::Summary,
        };
        status::write_text(out, &s, detail);
    }
    Ok(EXIT_OK)
}

fn which(a: cli::WhichArgs, binfmt_dir: Option<PathBuf>, out: &mut dyn Write) -> Result<u8, Error> {
    let (w, code) = which::which(&a.file, binfmt_dir.as_deref())?;
    if a.json {
        write_json(out, &w)?;
    } else {
        which::write_text(out, &w);
    }
    Ok(code)
}

fn doctor(
    a: cli::DoctorArgs,
    binfmt_dir: Option<PathBuf>,
    out: &mut dyn Write,
) -> Result<u8, Error> {
    let r = doctor::doctor(&doctor::Options {
        binfmt_dir,
        binfmt_d_dir: a.binfmt_d_dir,
        arches: a.arches,
    })?;
    if a.json {
        write_json(out, &r)?;
    } else {
        doctor::write_text(out, &r);
    }
    Ok(r.exit_code())
}

/// `run`: returns only when the program could not be started.
fn run_program(a: cli::RunArgs, binfmt_dir: Option<PathBuf>) -> Result<u8, Error> {
    if binfmt_dir.is_some() {
        return Err(Error::new(
            "run always uses a private binfmt_misc instance: --binfmt-dir does not apply",
        ));
    }
    let (e, code) = run::run(&run::Options {
        emulator_dirs: a.emulator_dir,
        interpreter: a.interpreter,
        cache_dir: a.cache_dir,
        config: a.config,
        arches: a.arch,
        command: a.command,
    });
    print_error(&e);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use std::path::PathBuf;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn binfmt_dir_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["qemu-shim", "status", "--binfmt-dir", "/x"]).unwrap();
        assert_eq!(cli.binfmt_dir, Some(PathBuf::from("/x")));
    }

    #[test]
    fn run_takes_the_program_and_its_options_after_dashes() {
        let cli = Cli::try_parse_from([
            "qemu-shim",
            "run",
            "--emulator-dir",
            "/e",
            "--",
            "./prog",
            "--emulator-dir",
            "-x",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.emulator_dir, [PathBuf::from("/e")]);
        assert_eq!(a.command, ["./prog", "--emulator-dir", "-x"]);
        let cli = Cli::try_parse_from(["qemu-shim", "run", "./prog", "-v"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("not run")
        };
        assert_eq!(a.command, ["./prog", "-v"]);
        assert!(Cli::try_parse_from(["qemu-shim", "run"]).is_err());
    }

    #[test]
    fn quiet_and_json_do_not_mix() {
        for cmd in ["install", "uninstall"] {
            let e = Cli::try_parse_from(["qemu-shim", cmd, "--quiet", "--json"]).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
            assert!(Cli::try_parse_from(["qemu-shim", cmd, "--json"]).is_ok());
        }
    }

    #[test]
    fn version_names_the_interpreter_table_format() {
        let e = cli::command()
            .try_get_matches_from(["qemu-shim", "--version"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "interpreter table format {}",
                qemu_shim_registry::dispatch::VERSION
            )),
            "{text}"
        );
    }

    #[test]
    fn tonistiigi_spellings_are_aliases_of_install_and_uninstall() {
        let parse = |v: &[&str]| {
            let args = aliases(v.iter().map(OsString::from).collect());
            cli::command()
                .try_get_matches_from(args)
                .and_then(|m| Cli::from_arg_matches(&m))
        };
        let Command::Install(a) = parse(&["qemu-shim", "--install", "all"]).unwrap().command else {
            panic!("not install")
        };
        assert_eq!(a.arches, ["all"]);
        let cli = parse(&[
            "qemu-shim",
            "--binfmt-dir",
            "/b",
            "--install=arm64,riscv64",
            "--emulator-dir",
            "/e",
        ])
        .unwrap();
        assert_eq!(cli.binfmt_dir, Some(PathBuf::from("/b")));
        let Command::Install(a) = cli.command else {
            panic!("not install")
        };
        assert_eq!(a.arches, ["arm64,riscv64"]);
        assert_eq!(a.emulator_dir, [PathBuf::from("/e")]);
        let Command::Uninstall(a) = parse(&["qemu-shim", "--uninstall", "qemu-*"])
            .unwrap()
            .command
        else {
            panic!("not uninstall")
        };
        assert_eq!(a.arches, ["qemu-*"]);
        // Only before a command: as an argument it is the command's own.
        assert!(parse(&["qemu-shim", "status", "--install", "all"]).is_err());
    }

    #[test]
    fn reports_take_arches_and_json() {
        let cli = Cli::try_parse_from(["qemu-shim", "status", "arm64", "s390x", "-v"]).unwrap();
        let Command::Status(a) = cli.command else {
            panic!("not status")
        };
        assert_eq!((a.arches.len(), a.verbose, a.json), (2, true, false));
        let e = Cli::try_parse_from(["qemu-shim", "status", "--verbose", "--json"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
        let cli = Cli::try_parse_from(["qemu-shim", "which", "--json", "./p"]).unwrap();
        assert!(matches!(cli.command, Command::Which(a) if a.json));
        let cli = Cli::try_parse_from(["qemu-shim", "doctor", "arm64,riscv64", "--json"]).unwrap();
        assert!(
            matches!(cli.command, Command::Doctor(a) if a.json && a.arches == ["arm64,riscv64"])
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let e = Cli::try_parse_from(["qemu-shim", "frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
    }
}
