//! The dispatch table region inside the interpreter binary.
//!
//! The build reserves the region with an empty table; `qemu-shim install`
//! copies the binary and overwrites the region with the arches it
//! registered and their emulators. The region holds no pointers, so it
//! needs no relocation.

use qemu_shim_registry_core::dispatch::{Table, TableError};

/// The table as written into this interpreter file.
pub fn get() -> Result<Table<'static>, TableError> {
    Table::parse(crate::sys::table_region())
}
