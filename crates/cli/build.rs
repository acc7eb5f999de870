//! Generates the man pages (clap_mangen) and the bash, zsh and fish
//! completions (clap_complete) from the command line definition in
//! src/cli.rs, into `$OUT_DIR/man` and `$OUT_DIR/completions`, so they can
//! never disagree with the binary built beside them. scripts/build-deb
//! picks them up from there (cargo names the directory in its
//! `build-script-executed` message).

#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

use std::path::Path;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    // Baked into the defaults (src/cli.rs) and so into the man pages.
    println!("cargo:rerun-if-env-changed=QEMU_SHIM_INSTALL_DIR");
    println!("cargo:rerun-if-env-changed=QEMU_SHIM_LIBEXEC_DIR");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = cli::command();
    // qemu-shim.1, and qemu-shim-install.1 etc. for each subcommand.
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "qemu-shim", &completions)?;
    }
    Ok(())
}
