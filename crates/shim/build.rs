//! Links the interpreter as a libc-free static PIE.
//!
//! - `-nostartfiles -nostdlib`: no C runtime; `_start` is ours (src/rt.rs, the binary's runtime).
//! - `-static-pie`: one self-contained file the kernel loads at a random
//!   address, with no program interpreter. Not a fixed-address executable:
//!   carried emulators and guest programs want the low addresses.
//! - `-Wl,--no-dynamic-linker`: no PT_INTERP even though the output is PIE.
//! - `-Wl,-z,noexecstack`, `-Wl,-z,relro,-z,now`: hardening that costs
//!   nothing at run time for a binary with no dynamic symbols.
//! - `-Wl,--gc-sections`, `-Wl,--build-id=none`: size.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,--no-dynamic-linker",
        "-Wl,-z,noexecstack",
        "-Wl,-z,relro,-z,now",
        "-Wl,--gc-sections",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
