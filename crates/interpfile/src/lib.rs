//! qemu-shim-interpfile: builds and reads qemu-shim's **interpreter file**,
//! the one file every binfmt_misc entry of qemu-shim points at.
//!
//! ```text
//! the built interpreter (qemu-shim-interp)   code, unchanged
//!   its dispatch-table region                 arch -> emulator, how to start it   [region]
//! one read-only PT_LOAD (carried emulators)   each emulator's memory image        [link]
//! ```
//!
//! - [`prepare`] plans a file from the built interpreter and a [`Spec`]
//!   (emulators, flags, carried or by path, pre-relocation base) for a
//!   [`Target`] host arch, which is a parameter, not the arch this crate is
//!   compiled for: an x86_64 build writes an aarch64 host's file. The
//!   [`Prepared`] file is then written ([`Prepared::write_file`]: sparse,
//!   sharing the emulators' extents where the file system can) or compared
//!   with an installed one ([`Prepared::same_as`]), streamed one emulator at
//!   a time into an [`Output`]; [`build`] makes it in memory (tests, small
//!   files).
//! - [`read_spec`], [`read_spec_file`] and [`read_head`] read an installed
//!   file back; [`region`] finds its table.
//!
//! The table's format is the registry core's (`dispatch`), the code the
//! interpreter itself links: what is written here is what every exec reads.
//! ELF structures are read and written with goblin's ELF64 types through
//! scroll, little-endian (both supported hosts are).
#![forbid(unsafe_code)]

mod error;
pub mod link;
pub mod output;
pub mod region;
mod spec;
mod target;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use error::{io_reason, Error, Result};
pub use link::ALIGN;
pub use output::{Compare, FileOut, Output};
pub use region::{configure, read_head, read_spec, read_spec_file, region};
pub use spec::{build, build_with, prepare, prepare_with, Built, Prepared, Spec, Stamp};
pub use target::Target;
