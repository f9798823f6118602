//! The command-line front end (`ferrodax ...`).
//!
//! Owns argument parsing, output formats (xfs_io's, so fstests-style filters work) and exit codes.
//! Must never reach below the library API (`ferrodax::{Pool, Fs, File, ...}`).

mod bench;
mod commands;
mod dedupe_scan;
mod df;
mod difftest;
mod host;
mod io;
mod poison;
mod progress;
mod report_html;
mod stat;
mod tour;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// ferrodax: a file system for persistent and CXL memory pools.
#[derive(Parser, Debug)]
#[command(name = "ferrodax", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
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
    /// List a directory.
    Ls {
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
    /// Remove a file or an empty directory.
    Rm {
        /// The pool.
        pool: PathBuf,
        /// What to remove.
        path: String,
    },
    /// Rename a file or directory.
    Mv {
        /// The pool.
        pool: PathBuf,
        /// Old path.
        from: String,
        /// New path.
        to: String,
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
        /// A badblocks list ("first_sector count" lines) to record, e.g. a copy of /sys/block/pmem0/badblocks.
        #[arg(long)]
        import: Option<PathBuf>,
    },
    /// Check the file system (fsck); exits non-zero if anything is wrong.
    Check {
        /// The pool.
        pool: PathBuf,
        /// Print JSON.
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
    /// What stat(1) says about a file or directory of the pool, plus extents and shared bytes.
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
        /// Where to put the tour's pool.
        #[arg(long, default_value = "ferrodax-tour.pool")]
        pool: PathBuf,
    },
    /// Measure ferrodax against memcpy/memcmp measured in the same run; prints a table.
    Bench(bench::BenchArgs),
    /// Differential test against the kernel's XFS (root, xfsprogs, a loop device): the same
    /// random operations on both, compared after every step; exits 77 when it cannot run.
    Difftest(difftest::DifftestArgs),
}

/// Parses a size with an optional k/m/g/t/p suffix (powers of 1024; `b` = bytes), like xfs_io.
/// The number is decimal or `0x` hexadecimal; hex digits are taken greedily, as strtoll does, so
/// `0xcd` is 205 and `0x10k` is 16 KiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, radix, rest) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => {
            let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
            (&hex[..end], 16, &hex[end..])
        }
        None => {
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            (&t[..end], 10, &t[end..])
        }
    };
    let shift = match rest.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(format!("bad size suffix in {text:?}")),
    };
    let value = u64::from_str_radix(digits, radix).map_err(|_| format!("non-numeric size {text:?}"))?;
    value.checked_mul(1u64 << shift).ok_or_else(|| format!("size {text:?} overflows"))
}

/// Runs the CLI and returns the exit status.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Mkfs { pool, size, force, sparse } => commands::mkfs(&pool, size, force, sparse),
        Command::Io(args) => io::run(args),
        Command::Ls { pool, path } => commands::ls(&pool, path.as_deref().unwrap_or("/")),
        Command::Mkdir { pool, path } => commands::mkdir(&pool, &path),
        Command::Rm { pool, path } => commands::rm(&pool, &path),
        Command::Mv { pool, from, to } => commands::mv(&pool, &from, &to),
        Command::Cat { pool, path } => commands::cat(&pool, &path),
        Command::Put { pool, host_file, path } => commands::put(&pool, &host_file, &path),
        Command::Cp { pool, src, dst, reflink } => commands::cp(&pool, &src, &dst, reflink),
        Command::Owners { pool, offset, len, json } => {
            commands::owners(&pool, offset, len.unwrap_or(4096), json)
        }
        Command::Check { pool, json } => commands::check(&pool, json),
        Command::Poison { pool, offset, len, json, html, save } => {
            poison::poison(&pool, offset, len.unwrap_or(4096), &poison::PoisonOutputs { json, html, save })
        }
        Command::Report { saved, html } => poison::report(&saved, &html),
        Command::Badblocks { pool, import } => commands::badblocks(&pool, import.as_deref()),
        Command::Df { pool, bytes, freesp, json } => df::run(&pool, bytes, freesp, json),
        Command::Stat { pool, path, json } => stat::run(&pool, &path, json),
        Command::DedupeScan(args) => dedupe_scan::run(args),
        Command::Tour { pool } => tour::run(&pool),
        Command::Bench(args) => bench::run(args),
        Command::Difftest(args) => difftest::run(args),
    }
}
