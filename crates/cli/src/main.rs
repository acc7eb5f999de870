//! The `qemu-shim` binary: everything is in the library (src/lib.rs), so
//! that the fuzz targets can link what parses untrusted input.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    qemu_shim_cli::main()
}
