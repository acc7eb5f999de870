//! Support for qemu-shim's end-to-end tests and benchmarks: where the built
//! binaries and the fetched fixtures are.
