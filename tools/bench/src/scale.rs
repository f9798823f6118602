//! The scale rows (issue item 6), run only with `--scale-only`: a pool of many files and ten times
//! as many extents, built once on /dev/shm, then mounted by fresh processes (this binary re-executed
//! with [`ROLE`]), each of which reports how long the mount took, how much memory it took (the
//! growth of its resident anonymous memory, per extent), how long the first owner lookup took
//! (which builds the ownership map), and how long a checkpoint after one 4 KiB write took: the
//! process's first write and checkpoint, then its next ones (the first also pay the process's
//! first touches). The same one-write checkpoints on a pool of a thousand times fewer files,
//! measured in the same run, are those rows' comparison: a checkpoint whose cost follows what
//! changed costs the same on both. The target is judged on the next write and checkpoint.
//!
//! The pool: `files / 10` base files, each with ten one-block extents (every other block written),
//! and nine reflinked copies of each, in directories of 10,000 entries. At the full size (a
//! million files, ten million extents) it writes about 5 GiB to /dev/shm and takes a minute and a
//! half; it refuses to start when /dev/shm has less than about 8 GiB free.
//!
//! Owns these sizes and the helper role. Must never: reach below the public library API, or leave
//! its pool file behind. No `unsafe`.

use crate::{ms, num, progress, Better, Plan, Row, Samples};
use ferrodax::{Fs, OpenOptions, Pool};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The first argument that makes this binary the scale rows' mounting process.
pub const ROLE: &str = "__ferrodax-bench-scale-mount";

/// Target: mount of the full-size pool, at most this many milliseconds.
const MOUNT_TARGET_MS: f64 = 2000.0;
/// Target: memory a mount takes, at most this many bytes per extent.
const DRAM_TARGET_BYTES_PER_EXTENT: f64 = 64.0;
/// Target: a checkpoint after one write costs at most this multiple of the same checkpoint on
/// the small pool (what changed is the same).
const CHECKPOINT_TARGET_RATIO: f64 = 2.0;
/// Target: a whole `ferrodax` process's start to its first operation on the start pool, at most
/// this many milliseconds (issue item 1).
const START_TARGET_MS: f64 = 2.0;
/// Files in the start rows' pool: a million extents at full size.
const START_FILES: u64 = 100_000;
/// One-block extents per base file.
const EXTENTS_PER_FILE: u64 = 10;
/// Reflinked copies of each base file.
const COPIES: u64 = 9;
/// Entries per directory.
const FILES_PER_DIR: u64 = 10_000;

/// What one mounting process measured.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct MountReport {
    mount_ms: f64,
    /// Resident anonymous growth from before the mount to right after it (the ownership map not
    /// built yet: mount leaves it to the first use).
    rss_growth_bytes: u64,
    first_owners_ms: f64,
    /// The same growth once the first owner lookup built the ownership map.
    rss_growth_with_owners_bytes: u64,
    /// The process's first write and the checkpoint after it: they also pay what a process pays
    /// the first time it writes (the host file system allocating the pool page, page tables for
    /// it, the log's next pages mapped), which grows with the process, not with what changed.
    write_and_checkpoint_ms: f64,
    /// The checkpoint's part of it.
    checkpoint_ms: f64,
    /// The next write (to another file) and the checkpoint after it, in the same process: what a
    /// checkpoint costs once those first touches are paid.
    next_write_and_checkpoint_ms: f64,
    /// The checkpoint's part of it.
    next_checkpoint_ms: f64,
}

/// The scale rows' measurements.
pub struct ScaleSuite {
    files: u64,
    small_files: u64,
    runs: Result<Vec<MountReport>, String>,
    small: Result<Vec<MountReport>, String>,
    /// Files in the start pool, and the whole-process times (ms) on it and on the small pool.
    start_files: u64,
    start: Result<Vec<f64>, String>,
    small_start: Result<Vec<f64>, String>,
}

/// A pool file that is deleted when dropped.
struct PoolFile(PathBuf);

impl Drop for PoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file_name(i: u64) -> String {
    format!("/d{}/f{i}", i / FILES_PER_DIR)
}

/// Builds the pool of `files` files at `path`.
fn build(path: &Path, files: u64) -> Result<(), String> {
    let bases = files.div_ceil(COPIES + 1);
    // The data blocks, plus room for the log and for the checkpoints kept back while one is
    // written (two chains of the old state and two of the new: about 200 bytes per extent).
    let size = bases * EXTENTS_PER_FILE * 4096 + files * EXTENTS_PER_FILE * 200 + (512 << 20);
    // A pool file on a full /dev/shm would end in SIGBUS on a store (and leave the file behind).
    let dir = path.parent().unwrap_or(Path::new("/"));
    let room = rustix::fs::statvfs(dir)
        .map(|s| s.f_bavail * s.f_frsize)
        .map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let need = size + size / 4;
    if room < need {
        return Err(format!(
            "{} has {} MiB free; the pool needs about {} MiB",
            dir.display(),
            room >> 20,
            need >> 20
        ));
    }
    let pool = Pool::create(path, size).map_err(|e| format!("creating the pool: {e}"))?;
    let fs = Fs::format(&pool).map_err(|e| format!("mkfs: {e}"))?;
    let e = |what: &str, err: ferrodax::Error| format!("{what}: {err}");
    for dir in 0..(bases * (COPIES + 1)).div_ceil(FILES_PER_DIR) {
        fs.create_dir(&format!("/d{dir}")).map_err(|err| e("mkdir", err))?;
    }
    let mut create = OpenOptions::new();
    create.write(true).create(true);
    let data = [0x5au8; 4096];
    for b in 0..bases {
        let file = fs.open(&file_name(b), &create).map_err(|err| e("create", err))?;
        for x in 0..EXTENTS_PER_FILE {
            file.write_at(&data, x * 2 * 4096).map_err(|err| e("write", err))?;
        }
    }
    let len = (EXTENTS_PER_FILE * 2 - 1) * 4096;
    for c in 1..=COPIES {
        for b in 0..bases {
            let src = fs.open(&file_name(b), OpenOptions::new().read(true)).map_err(|err| e("open", err))?;
            let dst = fs.open(&file_name(c * bases + b), &create).map_err(|err| e("create", err))?;
            fs.reflink(&src, 0, &dst, 0, len).map_err(|err| e("reflink", err))?;
        }
    }
    fs.checkpoint().map_err(|err| e("checkpoint", err))
}

/// Resident anonymous memory of this process, in bytes.
fn rss_anon() -> Result<u64, String> {
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| "no RssAnon in /proc/self/status".into())
}

/// The mounting process: mounts the pool at `path`, measures, prints one JSON line.
pub fn run_role(args: &[String]) -> i32 {
    let result = (|| -> Result<MountReport, String> {
        let [path, run] = args else { return Err(format!("expected a pool path and a run, got {args:?}")) };
        let run: u64 = run.parse().map_err(|e| format!("run {run:?}: {e}"))?;
        let before = rss_anon()?;
        let start = Instant::now();
        let pool = Pool::open(path).map_err(|e| format!("open: {e}"))?;
        let fs = Fs::mount(&pool).map_err(|e| format!("mount: {e}"))?;
        let mount = start.elapsed();
        let rss_growth_bytes = rss_anon()?.saturating_sub(before);
        let start = Instant::now();
        std::hint::black_box(fs.owners(0, 4096));
        let first_owners = start.elapsed();
        let rss_growth_with_owners_bytes = rss_anon()?.saturating_sub(before);
        // One write to a hole of a file, then a checkpoint; the hole is another one each run
        // (blocks 1, 3, 5, ...), so every write allocates one block. Returns (write + checkpoint,
        // checkpoint).
        let write_and_checkpoint = |file_index: u64| -> Result<(f64, f64), String> {
            let file = fs
                .open(&file_name(file_index), OpenOptions::new().write(true))
                .map_err(|e| format!("open: {e}"))?;
            let start = Instant::now();
            file.write_at(&[0x33; 4096], (2 * run + 1) * 4096).map_err(|e| format!("write: {e}"))?;
            let checkpoint_start = Instant::now();
            fs.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
            Ok((ms(start.elapsed()), ms(checkpoint_start.elapsed())))
        };
        let (first, first_checkpoint) = write_and_checkpoint(0)?;
        let (next, next_checkpoint) = write_and_checkpoint(1)?;
        Ok(MountReport {
            mount_ms: ms(mount),
            rss_growth_bytes,
            first_owners_ms: ms(first_owners),
            rss_growth_with_owners_bytes,
            write_and_checkpoint_ms: first,
            checkpoint_ms: first_checkpoint,
            next_write_and_checkpoint_ms: next,
            next_checkpoint_ms: next_checkpoint,
        })
    })();
    match result {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).expect("plain data serialises"));
            0
        }
        Err(e) => {
            eprintln!("scale mount: {e}");
            1
        }
    }
}

/// `runs` fresh processes mounting the pool at `path`.
fn mount_runs(path: &Path, runs: usize) -> Result<Vec<MountReport>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    (0..runs)
        .map(|run| {
            let out = std::process::Command::new(&exe)
                .arg(ROLE)
                .arg(path)
                .arg(run.to_string())
                .output()
                .map_err(|e| format!("running the mounting process: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "the mounting process: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            serde_json::from_slice(&out.stdout).map_err(|e| format!("the mounting process's report: {e}"))
        })
        .collect()
}

/// Builds a pool of `files` files on /dev/shm and mounts it `runs` times.
fn measure(files: u64, runs: usize) -> Result<Vec<MountReport>, String> {
    let path =
        PoolFile(PathBuf::from(format!("/dev/shm/ferrodax-bench-scale-{}-{files}.pool", std::process::id())));
    let start = Instant::now();
    build(&path.0, files)?;
    progress(&format!("scale: pool of {files} files built ({:.1} s)", start.elapsed().as_secs_f64()));
    mount_runs(&path.0, runs)
}

/// The `ferrodax` command built beside this binary (`cargo build --release` builds both).
fn ferrodax_command() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let cli = exe.with_file_name("ferrodax");
    if cli.is_file() {
        Ok(cli)
    } else {
        Err(format!("no ferrodax command at {} (cargo build --release builds it)", cli.display()))
    }
}

/// Builds a pool of `files` files on /dev/shm, then times `runs` whole `ferrodax io` processes,
/// each from its spawn to its exit: mount, open one file, read its first 4 KiB (its first
/// operation), unmount. The milliseconds of each.
fn start_runs(files: u64, runs: usize) -> Result<Vec<f64>, String> {
    let cli = ferrodax_command()?;
    let path =
        PoolFile(PathBuf::from(format!("/dev/shm/ferrodax-bench-start-{}-{files}.pool", std::process::id())));
    build(&path.0, files)?;
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = std::process::Command::new(&cli)
                .args(["io", "-r", "-c", "pread 0 4096"])
                .arg(&path.0)
                .arg(file_name(0))
                .output()
                .map_err(|e| format!("running {}: {e}", cli.display()))?;
            let time = start.elapsed();
            let said = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !said.contains("read 4096/4096 bytes") {
                return Err(format!(
                    "ferrodax io: {}: {} {}",
                    out.status,
                    said.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(ms(time))
        })
        .collect()
}

/// Builds both pools and measures them.
pub fn scale_suite(plan: &Plan) -> ScaleSuite {
    let files = if plan.smoke {
        10_000
    } else if plan.quick {
        100_000
    } else {
        1_000_000
    };
    let small_files = files / 1000;
    progress(&format!(
        "scale: building a pool of {files} files and {} extents on /dev/shm",
        files * EXTENTS_PER_FILE
    ));
    let runs = measure(files, plan.runs.max(3));
    let small = measure(small_files, plan.runs.max(3));
    let start_files = if plan.smoke { files } else { START_FILES };
    progress(&format!(
        "scale: building a pool of {start_files} files and {} extents for the process start row",
        start_files * EXTENTS_PER_FILE
    ));
    let start = start_runs(start_files, plan.runs.max(3));
    let small_start = start_runs(small_files, plan.runs.max(3));
    ScaleSuite { files, small_files, runs, small, start_files, start, small_start }
}

/// The rows.
pub fn scale_rows(suite: &ScaleSuite) -> Vec<Row> {
    let extents = suite.files * EXTENTS_PER_FILE;
    let pool = format!("{} files, {extents} extents", suite.files);
    let times = |runs: &[MountReport], pick: fn(&MountReport) -> f64| Samples {
        values: runs.iter().map(pick).collect(),
        better: Better::Lower,
    };
    let mut rows = Vec::new();
    let mut mount = Row::new(format!("scale: mount of a pool of {pool} (a fresh process)"), "ms");
    let mut dram = Row::new(
        format!(
            "scale: memory the mount takes (resident anonymous growth; ownership map not built yet), {pool}"
        ),
        "B/extent",
    );
    let mut owners = Row::new(format!("scale: first owner lookup (builds the ownership map), {pool}"), "ms");
    let mut dram_owners = Row::new(
        format!("scale: memory once the first owner lookup built the ownership map, {pool}"),
        "B/extent",
    );
    let mut first_checkpoint =
        Row::new(format!("scale: the process's first 4 KiB write + checkpoint, {pool}"), "ms");
    let mut checkpoint = Row::new(format!("scale: its next 4 KiB write + checkpoint, {pool}"), "ms");
    match &suite.runs {
        Ok(runs) => {
            mount = mount.measured(&times(runs, |r| r.mount_ms));
            mount.target = format!("<= {} ms", num(MOUNT_TARGET_MS));
            mount.judge(mount.result.is_some_and(|v| v <= MOUNT_TARGET_MS));
            let per_extent = Samples {
                values: runs.iter().map(|r| r.rss_growth_bytes as f64 / extents as f64).collect(),
                better: Better::Lower,
            };
            dram = dram.measured(&per_extent);
            dram.target = format!("<= {} B/extent", num(DRAM_TARGET_BYTES_PER_EXTENT));
            dram.judge(dram.result.is_some_and(|v| v <= DRAM_TARGET_BYTES_PER_EXTENT));
            owners = owners.measured(&times(runs, |r| r.first_owners_ms));
            dram_owners = dram_owners.measured(&Samples {
                values: runs.iter().map(|r| r.rss_growth_with_owners_bytes as f64 / extents as f64).collect(),
                better: Better::Lower,
            });
            dram_owners.target = dram.target.clone();
            dram_owners.judge(dram_owners.result.is_some_and(|v| v <= DRAM_TARGET_BYTES_PER_EXTENT));
            first_checkpoint = first_checkpoint.measured(&times(runs, |r| r.write_and_checkpoint_ms));
            checkpoint = checkpoint.measured(&times(runs, |r| r.next_write_and_checkpoint_ms));
            match &suite.small {
                Ok(small) => {
                    // Compares a write + checkpoint row with the same on the small pool, the
                    // checkpoints alone named in the comparison.
                    let compare_with_small =
                        |row: &mut Row, both: fn(&MountReport) -> f64, alone: fn(&MountReport) -> f64| {
                            let label = format!(
                            "the same on a pool of {} files (the checkpoint alone: {} ms here, {} ms there)",
                            suite.small_files,
                            num(times(runs, alone).best()),
                            num(times(small, alone).best())
                        );
                            row.compare(label, times(small, both).best());
                        };
                    // No target for the first: it also pays the process's first touches (see
                    // `MountReport`), which grow with the process, not with what changed.
                    compare_with_small(
                        &mut first_checkpoint,
                        |r| r.write_and_checkpoint_ms,
                        |r| r.checkpoint_ms,
                    );
                    compare_with_small(
                        &mut checkpoint,
                        |r| r.next_write_and_checkpoint_ms,
                        |r| r.next_checkpoint_ms,
                    );
                    checkpoint.target = format!(
                        "<= {}x the small pool (cost follows what changed)",
                        num(CHECKPOINT_TARGET_RATIO)
                    );
                    checkpoint.judge(checkpoint.ratio.is_some_and(|r| r <= CHECKPOINT_TARGET_RATIO));
                }
                Err(e) => {
                    first_checkpoint = first_checkpoint.failed(&format!("the small pool: {e}"));
                    checkpoint = checkpoint.failed(&format!("the small pool: {e}"));
                }
            }
        }
        Err(e) => {
            for row in
                [&mut mount, &mut dram, &mut owners, &mut dram_owners, &mut first_checkpoint, &mut checkpoint]
            {
                *row = std::mem::replace(row, Row::new(String::new(), "ms")).failed(e);
            }
        }
    }
    rows.extend([mount, dram, owners, dram_owners, first_checkpoint, checkpoint]);
    let mut start = Row::new(
        format!(
            "scale: process start to first operation, a whole `ferrodax io -r -c \"pread 0 4096\"` process, {} files, {} extents",
            suite.start_files,
            suite.start_files * EXTENTS_PER_FILE
        ),
        "ms",
    );
    start = match &suite.start {
        Ok(runs) => {
            let mut r = start.measured(&Samples { values: runs.clone(), better: Better::Lower });
            if let Ok(small) = &suite.small_start {
                let base = Samples { values: small.clone(), better: Better::Lower }.best();
                r.compare(format!("the same process on a pool of {} files", suite.small_files), base);
            }
            r.target = format!("<= {} ms", num(START_TARGET_MS));
            r.judge(r.result.is_some_and(|v| v <= START_TARGET_MS));
            r
        }
        Err(e) => start.failed(e),
    };
    rows.push(start);
    rows
}

/// The note printed above the rows.
pub fn scale_note(suite: &ScaleSuite) -> String {
    format!(
        "scale rows: a pool of {} files on /dev/shm ({} base files of {EXTENTS_PER_FILE} one-block extents, \
         {COPIES} reflinked copies of each), mounted by fresh processes; memory is the growth of the mounting \
         process's resident anonymous memory; the checkpoint rows compare with a pool of {} files built the same way \
         (the process's first write and checkpoint also pay its first touches; the target is judged on the next)",
        suite.files,
        suite.files.div_ceil(COPIES + 1),
        suite.small_files
    )
}
