//! What a closed pipe does to the command line: `ferrodax tour | head -2` must end quietly, the
//! way `cat` or `xfs_io` does, never with Rust's "failed printing to stdout: Broken pipe" panic.
//!
//! Owns the one signal disposition the command line changes: SIGPIPE back to the default action
//! (the Rust runtime ignores it, which turns every write to a closed pipe into an error that
//! `println!` panics on). A command is then ended by SIGPIPE at its first write after the reader
//! went away, between two of its operations, each of which is durable when it returns (as when
//! xfs_io is killed by the same signal). Must never install a handler. A command that serves
//! clients over sockets must set SIGPIPE back to ignored (or send with MSG_NOSIGNAL), so that a
//! client hanging up is an error it handles, not its death. The tools
//! (ferrodax-bench, ferrodax-difftest) keep the Rust default on purpose: they hold a scratch XFS
//! mount, and a death by SIGPIPE would skip the guard that unmounts it, where a panic unwinds
//! through it (ferrodax-hostkit's `closed_pipe` keeps that panic quiet).

/// Sets SIGPIPE to its default action (end the process) for this process and the programs it
/// execs (a Rust tool exec'd by a launcher sets its own at startup).
pub fn end_quietly_on_closed_pipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler, so no code runs in signal context; it
    // runs at the start of the command line, before any thread of ours exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
