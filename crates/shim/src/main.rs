//! The `qemu-shim-interp` binary: the libc-free entry point around
//! [`qemu_shim_interp::run`]. `unsafe` lives in the library's `sys` module
//! and in [`rt`], the entry point and memory functions.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod rt;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable by construction (no indexing, no unwrap: see the lints in
    // lib.rs); if it ever happens, fail like any other refusal.
    qemu_shim_interp::sys::exit(126)
}
