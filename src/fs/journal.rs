//! The journal: makes state changes durable, atomically and redundantly, and rebuilds the state at
//! mount.
//!
//! Owns the order of stores, flushes and fences on metadata. One operation is one log record (with
//! group commit, on a pool whose drain is a device flush, the operations of one group are one
//! record, written at the next sync point); a record
//! counts once its last byte is durable in the log, which its checksum proves; then the same bytes
//! go to the same offset of the log mirror. When the log region is full the whole state is written
//! as a checkpoint (two chains of identical blocks) and the superblocks are switched to it (the
//! second atomic step this code knows). Mount takes every record and checkpoint block from
//! whichever copy is intact, and refuses, naming the record, a committed record that no copy holds
//! any more; [`MountMode::Salvage`] instead keeps whatever can be read. Must never apply a change to
//! memory before it is durable (except a grouped operation, whose freed blocks it holds until the
//! group is durable), nor reuse a block that a durable structure still references.

use super::access::Credentials;
use super::ownership::{MetaStructure, Owner};
use super::state::{ApplyMode, State};
use super::validate;
use crate::error::{Error, Result};
use crate::format::checkpoint::{self, DeltaImage, DeltaLink, StateImage};
use crate::format::codec::all_zero;
use crate::format::indexed as checkpoint_index;
use crate::format::legacy;
use crate::format::record::{self, InodeAttrs, Mutation, RecordAt};
use crate::format::superblock::{self, DeltaRoot, Superblock, SLOT_OFFSETS, VERSION};
use crate::format::{BLOCK_SIZE, ROOT_INO, SUPERBLOCK_BLOCKS};
use crate::pool::SharedBackend;

/// Where the log stands and what the superblock says.
pub struct Journal {
    backend: SharedBackend,
    sb: Superblock,
    /// Byte offset inside the log region where the next record goes.
    log_pos: u64,
    /// Extents the log's records added or removed (replayed at mount or committed since), over
    /// all files: with `log_pos`, what replaying the log costs the next mount.
    log_extent_changes: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Every aligned terminator stretch ([`LOG_TERMINATOR_BYTES`]) from the first one at or after
    /// `log_pos` up to this log byte is known to be zero in both copies.
    zeroed_to: u64,
    /// Blocks of the current checkpoint (the base, when a delta follows it): chain 0 and chain 1
    /// (empty in a version 1 pool).
    checkpoint_blocks: [Vec<u64>; 2],
    /// Blocks of the deltas written since the base, oldest first: chain 0 and chain 1 of each.
    delta_blocks: Vec<[Vec<u64>; 2]>,
    /// The next checkpoint must be a whole one: a chain of the base or the delta was found
    /// damaged, or the state was rebuilt by a salvage.
    whole_checkpoint_due: bool,
    /// Tests: write a delta whenever one is allowed, whatever its size ([`Journal::prefer_deltas`]).
    prefer_deltas: bool,
    /// Mirror copies of committed records that could not be written (the operation happened; the
    /// file system moves the mirror or writes a checkpoint to be redundant again).
    mirror_failures: Vec<Error>,
    /// Group commit ([`Journal::commit`]): on, when a drain costs a device flush.
    group_commit: bool,
    /// Group commit: the mutations of operations applied to the state but not yet durable, in
    /// order; the next [`Journal::sync`] writes them as one record.
    group: Vec<Mutation>,
    /// [`record::record_len_bound`] of `group` (plus a header per operation: an upper bound).
    group_bound: usize,
    /// When the first operation of `group` was applied.
    group_since: Option<std::time::Instant>,
    /// The buffer each record is encoded into, kept between commits (up to
    /// [`RECORD_BUFFER_KEPT`] bytes) so that a commit allocates none.
    record_bytes: Vec<u8>,
    /// Records committed since mount, and checkpoints written.
    pub stats: JournalStats,
}

/// A checkpoint writes only the inodes changed since the last checkpoint (a delta) while they are
/// at most this fraction of the inodes and the deltas since the last whole checkpoint, this one
/// included, take at most this fraction of the blocks that whole one takes.
pub const DELTA_MAX_FRACTION: u64 = 4;

/// Deltas after which the next checkpoint is a whole one, whatever their size (mount reads them
/// one after another).
pub const MAX_DELTAS: usize = 64;

/// Blocks that must stay free so that the next whole checkpoint (both chains) of `state` always
/// fits: twice the checkpoint's size bound plus room for it to grow (64 KiB, or 1/32 of a pool
/// smaller than 2 MiB, so the smallest pools keep room for data), plus a few blocks of slack. The
/// file system keeps it out of reach of data; a delta never takes it.
pub fn checkpoint_reserve(state: &State) -> u64 {
    let growth = (64 * 1024).min(state.total_blocks * BLOCK_SIZE / 32);
    whole_checkpoint_blocks(state, growth) + 4
}

/// Blocks a whole checkpoint of `state` takes (both chains), at most, once its image has grown by
/// `extra_bytes`.
pub fn whole_checkpoint_blocks(state: &State, extra_bytes: u64) -> u64 {
    chain_blocks((state.image_size_bound() + extra_bytes) as usize)
}

/// Group commit: how old a group may grow before a sync point comes (checked at each commit,
/// and by the thread of `Fs::sync_periodically`, which `serve` starts), as ext4's journal commits
/// every 5 seconds: with that thread running, a power failure loses at most about this much.
pub const GROUP_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Group commit: the largest record a group becomes (and at most half the log), so that a sync
/// costs one write of a bounded size and usually fits the log.
pub const GROUP_COMMIT_MAX_BYTES: usize = 1 << 20;
/// The largest record buffer a journal keeps for the next commit; a larger one is dropped.
const RECORD_BUFFER_KEPT: usize = 64 * 1024;

/// How mount treats damage that no second copy covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// Refuse to mount (EUCLEAN), naming the structure and the command that helps.
    Normal,
    /// Keep whatever is readable (for copying files out and for `check --repair`): a checkpoint
    /// cut short at a block lost in both chains, records lost in both log copies skipped,
    /// mutations that do not apply dropped; [`MountNotes::lost`] lists all of it.
    Salvage,
}

/// Counters for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalStats {
    /// Records appended since mount.
    pub records: u64,
    /// Checkpoints written since mount.
    pub checkpoints: u64,
    /// Of those, the whole ones (the others were deltas).
    pub whole_checkpoints: u64,
    /// Records replayed at mount.
    pub replayed: u64,
    /// Operations grouped (group commit) since mount: applied at once, durable at the next sync.
    pub grouped: u64,
}

/// What mount found, beyond the state itself.
#[derive(Debug, Clone, Default)]
pub struct MountNotes {
    /// Problems found and repaired or worked around (a damaged superblock copy, ...).
    pub repaired: Vec<String>,
    /// Superblock copies that must be rewritten from the good one.
    pub stale_superblocks: Vec<u32>,
    /// A log record or checkpoint block was read from its second copy (or a second copy was found
    /// damaged): a read-write mount writes a new checkpoint, which makes every structure whole.
    pub needs_checkpoint: bool,
    /// Metadata blocks that could not be read at all (bad memory): a read-write mount records them.
    pub unreadable_blocks: Vec<u64>,
    /// Salvage only: what could not be recovered (records, checkpoint blocks, mutations).
    pub lost: Vec<String>,
}

impl MountNotes {
    /// Whether mount found nothing to repair, note or lose.
    pub fn is_clean(&self) -> bool {
        self.repaired.is_empty()
            && self.stale_superblocks.is_empty()
            && !self.needs_checkpoint
            && self.unreadable_blocks.is_empty()
            && self.lost.is_empty()
    }
}

/// How many blocks the log region (and so its mirror) gets in a pool of `total_blocks`.
pub fn log_blocks_for(total_blocks: u64) -> u64 {
    (total_blocks / 64).clamp(16, 4096).min((total_blocks.saturating_sub(8) / 4).max(1))
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

/// Blocks both chains of a checkpoint or delta payload of `len` bytes take.
fn chain_blocks(len: usize) -> u64 {
    2 * checkpoint::blocks_for(len) as u64
}

/// Records in `notes` what one checkpoint chain pair's reader found damaged: repaired from the
/// other chain (`complete`), or lost; either way a read-write mount writes a new checkpoint.
fn note_chain_damage(notes: &mut MountNotes, damaged: Vec<String>, complete: bool) {
    if damaged.is_empty() {
        return;
    }
    notes.needs_checkpoint = true;
    if complete {
        notes.repaired.extend(damaged);
    } else {
        notes.lost.extend(damaged);
    }
}

/// A delta as mount reads it: decoded, with the blocks of its two chains.
pub(super) type DeltaRead = (DeltaImage, [Vec<u64>; 2]);

/// Checks that a whole checkpoint's run map, when it lists runs, lists exactly the blocks of the
/// chains that were followed to read it (`chains`, chain 0's then chain 1's).
fn runs_name_the_chains(map: &checkpoint_index::RunMap, chains: &[Vec<u64>; 2]) -> Result<()> {
    if !map.has_runs() {
        return Ok(());
    }
    for (chain, blocks) in chains.iter().enumerate() {
        let listed = map.runs[chain].iter().flat_map(|&(s, l)| s..s + l);
        if !listed.eq(blocks.iter().copied()) {
            return Err(Error::Corrupt(format!(
                "checkpoint run map: the runs of chain {chain} are not the blocks the chain links"
            )));
        }
    }
    Ok(())
}

/// The newest delta `sb` names, as a link (its blocks carry the superblock's generation).
fn newest_delta(sb: &Superblock) -> Option<DeltaLink> {
    sb.delta.map(|root| DeltaLink {
        heads: root.heads,
        len: root.len,
        crc: root.crc,
        generation: sb.generation,
    })
}

/// Every metadata block run of a pool whose superblock is `sb`, whose checkpoint chains are
/// `chains` and whose deltas' chains are `deltas`, as (first block, length, structure).
/// A delta's blocks are checkpoint blocks (chain 0) and checkpoint mirror blocks (chain 1).
pub fn meta_layout(
    sb: &Superblock,
    chains: &[Vec<u64>; 2],
    deltas: &[[Vec<u64>; 2]],
) -> Vec<(u64, u64, MetaStructure)> {
    let mut meta = vec![
        (SUPERBLOCK_BLOCKS[0], 1, MetaStructure::Superblock(0)),
        (SUPERBLOCK_BLOCKS[1], 1, MetaStructure::Superblock(1)),
        (sb.log_start, sb.log_blocks, MetaStructure::Log),
    ];
    if sb.log_mirror_start != 0 {
        meta.push((sb.log_mirror_start, sb.log_blocks, MetaStructure::LogMirror));
    }
    for chains in std::iter::once(chains).chain(deltas) {
        meta.extend(chains[0].iter().map(|&b| (b, 1, MetaStructure::Checkpoint)));
        meta.extend(chains[1].iter().map(|&b| (b, 1, MetaStructure::CheckpointMirror)));
    }
    meta
}

/// The deltas written since the base `best` names, newest first: each names the one before it,
/// and its blocks carry an older generation, down to the base's (so the walk ends). Each has its
/// own two chains, read block by block with `read` and compared with `same_as` as the base's
/// are; their messages say "checkpoint delta". A salvage keeps what decodes of a damaged delta
/// and stops at an unreadable one, saying so in `notes`.
fn read_deltas(
    best: &Superblock,
    salvage: bool,
    notes: &mut MountNotes,
    read: &mut impl FnMut(u64) -> Result<Vec<u8>>,
    same_as: impl FnMut(u64, u64) -> Result<bool> + Copy,
) -> Result<Vec<DeltaRead>> {
    let as_delta = |text: &str| text.replacen("checkpoint", "checkpoint delta", 1);
    let mut deltas: Vec<(DeltaImage, [Vec<u64>; 2])> = Vec::new();
    let mut next = newest_delta(best);
    let mut newer_generation = best.generation + 1;
    while let Some(link) = next {
        if link.generation <= best.checkpoint_generation || link.generation >= newer_generation {
            return Err(with_repair_hint(Error::Corrupt(format!(
                "checkpoint delta: a delta of generation {} between generations {} and {}",
                link.generation, best.checkpoint_generation, newer_generation
            ))));
        }
        newer_generation = link.generation;
        let root = checkpoint::ChainRoot {
            heads: link.heads,
            generation: link.generation,
            payload_len: link.len,
            payload_crc: link.crc,
            total_blocks: best.total_blocks,
        };
        let read = checkpoint::read_chains_comparing(root, salvage, &mut *read, same_as)
            .map_err(|e| match e {
                Error::Corrupt(detail) => Error::Corrupt(as_delta(&detail)),
                other => other,
            })
            .map_err(with_repair_hint)?;
        let damaged: Vec<String> = read.damaged.iter().map(|d| as_delta(d)).collect();
        note_chain_damage(notes, damaged, read.complete);
        let delta = if salvage {
            match DeltaImage::decode(&read.payload) {
                Ok(delta) if read.complete => Some(delta),
                Ok(_) | Err(_) => {
                    let delta = DeltaImage::decode_prefix(&read.payload);
                    notes.lost.push(format!(
                        "checkpoint delta of generation {}: only {} inode(s) could be decoded before the \
                         damage; the inodes it changed after them keep an older version, and inodes it \
                         removed may come back",
                        link.generation,
                        delta.as_ref().map_or(0, |d| d.inodes.len())
                    ));
                    delta
                }
            }
        } else {
            Some(DeltaImage::decode(&read.payload).map_err(with_repair_hint)?)
        };
        let Some(delta) = delta else {
            notes.lost.push(format!(
                "checkpoint delta of generation {}: unreadable, and the deltas before it with it",
                link.generation
            ));
            break;
        };
        next = delta.previous;
        deltas.push((delta, read.blocks));
    }
    Ok(deltas)
}

/// Reads every slot of both superblock copies and picks the valid one with the highest
/// generation; what it found damaged or stale goes into `notes`. Returns that superblock and
/// whether a newer generation existed whose superblocks are damaged in both copies (its
/// checkpoint then restarted this generation's log).
fn choose_superblock(backend: &SharedBackend, notes: &mut MountNotes) -> Result<(Superblock, bool)> {
    let pool_blocks = backend.len() / BLOCK_SIZE;
    // Every slot of both copies; then the valid slot with the highest generation wins.
    let mut slots: Vec<(Superblock, usize)> = Vec::new();
    let mut errors: [[Option<String>; 2]; 2] = Default::default();
    // Slots read and found all zeros (never written: a new pool, or slot 1 of a format 1 one).
    let mut blank = [[false; 2]; 2];
    // Copies whose superblock block could not be read at all (bad memory).
    let mut unreadable_copy = [false; 2];
    for (copy, &block) in SUPERBLOCK_BLOCKS.iter().enumerate() {
        if block >= pool_blocks {
            errors[copy] =
                [0, 1].map(|_| Some(format!("superblock copy {copy}: beyond the end of the pool")));
            continue;
        }
        let bytes = match read_block(backend, block) {
            Ok(bytes) => bytes,
            Err(e) => {
                errors[copy] = [0, 1].map(|_| Some(format!("superblock copy {copy}: {e}")));
                unreadable_copy[copy] = matches!(e, Error::MediaError { .. });
                continue;
            }
        };
        for (slot, &at) in SLOT_OFFSETS.iter().enumerate() {
            blank[copy][slot] = bytes[at..at + superblock::ENCODED_LEN].iter().all(|&b| b == 0);
            match Superblock::decode(&bytes[at..at + superblock::ENCODED_LEN], copy as u32) {
                Ok(sb) if sb.total_blocks > pool_blocks => {
                    errors[copy][slot] = Some(format!(
                        "superblock copy {copy}: says {} blocks but the pool has {pool_blocks}",
                        sb.total_blocks
                    ))
                }
                Ok(sb) => slots.push((sb, slot)),
                Err(Error::Corrupt(detail)) => errors[copy][slot] = Some(detail),
                Err(e) => errors[copy][slot] = Some(e.to_string()),
            }
        }
    }
    // A copy that any valid slot marks lost sits on bad memory: whatever it holds is stale.
    let lost = slots.iter().fold(0, |lost, (sb, _)| lost | sb.lost_copies);
    slots.retain(|(sb, _)| lost & (1 << sb.copy) == 0);
    slots.sort_by_key(|(sb, _)| std::cmp::Reverse(sb.generation));
    let Some(best) = slots.first().map(|(sb, _)| sb.clone()) else {
        let all: Vec<String> = errors.iter().flatten().flatten().cloned().collect();
        let mut all_unique = all.clone();
        all_unique.dedup();
        return Err(Error::Corrupt(format!("no valid superblock: {}", all_unique.join("; "))));
    };
    // The slot after the newest one is damaged in both copies (neither blank nor valid). A crash
    // tears copy 0's slot, or copy 1's while copy 0 sits on bad memory and is being marked
    // lost; damage to both looks the same, and then a newer generation than `best` may be
    // lost. Said, not refused: the log of `best`'s generation decides (a newer generation's
    // records make mount refuse as committed records lost).
    let next_slot = 1 - best.slot();
    let newest_slot_damaged =
        best.lost_copies == 0 && (0..2).all(|c| errors[c][next_slot].is_some() && !blank[c][next_slot]);
    // Both newest slots hold bytes that fail their checksum, neither on unreadable memory: no
    // crash leaves that (a crash tears one slot, or one beside a copy on bad memory), so a
    // newer generation existed, and its checkpoint restarted this generation's log.
    let newer_generation_lost = newest_slot_damaged && !unreadable_copy.iter().any(|&u| u);
    if newest_slot_damaged {
        notes.repaired.push(format!(
            "superblock: the slot after generation {} is damaged in both copies ({}; {}): torn by a \
             crash, or damage (then a newer generation may be lost)",
            best.generation,
            errors[0][next_slot].as_deref().unwrap_or_default(),
            errors[1][next_slot].as_deref().unwrap_or_default()
        ));
    }
    for other in 0..2u32 {
        if best.lost_copies & (1 << other) != 0 {
            continue; // known lost: nothing to repair
        }
        let fine = slots
            .iter()
            .any(|(c, _)| c.copy == other && c.generation == best.generation && same_except_copy(c, &best));
        if !fine {
            notes.stale_superblocks.push(other);
            let why = errors[other as usize][best.slot()]
                .clone()
                .unwrap_or_else(|| format!("superblock copy {other}: older generation"));
            notes.repaired.push(why);
        }
    }
    Ok((best, newer_generation_lost))
}

impl Journal {
    /// The superblock mount takes, the deltas over its checkpoint (oldest first, each with its
    /// two chains) and what mount notes of them (a newer generation that may be lost among it):
    /// the first steps of [`Journal::mount`], for the lazy mount (`fs/lazy.rs`), which leaves
    /// every pool with something to note to the usual mount.
    pub(super) fn superblock_and_deltas(
        backend: &SharedBackend,
    ) -> Result<(Superblock, Vec<DeltaRead>, MountNotes)> {
        let mut notes = MountNotes::default();
        let (best, newer_generation_lost) = choose_superblock(backend, &mut notes)?;
        if newer_generation_lost {
            notes.needs_checkpoint = true;
        }
        let mut read = |b: u64| read_block(backend, b);
        let same_as = |b1: u64, b0: u64| {
            crate::pool::equal(backend.as_ref(), b1 * BLOCK_SIZE, b0 * BLOCK_SIZE, BLOCK_SIZE)
        };
        let mut deltas = read_deltas(&best, false, &mut notes, &mut read, same_as)?;
        deltas.reverse();
        Ok((best, deltas, notes))
    }

    /// Whether the log of `sb`'s generation holds no record in either copy, and nothing proves
    /// that one was committed there (see [`Journal::mount`]): a mount would replay nothing.
    pub(super) fn log_is_empty(backend: &SharedBackend, sb: &Superblock) -> bool {
        if sb.version < superblock::FIRST_VERSION_WITH_ENTRIES {
            return false;
        }
        let seq = sb.log_first_seq;
        let mut log = LogCopy::new(backend, sb.log_start, sb.log_blocks, true);
        let mut mirror = (sb.log_mirror_start != 0)
            .then(|| LogCopy::new(backend, sb.log_mirror_start, sb.log_blocks, true));
        for copy in [Some(&mut log), mirror.as_mut()].into_iter().flatten() {
            copy.read_record(0, seq);
            if !matches!(record::decode_record(copy.bytes(), seq), Ok(RecordAt::End)) || !copy.bad.is_empty()
            {
                return false;
            }
        }
        committed_evidence(&mut log, mirror.as_mut(), 0, seq).is_none()
    }

    /// The journal of the superblock `sb`, whose checkpoint lies in `chains` and its deltas in
    /// `delta_chains`, as it is before its log is read: the next record goes to the log's start.
    pub(super) fn at_superblock(
        backend: SharedBackend,
        sb: Superblock,
        chains: [Vec<u64>; 2],
        delta_chains: Vec<[Vec<u64>; 2]>,
    ) -> Journal {
        let next_seq = sb.log_first_seq;
        let group_commit = backend.drain_flushes_device();
        Journal {
            backend,
            sb,
            log_pos: 0,
            log_extent_changes: 0,
            zeroed_to: 0,
            next_seq,
            checkpoint_blocks: chains,
            delta_blocks: delta_chains,
            whole_checkpoint_due: false,
            prefer_deltas: false,
            mirror_failures: Vec::new(),
            group_commit,
            group: Vec::new(),
            group_bound: 0,
            group_since: None,
            record_bytes: Vec::new(),
            stats: JournalStats::default(),
        }
    }

    /// Writes a new, empty file system over the whole pool (mkfs).
    pub fn format(backend: SharedBackend) -> Result<(Journal, State)> {
        let total_blocks = backend.len() / BLOCK_SIZE;
        if total_blocks < 32 {
            return Err(Error::Invalid(format!(
                "a pool needs at least 32 blocks (128 KiB); this one has {total_blocks}"
            )));
        }
        let now = now_ns();
        let log_blocks = log_blocks_for(total_blocks);
        let sb = Superblock {
            version: VERSION,
            uuid: random_uuid(),
            total_blocks,
            features: 0,
            generation: 0,
            log_start: 2,
            log_blocks,
            log_first_seq: 1,
            checkpoint_head: 0,
            checkpoint_len: 0,
            checkpoint_crc: 0,
            copy: 0,
            created_ns: now,
            lost_copies: 0,
            // The mirror at the far end of the pool: no one failing page or 2 MiB granule holds
            // both copies of a record.
            log_mirror_start: total_blocks - log_blocks,
            checkpoint_mirror_head: 0,
            checkpoint_generation: 0,
            delta: None,
        };
        // Invalidate whatever the superblock blocks and the log regions held before, so an old
        // pool's superblock slots and records cannot be taken for this one's.
        backend.fill(0, 2 * BLOCK_SIZE, 0)?;
        backend.flush(0, 2 * BLOCK_SIZE);
        for start in [sb.log_start, sb.log_mirror_start] {
            backend.fill(start * BLOCK_SIZE, sb.log_blocks * BLOCK_SIZE, 0)?;
            backend.flush(start * BLOCK_SIZE, sb.log_blocks * BLOCK_SIZE);
        }
        // The root belongs to whoever makes the pool, mode 0755 (as mkfs.xfs makes it for root).
        let owner = Credentials::of_process();
        let root = InodeAttrs::empty_dir(ROOT_INO, 0o755, owner.uid, owner.gid, now);
        let image = StateImage {
            next_ino: ROOT_INO + 1,
            inodes: vec![checkpoint::InodeImage { attrs: root, ..checkpoint::InodeImage::default() }],
            quarantine: Vec::new(),
        };
        let no_chains = [Vec::new(), Vec::new()];
        let mut state = State::from_image(image, total_blocks, &meta_layout(&sb, &no_chains, &[]))?;
        let mut journal = Journal {
            backend,
            sb,
            log_pos: 0,
            log_extent_changes: 0,
            zeroed_to: 0,
            next_seq: 1,
            checkpoint_blocks: no_chains.clone(),
            delta_blocks: Vec::new(),
            whole_checkpoint_due: true,
            prefer_deltas: false,
            mirror_failures: Vec::new(),
            group_commit: false,
            group: Vec::new(),
            group_bound: 0,
            group_since: None,
            record_bytes: Vec::new(),
            stats: JournalStats::default(),
        };
        journal.group_commit = journal.backend.drain_flushes_device();
        journal.checkpoint(&mut state)?;
        Ok((journal, state))
    }

    /// Reads the superblocks, the checkpoint and the log, and rebuilds the state. Every checkpoint
    /// block and log record comes from whichever of its two copies is intact; what had to come from
    /// the second copy is listed in the notes (a read-write mount then writes a new checkpoint).
    pub fn mount(backend: SharedBackend, mode: MountMode) -> Result<(Journal, State, MountNotes)> {
        let salvage = mode == MountMode::Salvage;
        let mut notes = MountNotes::default();
        let (best, newer_generation_lost) = choose_superblock(&backend, &mut notes)?;

        // The checkpoint: block by block from either chain.
        let mut unreadable = Vec::new();
        let mut read = |b: u64| {
            read_block(&backend, b).inspect_err(|e| {
                if matches!(e, Error::MediaError { .. }) {
                    unreadable.push(b);
                }
            })
        };
        // Chain 1's blocks are compared in place with chain 0's valid ones, not copied.
        let same_as = |b1: u64, b0: u64| {
            crate::pool::equal(backend.as_ref(), b1 * BLOCK_SIZE, b0 * BLOCK_SIZE, BLOCK_SIZE)
        };
        let (payload, chains, complete) = if best.version >= 2 {
            let root = checkpoint::ChainRoot {
                heads: [best.checkpoint_head, best.checkpoint_mirror_head],
                generation: best.checkpoint_generation,
                payload_len: best.checkpoint_len,
                payload_crc: best.checkpoint_crc,
                total_blocks: best.total_blocks,
            };
            let chains = checkpoint::read_chains_comparing(root, salvage, &mut read, same_as)
                .map_err(with_repair_hint)?;
            note_chain_damage(&mut notes, chains.damaged, chains.complete);
            (chains.payload, chains.blocks, chains.complete)
        } else {
            let (payload, blocks) = checkpoint::read_chain_v1(
                best.checkpoint_head,
                best.generation,
                best.checkpoint_len,
                best.checkpoint_crc,
                best.total_blocks,
                &mut read,
            )
            .map_err(with_repair_hint)?;
            (payload, [blocks, Vec::new()], true)
        };
        let mut deltas = read_deltas(&best, salvage, &mut notes, &mut read, same_as)?;
        // Oldest first, as they apply.
        deltas.reverse();
        let delta_chains: Vec<[Vec<u64>; 2]> = deltas.iter().map(|(_, blocks)| blocks.clone()).collect();
        if !delta_chains.is_empty() {
            // Each chain pair was checked for a block used twice; across the base and the deltas:
            let mut all: Vec<u64> =
                chains.iter().chain(delta_chains.iter().flatten()).flatten().copied().collect();
            all.sort_unstable();
            if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
                return Err(with_repair_hint(Error::Corrupt(format!(
                    "checkpoint delta: block {} belongs to the checkpoint or another delta too",
                    w[0]
                ))));
            }
        }
        // A damaged chain (of the base or a delta): the next checkpoint rewrites everything. (So
        // far only the chain readers above ask for a checkpoint; the log's damage comes later.)
        let chains_damaged = notes.needs_checkpoint;
        notes.unreadable_blocks = unreadable;
        let layout = meta_layout(&best, &chains, &delta_chains);
        // Versions 1 and 2 kept names in inodes and had no owners: their inodes become the
        // converter's (whoever mounts the pool), their names entries of the directories.
        let legacy = best.version < superblock::FIRST_VERSION_WITH_ENTRIES;
        let owner = {
            let me = Credentials::of_process();
            (me.uid, me.gid)
        };
        // Version 6 and later begin a whole checkpoint with the run map and end it with the
        // inode index (format/indexed.rs).
        let indexed = best.version >= superblock::FIRST_VERSION_WITH_INDEX;
        let decode_image = |payload: &[u8]| {
            if legacy {
                legacy::decode_image(payload, owner)
            } else if indexed {
                checkpoint_index::decode(std::sync::Arc::new(payload.to_vec()), best.total_blocks)
                    .map(|(image, _)| image)
            } else {
                StateImage::decode(payload)
            }
        };
        // The payload's bytes are freed as soon as they are decoded: the state built next reuses
        // that memory instead of touching fresh pages.
        // Each delta's inodes replace those before it, oldest delta first.
        let mut state = if salvage {
            let mut image = match decode_image(&payload) {
                Ok(image) if complete => image,
                Ok(_) | Err(_) => {
                    let image = if legacy {
                        legacy::decode_image_prefix(&payload, owner)
                    } else if indexed {
                        checkpoint_index::decode_prefix(&payload)
                    } else {
                        StateImage::decode_prefix(&payload)
                    };
                    notes.lost.push(format!(
                        "checkpoint: only {} inode(s) could be decoded before the damage",
                        image.inodes.len()
                    ));
                    image
                }
            };
            drop(payload);
            for (mut delta, _) in deltas {
                // A cut delta may not reach its quarantine list: the one before stays too.
                delta.quarantine.extend(image.quarantine.iter().copied());
                let before = image.clone();
                image = image.with_delta(delta).unwrap_or_else(|e| {
                    notes.lost.push(format!("{e}: that delta is left out"));
                    before
                });
            }
            super::salvage::state_from_damaged_image(image, best.total_blocks, &layout, &mut notes.lost)
        } else {
            // Files' extents stay packed, read in place (`StateImage::decode_sharing`); deltas
            // and format 1-2 pools are decoded into lists.
            let mut image = if legacy {
                decode_image(&payload)
            } else if indexed {
                checkpoint_index::decode(std::sync::Arc::new(payload), best.total_blocks).and_then(
                    |(image, map)| {
                        runs_name_the_chains(&map, &chains)?;
                        Ok(image)
                    },
                )
            } else {
                StateImage::decode_sharing(std::sync::Arc::new(payload))
            }
            .map_err(with_repair_hint)?;
            image =
                image.with_deltas(deltas.into_iter().map(|(delta, _)| delta)).map_err(with_repair_hint)?;
            State::from_image(image, best.total_blocks, &layout).map_err(with_repair_hint)?
        };
        if !state.inodes.get(&ROOT_INO).is_some_and(|r| r.is_dir()) {
            return Err(Error::Corrupt("checkpoint: no root directory".into()));
        }

        // The log: every record from whichever copy is intact, read only as far as replay and the
        // end-of-log evidence need (a salvage reads everything: it looks for records anywhere).
        let mut log = LogCopy::new(&backend, best.log_start, best.log_blocks, !salvage);
        let mut mirror = (best.log_mirror_start != 0)
            .then(|| LogCopy::new(&backend, best.log_mirror_start, best.log_blocks, !salvage));
        if salvage {
            log.read_all();
            if let Some(m) = mirror.as_mut() {
                m.read_all();
            }
        }
        let mut pos = 0usize;
        let mut seq = best.log_first_seq;
        let mut replayed = 0;
        let mut extent_changes: u64 = 0;
        loop {
            let here = |copy: &[u8]| -> Result<RecordAt> {
                if !legacy {
                    return record::decode_record(&copy[pos..], seq);
                }
                Ok(match legacy::decode_record(&copy[pos..], seq, owner)? {
                    RecordAt::Valid(old, len) => RecordAt::Valid(super::upgrade::translate(&state, old), len),
                    RecordAt::End => RecordAt::End,
                })
            };
            log.read_record(pos, seq);
            let primary = here(log.bytes());
            if let (Some(m), Ok(RecordAt::Valid(_, len))) = (mirror.as_mut(), &primary) {
                m.read_to(pos + len);
            }
            if let Some(m) = mirror.as_mut() {
                m.read_record(pos, seq);
            }
            // A mirror copy byte-equal to a valid log copy is valid too: no second decode.
            let second = match (&primary, mirror.as_ref().map(LogCopy::bytes)) {
                (Ok(RecordAt::Valid(_, len)), Some(m))
                    if m.get(pos..pos + len) == log.bytes().get(pos..pos + len) =>
                {
                    Some(Ok(RecordAt::Valid(Vec::new(), *len)))
                }
                (_, m) => m.map(here),
            };
            let found = match (primary, second) {
                (Ok(RecordAt::Valid(mutations, len)), second) => {
                    if mirror.is_some() && !matches!(second, Some(Ok(RecordAt::Valid(..)))) {
                        notes.needs_checkpoint = true;
                        notes.repaired.push(format!(
                            "log mirror: record {seq} (log byte {pos}) is damaged; the log holds it intact"
                        ));
                    }
                    Some((mutations, len))
                }
                (primary, Some(Ok(RecordAt::Valid(mutations, len)))) => {
                    notes.needs_checkpoint = true;
                    notes.repaired.push(format!(
                        "log: record {seq} (log byte {pos}) is damaged{}; read from the log mirror",
                        if log.bad.is_empty() { String::new() } else { " (bad memory)".into() }
                    ));
                    drop(primary);
                    Some((mutations, len))
                }
                // A checksum that matches over mutations that make no sense: written that way.
                (Err(e), _) | (_, Some(Err(e))) => {
                    let e = validate::in_log_record(seq, pos as u64, e);
                    if !salvage {
                        return Err(with_repair_hint(e));
                    }
                    let why = match e {
                        Error::Corrupt(detail) => detail,
                        other => other.to_string(),
                    };
                    let resume = [Some(&mut log), mirror.as_mut()]
                        .into_iter()
                        .flatten()
                        .filter_map(|copy| copy.later_record_after(pos, seq))
                        .min_by_key(|&(s, _)| s);
                    notes.lost.push(format!("{why}: skipped"));
                    match resume {
                        Some((later_seq, at)) => {
                            pos = at;
                            seq = later_seq;
                            continue;
                        }
                        None => break,
                    }
                }
                _ => None,
            };
            if let Some((mutations, len)) = found {
                if !salvage {
                    // The whole record, then everything it touched is validated (fs/validate.rs).
                    let before = state.extent_changes;
                    state.replay_record(&mutations, seq, pos as u64).map_err(with_repair_hint)?;
                    extent_changes = extent_changes.saturating_add(state.extent_changes.wrapping_sub(before));
                    pos += len;
                    seq += 1;
                    replayed += 1;
                    continue;
                }
                for m in &mutations {
                    let mut applied = state.apply(m, ApplyMode::Replay);
                    if salvage && applied.is_err() {
                        if let Some(parent) = super::salvage::recreate_missing_parent(&state, m) {
                            if parent.iter().try_for_each(|p| state.apply(p, ApplyMode::Replay)).is_ok() {
                                notes.lost.push(format!(
                                    "log record {seq}: a directory it names was made by a lost record; \
                                     recreated as a stand-in"
                                ));
                                applied = state.apply(m, ApplyMode::Replay);
                            }
                        }
                    }
                    if let Err(e) = applied {
                        notes
                            .lost
                            .push(format!("log record {seq} (log byte {pos}): {e}: that change is dropped"));
                    }
                }
                pos += len;
                seq += 1;
                replayed += 1;
                continue;
            }
            // Neither copy holds record `seq`: the end of the log, unless something proves that
            // the record was committed (a torn record never is).
            let Some((evidence, resume)) = committed_evidence(&mut log, mirror.as_mut(), pos, seq) else {
                break;
            };
            let why = format!(
                "log record {seq} (log byte {pos}) is damaged in both copies, yet it was committed \
                 ({evidence})"
            );
            if !salvage {
                return Err(Error::Corrupt(format!(
                    "{why}: replaying only up to it would lose committed operations; {}",
                    repair_hint()
                )));
            }
            match resume {
                Some((later_seq, at)) => {
                    notes.lost.push(format!(
                        "{why}: records {seq} to {} are lost; replay resumes at record {later_seq}",
                        later_seq - 1
                    ));
                    pos = at;
                    seq = later_seq;
                }
                None => {
                    notes.lost.push(format!("{why}: it is lost"));
                    break;
                }
            }
        }
        // This generation's log restarted by a newer checkpoint that is lost (see above): its
        // records are gone, and nothing can tell how many there were.
        // (A salvage reads the log whole and mounts this generation, saying a newer one may be lost.)
        if newer_generation_lost
            && replayed == 0
            && log.terminator_at(0)
            && mirror.as_mut().is_none_or(|m| m.terminator_at(0))
        {
            return Err(Error::Corrupt(format!(
                "superblock: generation {} was followed by a newer one whose superblock slots are damaged in \
                 both copies, and generation {}'s log was restarted by it: operations committed before \
                 that checkpoint may be lost; {}",
                best.generation,
                best.generation,
                repair_hint()
            )));
        }
        if salvage {
            // A repair starts the log over at `seq`: beyond every header either copy still holds,
            // so no leftover (damaged) record can pass for one of the new generation.
            let highest = [Some(log.bytes()), mirror.as_ref().map(LogCopy::bytes)]
                .into_iter()
                .flatten()
                .filter_map(|copy| highest_header_seq(copy, seq))
                .max();
            if let Some(h) = highest {
                seq = seq.max(h + 1);
            }
        }
        // Salvage replay applies mutations one by one: a record that breaks a rule only as a whole
        // leaves no note. The whole state is checked, and rebuilt by the salvage rules if needed.
        if salvage && notes.lost.is_empty() {
            if let Err(problem) = state.validate_whole() {
                notes.lost.push(format!("the replayed state breaks a rule ({problem}): rebuilt"));
            }
        }
        if salvage && !notes.lost.is_empty() {
            state = super::salvage::state_from_damaged_image(
                state.to_image(),
                best.total_blocks,
                &layout,
                &mut notes.lost,
            );
        }
        // The first terminator after the end is zero in both copies when both searches stopped
        // there; beyond it, the commit that needs a stretch zeroed looks first (zero_stretch).
        let mut zeroed_to = (pos as u64).next_multiple_of(LOG_TERMINATOR_BYTES);
        if [Some(&log), mirror.as_ref()]
            .into_iter()
            .flatten()
            .all(|copy| copy.terminator == Some(zeroed_to as usize))
        {
            zeroed_to += LOG_TERMINATOR_BYTES;
        }
        notes.unreadable_blocks.extend(log.bad.iter().chain(mirror.iter().flat_map(|m| &m.bad)));
        notes.unreadable_blocks.sort_unstable();
        notes.unreadable_blocks.dedup();
        let mut journal = Journal::at_superblock(backend, best, chains, delta_chains);
        journal.log_pos = pos as u64;
        journal.log_extent_changes = extent_changes;
        journal.zeroed_to = zeroed_to;
        journal.next_seq = seq;
        // A salvage rebuilt the state by its rules: nothing durable holds it yet.
        journal.whole_checkpoint_due = chains_damaged || salvage;
        journal.stats.replayed = replayed;
        Ok((journal, state, notes))
    }

    /// Converts a format version 1 to 4 pool to the current format: a version 1 pool (one log,
    /// one checkpoint chain) gets a log mirror in free blocks (as high in the pool as a run
    /// allows), and a checkpoint in the current format (names as directory entries) switches the
    /// superblocks to it; the log starts over, so no record of the old format is replayed with
    /// the new decoder. A crash before the switch leaves the old pool as it was. Returns whether it converted; fails with ENOSPC, changing nothing
    /// durable, when no run of the log's length is free.
    pub fn upgrade(&mut self, state: &mut State) -> Result<bool> {
        if self.sb.version == VERSION {
            return Ok(false);
        }
        self.checkpoint(state)?;
        Ok(true)
    }

    /// Places a log mirror when the pool has none (format version 1): a zeroed run of the log's
    /// length, as high in the pool as one is free. Only memory changes; the next checkpoint's
    /// superblocks make it durable.
    fn ensure_log_mirror(&mut self, state: &mut State) -> Result<()> {
        if self.sb.log_mirror_start != 0 {
            return Ok(());
        }
        let n = self.sb.log_blocks;
        let start = self.zeroed_region(state, n, true).map_err(|e| match e {
            Error::NoSpace(_) => Error::NoSpace(format!(
                "converting this format version {} pool needs {n} contiguous free blocks for a log \
                 mirror; mount it read-only and copy the files out",
                self.sb.version
            )),
            other => other,
        })?;
        state.owners_mut().add(start, n, Owner::Meta(MetaStructure::LogMirror));
        self.sb.log_mirror_start = start;
        Ok(())
    }

    /// Takes `n` contiguous free blocks (the highest run that holds them when `high`) and zeroes
    /// them durably, so nothing they held can parse as a record.
    fn zeroed_region(&self, state: &mut State, n: u64, high: bool) -> Result<u64> {
        let goal = if high {
            state.free.runs().filter(|&(_, l)| l >= n).map(|(s, l)| s + l - n).max()
        } else {
            state.free.runs().find(|&(_, l)| l >= n).map(|(s, _)| s)
        };
        let Some(start) = goal else {
            return Err(Error::NoSpace(format!("no {n} contiguous free blocks for a log region")));
        };
        let got = state.free.allocate(n, Some(start));
        debug_assert_eq!(got, Some(vec![(start, n)]));
        if let Err(e) = self
            .backend
            .ensure_backed(start * BLOCK_SIZE, n * BLOCK_SIZE)
            .and_then(|()| self.backend.fill(start * BLOCK_SIZE, n * BLOCK_SIZE, 0))
        {
            state.free.release(start, n);
            return Err(e);
        }
        self.backend.flush(start * BLOCK_SIZE, n * BLOCK_SIZE);
        Ok(start)
    }

    /// Repair: moves each log copy that has a bad block to a fresh zeroed region (memory only; the
    /// caller's checkpoint makes it durable), and places a mirror if there is none. Returns the old
    /// regions, still owned: the damaged pool names them until the checkpoint's superblock switch,
    /// so nothing may be written there before; give them to [`Journal::free_regions`] after it.
    pub fn fresh_log_regions(&mut self, state: &mut State) -> Result<Vec<(u64, u64, MetaStructure)>> {
        let n = self.sb.log_blocks;
        let mut old_regions = Vec::new();
        for (copy, structure) in [(0, MetaStructure::Log), (1, MetaStructure::LogMirror)] {
            let old = self.sb.log_copy_start(copy);
            if old == 0 || state.first_bad_block(old, n).is_none() {
                continue;
            }
            let new = self.zeroed_region(state, n, copy == 1)?;
            state.owners_mut().add(new, n, Owner::Meta(structure));
            self.sb.set_log_copy_start(copy, new);
            old_regions.push((old, n, structure));
        }
        self.ensure_log_mirror(state)?;
        Ok(old_regions)
    }

    /// Frees metadata regions that [`Journal::fresh_log_regions`] replaced, once a checkpoint has
    /// switched the superblocks away from them (bad blocks stay quarantined).
    pub fn free_regions(&mut self, state: &mut State, regions: &[(u64, u64, MetaStructure)]) -> Result<()> {
        regions.iter().try_for_each(|&(start, n, structure)| free_region(state, start, n, structure))
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

    /// Blocks of the current checkpoint: chain 0 and chain 1 (empty in a version 1 pool).
    pub fn checkpoint_blocks(&self) -> &[Vec<u64>; 2] {
        &self.checkpoint_blocks
    }

    /// Blocks the deltas written since the base take (both chains): a whole checkpoint frees them
    /// ([`Journal::checkpoint_whole`]).
    pub fn delta_block_count(&self) -> u64 {
        self.delta_blocks.iter().flatten().map(|chain| chain.len() as u64).sum()
    }

    /// Blocks a whole checkpoint written now would give back, at least: the base's and every
    /// delta's, less what the new one takes at most (none while there is no delta: a whole
    /// checkpoint then replaces one base with another).
    pub fn blocks_a_whole_checkpoint_frees(&self, state: &State) -> u64 {
        if self.delta_blocks.is_empty() {
            return 0;
        }
        self.checkpoint_block_count().saturating_sub(whole_checkpoint_blocks(state, 0))
    }

    /// Blocks the base and every delta take (both chains): what a whole checkpoint frees once the
    /// superblocks name it.
    fn checkpoint_block_count(&self) -> u64 {
        let chains = self.delta_blocks.iter().chain([&self.checkpoint_blocks]).flatten();
        chains.map(|chain| chain.len() as u64).sum()
    }

    /// Writes a whole checkpoint now, whatever [`Journal::checkpoint`] would choose: the base and
    /// every delta are freed once the superblocks name it (how an allocation that needs the
    /// deltas' blocks gets them).
    pub fn checkpoint_whole(&mut self, state: &mut State) -> Result<()> {
        let due = std::mem::replace(&mut self.whole_checkpoint_due, true);
        let written = self.checkpoint(state);
        if written.is_err() {
            self.whole_checkpoint_due = due;
        }
        written
    }

    /// Blocks of the deltas written since the base, oldest first: chain 0 and chain 1 of each
    /// (none: the checkpoint is whole).
    pub fn delta_blocks(&self) -> &[[Vec<u64>; 2]] {
        &self.delta_blocks
    }

    /// Bytes of the log region that records of this generation use.
    pub fn log_used_bytes(&self) -> u64 {
        self.log_pos
    }

    /// Extents the log's records added or removed over all files (see `Journal`): a record of a
    /// few bytes (a reflink, the removal of a big file) may change thousands.
    pub fn log_extent_changes(&self) -> u64 {
        self.log_extent_changes
    }

    /// Bytes left in the log region.
    pub fn log_free_bytes(&self) -> u64 {
        self.sb.log_blocks * BLOCK_SIZE - self.log_pos
    }

    /// Takes the errors met writing mirror copies of records that were committed anyway (the log
    /// copy was durable). The caller records bad memory or writes a checkpoint so that every record
    /// has two copies again.
    pub fn take_mirror_failures(&mut self) -> Vec<Error> {
        std::mem::take(&mut self.mirror_failures)
    }

    /// Makes `mutations` durable as one atomic step, then applies them to `state`; with group
    /// commit, applies them now and makes them durable at the next sync point instead.
    ///
    /// The caller has written (and flushed) any data the mutations point at; the first fence here
    /// orders that data before the record. The record is durable in the log before its mirror copy
    /// is begun (so a mirror copy that names a record proves the record was committed), and durable
    /// in both before this returns.
    ///
    /// Group commit (a backend whose drain is a device flush: [`Backend::drain_flushes_device`]):
    /// the operation is applied to `state` at once and its mutations join the group; the group
    /// becomes one record (one atomic step: a crash keeps all of it or none) at the next
    /// [`Journal::sync`]: fsync, msync of a view, unmount, a group of
    /// [`GROUP_COMMIT_MAX_BYTES`] or older than [`GROUP_COMMIT_INTERVAL`], a checkpoint. Blocks
    /// the group frees are held ([`State::held`]) until then: the durable state may still need
    /// their bytes. A quarantine is never grouped: bad memory is recorded durably at once.
    ///
    /// [`Backend::drain_flushes_device`]: crate::pool::Backend::drain_flushes_device
    pub fn commit(&mut self, state: &mut State, mutations: &[Mutation]) -> Result<()> {
        if mutations.is_empty() {
            return Ok(());
        }
        if self.group_commit {
            let own_bound = record::record_len_bound(mutations);
            let groupable = own_bound <= self.group_limit()
                && !mutations.iter().any(|m| matches!(m, Mutation::Quarantine { .. }));
            let full = self.group_bound + own_bound > self.group_limit();
            if full || self.group_since.is_some_and(|since| since.elapsed() >= GROUP_COMMIT_INTERVAL) {
                self.sync(state)?;
            }
            if groupable {
                let bound = self.group_bound + own_bound;
                let before = state.extent_changes;
                state.apply_holding_frees(mutations).map_err(|e| bug("applying a grouped operation", e))?;
                self.log_extent_changes =
                    self.log_extent_changes.saturating_add(state.extent_changes.wrapping_sub(before));
                self.group.extend_from_slice(mutations);
                self.group_bound = bound;
                self.group_since.get_or_insert_with(std::time::Instant::now);
                self.stats.grouped += 1;
                return Ok(());
            }
            // Not grouped: what is grouped becomes durable first, in order.
            self.sync(state)?;
        }
        let bound = record::record_len_bound(mutations) as u64;
        let log_bytes = self.sb.log_blocks * BLOCK_SIZE;
        if bound > self.log_free_bytes() && bound <= log_bytes {
            // Start the log over; the record then fits.
            self.checkpoint(state)?;
        }
        if bound <= self.log_free_bytes() {
            self.append_record(mutations)?;
            let before = state.extent_changes;
            for m in mutations {
                state.apply(m, ApplyMode::Live).map_err(|e| bug("applying a committed record", e))?;
            }
            self.log_extent_changes =
                self.log_extent_changes.saturating_add(state.extent_changes.wrapping_sub(before));
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
        let need = chain_blocks(after.to_image().encode().len());
        drop(after);
        // That checkpoint is a whole one, and another must still fit after it (else the pool
        // could be left where no checkpoint fits, not even one that commits an unlink): the old
        // base and every delta are freed once the superblocks name it.
        let freed_by_switch = self.checkpoint_block_count();
        if need > state.free.free_blocks() || 2 * need + 4 > state.free.free_blocks() + freed_by_switch {
            return Err(Error::NoSpace(format!(
                "a {bound}-byte transaction needs a {need}-block checkpoint (two chains), and room for \
                 the next one"
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
        let written = self.checkpoint_whole(state);
        for &(start, len) in &freed {
            state.free.release(start, len);
        }
        written
    }

    /// Writes `mutations` as the next record: durable in the log, then in its mirror. Fails, writing
    /// nothing that counts, when the log copy meets bad memory (a torn record at the end of the log,
    /// which replay ignores); the caller then records the bad block, which moves the log.
    fn append_record(&mut self, mutations: &[Mutation]) -> Result<()> {
        let mut bytes = std::mem::take(&mut self.record_bytes);
        record::encode_record_into(self.next_seq, mutations, &mut bytes);
        let at = self.sb.log_start * BLOCK_SIZE + self.log_pos;
        let terminator = self.terminator_after(self.log_pos + bytes.len() as u64);
        self.backend.drain(); // data before record
        self.backend.write(at, &bytes)?;
        self.backend.flush(at, bytes.len() as u64);
        self.zero_stretch(self.sb.log_start, terminator);
        self.backend.drain(); // record durable: the operation happened
        if self.sb.log_mirror_start != 0 {
            let at = self.sb.log_mirror_start * BLOCK_SIZE + self.log_pos;
            match self.backend.write(at, &bytes) {
                Ok(()) => {
                    self.backend.flush(at, bytes.len() as u64);
                    self.zero_stretch(self.sb.log_mirror_start, terminator);
                    self.backend.drain(); // the second copy durable
                }
                Err(e) => self.mirror_failures.push(e),
            }
        }
        if let Some((_, end)) = terminator {
            self.zeroed_to = end;
        }
        self.log_pos += bytes.len() as u64;
        if bytes.capacity() <= RECORD_BUFFER_KEPT {
            self.record_bytes = bytes;
        }
        self.next_seq += 1;
        self.stats.records += 1;
        Ok(())
    }

    /// Group commit: the largest group ([`GROUP_COMMIT_MAX_BYTES`], at most half the log).
    fn group_limit(&self) -> usize {
        GROUP_COMMIT_MAX_BYTES.min((self.sb.log_blocks * BLOCK_SIZE / 2) as usize)
    }

    /// Whether this journal groups commits (its backend's drain is a device flush).
    pub fn groups_commits(&self) -> bool {
        self.group_commit
    }

    /// The mutations of the operations applied but not yet durable (group commit), in order.
    pub fn unsynced(&self) -> &[Mutation] {
        &self.group
    }

    /// Whether operations are applied but not yet durable (group commit).
    pub fn has_unsynced(&self) -> bool {
        !self.group.is_empty()
    }

    /// Makes every grouped operation durable (a sync point; nothing to do without group commit):
    /// their mutations become one record, or, when the log has no room for it or cannot be
    /// written, part of a checkpoint of the whole state. Then the blocks they freed are free.
    /// Fails only when neither can be written; the operations then stay applied and grouped, and
    /// the next sync tries again.
    pub fn sync(&mut self, state: &mut State) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        let fits = record::record_len_bound(&group) as u64 <= self.log_free_bytes();
        if fits && self.append_record(&group).is_ok() {
            self.group_synced(state);
            return Ok(());
        }
        self.group = group;
        self.checkpoint(state)
    }

    /// When the oldest operation not yet durable was applied (group commit), if any.
    pub fn unsynced_since(&self) -> Option<std::time::Instant> {
        self.group_since
    }

    /// The group is durable (as a record or in a checkpoint): it starts over, and the blocks it
    /// freed are free.
    fn group_synced(&mut self, state: &mut State) {
        self.group.clear();
        self.group_bound = 0;
        self.group_since = None;
        state.release_held();
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

    /// Moves copy `copy` of the log (0 the log, 1 its mirror) to fresh blocks (the old region has
    /// bad blocks): zeroes a new contiguous region, writes a checkpoint whose superblocks name it,
    /// then frees the old region except its bad blocks. Fails with ENOSPC, changing nothing, when
    /// no contiguous run is free.
    pub fn relocate_log(&mut self, state: &mut State, copy: usize) -> Result<()> {
        let n = self.sb.log_blocks;
        let structure = if copy == 0 { MetaStructure::Log } else { MetaStructure::LogMirror };
        let runs = state.free.allocate(n, None).unwrap_or_default();
        if runs.len() != 1 {
            for &(s, l) in &runs {
                state.free.release(s, l);
            }
            return Err(Error::NoSpace(format!("no {n} contiguous free blocks to move the {structure} to")));
        }
        let new_start = runs[0].0;
        let old_start = self.sb.log_copy_start(copy);
        // Whatever the new region held before must never parse as a record.
        if let Err(e) = self.backend.fill(new_start * BLOCK_SIZE, n * BLOCK_SIZE, 0) {
            state.free.release(new_start, n);
            return Err(e);
        }
        self.backend.flush(new_start * BLOCK_SIZE, n * BLOCK_SIZE);
        state.owners_mut().add(new_start, n, Owner::Meta(structure));
        self.sb.set_log_copy_start(copy, new_start);
        if let Err(e) = self.checkpoint(state) {
            self.sb.set_log_copy_start(copy, old_start);
            let _ = state.owners_mut().remove(new_start, n, Owner::Meta(structure));
            state.free.release(new_start, n);
            return Err(e);
        }
        free_region(state, old_start, n, structure)
    }

    /// Writes a checkpoint (twice: chain 0 and chain 1, block by block the same bytes, at
    /// independent places), switches both superblocks to it and starts the log over. When few
    /// inodes changed since the last checkpoint, only they are written, as a delta that names the
    /// delta before it ([`Journal::delta_payload`]); else the whole state, and the old base and
    /// every delta are freed. A version 1 pool gets its log mirror here, and the
    /// superblocks of an older pool then say the current version (always by a whole checkpoint).
    pub fn checkpoint(&mut self, state: &mut State) -> Result<()> {
        self.ensure_log_mirror(state)?;
        let delta = self.delta_payload(state);
        let whole = delta.is_none();
        let mut payload = match delta {
            Some(delta) => delta,
            None => checkpoint_index::encode(&state.to_image()),
        };
        let nblocks = checkpoint::blocks_for(payload.len()) as u64;
        // Chain 0 where the last one was (a delta: where the last delta was, or after the base);
        // chain 1 likewise, or else in the highest free run: far from chain 0 when the pool has room.
        let last = |copy: usize| {
            self.delta_blocks
                .iter()
                .rev()
                .chain([&self.checkpoint_blocks])
                .find_map(|c| c[copy].last())
                .map(|b| b + 1)
        };
        let goal0 = last(0);
        let goal1 = last(1)
            .filter(|&g| state.free.is_free(g, 1))
            .or_else(|| state.free.highest_run_of(nblocks).map(|(s, l)| s + l - nblocks));
        let no_room = || Error::NoSpace(format!("no room for a {nblocks}-block checkpoint (two chains)"));
        let runs0 = state.free.allocate(nblocks, goal0).ok_or_else(no_room)?;
        let Some(runs1) = state.free.allocate(nblocks, goal1) else {
            for &(s, l) in &runs0 {
                state.free.release(s, l);
            }
            return Err(no_room());
        };
        let give_back = |state: &mut State| {
            for &(s, l) in runs0.iter().chain(&runs1) {
                state.free.release(s, l);
            }
        };
        if let Err(e) = runs0
            .iter()
            .chain(&runs1)
            .try_for_each(|&(s, l)| self.backend.ensure_backed(s * BLOCK_SIZE, l * BLOCK_SIZE))
        {
            give_back(state);
            return Err(e);
        }
        if whole {
            // A fragmented pool's runs may not fit: that checkpoint is then only read whole.
            checkpoint_index::set_runs(&mut payload, [&runs0, &runs1]);
        }
        let chains: [Vec<u64>; 2] =
            [&runs0, &runs1].map(|runs| runs.iter().flat_map(|&(s, l)| s..s + l).collect());
        let mut generation = self.sb.generation + 1;
        if self.sb.version == superblock::OLDEST_READABLE_VERSION && generation % 2 == 0 {
            // A format 1 pool keeps its superblock in slot 0 only: converting must write slot 1,
            // so the version 1 superblock survives a torn write.
            generation += 1;
        }
        let frames = checkpoint::frame(&payload, generation, [&chains[0], &chains[1]]);
        for (i, bytes) in frames.iter().enumerate() {
            for chain in &chains {
                let at = chain[i] * BLOCK_SIZE;
                if let Err(e) = self.backend.write(at, bytes) {
                    // Nothing names the new chains yet: give their blocks back, the old state stands.
                    give_back(state);
                    return Err(e);
                }
                self.backend.flush(at, BLOCK_SIZE);
            }
        }
        self.backend.drain(); // checkpoint durable before any superblock names it
        let mut sb = self.sb.clone();
        sb.version = VERSION;
        sb.generation = generation;
        if whole {
            sb.checkpoint_head = chains[0][0];
            sb.checkpoint_mirror_head = chains[1][0];
            sb.checkpoint_len = payload.len() as u64;
            sb.checkpoint_crc = crate::format::checksum(&payload);
            sb.checkpoint_generation = generation;
            sb.delta = None;
        } else {
            sb.delta = Some(DeltaRoot {
                heads: [chains[0][0], chains[1][0]],
                len: payload.len() as u64,
                crc: crate::format::checksum(&payload),
            });
        }
        sb.log_first_seq = self.next_seq;
        self.sb = sb;
        self.write_superblock(0);
        self.backend.drain(); // copy 0 switched: the new checkpoint is the state
                              // Grouped operations are in it: durable now.
        self.group_synced(state);
        self.write_superblock(1);
        self.backend.drain();
        // After a whole checkpoint the old base and every delta are referenced by nothing durable
        // any more; a delta replaces nothing.
        for (runs, structure) in
            [(&runs0, MetaStructure::Checkpoint), (&runs1, MetaStructure::CheckpointMirror)]
        {
            for &(s, l) in runs {
                state.owners_mut().add(s, l, Owner::Meta(structure));
            }
        }
        let replaced = if whole {
            let mut old = std::mem::take(&mut self.delta_blocks);
            old.push(std::mem::replace(&mut self.checkpoint_blocks, chains));
            old
        } else {
            self.delta_blocks.push(chains);
            Vec::new()
        };
        for old in replaced {
            for (blocks, structure) in
                old.iter().zip([MetaStructure::Checkpoint, MetaStructure::CheckpointMirror])
            {
                for &b in blocks {
                    let freed = state
                        .owners_mut()
                        .remove(b, 1, Owner::Meta(structure))
                        .map_err(|e| bug("freeing the old checkpoint", Error::Corrupt(e.0)))?;
                    for (s, l) in freed {
                        state.release_unless_quarantined(s, l);
                    }
                }
            }
        }
        state.forget_changes();
        if whole {
            self.whole_checkpoint_due = false;
            self.stats.whole_checkpoints += 1;
        }
        self.log_pos = 0;
        self.log_extent_changes = 0;
        // The old log is dead: its first two stretches become terminators, so the next mount
        // stops reading at once instead of searching the old records for later ones, and the
        // commits that fill the first stretch find the second one zero already.
        self.zeroed_to = 0;
        let log_bytes = self.sb.log_blocks * BLOCK_SIZE;
        let stretches = (log_bytes / LOG_TERMINATOR_BYTES).min(2);
        let first = (stretches > 0).then_some((0, stretches * LOG_TERMINATOR_BYTES));
        for region in [self.sb.log_start, self.sb.log_mirror_start] {
            if region != 0 {
                self.zero_stretch(region, first);
            }
        }
        self.backend.drain();
        if let Some((_, end)) = first {
            self.zeroed_to = end;
        }
        self.stats.checkpoints += 1;
        Ok(())
    }

    /// The payload of a delta checkpoint, when one will do: the pool is of the current version
    /// and has a base, no chain was found damaged, no block of the base or of a delta sits on bad
    /// memory (a whole checkpoint moves them off it), the free space left after the delta still
    /// holds the [`checkpoint_reserve`], fewer than [`MAX_DELTAS`] deltas follow the base, and the
    /// deltas with this one take at most a [`DELTA_MAX_FRACTION`] of the base's blocks (so
    /// rewriting the base, which growing deltas bring about, costs about what the deltas before it
    /// wrote together: the bytes checkpoints write follow what changed). `None`: a whole
    /// checkpoint is due.
    fn delta_payload(&self, state: &State) -> Option<Vec<u8>> {
        if self.whole_checkpoint_due
            || self.sb.version != VERSION
            || self.sb.checkpoint_head == 0
            || self.delta_blocks.len() >= MAX_DELTAS
            || (!self.prefer_deltas
                && state.changed_inodes() as u64 * DELTA_MAX_FRACTION > state.inodes.len() as u64)
        {
            return None;
        }
        let on_bad_memory =
            |b: &u64| state.quarantine.range(..=*b).next_back().is_some_and(|(&s, &l)| *b < s + l);
        let blocks = || self.delta_blocks.iter().chain([&self.checkpoint_blocks]).flatten().flatten();
        if !state.quarantine.is_empty() && blocks().any(on_bad_memory) {
            return None;
        }
        let mut delta = state.delta_image();
        delta.previous = newest_delta(&self.sb);
        let payload = delta.encode();
        // The reserve the file system keeps free is sized for a whole checkpoint and its growth;
        // a delta, which frees nothing, never takes from it (the checkpoint is written whole
        // instead, and frees the base and every delta).
        let reserve_stays =
            state.free.free_blocks() >= chain_blocks(payload.len()) + checkpoint_reserve(state);
        // Deltas and base compared by the blocks they take, not their bytes: a delta of a few
        // bytes takes two blocks too.
        let base_blocks = self.checkpoint_block_count() - self.delta_block_count();
        let small =
            (self.delta_block_count() + chain_blocks(payload.len())) * DELTA_MAX_FRACTION <= base_blocks;
        ((small || self.prefer_deltas) && reserve_stays).then_some(payload)
    }

    /// Tests: from now on every checkpoint that may be a delta is one, whatever the share of
    /// inodes that changed or the deltas' size (the other reasons for a whole checkpoint stand),
    /// so that property tests exercise long chains of deltas over small pools.
    pub fn prefer_deltas(&mut self, yes: bool) {
        self.prefer_deltas = yes;
    }

    /// The terminator stretch ([`LOG_TERMINATOR_BYTES`]) that must be zero once a record ends at
    /// log byte `end`, as log bytes `(from, to)`, when it is not zero already and fits the region.
    fn terminator_after(&self, end: u64) -> Option<(u64, u64)> {
        let start = end.next_multiple_of(LOG_TERMINATOR_BYTES);
        let stop = start + LOG_TERMINATOR_BYTES;
        (stop <= self.sb.log_blocks * BLOCK_SIZE && self.zeroed_to < stop)
            .then_some((start.max(self.zeroed_to), stop))
    }

    /// Makes log bytes `stretch` of the log copy at pool block `region` zero: stores and flushes
    /// zeros unless they read as zeros already (a checkpoint zeroed them, or they were never
    /// written). Only the next mount's speed depends on it (it stops at zeros it reads, never at
    /// zeros it assumes), so a store that fails is left at that.
    fn zero_stretch(&self, region: u64, stretch: Option<(u64, u64)>) {
        if let Some((from, to)) = stretch {
            let at = region * BLOCK_SIZE + from;
            let backend = self.backend.as_ref();
            if !crate::pool::is_zero(backend, at, to - from).unwrap_or(false)
                && backend.fill(at, to - from, 0).is_ok()
            {
                backend.flush(at, to - from);
            }
        }
    }

    /// Writes copy `copy` of the superblock into its slot for this generation (the other slot keeps
    /// the previous generation, so a torn write leaves a valid superblock behind).
    fn write_superblock(&self, copy: u32) {
        if self.sb.lost_copies & (1 << copy) != 0 {
            return; // on bad memory: never written again
        }
        let mut sb = self.sb.clone();
        sb.copy = copy;
        let at = SUPERBLOCK_BLOCKS[copy as usize] * BLOCK_SIZE + SLOT_OFFSETS[sb.slot()] as u64;
        // A copy on bad memory that cannot be written stays stale on the media: mount takes the
        // other copy (the higher valid generation) and reports this one; a memory failure of it
        // marks it lost.
        if self.backend.write(at, &sb.encode()).is_err() {
            return;
        }
        self.backend.flush(at, superblock::ENCODED_LEN as u64);
    }
}

/// Gives back the blocks of a metadata region nothing durable names any more, except bad ones.
fn free_region(state: &mut State, start: u64, n: u64, structure: MetaStructure) -> Result<()> {
    let freed = state
        .owners_mut()
        .remove(start, n, Owner::Meta(structure))
        .map_err(|e| bug(&format!("freeing the old {structure} region"), Error::Corrupt(e.0)))?;
    for (s, l) in freed {
        state.release_unless_quarantined(s, l);
    }
    Ok(())
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

/// What a damaged pool's error message tells the user to run.
pub fn repair_hint() -> &'static str {
    "`ferrodax check --repair POOL` rebuilds the pool from what is readable; `ferrodax salvage POOL \
     DIR` copies every readable file out without changing the pool"
}

/// Adds to a damage report the commands that help.
fn with_repair_hint(e: Error) -> Error {
    match e {
        Error::Corrupt(what) => Error::Corrupt(format!("{what}; {}", repair_hint())),
        other => other,
    }
}

/// The bytes of one pool block (a machine-check-safe copy).
pub fn read_block(backend: &SharedBackend, block: u64) -> Result<Vec<u8>> {
    crate::pool::read_vec(backend.as_ref(), block * BLOCK_SIZE, BLOCK_SIZE)
}

/// Aligned stretches of this many log bytes end the search for records past the end of the log
/// when they read as zeros: no record of any format version holds this many zero bytes in a row
/// (every mutation starts with a non-zero kind, and the longest field, an extended attribute's
/// value, is at most 64 KiB), and records are contiguous, so no record of this generation lies
/// beyond such a stretch. Commits zero the stretch after the record they write (both copies), so
/// mount finds one within two stretches of the end and never reads the rest of the region.
pub const LOG_TERMINATOR_BYTES: u64 = 128 * 1024;

// Skipping zeros unread in `LogCopy::later_record_after` relies on this: no header starts with a
// zero byte.
const _: () = assert!(record::RECORD_MAGIC.to_le_bytes()[0] != 0);

/// The smallest read mount makes of a log copy (one block: a log that a checkpoint just started
/// over is read no further, the rest compared with zeros in place); reads double from there.
const LOG_READ_STEP: usize = BLOCK_SIZE as usize;

/// One copy of the log region as mount reads it: from its start, only as far as replay and the
/// end-of-log evidence ask, in a few growing machine-check-safe copies. A block that cannot be
/// read reads as zeros (which no record matches) and is listed in `bad`.
struct LogCopy<'a> {
    backend: &'a SharedBackend,
    start_block: u64,
    /// Bytes of the region.
    region_len: usize,
    /// The region's bytes read so far (`[0, read)`), grown as reads go further.
    whole: Vec<u8>,
    /// Bytes `[0, read)` have been read.
    read: usize,
    /// Unreadable blocks (pool block numbers) among those read.
    bad: Vec<u64>,
    /// Whether an aligned stretch of zeros ends the search for later records (not in a salvage,
    /// which looks everywhere).
    stop_at_zeros: bool,
    /// Where the last search for later records met a terminator.
    terminator: Option<usize>,
}

impl<'a> LogCopy<'a> {
    fn new(backend: &'a SharedBackend, start_block: u64, blocks: u64, stop_at_zeros: bool) -> Self {
        LogCopy {
            backend,
            start_block,
            region_len: (blocks * BLOCK_SIZE) as usize,
            whole: Vec::new(),
            read: 0,
            bad: Vec::new(),
            stop_at_zeros,
            terminator: None,
        }
    }

    /// The bytes read so far.
    fn bytes(&self) -> &[u8] {
        &self.whole[..self.read]
    }

    fn read_all(&mut self) {
        self.read_to(self.region_len);
    }

    /// Reads at least the bytes before `end` (or the whole region).
    fn read_to(&mut self, end: usize) {
        if end <= self.read {
            return;
        }
        let block = BLOCK_SIZE as usize;
        let upto = end.max(2 * self.read).max(LOG_READ_STEP).next_multiple_of(block).min(self.region_len);
        let from = self.read;
        self.whole.resize(upto, 0);
        let offset = self.start_block * BLOCK_SIZE + from as u64;
        if crate::pool::read_into(self.backend.as_ref(), offset, &mut self.whole[from..upto]).is_err() {
            for (i, bytes) in self.whole[from..upto].chunks_mut(block).enumerate() {
                let at = offset + (i * block) as u64;
                if crate::pool::read_into(self.backend.as_ref(), at, bytes).is_err() {
                    bytes.fill(0);
                    self.bad.push(at / BLOCK_SIZE);
                }
            }
        }
        self.read = upto;
    }

    /// Reads whatever a record with sequence number `seq` at `pos` spans: its header, and the
    /// payload that header claims (bounded by the region).
    fn read_record(&mut self, pos: usize, seq: u64) {
        self.read_to(pos + record::HEADER_LEN);
        let bytes = self.bytes();
        if pos + record::HEADER_LEN <= bytes.len()
            && crate::format::codec::u32_at(bytes, pos) == record::RECORD_MAGIC
            && crate::format::codec::u64_at(bytes, pos + 8) == seq
        {
            let payload = crate::format::codec::u32_at(bytes, pos + 4) as usize;
            self.read_to(pos.saturating_add(record::HEADER_LEN).saturating_add(payload));
        }
    }

    /// Whether region bytes `[from, to)` are all zeros, compared in place (not read into the
    /// copy); false where a block of them cannot be read.
    fn zeros_in_place(&self, from: usize, to: usize) -> bool {
        let offset = self.start_block * BLOCK_SIZE + from as u64;
        from >= to || crate::pool::is_zero(self.backend.as_ref(), offset, (to - from) as u64).unwrap_or(false)
    }

    /// Whether the aligned stretch at `at` ends the search: all zeros, every block readable. The
    /// part not read yet is first compared with zeros in place (`pool::is_zero`), so a stretch
    /// that ends the search is never copied; only one that does not (or meets bad memory) is read.
    fn terminator_at(&mut self, at: usize) -> bool {
        let len = LOG_TERMINATOR_BYTES as usize;
        if !self.stop_at_zeros || at + len > self.region_len {
            return false;
        }
        let first = self.start_block + (at as u64) / BLOCK_SIZE;
        let last = first + LOG_TERMINATOR_BYTES / BLOCK_SIZE;
        let zeros_read = |copy: &Self, end: usize| {
            // Nothing read at `at` yet (`end == at`) leaves nothing to look at.
            all_zero(copy.whole.get(at..end).unwrap_or_default())
                && !copy.bad.iter().any(|b| (first..last).contains(b))
        };
        let read_end = self.read.clamp(at, at + len);
        if self.zeros_in_place(read_end, at + len) && zeros_read(self, read_end) {
            return true;
        }
        self.read_to(at + len);
        zeros_read(self, at + len)
    }

    /// Looks past the end of the log (`end`, where record `next_seq` was expected) for a record
    /// with a later sequence number of this generation and a valid checksum. Records are appended
    /// only after the previous one is durable, so such a record proves the one at `end` was
    /// damaged, not torn. Records of earlier generations carry lower sequence numbers and are
    /// ignored. The search ends at the first terminator ([`LOG_TERMINATOR_BYTES`]).
    fn later_record_after(&mut self, end: usize, next_seq: u64) -> Option<(u64, usize)> {
        // More records than could fit in the region cannot be of this generation.
        let max_records = (self.region_len / record::HEADER_LEN) as u64;
        let mut at = end;
        while at + record::HEADER_LEN <= self.region_len {
            if at as u64 % LOG_TERMINATOR_BYTES == 0 && self.terminator_at(at) {
                self.terminator = Some(at);
                return None;
            }
            if at > end {
                // No header starts at a zero byte (its magic's first byte is not zero): where the
                // next header would need a read, the rest of this stretch is skipped without a copy
                // if its bytes are zeros (those read so far, and the others compared in place).
                let next_stretch = at.next_multiple_of(LOG_TERMINATOR_BYTES as usize).min(self.region_len);
                if at + record::HEADER_LEN > self.read
                    && next_stretch > at
                    && all_zero(self.whole.get(at..).unwrap_or_default())
                    && self.zeros_in_place(at.max(self.read), next_stretch)
                {
                    at = next_stretch;
                    continue;
                }
                self.read_to(at + record::HEADER_LEN);
                let bytes = &self.bytes()[at..];
                if crate::format::codec::u32_at(bytes, 0) == record::RECORD_MAGIC {
                    let seq = crate::format::codec::u64_at(bytes, 8);
                    if seq > next_seq && seq - next_seq <= max_records {
                        self.read_record(at, seq);
                        if record::record_checksum_valid(&self.bytes()[at..], seq) {
                            return Some((seq, at));
                        }
                    }
                }
            }
            at += record::RECORD_ALIGN;
        }
        None
    }
}

/// Record `seq` is missing at `pos` in both log copies. Returns why it must have been committed, if
/// anything proves it, and where replay could resume (a later record's sequence number and
/// position). Proof is either a later record of this generation in either copy (records are
/// appended only after the previous one is durable), or the mirror copy's header naming `seq`
/// (the mirror copy is begun only once the log copy is durable). A torn record has neither: its
/// log copy was being written, so nothing follows it and its mirror copy was never begun.
fn committed_evidence(
    log: &mut LogCopy<'_>,
    mut mirror: Option<&mut LogCopy<'_>>,
    pos: usize,
    seq: u64,
) -> Option<(String, Option<(u64, usize)>)> {
    let in_log = log.later_record_after(pos, seq);
    let in_mirror = mirror.as_mut().and_then(|m| m.later_record_after(pos, seq));
    let later = in_log.into_iter().chain(in_mirror).min_by_key(|&(s, _)| s);
    if let Some((later_seq, at)) = later {
        return Some((format!("record {later_seq} follows at log byte {at}"), Some((later_seq, at))));
    }
    let header_names_it = mirror.is_some_and(|m| {
        m.read_to(pos + record::HEADER_LEN);
        let m = m.bytes();
        m.len() >= pos + record::HEADER_LEN
            && crate::format::codec::u32_at(m, pos) == record::RECORD_MAGIC
            && crate::format::codec::u64_at(m, pos + 8) == seq
    });
    header_names_it.then(|| ("its mirror copy was begun, which follows a durable log copy".to_string(), None))
}

/// The highest sequence number, from `from` up to as many records as the region could hold, that a
/// record header (magic at an 8-byte boundary) in `log` carries, valid or not.
fn highest_header_seq(log: &[u8], from: u64) -> Option<u64> {
    let max_records = (log.len() / record::HEADER_LEN) as u64;
    (0..log.len().saturating_sub(record::HEADER_LEN))
        .step_by(record::RECORD_ALIGN)
        .filter(|&at| crate::format::codec::u32_at(log, at) == record::RECORD_MAGIC)
        .map(|at| crate::format::codec::u64_at(log, at + 8))
        .filter(|&seq| seq >= from && seq - from <= max_records)
        .max()
}
