//! Model-based property test of DAX views (issue 3): the core's operations mixed with map, store
//! through a view, make_writable and unmap.
//!
//! Guards: after any sequence of pwrite, truncate (up and down, unaligned), reflink and dedupe of
//! whole blocks (between two files and inside one), reflink to the source's EOF (sharing a partial
//! last block), unshare, unlink of a mapped file (it lives on as an orphan and is freed with its
//! last view), map (read-only or read-write, any aligned range, past EOF too), plain stores
//! through the pointer of a live read-write view (into private, shared and hole pages, across page
//! boundaries, and into the part of the last page past EOF), make_writable and unmap, on a small
//! memfd pool:
//! - every file's bytes equal a plain in-memory model (stores past EOF are not file data: a file
//!   that grows over them reads zeros there, as in the kernel);
//! - every page of every live view inside EOF shows exactly the model's bytes, is the block FIEMAP
//!   reports for that file page (or a hole), and is writable exactly when the view is read-write
//!   and the block has one owner; pages at or past EOF are past-EOF pages;
//! - the page share state of every mapped block equals a brute force over the live views
//!   (`Single { ino, page }` for one (inode, page) entry, `Shared { entries }` otherwise), and is
//!   `None` for every block no view maps;
//! - `check()` is clean (it checks the views too) and the reverse map equals a FIEMAP scan.
//!
//! Knobs: FERRODAX_PROPTEST_CASES (default 512), FERRODAX_PROPTEST_STEPS (default 40),
//! FERRODAX_PROPTEST_SEED (default fixed; a number, or "random").

mod model_common;

use ferrodax::api::Mapping;
use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, PageShare, PageState};
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, Pool, ShareState};
use model_common::{
    assert_bytes, assert_clean, block_map, create, pattern, read_all, verify_reverse_map, BS,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

const POOL_BYTES: u64 = 8 << 20;
/// Files never grow past this many pages (the model holds their bytes).
const MAX_PAGES: u64 = 24;
/// At most this many views are live at once.
const MAX_VIEWS: usize = 6;
const PATHS: [&str; 2] = ["/a", "/b"];

// ----- coverage counters (so the test proves it exercised what it claims) -----

static STORES_INTO_PRIVATE: AtomicU64 = AtomicU64::new(0);
static STORES_INTO_SHARED: AtomicU64 = AtomicU64::new(0);
static STORES_INTO_HOLES: AtomicU64 = AtomicU64::new(0);
static STORES_PAST_EOF: AtomicU64 = AtomicU64::new(0);
static GROWTH_OVER_STORES_PAST_EOF: AtomicU64 = AtomicU64::new(0);
static REFLINKS_OVER_VIEWS: AtomicU64 = AtomicU64::new(0);
static DEDUPES_SHARED_UNDER_VIEWS: AtomicU64 = AtomicU64::new(0);
static TRUNCATES_BELOW_VIEWS: AtomicU64 = AtomicU64::new(0);
static REFLINKS_OF_PARTIAL_EOF_BLOCKS: AtomicU64 = AtomicU64::new(0);
static UNLINKS_WHILE_MAPPED: AtomicU64 = AtomicU64::new(0);
static ORPHANS_FREED_BY_UNMAP: AtomicU64 = AtomicU64::new(0);
static MAKE_WRITABLE_REFUSED: AtomicU64 = AtomicU64::new(0);
static SHARED_PAGE_ENTRIES: AtomicU64 = AtomicU64::new(0);
static STEPS_RUN: AtomicU64 = AtomicU64::new(0);

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

// ----- operations as generated; raw numbers are resolved against the state when a step runs -----

#[derive(Debug, Clone)]
enum Op {
    Pwrite {
        file: usize,
        at: u64,
        len: u64,
        seed: u8,
    },
    Truncate {
        file: usize,
        size: u64,
        aligned: bool,
    },
    Reflink {
        src: usize,
        dst: usize,
        src_page: u64,
        dst_page: u64,
        pages: u64,
    },
    /// Reflink from a page of the source to its EOF (a partial last block shares too).
    ReflinkToEof {
        src: usize,
        dst: usize,
        src_page: u64,
        dst_page: u64,
    },
    /// Unlink the file at a path (it lives on as an orphan while mapped) and create a new one there.
    Replace {
        file: usize,
    },
    Dedupe {
        src: usize,
        dst: usize,
        src_page: u64,
        dst_page: u64,
        pages: u64,
        copy_first: bool,
    },
    Unshare {
        file: usize,
        page: u64,
        pages: u64,
    },
    Map {
        file: usize,
        first_page: u64,
        pages: u64,
        writable: bool,
    },
    Store {
        view: usize,
        at: u64,
        len: u64,
        seed: u8,
        past_eof: bool,
    },
    MakeWritable {
        view: usize,
        at: u64,
        len: u64,
    },
    Unmap {
        view: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let file = || 0..PATHS.len();
    let raw = || any::<u64>();
    prop_oneof![
        5 => (file(), raw(), 1u64..3 * BS, 1u8..=255)
            .prop_map(|(file, at, len, seed)| Op::Pwrite { file, at, len, seed }),
        3 => (file(), raw(), any::<bool>()).prop_map(|(file, size, aligned)| Op::Truncate { file, size, aligned }),
        4 => (file(), file(), raw(), raw(), 1u64..=8)
            .prop_map(|(src, dst, src_page, dst_page, pages)| Op::Reflink { src, dst, src_page, dst_page, pages }),
        2 => (file(), file(), raw(), raw())
            .prop_map(|(src, dst, src_page, dst_page)| Op::ReflinkToEof { src, dst, src_page, dst_page }),
        1 => file().prop_map(|file| Op::Replace { file }),
        3 => (file(), file(), raw(), raw(), 1u64..=6, any::<bool>()).prop_map(
            |(src, dst, src_page, dst_page, pages, copy_first)| Op::Dedupe { src, dst, src_page, dst_page, pages, copy_first }
        ),
        2 => (file(), raw(), 1u64..=6).prop_map(|(file, page, pages)| Op::Unshare { file, page, pages }),
        5 => (file(), 0..MAX_PAGES + 2, 1u64..=10, prop::bool::weighted(0.7))
            .prop_map(|(file, first_page, pages, writable)| Op::Map { file, first_page, pages, writable }),
        14 => (0usize..MAX_VIEWS, raw(), 1u64..=2 * BS, 1u8..=255, prop::bool::weighted(0.3))
            .prop_map(|(view, at, len, seed, past_eof)| Op::Store { view, at, len, seed, past_eof }),
        2 => (0usize..MAX_VIEWS, raw(), 1u64..=3 * BS)
            .prop_map(|(view, at, len)| Op::MakeWritable { view, at, len }),
        3 => (0usize..MAX_VIEWS).prop_map(|view| Op::Unmap { view }),
    ]
}

// ----- the model and the system under test -----

/// A live view and what it shows.
struct LiveView {
    map: Mapping,
    file: usize,
    first_page: u64,
    pages: u64,
    writable: bool,
}

/// The files: the ones at the paths, and orphans that views keep alive. Operations name files by
/// path (index into [`PATHS`]); views and the per-file vectors by entry (index into `files`).
struct World {
    fs: Fs,
    /// Open handles per entry (`None` once an orphan was released).
    files: Vec<Option<File>>,
    /// The entry at each path.
    at_path: Vec<usize>,
    /// The files' bytes per entry (its length is the size).
    model: Vec<Vec<u8>>,
    views: Vec<LiveView>,
    /// Every pool block a view has ever shown, to check that unmapped ones have no entries.
    ever_mapped: BTreeSet<u64>,
    /// Per file: a store through a view put bytes past EOF in its last page since its size last
    /// changed (growing the file must not show them).
    stored_past_eof: Vec<bool>,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl World {
    fn new() -> World {
        let fs = Fs::format(&Pool::memfd(POOL_BYTES).expect("memfd pool")).expect("format");
        let files: Vec<File> = PATHS.iter().map(|p| create(&fs, p)).collect();
        // Start with data worth mapping: /a has 8 pages; /b shares 4 of them, then has 2 pages and
        // 100 bytes of its own.
        let a = pattern(1, 0, (8 * BS) as usize);
        files[0].write_at(&a, 0).expect("pwrite");
        fs.reflink(&files[0], 0, &files[1], 0, 4 * BS).expect("reflink");
        let own = pattern(2, 4 * BS, (2 * BS + 100) as usize);
        files[1].write_at(&own, 4 * BS).expect("pwrite");
        let mut b = a[..(4 * BS) as usize].to_vec();
        b.extend_from_slice(&own);
        World {
            fs,
            files: files.into_iter().map(Some).collect(),
            at_path: (0..PATHS.len()).collect(),
            model: vec![a, b],
            views: Vec::new(),
            ever_mapped: BTreeSet::new(),
            stored_past_eof: vec![false; PATHS.len()],
        }
    }

    /// The open handle of entry `file`.
    fn handle(&self, file: usize) -> &File {
        self.files[file].as_ref().expect("a live entry")
    }

    /// The operation with its paths replaced by the entries at those paths.
    fn resolve(&self, op: &Op) -> Op {
        let mut op = op.clone();
        match &mut op {
            Op::Pwrite { file, .. }
            | Op::Truncate { file, .. }
            | Op::Unshare { file, .. }
            | Op::Map { file, .. } => *file = self.at_path[*file],
            Op::Reflink { src, dst, .. }
            | Op::ReflinkToEof { src, dst, .. }
            | Op::Dedupe { src, dst, .. } => {
                *src = self.at_path[*src];
                *dst = self.at_path[*dst];
            }
            Op::Store { .. } | Op::MakeWritable { .. } | Op::Unmap { .. } | Op::Replace { .. } => {}
        }
        op
    }

    /// Closes an orphan once no view shows it (its last close frees it). Returns whether it did.
    fn release_if_unreferenced(&mut self, file: usize) -> bool {
        !self.at_path.contains(&file)
            && !self.views.iter().any(|v| v.file == file)
            && self.files[file].take().is_some()
    }

    fn size(&self, file: usize) -> u64 {
        self.model[file].len() as u64
    }

    /// Whole blocks inside EOF.
    fn whole_pages(&self, file: usize) -> u64 {
        self.size(file) / BS
    }

    fn resize_model(&mut self, file: usize, size: u64) {
        self.model[file].resize(size as usize, 0);
    }

    /// Notes that `file` is about to be resized to `new_size` (counts growths over bytes stored
    /// past EOF).
    fn note_resize(&mut self, file: usize, new_size: u64) {
        if new_size != self.size(file) {
            if new_size > self.size(file) && self.stored_past_eof[file] {
                bump(&GROWTH_OVER_STORES_PAST_EOF);
            }
            self.stored_past_eof[file] = false;
        }
    }

    /// Whether any live view of `file` shows a page of `[first, first + count)`.
    fn viewed(&self, file: usize, first: u64, count: u64) -> bool {
        self.views
            .iter()
            .any(|v| v.file == file && v.first_page < first + count && first < v.first_page + v.pages)
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match self.resolve(op) {
            Op::Pwrite { file, at, len, seed } => {
                let at = at % (self.size(file) + BS);
                let len = len.min(MAX_PAGES * BS - at.min(MAX_PAGES * BS));
                if len == 0 {
                    return Ok(());
                }
                let data = pattern(seed, at, len as usize);
                self.note_resize(file, (at + len).max(self.size(file)));
                let n = self.handle(file).write_at(&data, at).map_err(|e| fail(format!("pwrite: {e}")))?;
                prop_assert_eq!(n as u64, len);
                let end = (at + len) as usize;
                if self.model[file].len() < end {
                    self.model[file].resize(end, 0);
                }
                self.model[file][at as usize..end].copy_from_slice(&data);
            }
            Op::Truncate { file, size, aligned } => {
                let mut size = size % (MAX_PAGES * BS + 1);
                if aligned {
                    size -= size % BS;
                }
                if size < self.size(file) && self.viewed(file, size / BS, MAX_PAGES) {
                    bump(&TRUNCATES_BELOW_VIEWS);
                }
                self.note_resize(file, size);
                self.handle(file).set_len(size).map_err(|e| fail(format!("truncate: {e}")))?;
                self.resize_model(file, size);
            }
            Op::Reflink { src, dst, src_page, dst_page, pages } => {
                let whole = self.whole_pages(src);
                if whole == 0 {
                    return Ok(());
                }
                let pages = pages.min(whole);
                let sp = src_page % (whole - pages + 1);
                let dp = dst_page % (self.size(dst).div_ceil(BS) + 2).min(MAX_PAGES - pages + 1);
                if src == dst && sp < dp + pages && dp < sp + pages {
                    return Ok(()); // overlapping ranges of one file: EINVAL, not this test's subject
                }
                if self.viewed(dst, dp, pages) {
                    bump(&REFLINKS_OVER_VIEWS);
                }
                self.note_resize(dst, ((dp + pages) * BS).max(self.size(dst)));
                let n = self
                    .fs
                    .reflink(self.handle(src), sp * BS, self.handle(dst), dp * BS, pages * BS)
                    .map_err(|e| fail(format!("reflink: {e}")))?;
                prop_assert_eq!(n, pages * BS);
                let bytes = self.model[src][(sp * BS) as usize..((sp + pages) * BS) as usize].to_vec();
                let end = ((dp + pages) * BS) as usize;
                if self.model[dst].len() < end {
                    self.model[dst].resize(end, 0);
                }
                self.model[dst][(dp * BS) as usize..end].copy_from_slice(&bytes);
            }
            Op::ReflinkToEof { src, dst, src_page, dst_page } => {
                let size = self.size(src);
                if size == 0 || src == dst {
                    return Ok(());
                }
                let sp = src_page % size.div_ceil(BS);
                let count = size - sp * BS;
                // The destination range must reach its EOF when the source's last block is partial.
                let dp = self.size(dst).saturating_sub(count).div_ceil(BS) + dst_page % 2;
                if dp * BS + count > MAX_PAGES * BS {
                    return Ok(());
                }
                if size % BS != 0 {
                    bump(&REFLINKS_OF_PARTIAL_EOF_BLOCKS);
                }
                if self.viewed(dst, dp, count.div_ceil(BS)) {
                    bump(&REFLINKS_OVER_VIEWS);
                }
                self.note_resize(dst, dp * BS + count);
                // Bytes stored past the source's EOF come along in its shared last block.
                self.stored_past_eof[dst] |= self.stored_past_eof[src] && size % BS != 0;
                let n = self
                    .fs
                    .reflink(self.handle(src), sp * BS, self.handle(dst), dp * BS, 0)
                    .map_err(|e| fail(format!("reflink to EOF: {e}")))?;
                prop_assert_eq!(n, count);
                let bytes = self.model[src][(sp * BS) as usize..].to_vec();
                let at = (dp * BS) as usize;
                self.model[dst].resize(at + bytes.len(), 0);
                self.model[dst][at..].copy_from_slice(&bytes);
            }
            Op::Replace { file: path } => {
                let old = self.at_path[path];
                if self.views.iter().any(|v| v.file == old) {
                    bump(&UNLINKS_WHILE_MAPPED);
                }
                self.fs.remove_file(PATHS[path]).map_err(|e| fail(format!("unlink: {e}")))?;
                self.files.push(Some(create(&self.fs, PATHS[path])));
                self.model.push(Vec::new());
                self.stored_past_eof.push(false);
                self.at_path[path] = self.files.len() - 1;
                self.release_if_unreferenced(old);
            }
            Op::Dedupe { src, dst, src_page, dst_page, pages, copy_first } => {
                let (ws, wd) = (self.whole_pages(src), self.whole_pages(dst));
                let pages = pages.min(ws).min(wd);
                if pages == 0 {
                    return Ok(());
                }
                let sp = src_page % (ws - pages + 1);
                let dp = dst_page % (wd - pages + 1);
                if src == dst && sp < dp + pages && dp < sp + pages {
                    return Ok(());
                }
                let (s, d) = ((sp * BS) as usize, (dp * BS) as usize);
                let len = (pages * BS) as usize;
                if copy_first {
                    let copy = self.model[src][s..s + len].to_vec();
                    self.handle(dst).write_at(&copy, d as u64).map_err(|e| fail(format!("pwrite: {e}")))?;
                    self.model[dst][d..d + len].copy_from_slice(&copy);
                }
                // Equal contents share; a hole against data never does (even data of zeros).
                let (ms, md) = (self.block_map(src)?, self.block_map(dst)?);
                let holes_match = (0..pages as usize)
                    .all(|i| ms[sp as usize + i].is_none() == md[dp as usize + i].is_none());
                let equal = holes_match && self.model[src][s..s + len] == self.model[dst][d..d + len];
                let status = self
                    .fs
                    .dedupe(
                        self.handle(src),
                        s as u64,
                        len as u64,
                        &[DedupeTarget { file: self.handle(dst), offset: d as u64 }],
                    )
                    .map_err(|e| fail(format!("dedupe: {e}")))?;
                match (&status[0], equal) {
                    (DedupeStatus::Same { bytes_deduped }, true) => {
                        prop_assert_eq!(*bytes_deduped, len as u64);
                        let (ms, md) = (self.block_map(src)?, self.block_map(dst)?);
                        for i in 0..pages as usize {
                            prop_assert_eq!(
                                md[dp as usize + i],
                                ms[sp as usize + i],
                                "dedupe did not share page {}",
                                i
                            );
                        }
                        if self.viewed(dst, dp, pages) {
                            bump(&DEDUPES_SHARED_UNDER_VIEWS);
                        }
                    }
                    (DedupeStatus::Differs, false) => {}
                    (other, _) => {
                        return Err(fail(format!("dedupe of ranges that are equal={equal}: {other:?}")))
                    }
                }
            }
            Op::Unshare { file, page, pages } => {
                let size = self.size(file);
                if size == 0 {
                    return Ok(());
                }
                let off = (page % size.div_ceil(BS)) * BS;
                let len = (pages * BS).min(size - off);
                self.note_resize(file, size);
                self.fs.unshare(self.handle(file), off, len).map_err(|e| fail(format!("unshare: {e}")))?;
            }
            Op::Map { file, first_page, pages, writable } => {
                if self.views.len() >= MAX_VIEWS {
                    return Ok(());
                }
                // Mostly over the file's pages, sometimes reaching or starting past EOF.
                let first_page = first_page % (self.size(file).div_ceil(BS) + 2);
                let access = if writable { MapAccess::ReadWrite } else { MapAccess::Read };
                let map = self
                    .handle(file)
                    .map(first_page * BS, pages * BS, access)
                    .map_err(|e| fail(format!("map: {e}")))?;
                prop_assert_eq!(map.len() as u64, pages * BS);
                prop_assert_eq!(map.file_offset(), first_page * BS);
                self.views.push(LiveView { map, file, first_page, pages, writable });
            }
            Op::Store { view, at, len, seed, past_eof } => {
                let writable: Vec<usize> =
                    (0..self.views.len()).filter(|&i| self.views[i].writable).collect();
                if writable.is_empty() {
                    return Ok(());
                }
                let v = &self.views[writable[view % writable.len()]];
                let (file, start) = (v.file, v.first_page * BS);
                let size = self.size(file);
                if start >= size {
                    return Ok(()); // only past-EOF pages: a store would be SIGBUS
                }
                // Up to EOF, or up to the end of the last page inside EOF.
                let limit = if past_eof { size.next_multiple_of(BS) } else { size }.min(start + v.pages * BS);
                let at = start + at % (limit - start);
                let len = len.min(limit - at);
                let data = pattern(seed, at, len as usize);
                let state = v.map.page_state((at - start) / BS);
                match state {
                    PageState::Hole => bump(&STORES_INTO_HOLES),
                    PageState::Block { prot: PageProtection::ReadOnly, .. } => bump(&STORES_INTO_SHARED),
                    PageState::Block { prot: PageProtection::ReadWrite, .. } => bump(&STORES_INTO_PRIVATE),
                    PageState::PastEof | PageState::Poisoned { .. } | PageState::Removed => {
                        return Err(fail(format!("page at {at} inside EOF shows {state:?}")))
                    }
                }
                if at + len > size {
                    bump(&STORES_PAST_EOF);
                    self.stored_past_eof[file] = true;
                }
                let offset = (at - start) as usize;
                assert!(offset + data.len() <= v.map.len());
                // SAFETY: the range lies inside the live view and inside pages that are inside
                // EOF (so no SIGBUS); the library resolves the store faults.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.as_ptr(), v.map.as_ptr().add(offset), data.len())
                };
                let inside = (at + len).min(size);
                if at < inside {
                    self.model[file][at as usize..inside as usize]
                        .copy_from_slice(&data[..(inside - at) as usize]);
                }
            }
            Op::MakeWritable { view, at, len } => {
                if self.views.is_empty() {
                    return Ok(());
                }
                let v = &self.views[view % self.views.len()];
                let (start, size) = (v.first_page * BS, self.size(v.file));
                if start >= size {
                    return Ok(());
                }
                let limit = size.next_multiple_of(BS).min(start + v.pages * BS);
                let at = start + at % (limit - start);
                let len = len.min(limit - at);
                let offset = (at - start) as usize;
                let result = v.map.make_writable(offset, len as usize);
                if !v.writable {
                    let errno = result.err().map(|e| e.errno());
                    prop_assert_eq!(errno, Some(libc::EBADF), "make_writable on a read-only view");
                    bump(&MAKE_WRITABLE_REFUSED);
                } else {
                    result.map_err(|e| fail(format!("make_writable: {e}")))?;
                    for page in offset as u64 / BS..(offset as u64 + len).div_ceil(BS) {
                        let st = v.map.page_state(page);
                        prop_assert!(
                            matches!(st, PageState::Block { prot: PageProtection::ReadWrite, .. }),
                            "page {} after make_writable: {:?}",
                            page,
                            st
                        );
                    }
                }
            }
            Op::Unmap { view } => {
                if !self.views.is_empty() {
                    let i = view % self.views.len();
                    let gone = self.views.remove(i);
                    if self.release_if_unreferenced(gone.file) {
                        bump(&ORPHANS_FREED_BY_UNMAP);
                    }
                }
            }
        }
        Ok(())
    }

    fn block_map(&self, file: usize) -> Result<Vec<Option<u64>>, TestCaseError> {
        block_map(&self.fs, self.handle(file)).map_err(fail)
    }

    /// Everything the header promises, after one step.
    fn verify(&mut self, step: &Op) -> Result<(), TestCaseError> {
        let ctx = |what: String| format!("after {step:?}: {what}");
        for (i, f) in self.files.iter().enumerate() {
            let Some(f) = f else { continue };
            let got = read_all(f);
            if got != self.model[i] {
                let at = got.iter().zip(&self.model[i]).position(|(a, b)| a != b);
                return Err(fail(ctx(format!(
                    "file {i}: {} bytes, model {}, first difference at {at:?}",
                    got.len(),
                    self.model[i].len()
                ))));
            }
        }
        let maps: Vec<Vec<Option<u64>>> = (0..self.files.len())
            .map(|i| if self.files[i].is_some() { self.block_map(i) } else { Ok(Vec::new()) })
            .collect::<Result<_, _>>()?;
        // pool block -> the (inode, file page) entries that show it
        let mut brute: BTreeMap<u64, BTreeSet<(u64, u64)>> = BTreeMap::new();
        for (n, v) in self.views.iter().enumerate() {
            let size = self.size(v.file);
            let ino = self.handle(v.file).ino();
            for p in 0..v.pages {
                let fp = v.first_page + p;
                let state = v.map.page_state(p);
                if fp * BS >= size {
                    prop_assert_eq!(
                        state,
                        PageState::PastEof,
                        "{}",
                        ctx(format!("view {n} page {p} past EOF"))
                    );
                    continue;
                }
                let end = ((fp + 1) * BS).min(size);
                let mut buf = vec![0u8; (end - fp * BS) as usize];
                v.map.read_at((p * BS) as usize, &mut buf).map_err(|e| fail(format!("load: {e}")))?;
                if buf[..] != self.model[v.file][(fp * BS) as usize..end as usize] {
                    return Err(fail(ctx(format!(
                        "view {n} of file {} page {fp} differs from the model",
                        v.file
                    ))));
                }
                match (state, maps[v.file][fp as usize]) {
                    (PageState::Hole, None) => {}
                    (PageState::Block { phys, prot }, Some(block)) if phys == block => {
                        let private = matches!(self.fs.share_state(phys), ShareState::Single { .. });
                        let want = if v.writable && private {
                            PageProtection::ReadWrite
                        } else {
                            PageProtection::ReadOnly
                        };
                        prop_assert_eq!(prot, want, "{}", ctx(format!("view {n} page {p} (block {phys})")));
                        brute.entry(phys).or_default().insert((ino, fp));
                    }
                    (state, block) => {
                        return Err(fail(ctx(format!(
                            "view {n} page {p} shows {state:?}, file block is {block:?}"
                        ))))
                    }
                }
            }
        }
        for (&phys, entries) in &brute {
            let want = if entries.len() == 1 {
                let &(ino, page) = entries.iter().next().expect("one entry");
                PageShare::Single { ino, page }
            } else {
                bump(&SHARED_PAGE_ENTRIES);
                PageShare::Shared { entries: entries.len() }
            };
            prop_assert_eq!(
                self.fs.page_share(phys),
                Some(want),
                "{}",
                ctx(format!("page share of block {phys}"))
            );
            self.ever_mapped.insert(phys);
        }
        for map in &maps {
            self.ever_mapped.extend(map.iter().flatten());
        }
        for &phys in &self.ever_mapped {
            if !brute.contains_key(&phys) {
                prop_assert_eq!(
                    self.fs.page_share(phys),
                    None,
                    "{}",
                    ctx(format!("block {phys} is not mapped"))
                );
            }
        }
        prop_assert_eq!(self.fs.view_count(), self.views.len());
        let report = self.fs.check();
        prop_assert!(report.is_clean(), "{}", ctx(format!("check found problems:\n{report}")));
        let refs: Vec<&File> = self.files.iter().flatten().collect();
        verify_reverse_map(&self.fs, &refs).map_err(|e| fail(ctx(e)))?;
        Ok(())
    }
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World::new();
    for op in ops {
        world.run(op)?;
        world.verify(op)?;
        bump(&STEPS_RUN);
    }
    // Unmapping everything leaves no page share entry behind.
    world.views.clear();
    prop_assert_eq!(world.fs.view_count(), 0);
    for &phys in &world.ever_mapped {
        prop_assert_eq!(world.fs.page_share(phys), None);
    }
    world.verify(&Op::Unmap { view: 0 })?;
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rand_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes)
}

#[test]
fn random_sequences_with_views_match_the_model() {
    let cases = env_u64("FERRODAX_PROPTEST_CASES", 512) as u32;
    let steps = env_u64("FERRODAX_PROPTEST_STEPS", 40) as usize;
    let seed = match std::env::var("FERRODAX_PROPTEST_SEED").as_deref() {
        Ok("random") => rand_seed(),
        Ok(v) => v.parse().expect("FERRODAX_PROPTEST_SEED: a number or \"random\""),
        Err(_) => 0xda8_5eed,
    };
    eprintln!("dax model test: {cases} cases x up to {steps} steps, FERRODAX_PROPTEST_SEED={seed}");
    let mut seed_bytes = [0u8; 32];
    for (i, chunk) in seed_bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ (i as u64).wrapping_mul(0x9e37_79b9)).to_le_bytes());
    }
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let strategy = proptest::collection::vec(op(), 1..=steps);
    if let Err(e) = runner.run(&strategy, |ops| run_case(&ops)) {
        panic!("{e}\n(reproduce with FERRODAX_PROPTEST_SEED={seed})");
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counters = [
        ("stores into private pages", &STORES_INTO_PRIVATE),
        ("stores into shared pages", &STORES_INTO_SHARED),
        ("stores into holes", &STORES_INTO_HOLES),
        ("stores past EOF in the last page", &STORES_PAST_EOF),
        ("growths over bytes stored past EOF", &GROWTH_OVER_STORES_PAST_EOF),
        ("reflinks over mapped pages", &REFLINKS_OVER_VIEWS),
        ("dedupes that shared mapped pages", &DEDUPES_SHARED_UNDER_VIEWS),
        ("truncates below mapped pages", &TRUNCATES_BELOW_VIEWS),
        ("reflinks of partial EOF blocks", &REFLINKS_OF_PARTIAL_EOF_BLOCKS),
        ("unlinks of mapped files", &UNLINKS_WHILE_MAPPED),
        ("orphans freed when their last view went", &ORPHANS_FREED_BY_UNMAP),
        ("make_writable refused on read-only views", &MAKE_WRITABLE_REFUSED),
        ("blocks mapped through several entries", &SHARED_PAGE_ENTRIES),
    ];
    eprintln!("coverage: {} steps", get(&STEPS_RUN));
    for (what, c) in counters {
        eprintln!("  {what}: {}", get(c));
    }
    // The run must have exercised what this file claims to guard.
    if cases >= 32 {
        for (what, c) in counters {
            assert!(get(c) > 0, "the run never produced {what}");
        }
    }
}

// ----- deterministic cases the random sequences reach rarely -----

fn fresh() -> (Fs, File) {
    let fs = Fs::format(&Pool::memfd(POOL_BYTES).expect("memfd pool")).expect("format");
    let f = create(&fs, "/f");
    (fs, f)
}

/// Stores past EOF in the last page of a view are not file data: growing the file (truncate up,
/// pwrite past EOF, pwrite just after the old EOF, unshare past EOF) must read zeros there.
#[test]
fn stores_past_eof_in_the_last_page_do_not_appear_when_the_file_grows() {
    type Grow = fn(&Fs, &File);
    let growths: [(&str, Grow); 4] = [
        ("truncate up", |_, f| f.set_len(3 * BS).unwrap()),
        ("pwrite in a later page", |_, f| assert_eq!(f.write_at(b"x", 2 * BS).unwrap(), 1)),
        ("pwrite later in the same page", |_, f| assert_eq!(f.write_at(b"x", BS + 3000).unwrap(), 1)),
        ("unshare past EOF", |fs, f| fs.unshare(f, 0, 3 * BS).unwrap()),
    ];
    for (how, grow) in growths {
        let (fs, f) = fresh();
        f.write_at(&pattern(3, 0, (BS + 100) as usize), 0).unwrap();
        let view = f.map(0, 2 * BS, MapAccess::ReadWrite).unwrap();
        // SAFETY: inside the view's last page, which is inside EOF (the store is past EOF but
        // inside the page, where the kernel also allows it).
        unsafe { std::ptr::write_bytes(view.as_ptr().add((BS + 100) as usize), 0xEE, 1000) };
        assert_eq!(read_all(&f).len() as u64, BS + 100, "{how}: a store past EOF changed the size");
        grow(&fs, &f);
        let contents = read_all(&f);
        assert!(
            contents[(BS + 100) as usize..(BS + 1100) as usize].iter().all(|&b| b == 0),
            "{how}: bytes stored past EOF appeared in the file"
        );
        let mut through_view = vec![0u8; 1000];
        view.read_at((BS + 100) as usize, &mut through_view).unwrap();
        assert!(through_view.iter().all(|&b| b == 0), "{how}: the view shows bytes stored past EOF");
        assert_clean(&fs);
    }
}

/// Blocks freed by a truncate below a view are never shown by it, even once another file reuses them.
#[test]
fn blocks_freed_under_a_view_are_not_shown_after_reuse() {
    let (fs, f) = fresh();
    let data = pattern(5, 0, (8 * BS) as usize);
    f.write_at(&data, 0).unwrap();
    let view = f.map(0, 8 * BS, MapAccess::Read).unwrap();
    let freed: Vec<u64> = (2..8)
        .map(|p| match view.page_state(p) {
            PageState::Block { phys, .. } => phys,
            other => panic!("page {p}: {other:?}"),
        })
        .collect();
    f.set_len(2 * BS).unwrap();
    let other = create(&fs, "/other");
    other.write_at(&pattern(7, 0, (64 * BS) as usize), 0).unwrap();
    let reused = block_map(&fs, &other).unwrap().into_iter().flatten().filter(|b| freed.contains(b)).count();
    assert!(reused > 0, "the other file should have reused some freed blocks");
    for p in 2..8 {
        assert_eq!(view.page_state(p), PageState::PastEof);
    }
    for &b in &freed {
        assert_eq!(fs.page_share(b), None, "block {b} freed under the view still has entries");
    }
    f.set_len(8 * BS).unwrap();
    let mut buf = vec![0u8; (6 * BS) as usize];
    view.read_at((2 * BS) as usize, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "grown pages must read as a hole, not another file's data");
    assert_bytes(&read_all(&f)[..(2 * BS) as usize], &data[..(2 * BS) as usize], "kept pages");
    assert_clean(&fs);
}
