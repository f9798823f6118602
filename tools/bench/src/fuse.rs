//! The FUSE rows: ordinary system calls on a pool mounted through FUSE (`ferrodax::fuse`)
//! against the same calls on the run's XFS scratch mount (buffered I/O), measured the same way.
//!
//! Owns the mount of these rows (a memfd pool of its own, mounted in this process on a fresh
//! directory under /dev/shm, its FUSE threads answering while this thread makes the calls), the
//! procedures (1 MiB sequential pwrite + fsync and pread of a fresh open; 10,000 × create, write
//! 4 KiB, close) and the rows. Must never leave the mount or its directory behind (the guard
//! unmounts and removes on every path), or reach below the public library API. No `unsafe`.

use crate::{num, progress, size_text, Plan, Row, Samples, BLOCK, MIB};
use ferrodax::fuse::FuseMount;
use ferrodax::{Fs, Pool};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Target: 1 MiB sequential pwrite and pread through the mount reach this fraction of XFS's.
const SEQUENTIAL_TARGET_RATIO: f64 = 0.5;
/// Target: creating, writing 4 KiB into and closing many files reaches this fraction of XFS's rate.
const SMALL_FILES_TARGET_RATIO: f64 = 0.3;
/// Files of the small-file row.
const SMALL_FILES: usize = 10_000;
/// Target: `cp --reflink=auto` of the sequential rows' file through the mount takes at most this.
const REFLINK_COPY_TARGET_MS: f64 = 10.0;
/// The copy the reflink row makes (checked and removed after its last run).
const REFLINK_COPY_NAME: &str = "reflink-copy";

/// What one directory (the FUSE mount, or XFS) measured: every run's time.
pub struct DirSuite {
    write: Result<Vec<Duration>, String>,
    read: Result<Vec<Duration>, String>,
    small_files: Result<Vec<Duration>, String>,
    /// `cp --reflink=auto` of the sequential file (a whole process, as a user runs it).
    reflink_copy: Result<Vec<Duration>, String>,
    /// Whether the last copy shares every block with its source (the FUSE side checks through
    /// the library; XFS is not asked), or why not; `None` when no copy was made.
    copy_shares: Option<Result<(), String>>,
    /// FUSE only: pread of files written through the library beside the mount, so none of their
    /// pages is in the kernel's cache: every byte crosses FUSE (no XFS counterpart).
    uncached_read: Option<Result<Vec<Duration>, String>>,
}

/// Bytes of the sequential rows.
fn sequential_bytes(plan: &Plan) -> u64 {
    if plan.quick {
        256 * MIB
    } else {
        crate::GIB
    }
}

fn chunk(index: u64) -> Vec<u8> {
    (0..MIB).map(|i| (i as u8) ^ (index as u8).wrapping_mul(31)).collect()
}

/// Every run's time of `measure` (given the run's number).
fn all_runs(
    runs: usize,
    mut measure: impl FnMut(usize) -> Result<Duration, String>,
) -> Result<Vec<Duration>, String> {
    (0..runs).map(&mut measure).collect()
}

/// The measurements in the directory `dir` (a mount point); `check_copy` is asked about the
/// reflink row's last copy while its source still exists.
pub fn dir_suite(dir: &Path, plan: &Plan, check_copy: &dyn Fn() -> Result<(), String>) -> DirSuite {
    let bytes = sequential_bytes(plan);
    let path = dir.join("sequential");
    let chunks: Vec<Vec<u8>> = (0..4).map(chunk).collect();
    let write_all = || -> Result<Duration, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let start = Instant::now();
        for (i, offset) in (0..bytes).step_by(MIB as usize).enumerate() {
            file.write_all_at(&chunks[i % 4], offset).map_err(|e| format!("pwrite: {e}"))?;
        }
        file.sync_all().map_err(|e| format!("fsync: {e}"))?;
        Ok(start.elapsed())
    };
    // The first pass makes the file; the timed ones overwrite it.
    let write = write_all().and_then(|_| all_runs(plan.runs, |_| write_all()));
    let read = write.as_ref().map_err(Clone::clone).and_then(|_| {
        let mut buf = vec![0u8; MIB as usize];
        let time = all_runs(plan.runs, |_| {
            // A fresh open, as a program reading the file would make.
            let file = std::fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
            let start = Instant::now();
            for offset in (0..bytes).step_by(MIB as usize) {
                file.read_exact_at(&mut buf, offset).map_err(|e| format!("pread: {e}"))?;
                black_box(&mut buf);
            }
            Ok(start.elapsed())
        })?;
        let file = std::fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
        file.read_exact_at(&mut buf, bytes - MIB).map_err(|e| format!("pread: {e}"))?;
        if buf != chunks[((bytes / MIB - 1) % 4) as usize] {
            return Err("pread returned the wrong bytes".into());
        }
        Ok(time)
    });
    let reflink_copy = write.as_ref().map_err(Clone::clone).and_then(|_| {
        let copy = dir.join(REFLINK_COPY_NAME);
        all_runs(plan.runs, |_| {
            let _ = std::fs::remove_file(&copy);
            let start = Instant::now();
            let status = std::process::Command::new("cp")
                .arg("--reflink=auto")
                .arg(&path)
                .arg(&copy)
                .status()
                .map_err(|e| format!("cp: {e}"))?;
            let time = start.elapsed();
            if !status.success() {
                return Err(format!("cp --reflink=auto failed: {status}"));
            }
            Ok(time)
        })
    });
    let copy_shares = reflink_copy.as_ref().ok().map(|_| check_copy());
    let _ = std::fs::remove_file(dir.join(REFLINK_COPY_NAME));
    let _ = std::fs::remove_file(&path);
    let small_files = all_runs(plan.runs, |run| {
        let sub = dir.join(format!("small-{run}"));
        std::fs::create_dir(&sub).map_err(|e| format!("mkdir {}: {e}", sub.display()))?;
        let data = [0x5au8; 4096];
        let start = Instant::now();
        for i in 0..SMALL_FILES {
            let mut f =
                std::fs::File::create(sub.join(format!("f{i}"))).map_err(|e| format!("create: {e}"))?;
            f.write_all(&data).map_err(|e| format!("write: {e}"))?;
        }
        let time = start.elapsed();
        std::fs::remove_dir_all(&sub).map_err(|e| format!("rm -r {}: {e}", sub.display()))?;
        Ok(time)
    });
    DirSuite { write, read, small_files, reflink_copy, copy_shares, uncached_read: None }
}

/// A memfd pool mounted through FUSE in this process on a fresh directory under /dev/shm;
/// unmounted and the directory removed when dropped.
struct BenchMount {
    mount: Option<FuseMount>,
    dir: PathBuf,
}

impl Drop for BenchMount {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take() {
            let _ = mount.unmount(|| {});
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The FUSE side of the rows, or why it could not be measured.
pub fn fuse_suite(plan: &Plan) -> Result<DirSuite, String> {
    let pool_size = sequential_bytes(plan) + 512 * MIB;
    progress(&format!("FUSE: mounting a memfd pool of {} on /dev/shm", size_text(pool_size)));
    let fs = Pool::memfd(pool_size).and_then(|pool| Fs::format(&pool)).map_err(|e| format!("pool: {e}"))?;
    warm_up(&fs, pool_size - 128 * MIB)?;
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("ferrodax-bench-fuse-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let mut guard = BenchMount { mount: None, dir: dir.clone() };
    guard.mount = Some(
        FuseMount::mount(fs.clone(), &dir, "ferrodax-bench", ferrodax::fuse::DEFAULT_FUSE_THREADS)
            .map_err(|e| format!("{e}"))?,
    );
    progress("FUSE: sequential 1 MiB pwrite/pread and 10,000 small files through the mount");
    let mut suite = dir_suite(&dir, plan, &|| copy_shares_every_block(&fs));
    suite.uncached_read = Some(uncached_read(&fs, &dir, plan));
    Ok(suite)
}

/// Whether `/<REFLINK_COPY_NAME>` shares every block with `/sequential` (both extent lists
/// marked shared and mapping the same pool blocks), asked through the library.
fn copy_shares_every_block(fs: &Fs) -> Result<(), String> {
    let read = ferrodax::OpenOptions::new().read(true).clone();
    let map = |path: &str| -> Result<Vec<ferrodax::fs::FiemapExtent>, String> {
        let file = fs.open(path, &read).map_err(|e| format!("{path}: {e}"))?;
        fs.fiemap(&file).map_err(|e| format!("fiemap {path}: {e}"))
    };
    let (source, copy) = (map("/sequential")?, map(&format!("/{REFLINK_COPY_NAME}"))?);
    let blocks = |m: &[ferrodax::fs::FiemapExtent]| -> Vec<(u64, u64)> {
        m.iter().map(|e| (e.physical, e.length)).collect()
    };
    if copy.is_empty() || blocks(&source) != blocks(&copy) || !copy.iter().all(|e| e.shared) {
        return Err(format!(
            "cp --reflink=auto through the mount did not share the blocks ({} extents, {} shared)",
            copy.len(),
            copy.iter().filter(|e| e.shared).count()
        ));
    }
    Ok(())
}

/// Writes `bytes` through the library and deletes them again, so no timed write pays for the
/// first touch of a memfd page (writes go to new blocks: copy-on-write), as the other rows' pools.
fn warm_up(fs: &Fs, bytes: u64) -> Result<(), String> {
    let mut options = ferrodax::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    let file = fs.open("/warm-up", &options).map_err(|e| format!("warm-up: {e}"))?;
    let data = chunk(0);
    for offset in (0..bytes).step_by(MIB as usize) {
        file.write_at(&data, offset).map_err(|e| format!("warm-up: {e}"))?;
    }
    drop(file);
    fs.remove_file("/warm-up").map_err(|e| format!("warm-up: {e}"))
}

/// 1 MiB preads through the mount of a file written through the library (`fs`), a new file for
/// every run: the kernel has cached none of its pages.
fn uncached_read(fs: &Fs, dir: &Path, plan: &Plan) -> Result<Vec<Duration>, String> {
    let bytes = sequential_bytes(plan);
    let mut options = ferrodax::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    let data = chunk(7);
    let mut buf = vec![0u8; MIB as usize];
    all_runs(plan.runs, |run| {
        let name = format!("uncached-{run}");
        let file = fs.open(&format!("/{name}"), &options).map_err(|e| format!("create /{name}: {e}"))?;
        for offset in (0..bytes).step_by(MIB as usize) {
            file.write_at(&data, offset).map_err(|e| format!("write /{name}: {e}"))?;
        }
        drop(file);
        let host = std::fs::File::open(dir.join(&name)).map_err(|e| format!("open {name}: {e}"))?;
        let start = Instant::now();
        for offset in (0..bytes).step_by(MIB as usize) {
            host.read_exact_at(&mut buf, offset).map_err(|e| format!("pread: {e}"))?;
            black_box(&mut buf);
        }
        let time = start.elapsed();
        if buf != data {
            return Err("pread returned the wrong bytes".into());
        }
        drop(host);
        fs.remove_file(&format!("/{name}")).map_err(|e| format!("rm /{name}: {e}"))?;
        // The kernel closes the mount's handle of the file (FUSE RELEASE) after close(2) returns,
        // and only that last close frees an unlinked file's blocks: wait for them, or the next
        // run's file finds the pool full.
        let wanted = bytes / BLOCK;
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs.stats().usable_blocks < wanted {
            if Instant::now() > deadline {
                return Err(format!("/{name}'s blocks were not freed within 10 s of its removal"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(time)
    })
}

fn ratio_row(
    r: Row,
    ours: &Result<DirSuite, String>,
    xfs: &Result<DirSuite, String>,
    pick: impl Fn(&DirSuite) -> &Result<Vec<Duration>, String>,
    rate: impl Fn(Duration) -> f64,
    target: f64,
) -> Row {
    let mut r = match ours.as_ref().map(&pick) {
        Ok(Ok(times)) => r.measured(&Samples::of_rates(times, &rate)),
        Ok(Err(e)) | Err(e) => return r.failed(e),
    };
    r.target = format!(">= {target}x XFS");
    match xfs.as_ref().map(&pick) {
        Ok(Ok(times)) => {
            let theirs = Samples::of_rates(times, &rate).spread();
            r.compare(format!("XFS {} {}", num(theirs.best), r.unit), theirs.best);
            r.judge(r.ratio.is_some_and(|x| x >= target));
            r.xfs = format!("{} {} (median {})", num(theirs.best), r.unit, num(theirs.median));
        }
        Ok(Err(e)) | Err(e) => {
            r.comparison = format!("XFS not measured ({e})");
            r.xfs = format!("n/a ({e})");
        }
    }
    r
}

/// The rows: FUSE against XFS.
pub fn fuse_rows(plan: &Plan, ours: &Result<DirSuite, String>, xfs: &Result<DirSuite, String>) -> Vec<Row> {
    let bytes = sequential_bytes(plan);
    let gbps = move |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    let files_per_s = |t: Duration| SMALL_FILES as f64 / t.as_secs_f64();
    let big = size_text(bytes);
    vec![
        ratio_row(
            Row::new(
                format!("FUSE mount: 1 MiB sequential pwrite over {big} + fsync (page cache, no DAX)"),
                "GB/s",
            ),
            ours,
            xfs,
            |s| &s.write,
            gbps,
            SEQUENTIAL_TARGET_RATIO,
        ),
        ratio_row(
            Row::new(format!("FUSE mount: 1 MiB sequential pread over {big}, fresh open"), "GB/s"),
            ours,
            xfs,
            |s| &s.read,
            gbps,
            SEQUENTIAL_TARGET_RATIO,
        ),
        {
            let r = Row::new(
                format!("FUSE mount: 1 MiB sequential pread over {big}, none of it cached: every byte crosses FUSE (information)"),
                "GB/s",
            );
            match ours.as_ref().map(|s| &s.uncached_read) {
                Ok(Some(Ok(times))) => r.measured(&Samples::of_rates(times, gbps)),
                Ok(Some(Err(e))) | Err(e) => r.failed(e),
                Ok(None) => r.failed("not measured"),
            }
        },
        ratio_row(
            Row::new(
                format!(
                    "FUSE mount: create + write 4 KiB + close, {} files",
                    crate::thousands(SMALL_FILES as u64)
                ),
                "files/s",
            ),
            ours,
            xfs,
            |s| &s.small_files,
            files_per_s,
            SMALL_FILES_TARGET_RATIO,
        ),
        reflink_copy_row(&big, ours, xfs),
    ]
}

/// `cp --reflink=auto` through the mount (copy_file_range, which ferrodax answers with a reflink
/// of whole blocks): a whole process, at most [`REFLINK_COPY_TARGET_MS`], and the copy must share
/// every block with its source.
fn reflink_copy_row(big: &str, ours: &Result<DirSuite, String>, xfs: &Result<DirSuite, String>) -> Row {
    let ms = |t: Duration| t.as_secs_f64() * 1e3;
    let r = Row::new(format!("FUSE mount: cp --reflink=auto of a {big} file (a whole cp process)"), "ms");
    let mut r = match ours.as_ref().map(|s| (&s.reflink_copy, &s.copy_shares)) {
        Ok((Ok(times), Some(Ok(())))) => r.measured(&Samples::of_times(times, ms)),
        Ok((Ok(_), Some(Err(e)))) => return r.failed(e),
        Ok((Ok(_), None)) => return r.failed("the copy was not checked"),
        Ok((Err(e), _)) | Err(e) => return r.failed(e),
    };
    r.target = format!("<= {REFLINK_COPY_TARGET_MS} ms, blocks shared");
    r.judge(r.result.is_some_and(|best| best <= REFLINK_COPY_TARGET_MS));
    match xfs.as_ref().map(|s| &s.reflink_copy) {
        Ok(Ok(times)) => {
            let theirs = Samples::of_times(times, ms).spread();
            r.compare(format!("XFS {} ms (FICLONE)", num(theirs.best)), theirs.best);
            r.xfs = format!("{} ms (median {})", num(theirs.best), num(theirs.median));
        }
        Ok(Err(e)) | Err(e) => r.xfs = format!("n/a ({e})"),
    }
    r
}

/// The header line of the FUSE rows.
pub fn fuse_note() -> String {
    "FUSE rows: a memfd pool (free space pre-faulted) mounted through FUSE in the bench process (one thread answers requests, as ferrodax mount's default), the same \
     system calls as on XFS; writes go through the kernel's page cache to File::write_at (write-through), the \
     kernel keeps a file's cached pages across opens (dropped when its size or mtime changes), as XFS does"
        .to_string()
}
