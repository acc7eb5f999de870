//! qemu-shim's ground floor: what every other part agrees on.
//!
//! The core (always built, `no_std`, no allocation) is what the interpreter
//! links: the [`arch`] table, [`elf`] header validation and classification,
//! and the [`dispatch`] table format the CLI writes into the interpreter
//! file. The `std` feature adds the kernel's text formats, binfmt_misc I/O
//! against a root directory, and probing what the host runs natively.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub mod arch;
pub mod dispatch;
pub mod elf;

#[cfg(feature = "std")]
pub mod binfmt;
#[cfg(feature = "std")]
pub mod format;
#[cfg(feature = "std")]
pub mod probe;
