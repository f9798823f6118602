//! What a closed pipe does to ferrodax's programs (the `ferrodax` command line and the tools):
//! `ferrodax tour | head -2` or `ferrodax-difftest | head -3` must end without Rust's "failed
//! printing to stdout: Broken pipe" panic message.
//!
//! Owns one panic hook. The programs keep the Rust runtime's SIGPIPE disposition (ignored), so a
//! write to a closed pipe is an error: that is what a socket needs (the pool server and its clients
//! must see a hung-up peer as an error they handle, not die of SIGPIPE), and it is what lets the
//! tools' scratch XFS guard unmount on the way out (the panic `println!` raises unwinds through
//! it, where a death by SIGPIPE would skip it). The hook only keeps that panic quiet: it prints
//! nothing for it and leaves every other panic to the default hook. The program then ends with
//! status 101, each operation before it durable as always. Must never swallow a panic that is not a
//! failed write to a closed standard stream, and never stop the unwinding.

/// Installs the hook: a panic from printing to a closed standard output or error ends the program
/// quietly (exit status 101, every destructor run); any other panic reports as usual. Call it
/// first thing in `main`.
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
