//! `ferrodax bench` and `ferrodax difftest`: thin launchers for the development tools, which are
//! programs of their own (`ferrodax-bench`, `ferrodax-difftest`, crates under tools/) so that the
//! product binary carries none of their code.
//!
//! Owns finding a tool next to the running `ferrodax` (the directory of
//! `std::env::current_exe`, where `cargo build --release` and `cargo install` put every binary)
//! and replacing this process with it, every argument passed through unchanged, so the tool's
//! output, signals and exit status are the user's. Must never search PATH (a tool from another
//! build could measure or test a different ferrodax), and never run anything but the named tool.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The exit status when the tool cannot be found or started (the shell's "command not found").
const EXIT_TOOL_MISSING: i32 = 127;

/// Replaces this process with the tool `program` (for example "ferrodax-bench") found next to the
/// running executable, passing `args`. Returns only if that fails: prints why, with the command
/// that builds the tool, and returns [`EXIT_TOOL_MISSING`].
pub fn exec_tool(command: &str, program: &str, args: Vec<OsString>) -> i32 {
    let here = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("ferrodax: {command}: cannot find the running executable: {e}");
            return EXIT_TOOL_MISSING;
        }
    };
    let tool: PathBuf = here.with_file_name(program);
    if !tool.is_file() {
        eprintln!(
            "ferrodax: {command}: {}: No such file or directory\n\
             ferrodax: `ferrodax {command}` runs the separate program {program}, which was not built next to {}.\n\
             ferrodax: build it with `cargo build --release` at the top of the ferrodax sources (it builds every \
             tool), or `cargo install --path tools/{command}` if ferrodax itself was installed with `cargo install`.",
            tool.display(),
            here.display()
        );
        return EXIT_TOOL_MISSING;
    }
    let e = std::process::Command::new(&tool).args(args).exec();
    eprintln!("ferrodax: {command}: {}: {e}", tool.display());
    EXIT_TOOL_MISSING
}
