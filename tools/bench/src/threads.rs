//! The thread rows: 4 KiB pwrites to private files (one file per thread, every block of it
//! allocated and owned by that file alone, overwritten in random order) by two threads at once,
//! against one thread alone, in the same run: once through handles opened with
//! `OpenOptions::in_place` (overwrites in place, under the shared lock), once through ordinary
//! handles (copy-on-write: every write allocates, commits and frees, under the exclusive lock).
//!
//! Owns the pool of these rows and their sizes. Must never: reach below the public library API,
//! or let one thread write another's file. No `unsafe`.

use crate::{num, progress, size_text, Plan, Row, Samples, Xorshift, BLOCK, MEMFD, MIB};
use ferrodax::{File, Fs, OpenOptions, Pool};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Target: two threads writing their own files reach at least this many times one thread's rate.
const TWO_THREADS_TARGET_RATIO: f64 = 1.7;

/// Sizes of the thread rows.
struct ThreadPlan {
    /// Bytes of each thread's file.
    file: u64,
    /// 4 KiB writes per thread per run.
    writes: u64,
    /// The memfd pool of the rows.
    pool: u64,
}

impl ThreadPlan {
    fn new(plan: &Plan) -> ThreadPlan {
        match (plan.smoke, plan.quick) {
            (true, _) => ThreadPlan { file: MIB, writes: 2_000, pool: 64 * MIB },
            (false, true) => ThreadPlan { file: 16 * MIB, writes: 100_000, pool: 512 * MIB },
            (false, false) => ThreadPlan { file: 16 * MIB, writes: 300_000, pool: 512 * MIB },
        }
    }
}

/// The times of one kind of handle: one thread, then two, once per run (alternating).
pub struct Scaling {
    one: Vec<Duration>,
    two: Vec<Duration>,
    /// CPU time of all writer threads together per run, one thread and two: the same per write
    /// when the threads do not wait for each other, whatever else the machine runs.
    cpu_one: Vec<Duration>,
    cpu_two: Vec<Duration>,
    /// Writes per thread per run.
    writes: u64,
}

/// Both kinds of handle.
pub struct ThreadSuite {
    in_place: Result<Scaling, String>,
    copy_on_write: Result<Scaling, String>,
    /// The stores alone, without a file system.
    raw: Result<Scaling, String>,
    file: u64,
}

/// CPU time of the calling thread so far (`/proc/thread-self/schedstat`, nanoseconds on a CPU).
fn thread_cpu_time() -> Result<Duration, String> {
    let text =
        std::fs::read_to_string("/proc/thread-self/schedstat").map_err(|e| format!("schedstat: {e}"))?;
    let ns = text.split_whitespace().next().and_then(|n| n.parse().ok()).ok_or("schedstat: no run time")?;
    Ok(Duration::from_nanos(ns))
}

/// `writes` calls of `write(data, offset)` at random 4 KiB-aligned offsets below `len`.
fn random_writes(
    len: u64,
    writes: u64,
    seed: u64,
    mut write: impl FnMut(&[u8], u64) -> Result<(), String>,
) -> Result<(), String> {
    let data = vec![seed as u8; BLOCK as usize];
    let mut rng = Xorshift(0x5eed_0000_0000_0001 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for _ in 0..writes {
        write(&data, rng.next() % (len / BLOCK) * BLOCK)?;
    }
    Ok(())
}

/// The time `threads` threads take to each run `work(thread)`, from a common start until the
/// last one is done, and the CPU time they took together.
fn time_threads(
    threads: usize,
    work: &(dyn Fn(usize) -> Result<(), String> + Sync),
) -> Result<(Duration, Duration), String> {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let cpu = thread_cpu_time()?;
                    work(t)?;
                    Ok(thread_cpu_time()? - cpu)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<Result<Duration, String>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a writer panicked".into())))
            .collect();
        let elapsed = start.elapsed();
        results.into_iter().sum::<Result<Duration, String>>().map(|cpu| (elapsed, cpu))
    })
}

/// Per run, `work(0, seed)` on one thread alone, then `work(0, seed)` and `work(1, seed)` on two
/// threads at once.
fn one_then_two(
    plan: &Plan,
    tp: &ThreadPlan,
    work: &(dyn Fn(usize, u64) -> Result<(), String> + Sync),
) -> Result<Scaling, String> {
    let mut times = Scaling {
        one: Vec::new(),
        two: Vec::new(),
        cpu_one: Vec::new(),
        cpu_two: Vec::new(),
        writes: tp.writes,
    };
    for run in 0..plan.runs as u64 {
        let (wall, cpu) = time_threads(1, &|t| work(t, 4 * run))?;
        times.one.push(wall);
        times.cpu_one.push(cpu);
        let (wall, cpu) = time_threads(2, &|t| work(t, 4 * run + 1 + t as u64))?;
        times.two.push(wall);
        times.cpu_two.push(cpu);
    }
    Ok(times)
}

/// One kind of handle on a fresh memfd pool: two private files of `tp.file` bytes, every block
/// written once (allocated and private), then per run one thread on the first file and two
/// threads on both.
fn scaling(plan: &Plan, tp: &ThreadPlan, in_place: bool) -> Result<Scaling, String> {
    let fs = Pool::memfd(tp.pool).and_then(|pool| Fs::format(&pool)).map_err(|e| format!("pool: {e}"))?;
    // Touch the pool's free space once, so copy-on-write writes meet no first-touch page fault.
    let warm = fs.open("/warm-up", OpenOptions::new().write(true).create(true)).map_err(|e| e.to_string())?;
    let chunk = vec![0x11u8; MIB as usize];
    for i in 0..(tp.pool / 2 / MIB) {
        warm.write_at(&chunk, i * MIB).map_err(|e| format!("warm-up: {e}"))?;
    }
    drop(warm);
    fs.remove_file("/warm-up").map_err(|e| e.to_string())?;
    let mut files: Vec<File> = Vec::new();
    for t in 0..2 {
        let file = fs
            .open(
                &format!("/private-{t}"),
                OpenOptions::new().read(true).write(true).create(true).in_place(in_place),
            )
            .map_err(|e| e.to_string())?;
        for i in 0..tp.file / MIB {
            file.write_at(&chunk, i * MIB).map_err(|e| format!("fill: {e}"))?;
        }
        files.push(file);
    }
    let times = one_then_two(plan, tp, &|t, seed| {
        random_writes(tp.file, tp.writes, seed, |data, offset| {
            files[t].write_at(data, offset).map(drop).map_err(|e| format!("pwrite: {e}"))
        })
    })?;
    let report = fs.check();
    if !report.is_clean() {
        return Err(format!("fsck after the writes: {report}"));
    }
    Ok(times)
}

/// The machine's own limit for these rows: the same stores without a file system — 4 KiB copied
/// into pool memory, its cache lines flushed, a fence — each thread into a region of its own.
fn raw_scaling(plan: &Plan, tp: &ThreadPlan) -> Result<Scaling, String> {
    let pool = Pool::memfd(2 * tp.file).map_err(|e| format!("pool: {e}"))?;
    let backend = pool.backend();
    let chunk = vec![0x11u8; MIB as usize];
    for i in 0..2 * tp.file / MIB {
        backend.write(i * MIB, &chunk).map_err(|e| format!("warm-up: {e}"))?;
    }
    one_then_two(plan, tp, &|t, seed| {
        let base = t as u64 * tp.file;
        random_writes(tp.file, tp.writes, seed, |data, offset| {
            backend.write(base + offset, data).map_err(|e| format!("store: {e}"))?;
            backend.flush(base + offset, BLOCK);
            backend.drain();
            Ok(())
        })
    })
}

/// Measures both kinds of handle.
pub fn thread_suite(plan: &Plan) -> ThreadSuite {
    let tp = ThreadPlan::new(plan);
    progress(&format!(
        "ferrodax: 4 KiB pwrite to private {} files, 1 and 2 threads, in place",
        size_text(tp.file)
    ));
    let in_place = scaling(plan, &tp, true);
    progress("ferrodax: the same, copy-on-write");
    let copy_on_write = scaling(plan, &tp, false);
    progress("machine: the same stores into pool memory without a file system");
    let raw = raw_scaling(plan, &tp);
    ThreadSuite { in_place, copy_on_write, raw, file: tp.file }
}

/// The rows: two threads' combined rate (MiB/s), compared with one thread's in the same run.
pub fn thread_rows(suite: &ThreadSuite) -> Vec<Row> {
    let mut rows = Vec::new();
    let file = size_text(suite.file);
    for (name, result, targeted) in [
        (
            format!(
                "4 KiB pwrite to private files, 2 threads vs 1: overwrites in place of allocated private blocks \
                 (OpenOptions::in_place), {file} file per thread"
            ),
            &suite.in_place,
            true,
        ),
        (
            format!(
                "4 KiB pwrite to private files, 2 threads vs 1: copy-on-write overwrites of allocated private \
                 blocks (default handles), {file} file per thread"
            ),
            &suite.copy_on_write,
            false,
        ),
        (
            format!(
                "4 KiB store + cache flush + fence into pool memory, no file system, 2 threads vs 1: \
                 the machine's limit for the rows above, {file} region per thread"
            ),
            &suite.raw,
            false,
        ),
    ] {
        let r = Row::new(name, "MiB/s").on_pool(MEMFD);
        rows.push(match result {
            Ok(m) => {
                let rate = |threads: u64| {
                    move |d: Duration| (threads * m.writes * BLOCK) as f64 / MIB as f64 / d.as_secs_f64()
                };
                let one = Samples::of_rates(&m.one, rate(1));
                let mut r = r.measured(&Samples::of_rates(&m.two, rate(2)));
                let cpu_per_write = |runs: &[Duration], threads: u64| {
                    num(Samples::of_times(runs, |d| d.as_secs_f64() * 1e6 / (threads * m.writes) as f64)
                        .best())
                };
                r.compare(
                    format!(
                        "one thread: {} MiB/s (CPU per write: {} us alone, {} us with two threads)",
                        num(one.best()),
                        cpu_per_write(&m.cpu_one, 1),
                        cpu_per_write(&m.cpu_two, 2)
                    ),
                    one.best(),
                );
                if targeted {
                    r.target = format!(">= {TWO_THREADS_TARGET_RATIO}x one thread");
                    r.judge(r.ratio.is_some_and(|x| x >= TWO_THREADS_TARGET_RATIO));
                }
                r
            }
            Err(e) => r.failed(e),
        });
    }
    rows
}

/// The table's note about the thread rows.
pub fn thread_note() -> String {
    format!(
        "thread rows: a memfd pool of their own, free space pre-faulted; each thread overwrites its own file \
         (every block allocated and private) 4 KiB at a time in random order; per run one thread alone, then \
         two at once; rate = all threads' bytes / wall time; the ratio is two threads' best over one thread's \
         best; this machine has {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}
