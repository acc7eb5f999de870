//! qemu-shim-interp's logic.
#![no_std]
#![deny(unsafe_code)]

pub mod sys;
