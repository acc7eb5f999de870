//! qemu-shim's ground floor, without std: what the interpreter links and
//! every other part agrees on.
//!
//! The [`arch`] table, [`elf`] header validation and classification, and the
//! [`dispatch`] table format the CLI writes into the interpreter file. No
//! allocation, no std, no unsafe; `qemu-shim-registry` re-exports it all.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod arch;
pub mod dispatch;
pub mod elf;
