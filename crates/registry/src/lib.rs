//! qemu-shim's registry: what the CLI and the tests know about arches and
//! the kernel's binfmt_misc.
//!
//! The core ([`arch`] table, [`elf`] header validation and classification,
//! [`dispatch`] table format) lives in `qemu-shim-registry-core`, no_std,
//! which the interpreter links: the rows it classifies with are the rows
//! registered here. This crate re-exports it and adds the kernel's text
//! formats ([`mod@format`]), binfmt_misc I/O against a root directory
//! ([`binfmt`]), and probing what the host runs natively ([`probe`]).
//!
//! No `unsafe` code, except in one module that allows it: the probe's
//! `launch`, whose `pre_exec` closure makes a private binfmt_misc instance
//! and execs the probe between fork and exec (its safety argument is
//! there). `deny`, not `forbid`, so that module can: `forbid` cannot be
//! overridden.
#![deny(unsafe_code)]

pub use qemu_shim_registry_core::{arch, dispatch, elf};

pub mod binfmt;
pub mod format;
pub mod probe;
pub mod programs;
#[cfg(test)]
mod test_support;
