//! The start of a program entered through `#![no_main]`: what Rust's runtime start (`lang_start`)
//! does that ferrodax's programs rely on, without what only costs a one-command process time.
//!
//! Owns the process's first and last steps around the program's own `run`:
//! - the standard descriptors 0, 1 and 2 are open: a closed one is opened on /dev/null first, as
//!   Rust's runtime does, so a pool file opened later never becomes standard output;
//! - SIGPIPE is ignored, as Rust's runtime leaves it, so a write to a closed pipe or a hung-up
//!   socket is an error the program handles (see [`crate::closed_pipe`]);
//! - a panic that reaches `run` unwinds no further: the process exits with status 101, as a Rust
//!   program whose `main` panics does, after every destructor on the way ran;
//! - the exit flushes standard output (`std::process::exit`).
//!
//! What it leaves out is the runtime's stack-overflow report for the main thread: the runtime finds
//! the main thread's guard page by reading and parsing /proc/self/maps and sets up an alternate
//! signal stack, about 75 µs of a process that lives 2.5 ms. A stack overflow in the main thread
//! still stops the process at its guard page (SIGSEGV); only the message naming the thread is not
//! printed. A panic is reported as usual, except that the message names the main thread
//! `<unnamed>` rather than `main`. Must never be used by a program that needs more of the
//! runtime's start than this, and must never run anything before `prepare`'s descriptor check.

use std::panic::{catch_unwind, UnwindSafe};

/// The exit status of a program whose `run` panicked: Rust's own for a panicking `main`.
pub const PANIC_STATUS: i32 = 101;

/// Makes the process ready to run Rust code as Rust's runtime start would (the descriptor check
/// and SIGPIPE; see the module documentation). Called by [`run_program`]; public for a program
/// that needs its own entry.
pub fn prepare() {
    reopen_closed_standard_descriptors();
    // SAFETY: setting SIGPIPE's disposition to "ignore" touches no memory of ours and is what
    // Rust's runtime does before `main`; no handler of ours is replaced (none is installed yet).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Runs a program: [`prepare`], then `run`, then exits with its status (or [`PANIC_STATUS`] if it
/// panicked), standard output flushed. Meant to be the whole body of a `#![no_main]` program's
/// `extern "C" fn main`.
pub fn run_program(run: impl FnOnce() -> i32 + UnwindSafe) -> ! {
    prepare();
    let status = catch_unwind(run).unwrap_or(PANIC_STATUS);
    std::process::exit(status)
}

/// Opens /dev/null read-write on each of descriptors 0, 1 and 2 that is closed (one poll(2) call
/// finds them, as in Rust's runtime). If /dev/null cannot be opened the process aborts: going on
/// would let the next file opened stand in for a standard stream.
fn reopen_closed_standard_descriptors() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: poll reads and writes exactly the three pollfd structures we pass; a zero timeout
    // returns at once.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    for (fd, entry) in fds.iter().enumerate() {
        let closed = if polled < 0 {
            // poll itself failed (EINTR, ENOMEM): ask each descriptor directly.
            // SAFETY: F_GETFD on a descriptor number reads nothing of ours.
            unsafe { libc::fcntl(fd as libc::c_int, libc::F_GETFD) == -1 }
        } else {
            entry.revents & libc::POLLNVAL != 0
        };
        if closed {
            // SAFETY: open with a constant NUL-terminated path; the lowest free descriptor is the
            // closed one (lower ones are open: they were checked first).
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != fd as libc::c_int {
                std::process::abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_ignores_sigpipe_and_leaves_open_descriptors_alone() {
        // A handler that does nothing, not the default: a SIGPIPE another test of this process
        // raises meanwhile must not end the test run.
        extern "C" fn nothing(_: libc::c_int) {}
        // SAFETY: installs a handler that touches nothing (async-signal-safe by being empty).
        unsafe { libc::signal(libc::SIGPIPE, nothing as *const () as libc::sighandler_t) };
        let before: Vec<i32> = (0..3).map(|fd| unsafe { libc::fcntl(fd, libc::F_GETFL) }).collect();
        prepare();
        // SAFETY: reading the disposition only.
        let now = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut action);
            action.sa_sigaction
        };
        assert_eq!(now, libc::SIG_IGN);
        let after: Vec<i32> = (0..3).map(|fd| unsafe { libc::fcntl(fd, libc::F_GETFL) }).collect();
        assert_eq!(before, after);
    }
}
