//! `ferrodax-bench` (also run as `ferrodax bench`): benchmarks against memcpy/memcmp measured in
//! the same run, and against XFS (reflink=1, rmapbt=1, on a loop device over /dev/shm) when the
//! machine allows it. A tool of its own, outside the product binary; it uses only ferrodax's public
//! library API and the shared host helpers of ferrodax-hostkit (the scratch XFS, the remap ioctls).
//!
//! Owns the benchmark procedures, their sizes and targets, and the table (or JSON, whose fields
//! docs/BENCH.md lists) they print. Every row keeps all of its runs and reports the best, the
//! median and the worst; ratios compare best runs of the same bench run.
//! The FUSE rows (a pool mounted through FUSE against the same system calls on XFS) live in
//! [`fuse`]. The pool-server rows (a server process on /dev/shm and its clients) live in [`server`]; this
//! binary re-executed with [`server::ROLE`] as its first argument is one of their helper processes.
//! The pool-kind rows (writes and durable writes on pool files on /dev/shm and on the disk beside
//! memfd) live in [`pools`]. The scale rows (`--scale-only`: a million files mounted by fresh
//! processes, this binary re-executed with [`scale::ROLE`]) live in [`scale`]. The other rows
//! run on memfd pools, whose persistence is cache write-back plus a store fence; the header says
//! which flush instruction the CPU uses. Every
//! procedure is written once against the small [`Target`] trait, so ferrodax and XFS are measured
//! the same way on the same sizes.
//!
//! Must never: reach below the library API (`ferrodax::{Pool, Fs, File, ...}`), install anything,
//! or leave an XFS scratch mount or image behind (ferrodax-hostkit's scratch guard unmounts and
//! deletes on every path, errors and panics included). The only `unsafe` is the bare store-fault
//! baseline of the DAX rows (a SIGSEGV handler of its own, installed only while it measures,
//! while no view is touched), kept together in [`bare_fault`], and the dedupe row's in-place
//! memcmp through two read-only views ([`pool_memcmp`]).
//!
//! The rows that the speed acceptance check reads (the DAX CoW store fault with its bare fault,
//! the owner lookup alone and the memory failure with 10 views, dedupe with its memcmps, the 4 KiB
//! CoW pwrites) are measured in rounds ([`rounds`]): set up once, then one run of each per round,
//! so that a slow period of the machine covers one round rather than all the runs of one row.

mod fuse;
mod pools;
mod rounds;
mod scale;
mod server;
mod threads;

use clap::Parser;
use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, Notice, NoticeKind, PageState};
use ferrodax::memfail::Told;
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use ferrodax_hostkit::remap::{self, DedupeOutcome};
use ferrodax_hostkit::xfs::XfsScratch;
use rounds::{Group, Slot};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

/// Measure ferrodax against memcpy/memcmp measured in the same run (and against XFS when the
/// machine allows it); prints a table, or JSON.
#[derive(Parser, Debug)]
#[command(name = "ferrodax-bench", version, about)]
struct BenchArgs {
    /// Smaller sizes, for a quick look (the table says so).
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run only the memory-failure rows (owner lookup and notification).
    #[arg(long)]
    memory_failure_only: bool,
    /// Run only the pool-server rows (a server process on /dev/shm and its clients).
    #[arg(long)]
    server_only: bool,
    /// Run only the FUSE rows (a pool mounted through FUSE against XFS, both on /dev/shm).
    #[arg(long)]
    fuse_only: bool,
    /// Run only the copy-on-write rows (bare fault, DAX CoW store fault, 4 KiB CoW pwrite), with
    /// more runs, on ferrodax alone.
    #[arg(long)]
    cow_only: bool,
    /// Run only the thread rows (4 KiB pwrite to private files, two threads against one).
    #[arg(long)]
    threads_only: bool,
    /// Run only the scale rows: a pool of a million files and ten million extents built on
    /// /dev/shm (about 5 GiB, a minute and a half), mounted by fresh processes (time, memory per
    /// extent before and after the first owner lookup, a checkpoint after the process's first
    /// write and after its next). Never part of a plain run.
    #[arg(long)]
    scale_only: bool,
    /// The directory of the disk-backed pool file of the pool-kind rows (default: /var/tmp, or
    /// the current directory when /var/tmp is a memory file system).
    #[arg(long, value_name = "DIR")]
    disk_dir: Option<std::path::PathBuf>,
    /// Tiny sizes and two runs, without XFS, the pool server or FUSE: every other row once, to
    /// check the output's shape, not to measure (the numbers mean nothing).
    #[arg(long, hide = true)]
    smoke: bool,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const BLOCK: u64 = 4096;

/// Target: reflink of the 16,384-extent file, at most this many milliseconds.
const FRAGMENTED_REFLINK_TARGET_MS: f64 = 5.0;
/// Target: dedupe compares and shares at least this fraction of memcmp bandwidth.
const DEDUPE_TARGET_RATIO: f64 = 0.9;
/// Target: a 4 KiB copy-on-write pwrite into a shared file, at most this many microseconds.
const COW_TARGET_US: f64 = 2.0;
/// Target: 1 MiB sequential pwrite/pread reach at least this fraction of memcpy bandwidth.
const SEQUENTIAL_TARGET_RATIO: f64 = 0.8;
/// Target: a copy-on-write store fault through a DAX view costs at most this multiple of a bare
/// SIGSEGV + mprotect round trip.
const DAX_FAULT_TARGET_RATIO: f64 = 1.5;
/// Target: plain stores through a private DAX view reach at least this fraction of memcpy.
const DAX_STORE_TARGET_RATIO: f64 = 0.8;
/// Target: owner lookup plus notification (Fs::memory_failure until every view's early
/// subscriber has its notice) of a page shared by 10,000 reflinks in a pool of 1,000,000 extents,
/// at most this many milliseconds; also the owner lookup alone.
const MEMFAIL_TARGET_MS: f64 = 1.0;
/// Extents in the small pool of the memory-failure flatness comparison.
const MEMFAIL_SMALL_EXTENTS: u64 = 1_000;
/// Files sharing the page of the flatness comparison (small enough for the small pool).
const MEMFAIL_FLAT_SHARERS: u64 = 10;
/// Blocks of the widely shared source: one fresh block per timed memory failure.
const MEMFAIL_FAILURES: u64 = 5;
/// Views (of distinct sharers) that every timed memory failure must unmap and notify: the target
/// row, and a second row with many more views (each view page costs a remap).
const MEMFAIL_VIEWS: [u64; 2] = [10, 100];
/// Repetitions of the owner lookups.
const MEMFAIL_LOOKUP_RUNS: usize = 50;

/// Sizes and repetitions of one bench run.
struct Plan {
    /// Smaller sizes (`--quick`, and `--smoke`).
    quick: bool,
    /// Tiny sizes, only to check the output's shape (`--smoke`).
    smoke: bool,
    /// Bytes of the "1 GiB" benchmarks (baselines, single-extent reflink, dedupe, sequential I/O).
    big: u64,
    /// Blocks of the fragmented file (every other one written).
    fragmented_blocks: u64,
    /// Bytes of the file that is cloned and then overwritten 4 KiB at a time.
    cow_file: u64,
    /// Files in the mount-time pool.
    mount_files: u64,
    /// The memfd pool of the data benchmarks.
    pool_size: u64,
    /// The memfd pool of the mount benchmark.
    mount_pool_size: u64,
    /// The XFS scratch image.
    xfs_image_size: u64,
    /// Repetitions of each measurement; the best, median and worst are reported.
    runs: usize,
    /// Repetitions of the (cheap) reflink measurements.
    reflink_runs: usize,
    /// Extents in the big pool of the memory-failure rows.
    memfail_extents: u64,
    /// Files sharing the page that fails in the memory-failure rows.
    memfail_reflinks: u64,
    /// Free space pre-faulted beyond what a pool's rows write.
    warm_up_margin: u64,
}

impl Plan {
    fn new(quick: bool, smoke: bool) -> Plan {
        if smoke {
            return Plan {
                quick: true,
                smoke: true,
                big: 16 * MIB,
                fragmented_blocks: 256,
                cow_file: MIB,
                mount_files: 100,
                pool_size: 256 * MIB,
                mount_pool_size: 64 * MIB,
                xfs_image_size: GIB,
                runs: 2,
                reflink_runs: 2,
                memfail_extents: 2_000,
                memfail_reflinks: MEMFAIL_VIEWS[MEMFAIL_VIEWS.len() - 1],
                warm_up_margin: 4 * MIB,
            };
        }
        Plan {
            quick,
            smoke: false,
            big: if quick { 256 * MIB } else { GIB },
            fragmented_blocks: 32 * 1024,
            cow_file: 64 * MIB,
            mount_files: if quick { 10_000 } else { 100_000 },
            pool_size: if quick { 2 * GIB } else { 4 * GIB },
            mount_pool_size: if quick { 256 * MIB } else { GIB },
            xfs_image_size: 4 * GIB,
            runs: if quick { 3 } else { 5 },
            reflink_runs: 5,
            memfail_extents: if quick { 100_000 } else { 1_000_000 },
            memfail_reflinks: if quick { 1_000 } else { 10_000 },
            warm_up_margin: 256 * MIB,
        }
    }

    /// Bytes written once and deleted before measuring, so that no timed store pays for the
    /// first touch of a lazily allocated page (memfd and tmpfs allocate on first write).
    fn warm_up_bytes(&self) -> u64 {
        2 * self.big + self.warm_up_margin
    }

    /// The mode's name in the JSON.
    fn mode(&self) -> &'static str {
        match (self.smoke, self.quick) {
            (true, _) => "smoke",
            (false, true) => "quick",
            (false, false) => "full",
        }
    }

    /// The mode in the table's header.
    fn mode_text(&self) -> &'static str {
        match (self.smoke, self.quick) {
            (true, _) => "SMOKE mode (tiny sizes: the numbers mean nothing)",
            (false, true) => "QUICK mode (smaller sizes)",
            (false, false) => "full mode",
        }
    }
}

/// "1 GiB", "256 MiB", "64 MiB".
fn size_text(bytes: u64) -> String {
    if bytes >= GIB && bytes % GIB == 0 {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

/// 100000 -> "100,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

fn gb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

fn us(time: Duration) -> f64 {
    time.as_secs_f64() * 1e6
}

/// The `pool` of the rows measured on a memfd pool.
const MEMFD: &str = "memfd";

// ----- data -----

/// A small deterministic generator (xorshift64*), for test data and shuffles.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Deterministic file contents: 1 MiB of pseudo-random bytes with the chunk index stamped into
/// every block, so no two blocks of a file are equal and two files filled alike are identical.
struct Pattern {
    chunk: Vec<u8>,
}

impl Pattern {
    fn new() -> Pattern {
        let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
        let chunk = (0..MIB / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
        Pattern { chunk }
    }

    /// The `index`-th 1 MiB chunk of a file.
    fn chunk(&mut self, index: u64) -> &[u8] {
        for (b, block) in self.chunk.chunks_mut(BLOCK as usize).enumerate() {
            block[..8].copy_from_slice(&(index * (MIB / BLOCK) + b as u64).to_le_bytes());
        }
        &self.chunk
    }
}

// ----- what the benchmarks run on -----

/// The operations the benchmarks need, implemented by ferrodax and by the XFS scratch mount.
trait Target {
    /// An open file.
    type Handle;
    /// Creates a new, empty file open for reading and writing.
    fn create(&self, name: &str) -> Result<Self::Handle, String>;
    /// Removes a file's name.
    fn remove(&self, name: &str) -> Result<(), String>;
    /// pwrite of all of `data`.
    fn write_at(&self, file: &Self::Handle, data: &[u8], offset: u64) -> Result<(), String>;
    /// pread of exactly `buf.len()` bytes.
    fn read_at(&self, file: &Self::Handle, buf: &mut [u8], offset: u64) -> Result<(), String>;
    /// ftruncate.
    fn set_len(&self, file: &Self::Handle, len: u64) -> Result<(), String>;
    /// Makes the file's data and metadata durable (fsync; nothing to do for ferrodax).
    fn sync(&self, file: &Self::Handle) -> Result<(), String>;
    /// Clones `[0, len)` of `src` onto `[0, len)` of `dst`.
    fn reflink(&self, src: &Self::Handle, dst: &Self::Handle, len: u64) -> Result<(), String>;
    /// Dedupes `[0, len)` of `dst` against the same range of `src`; identical data is required.
    fn dedupe(&self, src: &Self::Handle, dst: &Self::Handle, len: u64) -> Result<(), String>;
    /// Number of extents of the file, where the target can tell.
    fn extent_count(&self, file: &Self::Handle) -> Option<u64>;
    /// memcmp of `[0, len)` of two files where their bytes sit, timed (they must be equal): the
    /// compare a dedupe of the two cannot beat. `None` where the target's bytes cannot be read in
    /// place.
    fn memcmp_in_place(
        &self,
        a: &Self::Handle,
        b: &Self::Handle,
        len: u64,
    ) -> Option<Result<Duration, String>>;
}

/// ferrodax on a memfd pool, files in the root directory.
struct FerrodaxTarget {
    fs: Fs,
}

impl Target for FerrodaxTarget {
    type Handle = File;

    fn create(&self, name: &str) -> Result<File, String> {
        let path = format!("/{name}");
        self.fs
            .open(&path, OpenOptions::new().read(true).write(true).create_new(true))
            .map_err(|e| format!("create {path}: {e}"))
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        self.fs.remove_file(&format!("/{name}")).map_err(|e| format!("remove /{name}: {e}"))
    }

    fn write_at(&self, file: &File, data: &[u8], offset: u64) -> Result<(), String> {
        match file.write_at(data, offset) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(n) => Err(format!("short write: {n} of {} bytes at {offset}", data.len())),
            Err(e) => Err(format!("pwrite at {offset}: {e}")),
        }
    }

    fn read_at(&self, file: &File, buf: &mut [u8], offset: u64) -> Result<(), String> {
        file.read_exact_at(buf, offset).map_err(|e| format!("pread at {offset}: {e}"))
    }

    fn set_len(&self, file: &File, len: u64) -> Result<(), String> {
        file.set_len(len).map_err(|e| format!("truncate to {len}: {e}"))
    }

    fn sync(&self, file: &File) -> Result<(), String> {
        // A no-op on a memory pool (every operation is durable when it returns); on a pool file
        // on a disk, the sync point of group commit.
        file.sync_all().map_err(|e| format!("fsync: {e}"))
    }

    fn reflink(&self, src: &File, dst: &File, len: u64) -> Result<(), String> {
        match self.fs.reflink(src, 0, dst, 0, len) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(format!("reflink linked {n} of {len} bytes")),
            Err(e) => Err(format!("reflink: {e}")),
        }
    }

    fn dedupe(&self, src: &File, dst: &File, len: u64) -> Result<(), String> {
        let mut offset = 0;
        while offset < len {
            let target = DedupeTarget { file: dst, offset };
            let statuses =
                self.fs.dedupe(src, offset, len - offset, &[target]).map_err(|e| format!("dedupe: {e}"))?;
            match statuses.into_iter().next() {
                Some(DedupeStatus::Same { bytes_deduped }) if bytes_deduped > 0 => offset += bytes_deduped,
                Some(DedupeStatus::Same { .. }) => return Err("dedupe made no progress".into()),
                Some(DedupeStatus::Differs) => return Err(format!("dedupe: contents differ at {offset}")),
                Some(DedupeStatus::Failed(e)) => return Err(format!("dedupe: {e}")),
                None => return Err("dedupe returned no status".into()),
            }
        }
        Ok(())
    }

    fn extent_count(&self, file: &File) -> Option<u64> {
        file.metadata().ok().map(|m| m.extents)
    }

    fn memcmp_in_place(&self, a: &File, b: &File, len: u64) -> Option<Result<Duration, String>> {
        Some(pool_memcmp::time(a, b, len))
    }
}

/// XFS on a loop device over a file in /dev/shm, through the ordinary system calls.
struct XfsTarget {
    scratch: XfsScratch,
}

impl Target for XfsTarget {
    type Handle = std::fs::File;

    fn create(&self, name: &str) -> Result<std::fs::File, String> {
        let path = self.scratch.path(name);
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        let path = self.scratch.path(name);
        std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))
    }

    fn write_at(&self, file: &std::fs::File, data: &[u8], offset: u64) -> Result<(), String> {
        file.write_all_at(data, offset).map_err(|e| format!("pwrite at {offset}: {e}"))
    }

    fn read_at(&self, file: &std::fs::File, buf: &mut [u8], offset: u64) -> Result<(), String> {
        file.read_exact_at(buf, offset).map_err(|e| format!("pread at {offset}: {e}"))
    }

    fn set_len(&self, file: &std::fs::File, len: u64) -> Result<(), String> {
        file.set_len(len).map_err(|e| format!("truncate to {len}: {e}"))
    }

    fn sync(&self, file: &std::fs::File) -> Result<(), String> {
        file.sync_all().map_err(|e| format!("fsync: {e}"))
    }

    fn reflink(&self, src: &std::fs::File, dst: &std::fs::File, len: u64) -> Result<(), String> {
        remap::clone_range(src, 0, len, dst, 0).map_err(|e| format!("FICLONERANGE: {e}"))
    }

    fn dedupe(&self, src: &std::fs::File, dst: &std::fs::File, len: u64) -> Result<(), String> {
        let mut offset = 0;
        while offset < len {
            let outcome = remap::dedupe_range(src, offset, len - offset, dst, offset)
                .map_err(|e| format!("FIDEDUPERANGE: {e}"))?;
            match outcome {
                DedupeOutcome::Same(n) if n > 0 => offset += n,
                DedupeOutcome::Same(_) => return Err("FIDEDUPERANGE made no progress".into()),
                DedupeOutcome::Differs => return Err(format!("FIDEDUPERANGE: contents differ at {offset}")),
                DedupeOutcome::Failed(errno) => {
                    return Err(format!("FIDEDUPERANGE: {}", std::io::Error::from_raw_os_error(errno)))
                }
            }
        }
        Ok(())
    }

    fn extent_count(&self, _file: &std::fs::File) -> Option<u64> {
        None
    }

    fn memcmp_in_place(
        &self,
        _a: &std::fs::File,
        _b: &std::fs::File,
        _len: u64,
    ) -> Option<Result<Duration, String>> {
        None
    }
}

/// The dedupe row's baseline: memcmp of the two files' bytes in the pool itself. A dedupe reads
/// pool memory, whose pages (memfd pages here) are not the heap's: a memcmp of heap buffers of the
/// same size measures other pages, placed otherwise. The files are read through two read-only DAX views, whose
/// pages are the pool's own; their page tables are filled (MADV_POPULATE_READ, no data read)
/// before the clock starts, so the memcmp meets the same cold pool bytes, already mapped, that the
/// dedupe meets. This module and [`bare_fault`] hold the benchmark's only `unsafe`.
mod pool_memcmp {
    use ferrodax::dax::MapAccess;
    use ferrodax::File;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    /// Times the memcmp of `[0, len)` of `a` and `b` (they must be equal).
    pub fn time(a: &File, b: &File, len: u64) -> Result<Duration, String> {
        let n = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
        let va = a.map(0, len, MapAccess::Read).map_err(|e| format!("view for the memcmp: {e}"))?;
        let vb = b.map(0, len, MapAccess::Read).map_err(|e| format!("view for the memcmp: {e}"))?;
        for view in [&va, &vb] {
            // SAFETY: the view is `n` bytes of this process's address space while it lives;
            // MADV_POPULATE_READ only fills its page tables (read faults), reading no data here.
            let rc = unsafe { libc::madvise(view.as_ptr().cast(), n, libc::MADV_POPULATE_READ) };
            if rc != 0 {
                return Err(format!("MADV_POPULATE_READ: {}", std::io::Error::last_os_error()));
            }
        }
        // SAFETY: each view is `n` readable bytes (a read-only view of pages inside the files'
        // size) while it lives, and nothing writes either file while the slices exist.
        let (x, y) = unsafe {
            (std::slice::from_raw_parts(va.as_ptr(), n), std::slice::from_raw_parts(vb.as_ptr(), n))
        };
        let start = Instant::now();
        let equal = black_box(black_box(x) == black_box(y));
        let time = start.elapsed();
        if !equal {
            return Err("the files differ".into());
        }
        Ok(time)
    }
}

/// The bare store fault the DAX fault row is compared with: a store into a read-only page of a
/// private anonymous mapping raises SIGSEGV, and a handler of this module makes that one page
/// writable with mprotect and returns, so the store re-executes and succeeds. This module and
/// [`pool_memcmp`] hold the benchmark's only `unsafe` (the remap ioctls live in ferrodax-hostkit).
///
/// The handler is installed only while [`store_fault_round_trips`] measures, and the previous
/// disposition (ferrodax's handler, once a view was made) is restored afterwards; the bench
/// measures this while no view of the pool of the fault row exists and nothing touches any other
/// view (the memory-failure row's read-only views, in the rounds), so no fault of ferrodax's can
/// arrive meanwhile. A
/// fault outside the measured region resets SIGSEGV to the default action, so a real crash
/// during the measurement still ends the process.
mod bare_fault {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const PAGE: usize = 4096;

    /// The measured region, `[START, END)`; both 0 when no measurement runs.
    static START: AtomicUsize = AtomicUsize::new(0);
    static END: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_store_fault(_signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        if addr >= START.load(Ordering::Relaxed) && addr < END.load(Ordering::Relaxed) {
            let page = addr & !(PAGE - 1);
            // SAFETY: the page lies in the region `store_fault_round_trips` mapped and owns;
            // mprotect is async-signal-safe and changes no contents.
            let rc = unsafe {
                libc::mprotect(page as *mut libc::c_void, PAGE, libc::PROT_READ | libc::PROT_WRITE)
            };
            if rc == 0 {
                return;
            }
        }
        // Not a fault of the measurement: the default action when the access re-executes.
        // SAFETY: sigaction is async-signal-safe; a zeroed sigaction with SIG_DFL is valid.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &default, std::ptr::null_mut());
        }
    }

    /// Maps `pages` private anonymous pages, writes every one (so no timed store allocates a
    /// page), makes them read-only, then times one store per page, each of which faults once
    /// into the handler. Returns the time of all the stores.
    pub fn store_fault_round_trips(pages: usize) -> Result<Duration, String> {
        let len = pages * PAGE;
        // SAFETY: a new private anonymous mapping at an address the kernel picks.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let unmap = || {
            // SAFETY: the mapping made above; nothing refers to it after this.
            unsafe { libc::munmap(base, len) };
        };
        // 4 KiB pages, as views have: a huge page would make the first mprotect split it.
        // SAFETY: advice about our own mapping; the contents are not changed.
        unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
        // SAFETY: `len` writable bytes at `base`, ours alone.
        unsafe { std::ptr::write_bytes(base.cast::<u8>(), 1, len) };
        // SAFETY: our own mapping; mprotect changes no contents.
        if unsafe { libc::mprotect(base, len, libc::PROT_READ) } != 0 {
            let e = std::io::Error::last_os_error();
            unmap();
            return Err(format!("mprotect: {e}"));
        }
        START.store(base as usize, Ordering::SeqCst);
        END.store(base as usize + len, Ordering::SeqCst);
        // SAFETY: installing a handler that only touches the measured region (see above) and
        // keeping the previous disposition, which is restored below.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_store_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSEGV, &action, &mut previous)
        };
        if installed != 0 {
            let e = std::io::Error::last_os_error();
            unmap();
            return Err(format!("sigaction: {e}"));
        }
        let start = Instant::now();
        for page in 0..pages {
            // SAFETY: inside our mapping; the page is read-only, so the store faults and the
            // handler makes it writable before the store re-executes.
            unsafe { base.cast::<u8>().add(page * PAGE).write_volatile(2) };
        }
        let time = start.elapsed();
        // SAFETY: putting back exactly the disposition that was in place before.
        unsafe { libc::sigaction(libc::SIGSEGV, &previous, std::ptr::null_mut()) };
        START.store(0, Ordering::SeqCst);
        END.store(0, Ordering::SeqCst);
        // SAFETY: every page of our mapping is readable.
        let all_stored =
            (0..pages).all(|page| unsafe { base.cast::<u8>().add(page * PAGE).read_volatile() } == 2);
        unmap();
        if !all_stored {
            return Err("a store through the faulting pages was lost".into());
        }
        Ok(time)
    }
}

// ----- the benchmark procedures -----

/// Writes `[0, len)` of `file` with the pattern, 1 MiB per pwrite.
fn fill_file<T: Target>(t: &T, file: &T::Handle, len: u64, pattern: &mut Pattern) -> Result<(), String> {
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(MIB) as usize;
        t.write_at(file, &pattern.chunk(offset / MIB)[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Touches `bytes` of the target's free space once, then frees it again; a warm-up that fails
/// part way still removes its file, so the rows measured after it ("measuring anyway") find the
/// space free.
fn warm_up<T: Target>(t: &T, bytes: u64, pattern: &mut Pattern) -> Result<(), String> {
    let file = t.create("warm-up")?;
    let written = fill_file(t, &file, bytes, pattern).and_then(|()| t.sync(&file));
    drop(file);
    let removed = t.remove("warm-up");
    written.and(removed)
}

/// Blocks of free space [`warm_up_all_free_space`] leaves untouched: the log's and checkpoints'
/// own blocks come from the metadata reserve, and a file of every free block would not fit.
const WARM_UP_SLACK: u64 = 16 * MIB;

/// Touches all of a ferrodax pool's free space once (but [`WARM_UP_SLACK`]), then frees it
/// again, so that no timed store pays for the first touch of a memfd page wherever the allocator
/// puts it: a copy-on-write moves a file to fresh blocks at every run, further into the pool each
/// time (a warm-up of a fixed size left the DAX CoW fault row paying a shmem page allocation for
/// most of its faults). Returns the bytes touched.
fn warm_up_all_free_space(t: &FerrodaxTarget, pattern: &mut Pattern) -> Result<u64, String> {
    let usage = t.fs.space_usage().map_err(|e| format!("space usage: {e}"))?;
    let bytes = (usage.available_blocks * BLOCK).saturating_sub(WARM_UP_SLACK) / MIB * MIB;
    warm_up(t, bytes, pattern)?;
    Ok(bytes)
}

/// Sequential 1 MiB pwrite (overwriting a written file) and pread: every run's time.
struct Sequential {
    write: Vec<Duration>,
    read: Vec<Duration>,
}

fn sequential_io<T: Target>(t: &T, plan: &Plan, pattern: &mut Pattern) -> Result<Sequential, String> {
    let file = t.create("sequential")?;
    fill_file(t, &file, plan.big, pattern)?;
    t.sync(&file)?;
    let write = time_runs(plan.runs, || {
        let start = Instant::now();
        fill_file(t, &file, plan.big, pattern)?;
        t.sync(&file)?;
        Ok(start.elapsed())
    })?;
    let mut buf = vec![0u8; MIB as usize];
    let read = time_runs(plan.runs, || {
        let start = Instant::now();
        for offset in (0..plan.big).step_by(MIB as usize) {
            t.read_at(&file, &mut buf, offset)?;
            black_box(&mut buf);
        }
        Ok(start.elapsed())
    })?;
    let mut expected = Pattern::new();
    t.read_at(&file, &mut buf, plan.big - MIB)?;
    if buf[..] != *expected.chunk(plan.big / MIB - 1) {
        return Err("sequential pread returned the wrong bytes".into());
    }
    drop(file);
    t.remove("sequential")?;
    Ok(Sequential { write, read })
}

/// Every reflink call's time and the source's extent count.
struct ReflinkTime {
    times: Vec<Duration>,
    source_extents: Option<u64>,
}

/// Clones all of `src` into a fresh destination `runs` times; every call's time.
fn time_reflinks<T: Target>(
    t: &T,
    src: &T::Handle,
    len: u64,
    runs: usize,
    tag: &str,
) -> Result<Vec<Duration>, String> {
    let mut run = 0;
    time_runs(runs, || {
        let name = format!("{tag}-clone-{run}");
        run += 1;
        let dst = t.create(&name)?;
        let start = Instant::now();
        t.reflink(src, &dst, len)?;
        let time = start.elapsed();
        drop(dst);
        t.remove(&name)?;
        Ok(time)
    })
}

fn reflink_single_extent<T: Target>(
    t: &T,
    plan: &Plan,
    pattern: &mut Pattern,
) -> Result<ReflinkTime, String> {
    let src = t.create("single")?;
    fill_file(t, &src, plan.big, pattern)?;
    t.sync(&src)?;
    let source_extents = t.extent_count(&src);
    let times = time_reflinks(t, &src, plan.big, plan.reflink_runs, "single")?;
    drop(src);
    t.remove("single")?;
    Ok(ReflinkTime { times, source_extents })
}

fn reflink_fragmented<T: Target>(t: &T, plan: &Plan, pattern: &mut Pattern) -> Result<ReflinkTime, String> {
    let src = t.create("fragmented")?;
    let block = pattern.chunk(7)[..BLOCK as usize].to_vec();
    for i in (0..plan.fragmented_blocks).step_by(2) {
        t.write_at(&src, &block, i * BLOCK)?;
    }
    let len = plan.fragmented_blocks * BLOCK;
    t.set_len(&src, len)?;
    t.sync(&src)?;
    let source_extents = t.extent_count(&src);
    let times = time_reflinks(t, &src, len, plan.reflink_runs, "fragmented")?;
    drop(src);
    t.remove("fragmented")?;
    Ok(ReflinkTime { times, source_extents })
}

/// Two equal heap buffers of the dedupe size: the memcmp that each dedupe run is compared with,
/// timed right before it, so both see the machine in the same state.
struct MemcmpPair {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl MemcmpPair {
    fn new(len: u64, pattern: &mut Pattern) -> MemcmpPair {
        let mut a = vec![0u8; len as usize];
        for (i, chunk) in a.chunks_mut(MIB as usize).enumerate() {
            chunk.copy_from_slice(&pattern.chunk(i as u64)[..chunk.len()]);
        }
        let b = a.clone();
        MemcmpPair { a, b }
    }

    /// One memcmp of the two buffers (they must be equal).
    fn time(&self) -> Result<Duration, String> {
        let start = Instant::now();
        let equal = black_box(black_box(&self.a[..]) == black_box(&self.b[..]));
        let time = start.elapsed();
        if !equal {
            return Err("the memcmp buffers differ".into());
        }
        Ok(time)
    }
}

/// Dedupe runs and the memcmp runs paired with them.
#[derive(Default)]
struct DedupeTimes {
    dedupe: Vec<Duration>,
    /// memcmp of the two heap buffers.
    memcmp: Vec<Duration>,
    /// memcmp of the source and the destination where they are ([`Target::memcmp_in_place`]),
    /// right before the dedupe; empty where the target cannot.
    in_place: Vec<Duration>,
}

/// The dedupe row's setup, kept across the rounds: the two heap buffers of its memcmp and the
/// source file. A run consumes its destination (deduped onto the source, then removed), so every
/// run writes a fresh one the same way.
struct DedupeRuns<'t, T: Target> {
    t: &'t T,
    len: u64,
    pair: MemcmpPair,
    src: T::Handle,
    pattern: Pattern,
    times: DedupeTimes,
}

impl<'t, T: Target> DedupeRuns<'t, T> {
    /// Fills the heap buffers and writes the `len`-byte source.
    fn set_up(t: &'t T, len: u64) -> Result<Self, String> {
        let mut pattern = Pattern::new();
        let pair = MemcmpPair::new(len, &mut pattern);
        let src = t.create("dedupe-src")?;
        fill_file(t, &src, len, &mut pattern)?;
        t.sync(&src)?;
        Ok(DedupeRuns { t, len, pair, src, pattern, times: DedupeTimes::default() })
    }

    /// One run: a fresh destination written like the source, a memcmp of the two files in place
    /// (where the target allows), then one of the heap buffers, then the timed dedupe.
    fn run_once(&mut self) -> Result<(), String> {
        let (t, len) = (self.t, self.len);
        let name = format!("dedupe-dst-{}", self.times.dedupe.len());
        let dst = t.create(&name)?;
        fill_file(t, &dst, len, &mut self.pattern)?;
        t.sync(&dst)?;
        // The in-place memcmp first: its views are gone, and the heap memcmp has run, before the
        // dedupe starts, as in a run without it.
        if let Some(time) = t.memcmp_in_place(&self.src, &dst, len) {
            self.times.in_place.push(time?);
        }
        self.times.memcmp.push(self.pair.time()?);
        let start = Instant::now();
        t.dedupe(&self.src, &dst, len)?;
        let time = start.elapsed();
        drop(dst);
        t.remove(&name)?;
        self.times.dedupe.push(time);
        Ok(())
    }

    /// Removes the source; every run's times.
    fn finish(self) -> Result<DedupeTimes, String> {
        drop(self.src);
        self.t.remove("dedupe-src")?;
        Ok(self.times)
    }
}

impl<T: Target> rounds::Interleaved for DedupeRuns<'_, T> {
    fn run_round(&mut self, _round: usize, _rounds: usize) -> Result<(), String> {
        self.run_once()
    }
}

/// Order of the 4 KiB overwrites.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Random,
    Sequential,
}

/// Times of the passes of 4 KiB overwrites over a whole freshly cloned file, one per run.
struct CowTime {
    /// Every pwrite, then (XFS only) one fsync.
    total: Vec<Duration>,
    /// The pwrites alone.
    writes: Vec<Duration>,
    ops: u64,
}

/// A 4 KiB copy-on-write pwrite row's setup, kept across the rounds: the source file and the
/// order of the overwrites. A run consumes its clone (every block overwritten, then removed), so
/// every run clones the source afresh.
struct CowRuns<'t, T: Target> {
    t: &'t T,
    /// The order's name in the files' names ("random", "sequential").
    tag: &'static str,
    base: T::Handle,
    file_len: u64,
    offsets: Vec<u64>,
    data: Vec<u8>,
    times: CowTime,
}

impl<'t, T: Target> CowRuns<'t, T> {
    /// Writes the `file_len` source and shuffles the offsets (`Order::Random`).
    fn set_up(t: &'t T, file_len: u64, order: Order) -> Result<Self, String> {
        let tag = match order {
            Order::Random => "random",
            Order::Sequential => "sequential",
        };
        let base = t.create(&format!("cow-base-{tag}"))?;
        fill_file(t, &base, file_len, &mut Pattern::new())?;
        t.sync(&base)?;
        let blocks = file_len / BLOCK;
        let mut offsets: Vec<u64> = (0..blocks).map(|b| b * BLOCK).collect();
        if order == Order::Random {
            // Each block exactly once, so every write lands on a block that is still shared.
            let mut rng = Xorshift(0x5eed_1234_abcd_ef01);
            for i in (1..offsets.len()).rev() {
                offsets.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
        }
        let data = vec![0xa5u8; BLOCK as usize];
        let times = CowTime { total: Vec::new(), writes: Vec::new(), ops: blocks };
        Ok(CowRuns { t, tag, base, file_len, offsets, data, times })
    }

    /// One run: a fresh clone of the source, every block of it overwritten once (timed), checked
    /// and removed.
    fn run_once(&mut self) -> Result<(), String> {
        let t = self.t;
        let name = format!("cow-clone-{}-{}", self.tag, self.times.total.len());
        let clone = t.create(&name)?;
        t.reflink(&self.base, &clone, self.file_len)?;
        t.sync(&clone)?;
        let start = Instant::now();
        for &offset in &self.offsets {
            t.write_at(&clone, &self.data, offset)?;
        }
        let writes = start.elapsed();
        t.sync(&clone)?;
        let total = start.elapsed();
        let mut check = vec![0u8; BLOCK as usize];
        t.read_at(&clone, &mut check, self.offsets[0])?;
        if check != self.data {
            return Err("the clone does not show the overwrite".into());
        }
        t.read_at(&self.base, &mut check, self.offsets[0])?;
        if check == self.data {
            return Err("the overwrite reached the shared source".into());
        }
        drop(clone);
        t.remove(&name)?;
        self.times.total.push(total);
        self.times.writes.push(writes);
        Ok(())
    }

    /// Removes the source; every run's times.
    fn finish(self) -> Result<CowTime, String> {
        drop(self.base);
        self.t.remove(&format!("cow-base-{}", self.tag))?;
        Ok(self.times)
    }
}

impl<T: Target> rounds::Interleaved for CowRuns<'_, T> {
    fn run_round(&mut self, _round: usize, _rounds: usize) -> Result<(), String> {
        self.run_once()
    }
}

/// The 4 KiB copy-on-write pwrite row over a `file_len` clone, `runs` times back to back (the
/// pool-kind rows).
fn cow_pwrite_of<T: Target>(t: &T, file_len: u64, runs: usize, order: Order) -> Result<CowTime, String> {
    let mut cow = CowRuns::set_up(t, file_len, order)?;
    for _ in 0..runs {
        cow.run_once()?;
    }
    cow.finish()
}

/// Everything measured on one target.
struct Suite {
    sequential: Result<Sequential, String>,
    reflink_single: Result<ReflinkTime, String>,
    reflink_fragmented: Result<ReflinkTime, String>,
    dedupe: Result<DedupeTimes, String>,
    cow_random: Result<CowTime, String>,
    cow_sequential: Result<CowTime, String>,
}

/// What one target measures back to back: sequential I/O and reflinks.
struct BackToBack {
    sequential: Result<Sequential, String>,
    reflink_single: Result<ReflinkTime, String>,
    reflink_fragmented: Result<ReflinkTime, String>,
}

impl BackToBack {
    /// Every row of the target failed for the same reason.
    fn failed(e: &str) -> BackToBack {
        BackToBack {
            sequential: Err(e.into()),
            reflink_single: Err(e.into()),
            reflink_fragmented: Err(e.into()),
        }
    }
}

/// Warms up `plan.warm_up_bytes()` of the target's free space, then measures its sequential I/O
/// and reflink rows, each row's runs back to back.
fn run_back_to_back<T: Target>(t: &T, plan: &Plan, name: &str) -> BackToBack {
    let mut pattern = Pattern::new();
    let step = |what: &str| progress(&format!("{name}: {what}"));
    step(&format!("warming up {} of free space", size_text(plan.warm_up_bytes())));
    if let Err(e) = warm_up(t, plan.warm_up_bytes(), &mut pattern) {
        progress(&format!("{name}: warm-up failed ({e}); measuring anyway"));
    }
    step(&format!("1 MiB sequential pwrite/pread over {}", size_text(plan.big)));
    let sequential = sequential_io(t, plan, &mut pattern);
    step(&format!("reflink of a {} single-extent file", size_text(plan.big)));
    let reflink_single = reflink_single_extent(t, plan, &mut pattern);
    step(&format!("reflink of a {}-extent file", thousands(plan.fragmented_blocks / 2)));
    let reflink_fragmented = reflink_fragmented(t, plan, &mut pattern);
    BackToBack { sequential, reflink_single, reflink_fragmented }
}

/// The dedupe and 4 KiB copy-on-write pwrite rows of one target, set up for the rounds.
struct DataGroups<'t, T: Target> {
    dedupe: Group<DedupeRuns<'t, T>>,
    cow_random: Group<CowRuns<'t, T>>,
    cow_sequential: Group<CowRuns<'t, T>>,
}

impl<'t, T: Target> DataGroups<'t, T> {
    /// Writes the rows' sources (and the dedupe's heap buffers).
    fn set_up(t: &'t T, plan: &Plan, name: &str) -> Self {
        progress(&format!(
            "{name}: setting up dedupe of {} and 4 KiB CoW pwrite into a shared {} file",
            size_text(plan.big),
            size_text(plan.cow_file)
        ));
        DataGroups {
            dedupe: Group::new(DedupeRuns::set_up(t, plan.big)),
            cow_random: Group::new(CowRuns::set_up(t, plan.cow_file, Order::Random)),
            cow_sequential: Group::new(CowRuns::set_up(t, plan.cow_file, Order::Sequential)),
        }
    }

    /// The groups in the order each round runs them.
    fn slots(&mut self) -> [&mut dyn Slot; 3] {
        [&mut self.dedupe, &mut self.cow_random, &mut self.cow_sequential]
    }

    /// Removes the sources; the rows' times.
    fn finish(self, back_to_back: BackToBack) -> Suite {
        Suite {
            sequential: back_to_back.sequential,
            reflink_single: back_to_back.reflink_single,
            reflink_fragmented: back_to_back.reflink_fragmented,
            dedupe: self.dedupe.finish(DedupeRuns::finish),
            cow_random: self.cow_random.finish(CowRuns::finish),
            cow_sequential: self.cow_sequential.finish(CowRuns::finish),
        }
    }
}

/// The XFS suite: the back-to-back rows, then the dedupe and CoW pwrite rows in rounds of their own.
fn xfs_suite(t: &XfsTarget, plan: &Plan) -> Suite {
    let back_to_back = run_back_to_back(t, plan, "XFS");
    let mut groups = DataGroups::set_up(t, plan, "XFS");
    rounds::run_rounds("XFS: dedupe and 4 KiB CoW pwrite", plan.runs, &mut groups.slots());
    groups.finish(back_to_back)
}

// ----- DAX views (ferrodax only) -----

/// What the DAX rows measure.
struct DaxSuite {
    /// The copy-on-write store faults and the bare faults they are compared with (measured in the
    /// rounds).
    cow_fault: Result<FaultTimes, String>,
    /// Mapping a `plan.big` single-extent file, and what the view took.
    map: Result<MapCost, String>,
    /// Storing `plan.big` bytes through a private view, one time per run.
    store: Result<Vec<Duration>, String>,
}

/// The cost of `File::map` of a big file, one time per run.
struct MapCost {
    times: Vec<Duration>,
    /// Extents of the mapped file.
    extents: Option<u64>,
    /// Kernel mappings (lines of /proc/self/maps) inside the view's address range.
    kernel_mappings: Option<usize>,
}

/// Lines of /proc/self/maps that lie inside `[start, end)`.
fn kernel_mappings_in(start: usize, end: usize) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let inside = maps
        .lines()
        .filter_map(|line| {
            let (low, high) = line.split_whitespace().next()?.split_once('-')?;
            Some((usize::from_str_radix(low, 16).ok()?, usize::from_str_radix(high, 16).ok()?))
        })
        .filter(|&(low, high)| low >= start && high <= end)
        .count();
    Some(inside)
}

/// The DAX copy-on-write store faults and the bare faults they are compared with: one time per
/// run of each, and the pages of one run.
struct FaultTimes {
    /// All the copy-on-write store faults of one pass over a fully shared clone.
    cow: Vec<Duration>,
    /// All the bare faults ([`bare_fault`]) of one pass over as many pages, timed right before
    /// the copy-on-write pass of the same run.
    bare: Vec<Duration>,
    pages: u64,
}

/// The DAX copy-on-write store fault row's setup, kept across the rounds: the source file. A run
/// consumes its clone (every page stored to, then removed), so every run clones the source afresh.
struct FaultRuns<'t> {
    t: &'t FerrodaxTarget,
    len: u64,
    base: File,
    /// The source's byte at the last page, and the byte stored there (it differs).
    source_byte: [u8; 1],
    stored: [u8; 1],
    times: FaultTimes,
}

impl<'t> FaultRuns<'t> {
    /// Writes the `len`-byte source.
    fn set_up(t: &'t FerrodaxTarget, len: u64) -> Result<Self, String> {
        let base = t.create("dax-fault-base")?;
        fill_file(t, &base, len, &mut Pattern::new())?;
        let pages = len / BLOCK;
        let mut source_byte = [0u8; 1];
        t.read_at(&base, &mut source_byte, (pages - 1) * BLOCK)?;
        // Differs from the source's byte where the stored bytes are checked.
        let stored = [!source_byte[0]];
        let times = FaultTimes { cow: Vec::new(), bare: Vec::new(), pages };
        Ok(FaultRuns { t, len, base, source_byte, stored, times })
    }

    /// One run: a fresh reflinked clone of the source; a bare fault pass over as many pages (while
    /// no view of this pool exists); then one plain store per page into a ReadWrite view of the
    /// clone: every store faults, and the handler copies the page. The two passes follow each other
    /// so that they are compared under the same conditions: the same moment (load from other
    /// programs comes and goes during a long bench run) and the same process (its mappings, its
    /// threads).
    fn run_once(&mut self) -> Result<(), String> {
        let (t, pages) = (self.t, self.times.pages);
        let last_page = (pages - 1) * BLOCK;
        let name = format!("dax-fault-clone-{}", self.times.cow.len());
        let clone = t.create(&name)?;
        t.reflink(&self.base, &clone, self.len)?;
        let bare = bare_fault::store_fault_round_trips(pages as usize)?;
        let view = clone.map(0, self.len, MapAccess::ReadWrite).map_err(|e| format!("map: {e}"))?;
        if !matches!(view.page_state(0), PageState::Block { prot: PageProtection::ReadOnly, .. }) {
            return Err(format!("the clone's first page is {:?}, not shared read-only", view.page_state(0)));
        }
        let start = Instant::now();
        for page in 0..pages {
            view.store_plain((page * BLOCK) as usize, &self.stored).map_err(|e| format!("store: {e}"))?;
        }
        let time = start.elapsed();
        let last = view.page_state(pages - 1);
        if !matches!(last, PageState::Block { prot: PageProtection::ReadWrite, .. }) {
            return Err(format!("after its store the clone's last page is {last:?}"));
        }
        drop(view);
        let mut check = [0u8; 1];
        t.read_at(&clone, &mut check, last_page)?;
        if check != self.stored {
            return Err("the clone does not show the store".into());
        }
        t.read_at(&self.base, &mut check, last_page)?;
        if check != self.source_byte {
            return Err("the store reached the shared source".into());
        }
        drop(clone);
        t.remove(&name)?;
        self.times.bare.push(bare);
        self.times.cow.push(time);
        Ok(())
    }

    /// Removes the source; every run's times.
    fn finish(self) -> Result<FaultTimes, String> {
        drop(self.base);
        self.t.remove("dax-fault-base")?;
        Ok(self.times)
    }
}

impl rounds::Interleaved for FaultRuns<'_> {
    fn run_round(&mut self, _round: usize, _rounds: usize) -> Result<(), String> {
        self.run_once()
    }
}

/// Maps a `plan.big` single-extent file (`plan.runs` times), then stores `plan.big` bytes from
/// a separate source buffer through a ReadWrite view of it in 1 MiB chunks (one untimed pass
/// first, so no timed store pays for a page-table entry, as the memcpy baseline's destination is
/// written before it is timed).
fn dax_map_and_store(
    t: &FerrodaxTarget,
    plan: &Plan,
    pattern: &mut Pattern,
) -> (Result<MapCost, String>, Result<Vec<Duration>, String>) {
    let file = match t.create("dax-big") {
        Ok(file) => file,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    if let Err(e) = fill_file(t, &file, plan.big, pattern) {
        return (Err(e.clone()), Err(e));
    }
    let extents = t.extent_count(&file);
    let mut kernel_mappings = None;
    let map = time_runs(plan.runs, || {
        let start = Instant::now();
        let view = file.map(0, plan.big, MapAccess::ReadWrite).map_err(|e| format!("map: {e}"))?;
        let time = start.elapsed();
        let first = view.as_ptr() as usize;
        kernel_mappings = kernel_mappings_in(first, first + view.len());
        Ok(time)
    })
    .map(|times| MapCost { times, extents, kernel_mappings });

    let store = (|| {
        let mut source = vec![0u8; plan.big as usize];
        for (i, chunk) in source.chunks_mut(MIB as usize).enumerate() {
            chunk.copy_from_slice(&pattern.chunk(i as u64 + 1)[..chunk.len()]);
        }
        let view = file.map(0, plan.big, MapAccess::ReadWrite).map_err(|e| format!("map: {e}"))?;
        let store_all = || -> Result<Duration, String> {
            let start = Instant::now();
            for (i, chunk) in source.chunks(MIB as usize).enumerate() {
                view.store_plain(i * MIB as usize, black_box(chunk)).map_err(|e| format!("store: {e}"))?;
            }
            Ok(start.elapsed())
        };
        store_all()?;
        let time = time_runs(plan.runs, store_all)?;
        drop(view);
        let mut check = vec![0u8; MIB as usize];
        t.read_at(&file, &mut check, plan.big - MIB)?;
        if check[..] != source[(plan.big - MIB) as usize..] {
            return Err("pread does not show the bytes stored through the view".into());
        }
        Ok(time)
    })();
    drop(file);
    if let Err(e) = t.remove("dax-big") {
        progress(&format!("ferrodax: could not remove /dax-big: {e}"));
    }
    (map, store)
}

/// Runs the DAX map and store measurements on a pool of their own (so the big file is one
/// extent), all of its free space pre-faulted (see [`warm_up_all_free_space`]).
fn run_dax_views(plan: &Plan) -> (Result<MapCost, String>, Result<Vec<Duration>, String>) {
    let pool_size = plan.big + 512 * MIB;
    progress(&format!("ferrodax: DAX views, memfd pool of {}", size_text(pool_size)));
    let t = match Pool::memfd(pool_size).and_then(|pool| Fs::format(&pool)) {
        Ok(fs) => FerrodaxTarget { fs },
        Err(e) => {
            let e = format!("could not make the pool: {e}");
            return (Err(e.clone()), Err(e));
        }
    };
    let t = &t;
    let mut pattern = Pattern::new();
    progress("ferrodax: warming up all of the DAX pool's free space");
    if let Err(e) = warm_up_all_free_space(t, &mut pattern) {
        progress(&format!("ferrodax: DAX pool warm-up failed ({e}); measuring anyway"));
    }
    progress(&format!("ferrodax: DAX map of a {} file, and stores through it", size_text(plan.big)));
    dax_map_and_store(t, plan, &mut pattern)
}

/// A memfd pool for the rows measured in rounds on ferrodax, all of its free space (but
/// [`WARM_UP_SLACK`]) pre-faulted (see [`warm_up_all_free_space`]).
fn rounds_pool(size: u64) -> Result<FerrodaxTarget, String> {
    progress(&format!("ferrodax: memfd pool of {} for the rows measured in rounds", size_text(size)));
    let fs = Pool::memfd(size)
        .and_then(|pool| Fs::format(&pool))
        .map_err(|e| format!("could not make the pool: {e}"))?;
    let t = FerrodaxTarget { fs };
    progress("ferrodax: warming up all of the pool's free space");
    if let Err(e) = warm_up_all_free_space(&t, &mut Pattern::new()) {
        progress(&format!("ferrodax: warm-up failed ({e}); measuring anyway"));
    }
    Ok(t)
}

/// The memfd pool of the rows measured in rounds in a full (or quick) run: room for the dedupe's
/// source and one destination, the sources of the CoW rows and one clone's copies, and 256 MiB to
/// spare.
fn rounds_pool_size(plan: &Plan) -> u64 {
    2 * plan.big + 4 * plan.cow_file + 256 * MIB
}

// ----- memory failure: owner lookup and notification -----

/// The memory-failure measurements.
struct MemfailSuite {
    /// Fs::owners of a page shared by MEMFAIL_FLAT_SHARERS files, pool of MEMFAIL_SMALL_EXTENTS.
    flat_small: Result<Vec<Duration>, String>,
    /// The same lookup in the pool of `plan.memfail_extents` extents, and the extents counted.
    flat_big: Result<(Vec<Duration>, u64), String>,
    /// Fs::owners of a page shared by `plan.memfail_reflinks` files in the big pool.
    wide_owners: Result<Vec<Duration>, String>,
    /// Fs::memory_failure of such a page (owners, views unmapped, poison recorded) until every
    /// view's early subscriber got its notice, for MEMFAIL_FAILURES fresh pages; one per entry of
    /// MEMFAIL_VIEWS.
    wide_failure: Vec<Result<WideFailureTimes, String>>,
}

/// The timed memory failures of one entry of MEMFAIL_VIEWS.
#[derive(Default)]
struct WideFailureTimes {
    /// From the call to the last early notice delivered.
    notified: Vec<Duration>,
    /// From the call to its return with the report (every owner named).
    returned: Vec<Duration>,
    /// View pages the report named (each failure).
    view_pages: usize,
}

/// A pool of about `extents` extents: `filler` single-block extents (4 KiB pwrites at every other
/// block of one sparse file, so no two of them merge), plus what the caller adds.
fn memfail_pool(filler: u64, extra_blocks: u64) -> Result<(Pool, Fs), String> {
    let size = (filler + extra_blocks) * BLOCK + 64 * MIB + filler * 64;
    let pool = Pool::memfd(size).map_err(|e| format!("memfd pool of {}: {e}", size_text(size)))?;
    let fs = Fs::format(&pool).map_err(|e| format!("mkfs: {e}"))?;
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    let file = fs.open("/filler", &options).map_err(|e| format!("create /filler: {e}"))?;
    let block = [0x5au8; BLOCK as usize];
    let start = Instant::now();
    for i in 0..filler {
        file.write_at(&block, 2 * i * BLOCK).map_err(|e| format!("filler write {i}: {e}"))?;
        if (i + 1) % 250_000 == 0 {
            progress(&format!(
                "memory failure: {} filler extents written ({:.1} s)",
                thousands(i + 1),
                start.elapsed().as_secs_f64()
            ));
        }
    }
    Ok((pool, fs))
}

/// Writes a `blocks`-block source and reflinks all of it into `sharers` new files; returns the
/// source's pool blocks and the files (the source first).
fn shared_group(fs: &Fs, name: &str, blocks: u64, sharers: u64) -> Result<(Vec<u64>, Vec<File>), String> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    let source = fs.open(&format!("/{name}"), &options).map_err(|e| format!("create /{name}: {e}"))?;
    source.write_at(&vec![0xa5; (blocks * BLOCK) as usize], 0).map_err(|e| format!("write /{name}: {e}"))?;
    let mut files = vec![source];
    for i in 0..sharers {
        let f = fs.open(&format!("/{name}-{i}"), &options).map_err(|e| format!("create clone: {e}"))?;
        fs.reflink(&files[0], 0, &f, 0, 0).map_err(|e| format!("reflink: {e}"))?;
        files.push(f);
    }
    let mut phys = Vec::new();
    for e in fs.fiemap(&files[0]).map_err(|e| format!("fiemap: {e}"))? {
        phys.extend((0..e.length / BLOCK).map(|b| e.physical / BLOCK + b));
    }
    Ok((phys, files))
}

/// Timed owner lookups of one block, checking the owner count: MEMFAIL_LOOKUP_RUNS runs, spread
/// over the rounds when in them.
struct OwnerLookups<'f> {
    fs: &'f Fs,
    block: u64,
    expected: usize,
    times: Vec<Duration>,
}

impl OwnerLookups<'_> {
    /// One timed Fs::owners of the block.
    fn run_once(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let owners = black_box(self.fs.owners(self.block * BLOCK, BLOCK));
        let time = start.elapsed();
        if owners.len() != self.expected {
            return Err(format!(
                "owners of block {}: {} found, {} expected",
                self.block,
                owners.len(),
                self.expected
            ));
        }
        self.times.push(time);
        Ok(())
    }
}

impl rounds::Interleaved for OwnerLookups<'_> {
    fn run_round(&mut self, round: usize, rounds: usize) -> Result<(), String> {
        (0..rounds::runs_in_round(MEMFAIL_LOOKUP_RUNS, rounds, round)).try_for_each(|_| self.run_once())
    }
}

/// Times Fs::owners of `block` (MEMFAIL_LOOKUP_RUNS times back to back), checking the owner count.
fn time_owners(fs: &Fs, block: u64, expected: usize) -> Result<Vec<Duration>, String> {
    let mut lookups = OwnerLookups { fs, block, expected, times: Vec::new() };
    (0..MEMFAIL_LOOKUP_RUNS).try_for_each(|_| lookups.run_once())?;
    Ok(lookups.times)
}

/// What the early subscribers of the memory-failure rows were told: the notices about the page
/// that is failing now, and any other notice (which fails the row).
#[derive(Default)]
struct NoticeCount {
    /// Pool offset of the page that is failing now.
    failing: AtomicU64,
    /// Action-optional notices about that page since [`NoticeCount::expect`].
    delivered: AtomicUsize,
    /// Notices about anything else, or of another kind.
    unexpected: AtomicUsize,
    /// When the last notice about that page was delivered.
    last_delivered: Mutex<Option<Instant>>,
}

impl NoticeCount {
    /// Starts counting the notices about the page at `pool_offset`.
    fn expect(&self, pool_offset: u64) {
        self.failing.store(pool_offset, Ordering::SeqCst);
        self.delivered.store(0, Ordering::SeqCst);
        *self.last_delivered.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A subscriber's callback.
    fn note(&self, notice: &Notice) {
        if notice.kind == NoticeKind::ActionOptional
            && notice.pool_offset == self.failing.load(Ordering::SeqCst)
        {
            let now = Instant::now();
            *self.last_delivered.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
            self.delivered.fetch_add(1, Ordering::SeqCst);
        } else {
            self.unexpected.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits until `views` notices about the failing page were delivered (a direct mount delivers
    /// them before memory_failure returns; waiting covers any front end that does not); returns
    /// the time from `start` to the last delivery.
    fn wait_for(&self, views: usize, start: Instant) -> Result<Duration, String> {
        while self.delivered.load(Ordering::SeqCst) < views {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "{} of {views} early notices after 10 s",
                    self.delivered.load(Ordering::SeqCst)
                ));
            }
            std::hint::spin_loop();
        }
        match self.unexpected.load(Ordering::SeqCst) {
            0 => {
                let last = *self.last_delivered.lock().unwrap_or_else(|e| e.into_inner());
                Ok(last.map_or(Duration::ZERO, |t| t.duration_since(start)))
            }
            n => Err(format!("{n} notices about another page or of another kind")),
        }
    }
}

/// The big pool of the memory-failure rows: `plan.memfail_extents` filler extents, a page shared
/// by MEMFAIL_FLAT_SHARERS + 1 files, and the widely shared source (MEMFAIL_FAILURES blocks per
/// entry of MEMFAIL_VIEWS) with its `plan.memfail_reflinks` clones.
struct MemfailBig {
    _pool: Pool,
    fs: Fs,
    flat_phys: Vec<u64>,
    _flat_files: Vec<File>,
    /// The pool blocks of the widely shared source.
    wide_phys: Vec<u64>,
    /// The widely shared source, then its clones.
    wide_files: Vec<File>,
    extents: u64,
}

impl MemfailBig {
    /// Writes the filler extents and the two shared groups.
    fn build(plan: &Plan) -> Result<MemfailBig, String> {
        let (pool, fs) = memfail_pool(plan.memfail_extents, plan.memfail_reflinks * 2 + 1024)?;
        let (flat_phys, flat_files) = shared_group(&fs, "flat", 1, MEMFAIL_FLAT_SHARERS)?;
        let (wide_phys, wide_files) =
            shared_group(&fs, "wide", MEMFAIL_FAILURES * MEMFAIL_VIEWS.len() as u64, plan.memfail_reflinks)?;
        let extents = fs.stats().extents;
        Ok(MemfailBig { _pool: pool, fs, flat_phys, _flat_files: flat_files, wide_phys, wide_files, extents })
    }
}

/// The views of the widely shared page's sharers (each with an early subscriber counting its
/// notices), and the timed memory failures through them.
struct WideViews<'m> {
    big: &'m MemfailBig,
    views: Vec<ferrodax::api::Mapping>,
    notices: Arc<NoticeCount>,
}

impl<'m> WideViews<'m> {
    /// No views yet.
    fn new(big: &'m MemfailBig) -> WideViews<'m> {
        WideViews { big, views: Vec::new(), notices: Arc::new(NoticeCount::default()) }
    }

    /// Maps read-only views of further sharers, each with an early subscriber, until `n` exist.
    fn view_sharers(&mut self, n: usize) -> Result<(), String> {
        let len = self.big.wide_phys.len() as u64 * BLOCK;
        for f in &self.big.wide_files[self.views.len()..n] {
            let view = f.map(0, len, MapAccess::Read).map_err(|e| format!("map: {e}"))?;
            let count = Arc::clone(&self.notices);
            view.subscribe(true, Arc::new(move |notice: &Notice| count.note(notice)));
            self.views.push(view);
        }
        Ok(())
    }

    /// One timed memory failure of the fresh `block`: until every view's notice is delivered, and
    /// until memory_failure returned; checks the report.
    fn fail(&self, block: u64, times: &mut WideFailureTimes) -> Result<(), String> {
        let sharers = self.big.wide_files.len();
        let views = self.views.len();
        self.notices.expect(block * BLOCK);
        let start = Instant::now();
        let report = self
            .big
            .fs
            .memory_failure(block * BLOCK, BLOCK, ferrodax::memfail::FailureFlags::default())
            .map_err(|e| format!("memory_failure: {e}"))?;
        let returned = start.elapsed();
        let notified = self.notices.wait_for(views, start)?;
        if report.files.len() != sharers || report.views.len() != views {
            return Err(format!(
                "memory failure of block {block}: {} owners and {} views, {sharers} and {views} expected",
                report.files.len(),
                report.views.len(),
            ));
        }
        if let Some(hit) = report.views.iter().find(|h| h.how != Told::ActionOptionalNotice) {
            return Err(format!("a view page was told {:?}, not by an early notice", hit.how));
        }
        if let Some(unnamed) = report.files.iter().find(|o| o.path.is_none()) {
            return Err(format!("owner ino {} has no path in the report", unnamed.ino));
        }
        times.notified.push(notified);
        times.returned.push(returned);
        times.view_pages = report.views.len();
        Ok(())
    }
}

/// One memory-failure row: its views (`nviews` sharers viewed) and its fresh blocks, one timed
/// failure each, spread over the rounds when in them.
struct FailureRuns<'w, 'm> {
    wide: &'w mut WideViews<'m>,
    blocks: &'m [u64],
    times: WideFailureTimes,
}

impl<'w, 'm> FailureRuns<'w, 'm> {
    /// Views sharers until `nviews` are viewed; the row's failures will be those of `blocks`.
    fn set_up(wide: &'w mut WideViews<'m>, nviews: usize, blocks: &'m [u64]) -> Result<Self, String> {
        wide.view_sharers(nviews)?;
        Ok(FailureRuns { wide, blocks, times: WideFailureTimes::default() })
    }

    /// The row's next failure: its next fresh block.
    fn run_once(&mut self) -> Result<(), String> {
        let block = self.blocks[self.times.notified.len()];
        self.wide.fail(block, &mut self.times)
    }

    /// Every failure's times (the views stay, for the next row).
    fn finish(self) -> Result<WideFailureTimes, String> {
        Ok(self.times)
    }
}

impl rounds::Interleaved for FailureRuns<'_, '_> {
    fn run_round(&mut self, round: usize, rounds: usize) -> Result<(), String> {
        (0..rounds::runs_in_round(self.blocks.len(), rounds, round)).try_for_each(|_| self.run_once())
    }
}

/// The memory-failure rows. The owner lookup alone and the failures with the first entry of
/// MEMFAIL_VIEWS run in `rounds` rounds together with `others` (the memory-failure groups first in
/// each round); the flatness lookups run back to back before the rounds, the failures with more
/// views back to back after them. `others` get their rounds even when the big pool cannot be made.
fn memfail_suite(plan: &Plan, rounds: usize, others: &mut [&mut dyn Slot]) -> MemfailSuite {
    progress(&format!(
        "memory failure: owner lookup in a pool of {} extents, page shared by {} files",
        thousands(MEMFAIL_SMALL_EXTENTS),
        MEMFAIL_FLAT_SHARERS + 1
    ));
    let flat_small = (|| {
        let filler = MEMFAIL_SMALL_EXTENTS - MEMFAIL_FLAT_SHARERS - 1;
        let (_pool, fs) = memfail_pool(filler, 1024)?;
        let (phys, _files) = shared_group(&fs, "flat", 1, MEMFAIL_FLAT_SHARERS)?;
        let extents = fs.check().extents;
        if extents != MEMFAIL_SMALL_EXTENTS {
            return Err(format!("the small pool holds {extents} extents, not {MEMFAIL_SMALL_EXTENTS}"));
        }
        time_owners(&fs, phys[0], (MEMFAIL_FLAT_SHARERS + 1) as usize)
    })();
    progress(&format!(
        "memory failure: building a pool of {} extents with a page shared by {} files",
        thousands(plan.memfail_extents),
        thousands(plan.memfail_reflinks + 1)
    ));
    let big = MemfailBig::build(plan);
    let big = match &big {
        Ok(big) => big,
        Err(e) => {
            rounds::run_rounds("rounds", rounds, others);
            return MemfailSuite {
                flat_small,
                flat_big: Err(e.clone()),
                wide_owners: Err(e.clone()),
                wide_failure: MEMFAIL_VIEWS.iter().map(|_| Err(e.clone())).collect(),
            };
        }
    };
    let flat_expected = (MEMFAIL_FLAT_SHARERS + 1) as usize;
    let flat_big = time_owners(&big.fs, big.flat_phys[0], flat_expected).map(|t| (t, big.extents));
    let sharers = big.wide_files.len();
    let mut wide_owners = Group::new(Ok(OwnerLookups {
        fs: &big.fs,
        block: big.wide_phys[0],
        expected: sharers,
        times: Vec::new(),
    }));
    let mut wide = WideViews::new(big);
    let per_row = MEMFAIL_FAILURES as usize;
    let mut wide_failure = Vec::new();
    {
        let mut first =
            Group::new(FailureRuns::set_up(&mut wide, MEMFAIL_VIEWS[0] as usize, &big.wide_phys[..per_row]));
        let mut slots: Vec<&mut dyn Slot> = vec![&mut wide_owners, &mut first];
        for slot in others.iter_mut() {
            slots.push(&mut **slot);
        }
        rounds::run_rounds("rounds", rounds, &mut slots);
        drop(slots);
        wide_failure.push(first.finish(FailureRuns::finish));
    }
    for (row, &nviews) in MEMFAIL_VIEWS.iter().enumerate().skip(1) {
        progress(&format!("memory failure: {nviews} views, {} failures", MEMFAIL_FAILURES));
        let blocks = &big.wide_phys[row * per_row..][..per_row];
        wide_failure.push(FailureRuns::set_up(&mut wide, nviews as usize, blocks).and_then(
            |mut failures| {
                (0..per_row).try_for_each(|_| failures.run_once())?;
                failures.finish()
            },
        ));
    }
    drop(wide);
    MemfailSuite { flat_small, flat_big, wide_owners: wide_owners.finish(|l| Ok(l.times)), wide_failure }
}

fn memfail_rows(plan: &Plan, m: &MemfailSuite) -> Vec<Row> {
    let mut rows = Vec::new();
    let extents = thousands(plan.memfail_extents);
    let sharers = thousands(plan.memfail_reflinks);
    for (&nviews, result) in MEMFAIL_VIEWS.iter().zip(&m.wide_failure) {
        let mut r = Row::new(
            format!(
                "memory failure: owners + unmap/notify {nviews} views (each an early subscriber, until every \
                 notice is delivered) + record, page shared by {sharers} reflinks, pool of {extents} extents"
            ),
            "ms",
        )
        .on_pool(MEMFD);
        if nviews == MEMFAIL_VIEWS[0] {
            r.target = format!("<= {MEMFAIL_TARGET_MS} ms");
        }
        rows.push(match result {
            Ok(WideFailureTimes { notified, returned, view_pages }) => {
                let mut r = r.measured(&Samples::of_times(notified, ms));
                let back = Samples::of_times(returned, ms).spread();
                r.comparison = format!(
                    "{} fresh pages, {view_pages} view pages and notices each; memory_failure returned \
                     (the report, every owner named) after {} ms (median {}, worst {})",
                    notified.len(),
                    num(back.best),
                    num(back.median),
                    num(back.worst)
                );
                if nviews == MEMFAIL_VIEWS[0] {
                    r.judge(r.best.is_some_and(|best| best <= MEMFAIL_TARGET_MS));
                }
                r
            }
            Err(e) => r.failed(e),
        });
    }
    let mut r = Row::new(
        format!(
            "owner lookup alone (Fs::owners), page shared by {sharers} reflinks, pool of {extents} extents"
        ),
        "ms",
    )
    .on_pool(MEMFD);
    r.target = format!("<= {MEMFAIL_TARGET_MS} ms");
    rows.push(match &m.wide_owners {
        Ok(times) => {
            let mut r = r.measured(&Samples::of_times(times, ms));
            r.judge(ms(shortest(times)) <= MEMFAIL_TARGET_MS);
            r
        }
        Err(e) => r.failed(e),
    });
    let r = Row::new(
        format!(
            "owner lookup, page shared by {} files, pool of {} extents",
            MEMFAIL_FLAT_SHARERS + 1,
            thousands(MEMFAIL_SMALL_EXTENTS)
        ),
        "us",
    )
    .on_pool(MEMFD);
    rows.push(match &m.flat_small {
        Ok(times) => r.measured(&Samples::of_times(times, us)),
        Err(e) => r.failed(e),
    });
    let mut r = Row::new(
        format!("owner lookup, page shared by {} files, pool of {extents} extents", MEMFAIL_FLAT_SHARERS + 1),
        "us",
    )
    .on_pool(MEMFD);
    r.target = "flat: <= 2x the small pool".into();
    rows.push(match (&m.flat_big, &m.flat_small) {
        (Ok((times, counted)), small) => {
            let mut r = r.measured(&Samples::of_times(times, us));
            r.benchmark += &format!(" ({} counted)", thousands(*counted));
            if let Ok(small) = small {
                let small_us = us(shortest(small));
                r.compare(
                    format!("{} extents: {} us", thousands(MEMFAIL_SMALL_EXTENTS), num(small_us)),
                    small_us,
                );
                r.judge(r.ratio.is_some_and(|x| x <= 2.0));
            }
            r
        }
        (Err(e), _) => r.failed(e),
    });
    rows
}

// ----- ferrodax-only and machine measurements -----

/// memcpy and memcmp bandwidth in GB/s (every run).
struct Baselines {
    /// `plan.big` bytes copied in 1 MiB chunks into a destination of the same size (what a
    /// pwrite into a file does to the pool).
    memcpy: Samples,
    /// The same source copied in 1 MiB chunks into one reused 1 MiB buffer (what the pread row
    /// does to its buffer).
    memcpy_reused: Samples,
    memcmp: Samples,
}

fn machine_baselines(plan: &Plan) -> Baselines {
    let len = plan.big as usize;
    let mut pattern = Pattern::new();
    let mut src = vec![0u8; len];
    for (i, chunk) in src.chunks_mut(MIB as usize).enumerate() {
        chunk.copy_from_slice(&pattern.chunk(i as u64)[..chunk.len()]);
    }
    let mut dst = vec![1u8; len]; // written, so its pages exist before timing
    let rate = |d: Duration| gb_per_s(plan.big, d);
    let memcpy = time_runs(plan.runs, || {
        let start = Instant::now();
        for (d, s) in dst.chunks_mut(MIB as usize).zip(src.chunks(MIB as usize)) {
            d.copy_from_slice(black_box(s));
        }
        black_box(&mut dst);
        Ok(start.elapsed())
    })
    .expect("memcpy cannot fail");
    let mut equal = true;
    let memcmp = time_runs(plan.runs, || {
        let start = Instant::now();
        equal &= black_box(black_box(&src[..]) == black_box(&dst[..]));
        Ok(start.elapsed())
    })
    .expect("memcmp cannot fail");
    assert!(equal, "the copied buffer differs from its source");
    drop(dst);
    let mut reused = vec![1u8; MIB as usize];
    let memcpy_reused = time_runs(plan.runs, || {
        let start = Instant::now();
        for s in src.chunks(MIB as usize) {
            reused[..s.len()].copy_from_slice(black_box(s));
            black_box(&mut reused);
        }
        Ok(start.elapsed())
    })
    .expect("memcpy cannot fail");
    drop(src);
    Baselines {
        memcpy: Samples::of_rates(&memcpy, rate),
        memcpy_reused: Samples::of_rates(&memcpy_reused, rate),
        memcmp: Samples::of_rates(&memcmp, rate),
    }
}

/// Mount time of a pool holding `plan.mount_files` empty files in 16 directories.
fn mount_time(plan: &Plan) -> Result<(Vec<Duration>, u64), String> {
    let pool = Pool::memfd(plan.mount_pool_size).map_err(|e| format!("memfd pool: {e}"))?;
    let fs = Fs::format(&pool).map_err(|e| format!("mkfs: {e}"))?;
    const DIRS: u64 = 16;
    for d in 0..DIRS {
        fs.create_dir(&format!("/d{d:x}")).map_err(|e| format!("mkdir: {e}"))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let start = Instant::now();
    for i in 0..plan.mount_files {
        let path = format!("/d{:x}/{i:x}", i % DIRS);
        drop(fs.open(&path, &options).map_err(|e| format!("create {path}: {e}"))?);
        if (i + 1) % 25_000 == 0 {
            progress(&format!(
                "mount: {} files created ({:.1} s)",
                thousands(i + 1),
                start.elapsed().as_secs_f64()
            ));
        }
    }
    let inodes = fs.stats().inodes;
    drop(fs);
    let mut seen = 0;
    let times = time_runs(plan.runs, || {
        let start = Instant::now();
        let fs = Fs::mount(&pool).map_err(|e| format!("mount: {e}"))?;
        let time = start.elapsed();
        seen = fs.stats().inodes;
        Ok(time)
    })?;
    if seen != inodes {
        return Err(format!("mount found {seen} inodes, {inodes} were made"));
    }
    Ok((times, seen))
}

// ----- the table -----

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Pass,
    Miss,
    Info,
    Error,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "-",
            Verdict::Error => "ERROR",
        }
    }
}

/// Which way a row's numbers improve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Better {
    /// Times: the smallest run is the best.
    Lower,
    /// Rates: the largest run is the best.
    Higher,
}

/// Per-run values of one measurement, in the unit of its row.
#[derive(Debug, Clone)]
struct Samples {
    values: Vec<f64>,
    better: Better,
}

impl Samples {
    /// Empty samples of a time (lower is better).
    fn times() -> Samples {
        Samples { values: Vec::new(), better: Better::Lower }
    }

    /// Empty samples of a rate (higher is better).
    fn rates() -> Samples {
        Samples { values: Vec::new(), better: Better::Higher }
    }

    /// Every run's time converted to the row's unit by `unit` (a time: lower is better).
    fn of_times(runs: &[Duration], unit: impl Fn(Duration) -> f64) -> Samples {
        Samples { values: runs.iter().map(|&d| unit(d)).collect(), better: Better::Lower }
    }

    /// Every run's time converted to a rate by `rate` (higher is better).
    fn of_rates(runs: &[Duration], rate: impl Fn(Duration) -> f64) -> Samples {
        Samples { values: runs.iter().map(|&d| rate(d)).collect(), better: Better::Higher }
    }

    /// Best, median and worst (in the direction of `better`); all NaN with no runs.
    fn spread(&self) -> Spread {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        if self.better == Better::Higher {
            sorted.reverse();
        }
        let n = sorted.len();
        if n == 0 {
            return Spread { best: f64::NAN, median: f64::NAN, worst: f64::NAN, runs: 0 };
        }
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Spread { best: sorted[0], median, worst: sorted[n - 1], runs: n }
    }

    fn best(&self) -> f64 {
        self.spread().best
    }
}

/// Runs `measure` `runs` times and keeps every time.
fn time_runs(
    runs: usize,
    mut measure: impl FnMut() -> Result<Duration, String>,
) -> Result<Vec<Duration>, String> {
    (0..runs).map(|_| measure()).collect()
}

/// The shortest of some times.
fn shortest(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or(Duration::MAX)
}

/// One line of the table, and one object of the JSON's `rows` (see docs/BENCH.md: every field is
/// always present, `null` where it does not apply).
#[derive(Debug, serde::Serialize)]
struct Row {
    /// The row's name; its start stays the same from run to run (scripts match it).
    benchmark: String,
    unit: &'static str,
    /// Which way the numbers improve: "lower" (times) or "higher" (rates).
    better: Better,
    /// The best run (the same as `best`).
    result: Option<f64>,
    best: Option<f64>,
    median: Option<f64>,
    worst: Option<f64>,
    /// How many runs the three numbers above come from.
    runs: usize,
    /// Where the row ran: "memfd", "file on /dev/shm", "file on disk (DIR)", or null.
    pool: Option<String>,
    /// What the row is compared with, in words ("-": nothing).
    comparison: String,
    /// The comparison's number in the row's unit (its best run, measured in the same run), or a
    /// limit such as the disk's own fsync rate.
    baseline: Option<f64>,
    /// `best / baseline`.
    ratio: Option<f64>,
    /// The goal in words ("-": none).
    target: String,
    verdict: Verdict,
    xfs: String,
    error: Option<String>,
}

/// Best, median and worst of a row's runs, in the row's unit.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Spread {
    best: f64,
    median: f64,
    worst: f64,
    runs: usize,
}

impl Row {
    fn new(benchmark: String, unit: &'static str) -> Row {
        Row {
            benchmark,
            unit,
            better: Better::Lower,
            result: None,
            best: None,
            median: None,
            worst: None,
            runs: 0,
            pool: None,
            comparison: "-".into(),
            baseline: None,
            ratio: None,
            target: "-".into(),
            verdict: Verdict::Info,
            xfs: "-".into(),
            error: None,
        }
    }

    /// The row's numbers: best (also `result`), median and worst of `samples`.
    fn measured(mut self, samples: &Samples) -> Row {
        let s = samples.spread();
        if s.runs == 0 {
            return self.failed("no runs");
        }
        self.better = samples.better;
        self.result = Some(s.best);
        self.best = Some(s.best);
        self.median = Some(s.median);
        self.worst = Some(s.worst);
        self.runs = s.runs;
        self
    }

    /// Compares the row's best with `baseline` (in the row's unit): sets the ratio.
    fn compare(&mut self, what: String, baseline: f64) {
        self.comparison = what;
        self.baseline = Some(baseline);
        self.ratio = self.result.map(|best| best / baseline);
    }

    /// PASS when `pass`, MISS otherwise.
    fn judge(&mut self, pass: bool) {
        self.verdict = if pass { Verdict::Pass } else { Verdict::Miss };
    }

    fn on_pool(mut self, pool: &str) -> Row {
        self.pool = Some(pool.to_string());
        self
    }

    fn failed(mut self, error: &str) -> Row {
        self.verdict = Verdict::Error;
        self.error = Some(error.to_string());
        self
    }
}

/// A number with about three significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else if a == 0.0 || !a.is_finite() {
        format!("{v}")
    } else {
        // Three significant digits without an exponent: 0.000862.
        let decimals = (-a.log10()).ceil() as usize + 2;
        format!("{v:.decimals$}")
    }
}

/// The XFS cell for one measurement.
fn xfs_cell<M>(
    xfs: &Result<Suite, String>,
    pick: impl Fn(&Suite) -> &Result<M, String>,
    show: impl Fn(&M) -> String,
) -> String {
    match xfs {
        Err(why) => format!("n/a ({why})"),
        Ok(suite) => match pick(suite) {
            Ok(m) => show(m),
            Err(e) => format!("error: {e}"),
        },
    }
}

fn extents_note(extents: Option<u64>) -> String {
    match extents {
        Some(1) => String::new(),
        Some(n) => format!(" (source had {n} extents)"),
        None => String::new(),
    }
}

/// The XFS cell of a time measurement: best, then the median.
fn xfs_times(times: &[Duration], unit: impl Fn(Duration) -> f64, unit_name: &str) -> String {
    let s = Samples::of_times(times, unit).spread();
    format!("{} {unit_name} (median {})", num(s.best), num(s.median))
}

/// The XFS cell of a rate measurement: best, then the median.
fn xfs_rates(times: &[Duration], rate: impl Fn(Duration) -> f64, unit_name: &str) -> String {
    let s = Samples::of_rates(times, rate).spread();
    format!("{} {unit_name} (median {})", num(s.best), num(s.median))
}

fn build_rows(
    plan: &Plan,
    base: &Baselines,
    ours: &Suite,
    dax: &DaxSuite,
    mount: &Result<(Vec<Duration>, u64), String>,
    xfs: &Result<Suite, String>,
) -> Vec<Row> {
    let big = size_text(plan.big);
    let rate = |d: Duration| gb_per_s(plan.big, d);
    let memcpy = base.memcpy.best();
    let mut rows = Vec::new();

    let mut r = Row::new(format!("memcpy bandwidth ({big} in 1 MiB chunks)"), "GB/s").measured(&base.memcpy);
    r.comparison = "machine baseline".into();
    rows.push(r);
    let mut r =
        Row::new(format!("memcpy bandwidth ({big} in 1 MiB chunks into one reused 1 MiB buffer)"), "GB/s")
            .measured(&base.memcpy_reused);
    r.comparison = "machine baseline (the pread row's)".into();
    rows.push(r);
    let mut r =
        Row::new(format!("memcmp bandwidth (two equal {big} buffers)"), "GB/s").measured(&base.memcmp);
    r.comparison = "machine baseline".into();
    rows.push(r);

    // Reflink of one big extent: compared with copying the bytes instead.
    let r = Row::new(format!("reflink {big} single-extent file"), "ms").on_pool(MEMFD);
    rows.push(match &ours.reflink_single {
        Ok(m) => {
            let copy_ms = plan.big as f64 / (memcpy * 1e9) * 1e3;
            let mut r = r.measured(&Samples::of_times(&m.times, ms));
            r.benchmark += &extents_note(m.source_extents);
            r.compare(format!("memcpy of {big}: {} ms", num(copy_ms)), copy_ms);
            r
        }
        Err(e) => r.failed(e),
    });
    rows.last_mut().expect("pushed").xfs =
        xfs_cell(xfs, |s| &s.reflink_single, |m| xfs_times(&m.times, ms, "ms"));

    let extents = plan.fragmented_blocks / 2;
    let mut r = Row::new(format!("reflink {}-extent file", thousands(extents)), "ms").on_pool(MEMFD);
    r.target = format!("<= {FRAGMENTED_REFLINK_TARGET_MS} ms");
    rows.push(match &ours.reflink_fragmented {
        Ok(m) => {
            let mut r = r.measured(&Samples::of_times(&m.times, ms));
            r.benchmark += &match m.source_extents {
                Some(n) if n != extents => format!(" (source had {n} extents)"),
                _ => String::new(),
            };
            let best = shortest(&m.times);
            r.comparison = format!("{} us per extent", num(us(best) / extents as f64));
            r.judge(ms(best) <= FRAGMENTED_REFLINK_TARGET_MS);
            r
        }
        Err(e) => r.failed(e),
    });
    rows.last_mut().expect("pushed").xfs =
        xfs_cell(xfs, |s| &s.reflink_fragmented, |m| xfs_times(&m.times, ms, "ms"));

    let mut r = Row::new(format!("dedupe {big} identical ranges"), "GB/s").on_pool(MEMFD);
    r.target = format!(">= {DEDUPE_TARGET_RATIO}x memcmp");
    rows.push(match &ours.dedupe {
        Ok(m) => {
            let mut r = r.measured(&Samples::of_rates(&m.dedupe, rate));
            let memcmp = Samples::of_rates(&m.memcmp, rate);
            let heap = format!(
                "memcmp of two {big} heap buffers, one right before each dedupe: {} GB/s (median {})",
                num(memcmp.best()),
                num(memcmp.spread().median)
            );
            if m.in_place.is_empty() {
                r.compare(heap, memcmp.best());
            } else {
                // Whichever memcmp was faster: the baseline is never below either.
                let in_place = Samples::of_rates(&m.in_place, rate);
                r.compare(
                    format!(
                        "the faster of: memcmp of the same two pool ranges in place (read-only views), \
                         right before each heap memcmp: {} GB/s (median {}); {heap}",
                        num(in_place.best()),
                        num(in_place.spread().median)
                    ),
                    in_place.best().max(memcmp.best()),
                );
            }
            r.judge(r.ratio.is_some_and(|x| x >= DEDUPE_TARGET_RATIO));
            r
        }
        Err(e) => r.failed(e),
    });
    rows.last_mut().expect("pushed").xfs = xfs_cell(
        xfs,
        |s| &s.dedupe,
        |m| {
            let memcmp = Samples::of_rates(&m.memcmp, rate).best();
            format!("{} (memcmp beside it {} GB/s)", xfs_rates(&m.dedupe, rate, "GB/s"), num(memcmp))
        },
    );

    rows.extend(cow_pwrite_rows(plan, Some(memcpy), &ours.cow_random, &ours.cow_sequential, Some(xfs)));

    for (what, pick, baseline, baseline_name) in [
        (
            "pwrite",
            (|s: &Sequential| &s.write) as fn(&Sequential) -> &Vec<Duration>,
            &base.memcpy,
            "memcpy into a destination of the same size",
        ),
        ("pread", |s: &Sequential| &s.read, &base.memcpy_reused, "memcpy into a reused 1 MiB buffer"),
    ] {
        let blocks = if what == "pwrite" { ", private blocks" } else { " into a reused 1 MiB buffer" };
        let mut r = Row::new(format!("1 MiB sequential {what} over {big}{blocks}"), "GB/s").on_pool(MEMFD);
        r.target = format!(">= {SEQUENTIAL_TARGET_RATIO}x memcpy");
        rows.push(match &ours.sequential {
            Ok(m) => {
                let mut r = r.measured(&Samples::of_rates(pick(m), rate));
                r.compare(format!("{baseline_name} {} GB/s", num(baseline.best())), baseline.best());
                r.judge(r.ratio.is_some_and(|x| x >= SEQUENTIAL_TARGET_RATIO));
                r
            }
            Err(e) => r.failed(e),
        });
        rows.last_mut().expect("pushed").xfs = xfs_cell(
            xfs,
            |s| &s.sequential,
            |m| {
                let suffix = if what == "pwrite" { " incl. final fsync" } else { " (page cache)" };
                format!("{}{suffix}", xfs_rates(pick(m), rate, "GB/s"))
            },
        );
    }

    let r =
        Row::new(format!("mount of a pool with {} files", thousands(plan.mount_files)), "ms").on_pool(MEMFD);
    rows.push(match mount {
        Ok((times, inodes)) => {
            let mut r = r.measured(&Samples::of_times(times, ms));
            r.comparison = format!(
                "{} us per inode ({} inodes)",
                num(us(shortest(times)) / *inodes as f64),
                thousands(*inodes)
            );
            r
        }
        Err(e) => r.failed(e),
    });
    rows.extend(dax_rows(plan, base, dax));
    rows
}

/// The 4 KiB copy-on-write pwrite rows on a memfd pool (random and sequential order): compared
/// with a 4 KiB memcpy when the memcpy bandwidth (GB/s, best run) was measured, and with XFS when
/// it ran (`None`: not part of this bench run).
fn cow_pwrite_rows(
    plan: &Plan,
    memcpy: Option<f64>,
    random: &Result<CowTime, String>,
    sequential: &Result<CowTime, String>,
    xfs: Option<&Result<Suite, String>>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (order, result, pick) in [
        ("random", random, (|s: &Suite| &s.cow_random) as fn(&Suite) -> &Result<CowTime, String>),
        ("sequential", sequential, |s: &Suite| &s.cow_sequential),
    ] {
        let mut r = Row::new(
            format!("4 KiB CoW pwrite, shared {} clone, {order} order", size_text(plan.cow_file)),
            "us/op",
        )
        .on_pool(MEMFD);
        r.target = format!("<= {COW_TARGET_US} us/op");
        rows.push(match result {
            Ok(m) => {
                let mut r = r.measured(&Samples::of_times(&m.total, |d| us(d) / m.ops as f64));
                if let Some(memcpy) = memcpy {
                    let memcpy_4k_us = BLOCK as f64 / (memcpy * 1e9) * 1e6;
                    r.compare(format!("memcpy of 4 KiB: {} us", num(memcpy_4k_us)), memcpy_4k_us);
                }
                r.judge(r.best.is_some_and(|best| best <= COW_TARGET_US));
                r
            }
            Err(e) => r.failed(e),
        });
        if let Some(xfs) = xfs {
            rows.last_mut().expect("pushed").xfs = xfs_cell(xfs, pick, |m| {
                let per = |d: Duration| us(d) / m.ops as f64;
                format!(
                    "{} with final fsync ({} us/op without)",
                    xfs_times(&m.total, per, "us/op"),
                    num(Samples::of_times(&m.writes, per).best())
                )
            });
        }
    }
    rows
}

/// Microseconds per page of every bare fault run, and of every copy-on-write fault run.
fn fault_samples(faults: &FaultTimes) -> (Samples, Samples) {
    let per_page = |d: Duration| us(d) / faults.pages as f64;
    (Samples::of_times(&faults.bare, per_page), Samples::of_times(&faults.cow, per_page))
}

/// The bare store fault row and the DAX copy-on-write store fault row compared with it.
fn fault_rows(plan: &Plan, cow_fault: &Result<FaultTimes, String>) -> Vec<Row> {
    let mut rows = Vec::new();
    let r = Row::new("bare store fault: SIGSEGV + mprotect of a private anonymous page".into(), "us/page");
    rows.push(match cow_fault {
        Ok(faults) => {
            let mut r = r.measured(&fault_samples(faults).0);
            r.comparison = format!(
                "machine baseline ({} pages, each run right before a CoW fault run)",
                thousands(faults.pages)
            );
            r
        }
        Err(e) => r.failed(e),
    });

    let mut r = Row::new(
        format!("DAX CoW store fault, shared {} clone, one plain store per page", size_text(plan.cow_file)),
        "us/page",
    )
    .on_pool(MEMFD);
    r.target = format!("<= {DAX_FAULT_TARGET_RATIO}x bare fault");
    rows.push(match cow_fault {
        Ok(faults) => {
            let (bare, cow) = fault_samples(faults);
            let mut r = r.measured(&cow);
            r.compare(format!("bare fault {} us", num(bare.best())), bare.best());
            r.judge(r.ratio.is_some_and(|x| x <= DAX_FAULT_TARGET_RATIO));
            r
        }
        Err(e) => r.failed(e),
    });
    rows
}

/// The DAX view rows: the bare fault baseline, the copy-on-write fault, the map, the stores.
fn dax_rows(plan: &Plan, base: &Baselines, dax: &DaxSuite) -> Vec<Row> {
    let mut rows = fault_rows(plan, &dax.cow_fault);

    let r = Row::new(format!("DAX map of a {} file (File::map, read-write)", size_text(plan.big)), "ms")
        .on_pool(MEMFD);
    rows.push(match &dax.map {
        Ok(m) => {
            let mut r = r.measured(&Samples::of_times(&m.times, ms));
            r.benchmark += &match m.extents {
                Some(1) => " single-extent".to_string(),
                Some(n) => format!(" ({n} extents)"),
                None => String::new(),
            };
            r.comparison = match m.kernel_mappings {
                Some(n) => format!("{n} kernel mapping(s) in the view"),
                None => "-".into(),
            };
            r
        }
        Err(e) => r.failed(e),
    });

    let big = size_text(plan.big);
    let mut r =
        Row::new(format!("stores through a private DAX view, {big} in 1 MiB chunks"), "GB/s").on_pool(MEMFD);
    r.target = format!(">= {DAX_STORE_TARGET_RATIO}x memcpy");
    rows.push(match &dax.store {
        Ok(times) => {
            let mut r = r.measured(&Samples::of_rates(times, |d| gb_per_s(plan.big, d)));
            r.compare(format!("memcpy {} GB/s", num(base.memcpy.best())), base.memcpy.best());
            r.judge(r.ratio.is_some_and(|x| x >= DAX_STORE_TARGET_RATIO));
            r
        }
        Err(e) => r.failed(e),
    });
    rows
}

/// Prints the rows, two lines each so the table fits a terminal of 100 columns: the benchmark's
/// name, then its numbers (best, median / worst, unit), what it is compared with and the ratio,
/// the target and the verdict, and the kernel's XFS where it was measured. A legend says what the
/// verdicts mean.
fn print_table(header: &[String], rows: &[Row]) {
    for h in header {
        println!("{h}");
    }
    println!();
    for r in rows {
        let result = r.best.map_or_else(|| "error".into(), num);
        let spread = match (r.median, r.worst) {
            (Some(median), Some(worst)) if r.runs > 1 => {
                format!(" (median {}, worst {}; {} runs)", num(median), num(worst), r.runs)
            }
            _ => String::new(),
        };
        let ratio = r.ratio.map_or_else(String::new, |x| format!(" = {}x", num(x)));
        println!("{}", r.benchmark);
        let mut detail = format!("    {result} {}{spread}", r.unit);
        if !r.comparison.is_empty() && r.comparison != "-" {
            detail.push_str(&format!("; vs {}{ratio}", r.comparison));
        }
        if !r.target.is_empty() && r.target != "-" {
            detail.push_str(&format!("; target {}: {}", r.target, r.verdict.text()));
        }
        println!("{detail}");
        if !r.xfs.is_empty() && r.xfs != "-" {
            println!("    XFS (loop on /dev/shm): {}", r.xfs);
        }
    }
    println!();
    println!(
        "Verdicts: PASS = the ratio (or number) meets the row's target; MISS = it does not: a goal not reached yet; \
         ERROR = the row could not be measured \
         (the reason follows). Each row: the best run, then the median and the worst; ratios and verdicts \
         compare best runs measured in this same run."
    );
    for r in rows {
        if let Some(e) = &r.error {
            println!("error in {:?}: {e}", r.benchmark);
        }
    }
}

fn main() {
    ferrodax_hostkit::closed_pipe::end_quietly_on_closed_pipe();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(scale::ROLE) {
        // The scale rows' mounting process.
        std::process::exit(scale::run_role(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some(server::ROLE) {
        // One of the pool-server rows' helper processes (the server, an echo, a view client).
        std::process::exit(server::run_role(&args[2..]));
    }
    std::process::exit(run(BenchArgs::parse()));
}

/// The FUSE rows' system calls on a scratch XFS of their own (for `--fuse-only`).
fn xfs_dir_suite(plan: &Plan) -> Result<fuse::DirSuite, String> {
    progress("XFS: setting up a loop mount on /dev/shm");
    let scratch = XfsScratch::set_up("bench-xfs", plan.xfs_image_size)?;
    progress("XFS: the FUSE rows' system calls");
    Ok(fuse::dir_suite(scratch.mountpoint(), plan, &|| Ok(())))
}

/// Runs of each measurement in `--cow-only` mode.
const COW_ONLY_RUNS: usize = 7;
/// The memfd pool of `--cow-only` mode.
const COW_ONLY_POOL: u64 = 2 * GIB;

/// `--cow-only`: on one memfd pool of its own the DAX CoW store fault with its bare fault and the
/// 4 KiB CoW pwrite rows, [`COW_ONLY_RUNS`] runs each in as many rounds (the rows of the full run,
/// by the same names, without the memcpy and XFS comparisons).
fn cow_only_rows(plan: &Plan) -> Vec<Row> {
    let plan = &Plan { runs: COW_ONLY_RUNS, ..Plan::new(plan.quick, plan.smoke) };
    let (cow_fault, random, sequential) = match rounds_pool(COW_ONLY_POOL) {
        Ok(t) => {
            let t = &t;
            progress(&format!(
                "ferrodax: setting up the DAX CoW store fault and 4 KiB CoW pwrite into a shared {} file",
                size_text(plan.cow_file)
            ));
            let mut fault = Group::new(FaultRuns::set_up(t, plan.cow_file));
            let mut random = Group::new(CowRuns::set_up(t, plan.cow_file, Order::Random));
            let mut sequential = Group::new(CowRuns::set_up(t, plan.cow_file, Order::Sequential));
            rounds::run_rounds(
                "copy-on-write rows",
                plan.runs,
                &mut [&mut fault, &mut random, &mut sequential],
            );
            (
                fault.finish(FaultRuns::finish),
                random.finish(CowRuns::finish),
                sequential.finish(CowRuns::finish),
            )
        }
        Err(e) => (Err(e.clone()), Err(e.clone()), Err(e)),
    };
    let mut rows = fault_rows(plan, &cow_fault);
    rows.extend(cow_pwrite_rows(plan, None, &random, &sequential, None));
    rows
}

/// The version of the JSON document's layout (docs/BENCH.md); raised when a field changes
/// meaning or goes away, never for a new row or a new field.
const JSON_SCHEMA: &str = "ferrodax-bench/2";

/// Prints the rows as a table, or as the JSON document of docs/BENCH.md; returns the exit status
/// (1 when a row could not be measured).
fn emit(
    args: &BenchArgs,
    plan: &Plan,
    part: &str,
    header: &[String],
    baselines: serde_json::Value,
    rows: &[Row],
) -> i32 {
    if args.json {
        let doc = serde_json::json!({
            "schema": JSON_SCHEMA,
            "mode": plan.mode(),
            "part": part,
            "flush_instruction": ferrodax::pool::flush_instruction_name(),
            "baselines": baselines,
            "notes": header,
            "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("plain data serialises"));
    } else {
        print_table(header, rows);
    }
    i32::from(rows.iter().any(|r| r.verdict == Verdict::Error))
}

/// Runs the benchmarks and prints the table; returns the exit status.
fn run(args: BenchArgs) -> i32 {
    let plan = Plan::new(args.quick, args.smoke);
    let mode = plan.mode_text();
    if args.memory_failure_only {
        let rows = memfail_rows(&plan, &memfail_suite(&plan, plan.runs, &mut []));
        let header = vec![format!("ferrodax bench, {mode}, memory-failure rows only"), memfail_note(&plan)];
        return emit(&args, &plan, "memory-failure", &header, serde_json::Value::Null, &rows);
    }
    if args.server_only {
        let suite = server::server_suite(&plan);
        let rows = server::server_rows(&suite);
        let header =
            vec![format!("ferrodax bench, {mode}, pool-server rows only"), server::server_note(&suite)];
        return emit(&args, &plan, "server", &header, serde_json::Value::Null, &rows);
    }
    if args.fuse_only {
        let fused = fuse::fuse_suite(&plan);
        let xfs_dir = xfs_dir_suite(&plan);
        let rows = fuse::fuse_rows(&plan, &fused, &xfs_dir);
        let header = vec![format!("ferrodax bench, {mode}, FUSE rows only"), fuse::fuse_note()];
        return emit(&args, &plan, "fuse", &header, serde_json::Value::Null, &rows);
    }
    if args.scale_only {
        let suite = scale::scale_suite(&plan);
        let rows = scale::scale_rows(&suite);
        let header = vec![format!("ferrodax bench, {mode}, scale rows only"), scale::scale_note(&suite)];
        return emit(&args, &plan, "scale", &header, serde_json::Value::Null, &rows);
    }
    if args.threads_only {
        let rows = threads::thread_rows(&threads::thread_suite(&plan));
        let header = vec![format!("ferrodax bench, {mode}, thread rows only"), threads::thread_note()];
        return emit(&args, &plan, "threads", &header, serde_json::Value::Null, &rows);
    }
    if args.cow_only {
        let rows = cow_only_rows(&plan);
        let header = vec![
            format!("ferrodax bench, {mode}, copy-on-write rows only"),
            format!(
                "{COW_ONLY_RUNS} runs of each row, in {COW_ONLY_RUNS} rounds (each round: a bare fault run right \
                 before a CoW fault run, while no view exists, then one run of each CoW pwrite row, random then \
                 sequential): the best, then the median and the worst; memfd pool of {}, all but {} of its free \
                 space pre-faulted",
                size_text(COW_ONLY_POOL),
                size_text(WARM_UP_SLACK),
            ),
            format!("DAX rows: plain stores (Mapping::store_plain); {COW_FAULT_NOTE}"),
        ];
        return emit(&args, &plan, "cow", &header, serde_json::Value::Null, &rows);
    }
    let flush = ferrodax::pool::flush_instruction_name();
    let started = Instant::now();

    progress(&format!("machine baselines: memcpy and memcmp over {}", size_text(plan.big)));
    let base = machine_baselines(&plan);
    progress(&format!("memcpy {} GB/s, memcmp {} GB/s", num(base.memcpy.best()), num(base.memcmp.best())));

    progress(&format!("ferrodax: memfd pool of {}", size_text(plan.pool_size)));
    let back_to_back = match Pool::memfd(plan.pool_size).and_then(|pool| Fs::format(&pool)) {
        Ok(fs) => run_back_to_back(&FerrodaxTarget { fs }, &plan, "ferrodax"),
        Err(e) => BackToBack::failed(&format!("could not make the pool: {e}")),
    }; // the pool is dropped here

    let kinds: Vec<pools::KindSuite> =
        [pools::Place::Memfd, pools::Place::Shm, pools::disk_place(args.disk_dir.as_deref())]
            .into_iter()
            .map(|place| pools::kind_suite(place, &plan))
            .collect();

    let threaded = threads::thread_suite(&plan);

    let (map, store) = run_dax_views(&plan);

    progress(&format!("ferrodax: creating {} files for the mount benchmark", thousands(plan.mount_files)));
    let mount = mount_time(&plan);

    // The rows measured in rounds: their setups on a pool of their own, then the memory-failure
    // rows' pools, then the rounds (memory failure's groups first in each).
    let (ours, cow_fault, memfail) = match rounds_pool(rounds_pool_size(&plan)) {
        Ok(t) => {
            let t = &t;
            let mut fault = Group::new(FaultRuns::set_up(t, plan.cow_file));
            let mut data = DataGroups::set_up(t, &plan, "ferrodax");
            let memfail = {
                let [dedupe, random, sequential] = data.slots();
                memfail_suite(&plan, plan.runs, &mut [&mut fault, dedupe, random, sequential])
            };
            (data.finish(back_to_back), fault.finish(FaultRuns::finish), memfail)
        }
        Err(e) => {
            let memfail = memfail_suite(&plan, plan.runs, &mut []);
            let failed = Suite {
                sequential: back_to_back.sequential,
                reflink_single: back_to_back.reflink_single,
                reflink_fragmented: back_to_back.reflink_fragmented,
                dedupe: Err(e.clone()),
                cow_random: Err(e.clone()),
                cow_sequential: Err(e.clone()),
            };
            (failed, Err(e), memfail)
        }
    }; // the pool is dropped here
    let dax = DaxSuite { cow_fault, map, store };

    let served = (!plan.smoke).then(|| server::server_suite(&plan));

    let fused = if plan.smoke { Err("not in smoke mode".to_string()) } else { fuse::fuse_suite(&plan) };

    let (xfs, xfs_dir) = if plan.smoke {
        (Err("not in smoke mode".to_string()), Err("not in smoke mode".to_string()))
    } else {
        progress("XFS: setting up a loop mount on /dev/shm");
        match XfsScratch::set_up("bench-xfs", plan.xfs_image_size) {
            Ok(scratch) => {
                progress(&format!(
                    "XFS: mounted {} on {}",
                    scratch.image().display(),
                    scratch.mountpoint().display()
                ));
                progress("XFS: the FUSE rows' system calls");
                let dir = fuse::dir_suite(scratch.mountpoint(), &plan, &|| Ok(()));
                let target = XfsTarget { scratch };
                (Ok(xfs_suite(&target, &plan)), Ok(dir))
                // `target` drops here: unmount and delete.
            }
            Err(why) => (Err(why.clone()), Err(why)),
        }
    };
    if let Err(why) = &xfs {
        progress(&format!("XFS comparison skipped: {why}"));
    }

    let mut rows = build_rows(&plan, &base, &ours, &dax, &mount, &xfs);
    rows.extend(pools::kind_rows(&kinds, &base.memcpy));
    rows.extend(threads::thread_rows(&threaded));
    rows.extend(memfail_rows(&plan, &memfail));
    if let Some(served) = &served {
        rows.extend(server::server_rows(served));
    }
    if !plan.smoke {
        rows.extend(fuse::fuse_rows(&plan, &fused, &xfs_dir));
    }
    let mut header = vec![
        format!(
            "ferrodax bench, {mode}: memfd pool of {}, cache-flush persistence ({flush} + sfence), flush instruction: {flush}",
            size_text(plan.pool_size)
        ),
        format!(
            "{} runs of each row ({} for reflink): the best, then the median and the worst; free space pre-faulted; \
             GB/s = 10^9 bytes/s; ratio = best / the comparison's best, both measured in this run; total {:.0} s",
            plan.runs,
            plan.reflink_runs,
            started.elapsed().as_secs_f64()
        ),
        "memcpy baselines: pwrite rows compare with a memcpy into a destination of the same size as its source, \
         pread with a memcpy into one reused 1 MiB buffer, as pread's own; dedupe with a memcmp of two heap buffers \
         of its size run right before each dedupe"
            .to_string(),
        pools::kinds_note(&kinds),
        threads::thread_note(),
        rounds_note(&plan),
        format!(
            "DAX rows: plain stores (Mapping::store_plain); the map and store rows on views of a memfd pool of their \
             own (all but {} of its free space pre-faulted), the CoW fault row in the rounds; {COW_FAULT_NOTE}; the \
             bare fault (SIGSEGV, mprotect one page RW, return) is measured right before each run of the CoW fault, \
             while no view of its pool exists (the memory-failure row's read-only views of another pool exist, \
             untouched)",
            size_text(WARM_UP_SLACK)
        ),
        memfail_note(&plan),
    ];
    if let Some(served) = &served {
        header.push(
            "XFS: mkfs.xfs -m reflink=1,rmapbt=1 on a 4 GiB loop device over /dev/shm, buffered I/O through the \
             page cache (not DAX); reflink/dedupe timed as the ioctl alone (no fsync); pwrite rows end with one fsync"
                .to_string(),
        );
        header.push(server::server_note(served));
        header.push(fuse::fuse_note());
    } else {
        header.push("smoke mode: no XFS, pool-server or FUSE rows".to_string());
    }
    let baselines = serde_json::json!({
        "memcpy_gb_per_s": base.memcpy.best(),
        "memcpy_reused_buffer_gb_per_s": base.memcpy_reused.best(),
        "memcmp_gb_per_s": base.memcmp.best(),
        "bare_store_fault_us": dax.cow_fault.as_ref().ok().map(|f| fault_samples(f).0.best()),
    });
    emit(&args, &plan, "all", &header, baselines, &rows)
}

/// The table's note about the rows measured in rounds (a full or quick run).
fn rounds_note(plan: &Plan) -> String {
    format!(
        "rounds: the rows the speed check reads run interleaved, {} rounds, each round in this order: {} owner \
         lookups alone (page shared by {} reflinks), {} memory failure(s) with {} views, one bare fault run then one \
         DAX CoW store fault run, one dedupe run (after its in-place and heap memcmps), one 4 KiB CoW pwrite run in \
         random then one in sequential order; so a slow period of the machine covers one round, not all runs of a \
         row; setups are made once before the rounds (a run that consumes its file makes a fresh one the same \
         way); dedupe, CoW pwrite and CoW fault on a memfd pool of {} of their own, all but {} of its free space \
         pre-faulted; XFS's dedupe and CoW pwrite rows run in rounds of their own",
        plan.runs,
        per_round_text(MEMFAIL_LOOKUP_RUNS, plan.runs),
        thousands(plan.memfail_reflinks),
        per_round_text(MEMFAIL_FAILURES as usize, plan.runs),
        MEMFAIL_VIEWS[0],
        size_text(rounds_pool_size(plan)),
        size_text(WARM_UP_SLACK)
    )
}

/// "10" (50 runs over 5 rounds), or "16-17" when they do not divide evenly.
fn per_round_text(total: usize, rounds: usize) -> String {
    let (least, most) =
        (rounds::runs_in_round(total, rounds, rounds - 1), rounds::runs_in_round(total, rounds, 0));
    if least == most {
        most.to_string()
    } else {
        format!("{least}-{most}")
    }
}

/// What the DAX copy-on-write store fault row measures, for the table's header.
const COW_FAULT_NOTE: &str =
    "a CoW store fault copies the page and commits, and the page turns writable (the \
     clone keeps its block and the source, shown by no view, takes the copy)";

/// The table's note about the memory-failure rows.
fn memfail_note(plan: &Plan) -> String {
    format!(
        "memory-failure rows: memfd pools of their own; the big pool holds {} single-block extents (4 KiB pwrites \
         at every other block of one file) plus the shared groups; every timed failure is a fresh page; every view \
         has an early subscriber (a callback that counts its notice), and the time runs until every notice is \
         delivered; the owner lookup alone and the failures with {} views run in {} rounds ({} lookups then {} \
         failure(s) a round; in a full run with the other rows of the rounds), the flatness lookups back to back \
         before them, the failures with {} views back to back after them{}",
        thousands(plan.memfail_extents),
        MEMFAIL_VIEWS[0],
        plan.runs,
        per_round_text(MEMFAIL_LOOKUP_RUNS, plan.runs),
        per_round_text(MEMFAIL_FAILURES as usize, plan.runs),
        MEMFAIL_VIEWS[1],
        if plan.quick { "; QUICK mode: fewer extents and reflinks than the 1,000,000 / 10,000 of the target" } else { "" }
    )
}
