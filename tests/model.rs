//! Model-based property test of the core (SPEC sections 1-3).
//!
//! Guards: after any sequence of create, pwrite (unaligned, zero-length, append), truncate (up
//! and down, unaligned), reflink (aligned, to EOF with length 0, partial EOF block, same file,
//! invalid), dedupe (equal and unequal, several destinations), unshare, fallocate in every mode
//! (preallocate, punch, zero, collapse, insert, unshare; with and without KEEP_SIZE; valid and
//! invalid modes), SEEK_DATA/SEEK_HOLE, copy_file_range (reflink or byte copy), unlink, rename, writes
//! through unlinked-but-open files, and remount (clean, or after a "crash" that left an open
//! orphan) on a small memfd pool, every file's bytes, every errno and every return value equal
//! those of a plain in-memory model that implements SPEC sections 1-3 itself (the kernel's errno
//! order). After every step `check()` is clean, the reverse map equals a brute-force scan of
//! FIEMAP, and block sharing is exactly what the model predicts: the model gives each file block
//! an abstract block id (fresh on every copy-on-write, copied by reflink and dedupe), and the
//! pool blocks FIEMAP reports must be in one-to-one correspondence with those ids.
//!
//! Knobs: FERRODAX_PROPTEST_CASES (default 256), FERRODAX_PROPTEST_STEPS (default 40),
//! FERRODAX_PROPTEST_SEED (default fixed; a number, or "random").

mod model_common;

use ferrodax::format::MAX_FILE_SIZE;
use ferrodax::fs::falloc::{
    SeekTarget, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_MODE_MASK,
    FALLOC_FL_PUNCH_HOLE, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_WRITE_ZEROES, FALLOC_FL_ZERO_RANGE,
    MAX_RW_COUNT,
};
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use model_common::{
    assert_clean, block_map, create, env_u64, errno, expect_errno, open, pattern, read_all, seeded_runner,
    verify_reverse_map, verify_space, BlockIds, Mode, BS,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

const POOL_BYTES: u64 = 4 << 20;
/// Operations that would make a model file larger than this are skipped (the model holds bytes).
const FILE_SIZE_LIMIT: u64 = 384 << 10;
/// Operations that would make the model hold more distinct data blocks than this are skipped, so
/// the pool (1024 blocks) never fills up: ENOSPC has its own test file.
const DATA_BLOCK_LIMIT: usize = 480;
const I64_MAX: u64 = i64::MAX as u64;
const MAX_DEDUPE_LEN: u64 = 1 << 30;

/// Paths the operations pick from; the last one is a directory.
const PATHS: [&str; 6] = ["/a", "/b", "/c", "/d/e", "/d/f", "/d"];
const DIR: usize = 5;
const NFILES: usize = 5;

// ----- coverage counters (so the test proves it exercised what it claims) -----

static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);
static DELTAS: AtomicU64 = AtomicU64::new(0);
static REFLINKS_OK: AtomicU64 = AtomicU64::new(0);
static REFLINKS_PARTIAL_EOF: AtomicU64 = AtomicU64::new(0);
static REFLINKS_FAILED: AtomicU64 = AtomicU64::new(0);
static DEDUPE_SAME_SHARED: AtomicU64 = AtomicU64::new(0);
static DEDUPE_DIFFERS: AtomicU64 = AtomicU64::new(0);
static DEDUPE_FAILED: AtomicU64 = AtomicU64::new(0);
static COW_WRITES_INTO_SHARED: AtomicU64 = AtomicU64::new(0);
static REMOUNTS: AtomicU64 = AtomicU64::new(0);
static STEPS_RUN: AtomicU64 = AtomicU64::new(0);
static FALLOCATES_OK: AtomicU64 = AtomicU64::new(0);
static SHIFTS_OF_SHARED: AtomicU64 = AtomicU64::new(0);
static PUNCHES_OF_SHARED: AtomicU64 = AtomicU64::new(0);
static COPIES_LINKED: AtomicU64 = AtomicU64::new(0);
static COPIES_BYTES: AtomicU64 = AtomicU64::new(0);
static SEEKS_FOUND: AtomicU64 = AtomicU64::new(0);

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

// ----- operations as generated, relative to file sizes -----

/// An offset, resolved against a file's size when the step runs (so EOF cases are common).
#[derive(Debug, Clone, Copy)]
enum Off {
    Block(u64),
    Bytes(u64),
    Eof,
    /// The last block boundary at or below EOF, minus this many blocks.
    EofDown(u64),
    /// The first block boundary at or above EOF.
    EofUp,
    Huge(u64),
    /// The source's offset (dedupe destinations): copies made at equal offsets then match.
    SourceOffset,
}

impl Off {
    fn at(self, size: u64) -> u64 {
        match self {
            Off::Block(k) => k * BS,
            Off::Bytes(n) => n,
            Off::Eof => size,
            Off::EofDown(k) => (size / BS * BS).saturating_sub(k * BS),
            Off::EofUp => size.next_multiple_of(BS),
            Off::Huge(v) => v,
            Off::SourceOffset => unreachable!("resolved with at_source"),
        }
    }

    fn at_source(self, size: u64, src_off: u64) -> u64 {
        match self {
            Off::SourceOffset => src_off,
            other => other.at(size),
        }
    }
}

/// A length, resolved against the source size and offset when the step runs.
#[derive(Debug, Clone, Copy)]
enum Len {
    Zero,
    Blocks(u64),
    Bytes(u64),
    /// Exactly to source EOF.
    ToEof,
    /// This many bytes past source EOF.
    PastEof(u64),
    Huge(u64),
}

impl Len {
    fn at(self, size: u64, off: u64) -> u64 {
        match self {
            Len::Zero => 0,
            Len::Blocks(k) => k * BS,
            Len::Bytes(n) => n,
            Len::ToEof => size.saturating_sub(off),
            Len::PastEof(n) => size.saturating_sub(off) + n,
            Len::Huge(v) => v,
        }
    }
}

const HUGE: [u64; 9] = [
    u64::MAX,
    1 << 63,
    I64_MAX,
    I64_MAX - BS + 1,
    MAX_FILE_SIZE + 100,
    MAX_FILE_SIZE,
    MAX_FILE_SIZE - BS,
    MAX_FILE_SIZE - 100,
    1 << 62,
];

/// A path, resolved against the model when the step runs: usually one that exists.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The k-th existing file (modulo their number); any file path when there is none.
    Existing(usize),
    /// This index of `PATHS` (which may be missing, or the directory).
    Any(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        path: Pick,
    },
    Write {
        path: Pick,
        mode: Mode,
        off: Off,
        len: u64,
        seed: u8,
    },
    Churn {
        path: Pick,
        count: usize,
        seed: u64,
    },
    /// A plain copy (read, then pwrite): equal data in different blocks, for dedupe to find.
    Copy {
        src: Pick,
        src_off: Off,
        dst: Pick,
        dst_off: Off,
        len: Len,
    },
    /// CopyWhole, then dedupe the whole source into the copy (equal files, both ending at EOF).
    CopyThenDedupe {
        src: Pick,
        dst: Pick,
    },
    /// Truncate-on-open the destination, then copy the whole source into it.
    CopyWhole {
        src: Pick,
        dst: Pick,
    },
    Truncate {
        path: Pick,
        mode: Mode,
        size: Off,
    },
    Reflink {
        src: Pick,
        src_mode: Mode,
        src_off: Off,
        dst: Pick,
        dst_mode: Mode,
        dst_off: Off,
        len: Len,
    },
    Dedupe {
        src: Pick,
        src_mode: Mode,
        src_off: Off,
        len: Len,
        targets: Vec<(Pick, Mode, Off)>,
    },
    Unshare {
        path: Pick,
        mode: Mode,
        off: Off,
        len: Len,
    },
    Fallocate {
        path: Pick,
        mode: Mode,
        falloc_mode: u32,
        off: Off,
        len: Len,
    },
    Seek {
        path: Pick,
        mode: Mode,
        off: Off,
        target: SeekTarget,
    },
    CopyRange {
        src: Pick,
        src_mode: Mode,
        src_off: Off,
        dst: Pick,
        dst_mode: Mode,
        dst_off: Off,
        len: Len,
    },
    Unlink {
        path: Pick,
    },
    Rename {
        from: Pick,
        to: Pick,
    },
    Remount,
    /// A checkpoint now: a delta whenever one is allowed (the harness mounts preferring them).
    Checkpoint,
    /// Unlink a file (or rename another one over it) while it is open, then write through it.
    OrphanWrite {
        path: Pick,
        via: Option<Pick>,
        off: Off,
        len: u64,
        seed: u8,
    },
    CrashWithOrphan {
        path: Pick,
    },
}

/// An operation with concrete numbers.
#[derive(Debug, Clone)]
enum ROp {
    Create { path: usize },
    Write { path: usize, mode: Mode, off: u64, len: u64, seed: u8 },
    Churn { path: usize, writes: Vec<(u64, u64, u8)> },
    Copy { src: usize, src_off: u64, dst: usize, dst_off: u64, len: u64 },
    CopyWhole { src: usize, dst: usize },
    Truncate { path: usize, mode: Mode, size: u64 },
    Reflink { src: usize, src_mode: Mode, src_off: u64, dst: usize, dst_mode: Mode, dst_off: u64, len: u64 },
    Dedupe { src: usize, src_mode: Mode, src_off: u64, len: u64, targets: Vec<(usize, Mode, u64)> },
    Unshare { path: usize, mode: Mode, off: u64, len: u64 },
    Fallocate { path: usize, mode: Mode, falloc_mode: u32, off: u64, len: u64 },
    Seek { path: usize, mode: Mode, off: u64, target: SeekTarget },
    CopyRange { src: usize, src_mode: Mode, src_off: u64, dst: usize, dst_mode: Mode, dst_off: u64, len: u64 },
    Unlink { path: usize },
    Rename { from: usize, to: usize },
    Remount,
    Checkpoint,
    OrphanWrite { path: usize, via: Option<usize>, off: u64, len: u64, seed: u8 },
    CrashWithOrphan { path: usize },
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The steps of one operation (one, except for composite operations).
fn resolve_steps(op: &Op, m: &Model) -> Vec<ROp> {
    match *op {
        Op::CopyThenDedupe { src, dst } => {
            let ROp::CopyWhole { src, dst } = resolve(&Op::CopyWhole { src, dst }, m) else {
                unreachable!("CopyWhole resolves to CopyWhole")
            };
            let dedupe = ROp::Dedupe {
                src,
                src_mode: Mode::ReadOnly,
                src_off: 0,
                len: m.size(src),
                targets: vec![(dst, Mode::ReadWrite, 0)],
            };
            vec![ROp::CopyWhole { src, dst }, dedupe]
        }
        _ => vec![resolve(op, m)],
    }
}

fn resolve(op: &Op, m: &Model) -> ROp {
    let p = |pick: Pick| match pick {
        Pick::Existing(k) if !m.files.is_empty() => {
            *m.files.keys().nth(k % m.files.len()).expect("non-empty")
        }
        Pick::Existing(k) => k % NFILES,
        Pick::Any(i) => i,
    };
    match *op {
        Op::Create { path } => ROp::Create { path: p(path) },
        Op::Write { path, mode, off, len, seed } => {
            let path = p(path);
            ROp::Write { path, mode, off: off.at(m.size(path)), len, seed }
        }
        Op::Churn { path, count, seed } => {
            let mut s = seed;
            let writes = (0..count)
                .map(|_| {
                    let off = splitmix(&mut s) % (64 << 10);
                    let len = 1 + splitmix(&mut s) % 400;
                    let seed = 1 + (splitmix(&mut s) % 5) as u8;
                    (off, len, seed)
                })
                .collect();
            ROp::Churn { path: p(path), writes }
        }
        Op::Copy { src, src_off, dst, dst_off, len } => {
            let (src, dst) = (p(src), p(dst));
            let src_off = src_off.at(m.size(src));
            ROp::Copy {
                src,
                src_off,
                dst,
                dst_off: dst_off.at(m.size(dst)),
                len: len.at(m.size(src), src_off),
            }
        }
        Op::CopyWhole { src, dst } => ROp::CopyWhole { src: p(src), dst: p(dst) },
        Op::CopyThenDedupe { .. } => unreachable!("composite: resolve_steps"),
        Op::Truncate { path, mode, size } => {
            let path = p(path);
            ROp::Truncate { path, mode, size: size.at(m.size(path)) }
        }
        Op::Reflink { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
            let (src, dst) = (p(src), p(dst));
            let src_off = src_off.at(m.size(src));
            ROp::Reflink {
                src,
                src_mode,
                src_off,
                dst,
                dst_mode,
                dst_off: dst_off.at(m.size(dst)),
                len: len.at(m.size(src), src_off),
            }
        }
        Op::Dedupe { src, src_mode, src_off, len, ref targets } => {
            let src = p(src);
            let src_off = src_off.at(m.size(src));
            ROp::Dedupe {
                src,
                src_mode,
                src_off,
                len: len.at(m.size(src), src_off),
                targets: targets
                    .iter()
                    .map(|&(t, mode, off)| {
                        let t = p(t);
                        (t, mode, off.at_source(m.size(t), src_off))
                    })
                    .collect(),
            }
        }
        Op::Unshare { path, mode, off, len } => {
            let path = p(path);
            let off = off.at(m.size(path));
            ROp::Unshare { path, mode, off, len: len.at(m.size(path), off) }
        }
        Op::Fallocate { path, mode, falloc_mode, off, len } => {
            let path = p(path);
            let off = off.at(m.size(path));
            ROp::Fallocate { path, mode, falloc_mode, off, len: len.at(m.size(path), off) }
        }
        Op::Seek { path, mode, off, target } => {
            let path = p(path);
            ROp::Seek { path, mode, off: off.at(m.size(path)), target }
        }
        Op::CopyRange { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
            let (src, dst) = (p(src), p(dst));
            let src_off = src_off.at(m.size(src));
            ROp::CopyRange {
                src,
                src_mode,
                src_off,
                dst,
                dst_mode,
                dst_off: dst_off.at(m.size(dst)),
                len: len.at(m.size(src), src_off),
            }
        }
        Op::Unlink { path } => ROp::Unlink { path: p(path) },
        Op::Rename { from, to } => ROp::Rename { from: p(from), to: p(to) },
        Op::Remount => ROp::Remount,
        Op::Checkpoint => ROp::Checkpoint,
        Op::OrphanWrite { path, via, off, len, seed } => {
            let path = p(path);
            ROp::OrphanWrite { path, via: via.map(p), off: off.at(m.size(path)), len, seed }
        }
        Op::CrashWithOrphan { path } => ROp::CrashWithOrphan { path: p(path) },
    }
}

// ----- outcomes -----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Same(u64),
    Differs,
    Failed(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Bytes(u64),
    /// Bytes written through an unlinked file, and its contents before the last close.
    Orphan(u64, u64),
    /// Per opened dedupe destination (its index in the request): the status.
    Statuses(Vec<(usize, Status)>),
    /// The model cannot follow (the file would grow too large to hold); the step is not run.
    Skip,
}

type Res = Result<Outcome, i32>;

/// FNV-1a of a byte string (outcomes carry checksums, not whole files).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

// ----- the model -----

#[derive(Debug, Clone, Default)]
struct MFile {
    data: Vec<u8>,
    /// Abstract block id per file block; None is a hole. Same id = same pool block.
    blocks: Vec<Option<u64>>,
}

#[derive(Debug, Clone, Default)]
struct Model {
    files: BTreeMap<usize, MFile>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct MHandle {
    path: usize,
    mode: Mode,
}

impl MHandle {
    fn is_dir(self) -> bool {
        self.path == DIR
    }
}

fn align_up(x: u64) -> u64 {
    x.next_multiple_of(BS)
}

/// remap_verify_area for both ranges: offsets and lengths are signed 64-bit, no overflow.
fn remap_verify_area(a: u64, b: u64, len: u64) -> Result<(), i32> {
    let fits = |off: u64| off <= I64_MAX && off.checked_add(len).is_some_and(|e| e <= I64_MAX);
    if len > I64_MAX || !fits(a) || !fits(b) {
        return Err(libc::EINVAL);
    }
    Ok(())
}

impl Model {
    fn size(&self, path: usize) -> u64 {
        self.files.get(&path).map_or(0, |f| f.data.len() as u64)
    }

    fn open(&self, path: usize, mode: Mode) -> Result<MHandle, i32> {
        if path == DIR {
            return if mode.writes() { Err(libc::EISDIR) } else { Ok(MHandle { path, mode }) };
        }
        if self.files.contains_key(&path) {
            Ok(MHandle { path, mode })
        } else {
            Err(libc::ENOENT)
        }
    }

    fn fresh(&mut self) -> Option<u64> {
        self.next_id += 1;
        Some(self.next_id)
    }

    fn resize(&mut self, path: usize, size: u64) {
        let f = self.files.get_mut(&path).expect("model file");
        f.data.resize(size as usize, 0);
        f.blocks.resize(size.div_ceil(BS) as usize, None);
    }

    fn refcounts(&self) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for f in self.files.values() {
            for id in f.blocks.iter().flatten() {
                *counts.entry(*id).or_insert(0) += 1;
            }
        }
        counts
    }

    fn data_blocks(&self) -> usize {
        self.refcounts().len()
    }

    fn is_shared(&self, path: usize, fb: u64) -> bool {
        let Some(id) = self.files[&path].blocks.get(fb as usize).copied().flatten() else { return false };
        self.files.values().flat_map(|f| f.blocks.iter()).filter(|b| **b == Some(id)).count() > 1
    }

    fn apply(&mut self, op: &ROp) -> Res {
        match *op {
            ROp::Create { path } => {
                if path == DIR || self.files.contains_key(&path) {
                    return Err(libc::EEXIST);
                }
                self.files.insert(path, MFile::default());
                Ok(Outcome::Done)
            }
            ROp::Write { path, mode, off, len, seed } => {
                let h = self.open(path, mode)?;
                self.write(h, off, len, seed)
            }
            ROp::Churn { path, ref writes } => {
                let h = self.open(path, Mode::ReadWrite)?;
                let mut total = 0;
                for &(off, len, seed) in writes {
                    match self.write(h, off, len, seed)? {
                        Outcome::Bytes(n) => total += n,
                        other => return Ok(other),
                    }
                }
                Ok(Outcome::Bytes(total))
            }
            ROp::Copy { src, src_off, dst, dst_off, len } => {
                self.open(src, Mode::ReadOnly)?;
                let h = self.open(dst, Mode::ReadWrite)?;
                if src == DIR {
                    return Err(libc::EISDIR);
                }
                let data = &self.files[&src].data;
                let from = (src_off as usize).min(data.len());
                let to = (src_off.saturating_add(len) as usize).min(data.len());
                let bytes = data[from..to].to_vec();
                self.write_data(h, dst_off, &bytes)
            }
            ROp::CopyWhole { src, dst } => {
                self.open(src, Mode::ReadOnly)?;
                let h = self.open(dst, Mode::ReadWrite)?;
                let f = self.files.get_mut(&dst).expect("open checked");
                f.data.clear();
                f.blocks.clear();
                if src == DIR {
                    return Err(libc::EISDIR);
                }
                let bytes = self.files[&src].data.clone();
                self.write_data(h, 0, &bytes)
            }
            ROp::Truncate { path, mode, size } => {
                let h = self.open(path, mode)?;
                if size > I64_MAX || !h.mode.writes() {
                    return Err(libc::EINVAL);
                }
                if size > MAX_FILE_SIZE {
                    return Err(libc::EFBIG);
                }
                if size > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                let old = self.size(path);
                if size < old {
                    let f = self.files.get_mut(&path).expect("open checked");
                    f.data.truncate(size as usize);
                    f.blocks.truncate(size.div_ceil(BS) as usize);
                    if size % BS != 0 && f.blocks.last().copied().flatten().is_some() {
                        let id = self.fresh();
                        *self
                            .files
                            .get_mut(&path)
                            .expect("open checked")
                            .blocks
                            .last_mut()
                            .expect("partial") = id;
                    }
                } else {
                    self.resize(path, size);
                }
                Ok(Outcome::Done)
            }
            ROp::Reflink { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
                let s = self.open(src, src_mode)?;
                let d = self.open(dst, dst_mode)?;
                self.reflink(s, src_off, d, dst_off, len)
            }
            ROp::Dedupe { src, src_mode, src_off, len, ref targets } => {
                let s = self.open(src, src_mode)?;
                let opened: Vec<(usize, MHandle, u64)> = targets
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &(p, mode, off))| self.open(p, mode).ok().map(|h| (i, h, off)))
                    .collect();
                self.dedupe(s, src_off, len, &opened)
            }
            ROp::Unshare { path, mode, off, len } => {
                let h = self.open(path, mode)?;
                if off > I64_MAX || len == 0 || len > I64_MAX {
                    return Err(libc::EINVAL);
                }
                if !h.mode.writes() {
                    return Err(libc::EBADF);
                }
                let end = off + len;
                if end > MAX_FILE_SIZE {
                    return Err(libc::EFBIG);
                }
                let size = self.size(path);
                if end > size && end > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                if off < size {
                    let counts = self.refcounts();
                    for fb in off / BS..end.min(size).div_ceil(BS) {
                        let id = self.files[&path].blocks[fb as usize];
                        if id.is_some_and(|id| counts[&id] > 1) {
                            let new = self.fresh();
                            self.files.get_mut(&path).expect("open checked").blocks[fb as usize] = new;
                        }
                    }
                }
                if end > size {
                    self.resize(path, end);
                }
                Ok(Outcome::Done)
            }
            ROp::Fallocate { path, mode, falloc_mode, off, len } => {
                let h = self.open(path, mode)?;
                self.fallocate(h, falloc_mode, off, len)
            }
            ROp::Seek { path, mode, off, target } => {
                let h = self.open(path, mode)?;
                self.seek(h, off, target)
            }
            ROp::CopyRange { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
                let s = self.open(src, src_mode)?;
                let d = self.open(dst, dst_mode)?;
                self.copy_range(s, src_off, d, dst_off, len)
            }
            ROp::Unlink { path } => {
                if path == DIR {
                    return Err(libc::EISDIR);
                }
                self.files.remove(&path).map(|_| Outcome::Done).ok_or(libc::ENOENT)
            }
            ROp::Rename { from, to } => {
                let f = self.files.remove(&from).ok_or(libc::ENOENT)?;
                self.files.insert(to, f);
                Ok(Outcome::Done)
            }
            ROp::Remount | ROp::Checkpoint => Ok(Outcome::Done),
            ROp::OrphanWrite { path, via, off, len, seed } => {
                let h = self.open(path, Mode::ReadWrite)?;
                if via.is_some_and(|from| !self.files.contains_key(&from)) {
                    return Err(libc::ENOENT);
                }
                if via == Some(path) {
                    // rename onto itself does nothing: the file keeps its name.
                    let n = match self.write(h, off, len, seed)? {
                        Outcome::Bytes(n) => n,
                        other => return Ok(other),
                    };
                    return Ok(Outcome::Orphan(n, fnv(&self.files[&path].data)));
                }
                // The name goes away before the write, so a failed write still loses it.
                let written = self.write(h, off, len, seed);
                if written == Ok(Outcome::Skip) {
                    return Ok(Outcome::Skip);
                }
                let orphan = self.files.remove(&path).expect("open checked");
                if let Some(from) = via {
                    let moved = self.files.remove(&from).expect("checked");
                    self.files.insert(path, moved);
                }
                match written? {
                    Outcome::Bytes(n) => Ok(Outcome::Orphan(n, fnv(&orphan.data))),
                    other => Ok(other),
                }
            }
            ROp::CrashWithOrphan { path } => {
                self.open(path, Mode::ReadWrite)?;
                self.files.remove(&path);
                Ok(Outcome::Done)
            }
        }
    }

    /// pwrite: the kernel's order (negative offset, EBADF, overflow, zero length, EFBIG, short
    /// write at the size limit); every written block becomes a new block.
    fn write(&mut self, h: MHandle, off: u64, len: u64, seed: u8) -> Res {
        self.write_data(h, off, &pattern(seed, off, len as usize))
    }

    fn write_data(&mut self, h: MHandle, off: u64, bytes: &[u8]) -> Res {
        let len = bytes.len() as u64;
        if off > I64_MAX {
            return Err(libc::EINVAL);
        }
        if !h.mode.writes() {
            return Err(libc::EBADF);
        }
        if off.checked_add(len).is_none_or(|e| e > I64_MAX) {
            return Err(libc::EINVAL);
        }
        if len == 0 {
            return Ok(Outcome::Bytes(0));
        }
        let size = self.size(h.path);
        let pos = if h.mode.appends() { size } else { off };
        if pos >= MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        let n = len.min(MAX_FILE_SIZE - pos);
        let end = pos + n;
        if end > FILE_SIZE_LIMIT {
            return Ok(Outcome::Skip);
        }
        if (pos / BS..end.div_ceil(BS)).any(|fb| self.is_shared(h.path, fb)) {
            bump(&COW_WRITES_INTO_SHARED);
        }
        if end > size {
            self.resize(h.path, end);
        }
        for fb in pos / BS..end.div_ceil(BS) {
            let id = self.fresh();
            self.files.get_mut(&h.path).expect("open").blocks[fb as usize] = id;
        }
        let f = self.files.get_mut(&h.path).expect("open");
        f.data[pos as usize..end as usize].copy_from_slice(&bytes[..n as usize]);
        Ok(Outcome::Bytes(n))
    }

    /// FICLONERANGE in the kernel's order (vfs_clone_file_range, generic_remap_checks,
    /// generic_remap_check_len).
    fn reflink(&mut self, s: MHandle, src_off: u64, d: MHandle, dst_off: u64, len: u64) -> Res {
        self.remap(s, src_off, d, dst_off, len, false)
    }

    /// FICLONERANGE, or with `can_shorten` the remap copy_file_range tries first
    /// (REMAP_FILE_CAN_SHORTEN: whole blocks, a partial EOF block only at or past the
    /// destination's EOF).
    fn remap(
        &mut self,
        s: MHandle,
        src_off: u64,
        d: MHandle,
        dst_off: u64,
        len: u64,
        can_shorten: bool,
    ) -> Res {
        remap_verify_area(src_off, dst_off, len)?;
        if s.is_dir() || d.is_dir() {
            return Err(libc::EISDIR);
        }
        if !s.mode.reads() || !d.mode.writes() || d.mode.appends() {
            return Err(libc::EBADF);
        }
        let (isize, dsize) = (self.size(s.path), self.size(d.path));
        let mut len = len;
        if len == 0 {
            if src_off == isize {
                return Ok(Outcome::Bytes(0));
            }
            if src_off > isize {
                return Err(libc::EINVAL);
            }
            len = isize - src_off;
        }
        if src_off % BS != 0 || dst_off % BS != 0 || src_off >= isize {
            return Err(libc::EINVAL);
        }
        let mut count = len.min(isize - src_off);
        if dst_off >= MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        count = count.min(MAX_FILE_SIZE - dst_off);
        let bcount = if src_off + count == isize {
            align_up(isize) - src_off
        } else {
            count -= count % BS;
            count
        };
        if s.path == d.path && dst_off + bcount > src_off && dst_off < src_off + bcount {
            return Err(libc::EINVAL);
        }
        if count != len && !can_shorten {
            return Err(libc::EINVAL);
        }
        let mut bcount = bcount;
        if count % BS != 0 && dst_off + count < dsize {
            if !can_shorten {
                return Err(libc::EINVAL);
            }
            count -= count % BS;
            bcount = count;
        }
        if count == 0 {
            return Ok(Outcome::Bytes(0));
        }
        let new_size = dsize.max(dst_off + count);
        if new_size > FILE_SIZE_LIMIT {
            return Ok(Outcome::Skip);
        }
        if count % BS != 0 {
            bump(&REFLINKS_PARTIAL_EOF);
        }
        let src_file = &self.files[&s.path];
        let bytes = src_file.data[src_off as usize..(src_off + count) as usize].to_vec();
        let ids = src_file.blocks[(src_off / BS) as usize..((src_off + bcount) / BS) as usize].to_vec();
        self.resize(d.path, new_size);
        let f = self.files.get_mut(&d.path).expect("open checked");
        f.data[dst_off as usize..(dst_off + count) as usize].copy_from_slice(&bytes);
        f.blocks[(dst_off / BS) as usize..][..ids.len()].copy_from_slice(&ids);
        Ok(Outcome::Bytes(count))
    }

    /// fallocate(2): vfs_fallocate's checks, then XFS's, in the kernel's order; each mode on the
    /// model's bytes and block ids (a rewritten partial block gets a fresh id; preallocation and
    /// zeroing give fresh ids; collapse and insert move the ids with the bytes).
    fn fallocate(&mut self, h: MHandle, mode: u32, off: u64, len: u64) -> Res {
        if off > I64_MAX || len == 0 || len > I64_MAX {
            return Err(libc::EINVAL);
        }
        if mode & !(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE) != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let valid = match mode & FALLOC_FL_MODE_MASK {
            0 | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_ZERO_RANGE => true,
            FALLOC_FL_PUNCH_HOLE => keep,
            FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_WRITE_ZEROES => !keep,
            _ => false,
        };
        if !valid {
            return Err(libc::EOPNOTSUPP);
        }
        if !h.mode.writes() {
            return Err(libc::EBADF);
        }
        let end = off + len;
        if end > MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        let size = self.size(h.path);
        let path = h.path;
        let new_size = if keep { size } else { size.max(end) };
        let zero = |m: &mut Model, from: u64, to: u64| {
            if from < to {
                m.files.get_mut(&path).expect("open").data[from as usize..to as usize].fill(0);
            }
        };
        match mode & FALLOC_FL_MODE_MASK {
            0 => {
                if new_size > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                self.resize(path, new_size);
                for fb in off / BS..end.min(new_size).div_ceil(BS) {
                    if self.files[&path].blocks[fb as usize].is_none() {
                        let id = self.fresh();
                        self.files.get_mut(&path).expect("open").blocks[fb as usize] = id;
                    }
                }
            }
            FALLOC_FL_PUNCH_HOLE => {
                let (first_whole, end_whole) = (off.div_ceil(BS), (end / BS).min(size.div_ceil(BS)));
                if (off / BS..end.min(size).div_ceil(BS)).any(|fb| self.is_shared(path, fb)) {
                    bump(&PUNCHES_OF_SHARED);
                }
                for fb in first_whole..end_whole.max(first_whole) {
                    self.files.get_mut(&path).expect("open").blocks[fb as usize] = None;
                }
                if off < size {
                    let mut edges = vec![off / BS, (end - 1) / BS];
                    edges.dedup();
                    for fb in edges {
                        if (first_whole..end_whole).contains(&fb) || fb * BS >= size {
                            continue;
                        }
                        if self.files[&path].blocks[fb as usize].is_some() {
                            let id = self.fresh();
                            self.files.get_mut(&path).expect("open").blocks[fb as usize] = id;
                        }
                    }
                    zero(self, off, end.min(size));
                }
            }
            FALLOC_FL_ZERO_RANGE => {
                if new_size > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                self.resize(path, new_size);
                let zero_end = end.min(new_size);
                if off < zero_end {
                    for fb in off / BS..zero_end.div_ceil(BS) {
                        let id = self.fresh();
                        self.files.get_mut(&path).expect("open").blocks[fb as usize] = id;
                    }
                    zero(self, off, zero_end);
                }
            }
            FALLOC_FL_COLLAPSE_RANGE => {
                if (off | len) % BS != 0 || end >= size {
                    return Err(libc::EINVAL);
                }
                if (0..size.div_ceil(BS)).any(|fb| self.is_shared(path, fb)) {
                    bump(&SHIFTS_OF_SHARED);
                }
                let f = self.files.get_mut(&path).expect("open");
                f.data.drain(off as usize..end as usize);
                f.blocks.drain((off / BS) as usize..(end / BS) as usize);
            }
            FALLOC_FL_INSERT_RANGE => {
                if (off | len) % BS != 0 {
                    return Err(libc::EINVAL);
                }
                if MAX_FILE_SIZE - size < len {
                    return Err(libc::EFBIG);
                }
                if off >= size {
                    return Err(libc::EINVAL);
                }
                if size + len > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                if (0..size.div_ceil(BS)).any(|fb| self.is_shared(path, fb)) {
                    bump(&SHIFTS_OF_SHARED);
                }
                let f = self.files.get_mut(&path).expect("open");
                f.data.splice(off as usize..off as usize, std::iter::repeat_n(0, len as usize));
                let at = (off / BS) as usize;
                f.blocks.splice(at..at, std::iter::repeat_n(None, (len / BS) as usize));
            }
            FALLOC_FL_UNSHARE_RANGE => {
                if !keep && end > size && end > FILE_SIZE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                if off < size {
                    let counts = self.refcounts();
                    for fb in off / BS..end.min(size).div_ceil(BS) {
                        let id = self.files[&path].blocks[fb as usize];
                        if id.is_some_and(|id| counts[&id] > 1) {
                            let new = self.fresh();
                            self.files.get_mut(&path).expect("open checked").blocks[fb as usize] = new;
                        }
                    }
                }
                if !keep && end > size {
                    self.resize(path, end);
                }
            }
            _ => return Err(libc::EOPNOTSUPP), // FALLOC_FL_WRITE_ZEROES: XFS does not support it
        }
        Ok(Outcome::Done)
    }

    /// lseek SEEK_DATA / SEEK_HOLE: ENXIO at or past EOF (a directory has no data), a mapped
    /// block is data, EOF is a hole.
    fn seek(&self, h: MHandle, off: u64, target: SeekTarget) -> Res {
        let size = if h.is_dir() { 0 } else { self.size(h.path) };
        if off >= size {
            return Err(libc::ENXIO);
        }
        let blocks = &self.files[&h.path].blocks;
        for fb in off / BS..size.div_ceil(BS) {
            let mapped = blocks[fb as usize].is_some();
            if mapped == (target == SeekTarget::Data) {
                return Ok(Outcome::Bytes((fb * BS).max(off)));
            }
        }
        match target {
            SeekTarget::Data => Err(libc::ENXIO),
            SeekTarget::Hole => Ok(Outcome::Bytes(size)),
        }
    }

    /// copy_file_range(2): generic_copy_file_checks and rw_verify_area in the kernel's order,
    /// then the remap that may shorten (block-aligned), else a byte copy (fresh blocks).
    fn copy_range(&mut self, s: MHandle, src_off: u64, d: MHandle, dst_off: u64, len: u64) -> Res {
        if s.is_dir() || d.is_dir() {
            return Err(libc::EISDIR);
        }
        if !s.mode.reads() || !d.mode.writes() || d.mode.appends() {
            return Err(libc::EBADF);
        }
        if src_off.checked_add(len).is_none() || dst_off.checked_add(len).is_none() {
            return Err(libc::EOVERFLOW);
        }
        let size_in = self.size(s.path);
        let mut count =
            if src_off as i64 >= size_in as i64 { 0 } else { len.min(size_in.wrapping_sub(src_off)) };
        if dst_off as i64 >= MAX_FILE_SIZE as i64 {
            return Err(libc::EFBIG);
        }
        if dst_off <= I64_MAX {
            count = count.min(MAX_FILE_SIZE - dst_off);
        }
        if s.path == d.path && dst_off.wrapping_add(count) > src_off && dst_off < src_off.wrapping_add(count)
        {
            return Err(libc::EINVAL);
        }
        for pos in [src_off, dst_off] {
            if count > I64_MAX || pos > I64_MAX || pos + count > I64_MAX {
                return Err(libc::EINVAL);
            }
        }
        if count == 0 {
            return Ok(Outcome::Bytes(0));
        }
        let count = count.min(MAX_RW_COUNT);
        match self.remap(s, src_off, d, dst_off, count, true) {
            Ok(Outcome::Bytes(n)) if n > 0 => {
                bump(&COPIES_LINKED);
                return Ok(Outcome::Bytes(n));
            }
            Ok(Outcome::Skip) => return Ok(Outcome::Skip),
            _ => {}
        }
        let bytes = self.files[&s.path].data[src_off as usize..(src_off + count) as usize].to_vec();
        let written = self.write_data(d, dst_off, &bytes);
        if matches!(written, Ok(Outcome::Bytes(_))) {
            bump(&COPIES_BYTES);
        }
        written
    }

    /// FIDEDUPERANGE: request-level checks (vfs_dedupe_file_range), then per destination
    /// (vfs_dedupe_file_range_one, generic_remap_checks with REMAP_FILE_DEDUP|CAN_SHORTEN).
    fn dedupe(&mut self, s: MHandle, src_off: u64, len: u64, targets: &[(usize, MHandle, u64)]) -> Res {
        if !s.mode.reads() {
            return Err(libc::EINVAL);
        }
        if s.is_dir() {
            return Err(libc::EISDIR);
        }
        remap_verify_area(src_off, 0, len)?;
        let isize = self.size(s.path);
        if src_off + len > isize {
            return Err(libc::EINVAL);
        }
        let len = len.min(MAX_DEDUPE_LEN);
        let mut out = Vec::new();
        for &(i, d, dst_off) in targets {
            let status = match self.dedupe_one(s, src_off, d, dst_off, len) {
                Ok(true) => Status::Same(len),
                Ok(false) => Status::Differs,
                Err(e) => Status::Failed(e),
            };
            out.push((i, status));
        }
        Ok(Outcome::Statuses(out))
    }

    fn dedupe_one(
        &mut self,
        s: MHandle,
        src_off: u64,
        d: MHandle,
        dst_off: u64,
        len: u64,
    ) -> Result<bool, i32> {
        remap_verify_area(src_off, dst_off, len)?;
        if d.is_dir() {
            return Err(libc::EISDIR);
        }
        if len == 0 {
            return Ok(true);
        }
        let (isize, dsize) = (self.size(s.path), self.size(d.path));
        if src_off % BS != 0 || dst_off % BS != 0 {
            return Err(libc::EINVAL);
        }
        if src_off >= isize || src_off + len > isize || dst_off >= dsize || dst_off + len > dsize {
            return Err(libc::EINVAL);
        }
        let mut count = len;
        let bcount = if src_off + count == isize && dst_off + count == dsize {
            align_up(isize) - src_off
        } else {
            count -= count % BS;
            count
        };
        if s.path == d.path && dst_off + bcount > src_off && dst_off < src_off + bcount {
            return Err(libc::EINVAL);
        }
        if count == 0 {
            return Ok(true);
        }
        if !self.ranges_equal(s.path, src_off, d.path, dst_off, count) {
            return Ok(false);
        }
        let ids =
            self.files[&s.path].blocks[(src_off / BS) as usize..((src_off + bcount) / BS) as usize].to_vec();
        let f = self.files.get_mut(&d.path).expect("open checked");
        f.blocks[(dst_off / BS) as usize..][..ids.len()].copy_from_slice(&ids);
        Ok(true)
    }

    /// SPEC 2: hole vs hole is equal, hole vs data differs, else the bytes decide.
    fn ranges_equal(&self, a: usize, a_off: u64, b: usize, b_off: u64, count: u64) -> bool {
        let (fa, fb) = (&self.files[&a], &self.files[&b]);
        (0..count.div_ceil(BS)).all(|i| {
            let ba = fa.blocks[(a_off / BS + i) as usize];
            let bb = fb.blocks[(b_off / BS + i) as usize];
            match (ba, bb) {
                (None, None) => true,
                (Some(_), None) | (None, Some(_)) => false,
                (Some(x), Some(y)) if x == y => true,
                _ => {
                    let lo = i * BS;
                    let hi = count.min(lo + BS);
                    fa.data[(a_off + lo) as usize..(a_off + hi) as usize]
                        == fb.data[(b_off + lo) as usize..(b_off + hi) as usize]
                }
            }
        })
    }
}

// ----- the real file system -----

struct Real {
    pool: Pool,
    fs: Option<Fs>,
}

impl Real {
    fn fs(&self) -> &Fs {
        self.fs.as_ref().expect("mounted")
    }

    fn open(&self, path: usize, mode: Mode) -> Result<File, i32> {
        errno(self.fs().open(PATHS[path], &mode.options()))
    }

    fn remount(&mut self) -> Result<(), String> {
        let old = self.fs.take().expect("mounted");
        count_checkpoints(&old);
        drop(old);
        self.fs = Some(preferring_deltas(Fs::mount(&self.pool).map_err(|e| format!("remount failed: {e}"))?));
        bump(&REMOUNTS);
        Ok(())
    }

    /// Runs one step. The outer error is a harness-level failure (a check that failed mid-step).
    fn apply(&mut self, op: &ROp) -> Result<Res, String> {
        let fs = self.fs().clone();
        Ok(match *op {
            ROp::Create { path } => {
                let mut o = OpenOptions::new();
                o.read(true).write(true).create_new(true);
                errno(fs.open(PATHS[path], &o)).map(|_| Outcome::Done)
            }
            ROp::Write { path, mode, off, len, seed } => self.open(path, mode).and_then(|f| {
                errno(f.write_at(&pattern(seed, off, len as usize), off)).map(|n| Outcome::Bytes(n as u64))
            }),
            ROp::Churn { path, ref writes } => self.open(path, Mode::ReadWrite).and_then(|f| {
                let mut total = 0;
                for &(off, len, seed) in writes {
                    total += errno(f.write_at(&pattern(seed, off, len as usize), off))? as u64;
                }
                Ok(Outcome::Bytes(total))
            }),
            ROp::Copy { src, src_off, dst, dst_off, len } => self.open(src, Mode::ReadOnly).and_then(|s| {
                let d = self.open(dst, Mode::ReadWrite)?;
                let mut buf = vec![0u8; len as usize];
                let n = errno(s.read_at(&mut buf, src_off))?;
                errno(d.write_at(&buf[..n], dst_off)).map(|n| Outcome::Bytes(n as u64))
            }),
            ROp::CopyWhole { src, dst } => self.open(src, Mode::ReadOnly).and_then(|s| {
                let mut o = Mode::ReadWrite.options();
                o.truncate(true);
                let d = errno(fs.open(PATHS[dst], &o))?;
                let mut buf = vec![0u8; s.metadata().map_err(|e| e.errno())?.size as usize];
                let n = errno(s.read_at(&mut buf, 0))?;
                errno(d.write_at(&buf[..n], 0)).map(|n| Outcome::Bytes(n as u64))
            }),
            ROp::Truncate { path, mode, size } => {
                self.open(path, mode).and_then(|f| errno(f.set_len(size)).map(|_| Outcome::Done))
            }
            ROp::Reflink { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
                let r = self.open(src, src_mode).and_then(|s| {
                    let d = self.open(dst, dst_mode)?;
                    errno(fs.reflink(&s, src_off, &d, dst_off, len)).map(Outcome::Bytes)
                });
                bump(if r.is_ok() { &REFLINKS_OK } else { &REFLINKS_FAILED });
                r
            }
            ROp::Dedupe { src, src_mode, src_off, len, ref targets } => {
                self.open(src, src_mode).and_then(|s| {
                    let opened: Vec<(usize, File, u64)> = targets
                        .iter()
                        .enumerate()
                        .filter_map(|(i, &(p, mode, off))| self.open(p, mode).ok().map(|f| (i, f, off)))
                        .collect();
                    let request: Vec<DedupeTarget<'_>> =
                        opened.iter().map(|(_, f, off)| DedupeTarget { file: f, offset: *off }).collect();
                    let statuses = errno(fs.dedupe(&s, src_off, len, &request))?;
                    Ok(Outcome::Statuses(
                        opened
                            .iter()
                            .zip(statuses)
                            .map(|((i, _, _), st)| {
                                let status = match st {
                                    DedupeStatus::Same { bytes_deduped } => Status::Same(bytes_deduped),
                                    DedupeStatus::Differs => Status::Differs,
                                    DedupeStatus::Failed(e) => Status::Failed(e.errno()),
                                };
                                (*i, status)
                            })
                            .collect(),
                    ))
                })
            }
            ROp::Unshare { path, mode, off, len } => {
                self.open(path, mode).and_then(|f| errno(fs.unshare(&f, off, len)).map(|_| Outcome::Done))
            }
            ROp::Fallocate { path, mode, falloc_mode, off, len } => self.open(path, mode).and_then(|f| {
                let r = errno(f.fallocate(falloc_mode, off, len)).map(|_| Outcome::Done);
                if r.is_ok() {
                    bump(&FALLOCATES_OK);
                }
                r
            }),
            ROp::Seek { path, mode, off, target } => self.open(path, mode).and_then(|mut f| {
                let found = match target {
                    SeekTarget::Data => errno(f.seek_data(off)),
                    SeekTarget::Hole => errno(f.seek_hole(off)),
                };
                if found.is_ok() {
                    bump(&SEEKS_FOUND);
                }
                found.map(Outcome::Bytes)
            }),
            ROp::CopyRange { src, src_mode, src_off, dst, dst_mode, dst_off, len } => {
                self.open(src, src_mode).and_then(|s| {
                    let d = self.open(dst, dst_mode)?;
                    errno(fs.copy_file_range(&s, src_off, &d, dst_off, len)).map(Outcome::Bytes)
                })
            }
            ROp::Unlink { path } => errno(fs.remove_file(PATHS[path])).map(|_| Outcome::Done),
            ROp::Rename { from, to } => errno(fs.rename(PATHS[from], PATHS[to])).map(|_| Outcome::Done),
            ROp::Remount => {
                drop(fs);
                self.remount()?;
                Ok(Outcome::Done)
            }
            ROp::Checkpoint => {
                fs.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
                Ok(Outcome::Done)
            }
            ROp::OrphanWrite { path, via, off, len, seed } => {
                let f = match self.open(path, Mode::ReadWrite) {
                    Ok(f) => f,
                    Err(e) => return Ok(Err(e)),
                };
                match via {
                    Some(from) => {
                        if let Err(e) = errno(fs.rename(PATHS[from], PATHS[path])) {
                            return Ok(Err(e));
                        }
                    }
                    None => {
                        fs.remove_file(PATHS[path]).map_err(|e| format!("unlink of an open file: {e}"))?
                    }
                }
                let n = match errno(f.write_at(&pattern(seed, off, len as usize), off)) {
                    Ok(n) => n as u64,
                    Err(e) => return Ok(Err(e)),
                };
                let contents = read_all(&f);
                // While it is open, the orphan still owns its blocks, with no path.
                let others = open_every_file(&fs)?;
                let mut all: Vec<&File> = others.iter().collect();
                all.push(&f);
                verify_reverse_map(&fs, &all).map_err(|e| format!("while an orphan is open: {e}"))?;
                let report = fs.check();
                if !report.is_clean() {
                    return Err(format!("check while an orphan is open:\n{report}"));
                }
                drop(f);
                Ok(Outcome::Orphan(n, fnv(&contents)))
            }
            ROp::CrashWithOrphan { path } => {
                let f = match self.open(path, Mode::ReadWrite) {
                    Ok(f) => f,
                    Err(e) => return Ok(Err(e)),
                };
                fs.remove_file(PATHS[path]).map_err(|e| format!("unlink of an open file: {e}"))?;
                // The "process" dies holding the handle: nothing closes it, the mount is
                // abandoned, and the next mount must reclaim the orphan.
                std::mem::forget(f);
                drop(fs);
                self.fs = None;
                self.fs = Some(preferring_deltas(
                    Fs::mount(&self.pool).map_err(|e| format!("mount after crash: {e}"))?,
                ));
                bump(&REMOUNTS);
                Ok(Outcome::Done)
            }
        })
    }
}

/// Opens every regular file in the tree read-only.
fn open_every_file(fs: &Fs) -> Result<Vec<File>, String> {
    let mut out = Vec::new();
    for dir in ["/", "/d"] {
        for e in fs.read_dir(dir).map_err(|e| format!("read_dir {dir}: {e}"))? {
            if e.kind == ferrodax::format::record::InodeKind::File {
                let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
                out.push(open(fs, &path, Mode::ReadOnly));
            }
        }
    }
    Ok(out)
}

/// Everything that must hold after every step.
fn verify(real: &Real, model: &Model) -> Result<(), String> {
    let fs = real.fs();
    // The namespace.
    let names = |dir: &str| -> Result<Vec<String>, String> {
        Ok(fs
            .read_dir(dir)
            .map_err(|e| format!("read_dir {dir}: {e}"))?
            .into_iter()
            .map(|e| e.name)
            .collect())
    };
    let mut want_root = vec!["d".to_string()];
    let mut want_d = Vec::new();
    for &p in model.files.keys() {
        match PATHS[p].strip_prefix("/d/") {
            Some(name) => want_d.push(name.to_string()),
            None => want_root.push(PATHS[p][1..].to_string()),
        }
    }
    want_root.sort();
    want_d.sort();
    if names("/")? != want_root || names("/d")? != want_d {
        return Err(format!(
            "namespace: / = {:?}, /d = {:?}; model: {want_root:?}, {want_d:?}",
            names("/")?,
            names("/d")?
        ));
    }
    // Contents, sizes, and block sharing against the model's block ids.
    let mut handles = Vec::new();
    let mut ids = BlockIds::default();
    for (&p, mf) in &model.files {
        let f = open(fs, PATHS[p], Mode::ReadOnly);
        let data = read_all(&f);
        if data != mf.data {
            let at = data.iter().zip(&mf.data).position(|(a, b)| a != b);
            return Err(format!(
                "{}: contents differ (size {} vs model {}), first difference at {at:?}",
                PATHS[p],
                data.len(),
                mf.data.len()
            ));
        }
        let map = block_map(fs, &f).map_err(|e| format!("{}: {e}", PATHS[p]))?;
        ids.check(PATHS[p], &mf.blocks, &map)?;
        handles.push(f);
    }
    verify_space(fs, &handles)
}

/// The mount, made to write a delta at every checkpoint that may be one: the model test then
/// checks long chains of deltas (each remount reads the base and every delta) against the model.
fn preferring_deltas(fs: Fs) -> Fs {
    fs.exclusive().prefer_delta_checkpoints(true);
    fs
}

/// Adds a mount's checkpoints to the coverage counters.
fn count_checkpoints(fs: &Fs) {
    let stats = fs.read_lock().journal().stats;
    CHECKPOINTS.fetch_add(stats.checkpoints, Ordering::Relaxed);
    DELTAS.fetch_add(stats.checkpoints - stats.whole_checkpoints, Ordering::Relaxed);
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let pool = Pool::memfd(POOL_BYTES).expect("memfd pool");
    let fs = preferring_deltas(Fs::format(&pool).expect("format"));
    fs.create_dir("/d").expect("mkdir");
    let mut real = Real { pool, fs: Some(fs) };
    let mut model = Model::default();
    // Two files to start from: /a with data and a partial last block, /b a reflink of it.
    let setup = [
        ROp::Create { path: 0 },
        ROp::Write { path: 0, mode: Mode::ReadWrite, off: 0, len: 3 * BS + 1000, seed: 3 },
        ROp::Create { path: 1 },
        ROp::Reflink {
            src: 0,
            src_mode: Mode::ReadOnly,
            src_off: 0,
            dst: 1,
            dst_mode: Mode::ReadWrite,
            dst_off: 0,
            len: 0,
        },
    ];
    let resolved = setup.to_vec();
    let step = |i: usize, rop: &ROp, model: &mut Model, real: &mut Real| -> Result<(), TestCaseError> {
        let mut next = model.clone();
        let expected = next.apply(rop);
        if expected == Ok(Outcome::Skip) || next.data_blocks() > DATA_BLOCK_LIMIT {
            return Ok(());
        }
        bump(&STEPS_RUN);
        let actual = real.apply(rop).map_err(|e| TestCaseError::fail(format!("step {i} {rop:?}: {e}")))?;
        if let Ok(Outcome::Statuses(st)) = &actual {
            for (_, s) in st {
                match s {
                    Status::Same(_) => {}
                    Status::Differs => bump(&DEDUPE_DIFFERS),
                    Status::Failed(_) => bump(&DEDUPE_FAILED),
                }
            }
        }
        if actual != expected {
            return Err(TestCaseError::fail(format!(
                "step {i} {rop:?}: the file system returned {actual:?}, the model expects {expected:?}"
            )));
        }
        if let ROp::Dedupe { .. } = rop {
            if next.refcounts().values().filter(|&&c| c > 1).count()
                > model.refcounts().values().filter(|&&c| c > 1).count()
            {
                bump(&DEDUPE_SAME_SHARED);
            }
        }
        *model = next;
        verify(real, model).map_err(|e| TestCaseError::fail(format!("after step {i} {rop:?}: {e}")))
    };
    for (i, rop) in resolved.iter().enumerate() {
        step(i, rop, &mut model, &mut real)?;
    }
    for (i, op) in ops.iter().enumerate() {
        for rop in resolve_steps(op, &model) {
            step(i + resolved.len(), &rop, &mut model, &mut real)?;
        }
    }
    let fs = real.fs.take().expect("mounted");
    count_checkpoints(&fs);
    Ok(())
}

// ----- strategies -----

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        10 => Just(Mode::ReadWrite),
        2 => Just(Mode::ReadOnly),
        1 => Just(Mode::WriteOnly),
        1 => Just(Mode::Append),
        1 => Just(Mode::ReadAppend),
    ]
}

/// Usually an existing file; sometimes any path, the directory included.
fn path() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => (0usize..8).prop_map(Pick::Existing), 2 => (0..NFILES + 1).prop_map(Pick::Any)]
}

/// Usually an existing file; sometimes any file path (never the directory).
fn file_path() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => (0usize..8).prop_map(Pick::Existing), 2 => (0..NFILES).prop_map(Pick::Any)]
}

/// Any path: mostly a file path, which may or may not exist.
fn any_path() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => (0..NFILES).prop_map(Pick::Any), 1 => Just(Pick::Any(DIR))]
}

fn off() -> impl Strategy<Value = Off> {
    prop_oneof![
        6 => (0u64..24).prop_map(Off::Block),
        3 => (0u64..100_000).prop_map(Off::Bytes),
        2 => Just(Off::Eof),
        2 => (0u64..4).prop_map(Off::EofDown),
        2 => Just(Off::EofUp),
        1 => proptest::sample::select(HUGE.to_vec()).prop_map(Off::Huge),
    ]
}

/// Offsets that usually fall inside a file (sources, and dedupe destinations).
fn near_off() -> impl Strategy<Value = Off> {
    prop_oneof![
        5 => (0u64..4).prop_map(Off::Block),
        3 => (0u64..3).prop_map(Off::EofDown),
        1 => Just(Off::Eof),
        2 => off(),
    ]
}

/// Dedupe source offsets: inside the file, at its start or its last blocks.
fn dedupe_src_off() -> impl Strategy<Value = Off> {
    prop_oneof![
        4 => Just(Off::Block(0)),
        3 => (1u64..3).prop_map(Off::Block),
        3 => (1u64..3).prop_map(Off::EofDown),
        2 => near_off(),
    ]
}

/// Lengths that usually keep a dedupe inside both files.
fn dedupe_len() -> impl Strategy<Value = Len> {
    prop_oneof![
        6 => (1u64..3).prop_map(Len::Blocks),
        4 => Just(Len::ToEof),
        2 => len(),
    ]
}

fn len() -> impl Strategy<Value = Len> {
    prop_oneof![
        3 => Just(Len::Zero),
        6 => (1u64..8).prop_map(Len::Blocks),
        2 => (1u64..40_000).prop_map(Len::Bytes),
        4 => Just(Len::ToEof),
        1 => (1u64..5000).prop_map(Len::PastEof),
        1 => proptest::sample::select(HUGE.to_vec()).prop_map(Len::Huge),
    ]
}

fn write_len() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 3 => 1u64..300, 3 => 1u64..20_000, 2 => (1u64..5).prop_map(|k| k * BS)]
}

fn write_op() -> impl Strategy<Value = Op> {
    let write_mode = prop_oneof![6 => Just(Mode::ReadWrite), 1 => Just(Mode::Append), 1 => mode()];
    (path(), write_mode, off(), write_len(), 0u8..6).prop_map(|(path, mode, off, len, seed)| Op::Write {
        path,
        mode,
        off,
        len,
        seed,
    })
}

fn copy_op() -> impl Strategy<Value = Op> {
    let block = || (0u64..4).prop_map(Off::Block);
    let len = prop_oneof![(1u64..4).prop_map(Len::Blocks), Just(Len::ToEof)];
    (path(), block(), path(), block(), len).prop_map(|(src, src_off, dst, dst_off, len)| Op::Copy {
        src,
        src_off,
        dst,
        dst_off,
        len,
    })
}

fn reflink_op() -> impl Strategy<Value = Op> {
    (path(), mode(), near_off(), path(), mode(), off(), len()).prop_map(
        |(src, src_mode, src_off, dst, dst_mode, dst_off, len)| Op::Reflink {
            src,
            src_mode,
            src_off,
            dst,
            dst_mode,
            dst_off,
            len,
        },
    )
}

fn dedupe_op() -> impl Strategy<Value = Op> {
    let src_mode = prop_oneof![6 => Just(Mode::ReadOnly), 1 => mode()];
    let len = prop_oneof![5 => Just(Len::ToEof), 4 => Just(Len::Blocks(1)), 3 => dedupe_len()];
    let target_off = prop_oneof![3 => Just(Off::SourceOffset), 2 => near_off()];
    let targets = proptest::collection::vec((path(), mode(), target_off), 1..4);
    (path(), src_mode, dedupe_src_off(), len, targets).prop_map(|(src, src_mode, src_off, len, targets)| {
        Op::Dedupe { src, src_mode, src_off, len, targets }
    })
}

/// fallocate modes: mostly the valid ones, sometimes invalid combinations.
fn falloc_mode() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(0u32),
        2 => Just(FALLOC_FL_KEEP_SIZE),
        5 => Just(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE),
        3 => Just(FALLOC_FL_ZERO_RANGE),
        2 => Just(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE),
        4 => Just(FALLOC_FL_COLLAPSE_RANGE),
        4 => Just(FALLOC_FL_INSERT_RANGE),
        1 => Just(FALLOC_FL_UNSHARE_RANGE),
        1 => Just(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE),
        1 => proptest::sample::select(vec![
            FALLOC_FL_PUNCH_HOLE,
            FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_INSERT_RANGE | FALLOC_FL_KEEP_SIZE,
            FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE,
            FALLOC_FL_WRITE_ZEROES,
            0x04,
            0x100,
        ]),
    ]
}

/// Offsets for fallocate: block-aligned inside the file most of the time (collapse and insert
/// need that), else anything.
fn falloc_off() -> impl Strategy<Value = Off> {
    prop_oneof![
        5 => (0u64..6).prop_map(Off::Block),
        3 => (1u64..4).prop_map(Off::EofDown),
        3 => off(),
    ]
}

fn falloc_len() -> impl Strategy<Value = Len> {
    prop_oneof![
        6 => (1u64..4).prop_map(Len::Blocks),
        3 => (1u64..10_000).prop_map(Len::Bytes),
        1 => Just(Len::ToEof),
        1 => len(),
    ]
}

fn fallocate_op() -> impl Strategy<Value = Op> {
    let mode_of_handle = prop_oneof![8 => Just(Mode::ReadWrite), 1 => mode()];
    (path(), mode_of_handle, falloc_mode(), falloc_off(), falloc_len())
        .prop_map(|(path, mode, falloc_mode, off, len)| Op::Fallocate { path, mode, falloc_mode, off, len })
}

fn seek_op() -> impl Strategy<Value = Op> {
    let target = prop_oneof![Just(SeekTarget::Data), Just(SeekTarget::Hole)];
    (path(), mode(), off(), target).prop_map(|(path, mode, off, target)| Op::Seek { path, mode, off, target })
}

fn copy_range_op() -> impl Strategy<Value = Op> {
    (path(), mode(), near_off(), path(), mode(), off(), len()).prop_map(
        |(src, src_mode, src_off, dst, dst_mode, dst_off, len)| Op::CopyRange {
            src,
            src_mode,
            src_off,
            dst,
            dst_mode,
            dst_off,
            len,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any_path().prop_map(|path| Op::Create { path }),
        8 => write_op(),
        2 => (file_path(), 20usize..150, any::<u64>())
            .prop_map(|(path, count, seed)| Op::Churn { path, count, seed }),
        4 => copy_op(),
        3 => (path(), path()).prop_map(|(src, dst)| Op::CopyWhole { src, dst }),
        2 => (path(), path()).prop_map(|(src, dst)| Op::CopyThenDedupe { src, dst }),
        3 => (path(), prop_oneof![6 => Just(Mode::ReadWrite), 1 => mode()], off())
            .prop_map(|(path, mode, size)| Op::Truncate { path, mode, size }),
        12 => reflink_op(),
        8 => dedupe_op(),
        3 => (path(), mode(), off(), len())
            .prop_map(|(path, mode, off, len)| Op::Unshare { path, mode, off, len }),
        10 => fallocate_op(),
        3 => seek_op(),
        5 => copy_range_op(),
        2 => path().prop_map(|path| Op::Unlink { path }),
        2 => (file_path(), prop_oneof![file_path(), (0..NFILES).prop_map(Pick::Any)])
            .prop_map(|(from, to)| Op::Rename { from, to }),
        2 => Just(Op::Remount),
        2 => Just(Op::Checkpoint),
        2 => (file_path(), proptest::option::weighted(0.4, file_path()), off(), write_len(), 1u8..6)
            .prop_map(|(path, via, off, len, seed)| Op::OrphanWrite { path, via, off, len, seed }),
        1 => file_path().prop_map(|path| Op::CrashWithOrphan { path }),
    ]
}

#[test]
fn random_operation_sequences_match_the_model() {
    let cases = env_u64("FERRODAX_PROPTEST_CASES", 256) as u32;
    let steps = env_u64("FERRODAX_PROPTEST_STEPS", 40) as usize;
    let (mut runner, seed) = seeded_runner(cases, 0x5eed_f00d);
    eprintln!("model test: {cases} cases x up to {steps} steps, FERRODAX_PROPTEST_SEED={seed}");
    let strategy = proptest::collection::vec(op(), 1..=steps);
    if let Err(e) = runner.run(&strategy, |ops| run_case(&ops)) {
        panic!("{e}\n(reproduce with FERRODAX_PROPTEST_SEED={seed})");
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "coverage: {} steps, {} checkpoints ({} deltas), {} remounts, reflinks {} ok ({} with a partial EOF block) / {} failed, \
         dedupe {} sharing / {} differs / {} failed destinations, {} CoW writes into shared blocks, \
         {} fallocates ({} shifts and {} punches of shared ranges), copy_file_range {} linked / {} copied, \
         {} seeks found",
        get(&STEPS_RUN),
        get(&CHECKPOINTS),
        get(&DELTAS),
        get(&REMOUNTS),
        get(&REFLINKS_OK),
        get(&REFLINKS_PARTIAL_EOF),
        get(&REFLINKS_FAILED),
        get(&DEDUPE_SAME_SHARED),
        get(&DEDUPE_DIFFERS),
        get(&DEDUPE_FAILED),
        get(&COW_WRITES_INTO_SHARED),
        get(&FALLOCATES_OK),
        get(&SHIFTS_OF_SHARED),
        get(&PUNCHES_OF_SHARED),
        get(&COPIES_LINKED),
        get(&COPIES_BYTES),
        get(&SEEKS_FOUND),
    );
    // The run must have exercised what this file claims to guard.
    if cases >= 128 {
        for (what, c) in [
            ("checkpoints", &CHECKPOINTS),
            ("delta checkpoints", &DELTAS),
            ("remounts", &REMOUNTS),
            ("successful reflinks", &REFLINKS_OK),
            ("partial-EOF reflinks", &REFLINKS_PARTIAL_EOF),
            ("failed reflinks", &REFLINKS_FAILED),
            ("dedupes that shared blocks", &DEDUPE_SAME_SHARED),
            ("dedupes that differed", &DEDUPE_DIFFERS),
            ("failed dedupe destinations", &DEDUPE_FAILED),
            ("CoW writes into shared blocks", &COW_WRITES_INTO_SHARED),
            ("successful fallocates", &FALLOCATES_OK),
            ("collapses or inserts of files with shared blocks", &SHIFTS_OF_SHARED),
            ("punches of shared ranges", &PUNCHES_OF_SHARED),
            ("copy_file_range calls that reflinked", &COPIES_LINKED),
            ("copy_file_range calls that copied bytes", &COPIES_BYTES),
            ("seeks that found an offset", &SEEKS_FOUND),
        ] {
            assert!(get(c) > 0, "the run never produced {what}");
        }
    }
}

// ----- deterministic tests for what random sequences rarely reach -----

fn fresh_fs() -> (Pool, Fs) {
    let pool = Pool::memfd(4 << 20).expect("memfd pool");
    let fs = Fs::format(&pool).expect("format");
    (pool, fs)
}

#[test]
fn pwrite_one_block_below_2_pow_44_makes_a_sparse_2_pow_44_byte_file() {
    let (pool, fs) = fresh_fs();
    let f = create(&fs, "/big");
    let at = (1u64 << 44) - BS;
    let data = pattern(5, at, BS as usize);
    assert_eq!(f.write_at(&data, at).unwrap(), BS as usize);
    let st = f.metadata().unwrap();
    assert_eq!(st.size, 1 << 44);
    assert_eq!(st.blocks, BS / 512, "only one block is allocated");
    let mut buf = vec![0xffu8; BS as usize];
    f.read_exact_at(&mut buf, at).unwrap();
    assert_eq!(buf, data);
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "the hole before it reads as zeros");
    let ext = fs.fiemap(&f).unwrap();
    assert_eq!(ext.len(), 1);
    assert_eq!(ext[0].logical, at);
    verify_reverse_map(&fs, &[&f]).unwrap();
    assert_clean(&fs);
    drop(f);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert_eq!(fs.metadata("/big").unwrap().size, 1 << 44);
    let f = open(&fs, "/big", Mode::ReadOnly);
    f.read_exact_at(&mut buf, at).unwrap();
    assert_eq!(buf, data);
    assert_clean(&fs);
}

#[test]
fn writes_and_truncates_at_the_maximum_file_size_follow_the_kernel() {
    let (_pool, fs) = fresh_fs();
    let f = create(&fs, "/edge");
    // A write that ends exactly at the limit works; the file is then as large as a file can be.
    let data = pattern(7, MAX_FILE_SIZE - BS, BS as usize);
    assert_eq!(f.write_at(&data, MAX_FILE_SIZE - BS).unwrap(), BS as usize);
    assert_eq!(f.metadata().unwrap().size, MAX_FILE_SIZE);
    // At or past the limit: EFBIG, nothing changes.
    assert_eq!(expect_errno(f.write_at(b"x", MAX_FILE_SIZE)), libc::EFBIG);
    assert_eq!(expect_errno(f.write_at(b"x", MAX_FILE_SIZE + 100)), libc::EFBIG);
    // Straddling the limit: a short write up to it, like generic_write_check_limits.
    assert_eq!(f.write_at(&[9u8; 300], MAX_FILE_SIZE - 100).unwrap(), 100);
    let mut buf = [0u8; 100];
    f.read_exact_at(&mut buf, MAX_FILE_SIZE - 100).unwrap();
    assert_eq!(buf, [9u8; 100]);
    // Negative offsets (as loff_t) and offsets whose end overflows: EINVAL.
    assert_eq!(expect_errno(f.write_at(b"x", 1 << 63)), libc::EINVAL);
    assert_eq!(expect_errno(f.write_at(b"xy", I64_MAX)), libc::EINVAL);
    assert_eq!(expect_errno(f.read_at(&mut buf, u64::MAX)), libc::EINVAL);
    // A zero-byte write at the limit is fine and changes nothing.
    assert_eq!(f.write_at(b"", MAX_FILE_SIZE).unwrap(), 0);
    assert_eq!(f.metadata().unwrap().size, MAX_FILE_SIZE);
    // ftruncate: past the limit EFBIG, negative EINVAL.
    assert_eq!(expect_errno(f.set_len(MAX_FILE_SIZE + 1)), libc::EFBIG);
    assert_eq!(expect_errno(f.set_len(1 << 63)), libc::EINVAL);
    assert_eq!(f.metadata().unwrap().size, MAX_FILE_SIZE);
    f.set_len(10).unwrap();
    assert_eq!(f.metadata().unwrap().size, 10);
    assert_eq!(fs.fiemap(&f).unwrap(), vec![]);
    assert_clean(&fs);
}

#[test]
fn reflink_to_the_maximum_file_size_links_and_past_it_fails() {
    let (_pool, fs) = fresh_fs();
    let src = create(&fs, "/src");
    src.write_at(&pattern(3, 0, BS as usize + 100), 0).unwrap();
    let dst = create(&fs, "/dst");
    // The last whole block below the limit can be linked.
    assert_eq!(fs.reflink(&src, 0, &dst, MAX_FILE_SIZE - BS, BS).unwrap(), BS);
    assert_eq!(dst.metadata().unwrap().size, MAX_FILE_SIZE);
    // A destination offset at the limit: EFBIG (generic_write_check_limits).
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, MAX_FILE_SIZE, 0)), libc::EFBIG);
    // A range that would have to be shortened to fit: EINVAL (clone cannot shorten).
    let other = create(&fs, "/other");
    assert_eq!(expect_errno(fs.reflink(&src, 0, &other, MAX_FILE_SIZE - BS, 0)), libc::EINVAL);
    // Ranges whose end overflows a signed 64-bit offset: EINVAL.
    assert_eq!(expect_errno(fs.reflink(&src, 0, &other, MAX_FILE_SIZE - BS, 2 * BS)), libc::EINVAL);
    assert_eq!(other.metadata().unwrap().size, 0);
    verify_reverse_map(&fs, &[&src, &dst, &other]).unwrap();
    assert_clean(&fs);
}

#[test]
fn a_transaction_larger_than_the_log_commits_through_a_checkpoint_and_survives_remount() {
    let (pool, fs) = fresh_fs();
    let one = create(&fs, "/one");
    one.write_at(&pattern(3, 0, BS as usize), 0).unwrap();
    // 3000 extents, every other file block, all pointing at the same pool block.
    let frag = create(&fs, "/frag");
    for k in 0..3000u64 {
        assert_eq!(fs.reflink(&one, 0, &frag, 2 * k * BS, BS).unwrap(), BS);
    }
    let log_bytes = fs.read_lock().journal().superblock().log_blocks * BS;
    assert!(3000 * 33 > log_bytes, "the clone below must not fit in the log ({log_bytes} bytes)");
    // One clone of all 3000 extents: a single transaction larger than the whole log.
    let copy = create(&fs, "/copy");
    assert_eq!(fs.reflink(&frag, 0, &copy, 0, 0).unwrap(), 5999 * BS);
    let map = block_map(&fs, &frag).unwrap();
    assert_eq!(block_map(&fs, &copy).unwrap(), map);
    let block = map[0].unwrap();
    assert_eq!(fs.owners(block * BS, BS).len(), 6001);
    assert_eq!(fs.share_state(block), ferrodax::ShareState::Shared { count: 6001 });
    let frag_bytes = read_all(&frag);
    verify_reverse_map(&fs, &[&one, &frag, &copy]).unwrap();
    assert_clean(&fs);
    drop((one, frag, copy));
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert_clean(&fs);
    let copy = open(&fs, "/copy", Mode::ReadOnly);
    assert!(read_all(&copy) == frag_bytes, "the clone survived the remount");
    // Freeing 3000 extents at once is just as large.
    fs.remove_file("/frag").unwrap();
    assert_eq!(fs.share_state(block), ferrodax::ShareState::Shared { count: 3001 });
    assert_clean(&fs);
    drop(copy);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert_clean(&fs);
    assert_eq!(fs.owners(block * BS, BS).len(), 3001);
}

#[test]
fn reflink_far_past_eof_makes_a_sparse_clone_that_truncates_and_remounts() {
    let (pool, fs) = fresh_fs();
    let src = create(&fs, "/src");
    let data = pattern(5, 0, 2 * BS as usize + 10);
    src.write_at(&data, 0).unwrap();
    let dst = create(&fs, "/dst");
    let far = 1u64 << 44;
    assert_eq!(fs.reflink(&src, 0, &dst, far, 0).unwrap(), data.len() as u64);
    assert_eq!(dst.metadata().unwrap().size, far + data.len() as u64);
    let mut buf = vec![0u8; data.len()];
    dst.read_exact_at(&mut buf, far).unwrap();
    assert!(buf == data, "the clone reads back");
    let ext = fs.fiemap(&dst).unwrap();
    assert_eq!(ext.len(), 1);
    assert_eq!((ext[0].logical, ext[0].shared), (far, true));
    verify_reverse_map(&fs, &[&src, &dst]).unwrap();
    // Truncate inside the clone: the cut block is copied, the one before it stays shared.
    dst.set_len(far + BS + 5).unwrap();
    let flags: Vec<(u64, bool)> =
        fs.fiemap(&src).unwrap().iter().map(|e| (e.logical / BS, e.shared)).collect();
    assert_eq!(flags, vec![(0, true), (1, false)]);
    dst.read_exact_at(&mut buf[..BS as usize + 5], far).unwrap();
    assert!(buf[..BS as usize + 5] == data[..BS as usize + 5]);
    // Then below it: the clone is gone and the source is private again.
    dst.set_len(far - 1).unwrap();
    assert_eq!(fs.fiemap(&dst).unwrap(), vec![]);
    assert!(fs.fiemap(&src).unwrap().iter().all(|e| !e.shared));
    verify_reverse_map(&fs, &[&src, &dst]).unwrap();
    assert_clean(&fs);
    drop((src, dst));
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert_eq!(fs.metadata("/dst").unwrap().size, far - 1);
    assert_clean(&fs);
}

#[test]
fn owners_of_unaligned_ranges_cover_every_block_they_touch() {
    let (_pool, fs) = fresh_fs();
    let a = create(&fs, "/a");
    a.write_at(&pattern(1, 0, 2 * BS as usize), 0).unwrap();
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, BS).unwrap();
    let map = block_map(&fs, &a).unwrap();
    let (p0, p1) = (map[0].unwrap(), map[1].unwrap());
    assert_eq!(p1, p0 + 1, "written together, the blocks are contiguous");
    let file_owners = |off: u64, len: u64| -> Vec<(u64, u64, u64, u64)> {
        let mut v: Vec<_> = fs
            .owners(off, len)
            .into_iter()
            .filter_map(|o| match o.owner {
                ferrodax::OwnerKind::File { ino, file_offset, .. } => {
                    Some((o.pool_offset, o.length, ino, file_offset))
                }
                _ => None,
            })
            .collect();
        v.sort();
        v
    };
    // Ten bytes inside block p0: both owners of that block.
    let mut want = vec![(p0 * BS, BS, a.ino(), 0), (p0 * BS, BS, b.ino(), 0)];
    want.sort();
    assert_eq!(file_owners(p0 * BS + 100, 10), want);
    // A zero-length query names the block holding the byte.
    assert_eq!(file_owners(p0 * BS + 100, 0), want);
    // 200 bytes across the boundary: the owners of both blocks; a's run is not joined across
    // them, because one block is shared and the other private (each entry names its sharing).
    let mut want = vec![(p0 * BS, BS, a.ino(), 0), (p1 * BS, BS, a.ino(), BS), (p0 * BS, BS, b.ino(), 0)];
    want.sort();
    assert_eq!(file_owners(p0 * BS + 4000, 200), want);
    // Past the end of the pool: nothing.
    assert_eq!(file_owners(POOL_BYTES, BS), vec![]);
    assert_eq!(file_owners(u64::MAX - 10, 100), vec![]);
}
