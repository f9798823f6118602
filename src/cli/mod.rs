//! The command-line front end. Must never reach below the library API.

/// Runs the CLI and returns the exit status.
pub fn run() -> i32 {
    0
}
