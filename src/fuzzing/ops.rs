//! Operation-sequence fuzzing: fuzzer bytes decode into create, pwrite, truncate, reflink, dedupe,
//! unshare, unlink, rename, mkdir, rmdir, remount and memory-failure steps, applied both to
//! ferrodax (a volatile recording pool) and to a plain in-memory model.
//!
//! Owns the model and the comparison. The model keeps every name, every file's bytes and, per file
//! block, an abstract block id (fresh on every copy, shared by reflink and dedupe, bad after a
//! memory failure). After every step the two must agree on the result (value or errno), the tree,
//! every file's bytes (EIO exactly where a bad block sits), and block sharing (the pool blocks
//! FIEMAP reports are one-to-one with the model's ids); and `check()` must be clean. Where the
//! documentation leaves a choice to the implementation (whether a copy that would read a bad block
//! fails with EIO), the model accepts EIO-and-nothing-changed or the clean outcome, nothing else.
//! Must never: compare anything the model cannot know exactly, or use a pool other than its own
//! volatile one.

use crate::api::{DedupeStatus, DedupeTarget, Fs, OpenOptions, Pool};
use crate::format::{BLOCK_SIZE as BS, MAX_FILE_SIZE};
use crate::fs::ownership::MetaStructure;
use crate::fs::ShareState;
use crate::memfail::FailureFlags;
use crate::pool::RecordingBackend;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

/// Size of the pool each operation sequence runs on.
pub const OPS_POOL_BYTES: u64 = 1 << 20;
/// Steps that would make a file larger than this are skipped (on both sides).
pub const OPS_FILE_LIMIT: u64 = 64 << 10;
/// At most this many steps per input (each is [`OP_BYTES`] bytes).
pub const MAX_OPS: usize = 64;
/// Bytes per encoded step.
pub const OP_BYTES: usize = 8;
/// At most this many memory failures per input (bad blocks are never reused).
const MAX_POISONS: usize = 6;
const I64_MAX: u64 = i64::MAX as u64;
const MAX_DEDUPE_LEN: u64 = 1 << 30;

/// The names steps pick from; whether each is a file, a directory or nothing depends on history.
pub const PATHS: [&str; 8] = ["/a", "/b", "/d", "/d/c", "/d/e", "/d/e/f", "/x", "/x/g"];

const HUGE: [u64; 6] = [u64::MAX, 1 << 63, I64_MAX, MAX_FILE_SIZE, MAX_FILE_SIZE - BS, 1 << 40];

/// An offset, resolved against the file's size when the step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Off {
    /// A block boundary.
    Block(u64),
    /// Any byte.
    Bytes(u64),
    /// End of file.
    Eof,
    /// The block boundary at or below EOF, minus this many blocks.
    EofDown(u64),
    /// The block boundary at or above EOF.
    EofUp,
    /// A number far past any file.
    Huge(u64),
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
        }
    }

    fn decode(mode: u8, value: u8) -> Off {
        match mode % 8 {
            0..=2 => Off::Block(value as u64 % 17),
            3 => Off::Bytes(value as u64 * 131 % OPS_FILE_LIMIT),
            4 => Off::Eof,
            5 => Off::EofDown(value as u64 % 3),
            6 => Off::EofUp,
            _ => Off::Huge(HUGE[value as usize % HUGE.len()]),
        }
    }
}

/// A length, resolved against the source's size and offset when the step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    /// Zero.
    Zero,
    /// Whole blocks.
    Blocks(u64),
    /// Any number of bytes.
    Bytes(u64),
    /// Exactly to the source's EOF.
    ToEof,
    /// This many bytes past the source's EOF.
    PastEof(u64),
    /// A number far past any file.
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

    fn decode(mode: u8, value: u8) -> Len {
        match mode % 8 {
            0 => Len::Zero,
            1..=3 => Len::Blocks(1 + value as u64 % 8),
            4 => Len::Bytes(1 + value as u64 * 61),
            5 => Len::ToEof,
            6 => Len::PastEof(value as u64 * 17),
            _ => Len::Huge(HUGE[value as usize % HUGE.len()]),
        }
    }
}

/// One step, with indexes into [`PATHS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// open(O_CREAT | O_EXCL | O_RDWR).
    Create(usize),
    /// mkdir.
    Mkdir(usize),
    /// rmdir.
    Rmdir(usize),
    /// unlink.
    Unlink(usize),
    /// rename(from, to).
    Rename(usize, usize),
    /// pwrite of `len` bytes of pattern `seed`.
    Write {
        /// The file.
        path: usize,
        /// Where.
        off: Off,
        /// How many bytes.
        len: u64,
        /// The data's pattern.
        seed: u8,
    },
    /// ftruncate.
    Truncate {
        /// The file.
        path: usize,
        /// The new size.
        size: Off,
    },
    /// FICLONERANGE.
    Reflink {
        /// Source file.
        src: usize,
        /// Source offset.
        src_off: Off,
        /// Destination file.
        dst: usize,
        /// Destination offset.
        dst_off: Off,
        /// Length (0: to the source's EOF).
        len: Len,
    },
    /// FIDEDUPERANGE with one destination.
    Dedupe {
        /// Source file.
        src: usize,
        /// Source offset.
        src_off: Off,
        /// Length.
        len: Len,
        /// Destination file.
        dst: usize,
        /// Destination offset (`None`: the source's offset).
        dst_off: Option<Off>,
    },
    /// fallocate(FALLOC_FL_UNSHARE_RANGE).
    Unshare {
        /// The file.
        path: usize,
        /// Where.
        off: Off,
        /// How much.
        len: Len,
    },
    /// Unmount and mount again.
    Remount,
    /// A memory failure of one pool block: 0 a file's block, 1 a metadata block, 2 a free block;
    /// `pick` chooses which.
    Poison {
        /// What kind of block.
        kind: u8,
        /// Which one.
        pick: u16,
    },
}

impl Op {
    /// Decodes one step from [`OP_BYTES`] bytes: b0 the kind, b1 and b2 two paths (the upper
    /// bits of b2 also a second offset's value), b3 and b4 an offset's mode and value, b5 a second
    /// offset's mode, b6 and b7 a length's mode and value (a write's length is b5 and b6, its
    /// pattern b7).
    pub fn decode(b: [u8; OP_BYTES]) -> Op {
        let (p, q) = (b[1] as usize % PATHS.len(), b[2] as usize % PATHS.len());
        let second = b[2] >> 3;
        match b[0] % 16 {
            0 | 1 | 14 => Op::Write {
                path: p,
                off: Off::decode(b[3], b[4]),
                len: u16::from_le_bytes([b[5], b[6]]) as u64 % 20_000,
                seed: b[7],
            },
            2 => Op::Create(p),
            3 => Op::Mkdir(p),
            4 => Op::Rmdir(p),
            5 => Op::Unlink(p),
            6 => Op::Rename(p, q),
            7 => Op::Truncate { path: p, size: Off::decode(b[3], b[4]) },
            8 | 9 | 15 => Op::Reflink {
                src: p,
                src_off: Off::decode(b[3], b[4]),
                dst: q,
                dst_off: Off::decode(b[5], second),
                len: Len::decode(b[6], b[7]),
            },
            10 => Op::Dedupe {
                src: p,
                src_off: Off::decode(b[3], b[4]),
                len: Len::decode(b[6], b[7]),
                dst: q,
                dst_off: if b[5] % 2 == 0 { None } else { Some(Off::decode(b[5] >> 1, second)) },
            },
            11 => Op::Unshare { path: p, off: Off::decode(b[3], b[4]), len: Len::decode(b[6], b[7]) },
            12 => Op::Remount,
            _ => Op::Poison { kind: b[1] % 3, pick: u16::from_le_bytes([b[2], b[3]]) },
        }
    }

    /// Bytes that [`Op::decode`] turns back into this step (for seeds and regression tests).
    /// Values the decoding cannot express come back as the nearest it can.
    pub fn encode(&self) -> [u8; OP_BYTES] {
        fn off(o: Off, values: u8) -> (u8, u8) {
            let find = |f: &dyn Fn(u8) -> bool| (0..values).find(|&v| f(v)).unwrap_or(0);
            match o {
                Off::Block(k) => (0, find(&|v| v as u64 % 17 == k)),
                Off::Bytes(n) => (3, find(&|v| v as u64 * 131 % OPS_FILE_LIMIT == n)),
                Off::Eof => (4, 0),
                Off::EofDown(k) => (5, find(&|v| v as u64 % 3 == k)),
                Off::EofUp => (6, 0),
                Off::Huge(h) => (7, find(&|v| HUGE[v as usize % HUGE.len()] == h)),
            }
        }
        fn len(l: Len) -> (u8, u8) {
            let find = |f: &dyn Fn(u8) -> bool| (0..=255).find(|&v| f(v)).unwrap_or(0);
            match l {
                Len::Zero => (0, 0),
                Len::Blocks(k) => (1, find(&|v| 1 + v as u64 % 8 == k)),
                Len::Bytes(n) => (4, find(&|v| 1 + v as u64 * 61 == n)),
                Len::ToEof => (5, 0),
                Len::PastEof(n) => (6, find(&|v| v as u64 * 17 == n)),
                Len::Huge(h) => (7, find(&|v| HUGE[v as usize % HUGE.len()] == h)),
            }
        }
        let p = |i: usize| i as u8;
        let with_second = |q: usize, value: u8| p(q) | value << 3;
        match *self {
            Op::Write { path, off: o, len: l, seed } => {
                let (m, v) = off(o, 255);
                let [lo, hi] = (l as u16).to_le_bytes();
                [0, p(path), 0, m, v, lo, hi, seed]
            }
            Op::Create(a) => [2, p(a), 0, 0, 0, 0, 0, 0],
            Op::Mkdir(a) => [3, p(a), 0, 0, 0, 0, 0, 0],
            Op::Rmdir(a) => [4, p(a), 0, 0, 0, 0, 0, 0],
            Op::Unlink(a) => [5, p(a), 0, 0, 0, 0, 0, 0],
            Op::Rename(a, b) => [6, p(a), p(b), 0, 0, 0, 0, 0],
            Op::Truncate { path, size } => {
                let (m, v) = off(size, 255);
                [7, p(path), 0, m, v, 0, 0, 0]
            }
            Op::Reflink { src, src_off, dst, dst_off, len: l } => {
                let (sm, sv) = off(src_off, 255);
                let (dm, dv) = off(dst_off, 32);
                let (lm, lv) = len(l);
                [8, p(src), with_second(dst, dv), sm, sv, dm, lm, lv]
            }
            Op::Dedupe { src, src_off, len: l, dst, dst_off } => {
                let (sm, sv) = off(src_off, 255);
                let (lm, lv) = len(l);
                let (dm, dv) = dst_off.map_or((0, 0), |o| {
                    let (m, v) = off(o, 32);
                    (m << 1 | 1, v)
                });
                [10, p(src), with_second(dst, dv), sm, sv, dm, lm, lv]
            }
            Op::Unshare { path, off: o, len: l } => {
                let (m, v) = off(o, 255);
                let (lm, lv) = len(l);
                [11, p(path), 0, m, v, 0, lm, lv]
            }
            Op::Remount => [12, 0, 0, 0, 0, 0, 0, 0],
            Op::Poison { kind, pick } => {
                let [lo, hi] = pick.to_le_bytes();
                [13, kind, lo, hi, 0, 0, 0, 0]
            }
        }
    }
}

/// Decodes every step of an input.
pub fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    bytes
        .chunks_exact(OP_BYTES)
        .take(MAX_OPS)
        .map(|c| Op::decode(c.try_into().expect("chunks of OP_BYTES")))
        .collect()
}

/// Encodes steps as an input for [`op_sequence`].
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    ops.iter().flat_map(|op| op.encode()).collect()
}

/// What one step came to, on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Bytes(u64),
    Dedupe(DedupeResult),
    /// The model cannot follow (a file would grow past [`OPS_FILE_LIMIT`]); not run.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DedupeResult {
    Same(u64),
    Differs,
    Failed(i32),
}

type Res = Result<Outcome, i32>;

// ----- the model -----

#[derive(Debug, Clone, Default)]
struct MFile {
    data: Vec<u8>,
    /// Abstract block id per file block; None is a hole. Same id = same pool block.
    blocks: Vec<Option<u64>>,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(MFile),
}

#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<String, Node>,
    next_id: u64,
    /// Ids of blocks that failed.
    bad: BTreeSet<u64>,
}

/// Test data: the byte at file offset `off + i` of a write made with `seed`.
pub fn op_pattern(seed: u8, off: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let o = off.wrapping_add(i);
            if seed % 4 == 0 {
                return seed; // constant blocks: dedupe finds equal data
            }
            (((o % BS) * 131 + u64::from(seed) * 17) % 251) as u8 ^ ((o / BS) as u8).wrapping_mul(seed | 1)
        })
        .collect()
}

fn remap_verify_area(a: u64, b: u64, len: u64) -> Result<(), i32> {
    let fits = |off: u64| off <= I64_MAX && off.checked_add(len).is_some_and(|e| e <= I64_MAX);
    if len > I64_MAX || !fits(a) || !fits(b) {
        return Err(libc::EINVAL);
    }
    Ok(())
}

impl Model {
    /// Errors from walking to `path`'s parent: a missing directory, or a file in the way.
    fn parent_check(&self, path: &str) -> Result<(), i32> {
        let mut prefix = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for comp in &comps[..comps.len() - 1] {
            prefix.push('/');
            prefix.push_str(comp);
            match self.nodes.get(&prefix) {
                None => return Err(libc::ENOENT),
                Some(Node::File(_)) => return Err(libc::ENOTDIR),
                Some(Node::Dir) => {}
            }
        }
        Ok(())
    }

    /// Opening `path` read-write: the file, or the errno.
    fn file(&self, path: &str) -> Result<&MFile, i32> {
        self.parent_check(path)?;
        match self.nodes.get(path) {
            None => Err(libc::ENOENT),
            Some(Node::Dir) => Err(libc::EISDIR),
            Some(Node::File(f)) => Ok(f),
        }
    }

    fn file_mut(&mut self, path: &str) -> &mut MFile {
        match self.nodes.get_mut(path) {
            Some(Node::File(f)) => f,
            _ => unreachable!("{path} was opened as a file"),
        }
    }

    fn size(&self, path: &str) -> u64 {
        match self.nodes.get(path) {
            Some(Node::File(f)) => f.data.len() as u64,
            _ => 0,
        }
    }

    fn fresh(&mut self) -> Option<u64> {
        self.next_id += 1;
        Some(self.next_id)
    }

    fn resize(&mut self, path: &str, size: u64) {
        let f = self.file_mut(path);
        f.data.resize(size as usize, 0);
        f.blocks.resize(size.div_ceil(BS) as usize, None);
    }

    fn refcounts(&self) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for node in self.nodes.values() {
            if let Node::File(f) = node {
                for id in f.blocks.iter().flatten() {
                    *counts.entry(*id).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// True if a file block in `[first, end)` of `path`, or its partial EOF block when the step
    /// may grow the file over it, is bad: a step that copies such a block may fail with EIO.
    fn touches_bad(&self, path: &str, first: u64, end: u64, grows: bool) -> bool {
        let Some(Node::File(f)) = self.nodes.get(path) else { return false };
        let bad =
            |fb: u64| f.blocks.get(fb as usize).copied().flatten().is_some_and(|id| self.bad.contains(&id));
        let size = f.data.len() as u64;
        (first..end.min(size.div_ceil(BS))).any(bad) || (grows && size % BS != 0 && bad(size / BS))
    }

    fn is_empty_dir(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        !self.nodes.keys().any(|k| k.starts_with(&prefix))
    }

    /// Runs one step on the model. The flag says the step would copy a bad block, so EIO with
    /// nothing changed is also a valid outcome.
    fn apply(&mut self, op: &Op) -> (Res, bool) {
        let mut uncertain = false;
        let res = self.apply_inner(op, &mut uncertain);
        (res, uncertain)
    }

    fn apply_inner(&mut self, op: &Op, uncertain: &mut bool) -> Res {
        match *op {
            Op::Create(p) => {
                let path = PATHS[p];
                self.parent_check(path)?;
                if self.nodes.contains_key(path) {
                    return Err(libc::EEXIST);
                }
                self.nodes.insert(path.into(), Node::File(MFile::default()));
                Ok(Outcome::Done)
            }
            Op::Mkdir(p) => {
                let path = PATHS[p];
                self.parent_check(path)?;
                if self.nodes.contains_key(path) {
                    return Err(libc::EEXIST);
                }
                self.nodes.insert(path.into(), Node::Dir);
                Ok(Outcome::Done)
            }
            Op::Rmdir(p) => {
                let path = PATHS[p];
                self.parent_check(path)?;
                match self.nodes.get(path) {
                    None => Err(libc::ENOENT),
                    Some(Node::File(_)) => Err(libc::ENOTDIR),
                    Some(Node::Dir) if !self.is_empty_dir(path) => Err(libc::ENOTEMPTY),
                    Some(Node::Dir) => {
                        self.nodes.remove(path);
                        Ok(Outcome::Done)
                    }
                }
            }
            Op::Unlink(p) => {
                let path = PATHS[p];
                self.parent_check(path)?;
                match self.nodes.get(path) {
                    None => Err(libc::ENOENT),
                    Some(Node::Dir) => Err(libc::EISDIR),
                    Some(Node::File(_)) => {
                        self.nodes.remove(path);
                        Ok(Outcome::Done)
                    }
                }
            }
            Op::Rename(a, b) => self.rename(PATHS[a], PATHS[b]),
            Op::Write { path, off, len, seed } => {
                let path = PATHS[path];
                let size = self.file(path)?.data.len() as u64;
                let off = off.at(size);
                self.write(path, off, &op_pattern(seed, off, len as usize), uncertain)
            }
            Op::Truncate { path, size } => {
                let path = PATHS[path];
                let old = self.file(path)?.data.len() as u64;
                let size = size.at(old);
                if size > I64_MAX {
                    return Err(libc::EINVAL);
                }
                if size > MAX_FILE_SIZE {
                    return Err(libc::EFBIG);
                }
                if size > OPS_FILE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                if size % BS != 0 && size < old {
                    *uncertain |= self.touches_bad(path, size / BS, size / BS + 1, false);
                }
                *uncertain |= size > old && self.touches_bad(path, old, old, true);
                if size < old {
                    let partial_mapped = {
                        let f = self.file_mut(path);
                        f.data.truncate(size as usize);
                        f.blocks.truncate(size.div_ceil(BS) as usize);
                        size % BS != 0 && f.blocks.last().copied().flatten().is_some()
                    };
                    if partial_mapped {
                        let id = self.fresh();
                        *self.file_mut(path).blocks.last_mut().expect("partial block") = id;
                    }
                } else {
                    self.resize(path, size);
                }
                Ok(Outcome::Done)
            }
            Op::Reflink { src, src_off, dst, dst_off, len } => {
                let (s, d) = (PATHS[src], PATHS[dst]);
                let isize = self.file(s)?.data.len() as u64;
                let dsize = self.file(d)?.data.len() as u64;
                let src_off = src_off.at(isize);
                self.reflink(s, src_off, d, dst_off.at(dsize), len.at(isize, src_off), uncertain)
            }
            Op::Dedupe { src, src_off, len, dst, dst_off } => {
                let (s, d) = (PATHS[src], PATHS[dst]);
                let isize = self.file(s)?.data.len() as u64;
                let dsize = self.file(d)?.data.len() as u64;
                let src_off = src_off.at(isize);
                let dst_off = dst_off.map_or(src_off, |o| o.at(dsize));
                self.dedupe(s, src_off, len.at(isize, src_off), d, dst_off, uncertain)
            }
            Op::Unshare { path, off, len } => {
                let path = PATHS[path];
                let size = self.file(path)?.data.len() as u64;
                let off = off.at(size);
                let len = len.at(size, off);
                if off > I64_MAX || len == 0 || len > I64_MAX {
                    return Err(libc::EINVAL);
                }
                let end = off.checked_add(len).ok_or(libc::EFBIG)?;
                if end > MAX_FILE_SIZE {
                    return Err(libc::EFBIG);
                }
                if end > size && end > OPS_FILE_LIMIT {
                    return Ok(Outcome::Skip);
                }
                if off < size {
                    let counts = self.refcounts();
                    for fb in off / BS..end.min(size).div_ceil(BS) {
                        let id = self.file_mut(path).blocks[fb as usize];
                        if id.is_some_and(|id| counts[&id] > 1) {
                            *uncertain |= id.is_some_and(|id| self.bad.contains(&id));
                            let new = self.fresh();
                            self.file_mut(path).blocks[fb as usize] = new;
                        }
                    }
                }
                *uncertain |= end > size && self.touches_bad(path, size, size, true);
                if end > size {
                    self.resize(path, end);
                }
                Ok(Outcome::Done)
            }
            Op::Remount | Op::Poison { .. } => Ok(Outcome::Done),
        }
    }

    /// rename(2) in do_renameat2's order: both parents, the source, lock_rename's ancestry traps
    /// (EINVAL into itself, ENOTEMPTY onto a directory that contains the source), then the kinds.
    fn rename(&mut self, from: &str, to: &str) -> Res {
        self.parent_check(from)?;
        self.parent_check(to)?;
        let moving_dir = match self.nodes.get(from) {
            None => return Err(libc::ENOENT),
            Some(node) => matches!(node, Node::Dir),
        };
        if moving_dir && to.starts_with(&format!("{from}/")) {
            return Err(libc::EINVAL);
        }
        if from.starts_with(&format!("{to}/")) {
            return Err(libc::ENOTEMPTY);
        }
        if from == to {
            return Ok(Outcome::Done);
        }
        match (moving_dir, self.nodes.get(to)) {
            (true, Some(Node::Dir)) if !self.is_empty_dir(to) => return Err(libc::ENOTEMPTY),
            (true, Some(Node::File(_))) => return Err(libc::ENOTDIR),
            (false, Some(Node::Dir)) => return Err(libc::EISDIR),
            _ => {}
        }
        self.nodes.remove(to);
        let prefix = format!("{from}/");
        let moved: Vec<String> =
            self.nodes.keys().filter(|k| *k == from || k.starts_with(&prefix)).cloned().collect();
        for old in moved {
            let node = self.nodes.remove(&old).expect("listed");
            self.nodes.insert(format!("{to}{}", &old[from.len()..]), node);
        }
        Ok(Outcome::Done)
    }

    /// pwrite on a read-write handle, in the kernel's order; every written block is a new block.
    fn write(&mut self, path: &str, off: u64, bytes: &[u8], uncertain: &mut bool) -> Res {
        let len = bytes.len() as u64;
        if off > I64_MAX || off.checked_add(len).is_none_or(|e| e > I64_MAX) {
            return Err(libc::EINVAL);
        }
        if len == 0 {
            return Ok(Outcome::Bytes(0));
        }
        let size = self.size(path);
        if off >= MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        let n = len.min(MAX_FILE_SIZE - off);
        let end = off + n;
        if end > OPS_FILE_LIMIT {
            return Ok(Outcome::Skip);
        }
        // Only whole blocks are written without reading the old block.
        let (first, last) = (off / BS, end.div_ceil(BS));
        let edge_bad = [first, last - 1]
            .into_iter()
            .filter(|&fb| fb * BS < off || (fb + 1) * BS > end)
            .any(|fb| self.touches_bad(path, fb, fb + 1, false));
        *uncertain |= edge_bad || (off > size && self.touches_bad(path, size, size, true));
        if end > size {
            self.resize(path, end);
        }
        for fb in first..last {
            let id = self.fresh();
            self.file_mut(path).blocks[fb as usize] = id;
        }
        self.file_mut(path).data[off as usize..end as usize].copy_from_slice(&bytes[..n as usize]);
        Ok(Outcome::Bytes(n))
    }

    /// FICLONERANGE in the kernel's order (tests/model.rs has the same rules, with every handle
    /// mode; here both handles are read-write).
    fn reflink(
        &mut self,
        s: &str,
        src_off: u64,
        d: &str,
        dst_off: u64,
        len: u64,
        uncertain: &mut bool,
    ) -> Res {
        remap_verify_area(src_off, dst_off, len)?;
        let (isize, dsize) = (self.size(s), self.size(d));
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
            isize.next_multiple_of(BS) - src_off
        } else {
            count -= count % BS;
            count
        };
        if s == d && dst_off + bcount > src_off && dst_off < src_off + bcount {
            return Err(libc::EINVAL);
        }
        if count != len {
            return Err(libc::EINVAL);
        }
        if count % BS != 0 && dst_off + count < dsize {
            return Err(libc::EINVAL);
        }
        let new_size = dsize.max(dst_off + count);
        if new_size > OPS_FILE_LIMIT {
            return Ok(Outcome::Skip);
        }
        *uncertain |= new_size > dsize && self.touches_bad(d, dsize, dsize, true);
        let (bytes, ids) = match self.nodes.get(s) {
            Some(Node::File(f)) => (
                f.data[src_off as usize..(src_off + count) as usize].to_vec(),
                f.blocks[(src_off / BS) as usize..((src_off + bcount) / BS) as usize].to_vec(),
            ),
            _ => unreachable!("opened as a file"),
        };
        self.resize(d, new_size);
        let f = self.file_mut(d);
        f.data[dst_off as usize..(dst_off + count) as usize].copy_from_slice(&bytes);
        f.blocks[(dst_off / BS) as usize..][..ids.len()].copy_from_slice(&ids);
        Ok(Outcome::Bytes(count))
    }

    /// FIDEDUPERANGE with one destination (vfs_dedupe_file_range, then
    /// vfs_dedupe_file_range_one); the result is the destination's status.
    fn dedupe(
        &mut self,
        s: &str,
        src_off: u64,
        len: u64,
        d: &str,
        dst_off: u64,
        uncertain: &mut bool,
    ) -> Res {
        remap_verify_area(src_off, 0, len)?;
        let isize = self.size(s);
        if src_off + len > isize {
            return Err(libc::EINVAL);
        }
        let len = len.min(MAX_DEDUPE_LEN);
        let status = match self.dedupe_one(s, src_off, d, dst_off, len, uncertain) {
            Ok(true) => DedupeResult::Same(len),
            Ok(false) => DedupeResult::Differs,
            Err(e) => DedupeResult::Failed(e),
        };
        Ok(Outcome::Dedupe(status))
    }

    fn dedupe_one(
        &mut self,
        s: &str,
        src_off: u64,
        d: &str,
        dst_off: u64,
        len: u64,
        uncertain: &mut bool,
    ) -> Result<bool, i32> {
        remap_verify_area(src_off, dst_off, len)?;
        if len == 0 {
            return Ok(true);
        }
        let (isize, dsize) = (self.size(s), self.size(d));
        if src_off % BS != 0 || dst_off % BS != 0 {
            return Err(libc::EINVAL);
        }
        if src_off >= isize || src_off + len > isize || dst_off >= dsize || dst_off + len > dsize {
            return Err(libc::EINVAL);
        }
        let mut count = len;
        let bcount = if src_off + count == isize && dst_off + count == dsize {
            isize.next_multiple_of(BS) - src_off
        } else {
            count -= count % BS;
            count
        };
        if s == d && dst_off + bcount > src_off && dst_off < src_off + bcount {
            return Err(libc::EINVAL);
        }
        if count == 0 {
            return Ok(true);
        }
        *uncertain |= self.touches_bad(s, src_off / BS, (src_off + bcount) / BS, false)
            || self.touches_bad(d, dst_off / BS, (dst_off + bcount) / BS, false);
        let (fa, fb) = match (self.nodes.get(s), self.nodes.get(d)) {
            (Some(Node::File(a)), Some(Node::File(b))) => (a, b),
            _ => unreachable!("opened as files"),
        };
        let equal = (0..count.div_ceil(BS)).all(|i| {
            let ba = fa.blocks[(src_off / BS + i) as usize];
            let bb = fb.blocks[(dst_off / BS + i) as usize];
            match (ba, bb) {
                (None, None) => true,
                (Some(_), None) | (None, Some(_)) => false,
                (Some(x), Some(y)) if x == y => true,
                _ => {
                    let lo = i * BS;
                    let hi = count.min(lo + BS);
                    fa.data[(src_off + lo) as usize..(src_off + hi) as usize]
                        == fb.data[(dst_off + lo) as usize..(dst_off + hi) as usize]
                }
            }
        });
        if !equal {
            return Ok(false);
        }
        let ids = fa.blocks[(src_off / BS) as usize..((src_off + bcount) / BS) as usize].to_vec();
        let f = self.file_mut(d);
        f.blocks[(dst_off / BS) as usize..][..ids.len()].copy_from_slice(&ids);
        Ok(true)
    }

    fn files(&self) -> impl Iterator<Item = (&String, &MFile)> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::File(f) => Some((p, f)),
            Node::Dir => None,
        })
    }
}

// ----- the real file system -----

fn formatted_image() -> &'static Vec<u8> {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::new(OPS_POOL_BYTES));
        let pool = Pool::from_backend(backend.clone());
        drop(Fs::format(&pool).expect("format"));
        backend.volatile_image()
    })
}

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    o
}

fn errno<T>(r: crate::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno())
}

fn run_real(fs: &Fs, model: &Model, op: &Op) -> Res {
    let open = |p: usize| errno(fs.open(PATHS[p], &rw()));
    match *op {
        Op::Create(p) => {
            let mut o = rw();
            o.create_new(true);
            errno(fs.open(PATHS[p], &o)).map(|_| Outcome::Done)
        }
        Op::Mkdir(p) => errno(fs.create_dir(PATHS[p])).map(|_| Outcome::Done),
        Op::Rmdir(p) => errno(fs.remove_dir(PATHS[p])).map(|_| Outcome::Done),
        Op::Unlink(p) => errno(fs.remove_file(PATHS[p])).map(|_| Outcome::Done),
        Op::Rename(a, b) => errno(fs.rename(PATHS[a], PATHS[b])).map(|_| Outcome::Done),
        Op::Write { path, off, len, seed } => {
            let f = open(path)?;
            let off = off.at(model.size(PATHS[path]));
            errno(f.write_at(&op_pattern(seed, off, len as usize), off)).map(|n| Outcome::Bytes(n as u64))
        }
        Op::Truncate { path, size } => {
            let f = open(path)?;
            errno(f.set_len(size.at(model.size(PATHS[path])))).map(|_| Outcome::Done)
        }
        Op::Reflink { src, src_off, dst, dst_off, len } => {
            let s = open(src)?;
            let d = open(dst)?;
            let isize = model.size(PATHS[src]);
            let src_off = src_off.at(isize);
            let dst_off = dst_off.at(model.size(PATHS[dst]));
            errno(fs.reflink(&s, src_off, &d, dst_off, len.at(isize, src_off))).map(Outcome::Bytes)
        }
        Op::Dedupe { src, src_off, len, dst, dst_off } => {
            let s = open(src)?;
            let d = open(dst)?;
            let isize = model.size(PATHS[src]);
            let src_off = src_off.at(isize);
            let dst_off = dst_off.map_or(src_off, |o| o.at(model.size(PATHS[dst])));
            let statuses = errno(fs.dedupe(
                &s,
                src_off,
                len.at(isize, src_off),
                &[DedupeTarget { file: &d, offset: dst_off }],
            ))?;
            let status = match statuses.into_iter().next() {
                Some(DedupeStatus::Same { bytes_deduped }) => DedupeResult::Same(bytes_deduped),
                Some(DedupeStatus::Differs) => DedupeResult::Differs,
                Some(DedupeStatus::Failed(e)) => DedupeResult::Failed(e.errno()),
                None => DedupeResult::Failed(0),
            };
            Ok(Outcome::Dedupe(status))
        }
        Op::Unshare { path, off, len } => {
            let f = open(path)?;
            let size = model.size(PATHS[path]);
            let off = off.at(size);
            errno(fs.unshare(&f, off, len.at(size, off))).map(|_| Outcome::Done)
        }
        Op::Remount | Op::Poison { .. } => unreachable!("run by the driver"),
    }
}

/// The pool block that file block `fb` of `path` maps, from FIEMAP.
fn pool_block_of(fs: &Fs, path: &str, fb: u64) -> Option<u64> {
    let f = fs.open(path, &OpenOptions::new().read(true).clone()).ok()?;
    fs.fiemap(&f)
        .ok()?
        .iter()
        .find(|e| e.logical / BS <= fb && fb < (e.logical + e.length) / BS)
        .map(|e| e.physical / BS + fb - e.logical / BS)
}

/// Chooses and fails one pool block; updates the model. Returns a description for messages.
fn poison(fs: &Fs, model: &mut Model, kind: u8, pick: u16) -> Result<String, String> {
    let pick = pick as usize;
    let mapped: Vec<(String, u64, u64)> = model
        .files()
        .flat_map(|(p, f)| {
            f.blocks.iter().enumerate().filter_map(move |(fb, id)| id.map(|id| (p.clone(), fb as u64, id)))
        })
        .collect();
    let total = fs.stats().total_blocks;
    let (block, id) = match kind {
        0 if !mapped.is_empty() => {
            let (path, fb, id) = &mapped[pick % mapped.len()];
            let block = pool_block_of(fs, path, *fb).ok_or_else(|| {
                format!("FIEMAP shows no block at file block {fb} of {path}, the model has one")
            })?;
            (block, Some(*id))
        }
        1 => {
            let layout = fs.read_lock().metadata_layout();
            let lost = fs.read_lock().journal().superblock().lost_copies;
            // Never both superblock copies: the pool would go read-only, which the model does not follow.
            let choices: Vec<(MetaStructure, u64, u64)> = layout
                .into_iter()
                .filter(|(s, _, _)| !matches!(s, MetaStructure::Superblock(_)) || lost == 0)
                .collect();
            let (_, start, len) = choices[pick % choices.len()];
            (start + (pick / choices.len()) as u64 % len, None)
        }
        _ => {
            let free = (0..total)
                .map(|i| (pick as u64 + i) % total)
                .find(|&b| fs.share_state(b) == ShareState::Free);
            match free {
                Some(b) => (b, None),
                None => return Ok("no free block".into()),
            }
        }
    };
    let what = format!("pool block {block} (kind {kind})");
    match fs.memory_failure(block * BS, BS, FailureFlags::default()) {
        Ok(_) => {}
        // Moving metadata needs free space; running out is an answer, not a bug.
        Err(e) if id.is_none() && e.errno() == libc::ENOSPC => return Ok(format!("{what}: {e}")),
        Err(e) => return Err(format!("memory failure of {what} failed: {e}")),
    }
    if let Some(id) = id {
        model.bad.insert(id);
    }
    Ok(what)
}

/// Compares everything the model knows with ferrodax; the first difference, if any.
/// A lazy mount of `pool` (`Fs::mount_read_only_lazy`) lists every directory and opens, stats
/// and reads every path of `model` as `whole`, a whole mount of the same pool, does (the bytes or
/// the errno), reading only the inodes those calls need. False when the lazy mount mounted
/// whole (a pool that lost a metadata block notes it): nothing lazy to compare.
fn compare_lazy(pool: &Pool, whole: &Fs, model: &Model) -> Result<bool, String> {
    let lazy = Fs::mount_read_only_lazy(pool).map_err(|e| format!("lazy mount failed: {e}"))?;
    if lazy.lazy_inodes_read().is_none() {
        return Ok(false);
    }
    let read = |fs: &Fs, path: &str| -> Result<(crate::fs::Stat, Vec<u8>), i32> {
        let stat = fs.metadata(path).map_err(|e| e.errno())?;
        if stat.kind == crate::format::record::InodeKind::Dir {
            let mut names: Vec<String> =
                fs.read_dir(path).map_err(|e| e.errno())?.into_iter().map(|e| e.name).collect();
            names.sort();
            return Ok((stat, names.join("/").into_bytes()));
        }
        let f = fs.open(path, OpenOptions::new().read(true)).map_err(|e| e.errno())?;
        let mut buf = vec![0; stat.size as usize];
        let n = f.read_at(&mut buf, 0).map_err(|e| e.errno())?;
        buf.truncate(n);
        Ok((stat, buf))
    };
    for path in std::iter::once("/").chain(model.nodes.keys().map(String::as_str)) {
        let (got, want) = (read(&lazy, path), read(whole, path));
        if got != want {
            return Err(format!("lazy mount: {path}: {got:?}, the whole mount {want:?}"));
        }
    }
    match lazy.lazy_inodes_read() {
        Some(n) if n <= model.nodes.len() + 1 => Ok(true),
        other => Err(format!("the lazy mount read {other:?} inodes for {} paths", model.nodes.len())),
    }
}

fn compare(fs: &Fs, model: &Model) -> Result<(), String> {
    // The tree.
    let mut real = BTreeMap::new();
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        for e in fs.read_dir(&dir).map_err(|e| format!("read_dir {dir}: {e}"))? {
            let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
            let is_dir = e.kind == crate::format::record::InodeKind::Dir;
            if is_dir {
                stack.push(path.clone());
            }
            real.insert(path, is_dir);
        }
    }
    let expected: BTreeMap<String, bool> =
        model.nodes.iter().map(|(p, n)| (p.clone(), matches!(n, Node::Dir))).collect();
    if real != expected {
        return Err(format!("tree differs: ferrodax {real:?}, model {expected:?}"));
    }
    // Bytes, EIO exactly at bad blocks, and block sharing one-to-one with the model's ids.
    let mut id_to_block: HashMap<u64, u64> = HashMap::new();
    let mut block_to_id: HashMap<u64, u64> = HashMap::new();
    let bad_blocks = fs.bad_blocks();
    let is_bad_block = |b: u64| bad_blocks.iter().any(|&(s, l)| s <= b && b < s + l);
    for (path, mf) in model.files() {
        let f =
            fs.open(path, &OpenOptions::new().read(true).clone()).map_err(|e| format!("open {path}: {e}"))?;
        let size = f.metadata().map_err(|e| format!("stat {path}: {e}"))?.size;
        if size != mf.data.len() as u64 {
            return Err(format!("{path}: size {size}, model {}", mf.data.len()));
        }
        let first_bad = mf.blocks.iter().position(|id| id.is_some_and(|id| model.bad.contains(&id)));
        let mut buf = vec![0u8; size as usize];
        let got = f.read_at(&mut buf, 0);
        match (first_bad, got) {
            (Some(0), Err(e)) if e.errno() == libc::EIO => {}
            (Some(fb), Ok(n)) if fb > 0 && n as u64 == fb as u64 * BS => {}
            (None, Ok(n)) if n as u64 == size => {}
            (want, got) => {
                return Err(format!(
                    "{path}: read of the whole file gave {got:?}, the first bad block is {want:?}"
                ))
            }
        }
        for fb in 0..size.div_ceil(BS) {
            let lo = fb * BS;
            let hi = size.min(lo + BS);
            let mut block = vec![0u8; (hi - lo) as usize];
            let bad = mf.blocks[fb as usize].is_some_and(|id| model.bad.contains(&id));
            match f.read_at(&mut block, lo) {
                Err(e) if bad && e.errno() == libc::EIO => {}
                Ok(n) if !bad && n == block.len() => {
                    if block != mf.data[lo as usize..hi as usize] {
                        let at =
                            block.iter().zip(&mf.data[lo as usize..]).position(|(a, b)| a != b).unwrap_or(0);
                        return Err(format!("{path}: bytes differ at offset {}", lo + at as u64));
                    }
                }
                other => return Err(format!("{path}: read of block {fb} (bad: {bad}) gave {other:?}")),
            }
        }
        let mut blocks: Vec<Option<u64>> = vec![None; mf.blocks.len()];
        for e in fs.fiemap(&f).map_err(|e| format!("fiemap {path}: {e}"))? {
            for b in 0..e.length / BS {
                let fb = (e.logical / BS + b) as usize;
                if fb >= blocks.len() {
                    return Err(format!("{path}: FIEMAP maps file block {fb} past EOF ({size})"));
                }
                blocks[fb] = Some(e.physical / BS + b);
            }
        }
        for (fb, (&id, &block)) in mf.blocks.iter().zip(&blocks).enumerate() {
            match (id, block) {
                (None, None) => {}
                (Some(id), Some(block)) => {
                    if *id_to_block.entry(id).or_insert(block) != block
                        || *block_to_id.entry(block).or_insert(id) != id
                    {
                        return Err(format!(
                            "{path}: file block {fb} is pool block {block}, which breaks the model's sharing \
                             (model block id {id} is pool block {:?}, pool block {block} is id {:?})",
                            id_to_block.get(&id),
                            block_to_id.get(&block)
                        ));
                    }
                    if model.bad.contains(&id) != is_bad_block(block) {
                        return Err(format!(
                            "{path}: pool block {block} bad: {}, model: {}",
                            is_bad_block(block),
                            model.bad.contains(&id)
                        ));
                    }
                }
                (want, got) => {
                    return Err(format!("{path}: file block {fb}: FIEMAP says {got:?}, the model {want:?}"))
                }
            }
        }
    }
    let report = fs.check();
    if !report.is_clean() {
        return Err(format!("check found problems:\n{report}"));
    }
    Ok(())
}

/// What one input's steps came to, for tests that want to know how deep a sequence got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsSummary {
    /// Steps run on both sides (skipped steps excluded).
    pub ran: usize,
    /// Steps that succeeded, by kind ("write", "reflink", "poison", ...; "lazy mount": a lazy
    /// mount after a remount's checkpoint read as the whole mount).
    pub succeeded: BTreeMap<&'static str, usize>,
    /// Steps that failed the same way on both sides.
    pub failed: usize,
    /// Steps that met a bad block and failed with EIO, changing nothing.
    pub stopped_by_bad_blocks: usize,
}

impl Op {
    /// A short name of the step's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create(_) => "create",
            Op::Mkdir(_) => "mkdir",
            Op::Rmdir(_) => "rmdir",
            Op::Unlink(_) => "unlink",
            Op::Rename(..) => "rename",
            Op::Write { .. } => "write",
            Op::Truncate { .. } => "truncate",
            Op::Reflink { .. } => "reflink",
            Op::Dedupe { .. } => "dedupe",
            Op::Unshare { .. } => "unshare",
            Op::Remount => "remount",
            Op::Poison { .. } => "poison",
        }
    }
}

/// Runs the steps `bytes` decode to ([`decode_ops`]) on a fresh volatile pool and on the model,
/// comparing after every step; panics at the first difference, naming the step and the whole
/// sequence.
pub fn op_sequence(bytes: &[u8]) -> OpsSummary {
    let ops = decode_ops(bytes);
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(formatted_image().clone())));
    let mut fs = Some(Fs::mount(&pool).expect("a fresh pool mounts"));
    let mut model = Model::default();
    let mut summary = OpsSummary::default();
    let mut poisons = 0;
    for (i, op) in ops.iter().enumerate() {
        let fail = |why: String| -> ! { panic!("step {i} {op:?} of {ops:?}: {why}") };
        let live = fs.as_ref().expect("mounted");
        let mut succeeded = true;
        match *op {
            Op::Remount => {
                let old = fs.take().expect("mounted");
                // Every other remount writes a checkpoint first, a delta whenever one may be, so
                // that mounts read chains of deltas as well as logs to replay.
                if i % 2 == 1 {
                    old.exclusive().prefer_delta_checkpoints(true);
                    old.checkpoint()
                        .unwrap_or_else(|e| fail(format!("checkpoint before remount failed: {e}")));
                }
                drop(old);
                if i % 2 == 1 {
                    // Nothing in the log: a lazy mount serves the pool, and must read as a
                    // whole read-only mount does.
                    let whole = Fs::mount_read_only(&pool)
                        .unwrap_or_else(|e| fail(format!("read-only mount failed: {e}")));
                    if compare_lazy(&pool, &whole, &model).unwrap_or_else(|e| fail(e)) {
                        *summary.succeeded.entry("lazy mount").or_default() += 1;
                    }
                }
                fs = Some(Fs::mount(&pool).unwrap_or_else(|e| fail(format!("remount failed: {e}"))));
            }
            Op::Poison { kind, pick } => {
                if poisons == MAX_POISONS {
                    continue;
                }
                poisons += 1;
                poison(live, &mut model, kind, pick).unwrap_or_else(|e| fail(e));
            }
            _ => {
                let mut next = model.clone();
                let (want, uncertain) = next.apply(op);
                if want == Ok(Outcome::Skip) {
                    continue;
                }
                let got = run_real(live, &model, op);
                let eio =
                    got == Err(libc::EIO) || got == Ok(Outcome::Dedupe(DedupeResult::Failed(libc::EIO)));
                if uncertain && eio && got != want {
                    // A copy met a bad block: nothing changed.
                    summary.stopped_by_bad_blocks += 1;
                    succeeded = false;
                } else if got != want {
                    fail(format!("ferrodax gave {got:?}, the model {want:?}"));
                } else {
                    succeeded = matches!(
                        got,
                        Ok(Outcome::Done | Outcome::Bytes(_) | Outcome::Dedupe(DedupeResult::Same(_)))
                    );
                    summary.failed += usize::from(got.is_err());
                    model = next;
                }
            }
        }
        summary.ran += 1;
        if succeeded {
            *summary.succeeded.entry(op.kind()).or_default() += 1;
        }
        if let Err(why) = compare(fs.as_ref().expect("mounted"), &model) {
            fail(why);
        }
    }
    summary
}
