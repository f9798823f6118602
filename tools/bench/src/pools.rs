//! The pool-kind rows: the rows where the kind of pool matters (writes, and making them durable)
//! measured on each kind side by side in the same run: a memfd, a pool in a plain file on
//! /dev/shm (tmpfs: cache-flush persistence, like memfd) and a pool in a plain file on the disk
//! (msync persistence) — the default pool kind, as `ferrodax mkfs` makes it (allocated).
//!
//! Owns the pools of these rows, their sizes, and the kernel's own rate of durable 4 KiB writes
//! (pwrite + fdatasync of a plain file in the same place), which is the disk row's limit.
//!
//! Must never: leave a pool file or a scratch file behind (the guards delete them on every path,
//! errors included), or reach below the public library API. No `unsafe`.

use crate::{
    cow_pwrite_of, fill_file, gb_per_s, num, progress, size_text, warm_up, CowTime, FerrodaxTarget, Order,
    Pattern, Plan, Row, Samples, Target, BLOCK, KIB, MEMFD, MIB,
};
use ferrodax::{Fs, Pool};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Target: 4 KiB writes made durable by one fsync at the end (group commit) on a pool file on the
/// disk, at least this many MiB/s (the disk's own fsync rate is given beside it: the limit of
/// writes that are each durable on return).
const DISK_SMALL_WRITES_TARGET_MIB_S: f64 = 100.0;

/// Sizes of the rows on one kind of pool.
struct KindPlan {
    /// Bytes of the 1 MiB sequential pwrite row.
    sequential: u64,
    /// Bytes of the clone of the 4 KiB CoW pwrite row.
    cow_file: u64,
    /// 4 KiB writes of the durable small-write row.
    small_writes: u64,
    /// 4 KiB writes of the row that makes them durable with one fsync at the end.
    batched_writes: u64,
    /// Runs of each row (fewer on the disk, where one run takes seconds).
    runs: usize,
}

/// Where a pool of these rows lives.
pub enum Place {
    Memfd,
    /// A pool file on /dev/shm.
    Shm,
    /// A pool file in this directory (on a disk file system), and that file system's type.
    Disk(PathBuf, String),
}

impl Place {
    /// The rows' `pool` field.
    fn label(&self) -> String {
        match self {
            Place::Memfd => MEMFD.to_string(),
            Place::Shm => "file on /dev/shm".to_string(),
            Place::Disk(dir, fs_type) => format!("file on disk ({}, {fs_type})", dir.display()),
        }
    }

    /// The directory of the pool file and of the kernel's own durable writes.
    fn dir(&self) -> PathBuf {
        match self {
            Place::Memfd | Place::Shm => PathBuf::from("/dev/shm"),
            Place::Disk(dir, _) => dir.clone(),
        }
    }

    fn plan(&self, plan: &Plan) -> KindPlan {
        let disk = matches!(self, Place::Disk(..));
        let runs = if disk { plan.runs.min(3) } else { plan.runs };
        let (sequential, cow_file, small_writes) = match (disk, plan.smoke, plan.quick) {
            (_, true, _) => (4 * MIB, 256 * KIB, 32),
            (true, _, true) => (64 * MIB, MIB, 256),
            (true, _, false) => (128 * MIB, 2 * MIB, 512),
            (false, _, true) => (64 * MIB, 8 * MIB, 2048),
            (false, _, false) => (256 * MIB, 16 * MIB, 4096),
        };
        let batched_writes = if plan.smoke { small_writes } else { 16_384 };
        KindPlan { sequential, cow_file, small_writes, batched_writes, runs }
    }
}

/// The type of the file system holding `path` (the longest mount point above it in
/// /proc/self/mounts), if it can be told.
fn fs_type_of(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let path = path.canonicalize().ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point).then(|| (point.len(), fs_type.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs_type)| fs_type)
}

/// The disk directory of the rows: `chosen` if given, else /var/tmp unless it is a memory file
/// system, else the current directory.
pub fn disk_place(chosen: Option<&Path>) -> Place {
    let memory = |t: &str| matches!(t, "tmpfs" | "ramfs");
    let dir = match chosen {
        Some(dir) => dir.to_path_buf(),
        None => {
            let var_tmp = PathBuf::from("/var/tmp");
            match fs_type_of(&var_tmp) {
                Some(t) if !memory(&t) => var_tmp,
                _ => std::env::current_dir().unwrap_or(var_tmp),
            }
        }
    };
    let fs_type = fs_type_of(&dir).unwrap_or_else(|| "unknown file system".into());
    Place::Disk(dir, fs_type)
}

/// A file deleted when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one kind of pool measured.
pub struct KindSuite {
    place: Place,
    sizes: KindPlan,
    /// 1 MiB sequential pwrite over `sizes.sequential` (overwriting a written file).
    sequential: Result<Vec<Duration>, String>,
    cow_random: Result<CowTime, String>,
    /// `sizes.small_writes` 4 KiB pwrites appending to a new file, each followed by fsync.
    small_writes: Result<Vec<Duration>, String>,
    /// The same through the kernel: pwrite + fdatasync of a plain file in the same place.
    kernel_small_writes: Result<Vec<Duration>, String>,
    /// `sizes.batched_writes` 4 KiB pwrites appending to a new file, then one fsync.
    batched_writes: Result<Vec<Duration>, String>,
    /// The same through the kernel.
    kernel_batched_writes: Result<Vec<Duration>, String>,
}

/// The three measurements on a pool of this kind.
pub fn kind_suite(place: Place, plan: &Plan) -> KindSuite {
    let sizes = place.plan(plan);
    let label = place.label();
    let pool_size = sizes.sequential * 2 + 128 * MIB;
    progress(&format!("pool kinds: {label}, pool of {}", size_text(pool_size)));
    let scratch = Scratch(place.dir().join(format!("ferrodax-bench-pool-{}", std::process::id())));
    let made = match &place {
        Place::Memfd => Pool::memfd(pool_size),
        Place::Shm | Place::Disk(..) => Pool::create_allocated(&scratch.0, pool_size),
    }
    .and_then(|pool| Fs::format(&pool))
    .map_err(|e| format!("could not make the pool: {e}"));
    let (sequential, cow_random, small_writes, batched_writes) = match made {
        Err(e) => (Err(e.clone()), Err(e.clone()), Err(e.clone()), Err(e)),
        Ok(fs) => {
            let target = FerrodaxTarget { fs };
            let t = &target;
            let mut pattern = Pattern::new();
            if let Err(e) = warm_up(t, sizes.sequential + sizes.sequential / 4, &mut pattern) {
                progress(&format!("pool kinds: {label}: warm-up failed ({e}); measuring anyway"));
            }
            let sequential = sequential_writes(t, sizes.sequential, sizes.runs, &mut pattern);
            let cow_random = cow_pwrite_of(t, sizes.cow_file, sizes.runs, Order::Random);
            let ferrodax_file = |name: String| -> Result<SmallWriter<'_>, String> {
                let file = Rc::new(t.create(&name)?);
                let synced = file.clone();
                Ok(SmallWriter {
                    write: Box::new(move |data: &[u8], offset: u64| t.write_at(&file, data, offset)),
                    sync: Box::new(move || t.sync(&synced)),
                })
            };
            let small_writes = time_small_writes(
                sizes.runs,
                |run| ferrodax_file(format!("small-{run}")),
                sizes.small_writes,
                Sync::EachWrite,
            );
            let batched_writes = time_small_writes(
                sizes.runs,
                |run| ferrodax_file(format!("batched-{run}")),
                sizes.batched_writes,
                Sync::Once,
            );
            (sequential, cow_random, small_writes, batched_writes)
        } // the pool is unmapped here, before its file is deleted
    };
    let kernel = Scratch(place.dir().join(format!("ferrodax-bench-fdatasync-{}", std::process::id())));
    let kernel_file = |_| -> Result<SmallWriter<'_>, String> {
        let _ = std::fs::remove_file(&kernel.0);
        let file = Rc::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&kernel.0)
                .map_err(|e| format!("create {}: {e}", kernel.0.display()))?,
        );
        let synced = file.clone();
        Ok(SmallWriter {
            write: Box::new(move |data: &[u8], offset: u64| {
                file.write_all_at(data, offset).map_err(|e| format!("pwrite: {e}"))
            }),
            sync: Box::new(move || synced.sync_data().map_err(|e| format!("fdatasync: {e}"))),
        })
    };
    let kernel_small_writes = time_small_writes(sizes.runs, kernel_file, sizes.small_writes, Sync::EachWrite);
    let kernel_batched_writes = time_small_writes(sizes.runs, kernel_file, sizes.batched_writes, Sync::Once);
    drop(kernel);
    drop(scratch);
    KindSuite {
        place,
        sizes,
        sequential,
        cow_random,
        small_writes,
        kernel_small_writes,
        batched_writes,
        kernel_batched_writes,
    }
}

/// A 4 KiB write of the small-write rows: the data and its offset.
type WriteAt<'a> = Box<dyn FnMut(&[u8], u64) -> Result<(), String> + 'a>;

/// One file of the small-write rows: a 4 KiB write, and fsync.
struct SmallWriter<'a> {
    write: WriteAt<'a>,
    sync: Box<dyn FnMut() -> Result<(), String> + 'a>,
}

/// When the small-write rows fsync.
#[derive(Clone, Copy)]
enum Sync {
    /// After every write: each is durable when it returns.
    EachWrite,
    /// Once, after the last write (group commit's case).
    Once,
}

/// `writes` 4 KiB writes appending to a fresh file made by `open` (given the run's number), and
/// fsync as `sync` says, `runs` times; the time runs until the last fsync returned.
fn time_small_writes<'a>(
    runs: usize,
    mut open: impl FnMut(usize) -> Result<SmallWriter<'a>, String>,
    writes: u64,
    sync: Sync,
) -> Result<Vec<Duration>, String> {
    let data = [0x3cu8; BLOCK as usize];
    (0..runs)
        .map(|run| {
            let mut file = open(run)?;
            let start = Instant::now();
            for i in 0..writes {
                (file.write)(&data, i * BLOCK)?;
                if matches!(sync, Sync::EachWrite) {
                    (file.sync)()?;
                }
            }
            if matches!(sync, Sync::Once) {
                (file.sync)()?;
            }
            Ok(start.elapsed())
        })
        .collect()
}

/// 1 MiB pwrites over a written `len`-byte file, `runs` times.
fn sequential_writes(
    t: &FerrodaxTarget,
    len: u64,
    runs: usize,
    pattern: &mut Pattern,
) -> Result<Vec<Duration>, String> {
    let file = t.create("sequential")?;
    fill_file(t, &file, len, pattern)?;
    let times = crate::time_runs(runs, || {
        let start = Instant::now();
        fill_file(t, &file, len, pattern)?;
        Ok(start.elapsed())
    })?;
    drop(file);
    t.remove("sequential")?;
    Ok(times)
}

/// MiB/s of `writes` 4 KiB writes in `time`.
fn mib_per_s(writes: u64, time: Duration) -> f64 {
    (writes * BLOCK) as f64 / time.as_secs_f64() / MIB as f64
}

/// The rows of every kind measured, kind after kind; `memcpy` is the run's memcpy (GB/s).
pub fn kind_rows(kinds: &[KindSuite], memcpy: &Samples) -> Vec<Row> {
    let mut rows = Vec::new();
    for k in kinds {
        let label = k.place.label();
        let r = Row::new(
            format!(
                "1 MiB sequential pwrite over {}, private blocks, pool: {label}",
                size_text(k.sizes.sequential)
            ),
            "GB/s",
        )
        .on_pool(&label);
        let bytes = k.sizes.sequential;
        rows.push(match &k.sequential {
            Ok(times) => {
                let mut r = r.measured(&Samples::of_rates(times, |d| gb_per_s(bytes, d)));
                r.compare(format!("memcpy {} GB/s", num(memcpy.best())), memcpy.best());
                r
            }
            Err(e) => r.failed(e),
        });
        let r = Row::new(
            format!(
                "4 KiB CoW pwrite, shared {} clone, random order, pool: {label}",
                size_text(k.sizes.cow_file)
            ),
            "us/op",
        )
        .on_pool(&label);
        rows.push(match &k.cow_random {
            Ok(m) => r.measured(&Samples::of_times(&m.total, |d| crate::us(d) / m.ops as f64)),
            Err(e) => r.failed(e),
        });
        let writes = k.sizes.small_writes;
        let r = Row::new(
            format!(
                "4 KiB pwrite appending to a private file, durable on return, {} writes, pool: {label}",
                crate::thousands(writes)
            ),
            "MiB/s",
        )
        .on_pool(&label);
        let on_disk = matches!(k.place, Place::Disk(..));
        let dir = k.place.dir();
        rows.push(small_write_row(
            r,
            (&k.small_writes, &k.kernel_small_writes),
            writes,
            &format!("the kernel's own 4 KiB pwrite + fdatasync of a plain file in {}", dir.display()),
            "",
        ));
        let batched = k.sizes.batched_writes;
        let mut r = Row::new(
            format!(
                "4 KiB pwrite appending to a private file, {} writes then one fsync, pool: {label}",
                crate::thousands(batched)
            ),
            "MiB/s",
        )
        .on_pool(&label);
        if on_disk {
            r.target = format!(">= {DISK_SMALL_WRITES_TARGET_MIB_S} MiB/s");
        }
        let fsync_rate = match &k.kernel_small_writes {
            Ok(kernel) => {
                let per_s = Samples::of_rates(kernel, |d| writes as f64 / d.as_secs_f64()).best();
                format!("; its fsync rate here: {} fsyncs/s", num(per_s))
            }
            Err(_) => String::new(),
        };
        let mut r = small_write_row(
            r,
            (&k.batched_writes, &k.kernel_batched_writes),
            batched,
            &format!(
                "the kernel's own 4 KiB pwrites then one fdatasync of a plain file in {}",
                dir.display()
            ),
            &fsync_rate,
        );
        if on_disk && r.error.is_none() {
            r.judge(r.best.is_some_and(|best| best >= DISK_SMALL_WRITES_TARGET_MIB_S));
        }
        rows.push(r);
    }
    rows
}

/// The runs' times of one measurement, or why it could not be made.
type Timed = Result<Vec<Duration>, String>;

/// Row `r` of `writes` 4 KiB writes: ferrodax's times and the kernel's doing the same
/// (`kernel_does`, in words), `note` appended to the comparison.
fn small_write_row(
    r: Row,
    (times, kernel): (&Timed, &Timed),
    writes: u64,
    kernel_does: &str,
    note: &str,
) -> Row {
    let times = match times {
        Ok(times) => times,
        Err(e) => return r.failed(e),
    };
    let mut r = r.measured(&Samples::of_rates(times, |d| mib_per_s(writes, d)));
    match kernel {
        Ok(kernel) => {
            let kernel = Samples::of_rates(kernel, |d| mib_per_s(writes, d));
            r.compare(
                format!(
                    "{kernel_does}: {} MiB/s (median {}){note}",
                    num(kernel.best()),
                    num(kernel.spread().median)
                ),
                kernel.best(),
            );
        }
        Err(e) => r.comparison = format!("{kernel_does}: not measured: {e}{note}"),
    }
    r
}

/// The table's note about these rows.
pub fn kinds_note(kinds: &[KindSuite]) -> String {
    let places: Vec<String> = kinds.iter().map(|k| k.place.label()).collect();
    format!(
        "pool-kind rows: the writing rows again on each kind of pool ({}), smaller sizes on the disk; pool files are \
         made as `ferrodax mkfs` makes them (allocated) and deleted afterwards; a pool file on /dev/shm has cache-flush \
         persistence like memfd, one on disk msync (and group commit: operations durable at fsync); the 4 KiB rows \
         call fsync after every write (durable on return) or once after the last (group commit), and are compared \
         with the kernel's own pwrite + fdatasync doing the same in the same place (on the disk, every-write: its \
         fsync rate, the limit)",
        places.join(", ")
    )
}
