//! The command-line front end (`ferrodax ...`).
//!
//! Owns argument parsing, output formats (xfs_io's, so fstests-style filters work) and exit codes.
//! Must never reach below the library API (`ferrodax::{Pool, Fs, File, ...}`).

mod accounts;
mod commands;
mod dedupe_scan;
mod df;
mod io;
mod launch;
mod ls;
mod modes;
mod mount;
mod names;
mod poison;
mod progress;
mod report_html;
mod salvage;
mod serve;
mod stat;
mod tour;

use clap::{Parser, Subcommand};
pub use ferrodax_hostkit::parse_size;
use std::ffi::OsString;
use std::path::PathBuf;

/// ferrodax: a file system for persistent and CXL memory pools.
#[derive(Parser, Debug)]
#[command(name = "ferrodax", version, about)]
pub struct Cli {
    /// Say how the pool is reached (directly, or through its pool server).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Each subcommand's arguments are built only when it is the one run: a command line costs the
// parse of its own subcommand, not of all of them. A newtype variant's `Args` struct is built
// last, so its doc comment (the same sentence as the variant's) is that subcommand's help text.
#[command(defer = true)]
enum Command {
    /// Make a new, empty file system in a new pool file.
    Mkfs {
        /// The pool file to create.
        pool: PathBuf,
        /// Pool size (k/m/g/t suffixes), e.g. 1g.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Leave the pool file sparse instead of allocating it now (a full host file system then
        /// shows up later, as SIGBUS on a store).
        #[arg(long)]
        sparse: bool,
    },
    /// Run xfs_io-style commands on one file of a pool.
    Io(io::IoArgs),
    /// List a directory (a symlink shows as `name -> target`, control characters in names
    /// escaped as `ls -b` does).
    Ls {
        /// Long format: mode, links, owner, group, size, modification time (UTC), name.
        #[arg(short = 'l')]
        long: bool,
        /// The pool.
        pool: PathBuf,
        /// The directory (default /).
        path: Option<String>,
    },
    /// Make a directory.
    Mkdir {
        /// The pool.
        pool: PathBuf,
        /// The directory to create.
        path: String,
    },
    /// Remove a file, a symlink (not what it points at) or an empty directory.
    Rm {
        /// The pool.
        pool: PathBuf,
        /// What to remove.
        path: String,
    },
    /// Rename a file or directory (into TO when TO is a directory, as mv(1)).
    Mv {
        /// Never replace an existing TO: fail with "File exists" (renameat2 RENAME_NOREPLACE).
        #[arg(short = 'n', long, conflicts_with = "exchange")]
        no_clobber: bool,
        /// Swap FROM and TO, which must both exist (renameat2 RENAME_EXCHANGE).
        #[arg(long)]
        exchange: bool,
        /// Treat TO as the name to rename to even when it is a directory.
        #[arg(short = 'T', long)]
        no_target_directory: bool,
        /// The pool.
        pool: PathBuf,
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
    /// Make a hard link (with -s: a symlink, whose target is stored as given).
    Ln {
        /// Make a symbolic link.
        #[arg(short = 's', long)]
        symbolic: bool,
        /// The pool.
        pool: PathBuf,
        /// The existing file (with -s: any text, stored as the symlink's target).
        target: String,
        /// The new name (a directory: the link goes in it under TARGET's last name).
        link_name: String,
    },
    /// Print the target of a symlink.
    Readlink {
        /// The pool.
        pool: PathBuf,
        /// The symlink.
        path: String,
    },
    /// Change permission bits: octal (640) or symbolic (u+x,go-w) as chmod(1).
    Chmod {
        /// The pool.
        pool: PathBuf,
        /// The mode.
        mode: String,
        /// The file or directory (a symlink's target).
        path: String,
    },
    /// Change owner and/or group: USER, USER:GROUP, USER: (the login group) or :GROUP, names
    /// (from /etc/passwd and /etc/group) or numbers.
    Chown {
        /// The pool.
        pool: PathBuf,
        /// USER[:GROUP].
        owner: String,
        /// The file or directory (a symlink's target).
        path: String,
    },
    /// Set a file's access and modification times to now (or -d @SECONDS); create it empty if it
    /// does not exist.
    Touch {
        /// Do not create a missing file.
        #[arg(short = 'c', long)]
        no_create: bool,
        /// Use this time instead of now: @SECONDS[.FRACTION] since the epoch.
        #[arg(short = 'd', long, value_parser = names::parse_date, allow_hyphen_values = true)]
        date: Option<i64>,
        /// The pool.
        pool: PathBuf,
        /// The file.
        path: String,
    },
    /// Get, set, remove or list `user.` extended attributes: xattr POOL get|set|rm|list PATH
    /// [NAME [VALUE]].
    Xattr {
        /// With set: fail if the attribute exists (XATTR_CREATE).
        #[arg(long, conflicts_with = "replace")]
        create: bool,
        /// With set: fail if the attribute does not exist (XATTR_REPLACE).
        #[arg(long)]
        replace: bool,
        /// The pool.
        pool: PathBuf,
        /// What to do.
        action: names::XattrAction,
        /// The file or directory (a symlink's target).
        path: String,
        /// The attribute's name, user.SOMETHING (get, set, rm).
        name: Option<String>,
        /// The value (set; may start with '-').
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },
    /// Write a file's contents to standard output.
    Cat {
        /// The pool.
        pool: PathBuf,
        /// The file.
        path: String,
    },
    /// Copy a host file into the pool.
    Put {
        /// The pool.
        pool: PathBuf,
        /// The host file.
        host_file: PathBuf,
        /// The path inside the pool.
        path: String,
    },
    /// Copy a file inside the pool (with --reflink: share its blocks instead).
    Cp {
        /// The pool.
        pool: PathBuf,
        /// Source path.
        src: String,
        /// Destination path.
        dst: String,
        /// Clone instead of copying (like cp --reflink=always).
        #[arg(long)]
        reflink: bool,
    },
    /// Who owns a byte range of the pool (from the reverse map).
    Owners {
        /// The pool.
        pool: PathBuf,
        /// Pool byte offset (k/m/g suffixes).
        #[arg(value_parser = parse_size)]
        offset: u64,
        /// Length in bytes (default 4096).
        #[arg(value_parser = parse_size)]
        len: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inject a memory failure at a pool byte range and print the report.
    Poison {
        /// The pool.
        pool: PathBuf,
        /// Pool byte offset (k/m/g suffixes).
        #[arg(value_parser = parse_size)]
        offset: u64,
        /// Length in bytes (default 4096).
        #[arg(value_parser = parse_size)]
        len: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as an HTML page with a picture (owners, views told, outcome).
        #[arg(long)]
        html: Option<PathBuf>,
        /// Also save the report as JSON, for `ferrodax report`.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Make a real media error instead (root, a pool on persistent memory): add the pages'
        /// sectors to the device's bad-block list and madvise(MADV_HWPOISON) them, so the kernel
        /// runs its memory_failure and later loads get SIGBUS BUS_MCEERR_AR. Records nothing in
        /// the pool itself: ferrodax learns it as it would from hardware.
        #[arg(long)]
        hardware: bool,
    },
    /// Draw a failure report saved by `poison --save` as an HTML page.
    Report {
        /// The saved report (JSON).
        saved: PathBuf,
        /// Where to write the HTML page.
        #[arg(long)]
        html: PathBuf,
    },
    /// List recorded bad blocks (pmem sysfs badblocks format); --import records a list first.
    Badblocks {
        /// The pool.
        pool: PathBuf,
        /// A badblocks list ("first_sector count" lines) to record: pool sectors, or the device's
        /// own list (/sys/block/pmemN/badblocks, a pmem region's badblocks), whose sectors are
        /// translated to pool offsets through the pool's place on the device.
        #[arg(long)]
        import: Option<PathBuf>,
        /// The --import list is in the sectors of the device the pool sits on (a copy of its
        /// sysfs list), not in pool sectors. Implied for a list under /sys.
        #[arg(long, requires = "import")]
        device: bool,
    },
    /// Check the file system (fsck); exits non-zero if anything is wrong.
    Check {
        /// The pool.
        pool: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Mount read-write first, which repairs what a mount repairs (a damaged copy of a
        /// superblock, checkpoint block or log record is rewritten from the other copy); a pool
        /// that does not mount is rebuilt from whatever is readable (like `salvage`, in place),
        /// saying what was lost. Then check. Without it, check mounts read-only and changes
        /// nothing. Exit 0 clean, 1 problems left or something was lost, 2 not mountable.
        #[arg(long)]
        repair: bool,
    },
    /// Copy every readable file out of a pool, even one that does not mount normally (damaged
    /// metadata), into a new or empty host directory; reports each file not saved whole.
    Salvage {
        /// The pool (opened read-only; never changed).
        pool: PathBuf,
        /// A new or empty directory to copy into.
        dest: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pool space like df -h: size, used, available, use%, shared, reserved, quarantined.
    Df {
        /// The pool.
        pool: PathBuf,
        /// Exact byte counts instead of human sizes.
        #[arg(short = 'b', long)]
        bytes: bool,
        /// Add a histogram of free runs by size (like xfs_spaceman -c freesp).
        #[arg(short = 'f', long)]
        freesp: bool,
        /// Print JSON (every figure in bytes, and the histogram).
        #[arg(long)]
        json: bool,
    },
    /// What stat(1) says about a file, directory or symlink (not followed) of the pool, plus
    /// extents and shared bytes.
    Stat {
        /// The pool.
        pool: PathBuf,
        /// The file or directory.
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Find identical 4 KiB blocks (xxh3 hashes) and share them with dedupe (like duperemove).
    DedupeScan(dedupe_scan::DedupeScanArgs),
    /// A short guided tour: write, reflink, dedupe, CoW, owners, check.
    Tour {
        /// Where to put the tour's pool (a file that must not exist yet).
        #[arg(long, default_value = tour::DEFAULT_POOL)]
        pool: PathBuf,
        /// Replace the pool of an earlier tour at that path (never any other file).
        #[arg(long)]
        force: bool,
    },
    /// Serve a pool to many processes at once (foreground; SIGTERM or Ctrl-C stops it cleanly).
    /// Every ferrodax command, and Fs::connect, then goes through the server.
    Serve(serve::ServeArgs),
    /// Mount a pool on a directory through FUSE (foreground; Ctrl-C, SIGTERM or `umount DIR`
    /// stops it cleanly). Serves the pool to ferrodax commands and Fs::connect at the same time,
    /// or goes through the pool server when one runs.
    Mount(mount::MountArgs),
    /// Measure ferrodax against memcpy/memcmp measured in the same run; prints a table.
    ///
    /// Runs the program ferrodax-bench built next to ferrodax (`ferrodax bench --help` shows its
    /// options).
    #[command(disable_help_flag = true)]
    Bench {
        /// Passed to ferrodax-bench unchanged (--quick, --json, --memory-failure-only, --server-only,
        /// --fuse-only, --cow-only, --help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Differential test against the kernel's XFS (root, xfsprogs, a loop device): the same
    /// random operations on both, compared after every step; exits 77 when it cannot run.
    ///
    /// Runs the program ferrodax-difftest built next to ferrodax (`ferrodax difftest --help`
    /// shows its options).
    #[command(disable_help_flag = true)]
    Difftest {
        /// Passed to ferrodax-difftest unchanged (--seed, --sequences, --steps, --help, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Mounts `pool` for a command: through its pool server when one is listening on the pool's
/// socket (`ferrodax::server::default_socket`, or FERRODAX_SOCKET), else directly — read-only
/// under a shared lock for a command that only looks, read-write under the exclusive lock
/// otherwise. With -v it says which on standard error.
pub(crate) fn open_pool(pool: &std::path::Path, read_only: bool) -> ferrodax::Result<ferrodax::Fs> {
    open_pool_as(pool, if read_only { Direct::ReadOnly } else { Direct::ReadWrite })
}

/// [`open_pool`] for a command that only reads a file or two: without a pool server, read-only
/// under a shared lock, reading inodes from the checkpoint as the command needs them
/// ([`ferrodax::Fs::mount_read_only_lazy`]).
pub(crate) fn open_pool_lazily(pool: &std::path::Path) -> ferrodax::Result<ferrodax::Fs> {
    open_pool_as(pool, Direct::Lazy)
}

/// How a command mounts a pool that no server serves.
enum Direct {
    ReadWrite,
    ReadOnly,
    Lazy,
}

fn open_pool_as(pool: &std::path::Path, direct: Direct) -> ferrodax::Result<ferrodax::Fs> {
    let verbose = VERBOSE.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(fs) = ferrodax::server::connect_if_serving(pool)? {
        if verbose {
            eprintln!(
                "ferrodax: {}: through the pool server at {}",
                pool.display(),
                ferrodax::server::default_socket(pool).display()
            );
        }
        return Ok(fs);
    }
    if verbose {
        let how = match direct {
            Direct::ReadWrite => "read-write, exclusive lock",
            Direct::ReadOnly => "read-only, shared lock",
            Direct::Lazy => "read-only, shared lock, inodes read as needed",
        };
        eprintln!("ferrodax: {}: mounted directly ({how}); no pool server is running", pool.display());
    }
    match direct {
        Direct::ReadWrite => ferrodax::Fs::mount(&ferrodax::Pool::open(pool)?),
        Direct::ReadOnly => ferrodax::Fs::mount_read_only(&ferrodax::Pool::open_read_only(pool)?),
        Direct::Lazy => ferrodax::Fs::mount_read_only_lazy(&ferrodax::Pool::open_read_only(pool)?),
    }
}

/// Runs the CLI and returns the exit status.
pub fn run() -> i32 {
    // `ferrodax tour | head -2` ends quietly; SIGPIPE stays ignored, so sockets (the pool server
    // and its clients) still see a hung-up peer as an error.
    ferrodax_hostkit::closed_pipe::end_quietly_on_closed_pipe();
    let cli = Cli::parse();
    VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    if !matches!(cli.command, Command::Tour { .. }) {
        // One command, then exit: the kernel takes the memory back faster than freeing it does.
        ferrodax::fs::leave_memory_to_process_exit();
    }
    if !matches!(
        cli.command,
        Command::Tour { .. } | Command::Serve(_) | Command::Mount(_) | Command::Bench { .. }
    ) {
        // A short life: what mount frees, the state it builds reuses (no fresh page faults), and
        // no machine-check listener thread unless early kill is on.
        ferrodax_hostkit::heap::keep_freed_memory_for_reuse();
        ferrodax::api::expect_short_life();
    }
    match cli.command {
        Command::Mkfs { pool, size, force, sparse } => commands::mkfs(&pool, size, force, sparse),
        Command::Io(args) => io::run(args),
        Command::Ls { long, pool, path } => ls::run(&pool, path.as_deref().unwrap_or("/"), long),
        Command::Mkdir { pool, path } => commands::mkdir(&pool, &path),
        Command::Rm { pool, path } => commands::rm(&pool, &path),
        Command::Mv { no_clobber, exchange, no_target_directory, pool, from, to } => {
            let mode = match (no_clobber, exchange) {
                (true, _) => commands::MvMode::NoClobber,
                (_, true) => commands::MvMode::Exchange,
                _ => commands::MvMode::Replace,
            };
            commands::mv(&pool, &from, &to, mode, no_target_directory)
        }
        Command::Ln { symbolic, pool, target, link_name } => names::ln(&pool, &target, &link_name, symbolic),
        Command::Readlink { pool, path } => names::readlink(&pool, &path),
        Command::Chmod { pool, mode, path } => names::chmod(&pool, &mode, &path),
        Command::Chown { pool, owner, path } => names::chown(&pool, &owner, &path),
        Command::Touch { no_create, date, pool, path } => names::touch(&pool, &path, no_create, date),
        Command::Xattr { create, replace, pool, action, path, name, value } => {
            names::xattr(&pool, action, &path, name.as_deref(), value.as_deref(), (create, replace))
        }
        Command::Cat { pool, path } => commands::cat(&pool, &path),
        Command::Put { pool, host_file, path } => commands::put(&pool, &host_file, &path),
        Command::Cp { pool, src, dst, reflink } => commands::cp(&pool, &src, &dst, reflink),
        Command::Owners { pool, offset, len, json } => {
            commands::owners(&pool, offset, len.unwrap_or(4096), json)
        }
        Command::Check { pool, json, repair } => commands::check(&pool, json, repair),
        Command::Salvage { pool, dest, json } => salvage::run(&pool, &dest, json),
        Command::Poison { pool, offset, len, json, html, save, hardware } => {
            if hardware {
                commands::poison_hardware(&pool, offset, len.unwrap_or(4096), json)
            } else {
                poison::poison(
                    &pool,
                    offset,
                    len.unwrap_or(4096),
                    &poison::PoisonOutputs { json, html, save },
                )
            }
        }
        Command::Report { saved, html } => poison::report(&saved, &html),
        Command::Badblocks { pool, import, device } => commands::badblocks(&pool, import.as_deref(), device),
        Command::Df { pool, bytes, freesp, json } => df::run(&pool, bytes, freesp, json),
        Command::Stat { pool, path, json } => stat::run(&pool, &path, json),
        Command::DedupeScan(args) => dedupe_scan::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Mount(args) => mount::run(args),
        Command::Tour { pool, force } => tour::run(&pool, force),
        Command::Bench { args } => launch::exec_tool("bench", "ferrodax-bench", args),
        Command::Difftest { args } => launch::exec_tool("difftest", "ferrodax-difftest", args),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_builds_a_consistent_parser_though_each_is_built_only_when_run() {
        // debug_assert builds the deferred subcommands too, and panics on a clash or a bad
        // argument definition in any of them.
        Cli::command().debug_assert();
    }

    #[test]
    fn a_newtype_subcommand_keeps_its_one_line_help_when_its_arguments_are_built() {
        let mut cli = Cli::command();
        cli.build();
        let io = cli.find_subcommand("io").expect("an io subcommand");
        assert_eq!(
            io.get_about().map(|a| a.to_string()).as_deref(),
            Some("Run xfs_io-style commands on one file of a pool")
        );
        assert_eq!(io.get_long_about(), None);
    }
}
