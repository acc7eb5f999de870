//! The `qemu-shim-interp` binary: the libc-free entry point around
//! [`qemu_shim_interp::run`]. Everything that needs `unsafe` lives in the
//! library's `sys` module.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

// Links the runtime (`_start`, memory functions) from the library.
use qemu_shim_interp as _;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable by construction (no indexing, no unwrap: see the lints in
    // lib.rs); if it ever happens, fail like any other refusal.
    qemu_shim_interp::sys::exit(126)
}
