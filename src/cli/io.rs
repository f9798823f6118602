//! `ferrodax io`: xfs_io-style commands on one file of a pool.

use clap::Args;
use std::path::PathBuf;

/// Arguments of `ferrodax io`.
#[derive(Args, Debug)]
pub struct IoArgs {
    /// Create the file if it does not exist.
    #[arg(short = 'f')]
    pub create: bool,
    /// A command to run (repeatable), e.g. -c "pwrite -S 0x61 0 4k".
    #[arg(short = 'c', required = true)]
    pub commands: Vec<String>,
    /// The pool.
    pub pool: PathBuf,
    /// The file inside the pool.
    pub path: String,
}

/// Runs the commands; returns the exit status.
pub fn run(_args: IoArgs) -> i32 {
    eprintln!("io: not implemented yet");
    1
}
