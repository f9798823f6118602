//! What a closed pipe does to the tools: `ferrodax-difftest | head -3` must end without Rust's
//! "failed printing to stdout: Broken pipe" panic message, and must still unmount its scratch XFS.
//!
//! Owns one panic hook. The tools keep the Rust runtime's SIGPIPE disposition (ignored), so a write
//! to a closed pipe is an error, which `println!` turns into a panic; that panic unwinds through
//! the scratch guard, which unmounts and deletes on the way out (a death by SIGPIPE, as the
//! `ferrodax` command line chooses, would skip it). The hook only keeps such a panic quiet: it
//! prints nothing for it and leaves every other panic to the default hook. Must never swallow a
//! panic that is not a failed write to a closed standard stream, and never stop the unwinding.

/// Installs the hook: a panic from printing to a closed standard output or error ends the tool
/// quietly (exit status 101, every destructor run); any other panic reports as usual.
pub fn end_quietly_on_closed_pipe() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !is_closed_pipe_print_failure(message) {
            default_hook(info);
        }
    }));
}

/// True for the message std's `print!` family panics with when the reader of its stream is gone
/// ("failed printing to stdout: Broken pipe (os error 32)").
fn is_closed_pipe_print_failure(message: &str) -> bool {
    let broken_pipe = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
    (message.starts_with("failed printing to stdout: ") || message.starts_with("failed printing to stderr: "))
        && message.ends_with(&broken_pipe)
}

#[cfg(test)]
mod tests {
    use super::is_closed_pipe_print_failure;

    #[test]
    fn only_a_print_to_a_closed_pipe_counts_as_one() {
        assert!(is_closed_pipe_print_failure("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(is_closed_pipe_print_failure("failed printing to stderr: Broken pipe (os error 32)"));
        assert!(!is_closed_pipe_print_failure(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_closed_pipe_print_failure("index out of bounds: Broken pipe (os error 32)"));
    }
}
