//! The `ferrodax` command: see `ferrodax --help`.
//!
//! Users run it as one process per command, so its start is lean: it is entered through
//! `#![no_main]` ([`ferrodax_hostkit::entry`] does the part of Rust's runtime start it needs), and it
//! takes `pow`, the one libm function it uses, from the `libm` crate, so the process does not load
//! libm.so (65 µs measured). The unwinder is linked statically (build.rs). Must never do work
//! before `run_program`'s descriptor check.

// The unit tests of the command's modules run under the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

/// The process entry, called by the C library's start code with the command line (which std reads
/// on its own: `std::env::args` works without Rust's runtime start on Linux).
// SAFETY (no_mangle): with `no_main`, nothing else in the program defines `main`; the C start code
// calls it with the signature it expects.
#[cfg_attr(not(test), unsafe(no_mangle))]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    ferrodax_hostkit::entry::run_program(ferrodax_cli::run)
}

/// C's `pow(x, y)`, from the `libm` crate (a port of musl's, within 1 ulp). The program's only
/// reference to libm is indicatif's progress-rate estimate; defining the symbol here resolves it
/// at link time, and the linker (`--as-needed`) then records no dependency on libm.so.
// SAFETY (no_mangle): C's `double pow(double, double)` signature; no other `pow` is linked, as
// libm.so is not loaded (tests/cli.rs checks that).
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[path = "cli/mod.rs"]
mod ferrodax_cli;
