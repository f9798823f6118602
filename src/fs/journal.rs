//! The journal: makes state changes durable, atomically, and rebuilds the state at mount.
//!
//! Owns the order of stores, flushes and fences on metadata. One operation is one log record; it
//! counts once its last byte is durable, which its checksum proves. When the log region is full the
//! whole state is written as a checkpoint and the superblocks are switched to it (the second atomic
//! step this code knows). Must never apply a change to memory before it is durable, nor reuse a
//! block that a durable structure still references.

use super::ownership::{MetaStructure, Owner};
use super::state::{ApplyMode, State};
use super::validate;
use crate::error::{Error, Result};
use crate::format::checkpoint::{self, StateImage};
use crate::format::record::{self, InodeAttrs, InodeKind, Mutation, RecordAt};
use crate::format::superblock::Superblock;
use crate::format::{BLOCK_SIZE, ROOT_INO, SUPERBLOCK_BLOCKS};
use crate::pool::SharedBackend;

/// Where the log stands and what the superblock says.
pub struct Journal {
    backend: SharedBackend,
    sb: Superblock,
    /// Byte offset inside the log region where the next record goes.
    log_pos: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Blocks of the current checkpoint.
    checkpoint_blocks: Vec<u64>,
    /// Records committed since mount, and checkpoints written.
    pub stats: JournalStats,
}

/// Counters for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalStats {
    /// Records appended since mount.
    pub records: u64,
    /// Checkpoints written since mount.
    pub checkpoints: u64,
    /// Records replayed at mount.
    pub replayed: u64,
}

/// What mount found, beyond the state itself.
#[derive(Debug, Clone, Default)]
pub struct MountNotes {
    /// Problems found and repaired or worked around (a damaged superblock copy, ...).
    pub repaired: Vec<String>,
    /// Superblock copies that must be rewritten from the good one.
    pub stale_superblocks: Vec<u32>,
}

/// How many blocks the log region gets in a pool of `total_blocks`.
pub fn log_blocks_for(total_blocks: u64) -> u64 {
    (total_blocks / 64).clamp(16, 4096).min(total_blocks.saturating_sub(8).max(1))
}

/// Current time in ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn random_uuid() -> [u8; 16] {
    let mut uuid = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut uuid);
    }
    if uuid == [0; 16] {
        uuid[..8].copy_from_slice(&now_ns().to_le_bytes());
        uuid[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

fn meta_layout(sb: &Superblock, checkpoint_blocks: &[u64]) -> Vec<(u64, u64, MetaStructure)> {
    let mut meta = vec![
        (SUPERBLOCK_BLOCKS[0], 1, MetaStructure::Superblock(0)),
        (SUPERBLOCK_BLOCKS[1], 1, MetaStructure::Superblock(1)),
        (sb.log_start, sb.log_blocks, MetaStructure::Log),
    ];
    meta.extend(checkpoint_blocks.iter().map(|&b| (b, 1, MetaStructure::Checkpoint)));
    meta
}

impl Journal {
    /// Writes a new, empty file system over the whole pool (mkfs).
    pub fn format(backend: SharedBackend) -> Result<(Journal, State)> {
        let total_blocks = backend.len() / BLOCK_SIZE;
        if total_blocks < 32 {
            return Err(Error::Invalid(format!(
                "a pool needs at least 32 blocks (128 KiB); this one has {total_blocks}"
            )));
        }
        let now = now_ns();
        let sb = Superblock {
            uuid: random_uuid(),
            total_blocks,
            features: 0,
            generation: 0,
            log_start: 2,
            log_blocks: log_blocks_for(total_blocks),
            log_first_seq: 1,
            checkpoint_head: 0,
            checkpoint_len: 0,
            checkpoint_crc: 0,
            copy: 0,
            created_ns: now,
            lost_copies: 0,
        };
        // Invalidate whatever the log region held before, so an old pool's records cannot replay.
        backend.fill(sb.log_start * BLOCK_SIZE, sb.log_blocks * BLOCK_SIZE, 0)?;
        backend.flush(sb.log_start * BLOCK_SIZE, sb.log_blocks * BLOCK_SIZE);
        let root = InodeAttrs {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: Vec::new(),
            kind: InodeKind::Dir,
            mode: 0o755,
            size: 0,
            nlink: 2,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
        };
        let image = StateImage {
            next_ino: ROOT_INO + 1,
            inodes: vec![checkpoint::InodeImage { attrs: root, extents: Vec::new() }],
            quarantine: Vec::new(),
        };
        let state = State::from_image(&image, total_blocks, &meta_layout(&sb, &[]))?;
        let mut journal = Journal {
            backend,
            sb,
            log_pos: 0,
            next_seq: 1,
            checkpoint_blocks: Vec::new(),
            stats: JournalStats::default(),
        };
        let mut state = state;
        journal.checkpoint(&mut state)?;
        Ok((journal, state))
    }

    /// Reads the superblocks, the checkpoint and the log, and rebuilds the state.
    pub fn mount(backend: SharedBackend) -> Result<(Journal, State, MountNotes)> {
        let mut notes = MountNotes::default();
        let pool_blocks = backend.len() / BLOCK_SIZE;
        let mut copies = Vec::new();
        let mut errors = Vec::new();
        for (copy, &block) in SUPERBLOCK_BLOCKS.iter().enumerate() {
            if block >= pool_blocks {
                errors.push(format!("superblock copy {copy}: beyond the end of the pool"));
                continue;
            }
            // A copy that a valid one already marks lost sits on bad memory: never read it.
            if copies.iter().any(|c: &Superblock| c.lost_copies & (1 << copy) != 0) {
                errors.push(format!("superblock copy {copy}: marked lost (bad memory), not read"));
                continue;
            }
            let decoded = match read_block(&backend, block) {
                Ok(bytes) => Superblock::decode(&bytes, copy as u32),
                Err(e) => Err(Error::Corrupt(format!("superblock copy {copy}: {e}"))),
            };
            match decoded {
                Ok(sb) if sb.total_blocks > pool_blocks => errors.push(format!(
                    "superblock copy {copy}: says {} blocks but the pool has {pool_blocks}",
                    sb.total_blocks
                )),
                Ok(sb) => copies.push(sb),
                Err(Error::Corrupt(detail)) => errors.push(detail),
                Err(e) => errors.push(e.to_string()),
            }
        }
        copies.sort_by_key(|sb| std::cmp::Reverse(sb.generation));
        let Some(best) = copies.first().cloned() else {
            return Err(Error::Corrupt(format!("no valid superblock: {}", errors.join("; "))));
        };
        for other in 0..2u32 {
            if best.lost_copies & (1 << other) != 0 {
                continue; // known lost: nothing to repair
            }
            let fine = copies
                .iter()
                .any(|c| c.copy == other && c.generation == best.generation && same_except_copy(c, &best));
            if !fine {
                notes.stale_superblocks.push(other);
                let why = errors
                    .iter()
                    .find(|e| e.contains(&format!("copy {other}")))
                    .cloned()
                    .unwrap_or_else(|| format!("superblock copy {other}: older generation"));
                notes.repaired.push(why);
            }
        }
        let (payload, checkpoint_blocks) = checkpoint::read_chain(
            best.checkpoint_head,
            best.generation,
            best.checkpoint_len,
            best.checkpoint_crc,
            best.total_blocks,
            |b| read_block(&backend, b),
        )?;
        let image = StateImage::decode(&payload)?;
        let mut state =
            State::from_image(&image, best.total_blocks, &meta_layout(&best, &checkpoint_blocks))?;
        if !state.inodes.get(&ROOT_INO).is_some_and(|r| r.is_dir()) {
            return Err(Error::Corrupt("checkpoint: no root directory".into()));
        }
        // Replay the log.
        let log = log_region(&backend, &best)?;
        let mut pos = 0usize;
        let mut seq = best.log_first_seq;
        let mut replayed = 0;
        while let RecordAt::Valid(mutations, len) = record::decode_record(&log[pos..], seq)
            .map_err(|e| validate::in_log_record(seq, pos as u64, e))?
        {
            state.replay_record(&mutations, seq, pos as u64)?;
            pos += len;
            seq += 1;
            replayed += 1;
        }
        // A torn last record legitimately ends the log, but a damaged record with intact later
        // ones after it would silently drop committed operations whose freed blocks may already
        // hold other data: refuse to mount instead.
        if let Some((later_seq, at)) = later_record_after(&log, pos, seq) {
            return Err(Error::Corrupt(format!(
                "log record {seq} (log byte {pos}) is damaged, yet later records are present (record \
                 {later_seq} at log byte {at}): replaying only up to it would lose committed operations"
            )));
        }
        let journal = Journal {
            backend,
            sb: best,
            log_pos: pos as u64,
            next_seq: seq,
            checkpoint_blocks,
            stats: JournalStats { replayed, ..JournalStats::default() },
        };
        Ok((journal, state, notes))
    }

    /// Rewrites superblock copies that mount found stale or damaged.
    pub fn repair_superblocks(&mut self, copies: &[u32]) {
        for &copy in copies {
            self.write_superblock(copy);
        }
        self.backend.drain();
    }

    /// The current superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// Blocks of the current checkpoint.
    pub fn checkpoint_blocks(&self) -> &[u64] {
        &self.checkpoint_blocks
    }

    /// Bytes left in the log region.
    pub fn log_free_bytes(&self) -> u64 {
        self.sb.log_blocks * BLOCK_SIZE - self.log_pos
    }

    /// Makes `mutations` durable as one atomic step, then applies them to `state`.
    ///
    /// The caller has written (and flushed) any data the mutations point at; the first fence here
    /// orders that data before the record.
    pub fn commit(&mut self, state: &mut State, mutations: &[Mutation]) -> Result<()> {
        if mutations.is_empty() {
            return Ok(());
        }
        let bound = record::record_len_bound(mutations) as u64;
        let log_bytes = self.sb.log_blocks * BLOCK_SIZE;
        if bound > self.log_free_bytes() && bound <= log_bytes {
            // Start the log over; the record then fits.
            self.checkpoint(state)?;
        }
        if bound <= self.log_free_bytes() {
            let bytes = record::encode_record(self.next_seq, mutations);
            let at = self.sb.log_start * BLOCK_SIZE + self.log_pos;
            self.backend.drain(); // data before record
                                  // A log block on bad memory: the record is not written (a torn record at the end of
                                  // the log, which replay ignores) and nothing changes; the front end records the bad
                                  // block, which moves the log.
            self.backend.write(at, &bytes)?;
            self.backend.flush(at, bytes.len() as u64);
            self.backend.drain(); // record durable: the operation happened
            self.log_pos += bytes.len() as u64;
            self.next_seq += 1;
            self.stats.records += 1;
            for m in mutations {
                state.apply(m, ApplyMode::Live).map_err(|e| bug("applying a committed record", e))?;
            }
            return Ok(());
        }
        // Larger than the whole log: the checkpoint itself is the atomic step. Make sure it will
        // have room before anything changes in memory.
        // Size it from the state as the transaction leaves it: one that frees thousands of extents
        // shrinks the checkpoint, and must work on a full pool (deleting is how space comes back).
        let mut after = state.clone();
        for m in mutations {
            after.apply(m, ApplyMode::Live).map_err(|e| bug("sizing a large transaction", e))?;
        }
        let need = checkpoint::blocks_for(after.to_image().encode().len()) as u64;
        drop(after);
        if need > state.free.free_blocks() {
            return Err(Error::NoSpace(format!(
                "a {bound}-byte transaction needs a {need}-block checkpoint"
            )));
        }
        self.backend.drain();
        let durable_free = state.free.clone();
        for m in mutations {
            state.apply(m, ApplyMode::Live).map_err(|e| bug("applying a large transaction", e))?;
        }
        // Blocks this transaction frees still hold the durable state's data until the checkpoint
        // replaces it: a crash before the superblock switch must find them intact, so the
        // checkpoint must not be written into them.
        let mut freed_by_transaction = state.free.clone();
        for (start, len) in durable_free.runs() {
            freed_by_transaction.claim(start, len);
        }
        let freed: Vec<(u64, u64)> = freed_by_transaction.runs().collect();
        for &(start, len) in &freed {
            state.free.claim(start, len);
        }
        let written = self.checkpoint(state);
        for &(start, len) in &freed {
            state.free.release(start, len);
        }
        written
    }

    /// Records that superblock copy `copy` sits on bad memory: the surviving copy is rewritten
    /// (through a checkpoint) saying so, and the lost one is never written again. Fails with EIO,
    /// naming the structure, when no copy would survive.
    pub fn mark_superblock_lost(&mut self, state: &mut State, copy: u32) -> Result<()> {
        let lost = self.sb.lost_copies | (1 << copy);
        if lost == 0b11 {
            return Err(Error::Io(
                "both superblock copies are on bad memory: the pool can no longer record changes".into(),
            ));
        }
        if lost == self.sb.lost_copies {
            return Ok(());
        }
        self.sb.lost_copies = lost;
        self.checkpoint(state)
    }

    /// Moves the log region to fresh blocks (the old one has bad blocks): zeroes a new contiguous
    /// region, writes a checkpoint whose superblocks name it, then frees the old region except its
    /// bad blocks. Fails with ENOSPC, changing nothing, when no contiguous run is free.
    pub fn relocate_log(&mut self, state: &mut State) -> Result<()> {
        let n = self.sb.log_blocks;
        let runs = state.free.allocate(n, None).unwrap_or_default();
        if runs.len() != 1 {
            for &(s, l) in &runs {
                state.free.release(s, l);
            }
            return Err(Error::NoSpace(format!("no {n} contiguous free blocks to move the log to")));
        }
        let (new_start, old_start) = (runs[0].0, self.sb.log_start);
        // Whatever the new region held before must never parse as a record.
        if let Err(e) = self.backend.fill(new_start * BLOCK_SIZE, n * BLOCK_SIZE, 0) {
            state.free.release(new_start, n);
            return Err(e);
        }
        self.backend.flush(new_start * BLOCK_SIZE, n * BLOCK_SIZE);
        state.owners.add(new_start, n, Owner::Meta(MetaStructure::Log));
        self.sb.log_start = new_start;
        if let Err(e) = self.checkpoint(state) {
            self.sb.log_start = old_start;
            let _ = state.owners.remove(new_start, n, Owner::Meta(MetaStructure::Log));
            state.free.release(new_start, n);
            return Err(e);
        }
        let freed = state
            .owners
            .remove(old_start, n, Owner::Meta(MetaStructure::Log))
            .map_err(|e| bug("freeing the old log region", Error::Corrupt(e.0)))?;
        for (s, l) in freed {
            state.release_unless_quarantined(s, l);
        }
        Ok(())
    }

    /// Writes the whole state as a new checkpoint, switches both superblocks to it, frees the old
    /// checkpoint and starts the log over.
    pub fn checkpoint(&mut self, state: &mut State) -> Result<()> {
        let payload = state.to_image().encode();
        let nblocks = checkpoint::blocks_for(payload.len()) as u64;
        let goal = self.checkpoint_blocks.last().map(|b| b + 1);
        let runs = state
            .free
            .allocate(nblocks, goal)
            .ok_or_else(|| Error::NoSpace(format!("no room for a {nblocks}-block checkpoint")))?;
        if let Err(e) =
            runs.iter().try_for_each(|&(s, l)| self.backend.ensure_backed(s * BLOCK_SIZE, l * BLOCK_SIZE))
        {
            for &(s, l) in &runs {
                state.free.release(s, l);
            }
            return Err(e);
        }
        let blocks: Vec<u64> = runs.iter().flat_map(|&(s, l)| s..s + l).collect();
        let generation = self.sb.generation + 1;
        for (block, bytes) in checkpoint::frame(&payload, generation, &blocks) {
            if let Err(e) = self.backend.write(block * BLOCK_SIZE, &bytes) {
                // Nothing names the new chain yet: give its blocks back, the old state stands.
                for &(s, l) in &runs {
                    state.free.release(s, l);
                }
                return Err(e);
            }
            self.backend.flush(block * BLOCK_SIZE, BLOCK_SIZE);
        }
        self.backend.drain(); // checkpoint durable before any superblock names it
        let mut sb = self.sb.clone();
        sb.generation = generation;
        sb.checkpoint_head = blocks[0];
        sb.checkpoint_len = payload.len() as u64;
        sb.checkpoint_crc = crate::format::checksum(&payload);
        sb.log_first_seq = self.next_seq;
        self.sb = sb;
        self.write_superblock(0);
        self.backend.drain(); // copy 0 switched: the new checkpoint is the state
        self.write_superblock(1);
        self.backend.drain();
        // The old checkpoint is referenced by nothing durable any more.
        for &(s, l) in &runs {
            state.owners.add(s, l, Owner::Meta(MetaStructure::Checkpoint));
        }
        for &b in &self.checkpoint_blocks {
            let freed = state
                .owners
                .remove(b, 1, Owner::Meta(MetaStructure::Checkpoint))
                .map_err(|e| bug("freeing the old checkpoint", Error::Corrupt(e.0)))?;
            for (s, l) in freed {
                state.release_unless_quarantined(s, l);
            }
        }
        self.checkpoint_blocks = blocks;
        self.log_pos = 0;
        self.stats.checkpoints += 1;
        Ok(())
    }

    fn write_superblock(&self, copy: u32) {
        if self.sb.lost_copies & (1 << copy) != 0 {
            return; // on bad memory: never written again
        }
        let mut sb = self.sb.clone();
        sb.copy = copy;
        let at = SUPERBLOCK_BLOCKS[copy as usize] * BLOCK_SIZE;
        // A copy on bad memory that cannot be written stays stale on the media: mount takes the
        // other copy (the higher valid generation) and reports this one; a memory failure of it
        // marks it lost.
        if self.backend.write(at, &sb.encode()).is_err() {
            return;
        }
        self.backend.flush(at, BLOCK_SIZE);
    }
}

fn same_except_copy(a: &Superblock, b: &Superblock) -> bool {
    let mut a = a.clone();
    a.copy = b.copy;
    a == *b
}

fn bug(what: &str, e: Error) -> Error {
    debug_assert!(false, "{what}: {e}");
    Error::Corrupt(format!("internal inconsistency while {what}: {e}"))
}

/// The bytes of one pool block (a machine-check-safe copy).
pub fn read_block(backend: &SharedBackend, block: u64) -> Result<Vec<u8>> {
    crate::pool::read_vec(backend.as_ref(), block * BLOCK_SIZE, BLOCK_SIZE)
}

/// Looks past the end of the log (`end`, where record `next_seq` was expected) for a record with a
/// later sequence number of this generation and a valid checksum. Records are appended only after
/// the previous one is durable, so such a record proves the one at `end` was damaged, not torn.
/// Records of earlier generations carry lower sequence numbers and are ignored.
fn later_record_after(log: &[u8], end: usize, next_seq: u64) -> Option<(u64, usize)> {
    // More records than could fit in the region cannot be of this generation.
    let max_records = (log.len() / record::HEADER_LEN) as u64;
    let mut at = end + record::RECORD_ALIGN;
    while at + record::HEADER_LEN <= log.len() {
        let bytes = &log[at..];
        if crate::format::codec::u32_at(bytes, 0) == record::RECORD_MAGIC {
            let seq = crate::format::codec::u64_at(bytes, 8);
            if seq > next_seq
                && seq - next_seq <= max_records
                && !matches!(record::decode_record(bytes, seq), Ok(RecordAt::End))
            {
                return Some((seq, at));
            }
        }
        at += record::RECORD_ALIGN;
    }
    None
}

/// The whole log region (a machine-check-safe copy).
fn log_region(backend: &SharedBackend, sb: &Superblock) -> Result<Vec<u8>> {
    crate::pool::read_vec(backend.as_ref(), sb.log_start * BLOCK_SIZE, sb.log_blocks * BLOCK_SIZE)
}
