//! DAX views under concurrency and at their edges.
//!
//! Guards: many threads storing into one shared page at the same instant make exactly one copy and
//! every store lands; stores into a clone's views never reach the source (and the other way round)
//! and block sharing drops exactly; views stay equal to the file while other threads pwrite,
//! reflink, dedupe, unshare and truncate it; a thread reading into shared view pages never
//! deadlocks, and a thread that breaks the lock rule dies with SIGSEGV instead of hanging; access
//! past EOF after a truncate is SIGBUS and a store into a read-only view is SIGSEGV (in child
//! processes); msync and fsync write stores made through views back to the pool file, and they
//! survive a remount, also after the page stopped being writable (shared, or unmapped); unlinking
//! the last name of a mapped file keeps it alive until the last view goes, then frees its blocks
//! and drops its page share entries; a store racing with a dedupe of its page never reaches the
//! other file, and one racing with a truncate that copies its page is never lost.
//!
//! Multi-threaded tests run under a 60-second deadline, so that a deadlock fails instead of hanging.
//!
//! Stores go through the raw pointer of a view, as an application's would: the library sees them
//! only through the faults they raise.

use ferrodax::api::Mapping;
use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, PageShare, PageState};
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool, ShareState};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Barrier;
use std::time::Duration;

const BS: usize = 4096;
/// How long a multi-threaded test may run before it counts as deadlocked.
const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Set in the environment of a child process: which fatal access it makes.
const CHILD_ROLE: &str = "FERRODAX_DAX_CHILD_ROLE";

// ----- helpers -----

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn memfd_fs(bytes: u64) -> Fs {
    Fs::format(&Pool::memfd(bytes).expect("memfd pool")).expect("format")
}

fn create(fs: &Fs, path: &str) -> File {
    fs.open(path, &rw()).unwrap_or_else(|e| panic!("create {path}: {e}"))
}

/// A small deterministic generator (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, n)`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// `len` bytes of seeded noise.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    Rng(seed).bytes(len)
}

/// Stores `data` at byte `offset` of the view with plain memory stores, as an application would.
fn store(view: &Mapping, offset: usize, data: &[u8]) {
    assert!(offset + data.len() <= view.len(), "store outside the view");
    // SAFETY: the range lies inside the live view (asserted above), which stays mapped while
    // `view` is borrowed; the library resolves the faults such stores raise.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), view.as_ptr().add(offset), data.len()) };
}

/// Stores one byte at byte `offset` of the view with a single volatile store.
fn store_byte(view: &Mapping, offset: usize, byte: u8) {
    assert!(offset < view.len(), "store outside the view");
    // SAFETY: as in `store`.
    unsafe { view.as_ptr().add(offset).write_volatile(byte) };
}

/// The view's bytes at `offset` (a load through the view).
fn view_bytes(view: &Mapping, offset: usize, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    view.read_at(offset, &mut buf).expect("load through the view");
    buf
}

/// The whole file, read with pread.
fn file_bytes(file: &File) -> Vec<u8> {
    let size = file.metadata().expect("fstat").size as usize;
    let mut buf = vec![0u8; size];
    assert_eq!(file.read_at(&mut buf, 0).expect("pread"), size, "short read");
    buf
}

/// Asserts two byte strings are equal, naming the first difference instead of printing them.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: bytes differ: lengths {} and {}, first difference at {at:?}{}",
            got.len(),
            want.len(),
            at.map(|i| format!(" ({:#04x} vs {:#04x})", got[i], want[i])).unwrap_or_default()
        );
    }
}

#[track_caller]
fn assert_clean(fs: &Fs) {
    let report = fs.check();
    assert!(report.is_clean(), "check found problems:\n{report}");
}

/// The pool block a view page shows; panics on a hole or a page past EOF.
#[track_caller]
fn block_at(view: &Mapping, page: usize) -> (u64, PageProtection) {
    match view.page_state(page as u64) {
        PageState::Block { phys, prot } => (phys, prot),
        other => panic!("view page {page} shows {other:?}, not a block"),
    }
}

/// Bytes of the file's extents that FIEMAP flags as shared.
fn shared_bytes(fs: &Fs, file: &File) -> u64 {
    fs.fiemap(file).expect("fiemap").iter().filter(|e| e.shared).map(|e| e.length).sum()
}

/// The distinct pool blocks the files own, from FIEMAP.
fn data_blocks(fs: &Fs, files: &[&File]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for f in files {
        for e in fs.fiemap(f).expect("fiemap") {
            out.extend(e.physical / BS as u64..(e.physical + e.length) / BS as u64);
        }
    }
    out
}

/// Runs `work` on its own thread and fails the test if it has not finished after
/// [`DEADLOCK_TIMEOUT`] (a deadlock must fail the test, not hang it). Panics inside propagate.
fn within_deadline<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let out = work();
            let _ = done_tx.send(());
            out
        })
        .expect("spawn");
    match done_rx.recv_timeout(DEADLOCK_TIMEOUT) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => panic!("{what}: not finished after {DEADLOCK_TIMEOUT:?}: deadlock"),
    }
}

// ----- many threads, one shared page -----

#[test]
fn eight_threads_storing_into_one_shared_page_at_once_make_exactly_one_copy() {
    within_deadline("one shared page, eight threads", || {
        const PAGES: usize = 48;
        const THREADS: usize = 8;
        let fs = memfd_fs(16 << 20);
        let source = create(&fs, "/source");
        let data = noise(1, PAGES * BS);
        source.write_at(&data, 0).unwrap();
        let clone = create(&fs, "/clone");
        fs.reflink(&source, 0, &clone, 0, 0).unwrap();
        let source_view = source.map(0, (PAGES * BS) as u64, MapAccess::Read).unwrap();
        let clone_view = clone.map(0, (PAGES * BS) as u64, MapAccess::ReadWrite).unwrap();
        let mut expected_clone = data.clone();
        // One round per page: every thread stores to its own bytes of that page at the same instant.
        for page in 0..PAGES {
            let (old, prot) = block_at(&clone_view, page);
            assert_eq!(prot, PageProtection::ReadOnly, "a shared page must be mapped read-only");
            assert_eq!(fs.page_share(old), Some(PageShare::Shared { entries: 2 }));
            let free_before = fs.stats().free_blocks;
            let blocks_before = data_blocks(&fs, &[&source, &clone]).len();
            let barrier = Barrier::new(THREADS);
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let (barrier, view, data) = (&barrier, &clone_view, &data);
                    s.spawn(move || {
                        barrier.wait();
                        // Thread t owns bytes t, t + 8, t + 16, ... of the page; each gets the
                        // complement of the source's byte, so a lost store is always visible.
                        for at in (page * BS + t..(page + 1) * BS).step_by(THREADS) {
                            store_byte(view, at, !data[at]);
                        }
                    });
                }
            });
            for at in page * BS..(page + 1) * BS {
                expected_clone[at] = !data[at];
            }
            let (new, prot) = block_at(&clone_view, page);
            assert_ne!(new, old, "page {page} still shows the shared block");
            assert_eq!(prot, PageProtection::ReadWrite);
            assert_eq!(
                data_blocks(&fs, &[&source, &clone]).len(),
                blocks_before + 1,
                "page {page}: exactly one copy"
            );
            assert_eq!(fs.stats().free_blocks, free_before - 1, "page {page}: exactly one block allocated");
            assert_eq!(
                shared_bytes(&fs, &clone),
                ((PAGES - page - 1) * BS) as u64,
                "only the stored page stopped being shared"
            );
            assert_eq!(fs.page_share(old), Some(PageShare::Single { ino: source.ino(), page: page as u64 }));
            assert_eq!(fs.page_share(new), Some(PageShare::Single { ino: clone.ino(), page: page as u64 }));
            assert_eq!(
                fs.share_state(old),
                ShareState::Single { ino: source.ino(), file_block: page as u64 }
            );
        }
        assert_bytes(&file_bytes(&clone), &expected_clone, "every store landed in the clone");
        assert_bytes(&view_bytes(&clone_view, 0, PAGES * BS), &expected_clone, "clone view");
        assert_bytes(&file_bytes(&source), &data, "source unchanged");
        assert_bytes(&view_bytes(&source_view, 0, PAGES * BS), &data, "source view unchanged");
        assert_eq!(shared_bytes(&fs, &source), 0);
        assert_clean(&fs);
    });
}

// ----- copy-on-write isolation -----

/// A view in a test, with what it shows.
struct TestView {
    map: Mapping,
    /// Which file (index into the test's files).
    file: usize,
    /// First file byte shown.
    start: usize,
}

#[test]
fn random_stores_into_views_of_a_source_and_its_clone_never_reach_the_other_file() {
    within_deadline("copy-on-write isolation", stores_into_a_source_and_its_clone);
}

fn stores_into_a_source_and_its_clone() {
    const PAGES: usize = 32;
    let fs = memfd_fs(16 << 20);
    let source = create(&fs, "/source");
    let data = noise(2, PAGES * BS);
    source.write_at(&data, 0).unwrap();
    let clone = create(&fs, "/clone");
    fs.reflink(&source, 0, &clone, 0, 0).unwrap();
    let files = [&source, &clone];
    let mut models = [data.clone(), data.clone()];
    let free_before = fs.stats().free_blocks;
    let view = |file: usize, first_page: usize, pages: usize, access| TestView {
        map: files[file].map((first_page * BS) as u64, (pages * BS) as u64, access).unwrap(),
        file,
        start: first_page * BS,
    };
    let views = [
        view(0, 0, PAGES, MapAccess::ReadWrite),
        view(0, 8, 16, MapAccess::ReadWrite),
        view(0, 0, PAGES, MapAccess::Read),
        view(1, 0, PAGES, MapAccess::ReadWrite),
        view(1, 16, 16, MapAccess::ReadWrite),
        view(1, 4, 20, MapAccess::Read),
    ];
    // Views 2 and 5 are read-only: stores go through the others.
    let rw_views: [&[usize]; 2] = [&[0, 1], &[3, 4]];
    let check_file = |file: usize, model: &[u8]| {
        assert_bytes(&file_bytes(files[file]), model, &format!("file {file} read"));
        for (n, v) in views.iter().enumerate().filter(|(_, v)| v.file == file) {
            let len = v.map.len();
            assert_bytes(
                &view_bytes(&v.map, 0, len),
                &model[v.start..v.start + len],
                &format!("view {n} of file {file}"),
            );
        }
    };
    // File pages 3, 7, 11, ... are never stored into, so that some sharing is left to check;
    // pages 2, 6, 10, ... only through the clone's views.
    let kept_out = |file: usize, page: usize| page % 4 == 3 || (file == 0 && page % 4 == 2);
    // One thread stores into the source's views, one into the clone's, at the same time: both
    // fault on the same shared pages, and each side's copy must leave the other side alone.
    let mut touched: [BTreeSet<usize>; 2] = Default::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = models
            .iter_mut()
            .enumerate()
            .map(|(file, model)| {
                let (views, check_file, kept_out) = (&views, &check_file, &kept_out);
                s.spawn(move || {
                    let mut rng = Rng(0xc0ffee + file as u64);
                    let mut touched = BTreeSet::new();
                    for step in 0..3000 {
                        let (v, len, offset) = loop {
                            let v = &views[rw_views[file][rng.below(2)]];
                            let len = 1 + rng.below(300);
                            let offset = rng.below(v.map.len() - len + 1);
                            let first = (v.start + offset) / BS;
                            let last = (v.start + offset + len - 1) / BS;
                            if !(first..=last).any(|p| kept_out(file, p)) {
                                break (v, len, offset);
                            }
                        };
                        let bytes = rng.bytes(len);
                        store(&v.map, offset, &bytes);
                        let at = v.start + offset;
                        model[at..at + len].copy_from_slice(&bytes);
                        touched.extend(at / BS..=(at + len - 1) / BS);
                        if step % 250 == 249 {
                            check_file(file, model);
                        }
                    }
                    touched
                })
            })
            .collect();
        for (file, w) in workers.into_iter().enumerate() {
            touched[file] = w.join().unwrap();
        }
    });
    let check_all = |models: &[Vec<u8>; 2]| {
        check_file(0, &models[0]);
        check_file(1, &models[1]);
    };
    check_all(&models);
    assert_clean(&fs);
    // Sharing dropped exactly: one new block per page stored into on either side.
    let stored: BTreeSet<usize> = touched[0].union(&touched[1]).copied().collect();
    assert_eq!(stored.len(), PAGES - PAGES / 4, "every page but the kept-out ones was stored into");
    assert_ne!(touched[0], touched[1], "some pages must have been stored into on one side only");
    let untouched = (PAGES - stored.len()) * BS;
    assert_eq!(shared_bytes(&fs, &source), untouched as u64);
    assert_eq!(shared_bytes(&fs, &clone), untouched as u64);
    assert_eq!(data_blocks(&fs, &[&source, &clone]).len(), PAGES + stored.len());
    assert_eq!(free_before - fs.stats().free_blocks, stored.len() as u64, "one copy per page stored into");
    // Page share state: an untouched page is one block behind two (inode, page) entries.
    let full = [&views[0].map, &views[3].map];
    for page in 0..PAGES {
        let blocks = [block_at(full[0], page).0, block_at(full[1], page).0];
        if stored.contains(&page) {
            assert_ne!(blocks[0], blocks[1], "page {page} was stored into but is still shared");
            for (i, &b) in blocks.iter().enumerate() {
                assert_eq!(
                    fs.page_share(b),
                    Some(PageShare::Single { ino: files[i].ino(), page: page as u64 })
                );
                assert_eq!(
                    fs.share_state(b),
                    ShareState::Single { ino: files[i].ino(), file_block: page as u64 }
                );
            }
        } else {
            assert_eq!(blocks[0], blocks[1]);
            assert_eq!(fs.page_share(blocks[0]), Some(PageShare::Shared { entries: 2 }));
            assert_eq!(fs.share_state(blocks[0]), ShareState::Shared { count: 2 });
        }
    }
    // Unmapping drops every page share entry.
    let all_blocks = data_blocks(&fs, &[&source, &clone]);
    drop(views);
    assert_eq!(fs.view_count(), 0);
    for &b in &all_blocks {
        assert_eq!(fs.page_share(b), None, "block {b} still has page share entries after unmap");
    }
    assert_bytes(&file_bytes(&source), &models[0], "source after unmap");
    assert_bytes(&file_bytes(&clone), &models[1], "clone after unmap");
    assert_clean(&fs);
}

// ----- coherence while other threads change the layout -----

/// Pages of the shared file, by owner: the storer owns [0, 8), layout worker 1 owns [8, 24),
/// layout worker 2 owns [24, 40) and the end of the file, whose size it keeps in [40, 64) pages.
const SHARED_FILE_PAGES: usize = 64;
const STORER_PAGES: std::ops::Range<usize> = 0..8;
const WORKER1_PAGES: std::ops::Range<usize> = 8..24;
const WORKER2_PAGES: std::ops::Range<usize> = 24..40;
const HELPER_PAGES: usize = 16;

/// Counts of what the layout workers did, to prove the run exercised every operation.
#[derive(Default, Debug, Clone, Copy)]
struct LayoutCounts {
    view_stores: u64,
    pwrites: u64,
    reflinks_in: u64,
    reflinks_out: u64,
    dedupes_same: u64,
    dedupes_differ: u64,
    unshares: u64,
    truncates_down: u64,
    truncates_up: u64,
}

/// A thread that changes the layout of its own pages of the shared file and checks, after every
/// operation, that the views and pread show exactly what its model says.
struct LayoutWorker<'a> {
    fs: &'a Fs,
    file: &'a File,
    /// The view it stores through (covers its pages).
    view: &'a Mapping,
    /// Every view of the shared file that shows some of its pages.
    watchers: Vec<&'a Mapping>,
    helper: &'a File,
    helper_view: &'a Mapping,
    /// Its fixed pages (never truncated).
    pages: std::ops::Range<usize>,
    /// Whether it also owns the end of the file (and truncates it).
    owns_eof: bool,
    /// The file's bytes from `pages.start` to its end of ownership (the fixed pages, or EOF).
    model: Vec<u8>,
    helper_model: Vec<u8>,
    rng: Rng,
    counts: LayoutCounts,
}

impl LayoutWorker<'_> {
    fn start(&self) -> usize {
        self.pages.start * BS
    }

    /// End of the bytes it owns: the end of its fixed pages, or EOF.
    fn end(&self) -> usize {
        self.start() + self.model.len()
    }

    /// A random byte range inside what it owns.
    fn byte_range(&mut self) -> (usize, usize) {
        let len = 1 + self.rng.below(600.min(self.end() - self.start()));
        let at = self.start() + self.rng.below(self.end() - self.start() - len + 1);
        (at, len)
    }

    /// A random run of whole pages inside its fixed pages, and one inside the helper.
    fn page_runs(&mut self) -> (usize, usize, usize) {
        let n = 1 + self.rng.below(4);
        let in_file = self.pages.start + self.rng.below(self.pages.len() - n + 1);
        let in_helper = self.rng.below(HELPER_PAGES - n + 1);
        (in_file, in_helper, n)
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=24 => {
                let (at, len) = self.byte_range();
                let bytes = self.rng.bytes(len);
                store(self.view, at - self.view.file_offset() as usize, &bytes);
                let rel = at - self.start();
                self.model[rel..rel + len].copy_from_slice(&bytes);
                self.counts.view_stores += 1;
            }
            25..=39 => {
                let (at, len) = self.byte_range();
                let bytes = self.rng.bytes(len);
                assert_eq!(self.file.write_at(&bytes, at as u64).unwrap(), len);
                let rel = at - self.start();
                self.model[rel..rel + len].copy_from_slice(&bytes);
                self.counts.pwrites += 1;
            }
            40..=47 => {
                // Change the helper: a store through its view or a pwrite.
                let len = 1 + self.rng.below(600);
                let at = self.rng.below(HELPER_PAGES * BS - len + 1);
                let bytes = self.rng.bytes(len);
                if self.rng.below(2) == 0 {
                    store(self.helper_view, at, &bytes);
                } else {
                    self.helper.write_at(&bytes, at as u64).unwrap();
                }
                self.helper_model[at..at + len].copy_from_slice(&bytes);
            }
            48..=59 => {
                let (fp, hp, n) = self.page_runs();
                let linked = self.fs.reflink(
                    self.helper,
                    (hp * BS) as u64,
                    self.file,
                    (fp * BS) as u64,
                    (n * BS) as u64,
                );
                assert_eq!(linked.unwrap(), (n * BS) as u64);
                let rel = fp * BS - self.start();
                self.model[rel..rel + n * BS].copy_from_slice(&self.helper_model[hp * BS..(hp + n) * BS]);
                self.counts.reflinks_in += 1;
            }
            60..=69 => {
                let (fp, hp, n) = self.page_runs();
                let linked = self.fs.reflink(
                    self.file,
                    (fp * BS) as u64,
                    self.helper,
                    (hp * BS) as u64,
                    (n * BS) as u64,
                );
                assert_eq!(linked.unwrap(), (n * BS) as u64);
                let rel = fp * BS - self.start();
                self.helper_model[hp * BS..(hp + n) * BS].copy_from_slice(&self.model[rel..rel + n * BS]);
                self.counts.reflinks_out += 1;
            }
            70..=81 => {
                let (fp, hp, n) = self.page_runs();
                let rel = fp * BS - self.start();
                if self.rng.below(2) == 0 {
                    // Make the ranges equal with a plain copy first, so that dedupe shares them.
                    let copy = self.helper_model[hp * BS..(hp + n) * BS].to_vec();
                    self.file.write_at(&copy, (fp * BS) as u64).unwrap();
                    self.model[rel..rel + n * BS].copy_from_slice(&copy);
                }
                let equal = self.model[rel..rel + n * BS] == self.helper_model[hp * BS..(hp + n) * BS];
                let (fp_off, hp_off, len) = ((fp * BS) as u64, (hp * BS) as u64, (n * BS) as u64);
                let status = if self.rng.below(2) == 0 {
                    self.fs.dedupe(
                        self.file,
                        fp_off,
                        len,
                        &[DedupeTarget { file: self.helper, offset: hp_off }],
                    )
                } else {
                    self.fs.dedupe(
                        self.helper,
                        hp_off,
                        len,
                        &[DedupeTarget { file: self.file, offset: fp_off }],
                    )
                }
                .unwrap();
                match (&status[0], equal) {
                    (DedupeStatus::Same { bytes_deduped }, true) => {
                        assert_eq!(*bytes_deduped, len);
                        self.counts.dedupes_same += 1;
                    }
                    (DedupeStatus::Differs, false) => self.counts.dedupes_differ += 1,
                    (other, _) => panic!("dedupe of ranges that are equal={equal}: {other:?}"),
                }
            }
            82..=89 => {
                let (fp, _, n) = self.page_runs();
                self.fs.unshare(self.file, (fp * BS) as u64, (n * BS) as u64).unwrap();
                self.counts.unshares += 1;
            }
            _ if self.owns_eof => {
                // Truncate somewhere in [40, 64) pages: never below another thread's pages.
                let low = WORKER2_PAGES.end * BS;
                let size = if self.rng.below(2) == 0 {
                    (WORKER2_PAGES.end + self.rng.below(SHARED_FILE_PAGES - WORKER2_PAGES.end + 1)) * BS
                } else {
                    low + self.rng.below((SHARED_FILE_PAGES - WORKER2_PAGES.end) * BS)
                };
                if size < self.end() {
                    self.counts.truncates_down += 1;
                } else {
                    self.counts.truncates_up += 1;
                }
                self.file.set_len(size as u64).unwrap();
                self.model.resize(size - self.start(), 0);
            }
            _ => {
                let (at, len) = self.byte_range();
                let bytes = self.rng.bytes(len);
                store(self.view, at - self.view.file_offset() as usize, &bytes);
                let rel = at - self.start();
                self.model[rel..rel + len].copy_from_slice(&bytes);
                self.counts.view_stores += 1;
            }
        }
        self.verify(roll);
    }

    /// Its bytes, through pread and through every view that shows them, equal the model.
    fn verify(&self, roll: usize) {
        let (start, end) = (self.start(), self.end());
        let mut buf = vec![0u8; end - start];
        assert_eq!(self.file.read_at(&mut buf, start as u64).unwrap(), end - start);
        assert_bytes(&buf, &self.model, &format!("pread of pages from {} after op {roll}", self.pages.start));
        for view in &self.watchers {
            let (vs, ve) = (view.file_offset() as usize, view.file_offset() as usize + view.len());
            let (a, b) = (start.max(vs), end.min(ve));
            if a < b {
                assert_bytes(
                    &view_bytes(view, a - vs, b - a),
                    &self.model[a - start..b - start],
                    &format!("view at {vs} over pages from {} after op {roll}", self.pages.start),
                );
            }
        }
        assert_bytes(&file_bytes(self.helper), &self.helper_model, "helper pread");
        assert_bytes(&view_bytes(self.helper_view, 0, HELPER_PAGES * BS), &self.helper_model, "helper view");
    }
}

/// The thread that stores through views into its own pages, re-sharing them now and then so
/// that its stores fault and copy while the layout workers run.
struct Storer<'a> {
    fs: &'a Fs,
    file: &'a File,
    views: [&'a Mapping; 2],
    spare: &'a File,
    model: Vec<u8>,
    rng: Rng,
}

impl Storer<'_> {
    fn step(&mut self, n: usize) {
        let region = STORER_PAGES.len() * BS;
        match self.rng.below(100) {
            0..=74 => {
                let len = 1 + self.rng.below(256);
                let at = self.rng.below(region - len + 1);
                let bytes = self.rng.bytes(len);
                store(self.views[self.rng.below(2)], at, &bytes);
                self.model[at..at + len].copy_from_slice(&bytes);
            }
            75..=84 => {
                let len = 1 + self.rng.below(256);
                let at = self.rng.below(region - len + 1);
                let bytes = self.rng.bytes(len);
                self.file.write_at(&bytes, at as u64).unwrap();
                self.model[at..at + len].copy_from_slice(&bytes);
            }
            85..=94 => {
                let first = self.rng.below(STORER_PAGES.len());
                let n = 1 + self.rng.below(STORER_PAGES.len() - first);
                let (off, len) = ((first * BS) as u64, (n * BS) as u64);
                assert_eq!(self.fs.reflink(self.file, off, self.spare, off, len).unwrap(), len);
            }
            _ => {
                let first = self.rng.below(STORER_PAGES.len());
                self.fs.unshare(self.file, (first * BS) as u64, BS as u64).unwrap();
            }
        }
        if n % 25 == 24 {
            let mut buf = vec![0u8; region];
            assert_eq!(self.file.read_at(&mut buf, 0).unwrap(), region);
            assert_bytes(&buf, &self.model, "storer's pages, pread");
            assert_bytes(&view_bytes(self.views[1], 0, region), &self.model, "storer's pages, its view");
        }
    }
}

/// At a moment when no thread runs: every view of `file` equals pread for every page inside EOF,
/// pages at or past EOF are past-EOF pages, and check() is clean.
fn verify_views_equal_file(fs: &Fs, file: &File, views: &[&Mapping], model: &[u8]) {
    let contents = file_bytes(file);
    assert_bytes(&contents, model, "whole shared file");
    for view in views {
        let vs = view.file_offset() as usize;
        for page in 0..view.len() / BS {
            let at = vs + page * BS;
            if at >= contents.len() {
                assert_eq!(view.page_state(page as u64), PageState::PastEof, "view page at {at} past EOF");
                continue;
            }
            let end = (at + BS).min(contents.len());
            assert_bytes(
                &view_bytes(view, page * BS, end - at),
                &contents[at..end],
                &format!("view page at {at}"),
            );
        }
    }
    assert_clean(fs);
}

#[test]
fn views_stay_equal_to_the_file_while_other_threads_pwrite_reflink_dedupe_unshare_and_truncate_it() {
    let counts = within_deadline("coherence", || {
        let fs = memfd_fs(32 << 20);
        let file = create(&fs, "/shared");
        let initial = noise(7, SHARED_FILE_PAGES * BS);
        file.write_at(&initial, 0).unwrap();
        let helpers = [create(&fs, "/helper1"), create(&fs, "/helper2")];
        let helper_models = [noise(8, HELPER_PAGES * BS), noise(9, HELPER_PAGES * BS)];
        for (h, m) in helpers.iter().zip(&helper_models) {
            h.write_at(m, 0).unwrap();
        }
        let spare = create(&fs, "/spare");
        let page_bytes = |p: usize| (p * BS) as u64;
        let whole = file.map(0, page_bytes(SHARED_FILE_PAGES), MapAccess::ReadWrite).unwrap();
        let storer_view = file.map(0, page_bytes(STORER_PAGES.end), MapAccess::ReadWrite).unwrap();
        let worker1_read_view = file
            .map(page_bytes(WORKER1_PAGES.start), page_bytes(WORKER1_PAGES.len()), MapAccess::Read)
            .unwrap();
        let worker2_view = file
            .map(
                page_bytes(WORKER2_PAGES.start),
                page_bytes(SHARED_FILE_PAGES - WORKER2_PAGES.start),
                MapAccess::ReadWrite,
            )
            .unwrap();
        let helper_views = [
            helpers[0].map(0, page_bytes(HELPER_PAGES), MapAccess::ReadWrite).unwrap(),
            helpers[1].map(0, page_bytes(HELPER_PAGES), MapAccess::ReadWrite).unwrap(),
        ];
        let mut storer = Storer {
            fs: &fs,
            file: &file,
            views: [&whole, &storer_view],
            spare: &spare,
            model: initial[..STORER_PAGES.end * BS].to_vec(),
            rng: Rng(10),
        };
        let mut workers = [
            LayoutWorker {
                fs: &fs,
                file: &file,
                view: &whole,
                watchers: vec![&whole, &worker1_read_view],
                helper: &helpers[0],
                helper_view: &helper_views[0],
                pages: WORKER1_PAGES,
                owns_eof: false,
                model: initial[WORKER1_PAGES.start * BS..WORKER1_PAGES.end * BS].to_vec(),
                helper_model: helper_models[0].clone(),
                rng: Rng(11),
                counts: LayoutCounts::default(),
            },
            LayoutWorker {
                fs: &fs,
                file: &file,
                view: &worker2_view,
                watchers: vec![&whole, &worker2_view],
                helper: &helpers[1],
                helper_view: &helper_views[1],
                pages: WORKER2_PAGES,
                owns_eof: true,
                model: initial[WORKER2_PAGES.start * BS..].to_vec(),
                helper_model: helper_models[1].clone(),
                rng: Rng(12),
                counts: LayoutCounts::default(),
            },
        ];
        let all_views = [&whole, &storer_view, &worker1_read_view, &worker2_view];
        for _round in 0..10 {
            std::thread::scope(|s| {
                let storer = &mut storer;
                s.spawn(move || (0..1200).for_each(|n| storer.step(n)));
                for w in workers.iter_mut() {
                    s.spawn(move || (0..300).for_each(|_| w.step()));
                }
            });
            // A sync point: everyone joined; the views must equal the file everywhere.
            let mut model = storer.model.clone();
            model.extend_from_slice(&workers[0].model);
            model.extend_from_slice(&workers[1].model);
            verify_views_equal_file(&fs, &file, &all_views, &model);
            for (w, hv) in workers.iter().zip(&helper_views) {
                assert_bytes(
                    &view_bytes(hv, 0, HELPER_PAGES * BS),
                    &w.helper_model,
                    "helper view at a sync point",
                );
            }
        }
        let mut total = LayoutCounts::default();
        for w in &workers {
            let c = w.counts;
            total.view_stores += c.view_stores;
            total.pwrites += c.pwrites;
            total.reflinks_in += c.reflinks_in;
            total.reflinks_out += c.reflinks_out;
            total.dedupes_same += c.dedupes_same;
            total.dedupes_differ += c.dedupes_differ;
            total.unshares += c.unshares;
            total.truncates_down += c.truncates_down;
            total.truncates_up += c.truncates_up;
        }
        total
    });
    eprintln!("layout operations: {counts:?}");
    for (what, n) in [
        ("stores through views", counts.view_stores),
        ("pwrites", counts.pwrites),
        ("reflinks into the file", counts.reflinks_in),
        ("reflinks out of the file", counts.reflinks_out),
        ("dedupes that shared", counts.dedupes_same),
        ("dedupes that differed", counts.dedupes_differ),
        ("unshares", counts.unshares),
        ("truncates down", counts.truncates_down),
        ("truncates up", counts.truncates_up),
    ] {
        assert!(n > 0, "the run never did {what}");
    }
}

// ----- no deadlock -----

/// Sets a flag when dropped, also while unwinding from a panic (so waiting threads can leave).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn threads_reading_into_shared_view_pages_while_reflinks_reshare_them_never_deadlock() {
    within_deadline("reads into shared view pages", || {
        const PAGES: usize = 32;
        const READERS: usize = 4;
        const PER_READER: usize = PAGES / READERS;
        let fs = memfd_fs(32 << 20);
        let origin = create(&fs, "/origin");
        let origin_data = noise(20, PAGES * BS);
        origin.write_at(&origin_data, 0).unwrap();
        let target = create(&fs, "/target");
        fs.reflink(&origin, 0, &target, 0, 0).unwrap();
        let spare = create(&fs, "/spare");
        let input = create(&fs, "/input");
        let input_data = noise(21, PAGES * BS);
        input.write_at(&input_data, 0).unwrap();
        let view = target.map(0, (PAGES * BS) as u64, MapAccess::ReadWrite).unwrap();
        let base = view.as_ptr() as usize;
        let readers_done = AtomicUsize::new(0);
        // The readers keep pace with the re-sharing, so that the two really interleave.
        let reshared = AtomicUsize::new(0);
        let resharing_over = AtomicBool::new(false);
        let mut expected: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut reshares = 0;
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..READERS)
                .map(|r| {
                    let (target, input, input_data, origin_data, done) =
                        (&target, &input, &input_data, &origin_data, &readers_done);
                    let (reshared, resharing_over) = (&reshared, &resharing_over);
                    s.spawn(move || {
                        // Reader r owns pages [r * 8, r * 8 + 8) of the view: the destination
                        // buffers of its reads are those pages, shared or not.
                        let mut mine: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
                        for k in 0..1000 {
                            while reshared.load(Ordering::Acquire) < k / 2
                                && !resharing_over.load(Ordering::Acquire)
                            {
                                std::thread::yield_now();
                            }
                            let page = r * PER_READER + k % PER_READER;
                            // SAFETY: the page lies inside the live view, and only this thread
                            // stores into it; the library resolves the faults the stores raise.
                            let dst =
                                unsafe { std::slice::from_raw_parts_mut((base + page * BS) as *mut u8, BS) };
                            if k % 5 == 4 {
                                // Read another of its own pages of the target into this one:
                                // the source and the destination are both the mapped file.
                                let from = r * PER_READER + (k * 3 + 1) % PER_READER;
                                if from == page {
                                    continue;
                                }
                                assert_eq!(target.read_at(dst, (from * BS) as u64).unwrap(), BS);
                                let was = mine.get(&from).cloned();
                                mine.insert(
                                    page,
                                    was.unwrap_or_else(|| origin_data[from * BS..][..BS].to_vec()),
                                );
                            } else {
                                let src = (k * 7 + r) % PAGES;
                                assert_eq!(input.read_at(dst, (src * BS) as u64).unwrap(), BS);
                                mine.insert(page, input_data[src * BS..][..BS].to_vec());
                            }
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        mine
                    })
                })
                .collect();
            // Meanwhile: share the target's pages again and again, so the readers' stores keep
            // faulting; check the whole file system now and then.
            let _release_readers = SetOnDrop(&resharing_over);
            let mut rng = Rng(22);
            while readers_done.load(Ordering::SeqCst) < READERS {
                let n = 1 + rng.below(8);
                let p = rng.below(PAGES - n + 1);
                let (off, len) = ((p * BS) as u64, (n * BS) as u64);
                assert_eq!(fs.reflink(&target, off, &spare, off, len).unwrap(), len);
                reshares += 1;
                reshared.store(reshares, Ordering::Release);
                if reshares % 40 == 0 {
                    assert_clean(&fs);
                }
                assert!(reshares < 1_000_000, "readers never finished");
            }
            for r in readers {
                expected.extend(r.join().unwrap());
            }
        });
        eprintln!("{reshares} reflinks re-shared the readers' pages");
        let mut model = origin_data.clone();
        for (page, bytes) in &expected {
            model[page * BS..(page + 1) * BS].copy_from_slice(bytes);
        }
        assert_bytes(&file_bytes(&target), &model, "target after the reads");
        assert_bytes(&view_bytes(&view, 0, PAGES * BS), &model, "target view after the reads");
        assert_bytes(&file_bytes(&origin), &origin_data, "origin unchanged");
        assert_clean(&fs);
    });
}

// ----- fatal accesses, in child processes -----

/// Re-runs this test binary selecting only the child body below, with `role` in its environment;
/// returns how it ended and what it wrote on stderr. A child that hangs is killed and fails the test.
fn run_child(role: &str) -> (std::process::ExitStatus, String) {
    let child = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "child_process_makes_the_fatal_access_its_environment_names",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLOCK_TIMEOUT) {
        Ok(out) => {
            let out = out.expect("wait for the child");
            (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
        }
        Err(_) => {
            // SAFETY: kill(2) on the child this function started, by its id.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {role} did not end within {DEADLOCK_TIMEOUT:?}: deadlock");
        }
    }
}

/// The body of the child processes of the signal tests; without the role variable in its
/// environment (a normal test run) it does nothing.
#[test]
fn child_process_makes_the_fatal_access_its_environment_names() {
    let Ok(role) = std::env::var(CHILD_ROLE) else { return };
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only turns off core files for this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fs = memfd_fs(16 << 20);
    let file = create(&fs, "/f");
    let data = noise(30, 4 * BS);
    file.write_at(&data, 0).unwrap();
    match role.as_str() {
        "past-eof" => {
            let view = file.map(0, (4 * BS) as u64, MapAccess::Read).unwrap();
            assert_bytes(&view_bytes(&view, 3 * BS, BS), &data[3 * BS..], "page 3 before the truncate");
            file.set_len((BS + 100) as u64).unwrap();
            assert_eq!(view.page_state(2), PageState::PastEof);
            assert_eq!(view.page_state(3), PageState::PastEof);
            // Inside the last page, past EOF: readable, as in the kernel.
            assert_bytes(&view_bytes(&view, BS, 100), &data[BS..BS + 100], "the last page");
            eprintln!("child: reading page 3 past EOF");
            // SAFETY: the address is inside the live view; the load is meant to raise SIGBUS.
            let byte = unsafe { view.as_ptr().add(3 * BS + 5).read_volatile() };
            eprintln!("child: read {byte} past EOF and lived");
        }
        "read-only-store" => {
            let view = file.map(0, (4 * BS) as u64, MapAccess::Read).unwrap();
            assert!(matches!(view.page_state(1), PageState::Block { prot: PageProtection::ReadOnly, .. }));
            eprintln!("child: storing into a read-only view");
            store_byte(&view, BS + 9, 0x42);
            eprintln!("child: stored into a read-only view and lived");
        }
        "locked-store" => {
            let clone = create(&fs, "/clone");
            fs.reflink(&file, 0, &clone, 0, 0).unwrap();
            let view = clone.map(0, (4 * BS) as u64, MapAccess::ReadWrite).unwrap();
            let _lock = fs.read_lock();
            eprintln!("child: storing into a shared page while holding the file system lock");
            store_byte(&view, 7, 0x42);
            eprintln!("child: stored while holding the lock and lived");
        }
        other => panic!("unknown child role {other}"),
    }
    std::process::exit(97);
}

#[test]
fn access_past_eof_after_truncating_below_a_view_raises_sigbus() {
    let (status, stderr) = run_child("past-eof");
    assert!(
        stderr.contains("child: reading page 3 past EOF"),
        "the child failed before the access:\n{stderr}"
    );
    assert_eq!(status.signal(), Some(libc::SIGBUS), "child ended with {status:?}:\n{stderr}");
}

#[test]
fn store_into_a_read_only_view_raises_sigsegv() {
    let (status, stderr) = run_child("read-only-store");
    assert!(
        stderr.contains("child: storing into a read-only view"),
        "the child failed before the store:\n{stderr}"
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "child ended with {status:?}:\n{stderr}");
}

/// The no-deadlock rule: a thread that holds a library lock and touches a shared page of a view
/// is not left waiting for its own lock; it gets SIGSEGV with a message naming the rule.
#[test]
fn store_into_a_shared_page_while_holding_the_lock_fails_fast_instead_of_deadlocking() {
    let (status, stderr) = run_child("locked-store");
    assert!(
        stderr.contains("child: storing into a shared page"),
        "the child failed before the store:\n{stderr}"
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "child ended with {status:?}:\n{stderr}");
    assert!(stderr.contains("while holding a ferrodax lock"), "no message about the rule:\n{stderr}");
}

// ----- durability -----

/// Dirty bytes (kB) of the memory areas that overlap `[addr, addr + len)`, from /proc/self/smaps:
/// pages stored into and not yet written back.
fn dirty_kib(addr: usize, len: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut inside = false;
    let mut total = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a < addr + len && b > addr;
                continue;
            }
        }
        if inside && (line.starts_with("Shared_Dirty:") || line.starts_with("Private_Dirty:")) {
            total += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("smaps value");
        }
    }
    total
}

#[test]
fn msync_and_fsync_write_view_stores_back_and_they_survive_a_remount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pool");
    let mut expected = noise(40, 8 * BS);
    let mut expected_other = vec![0u8; 8 * BS];
    {
        let pool = Pool::create(&path, 16 << 20).expect("pool file");
        let fs = Fs::format(&pool).unwrap();
        let file = create(&fs, "/f");
        file.write_at(&expected, 0).unwrap();
        file.set_len((10 * BS) as u64).unwrap(); // pages 8 and 9 are a hole
        expected.resize(10 * BS, 0);
        let other = create(&fs, "/other");
        fs.reflink(&file, (4 * BS) as u64, &other, (4 * BS) as u64, (4 * BS) as u64).unwrap();
        expected_other[4 * BS..].copy_from_slice(&expected[4 * BS..8 * BS]);
        let view = file.map(0, (10 * BS) as u64, MapAccess::ReadWrite).unwrap();
        let (addr, len) = (view.as_ptr() as usize, view.len());
        let put = |expected: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            store(&view, at, bytes);
            expected[at..at + bytes.len()].copy_from_slice(bytes);
        };
        assert_eq!(dirty_kib(addr, len), 0, "nothing stored yet");
        // A private page, a shared page (copied first) and a hole (allocated first).
        put(&mut expected, 100, b"private page");
        put(&mut expected, 4 * BS + 7, b"shared page");
        put(&mut expected, 9 * BS + 1, b"hole");
        assert!(dirty_kib(addr, len) >= 12, "three pages stored into must be dirty");
        view.sync().unwrap();
        assert_eq!(dirty_kib(addr, len), 0, "msync left stores unwritten");
        // A store, then the page becomes shared (read-only in the view) before the msync: the
        // store must still be written back.
        put(&mut expected, 2 * BS + 3, b"then shared");
        fs.reflink(&file, (2 * BS) as u64, &other, (2 * BS) as u64, BS as u64).unwrap();
        expected_other[2 * BS..3 * BS].copy_from_slice(&expected[2 * BS..3 * BS]);
        assert!(matches!(view.page_state(2), PageState::Block { prot: PageProtection::ReadOnly, .. }));
        view.sync().unwrap();
        assert_eq!(dirty_kib(addr, len), 0, "a store into a page that turned read-only was left unwritten");
        // fsync of the file writes back stores made through its views.
        put(&mut expected, BS + 50, b"fsync");
        put(&mut expected, 6 * BS, b"fsync too");
        assert!(dirty_kib(addr, len) >= 8);
        file.sync_all().unwrap();
        assert_eq!(dirty_kib(addr, len), 0, "fsync left stores made through a view unwritten");
        assert_bytes(&file_bytes(&file), &expected, "file before the remount");
        assert_clean(&fs);
    }
    let fs = Fs::mount(&Pool::open(&path).expect("reopen the pool")).expect("mount");
    assert_clean(&fs);
    let file = fs.open("/f", &rw()).unwrap();
    assert_bytes(&file_bytes(&file), &expected, "file after the remount");
    let other = fs.open("/other", &rw()).unwrap();
    assert_bytes(&file_bytes(&other), &expected_other, "other file after the remount");
}

// ----- unlink while mapped -----

#[test]
fn unlinking_the_last_name_of_a_mapped_file_keeps_it_until_the_last_view_goes() {
    const PAGES: usize = 8;
    let fs = memfd_fs(16 << 20);
    let file = create(&fs, "/doomed");
    let mut expected = noise(50, PAGES * BS);
    file.write_at(&expected, 0).unwrap();
    // Its last two pages are shared with a survivor, which has a view of them too.
    let survivor = create(&fs, "/survivor");
    fs.reflink(&file, (6 * BS) as u64, &survivor, 0, (2 * BS) as u64).unwrap();
    let survivor_view = survivor.map(0, (2 * BS) as u64, MapAccess::ReadWrite).unwrap();
    let view = file.map(0, (PAGES * BS) as u64, MapAccess::ReadWrite).unwrap();
    store(&view, 10, b"before unlink");
    expected[10..23].copy_from_slice(b"before unlink");
    let free_before_unlink = fs.stats().free_blocks;
    fs.remove_file("/doomed").unwrap();
    drop(file);
    assert_eq!(fs.metadata("/doomed").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fs.stats().free_blocks, free_before_unlink, "nothing may be freed while mapped");
    // The orphan stays alive and writable through its view.
    store(&view, BS + 1, b"after unlink");
    expected[BS + 1..BS + 13].copy_from_slice(b"after unlink");
    assert_bytes(&view_bytes(&view, 0, PAGES * BS), &expected, "orphan's view");
    assert_clean(&fs);
    let blocks: Vec<u64> = (0..PAGES).map(|p| block_at(&view, p).0).collect();
    let (shared_a, shared_b) = (blocks[6], blocks[7]);
    assert_eq!(fs.page_share(shared_a), Some(PageShare::Shared { entries: 2 }));
    assert!(matches!(survivor_view.page_state(0), PageState::Block { prot: PageProtection::ReadOnly, .. }));
    let free_before_unmap = fs.stats().free_blocks;
    drop(view);
    // The orphan's private blocks are freed; the shared ones now belong to the survivor alone.
    assert_eq!(fs.stats().free_blocks, free_before_unmap + (PAGES - 2) as u64);
    for &b in &blocks[..PAGES - 2] {
        assert_eq!(fs.page_share(b), None, "block {b} still has page share entries");
        assert_eq!(fs.share_state(b), ShareState::Free);
    }
    assert_eq!(fs.page_share(shared_a), Some(PageShare::Single { ino: survivor.ino(), page: 0 }));
    assert_eq!(fs.page_share(shared_b), Some(PageShare::Single { ino: survivor.ino(), page: 1 }));
    assert_eq!(fs.view_count(), 1);
    // The survivor's view turned writable in place: a store copies nothing.
    assert_eq!(
        survivor_view.page_state(0),
        PageState::Block { phys: shared_a, prot: PageProtection::ReadWrite }
    );
    let free = fs.stats().free_blocks;
    store(&survivor_view, 0, b"survivor");
    assert_eq!(fs.stats().free_blocks, free);
    let mut want = expected[6 * BS..].to_vec();
    want[..8].copy_from_slice(b"survivor");
    assert_bytes(&file_bytes(&survivor), &want, "survivor");
    assert_clean(&fs);
}

/// Dirty kB of pool block `phys` in the page cache of a pool file: the test maps that one page
/// itself (so smaps reports it alone), touches it, and reads the dirty count of that mapping.
fn block_dirty_kib(fs: &Fs, phys: u64) -> u64 {
    let fd = fs.backend().raw_fd().expect("a pool file");
    // SAFETY: a new read-only shared mapping of one page of the pool file at an address the
    // kernel picks; it is unmapped below and never written.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BS,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            (phys as usize * BS) as libc::off_t,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED, "mapping a pool page: {}", std::io::Error::last_os_error());
    // SAFETY: the page was just mapped readable; the load puts it in this mapping's page table.
    let _ = unsafe { (addr as *const u8).read_volatile() };
    let dirty = dirty_kib(addr as usize, BS);
    // SAFETY: unmapping exactly the page mapped above.
    unsafe { libc::munmap(addr, BS) };
    dirty
}

#[test]
fn stores_through_a_view_stay_durable_after_unmap_and_after_the_block_changes_hands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Pool::create(dir.path().join("pool"), 16 << 20).expect("pool file");
    let fs = Fs::format(&pool).unwrap();
    let file = create(&fs, "/f");
    file.write_at(&noise(60, 4 * BS), 0).unwrap();
    // 1. Store, unmap, fsync: the store is written back.
    let view = file.map(0, (4 * BS) as u64, MapAccess::ReadWrite).unwrap();
    let (page0, _) = block_at(&view, 0);
    store(&view, 0, b"stored before unmap");
    assert!(block_dirty_kib(&fs, page0) > 0, "a store through a view dirties the pool page");
    drop(view);
    file.sync_all().unwrap();
    assert_eq!(block_dirty_kib(&fs, page0), 0, "fsync after unmap left a view store unwritten");
    // 2. Store, share the block with a clone that a view shows, then store again (the view's
    //    page is copied): the old block now belongs to the clone alone, and the clone's fsync
    //    must find it written back.
    let view = file.map(0, (4 * BS) as u64, MapAccess::ReadWrite).unwrap();
    let (page1, _) = block_at(&view, 1);
    store(&view, BS, b"stored while private");
    let clone = create(&fs, "/clone");
    fs.reflink(&file, 0, &clone, 0, 0).unwrap();
    let clone_view = clone.map(0, (4 * BS) as u64, MapAccess::Read).unwrap();
    store(&view, BS + 100, b"after the copy");
    assert_ne!(block_at(&view, 1).0, page1, "the store must have copied the shared page");
    assert_eq!(fs.share_state(page1), ShareState::Single { ino: clone.ino(), file_block: 1 });
    drop(clone_view);
    clone.sync_all().unwrap();
    assert_eq!(block_dirty_kib(&fs, page1), 0, "the clone's fsync left its block unwritten");
    let mut buf = vec![0u8; 20];
    clone.read_at(&mut buf, BS as u64).unwrap();
    assert_eq!(&buf, b"stored while private");
    // 3. The same with no view of the clone: the file keeps its block and the clone takes a copy
    //    of it, which holds the unsynced store and is written back by the copy itself.
    let (page2, _) = block_at(&view, 2);
    store(&view, 2 * BS, b"stored while private");
    let clone2 = create(&fs, "/clone2");
    fs.reflink(&file, 0, &clone2, 0, 0).unwrap();
    store(&view, 2 * BS + 100, b"after the copy");
    assert_eq!(block_at(&view, 2), (page2, PageProtection::ReadWrite), "the file keeps its block");
    assert_eq!(fs.share_state(page2), ShareState::Single { ino: file.ino(), file_block: 2 });
    let at = 2 * BS as u64;
    let copy = fs
        .fiemap(&clone2)
        .unwrap()
        .iter()
        .find(|e| e.logical <= at && at < e.logical + e.length)
        .map(|e| (e.physical + at - e.logical) / BS as u64)
        .expect("the clone maps block 2");
    assert_ne!(copy, page2);
    assert_eq!(block_dirty_kib(&fs, copy), 0, "the clone's copy was left unwritten");
    clone2.read_at(&mut buf, 2 * BS as u64).unwrap();
    assert_eq!(&buf, b"stored while private");
    assert_clean(&fs);
}

// ----- operations that read a block and then remap it, racing with stores -----

/// A spin of random length whose scale cycles through powers of two with the round, so that on
/// any machine some rounds put a racing store inside the window an operation leaves open.
fn random_spin(rng: &mut Rng, round: u64) {
    for _ in 0..rng.below(1 << (round % 14)) {
        std::hint::spin_loop();
    }
}

/// Dedupe compares two ranges and then shares them: a store through a view into the source must
/// not slip in between, or the destination would take a byte nobody wrote to it. Each round, one
/// store of a foreign byte into the source lands at a random moment around a dedupe of two equal
/// ranges; the destination is never written, so it must never show that byte.
#[test]
fn a_store_racing_with_dedupe_never_reaches_the_destination() {
    within_deadline("store racing with dedupe", || {
        const PAGES: usize = 4;
        const ROUNDS: u64 = 4000;
        let fs = memfd_fs(16 << 20);
        let data = noise(70, PAGES * BS);
        let source = create(&fs, "/source");
        source.write_at(&data, 0).unwrap();
        let dest = create(&fs, "/dest");
        dest.write_at(&data, 0).unwrap();
        let view = source.map(0, (PAGES * BS) as u64, MapAccess::ReadWrite).unwrap();
        let dest_view = dest.map(0, (PAGES * BS) as u64, MapAccess::Read).unwrap();
        let (original, foreign) = (data[5], !data[5]);
        let started = AtomicU64::new(0);
        let stored = AtomicU64::new(0);
        let (mut same, mut differs) = (0, 0);
        let mut leaked = None;
        std::thread::scope(|s| {
            let (view, started, stored) = (&view, &started, &stored);
            s.spawn(move || {
                let mut rng = Rng(73);
                for round in 1..=ROUNDS {
                    while started.load(Ordering::Acquire) < round {
                        std::thread::yield_now();
                    }
                    random_spin(&mut rng, round);
                    store_byte(view, 5, foreign);
                    stored.store(round, Ordering::Release);
                }
            });
            for round in 1..=ROUNDS {
                started.store(round, Ordering::Release);
                let target = [DedupeTarget { file: &dest, offset: 0 }];
                match fs.dedupe(&source, 0, (PAGES * BS) as u64, &target).unwrap()[0] {
                    DedupeStatus::Same { .. } => same += 1,
                    DedupeStatus::Differs => differs += 1,
                    ref other => panic!("dedupe: {other:?}"),
                }
                while stored.load(Ordering::Acquire) < round {
                    std::thread::yield_now();
                }
                let mut byte = [0u8; 1];
                dest.read_at(&mut byte, 5).unwrap();
                if byte[0] != original {
                    leaked = Some(round);
                    started.store(u64::MAX, Ordering::Release); // let the storer run out
                    break;
                }
                // Undo the store for the next round (a fault and a copy if the page is shared now).
                store_byte(view, 5, original);
            }
        });
        if let Some(round) = leaked {
            panic!("round {round}: the destination shows a byte stored into the source during a dedupe");
        }
        eprintln!("dedupes: {same} shared, {differs} differed");
        assert!(same > 0, "no dedupe ever shared: the stores never raced with a remap ({differs} differed)");
        assert_bytes(&file_bytes(&dest), &data, "destination");
        assert_bytes(&view_bytes(&dest_view, 0, PAGES * BS), &data, "destination view");
        let mut expected_source = data.clone();
        expected_source[5] = original;
        assert_bytes(&file_bytes(&source), &expected_source, "source");
        assert_clean(&fs);
    });
}

/// Truncating to the middle of a page copies the kept part of that page to a new block: a store
/// into the kept part through a view must not be lost in between. Each round, one store of the
/// round's number lands at a random moment around a truncate into its page; after the round the
/// file must hold that number.
#[test]
fn a_store_racing_with_a_truncate_into_its_page_is_never_lost() {
    within_deadline("store racing with truncate", || {
        const PAGES: usize = 4;
        const ROUNDS: u64 = 1500;
        let fs = memfd_fs(16 << 20);
        let file = create(&fs, "/f");
        file.write_at(&noise(71, PAGES * BS), 0).unwrap();
        let view = file.map(0, (PAGES * BS) as u64, MapAccess::ReadWrite).unwrap();
        let started = AtomicU64::new(0);
        let stored = AtomicU64::new(0);
        std::thread::scope(|s| {
            let (view, started, stored) = (&view, &started, &stored);
            s.spawn(move || {
                let mut rng = Rng(72);
                for round in 1..=ROUNDS {
                    while started.load(Ordering::Acquire) < round {
                        std::thread::yield_now();
                    }
                    random_spin(&mut rng, round);
                    // Byte 8 of page 1: kept by the truncate, so copied by it.
                    store(view, BS + 8, &round.to_le_bytes());
                    stored.store(round, Ordering::Release);
                }
            });
            let mut lost = None;
            for round in 1..=ROUNDS {
                started.store(round, Ordering::Release);
                file.set_len((BS + 100) as u64 + round % 7 * 8).unwrap();
                while stored.load(Ordering::Acquire) < round {
                    std::thread::yield_now();
                }
                file.set_len((PAGES * BS) as u64).unwrap();
                let mut bytes = [0u8; 8];
                file.read_at(&mut bytes, (BS + 8) as u64).unwrap();
                if u64::from_le_bytes(bytes) != round {
                    lost = Some((round, u64::from_le_bytes(bytes)));
                    started.store(u64::MAX, Ordering::Release); // let the storer run out
                    break;
                }
            }
            if let Some((round, found)) = lost {
                panic!("round {round}: a truncate lost a store made through a view (the file holds {found})");
            }
        });
        assert_clean(&fs);
    });
}
