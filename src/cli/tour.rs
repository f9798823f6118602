//! `ferrodax tour`: the README's main-job command.

use std::path::Path;

/// Runs the tour; returns the exit status.
pub fn run(_pool: &Path) -> i32 {
    eprintln!("tour: not implemented yet");
    1
}
