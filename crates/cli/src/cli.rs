//! The command line: what `qemu-shim` accepts, its help text and the
//! version it prints. Self-contained (clap only, and the registry core for
//! the table format's version) so the build script can include it too and
//! generate the man pages and shell completions from the same definition
//! (`build.rs`, issue 13).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Where the interpreter file is installed unless `--install-dir` says:
/// `/usr/local/lib/qemu-shim` for a build from source; a distribution
/// package builds with `QEMU_SHIM_INSTALL_DIR` set (Debian's:
/// `/var/lib/qemu-shim`, see scripts/build-deb).
pub const DEFAULT_INSTALL_DIR: &str = match option_env!("QEMU_SHIM_INSTALL_DIR") {
    Some(d) => d,
    None => "/usr/local/lib/qemu-shim",
};

/// Where the built interpreter is found when `--interpreter` is not given:
/// next to `qemu-shim` unless the build set `QEMU_SHIM_LIBEXEC_DIR`
/// (a package keeps it out of /usr/bin: `/usr/libexec/qemu-shim`).
pub const LIBEXEC_DIR: Option<&str> = option_env!("QEMU_SHIM_LIBEXEC_DIR");

/// Where `install --persist` writes its binfmt.d file.
pub const DEFAULT_BINFMT_D_DIR: &str = "/etc/binfmt.d";

/// The install record's format version (the state file beside the
/// interpreter file, see `sources`).
pub const STATE_FORMAT: u32 = 1;

/// What `--version` prints after the name: the release, and the formats of
/// the files it writes, so a bug report or a package says which
/// interpreter files this CLI reads.
pub fn version_text() -> String {
    format!(
        "{} (interpreter table format {}, install record format {STATE_FORMAT})",
        env!("CARGO_PKG_VERSION"),
        qemu_shim_registry_core::dispatch::VERSION
    )
}

/// The command definition, with its version text.
pub fn command() -> clap::Command {
    Cli::command().version(version_text())
}

const EXAMPLES: &str = "\
Examples:
  qemu-shim install                     register every foreign arch that has an emulator
  qemu-shim install aarch64 linux/riscv64
                                        register these two (others stay as they are)
  qemu-shim status                      which entry runs each arch, and its emulator
  qemu-shim status arm64                everything about one arch
  qemu-shim which ./hello-arm64         which entry and emulator would run this file
  qemu-shim uninstall                   remove qemu-shim's entries and its interpreter
  qemu-shim doctor                      check every arch works, and how to fix those that do not
  qemu-shim run -- ./hello-arm64 -v     run one program, without root, in a private binfmt_misc
  qemu-shim --install all               alias (tonistiigi/binfmt's spelling) of `install all`
  qemu-shim --uninstall 'qemu-*'        alias of `uninstall 'qemu-*'`: every entry of qemu-shim's

Exit status:
  0  done (which: something runs the file, natively or through an entry;
     doctor: nothing is broken)
  1  failed (which: nothing runs the file; doctor: something is broken)
  2  bad command line
  run: the program's own status; 125 qemu-shim failed, 126 the program cannot
  be executed, 127 the program is not found";

/// Run programs for other CPU architectures through qemu-user, transparently.
///
/// qemu-shim registers one binfmt_misc entry per foreign architecture, all
/// pointing at one static interpreter file (44 KB, plus a copy of each
/// registered emulator it carries: about 336 MiB for all 31 foreign arches,
/// 11-13 MiB per arch; install prints its size). When you run a foreign program,
/// the kernel starts the interpreter, which checks the program's ELF header
/// and starts the matching qemu-user emulator with the program's own argv[0].
/// Only qemu-shim's entries (named qemu-shim-<arch>) are ever changed;
/// entries from distro packages or other tools are left alone.
///
/// tonistiigi/binfmt's spellings are taken as aliases: `qemu-shim --install
/// ARCHES` (a comma list, or all) is `qemu-shim install ARCHES`, and
/// `qemu-shim --uninstall PATTERNS` (such as 'qemu-*') is `qemu-shim
/// uninstall PATTERNS`.
#[derive(Debug, Parser)]
#[command(name = "qemu-shim", version, after_long_help = EXAMPLES)]
pub struct Cli {
    /// The binfmt_misc directory to work on
    ///
    /// Defaults to /proc/sys/fs/binfmt_misc, which `install` mounts when it
    /// is not mounted (as systemd does). A directory given here is used as
    /// is and never mounted.
    #[arg(long, global = true, value_name = "DIR")]
    pub binfmt_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Install(InstallArgs),
    Uninstall(UninstallArgs),
    Status(StatusArgs),
    Which(WhichArgs),
    Doctor(DoctorArgs),
    Run(RunArgs),
}

/// Register qemu-shim for foreign architectures
///
/// Without arguments, registers every architecture this machine does not run
/// natively and has an emulator for (as does `all`). Naming architectures
/// registers those and leaves qemu-shim's other entries in place; any case,
/// comma lists, and these spellings are taken: qemu's (aarch64), Debian's
/// (arm64, armhf, ppc64el), docker's (linux/arm64, arm/v7) and entry names
/// (qemu-shim-aarch64).
///
/// The interpreter file, holding the emulators found now, is written to the
/// install directory; each entry is named qemu-shim-<arch> and registered
/// with flags F (works in any chroot or mount namespace, even one without
/// emulators or /proc), P (programs keep their argv[0]), O (the kernel
/// opens the program, so execute-only programs run) and C (setuid and setgid
/// programs run with their own credentials; the interpreter then drops the
/// QEMU_* variables and the others listed in the README, so the user who
/// starts such a program cannot steer it). Running it again changes nothing
/// unless something changed. If a step fails, what this run did is undone.
///
/// Everything that decides what runs for every user — the install
/// directory, the binfmt.d directory, the emulators, the interpreter to
/// install, the config — is refused unless it and every directory above
/// it are owned by root and not writable by group or others.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct InstallArgs {
    /// Architectures to register (default, or `all`: every foreign one with an emulator)
    #[arg(value_name = "ARCH|PLATFORM")]
    pub arches: Vec<String>,

    /// Look for emulators here instead of /usr/local/bin and /usr/bin (repeatable)
    ///
    /// In each directory, qemu-<arch>-static is looked for first, then
    /// qemu-<arch>; the first directory that has the name wins. Without
    /// it, each emulator is taken first from where the last install to the
    /// same interpreter file found it (its install record), so a later
    /// install needs no --emulator-dir. An arch found nowhere whose
    /// emulator the installed file carries is registered from that file as
    /// it is (a note says so).
    #[arg(long, value_name = "DIR")]
    pub emulator_dir: Vec<PathBuf>,

    /// Where the interpreter file goes
    ///
    /// Refused when it, or a directory above it, is not owned by root or is
    /// writable by group or others (a root-owned sticky directory such as
    /// /tmp may lie above it, not be it). Directories it creates are 0755,
    /// whatever the umask.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INSTALL_DIR)]
    pub install_dir: PathBuf,

    /// The built qemu-shim-interp to install (default: the one next to this program)
    ///
    /// It, and every directory above it, must be owned by root and not
    /// writable by group or others (see --allow-untrusted-emulators).
    #[arg(long, value_name = "FILE")]
    pub interpreter: Option<PathBuf>,

    /// Do not carry the emulators in the interpreter file; start them by path
    ///
    /// The interpreter then looks for each emulator at the path found now,
    /// inside the mount namespace of every program it runs: a container or
    /// chroot must hold the emulators at the same paths. For build images
    /// that bring their own emulators; see the README.
    ///
    /// The entries then get neither O nor C: setuid programs run with the
    /// caller's credentials, as with --no-credentials.
    #[arg(long)]
    pub no_carry: bool,

    /// Register without the C flag: setuid and setgid programs run with the
    /// credentials of the user who starts them, as with the distros'
    /// registrations (sudo, su, passwd then fail as for an ordinary user)
    #[arg(long)]
    pub no_credentials: bool,

    /// Register without the F flag: the kernel looks the interpreter up by
    /// path at each exec, inside the program's mount namespace
    #[arg(long)]
    pub no_pin: bool,

    /// Do not pre-relocate the carried emulators (see --prelink)
    #[arg(long, conflicts_with = "prelink")]
    pub no_prelink: bool,

    /// Pre-relocate the carried emulators for a fixed address (the default)
    ///
    /// The interpreter file is written as a fixed-address executable at an
    /// address drawn at random at install time, with the emulators'
    /// pointers already set for it: each emulated start skips qemu's own
    /// relocation (about 94,000 pointers, 1.5 MB written) and the pages stay
    /// shared between all emulated processes. The emulators' address is then
    /// fixed per install rather than per exec; setuid programs never use it
    /// (their emulator is moved to a random address and relocated at start).
    #[arg(long)]
    pub prelink: bool,

    /// Also write a binfmt.d file so systemd-binfmt registers the same
    /// entries at every boot
    ///
    /// The file, zz-qemu-shim.conf, holds one register line per entry this
    /// install made; its name sorts after the distributions' files, so at
    /// boot our entries are registered last and win. Once written, later
    /// installs keep it in step; uninstall removes it.
    #[arg(long)]
    pub persist: bool,

    /// Where the binfmt.d file goes
    ///
    /// Checked as the install directory is: systemd applies every file in
    /// it at boot.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BINFMT_D_DIR)]
    pub binfmt_d_dir: PathBuf,

    /// The per-arch emulator choice to read (default: /etc/qemu-shim/config.toml, if it exists)
    ///
    /// qemu is used for every arch the file does not name. Format:
    ///   [arch.x86_64]                  # any arch or platform name
    ///   emulator = "box64"             # "qemu", "box64" or "fex"
    ///   path = "/usr/local/bin/box64"  # optional; else looked up in the emulator dirs
    /// Read now and written into the interpreter file, never at exec time.
    /// As root, a file not owned by root or writable by group or others, a
    /// symbolic link, or a file in a directory others could change is
    /// refused.
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

    /// Take emulators and an interpreter that others could change (DANGEROUS)
    ///
    /// Install refuses an emulator (found in the emulator directories or
    /// named by the config's path) or the interpreter to install
    /// (--interpreter, or the one next to this program) when the file, a
    /// directory on its path or a symbolic link on the way is not owned by
    /// root or is writable by group or others: whoever can change it
    /// chooses what runs as root whenever root or a setuid program runs a
    /// foreign program. This lets them through: use it only when everyone
    /// who can change those files may run code as root. The install
    /// directory, the binfmt.d directory and the config are checked the
    /// same way, with no override.
    #[arg(long)]
    pub allow_untrusted_emulators: bool,

    /// List every entry in the report, also those left as they were (by
    /// default: what changed, and one line for the rest)
    #[arg(long, conflicts_with_all = ["quiet", "json"])]
    pub verbose: bool,

    #[command(flatten)]
    pub report: ReportArgs,
}

/// How install and uninstall report what they did.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print nothing but errors (and no progress)
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,

    /// Print what was done as one JSON object, for scripts (no progress)
    #[arg(long)]
    pub json: bool,
}

/// Remove qemu-shim's entries
///
/// Without arguments, removes every entry named qemu-shim-*; with
/// architectures, only theirs. An interpreter file is deleted once no
/// qemu-shim entry points at it; one still used is rewritten without the
/// emulators of the entries removed (from the files the others were
/// installed from; the others are registered again on the new file), or
/// kept, saying why it cannot be. Other tools' entries are never touched.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Architectures to unregister, named as for install, or shell patterns
    /// matching those names (`qemu-*`, as tonistiigi/binfmt takes them)
    /// (default, `all` or `qemu-*`: all of qemu-shim's entries)
    #[arg(value_name = "ARCH|PLATFORM")]
    pub arches: Vec<String>,

    /// Also delete an unused interpreter file left in this directory
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INSTALL_DIR)]
    pub install_dir: PathBuf,

    /// Only entries whose interpreter is the file in --install-dir
    ///
    /// Entries of qemu-shim installed elsewhere (another --install-dir, or
    /// the host's, seen from a container that shares its table) stay. The
    /// Debian package removes its registration this way.
    #[arg(long)]
    pub only_install_dir: bool,

    /// Where install --persist wrote its binfmt.d file (its lines for the
    /// entries removed go; the file goes once empty)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BINFMT_D_DIR)]
    pub binfmt_d_dir: PathBuf,

    #[command(flatten)]
    pub report: ReportArgs,
}

/// Show which entry runs each architecture, and qemu-shim's entries
///
/// One row per architecture, sorted by name: its docker platform, the state
/// of qemu-shim's entry for it (enabled, disabled, not pinned, problem), the
/// entry the kernel runs its programs with (and the later ones it wins
/// over: the kernel tries the newest entry first), the emulator (carried in
/// the interpreter file with its version, started by path, or another
/// tool's interpreter) and how the emulator compares with the file it was
/// installed from. Then one line per problem, and the platforms that run
/// here (the native ones, and each arch whose tiny probe program just ran
/// through the table).
///
/// Each emulator is compared with its file by its stat stamp (the file is
/// read only when that moved): a carried copy whose file changed since
/// install is STALE (programs still run the old copy; `qemu-shim install`
/// refreshes it); one whose file is gone is vanished and gets no updates.
///
/// Name architectures (as install takes them) for everything about them;
/// --verbose adds every entry, ours and others', in the order the kernel
/// tries them, and every interpreter file with its emulators; --json gives
/// all of it, with tonistiigi/binfmt's `supported` and `emulators` lists.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show everything about these architectures (default: a table of all)
    #[arg(value_name = "ARCH|PLATFORM")]
    pub arches: Vec<String>,

    /// Also list every entry in match order and every interpreter file
    #[arg(long, short, conflicts_with = "json")]
    pub verbose: bool,

    /// Print the whole report as one JSON object (with arch names: only
    /// their rows in `arches`)
    #[arg(long)]
    pub json: bool,
}

/// Tell which entry and emulator would run a file
///
/// Reads the file's ELF header, names its architecture (or says it is
/// native, not ELF, or malformed), and shows the binfmt_misc entry the
/// kernel would pick for it and the emulator that would run it, carried in
/// the interpreter file or started by path. Exits 0 when something runs
/// the file (this CPU, natively, or an entry's emulator), 1 when nothing
/// does (no entry for a foreign arch, or qemu-shim's interpreter would
/// refuse it).
#[derive(Debug, Args)]
pub struct WhichArgs {
    /// The program to look at
    pub file: PathBuf,

    /// Print the answer as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Run one program with qemu-shim, without root and without touching the host's table
///
/// Runs PROG in a new user and mount namespace with its own, private
/// binfmt_misc instance (Linux 6.7 or later, user namespaces allowed) where
/// PROG's own arch (or those --arch names; every foreign arch with an
/// emulator when PROG is native or a script) is registered, as install
/// would, but without C (no program changes credentials in that namespace). PROG and
/// everything it starts, foreign or not, run as you; the host's binfmt_misc
/// table is not used or changed. The interpreter file is built once per
/// arch set into $XDG_CACHE_HOME/qemu-shim (or ~/.cache/qemu-shim) and
/// rebuilt when the interpreter or an emulator changes.
///
/// The exit status is PROG's own (a shell shows death by signal N as
/// 128+N); 125 if qemu-shim failed before PROG started, 126 if PROG cannot
/// be executed, 127 if it is not found.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Look for emulators here instead of /usr/local/bin and /usr/bin (repeatable)
    #[arg(long, value_name = "DIR")]
    pub emulator_dir: Vec<PathBuf>,

    /// The built qemu-shim-interp to use (default: the one next to this program)
    #[arg(long, value_name = "FILE")]
    pub interpreter: Option<PathBuf>,

    /// Where the interpreter file is cached (default: $XDG_CACHE_HOME/qemu-shim
    /// or ~/.cache/qemu-shim; must allow exec). It must be yours and every
    /// directory above it yours or root's, none writable by others (but a
    /// sticky one of root's, like /tmp): else run refuses, exit 125
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The per-arch emulator choice to read, as for install (default:
    /// /etc/qemu-shim/config.toml, if it exists)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Register only these arches (repeatable; comma lists and `all` taken)
    ///
    /// Default: the program's own arch, read from its ELF header, so the
    /// cache holds only the emulators you use (about 12 MiB per arch; all
    /// 31 foreign arches take some 336 MiB). A program that is not foreign
    /// ELF (a native one, a script) may start any: every foreign arch with
    /// an emulator is registered then. Each arch set has its own cached
    /// file.
    #[arg(long, value_name = "ARCH")]
    pub arch: Vec<String>,

    /// The program to run, and its arguments
    #[arg(
        value_name = "PROG [ARGS]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// Check that qemu-shim's registration works, and say how to fix it
///
/// Checks that binfmt_misc is mounted and enabled, which features the
/// kernel has, that qemu-shim's entries are enabled and pinned and that no
/// other entry takes their programs first; then runs, for every arch, a
/// tiny program of that arch through the kernel and checks it exits with
/// the status it was written to exit with. A carried emulator whose file
/// changed since install (a security update not yet carried) is broken
/// too; one whose file is gone is a note. Prints one line per check; each
/// broken arch's line ends with the fix. Exits 0 when nothing is broken,
/// 1 otherwise.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only these architectures, named as for install (default: every
    /// arch qemu-shim has an entry for); one named without an entry is broken
    #[arg(value_name = "ARCH|PLATFORM")]
    pub arches: Vec<String>,

    /// Where install --persist writes its binfmt.d file (its entries are
    /// checked to be registered)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BINFMT_D_DIR)]
    pub binfmt_d_dir: PathBuf,

    /// Print the checks as one JSON object: `ok`, and `checks`, each with
    /// its verdict, arch, message and fix
    #[arg(long)]
    pub json: bool,
}
