//! Helpers shared by the core's correctness tests (tests/model.rs, tests/remap_rules.rs,
//! tests/enospc.rs): handle modes, data patterns, errno extraction, and the brute-force check of
//! the reverse map against every file's FIEMAP extents.
//!
//! Everything here goes through the public API only; it must never reach into the file system's
//! internals, because the point of these tests is to judge the core from the outside.

#![allow(dead_code)]

use ferrodax::{File, Fs, OpenOptions, OwnerKind, ShareState};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes per block.
pub const BS: u64 = 4096;

/// How a test opens a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// O_RDWR.
    ReadWrite,
    /// O_RDONLY.
    ReadOnly,
    /// O_WRONLY.
    WriteOnly,
    /// O_WRONLY | O_APPEND.
    Append,
    /// O_RDWR | O_APPEND.
    ReadAppend,
}

impl Mode {
    /// The open options of this mode (never creating the file).
    pub fn options(self) -> OpenOptions {
        let mut o = OpenOptions::new();
        match self {
            Mode::ReadWrite => o.read(true).write(true),
            Mode::ReadOnly => o.read(true),
            Mode::WriteOnly => o.write(true),
            Mode::Append => o.append(true),
            Mode::ReadAppend => o.read(true).append(true),
        };
        o
    }

    /// The handle may read.
    pub fn reads(self) -> bool {
        matches!(self, Mode::ReadWrite | Mode::ReadOnly | Mode::ReadAppend)
    }

    /// The handle may write.
    pub fn writes(self) -> bool {
        !matches!(self, Mode::ReadOnly)
    }

    /// Writes go to EOF.
    pub fn appends(self) -> bool {
        matches!(self, Mode::Append | Mode::ReadAppend)
    }
}

/// Read-write options that create the file if needed.
pub fn rw_create() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// Opens `path` with `mode`, panicking on failure.
pub fn open(fs: &Fs, path: &str, mode: Mode) -> File {
    fs.open(path, &mode.options()).unwrap_or_else(|e| panic!("open {path} {mode:?}: {e}"))
}

/// Creates (or opens) `path` read-write.
pub fn create(fs: &Fs, path: &str) -> File {
    fs.open(path, &rw_create()).unwrap_or_else(|e| panic!("create {path}: {e}"))
}

/// Turns a ferrodax result into a result carrying the errno.
pub fn errno<T>(r: ferrodax::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno())
}

/// The errno of a call that must fail.
pub fn expect_errno<T: std::fmt::Debug>(r: ferrodax::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.errno(),
    }
}

/// Test data: the byte at file offset `file_off + i` for a write made with `seed`.
///
/// Seed 0 is all zeros (data that must still differ from a hole); even seeds repeat every block
/// (so equal blocks are common and dedupe has something to find); odd seeds also depend on the
/// block index (so a block landing at the wrong offset is noticed).
pub fn pattern(seed: u8, file_off: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let o = file_off.wrapping_add(i);
            if seed == 0 {
                return 0;
            }
            let within = ((o % BS) * 131 + u64::from(seed) * 17) % 251;
            let block = if seed % 2 == 1 { (o / BS) * 7 } else { 0 };
            (within + block) as u8 ^ seed
        })
        .collect()
}

/// The whole contents of a file, read through `file`.
pub fn read_all(file: &File) -> Vec<u8> {
    let size = file.metadata().expect("fstat").size;
    let mut buf = vec![0u8; size as usize];
    let n = file.read_at(&mut buf, 0).expect("read");
    assert_eq!(n as u64, size, "short read of a whole file");
    buf
}

/// The pool block backing each file block (None for a hole), from FIEMAP, for a file of `size`.
/// Fails if FIEMAP reports something malformed or a block mapped past EOF.
pub fn block_map(fs: &Fs, file: &File) -> Result<Vec<Option<u64>>, String> {
    let size = file.metadata().map_err(|e| e.to_string())?.size;
    let nblocks = size.div_ceil(BS) as usize;
    let mut out = vec![None; nblocks];
    let extents = fs.fiemap(file).map_err(|e| e.to_string())?;
    for (i, e) in extents.iter().enumerate() {
        if e.logical % BS != 0 || e.physical % BS != 0 || e.length % BS != 0 || e.length == 0 {
            return Err(format!("ino {}: malformed extent {e:?}", file.ino()));
        }
        if e.last != (i + 1 == extents.len()) {
            return Err(format!("ino {}: LAST flag wrong on extent {i} of {}", file.ino(), extents.len()));
        }
        for b in 0..e.length / BS {
            let fb = (e.logical / BS + b) as usize;
            if fb >= nblocks {
                return Err(format!("ino {}: file block {fb} mapped past EOF (size {size})", file.ino()));
            }
            if out[fb].is_some() {
                return Err(format!("ino {}: file block {fb} reported twice", file.ino()));
            }
            out[fb] = Some(e.physical / BS + b);
        }
    }
    Ok(out)
}

/// Checks the reverse map against a brute-force scan of every file's FIEMAP extents: the owners of
/// every pool block (from one `owners` call over the whole pool, and from one call per data
/// block), their refcounts, every block's share state, and FIEMAP's shared flags.
///
/// `files` must hold a handle on every inode that owns data (including open, unlinked ones).
pub fn verify_reverse_map(fs: &Fs, files: &[&File]) -> Result<(), String> {
    let total_blocks = fs.stats().total_blocks;
    // Brute force: pool block -> {(ino, file offset)}, and the shared flag FIEMAP gave each block.
    let mut brute: BTreeMap<u64, BTreeSet<(u64, u64)>> = BTreeMap::new();
    let mut flagged: Vec<(u64, u64, bool)> = Vec::new(); // (pool block, ino, shared flag)
    for f in files {
        for e in fs.fiemap(f).map_err(|e| e.to_string())? {
            for b in 0..e.length / BS {
                let block = e.physical / BS + b;
                brute.entry(block).or_default().insert((f.ino(), e.logical + b * BS));
                flagged.push((block, f.ino(), e.shared));
            }
        }
    }
    // The whole pool in one query, expanded to blocks.
    let mut seen: BTreeMap<u64, BTreeSet<(u64, u64)>> = BTreeMap::new();
    let mut meta_blocks = BTreeSet::new();
    for o in fs.owners(0, total_blocks * BS) {
        if o.pool_offset % BS != 0 || o.length % BS != 0 || o.length == 0 {
            return Err(format!("owners: malformed entry {o:?}"));
        }
        for b in 0..o.length / BS {
            let block = o.pool_offset / BS + b;
            match &o.owner {
                OwnerKind::File { ino, file_offset, .. } => {
                    if !seen.entry(block).or_default().insert((*ino, file_offset + b * BS)) {
                        return Err(format!("owners: block {block} lists ino {ino} twice"));
                    }
                }
                OwnerKind::Metadata { .. } => {
                    meta_blocks.insert(block);
                }
            }
        }
    }
    if seen != brute {
        let diff =
            brute.keys().chain(seen.keys()).find(|b| brute.get(b) != seen.get(b)).copied().unwrap_or(0);
        return Err(format!(
            "owners(whole pool) differs from the FIEMAP scan at block {diff}: owners {:?}, scan {:?}",
            seen.get(&diff),
            brute.get(&diff)
        ));
    }
    if let Some(b) = brute.keys().find(|b| meta_blocks.contains(b)) {
        return Err(format!("block {b} owned by a file and by metadata"));
    }
    // Per block: owners of exactly that block, with refcounts.
    for (&block, expected) in &brute {
        let mut got = BTreeSet::new();
        for o in fs.owners(block * BS, BS) {
            match o.owner {
                OwnerKind::File { ino, file_offset, refcount, .. } => {
                    if refcount != expected.len() {
                        return Err(format!(
                            "owners(block {block}): refcount {refcount}, but {} owners found by scan",
                            expected.len()
                        ));
                    }
                    got.insert((ino, file_offset));
                }
                OwnerKind::Metadata { structure } => {
                    return Err(format!("owners(block {block}) lists metadata {structure} on a data block"))
                }
            }
        }
        if &got != expected {
            return Err(format!("owners(block {block}) = {got:?}, scan says {expected:?}"));
        }
    }
    // Every block's share state.
    for block in 0..total_blocks {
        let state = fs.share_state(block);
        let ok = match (brute.get(&block), &state) {
            (None, ShareState::Free) => !meta_blocks.contains(&block),
            (None, ShareState::Metadata { .. }) => meta_blocks.contains(&block),
            (Some(set), ShareState::Single { ino, file_block }) => {
                set.len() == 1 && set.contains(&(*ino, file_block * BS))
            }
            (Some(set), ShareState::Shared { count }) => set.len() > 1 && *count == set.len(),
            _ => false,
        };
        if !ok {
            return Err(format!("share_state({block}) = {state:?}, scan says {:?}", brute.get(&block)));
        }
    }
    // FIEMAP's shared flag.
    for (block, ino, shared) in flagged {
        let owners = brute[&block].len();
        if shared != (owners > 1) {
            return Err(format!(
                "fiemap of ino {ino}: block {block} flagged shared={shared} but it has {owners} owners"
            ));
        }
    }
    Ok(())
}

/// Asserts that `fs.check()` finds nothing wrong.
pub fn assert_clean(fs: &Fs) {
    let report = fs.check();
    assert!(report.is_clean(), "check found problems:\n{report}");
}

/// Asserts two byte strings are equal, naming the first difference instead of printing them.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
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

/// The correspondence between a model's abstract block ids and the pool blocks FIEMAP reports,
/// built file by file: it must stay one-to-one (same id = same pool block, and back).
#[derive(Debug, Default)]
pub struct BlockIds {
    id_to_block: std::collections::HashMap<u64, u64>,
    block_to_id: std::collections::HashMap<u64, u64>,
}

impl BlockIds {
    /// Checks one file: the model's block ids `want` (None: a hole) against its block map `got`.
    pub fn check(&mut self, path: &str, want: &[Option<u64>], got: &[Option<u64>]) -> Result<(), String> {
        if want.len() != got.len() {
            return Err(format!("{path}: {} blocks, model {}", got.len(), want.len()));
        }
        for (fb, (&want, &got)) in want.iter().zip(got).enumerate() {
            match (want, got) {
                (None, None) => {}
                (Some(id), Some(block)) => {
                    let b = *self.id_to_block.entry(id).or_insert(block);
                    let i = *self.block_to_id.entry(block).or_insert(id);
                    if b != block || i != id {
                        return Err(format!(
                            "{path} file block {fb}: sharing differs from the model (pool block {block}; the \
                             model's block {id} is at pool block {b}; pool block {block} is the model's {i})"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{path} file block {fb}: model says {}, FIEMAP says {got:?}",
                        if want.is_some() { "data" } else { "hole" }
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The space checks every model test makes after a step: the reverse map against a brute-force
/// scan of `files` (see [`verify_reverse_map`]) and `check()` clean.
pub fn verify_space(fs: &Fs, files: &[File]) -> Result<(), String> {
    let refs: Vec<&File> = files.iter().collect();
    verify_reverse_map(fs, &refs)?;
    let report = fs.check();
    if !report.is_clean() {
        return Err(format!("check:\n{report}"));
    }
    Ok(())
}

/// A number from the environment variable `name`, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A proptest runner for `cases` cases, seeded from FERRODAX_PROPTEST_SEED (a number, or
/// "random"), else `default_seed`; returns it with the seed (print it, to reproduce a failure).
pub fn seeded_runner(cases: u32, default_seed: u64) -> (proptest::test_runner::TestRunner, u64) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed = match std::env::var("FERRODAX_PROPTEST_SEED").as_deref() {
        Ok("random") => {
            let mut bytes = [0u8; 8];
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                use std::io::Read;
                let _ = f.read_exact(&mut bytes);
            }
            u64::from_le_bytes(bytes)
        }
        Ok(v) => v.parse().expect("FERRODAX_PROPTEST_SEED: a number or \"random\""),
        Err(_) => default_seed,
    };
    let mut seed_bytes = [0u8; 32];
    for (i, chunk) in seed_bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ (i as u64).wrapping_mul(0x9e37_79b9)).to_le_bytes());
    }
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    (TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes)), seed)
}
