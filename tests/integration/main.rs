//! The end-to-end tests: qemu-shim's release binaries on the real kernel,
//! each test in its own user and mount namespace with a private binfmt_misc
//! instance (tests/private-binfmt.sh), except the `host_table_` container
//! tests, which hold the host's table (`qemu_shim_suite::host_table`).
//!
//! One test binary, one module per theme (as ripgrep's tests are): the
//! crates are linked once, not once per file. Run one theme with
//! `cargo test --test integration MODULE::` (e.g. `containers::`), one test
//! by (part of) its name. The shared helpers are the suite's library
//! (src/lib.rs).

mod cli;
mod containers;
mod ecosystem;
mod ergonomics;
mod hostile;
mod install_cost;
mod install_trust;
mod interp_errors;
mod kernel_exec;
mod packaging;
mod permissions;
mod run;
mod self_contained;
mod settings;
