//! `ferrodax bench`: benchmarks against memcpy/memcmp measured in the same run.

use clap::Args;

/// Arguments of `ferrodax bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Smaller sizes, for a quick look (the table says so).
    #[arg(long)]
    pub quick: bool,
}

/// Runs the benchmarks and prints the table; returns the exit status.
pub fn run(_args: BenchArgs) -> i32 {
    eprintln!("bench: not implemented yet");
    1
}
