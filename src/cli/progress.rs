//! Progress bars for commands that can take more than a second (dedupe-scan, check, put, cp).
//!
//! Owns the look of every bar and the one rule about when to draw: only when standard error is a
//! terminal. Must never write anything when standard error is a pipe or a file (scripts and tests
//! see no progress output), and must never touch standard output, which carries the results.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// True when a person is likely watching standard error.
fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A bar counting `total` bytes (with rate and time left), labelled `what`; hidden when standard
/// error is not a terminal.
pub(super) fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{wide_bar:.cyan/blue}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .expect("the bytes bar template is valid")
    .progress_chars("=> ");
    ProgressBar::new(total).with_style(style).with_message(what.to_string())
}

/// A spinner with elapsed time for work whose size is unknown (`check` of a pool), labelled
/// `what`; hidden when standard error is not a terminal.
pub(super) fn spinner(what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("the spinner template is valid");
    let bar = ProgressBar::new_spinner().with_style(style).with_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
