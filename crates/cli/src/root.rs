//! Opening the binfmt_misc directory a command works on.
//!
//! The default root is mounted when `install` needs it and it is not
//! mounted, as systemd does at boot. A directory given with `--binfmt-dir`
//! is used as is, never mounted: it may be a test instance or a path the
//! user mistyped, and mounting there would hide what is there.

use std::path::Path;

use qemu_shim_registry::binfmt::{self, Binfmt};

use crate::error::{Error, Result};

/// The root to change entries in: the default one mounted if needed.
pub fn open_for_change(dir: Option<&Path>) -> Result<Binfmt> {
    match dir {
        Some(d) => {
            let bf = Binfmt::new(d);
            if bf.is_mounted() {
                Ok(bf)
            } else {
                Err(not_mounted(d))
            }
        }
        None => {
            Binfmt::mount_default()?;
            Ok(Binfmt::new(binfmt::DEFAULT_ROOT))
        }
    }
}

/// The root to read (or remove entries from): never mounted. Whether it is
/// mounted is the caller's question ([`Binfmt::is_mounted`]).
pub fn open_for_read(dir: Option<&Path>) -> Binfmt {
    Binfmt::new(dir.unwrap_or(Path::new(binfmt::DEFAULT_ROOT)))
}

/// The error for a root that is not a mounted binfmt_misc.
pub fn not_mounted(dir: &Path) -> Error {
    Error::new(format!(
        "{} is not a mounted binfmt_misc (no register file)",
        dir.display()
    ))
    .hint(format!(
        "mount it: mount -t binfmt_misc binfmt_misc {}",
        dir.display()
    ))
}
