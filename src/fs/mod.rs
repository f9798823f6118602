//! The file system: namespace, files, extents, reference counts, the reverse map, reflink, dedupe,
//! copy-on-write writes and fsck.
//!
//! Owns the meaning of every operation: it validates arguments (errno rules of SPEC sections 1-3),
//! writes file data into freshly allocated blocks, and describes each change as a list of
//! mutations that the journal makes durable and the state applies. Data is never written in place
//! (except, by design, into blocks a file alone owns when it has DAX views or is written through an
//! in-place handle: `write_in_place_where_private`, `inplace`): every pwrite, truncate edge, unshare
//! and fallocate partial block goes to new blocks and becomes visible atomically when its record
//! commits, so a block with several owners is never modified.
//! The fallocate family, SEEK_DATA/SEEK_HOLE and copy_file_range's checks live in `falloc`.
//!
//! Must never: store into a block that another owner references (in memory, or on media while
//! operations are not yet durable: group commit), free a block before the record that
//! unreferences it is durable, or reach around the journal to change the state.

pub mod access;
pub mod alloc;
pub mod check;
pub mod extents;
pub mod falloc;
pub mod inplace;
pub mod journal;
pub mod lazy;
pub mod namespace;
pub mod ownership;
pub mod salvage;
pub mod state;
pub mod upgrade;
pub mod validate;

use crate::error::{Error, Result};
use crate::format::record::{InodeAttrs, InodeKind, Mutation};
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE};
use crate::intmap::IntMap;
use crate::pool::SharedBackend;
use journal::{now_ns, Journal, MountMode, MountNotes};
use ownership::{MetaStructure, Owner};
use state::{Inode, State};
use std::collections::{BTreeMap, HashMap};

/// The largest dedupe request the kernel accepts in one call; longer ones are cut to it.
pub const MAX_DEDUPE_LEN: u64 = 1 << 30;

/// How a handle was opened, for the EBADF rules of reflink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandleAccess {
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing.
    pub write: bool,
    /// Opened append-only.
    pub append: bool,
}

/// A change to a file's layout that DAX views must follow (recorded when tracking is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutChange {
    /// File blocks now point elsewhere (or are a hole); `phys` blocks gained an owner.
    Remapped {
        /// The file.
        ino: u64,
        /// First file block.
        file_block: u64,
        /// Number of blocks.
        len: u64,
        /// The new pool blocks, or `None` for a hole.
        phys: Option<u64>,
    },
    /// Pool blocks lost an owner (a survivor may now own them alone).
    Unmapped {
        /// First pool block.
        phys: u64,
        /// Number of blocks.
        len: u64,
    },
    /// Pool blocks went bad: views showing them must stop showing them.
    Poisoned {
        /// First pool block.
        phys: u64,
        /// Number of blocks.
        len: u64,
    },
    /// The file's size changed.
    Resized {
        /// The file.
        ino: u64,
        /// Size before.
        old_size: u64,
        /// Size after.
        new_size: u64,
    },
}

/// What [`FileSystem::record_bad_blocks`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadBlockOutcome {
    /// Blocks recorded as bad now.
    pub newly_bad: u64,
    /// Blocks that were already recorded (a second failure of the same block).
    pub already_bad: u64,
    /// Metadata structures moved off the bad blocks.
    pub relocated: Vec<String>,
    /// Superblock copies on bad blocks (the other copy carries on).
    pub lost_superblock_copies: Vec<u32>,
    /// Structures lost for good (no good copy left); the file system went read-only.
    pub lost: Vec<String>,
}

/// An open handle as the file system sees it: the inode and how it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    /// The inode.
    pub ino: u64,
    /// The access mode.
    pub access: HandleAccess,
}

/// What `stat` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: InodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte units, as st_blocks counts it.
    pub blocks: u64,
    /// Number of names.
    pub nlink: u32,
    /// Access time (ns since the epoch).
    pub atime_ns: i64,
    /// Modification time.
    pub mtime_ns: i64,
    /// Change time.
    pub ctime_ns: i64,
    /// Number of extents.
    pub extents: u64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirEntry {
    /// The name.
    pub name: String,
    /// Its inode.
    pub ino: u64,
    /// File or directory.
    pub kind: InodeKind,
}

/// One extent as FIEMAP reports it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FiemapExtent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset in the pool.
    pub physical: u64,
    /// Length.
    pub length: u64,
    /// Some block of it has other owners (FIEMAP_EXTENT_SHARED).
    pub shared: bool,
    /// The file's last extent (FIEMAP_EXTENT_LAST).
    pub last: bool,
}

/// Who uses a byte range of the pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockOwner {
    /// Start of the owned range in the pool, in bytes.
    pub pool_offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// The owner.
    pub owner: OwnerKind,
}

/// An owner of pool blocks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OwnerKind {
    /// File data.
    File {
        /// Inode number.
        ino: u64,
        /// Path from the root, or `None` for an unlinked file that is still open.
        path: Option<String>,
        /// Offset in the file of the range's first byte.
        file_offset: u64,
        /// How many owners the range's blocks have (1 = private).
        refcount: usize,
    },
    /// A metadata structure.
    Metadata {
        /// Which one ("superblock copy 0", "log", "checkpoint").
        structure: String,
    },
}

/// The share state of one pool block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShareState {
    /// Not used.
    Free,
    /// Bad; never handed out.
    Quarantined,
    /// Used by metadata.
    Metadata {
        /// Which structure.
        structure: String,
    },
    /// One file owns it.
    Single {
        /// The inode.
        ino: u64,
        /// The file block.
        file_block: u64,
    },
    /// Several owners.
    Shared {
        /// How many.
        count: usize,
    },
}

/// Result of deduping one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeOutcome {
    /// Contents matched; the bytes now share blocks (the count the kernel reports).
    Same(u64),
    /// Contents differ; nothing changed.
    Differs,
}

/// Blocks one data allocation keeps free beyond the checkpoint reserve: each new run may add an
/// extent (24 checkpoint bytes), and 2 blocks cover that.
const ALLOCATION_SLACK: u64 = 2;

/// At most this many other file blocks sharing a pool block are re-pointed at a copy by
/// [`FileSystem::make_block_private_for_store`] (one `Map` each in one record); with more, the
/// storing file takes the copy.
pub const MOVABLE_SHARERS: usize = 8;

/// What [`FileSystem::make_block_private_for_store`] did to make a file block private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadePrivate {
    /// Nothing: the block was private already. A layout change is recorded for the file block,
    /// so that a view that maps it read-only (mapped while operations were not yet durable)
    /// turns it writable.
    AlreadyPrivate,
    /// The file kept pool block `block`, now private to it: its other owners took a copy. No
    /// layout change is recorded, as no view needs one but those of this file block: no view
    /// shows `block` anywhere else (the caller's promise) and none shows the fresh copy. The
    /// caller brings the views of this file block in line itself.
    KeptBlock {
        /// The pool block the file block keeps.
        block: u64,
    },
    /// The file block got a new block (a copy of the shared one, or a zeroed one for a hole);
    /// recorded as layout changes.
    NewBlock,
}

/// How a mapped pool block is shared, as [`FileSystem::make_block_private_for_store`] needs it.
enum Sharing {
    /// Its only owner is the file block asking.
    Private,
    /// Also mapped by these other file blocks, few enough to re-point at a copy.
    Movable(Sharers),
    /// Shared otherwise: more file blocks, or a metadata structure.
    Unmovable,
}

/// Up to [`MOVABLE_SHARERS`] (inode, file block) pairs, kept inline: the store-fault path lists
/// them without touching the heap.
#[derive(Default)]
struct Sharers {
    list: [(u64, u64); MOVABLE_SHARERS],
    len: usize,
}

impl Sharers {
    /// Appends one; false (changing nothing) when full.
    fn push(&mut self, sharer: (u64, u64)) -> bool {
        let Some(slot) = self.list.get_mut(self.len) else { return false };
        *slot = sharer;
        self.len += 1;
        true
    }

    fn as_slice(&self) -> &[(u64, u64)] {
        &self.list[..self.len]
    }
}

/// Space and object counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsStats {
    /// Blocks in the pool.
    pub total_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Blocks kept back so a checkpoint always fits.
    pub reserved_blocks: u64,
    /// Free blocks that new file data can take now: the free blocks less the checkpoint reserve and
    /// the slack one allocation keeps for its new extents (what ENOSPC messages report).
    pub usable_blocks: u64,
    /// Quarantined blocks.
    pub quarantined_blocks: u64,
    /// Inodes.
    pub inodes: u64,
    /// File extents.
    pub extents: u64,
    /// Ownership segments.
    pub segments: u64,
    /// Log bytes free.
    pub log_free_bytes: u64,
}

/// Where the pool's blocks are, for `df`: every block is counted once, and
/// `total = data + metadata + free + quarantined-and-unowned`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpaceUsage {
    /// Blocks in the pool.
    pub total_blocks: u64,
    /// Blocks owned by files, counted once however many files share them.
    pub data_blocks: u64,
    /// Data blocks with more than one owner (reflink or dedupe).
    pub shared_blocks: u64,
    /// Blocks of metadata structures (superblocks, log, checkpoint chain).
    pub metadata_blocks: u64,
    /// Free blocks, the metadata reserve included.
    pub free_blocks: u64,
    /// Free blocks kept back so the next checkpoint always fits (never given to file data).
    pub reserved_blocks: u64,
    /// Free blocks a file can get: the largest data allocation that succeeds right now.
    pub available_blocks: u64,
    /// Bad blocks (quarantined), whether or not a file still owns them.
    pub quarantined_blocks: u64,
    /// Free runs by size: `(smallest run length in the bucket, runs, blocks)`, buckets at powers
    /// of two (1, 2-3, 4-7, ...), ascending; empty buckets left out.
    pub free_runs_by_size: Vec<(u64, u64, u64)>,
}

/// A mounted file system. Not thread-safe by itself: the library front end wraps it in a lock.
pub struct FileSystem {
    backend: SharedBackend,
    journal: Journal,
    state: State,
    open_counts: HashMap<u64, u32>,
    read_only: bool,
    /// Set by [`FileSystem::mark_removed`]: the pool is going away; every operation fails (EIO).
    removed: bool,
    notes: MountNotes,
    track_layout: bool,
    layout_changes: Vec<LayoutChange>,
    /// Why the file system refuses changes, when a memory failure made it read-only.
    read_only_reason: Option<String>,
    /// Runs (first block → length) taken for placed writes whose data is being stored by someone
    /// else (a pool server client): used in memory, free on media until their write commits.
    reserved: BTreeMap<u64, u64>,
    /// Set once `format` or `mount` succeeded: a mount that fails half-way (its repairs, a
    /// conversion, orphan reclaim) never writes its state at unmount.
    mounted: bool,
    /// A lazy mount's checkpoint, until the whole state is read (`fs/lazy.rs`).
    lazy: Option<Box<lazy::LazyCheckpoint>>,
}

fn blocks_of(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK_SIZE)
}

/// Items named per batch by [`FileSystem::fill_paths`]: their names are looked up together.
const NAMING_BATCH: usize = 256;

/// The path of the entry `name` in the directory at `dir_path`; bytes that are not UTF-8 show as
/// U+FFFD, as in `State::path_of`.
fn join_path(dir_path: &str, name: &[u8]) -> String {
    let dir_path = dir_path.trim_end_matches('/');
    let mut path = String::with_capacity(dir_path.len() + 1 + name.len());
    path.push_str(dir_path);
    path.push('/');
    match std::str::from_utf8(name) {
        Ok(name) => path.push_str(name),
        Err(_) => path.push_str(&String::from_utf8_lossy(name)),
    }
    path
}

impl FileSystem {
    /// Makes a new file system on the whole pool (mkfs) and mounts it.
    pub fn format(backend: SharedBackend) -> Result<Self> {
        let (journal, state) = Journal::format(backend.clone())?;
        Ok(Self {
            backend,
            journal,
            state,
            open_counts: HashMap::new(),
            read_only: false,
            removed: false,
            notes: MountNotes::default(),
            track_layout: false,
            layout_changes: Vec::new(),
            read_only_reason: None,
            reserved: BTreeMap::new(),
            mounted: true,
            lazy: None,
        })
    }

    /// Mounts an existing pool. Read-write mounts repair what mount found damaged (stale
    /// superblock copies; records and checkpoint blocks read from their second copy, by writing a
    /// new checkpoint; unreadable metadata blocks, by recording them as bad), convert a pool of an
    /// older format version, and reclaim files that were unlinked while open when the pool was last used.
    pub fn mount(backend: SharedBackend, read_only: bool) -> Result<Self> {
        let (mut journal, state, notes) = Journal::mount(backend.clone(), MountMode::Normal)?;
        if !read_only && !notes.stale_superblocks.is_empty() {
            journal.repair_superblocks(&notes.stale_superblocks);
        }
        let mut fs = Self::assemble(backend, journal, state, notes, read_only);
        if !read_only {
            // An older format is converted first: no record of the current format may follow
            // records of the old one in the same log.
            let old_version = fs.journal.superblock().version;
            let upgraded = fs.journal.upgrade(&mut fs.state)?;
            let unreadable = fs.notes.unreadable_blocks.clone();
            for block in unreadable {
                fs.record_bad_blocks(block, 1)?;
            }
            if fs.notes.needs_checkpoint && !upgraded {
                fs.journal.checkpoint(&mut fs.state)?;
            }
            if upgraded {
                let names = if old_version < crate::format::superblock::FIRST_VERSION_WITH_ENTRIES {
                    "names in directory entries (hard links), owners, symlinks and extended \
                     attributes; a log mirror and a second checkpoint chain; "
                } else {
                    ""
                };
                let clone = if old_version < 4 { "a reflink or dedupe is one log mutation; " } else { "" };
                fs.notes.repaired.push(format!(
                    "converted to format version {}: {names}{clone}a checkpoint writes only the inodes that changed",
                    crate::format::superblock::VERSION
                ));
            }
            let orphans: Vec<u64> =
                fs.state.inodes.values().filter(|i| i.attrs.nlink == 0).map(|i| i.attrs.ino).collect();
            // Only files outlive their last name; a nameless directory is damage, and reclaiming
            // it (children and all) would commit a record that cannot be applied.
            if let Some(&dir) = orphans.iter().find(|&ino| fs.state.inodes[ino].is_dir()) {
                return Err(Error::Corrupt(format!("inode {dir}: a directory with link count 0")));
            }
            if !orphans.is_empty() {
                let mut tx = Vec::new();
                for ino in orphans {
                    fs.release_inode_mutations(ino, &mut tx);
                }
                fs.commit(&tx)?;
            }
        }
        fs.mounted = true;
        Ok(fs)
    }

    /// Mounts a damaged pool read-only, keeping whatever is readable (see [`MountMode::Salvage`]):
    /// for copying files out of a pool that does not mount normally. What could not be recovered
    /// is in [`MountNotes::lost`].
    pub fn mount_salvage(backend: SharedBackend) -> Result<Self> {
        let (journal, state, notes) = Journal::mount(backend.clone(), MountMode::Salvage)?;
        let mut fs = Self::assemble(backend, journal, state, notes, true);
        fs.read_only_reason = Some("a salvage mount is read-only".into());
        Ok(fs)
    }

    /// Rebuilds a damaged pool from what a salvage mount reads: the salvaged state (bad names
    /// replaced, homeless inodes in /lost+found, unreadable records and blocks dropped) is written
    /// as a new checkpoint in both chains, with both log copies started over, and unreadable
    /// metadata blocks are recorded as bad. Returns the notes of the salvage (what was lost).
    /// Crash-safe like every checkpoint: until the superblocks switch, the damaged pool stands.
    pub fn repair(backend: SharedBackend) -> Result<MountNotes> {
        let (mut journal, mut state, notes) = Journal::mount(backend.clone(), MountMode::Salvage)?;
        // Unreadable blocks are bad memory: never handed out (a log copy on them is moved below,
        // an old checkpoint block on them stays quarantined when the chain is freed).
        for &block in &notes.unreadable_blocks {
            state.add_bad_blocks(block, 1);
            if state.free.is_free(block, 1) {
                state.free.claim(block, 1);
            }
        }
        let old_regions = journal.fresh_log_regions(&mut state)?;
        journal.checkpoint(&mut state)?;
        journal.free_regions(&mut state, &old_regions)?;
        Ok(notes)
    }

    fn assemble(
        backend: SharedBackend,
        journal: Journal,
        state: State,
        notes: MountNotes,
        read_only: bool,
    ) -> Self {
        Self {
            backend,
            journal,
            state,
            open_counts: HashMap::new(),
            read_only,
            removed: false,
            notes,
            track_layout: false,
            layout_changes: Vec::new(),
            read_only_reason: None,
            reserved: BTreeMap::new(),
            mounted: false,
            lazy: None,
        }
    }

    /// What mount repaired or noticed.
    pub fn mount_notes(&self) -> &MountNotes {
        &self.notes
    }

    /// The pool's uuid.
    pub fn uuid(&self) -> [u8; 16] {
        self.journal.superblock().uuid
    }

    /// The pool backend.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    /// The in-memory state (for checks and tests).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The in-memory state, to change behind the journal's back: only for test hooks
    /// ([`crate::fuzzing::check_after_tampering`]) that prove fsck finds damage by itself.
    pub(crate) fn state_mut(&mut self) -> &mut State {
        &mut self.state
    }

    /// The journal (for checks, stats and tests).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// True when mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// After a pre-remove (the pool is going away): nothing is written any more and every
    /// operation on files and names fails with EIO, like a shut-down file system.
    pub fn mark_removed(&mut self) {
        self.removed = true;
        self.read_only = true;
    }

    /// True after [`FileSystem::mark_removed`].
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    fn not_removed(&self) -> Result<()> {
        if self.removed {
            return Err(Error::Io("the pool was removed (pre-remove); the file system is gone".into()));
        }
        Ok(())
    }

    fn writable(&self) -> Result<()> {
        self.not_removed()?;
        if self.read_only {
            let why = self.read_only_reason.as_deref().unwrap_or("the pool is mounted read-only");
            return Err(Error::ReadOnly(why.to_string()));
        }
        Ok(())
    }

    fn commit(&mut self, tx: &[Mutation]) -> Result<()> {
        let committed = self.commit_record(tx);
        if committed.is_ok() {
            self.restore_log_redundancy();
        }
        committed
    }

    /// A sync point (fsync, syncfs, msync, unmount): every operation that returned is durable
    /// when this returns. Only group commit (a pool file on a disk, see [`Journal::commit`])
    /// leaves anything to do: the grouped operations become one log record. Fails with the error
    /// of the write (EIO, ENOSPC) when neither the log nor a checkpoint could take them; they stay
    /// applied, and the next sync tries again.
    pub fn sync(&mut self) -> Result<()> {
        if !self.journal.has_unsynced() {
            return Ok(());
        }
        let synced = self.journal.sync(&mut self.state);
        if synced.is_ok() {
            self.restore_log_redundancy();
        }
        synced
    }

    /// Whether pool block `block` has exactly one owner, in memory and on media alike: a store
    /// into it then changes no other file's bytes, now or after a crash. While operations are not
    /// yet durable (group commit) no block counts, as the durable state may still share it.
    pub fn is_private_durably(&self, block: u64) -> bool {
        !self.journal.has_unsynced() && self.state.owners().refcount(block) == 1
    }

    /// Whether operations returned that are not durable yet (group commit; see
    /// [`FileSystem::sync`]).
    pub fn has_unsynced(&self) -> bool {
        self.journal.has_unsynced()
    }

    /// [`FileSystem::sync`] if the oldest operation not yet durable is at least `age` old (the
    /// periodic sync point of group commit).
    pub fn sync_if_older(&mut self, age: std::time::Duration) -> Result<()> {
        match self.journal.unsynced_since() {
            Some(since) if since.elapsed() >= age => self.sync(),
            _ => Ok(()),
        }
    }

    /// After a commit whose log mirror copy could not be written (the operation happened: its log
    /// copy is durable): bad memory under the mirror is recorded, which moves the mirror; any
    /// other failure is answered with a checkpoint, which makes the record's content redundant.
    fn restore_log_redundancy(&mut self) {
        for failure in self.journal.take_mirror_failures() {
            let fixed = match failure {
                Error::MediaError { pool_offset } => {
                    self.record_bad_blocks(pool_offset / BLOCK_SIZE, 1).map(drop)
                }
                _ => self.journal.checkpoint(&mut self.state),
            };
            if let Err(e) = fixed {
                eprintln!("ferrodax: the log mirror could not be written nor moved ({e}); records stay single until the next checkpoint");
            }
        }
    }

    fn commit_record(&mut self, tx: &[Mutation]) -> Result<()> {
        if !self.track_layout {
            return self.journal.commit(&mut self.state, tx);
        }
        // Recorded straight into the list the views take them from (no list per commit), and
        // taken back out if the commit fails.
        let recorded = self.layout_changes.len();
        for m in tx {
            match m {
                Mutation::Map { ino, file_block, len, phys } => {
                    push_unmapped(
                        &mut self.layout_changes,
                        self.state.inodes.get(ino).map(|i| &**i),
                        *file_block,
                        *len,
                    );
                    self.layout_changes.push(LayoutChange::Remapped {
                        ino: *ino,
                        file_block: *file_block,
                        len: *len,
                        phys: *phys,
                    });
                }
                Mutation::Clone { src, src_block, dst, dst_block, len } => {
                    push_unmapped(
                        &mut self.layout_changes,
                        self.state.inodes.get(dst).map(|i| &**i),
                        *dst_block,
                        *len,
                    );
                    if let Some(source) = self.state.inodes.get(src) {
                        let pieces = source.extents.pieces(*src_block, *len);
                        self.layout_changes.extend(pieces.into_iter().map(|p| LayoutChange::Remapped {
                            ino: *dst,
                            file_block: dst_block + (p.file_block - src_block),
                            len: p.len,
                            phys: p.phys,
                        }));
                    }
                }
                Mutation::PutInode(attrs) => {
                    if let Some(old) = self.state.inodes.get(&attrs.ino) {
                        if old.attrs.size != attrs.size {
                            self.layout_changes.push(LayoutChange::Resized {
                                ino: attrs.ino,
                                old_size: old.attrs.size,
                                new_size: attrs.size,
                            });
                        }
                    }
                }
                Mutation::FreeInode { .. }
                | Mutation::Quarantine { .. }
                | Mutation::Link { .. }
                | Mutation::Unlink { .. }
                | Mutation::SetXattr { .. }
                | Mutation::SetTarget { .. } => {}
            }
        }
        let committed = self.journal.commit(&mut self.state, tx);
        if committed.is_err() {
            self.layout_changes.truncate(recorded);
        }
        committed
    }

    // ----- names (the rest lives in `namespace`) -----

    /// Mutations that unmap every block of an inode and delete it.
    fn release_inode_mutations(&self, ino: u64, tx: &mut Vec<Mutation>) {
        let inode = &self.state.inodes[&ino];
        for (fb, e) in inode.extents.iter() {
            tx.push(Mutation::Map { ino, file_block: fb, len: e.len, phys: None });
        }
        tx.push(Mutation::FreeInode { ino });
    }

    /// The path of an inode (None if unlinked).
    pub fn path_of(&self, ino: u64) -> Option<String> {
        self.state.path_of(ino)
    }

    /// Records one more open handle on `ino`.
    pub fn open_ref(&mut self, ino: u64) {
        *self.open_counts.entry(ino).or_insert(0) += 1;
    }

    /// Drops an open handle; the last close of an unlinked file frees it.
    pub fn close_ref(&mut self, ino: u64) -> Result<()> {
        let count = self.open_counts.entry(ino).or_insert(1);
        *count -= 1;
        if *count == 0 {
            self.open_counts.remove(&ino);
            if !self.read_only && self.state.inodes.get(&ino).is_some_and(|i| i.attrs.nlink == 0) {
                let mut tx = Vec::new();
                self.release_inode_mutations(ino, &mut tx);
                self.commit(&tx)?;
            }
        }
        Ok(())
    }

    fn file(&self, ino: u64) -> Result<&Inode> {
        self.not_removed()?;
        let inode = self.state.inode(ino)?;
        match inode.attrs.kind {
            InodeKind::File => Ok(inode),
            InodeKind::Dir => Err(Error::IsDir(self.path_of(ino).unwrap_or_else(|| format!("inode {ino}")))),
            InodeKind::Symlink => Err(Error::Invalid(format!(
                "{}: a symlink has no data of its own",
                self.path_of(ino).unwrap_or_else(|| format!("inode {ino}"))
            ))),
        }
    }

    // ----- data -----

    /// Reads up to `buf.len()` bytes at `pos`; returns how many (0 at or past EOF).
    pub fn read(&self, ino: u64, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.file(ino)?;
        let size = inode.attrs.size;
        if pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - pos);
        let end = pos + n;
        let fb0 = pos / BLOCK_SIZE;
        for piece in inode.extents.pieces(fb0, blocks_of(end) - fb0) {
            let piece_start = (piece.file_block * BLOCK_SIZE).max(pos);
            let piece_end = ((piece.file_block + piece.len) * BLOCK_SIZE).min(end);
            let mut piece_end = piece_end;
            let mut hit_bad = false;
            if let Some(phys) = piece.phys {
                // Poisoned media: read up to the first bad byte (a short read), EIO if that is the first.
                let first = phys + (piece_start / BLOCK_SIZE - piece.file_block);
                let last = phys + (piece_end - 1) / BLOCK_SIZE - piece.file_block;
                if let Some(bad) = self.state.first_bad_block(first, last - first + 1) {
                    let bad_offset = (piece.file_block + (bad - phys)) * BLOCK_SIZE;
                    if bad_offset <= pos {
                        return Err(self.poisoned(ino, pos));
                    }
                    piece_end = piece_end.min(bad_offset);
                    hit_bad = true;
                }
            }
            let dst = &mut buf[(piece_start - pos) as usize..(piece_end - pos) as usize];
            match piece.phys {
                Some(phys) => {
                    let at = phys * BLOCK_SIZE + (piece_start - piece.file_block * BLOCK_SIZE);
                    crate::pool::read_into(self.backend.as_ref(), at, dst)?;
                }
                None => dst.fill(0),
            }
            if hit_bad {
                return Ok((piece_end - pos) as usize);
            }
        }
        Ok(n as usize)
    }

    /// The EIO for touching a poisoned block of a file.
    fn poisoned(&self, ino: u64, offset: u64) -> Error {
        let name = self.path_of(ino).unwrap_or_else(|| format!("inode {ino}"));
        Error::Io(format!("{name}: poisoned media at file offset {}", offset / BLOCK_SIZE * BLOCK_SIZE))
    }

    /// EIO if the pool block is poisoned.
    fn readable_block(&self, ino: u64, file_block: u64, phys: Option<u64>) -> Result<()> {
        match phys {
            Some(p) if self.state.first_bad_block(p, 1).is_some() => {
                Err(self.poisoned(ino, file_block * BLOCK_SIZE))
            }
            _ => Ok(()),
        }
    }

    /// Blocks that must stay free so the next checkpoint (both chains) always fits: twice the
    /// checkpoint's size bound plus room for it to grow (64 KiB, or 1/32 of a pool smaller than
    /// 2 MiB, so the smallest pools keep room for data), plus a few blocks of slack.
    pub fn metadata_reserve(&self) -> u64 {
        journal::checkpoint_reserve(&self.state)
    }

    /// Free blocks that new file data can take now (see [`FsStats::usable_blocks`]).
    fn usable_blocks(&self) -> u64 {
        self.free_blocks().saturating_sub(self.metadata_reserve() + ALLOCATION_SLACK)
    }

    /// Free blocks, counting those that operations not yet durable freed (group commit: they
    /// become free at the next sync, which an allocation that needs them brings forward) and
    /// those a whole checkpoint would give back (the checkpoint deltas' and the base's, less the
    /// new checkpoint: an allocation that needs them writes one).
    fn free_blocks(&self) -> u64 {
        self.state.free.free_blocks()
            + self.state.held_blocks()
            + self.journal.blocks_a_whole_checkpoint_frees(&self.state)
    }

    fn ensure_metadata_room(&mut self, extra_blocks: u64) -> Result<()> {
        let reserve = self.metadata_reserve();
        if self.state.free.free_blocks() < reserve + extra_blocks && !self.state.held.is_empty() {
            // Blocks freed by grouped operations are free once those are durable.
            self.sync()?;
        }
        if self.state.free.free_blocks() < reserve + extra_blocks
            && self.journal.blocks_a_whole_checkpoint_frees(&self.state) > 0
        {
            // The deltas' and the base's blocks are free once a whole checkpoint replaces them
            // (the reserve always holds one), and they are more than it takes.
            self.journal.checkpoint_whole(&mut self.state)?;
        }
        let free = self.state.free.free_blocks();
        if free < reserve + extra_blocks {
            // Report what can be used: the reserve is free but never handed out for data.
            return Err(Error::NoSpace(format!(
                "{extra_blocks} blocks wanted, {} usable ({free} free, {reserve} kept back for checkpoints)",
                self.usable_blocks()
            )));
        }
        Ok(())
    }

    /// Takes `count` blocks for file data, keeping the metadata reserve.
    fn allocate_data(&mut self, count: u64, goal: Option<u64>) -> Result<Vec<(u64, u64)>> {
        self.ensure_metadata_room(count + ALLOCATION_SLACK)?;
        let runs = self
            .state
            .free
            .allocate(count, goal)
            .ok_or_else(|| Error::NoSpace(format!("{count} blocks wanted")))?;
        // Every run becomes an extent of the next checkpoint: taken from a fragmented free space,
        // one allocation can grow the checkpoint past the room the reserve keeps for growth, and a
        // whole checkpoint must still fit afterwards.
        let growth = runs.len() as u64 * state::EXTENT_IMAGE_BYTES;
        let whole = journal::whole_checkpoint_blocks(&self.state, growth) + 4;
        if self.state.free.free_blocks() < whole {
            self.give_back(&runs);
            return Err(Error::NoSpace(format!(
                "{count} blocks wanted in {} pieces: the checkpoint would outgrow the {} blocks left",
                runs.len(),
                self.state.free.free_blocks() + count
            )));
        }
        // A sparse pool file allocates its host blocks now: a full host file system is ENOSPC
        // here, not a SIGBUS at the first store.
        if let Err(e) =
            runs.iter().try_for_each(|&(s, l)| self.backend.ensure_backed(s * BLOCK_SIZE, l * BLOCK_SIZE))
        {
            self.give_back(&runs);
            return Err(e);
        }
        Ok(runs)
    }

    /// [`FileSystem::allocate_data`] of one block: the same block, without a list of runs.
    fn allocate_data_block(&mut self, goal: Option<u64>) -> Result<u64> {
        self.ensure_metadata_room(1 + ALLOCATION_SLACK)?;
        let block =
            self.state.free.allocate_one(goal).ok_or_else(|| Error::NoSpace("1 block wanted".into()))?;
        if let Err(e) = self.backend.ensure_backed(block * BLOCK_SIZE, BLOCK_SIZE) {
            self.give_back(&[(block, 1)]);
            return Err(e);
        }
        Ok(block)
    }

    fn give_back(&mut self, runs: &[(u64, u64)]) {
        for &(s, l) in runs {
            self.state.free.release(s, l);
        }
    }

    /// Commits `tx`; if that fails, returns the blocks reserved for it to the free set.
    fn commit_or_give_back(&mut self, tx: &[Mutation], runs: &[(u64, u64)]) -> Result<()> {
        let result = self.commit(tx);
        if result.is_err() {
            self.give_back(runs);
        }
        result
    }

    /// The pool block right after the one backing `file_block - 1`: where a file grows contiguously.
    fn goal_for(&self, inode: &Inode, file_block: u64) -> Option<u64> {
        file_block.checked_sub(1).and_then(|prev| inode.extents.lookup(prev)).map(|p| p + 1)
    }

    /// Takes the blocks that a write of `len` bytes at `pos` of `ino` will need, for a writer that
    /// stores the data itself (a pool server client, straight into pool memory) and then calls
    /// [`FileSystem::write_placed`]. Byte `pos + i` belongs at byte `pos % 4096 + i` of the runs
    /// taken together. Until then the runs are reserved: used in memory, free on media (a crash
    /// frees them), and [`FileSystem::release_reserved`] gives them back.
    pub fn reserve_for_placed_write(&mut self, ino: u64, pos: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        self.writable()?;
        let inode = self.file(ino)?;
        if len == 0 {
            return Err(Error::Invalid("a placed write needs at least one byte".into()));
        }
        if pos.checked_add(len).is_none_or(|end| end > MAX_FILE_SIZE) {
            return Err(Error::TooBig(format!("write of {len} bytes at {pos}")));
        }
        let fb0 = pos / BLOCK_SIZE;
        let goal = self.goal_for(inode, fb0).or(inode.extents.lookup(fb0).map(|p| p + 1));
        let runs = self.allocate_data(blocks_of(pos + len) - fb0, goal)?;
        for &(s, l) in &runs {
            self.reserved.insert(s, l);
        }
        Ok(runs)
    }

    /// Gives reserved runs back to the free space (a placed write that will not happen). Runs that
    /// are not reserved are ignored.
    pub fn release_reserved(&mut self, runs: &[(u64, u64)]) {
        for &(s, l) in runs {
            if self.reserved.get(&s) == Some(&l) {
                self.reserved.remove(&s);
                self.state.free.release(s, l);
            }
        }
    }

    /// Blocks reserved for placed writes in flight.
    pub fn reserved_runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.reserved.iter().map(|(&s, &l)| (s, l))
    }

    /// Commits a placed write: `len` bytes at `pos` of `ino` whose data the writer stored into
    /// `runs` (from [`FileSystem::reserve_for_placed_write`]). The unaligned head and tail of the
    /// first and last block are copied from the file's current blocks now, under the caller's lock,
    /// so a concurrent write to other bytes of those blocks is never undone. Same result as
    /// [`FileSystem::write`] with that data; on failure the runs are free again.
    pub fn write_placed(&mut self, ino: u64, pos: u64, len: u64, runs: &[(u64, u64)]) -> Result<usize> {
        let expected = blocks_of(pos.saturating_add(len)).saturating_sub(pos / BLOCK_SIZE);
        let total: u64 = runs.iter().map(|r| r.1).sum();
        if len == 0 || total != expected || runs.iter().any(|&(s, l)| self.reserved.get(&s) != Some(&l)) {
            return Err(Error::Invalid(format!(
                "a placed write of {len} bytes at {pos} must name the runs reserved for it"
            )));
        }
        for &(s, _) in runs {
            self.reserved.remove(&s);
        }
        let end = pos + len;
        let prepared =
            self.writable().and_then(|()| self.clear_tail_before_growth(ino, end)).and_then(|()| {
                let inode = self.file(ino)?;
                let (fb0, fb_end) = (pos / BLOCK_SIZE, blocks_of(end));
                let (old_first, old_last) = (inode.extents.lookup(fb0), inode.extents.lookup(fb_end - 1));
                if pos % BLOCK_SIZE != 0 {
                    self.readable_block(ino, fb0, old_first)?;
                }
                if end % BLOCK_SIZE != 0 {
                    self.readable_block(ino, fb_end - 1, old_last)?;
                }
                Ok((old_first, old_last))
            });
        let old = match prepared {
            Ok(old) => old,
            Err(e) => {
                self.give_back(runs);
                return Err(e);
            }
        };
        self.fill_edges_and_commit(ino, pos, end, old, runs, None)?;
        Ok(len as usize)
    }

    /// The second half of a copy-on-write write into the fresh `runs` (covering the blocks of
    /// `[pos, end)`): the head and tail edges copied from the current blocks `old` (of the first and
    /// the last file block; `None` for holes) or zeroed, the data
    /// stored unless a writer placed it already (`data` is `None`), everything flushed, and one
    /// record mapping the runs committed. On failure the runs are free again.
    fn fill_edges_and_commit(
        &mut self,
        ino: u64,
        pos: u64,
        end: u64,
        (old_first, old_last): (Option<u64>, Option<u64>),
        runs: &[(u64, u64)],
        data: Option<&[u8]>,
    ) -> Result<()> {
        let inode = self.file(ino)?;
        let fb0 = pos / BLOCK_SIZE;
        let (head, tail) = (pos % BLOCK_SIZE, end % BLOCK_SIZE);
        let mut attrs = inode.attrs.clone();
        let first_new = runs[0].0;
        let last_new = runs.last().map(|&(s, l)| s + l - 1).expect("at least one run");
        let edges = (if head != 0 { self.copy_or_zero(old_first, 0, first_new, head) } else { Ok(()) })
            .and_then(|()| {
                if tail != 0 {
                    self.copy_or_zero(old_last, tail, last_new, BLOCK_SIZE - tail)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = edges {
            self.give_back(runs);
            return Err(e);
        }
        // One run (the usual small write): the record's two mutations without a list on the heap.
        let mut only_map = None;
        let mut tx = Vec::new();
        let mut file_block = fb0;
        for &(start, len) in runs {
            let (run_start, run_end) = (start * BLOCK_SIZE, (start + len) * BLOCK_SIZE);
            match data {
                Some(data) => {
                    let byte_start = (file_block * BLOCK_SIZE).max(pos);
                    let byte_end = ((file_block + len) * BLOCK_SIZE).min(end);
                    let src = &data[(byte_start - pos) as usize..(byte_end - pos) as usize];
                    let at = run_start + (byte_start - file_block * BLOCK_SIZE);
                    // The data is flushed as it is stored; then the edges copied around it.
                    if let Err(e) = self.backend.write_flushed(at, src) {
                        self.give_back(runs);
                        return Err(e);
                    }
                    let data_end = at + src.len() as u64;
                    if at > run_start {
                        self.backend.flush(run_start, at - run_start);
                    }
                    if data_end < run_end {
                        self.backend.flush(data_end, run_end - data_end);
                    }
                }
                None => self.backend.flush(run_start, run_end - run_start),
            }
            let map = Mutation::Map { ino, file_block, len, phys: Some(start) };
            if runs.len() == 1 {
                only_map = Some(map);
            } else {
                tx.reserve_exact(runs.len() + 1);
                tx.push(map);
            }
            file_block += len;
        }
        let size = attrs.size.max(end);
        modified(&mut attrs, size);
        if let Some(map) = only_map {
            return self.commit_or_give_back(&[map, Mutation::PutInode(attrs)], runs);
        }
        tx.push(Mutation::PutInode(attrs));
        self.commit_or_give_back(&tx, runs)
    }

    /// Writes `data` at `pos` (copy-on-write: new blocks, atomically remapped). Returns bytes written.
    pub fn write(&mut self, ino: u64, pos: u64, data: &[u8]) -> Result<usize> {
        self.writable()?;
        self.file(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        // generic_write_check_limits: EFBIG at or past the limit, a short write up to it otherwise.
        if pos >= MAX_FILE_SIZE {
            return Err(Error::TooBig(format!("write of {} bytes at {pos}", data.len())));
        }
        let data = &data[..data.len().min((MAX_FILE_SIZE - pos).min(usize::MAX as u64) as usize)];
        let end = pos + data.len() as u64;
        self.clear_tail_before_growth(ino, end)?;
        let inode = self.file(ino)?;
        let fb0 = pos / BLOCK_SIZE;
        let fb_end = blocks_of(end);
        let head = pos % BLOCK_SIZE;
        let tail = end % BLOCK_SIZE;
        let (before_first, old_first) = inode.extents.lookup_with_previous(fb0);
        let old_last = if fb_end - 1 == fb0 { old_first } else { inode.extents.lookup(fb_end - 1) };
        // Where the file grows contiguously (see `goal_for`), else right after the block replaced.
        let goal = before_first.map(|p| p + 1).or(old_first.map(|p| p + 1));
        // The edge copies read the old blocks: poison there fails the write and changes nothing.
        // Blocks the write covers whole are not read, so a write over poison is a recovery write.
        if head != 0 {
            self.readable_block(ino, fb0, old_first)?;
        }
        if tail != 0 {
            self.readable_block(ino, fb_end - 1, old_last)?;
        }
        if fb_end - fb0 == 1 {
            // One block (the usual small write), without a list of runs.
            let block = self.allocate_data_block(goal)?;
            self.fill_edges_and_commit(ino, pos, end, (old_first, old_last), &[(block, 1)], Some(data))?;
        } else {
            let runs = self.allocate_data(fb_end - fb0, goal)?;
            self.fill_edges_and_commit(ino, pos, end, (old_first, old_last), &runs, Some(data))?;
        }
        Ok(data.len())
    }

    /// Writes `data` at `pos`, storing in place into blocks that are private to this file, and
    /// copy-on-write everywhere else. This is what a file with live DAX views needs: a store through
    /// a view and a pwrite then land in the same memory. It is atomic only per piece (a run of
    /// private blocks, or one copy-on-write run), like a kernel DAX write.
    pub fn write_in_place_where_private(&mut self, ino: u64, pos: u64, data: &[u8]) -> Result<usize> {
        self.writable()?;
        self.file(ino)?;
        // What is private now must be private on media before a store lands in it.
        self.sync()?;
        if data.is_empty() || pos >= MAX_FILE_SIZE {
            return self.write(ino, pos, data);
        }
        let data = &data[..data.len().min((MAX_FILE_SIZE - pos).min(usize::MAX as u64) as usize)];
        let end = pos + data.len() as u64;
        self.clear_tail_before_growth(ino, end)?;
        let fb0 = pos / BLOCK_SIZE;
        let private = self.private_blocks(self.file(ino)?, fb0, blocks_of(end) - fb0);
        // Handle maximal runs of equal treatment, in order.
        let mut i = 0;
        while i < private.len() {
            let mut j = i + 1;
            while j < private.len() && private[j] == private[i] {
                j += 1;
            }
            let run_start = ((fb0 + i as u64) * BLOCK_SIZE).max(pos);
            let run_end = ((fb0 + j as u64) * BLOCK_SIZE).min(end);
            let chunk = &data[(run_start - pos) as usize..(run_end - pos) as usize];
            if private[i] {
                self.store_in_place(ino, run_start, chunk)?;
            } else {
                self.write(ino, run_start, chunk)?;
            }
            i = j;
        }
        Ok(data.len())
    }

    /// Which of the `count` file blocks from `fb0` may be written in place: mapped, with exactly
    /// one owner, and not poisoned (a poisoned block is never written in place: copy-on-write
    /// recovers it). None while operations are not yet durable (group commit): the durable state
    /// may still share a block they made private ([`FileSystem::is_private_durably`]).
    fn private_blocks(&self, inode: &Inode, fb0: u64, count: u64) -> Vec<bool> {
        let mut private = vec![false; count as usize];
        if self.journal.has_unsynced() {
            return private;
        }
        for piece in inode.extents.pieces(fb0, count) {
            let Some(phys) = piece.phys else { continue };
            for (s, seg) in self.state.owners().overlapping(phys, piece.len) {
                if seg.owners.len() == 1 {
                    let a = s.max(phys);
                    let b = (s + seg.len).min(phys + piece.len);
                    for block in a..b {
                        let bad = self.state.first_bad_block(block, 1).is_some();
                        private[(piece.file_block + (block - phys) - fb0) as usize] = !bad;
                    }
                }
            }
        }
        private
    }

    /// Stores `data` at `pos` into `inode`'s blocks, which the caller found mapped and private
    /// ([`FileSystem::private_blocks`]), and flushes it (the caller drains).
    fn store_into_private_blocks(&self, inode: &Inode, pos: u64, data: &[u8]) -> Result<()> {
        let end = pos + data.len() as u64;
        let fb0 = pos / BLOCK_SIZE;
        for piece in inode.extents.pieces(fb0, blocks_of(end) - fb0) {
            let phys = piece.phys.expect("caller checked every block is mapped and private");
            let a = (piece.file_block * BLOCK_SIZE).max(pos);
            let b = ((piece.file_block + piece.len) * BLOCK_SIZE).min(end);
            let at = phys * BLOCK_SIZE + (a - piece.file_block * BLOCK_SIZE);
            // In place, like a kernel DAX write: bytes stored before bad memory stay stored.
            self.backend.write(at, &data[(a - pos) as usize..(b - pos) as usize])?;
            self.backend.flush(at, b - a);
        }
        Ok(())
    }

    /// Stores into the file's own private blocks and commits the new size and times.
    fn store_in_place(&mut self, ino: u64, pos: u64, data: &[u8]) -> Result<()> {
        let inode = self.file(ino)?;
        self.store_into_private_blocks(inode, pos, data)?;
        let mut attrs = inode.attrs.clone();
        let size = attrs.size.max(pos + data.len() as u64);
        modified(&mut attrs, size);
        self.commit(&[Mutation::PutInode(attrs)])
    }

    /// Makes file block `file_block` of `ino` private to the file, for a store through a view:
    /// a hole gets a zeroed block, a shared block is copied, a private one is left alone. Returns
    /// whether anything changed. Fails with EINVAL past EOF and ENOSPC when the pool is full.
    pub fn make_block_private(&mut self, ino: u64, file_block: u64) -> Result<bool> {
        let made = self.make_block_private_for_store(ino, file_block, |_| false)?;
        Ok(made != MadePrivate::AlreadyPrivate)
    }

    /// [`FileSystem::make_block_private`] for a store fault through a view, which is cheapest when
    /// the faulting page keeps its pool block: then only its protection changes, instead of a new
    /// mapping. So when the block is shared with at most [`MOVABLE_SHARERS`] other file blocks and
    /// `shown_only_here(block)` says that no view shows it anywhere but at this file block, the
    /// *other* owners get the copy (one record re-points them all; their bytes do not change) and
    /// `ino` keeps the block, which becomes private. Otherwise `ino` gets the copy. Returns
    /// what it did (see [`MadePrivate`] for the layout changes each outcome records); the errors
    /// are [`FileSystem::make_block_private`]'s. With group
    /// commit every operation is durable when it returns: the block is private on media too, so
    /// a view may map it writable ([`FileSystem::is_private_durably`]).
    pub fn make_block_private_for_store(
        &mut self,
        ino: u64,
        file_block: u64,
        shown_only_here: impl FnOnce(u64) -> bool,
    ) -> Result<MadePrivate> {
        self.writable()?;
        // The store resumes into whichever block ends up private: private on media too, so the
        // operations not yet durable (group commit) become durable first.
        self.sync()?;
        let inode = self.file(ino)?;
        if file_block >= blocks_of(inode.attrs.size) {
            return Err(Error::Invalid(format!("file block {file_block} of inode {ino} is past EOF")));
        }
        let old = inode.extents.lookup(file_block);
        self.readable_block(ino, file_block, old)?;
        let sharing = old.map(|p| (p, self.sharing(p, ino, file_block)));
        let made = match sharing {
            Some((old, Sharing::Private)) => {
                // Private all along, yet read-only in a view: the view was mapped while operations
                // were not yet durable (`is_private_durably`). They are now: refresh the page.
                if self.track_layout {
                    self.layout_changes.push(LayoutChange::Remapped {
                        ino,
                        file_block,
                        len: 1,
                        phys: Some(old),
                    });
                }
                return Ok(MadePrivate::AlreadyPrivate);
            }
            Some((old, Sharing::Movable(others))) if shown_only_here(old) => {
                // `ino` keeps `old`, which the other owners leave for a copy. Their file blocks
                // show in no view (only this one shows `old`) and the copy is fresh: no view but
                // this file block's changes, and the caller sees to those (`KeptBlock`).
                let tracking = std::mem::replace(&mut self.track_layout, false);
                let given = self.give_copy_to_sharers(old, others.as_slice());
                self.track_layout = tracking;
                given?;
                MadePrivate::KeptBlock { block: old }
            }
            _ => {
                let inode = self.file(ino)?;
                let goal = self.goal_for(inode, file_block).or(old.map(|p| p + 1));
                let new = self.allocate_data_block(goal)?;
                if let Err(e) = self.copy_or_zero_flushed(old, new) {
                    self.give_back(&[(new, 1)]);
                    return Err(e);
                }
                let map = Mutation::Map { ino, file_block, len: 1, phys: Some(new) };
                self.commit_or_give_back(&[map], &[(new, 1)])?;
                MadePrivate::NewBlock
            }
        };
        // The store resumes into the block that is now private: private on media too before it
        // does (group commit), so no other owner's durable bytes change and the view maps the
        // block writable at once (`is_private_durably`).
        self.sync()?;
        Ok(made)
    }

    /// How pool block `block`, mapped at `file_block` of `ino`, is shared, from one look at the
    /// ownership map: not at all, with at most [`MOVABLE_SHARERS`] other file blocks (listed), or
    /// otherwise (more sharers, or a metadata owner).
    fn sharing(&self, block: u64, ino: u64, file_block: u64) -> Sharing {
        let Some((start, segment)) = self.state.owners().overlapping(block, 1).next() else {
            return Sharing::Unmovable;
        };
        if segment.owners.len() == 1 {
            return Sharing::Private;
        }
        if segment.owners.len() > MOVABLE_SHARERS + 1 {
            return Sharing::Unmovable;
        }
        let mut others = Sharers::default();
        let mut found_self = false;
        for owner in &segment.owners {
            match *owner {
                Owner::File { ino: i, file_block: f } => {
                    let i = i.get();
                    let f = f + (block - start);
                    if i == ino && f == file_block && !found_self {
                        found_self = true;
                    } else if !others.push((i, f)) {
                        return Sharing::Unmovable;
                    }
                }
                Owner::Meta(_) => return Sharing::Unmovable,
            }
        }
        if found_self && others.len > 0 {
            Sharing::Movable(others)
        } else {
            Sharing::Unmovable
        }
    }

    /// Copies shared pool block `old` into a new block and re-points `sharers` (file blocks that
    /// map `old`) at the copy, in one record: whoever else maps `old` keeps it, now privately.
    fn give_copy_to_sharers(&mut self, old: u64, sharers: &[(u64, u64)]) -> Result<()> {
        let (first_ino, first_block) = sharers[0];
        let goal = self.file(first_ino).ok().and_then(|inode| self.goal_for(inode, first_block));
        let new = self.allocate_data_block(goal.or(Some(old + 1)))?;
        if let Err(e) = self.copy_or_zero_flushed(Some(old), new) {
            self.give_back(&[(new, 1)]);
            return Err(e);
        }
        let map =
            |&(ino, file_block): &(u64, u64)| Mutation::Map { ino, file_block, len: 1, phys: Some(new) };
        if let [only] = sharers {
            // The usual case (a clone and its source), without a list on the heap.
            return self.commit_or_give_back(&[map(only)], &[(new, 1)]);
        }
        let tx: Vec<Mutation> = sharers.iter().map(map).collect();
        self.commit_or_give_back(&tx, &[(new, 1)])
    }

    /// Before `ino` grows to `new_size`: makes the bytes past EOF in its partial last block zero,
    /// so that the grown file reads zeros there. They are not file data, but a DAX view maps the
    /// last page whole and a store through it may have left bytes there (as in the kernel, which
    /// zeroes them on extension too). A private block is zeroed in place (the bytes are past EOF,
    /// so no reader sees the change); a shared one is copied first, in its own transaction that
    /// changes no file's contents. Nothing happens when the tail is already zero.
    fn clear_tail_before_growth(&mut self, ino: u64, new_size: u64) -> Result<()> {
        let inode = self.file(ino)?;
        let size = inode.attrs.size;
        let partial = size % BLOCK_SIZE;
        if partial == 0 || new_size <= size {
            return Ok(());
        }
        let file_block = size / BLOCK_SIZE;
        let Some(old) = inode.extents.lookup(file_block) else { return Ok(()) };
        if self.state.first_bad_block(old, 1).is_some() {
            return Ok(());
        }
        let tail =
            crate::pool::read_vec(self.backend.as_ref(), old * BLOCK_SIZE + partial, BLOCK_SIZE - partial)?;
        if tail.iter().all(|&b| b == 0) {
            return Ok(());
        }
        if self.is_private_durably(old) {
            self.backend.fill(old * BLOCK_SIZE + partial, BLOCK_SIZE - partial, 0)?;
            self.backend.flush(old * BLOCK_SIZE + partial, BLOCK_SIZE - partial);
            return Ok(());
        }
        let goal = self.goal_for(inode, file_block).or(Some(old + 1));
        let (runs, new) = self.copy_head_of_block(old, partial, goal)?;
        self.commit_or_give_back(&[Mutation::Map { ino, file_block, len: 1, phys: Some(new) }], &runs)
    }

    /// A new block holding the first `partial` bytes of block `old` and zeros after them (flushed),
    /// for a partial last block that must change without touching other owners' bytes. Returns the
    /// run taken and the new block; on failure the run is free again.
    fn copy_head_of_block(
        &mut self,
        old: u64,
        partial: u64,
        goal: Option<u64>,
    ) -> Result<(Vec<(u64, u64)>, u64)> {
        let runs = self.allocate_data(1, goal)?;
        let new = runs[0].0;
        let copied = self
            .backend
            .copy_within(old * BLOCK_SIZE, new * BLOCK_SIZE, partial)
            .and_then(|()| self.backend.fill(new * BLOCK_SIZE + partial, BLOCK_SIZE - partial, 0));
        if let Err(e) = copied {
            self.give_back(&runs);
            return Err(e);
        }
        self.backend.flush(new * BLOCK_SIZE, BLOCK_SIZE);
        Ok((runs, new))
    }

    /// Records pool blocks `[block, block + len)` as bad (poisoned media), durably and
    /// idempotently, and moves metadata off them: a bad checkpoint block is replaced by writing a
    /// new checkpoint elsewhere, a bad log block by moving the log (the state in memory is whole, so
    /// nothing is lost). The superblock copies live at fixed blocks 0 and 1: a bad copy is reported
    /// and the other one carries on. Returns what was done, for the failure report.
    pub fn record_bad_blocks(&mut self, block: u64, len: u64) -> Result<BadBlockOutcome> {
        self.writable()?;
        let end =
            block.checked_add(len).filter(|&e| len > 0 && e <= self.state.total_blocks).ok_or_else(|| {
                Error::Invalid(format!(
                    "pool blocks [{block}, +{len}) outside the pool of {} blocks",
                    self.state.total_blocks
                ))
            })?;
        let mut outcome = BadBlockOutcome::default();
        for copy in 0..2u64 {
            if (block..end).contains(&copy) {
                outcome.lost_superblock_copies.push(copy as u32);
                if let Err(e) = self.journal.mark_superblock_lost(&mut self.state, copy as u32) {
                    // No good copy is left: keep serving reads, refuse changes, say why.
                    self.read_only = true;
                    self.read_only_reason = Some(format!("read-only after memory failure: {e}"));
                    outcome.lost.push(e.to_string());
                    return Ok(outcome);
                }
            }
        }
        let start = block.max(2);
        let mut tx = Vec::new();
        let mut b = start;
        while b < end {
            if self.state.first_bad_block(b, 1).is_some() {
                outcome.already_bad += 1;
                b += 1;
                continue;
            }
            let run_start = b;
            while b < end && self.state.first_bad_block(b, 1).is_none() {
                b += 1;
            }
            outcome.newly_bad += b - run_start;
            tx.push(Mutation::Quarantine { block: run_start, len: b - run_start });
        }
        if tx.is_empty() {
            return Ok(outcome);
        }
        let mut hits_log = [false; 2];
        let mut hits_checkpoint = false;
        for (_, seg) in self.state.owners().overlapping(start, end - start) {
            for o in &seg.owners {
                match o {
                    Owner::Meta(MetaStructure::Log) => hits_log[0] = true,
                    Owner::Meta(MetaStructure::LogMirror) => hits_log[1] = true,
                    Owner::Meta(MetaStructure::Checkpoint | MetaStructure::CheckpointMirror) => {
                        hits_checkpoint = true
                    }
                    _ => {}
                }
            }
        }
        if self.track_layout {
            for m in &tx {
                if let Mutation::Quarantine { block, len } = m {
                    self.layout_changes.push(LayoutChange::Poisoned { phys: *block, len: *len });
                }
            }
        }
        if hits_log == [false; 2] && !hits_checkpoint {
            self.commit(&tx)?;
            return Ok(outcome);
        }
        // Metadata is hit: the quarantine becomes durable through a new checkpoint (and log).
        if hits_log != [false; 2] && self.journal.has_unsynced() {
            // Moving a log copy takes a contiguous free run, which blocks held by operations not
            // yet durable (group commit) may be needed for: they are durable first, through a
            // checkpoint (no record goes into a log with a bad block).
            self.journal.checkpoint(&mut self.state)?;
        }
        for m in &tx {
            self.state
                .apply(m, state::ApplyMode::Live)
                .map_err(|e| Error::Corrupt(format!("recording bad blocks: {e}")))?;
        }
        for (copy, structure) in [(0, MetaStructure::Log), (1, MetaStructure::LogMirror)] {
            if hits_log[copy] {
                self.journal.relocate_log(&mut self.state, copy)?;
                outcome.relocated.push(structure.to_string());
            }
        }
        if hits_log == [false; 2] {
            self.journal.checkpoint(&mut self.state)?;
        }
        if hits_checkpoint {
            outcome.relocated.push(MetaStructure::Checkpoint.to_string());
        }
        Ok(outcome)
    }

    /// Every bad block run as (first block, length).
    pub fn bad_blocks(&self) -> Vec<(u64, u64)> {
        self.state.quarantine.iter().map(|(&s, &l)| (s, l)).collect()
    }

    /// The pool block backing `file_block` of `ino`, if any.
    pub fn block_of(&self, ino: u64, file_block: u64) -> Option<u64> {
        self.state.inodes.get(&ino)?.extents.lookup(file_block)
    }

    /// Turns on recording of layout changes for the DAX layer (see [`LayoutChange`]).
    pub fn set_layout_tracking(&mut self, on: bool) {
        self.track_layout = on;
        if !on {
            self.layout_changes.clear();
        }
    }

    /// The layout changes recorded since the last [`FileSystem::clear_layout_changes`].
    pub fn layout_changes(&self) -> &[LayoutChange] {
        &self.layout_changes
    }

    /// Forgets the recorded layout changes (the views have followed them), keeping the list's
    /// memory for the next ones.
    pub fn clear_layout_changes(&mut self) {
        self.layout_changes.clear();
    }

    /// Fills all of new block `dst` from block `src`, or with zeros, and flushes it.
    fn copy_or_zero_flushed(&self, src: Option<u64>, dst: u64) -> Result<()> {
        match src {
            Some(src) => self.backend.copy_within_flushed(src * BLOCK_SIZE, dst * BLOCK_SIZE, BLOCK_SIZE),
            None => {
                self.backend.fill(dst * BLOCK_SIZE, BLOCK_SIZE, 0)?;
                self.backend.flush(dst * BLOCK_SIZE, BLOCK_SIZE);
                Ok(())
            }
        }
    }

    /// Fills `[at, at + len)` of new block `dst` from the same bytes of `src`, or with zeros.
    fn copy_or_zero(&self, src: Option<u64>, at: u64, dst: u64, len: u64) -> Result<()> {
        match src {
            Some(src) => self.backend.copy_within(src * BLOCK_SIZE + at, dst * BLOCK_SIZE + at, len),
            None => self.backend.fill(dst * BLOCK_SIZE + at, len, 0),
        }
    }

    /// Sets the file size. Shrinking frees the blocks past the new end and zeroes the rest of a
    /// partial last block (in a new block, so other owners keep their bytes).
    pub fn truncate(&mut self, ino: u64, size: u64) -> Result<()> {
        self.writable()?;
        self.file(ino)?;
        if size > MAX_FILE_SIZE {
            return Err(Error::TooBig(format!("truncate to {size}")));
        }
        self.clear_tail_before_growth(ino, size)?;
        let inode = self.file(ino)?;
        let mut attrs = inode.attrs.clone();
        let mut tx = Vec::new();
        let mut runs = Vec::new();
        if size < attrs.size {
            let keep_blocks = blocks_of(size);
            for (fb, e) in inode.extents.iter_from(keep_blocks) {
                let start = fb.max(keep_blocks);
                tx.push(Mutation::Map { ino, file_block: start, len: fb + e.len - start, phys: None });
            }
            let partial = size % BLOCK_SIZE;
            let last = size / BLOCK_SIZE;
            if partial != 0 {
                if let Some(old) = inode.extents.lookup(last) {
                    self.readable_block(ino, last, Some(old))?;
                    let (taken, new) = self.copy_head_of_block(old, partial, Some(old + 1))?;
                    runs = taken;
                    tx.push(Mutation::Map { ino, file_block: last, len: 1, phys: Some(new) });
                }
            }
        }
        modified(&mut attrs, size);
        tx.push(Mutation::PutInode(attrs));
        self.commit_or_give_back(&tx, &runs)
    }

    /// Rewrites every shared block of `[off, off + len)` into private blocks (FALLOC_FL_UNSHARE_RANGE;
    /// like it, the file grows to `off + len` if that is past EOF).
    pub fn unshare(&mut self, ino: u64, off: u64, len: u64) -> Result<()> {
        self.unshare_range(ino, off, len, false)
    }

    /// [`FileSystem::unshare`]; with `keep_size` (FALLOC_FL_KEEP_SIZE) the file never grows.
    pub fn unshare_range(&mut self, ino: u64, off: u64, len: u64, keep_size: bool) -> Result<()> {
        self.writable()?;
        self.file(ino)?;
        if len == 0 {
            return Err(Error::Invalid("unshare of 0 bytes".into()));
        }
        let end = off
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or_else(|| Error::TooBig(format!("unshare of {len} bytes at {off}")))?;
        if !keep_size {
            self.clear_tail_before_growth(ino, end)?;
        }
        let inode = self.file(ino)?;
        let fb0 = off / BLOCK_SIZE;
        // iomap_file_unshare: nothing to unshare at or past EOF.
        let fb_end = if off >= inode.attrs.size { fb0 } else { blocks_of(end.min(inode.attrs.size)) };
        let mut shared = Vec::new(); // (file block, old phys, len)
        if fb_end > fb0 {
            for piece in inode.extents.pieces(fb0, fb_end - fb0) {
                let Some(phys) = piece.phys else { continue };
                for (s, seg) in self.state.owners().overlapping(phys, piece.len) {
                    if seg.owners.len() < 2 {
                        continue;
                    }
                    let a = s.max(phys);
                    let b = (s + seg.len).min(phys + piece.len);
                    shared.push((piece.file_block + (a - phys), a, b - a));
                }
            }
        }
        let grows = !keep_size && end > inode.attrs.size;
        let mut attrs = inode.attrs.clone();
        if shared.is_empty() && !grows {
            return Ok(());
        }
        for &(fb, old, n) in &shared {
            if let Some(bad) = self.state.first_bad_block(old, n) {
                return Err(self.poisoned(ino, (fb + (bad - old)) * BLOCK_SIZE));
            }
        }
        let total: u64 = shared.iter().map(|s| s.2).sum();
        let goal = shared.first().map(|s| s.1);
        let runs = self.allocate_data(total, goal)?;
        let mut tx = Vec::new();
        let mut alloc = runs.iter().flat_map(|&(s, l)| s..s + l);
        for (fb, old, n) in shared {
            for i in 0..n {
                let new = alloc.next().expect("allocated exactly");
                if let Err(e) = self.backend.copy_within((old + i) * BLOCK_SIZE, new * BLOCK_SIZE, BLOCK_SIZE)
                {
                    self.give_back(&runs);
                    return Err(e);
                }
                self.backend.flush(new * BLOCK_SIZE, BLOCK_SIZE);
                push_map(&mut tx, ino, fb + i, new);
            }
        }
        if grows {
            modified(&mut attrs, end);
            tx.push(Mutation::PutInode(attrs));
        }
        self.commit_or_give_back(&tx, &runs)
    }

    // ----- reflink and dedupe -----

    /// FICLONERANGE: shares `len` bytes of `src` at `src_off` into `dst` at `dst_off` (len 0 = to
    /// source EOF). Returns the bytes linked. Errno rules: SPEC section 1, in the kernel's order.
    pub fn reflink(&mut self, src: Handle, src_off: u64, dst: Handle, dst_off: u64, len: u64) -> Result<u64> {
        self.remap_range(src, src_off, dst, dst_off, len, false)
    }

    /// The first try of copy_file_range(2): a reflink that may shorten the request
    /// (`REMAP_FILE_CAN_SHORTEN`): an unaligned length not reaching source EOF is rounded down to
    /// whole blocks, and a partial EOF block that would land inside the destination is left out.
    /// Returns the bytes linked (0 when nothing whole is left: the caller then copies bytes).
    pub fn reflink_shortening(
        &mut self,
        src: Handle,
        src_off: u64,
        dst: Handle,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        self.remap_range(src, src_off, dst, dst_off, len, true)
    }

    /// FICLONERANGE, or with `can_shorten` the remap of copy_file_range.
    fn remap_range(
        &mut self,
        src: Handle,
        src_off: u64,
        dst: Handle,
        dst_off: u64,
        len: u64,
        can_shorten: bool,
    ) -> Result<u64> {
        let (src_access, dst_access) = (src.access, dst.access);
        let (src, dst) = (src.ino, dst.ino);
        let (s, d) = (self.state.inode(src)?, self.state.inode(dst)?);
        // vfs_clone_file_range: remap_verify_area comes before the file type and mode checks.
        check_offsets(src_off, dst_off, len)?;
        if s.is_dir() || d.is_dir() {
            return Err(Error::IsDir("reflink of a directory".into()));
        }
        if !src_access.read || !dst_access.write || dst_access.append {
            return Err(Error::BadHandle(
                "reflink needs a readable source and a writable, non-append destination".into(),
            ));
        }
        self.writable()?;
        let isize = s.attrs.size;
        let mut len = len;
        if len == 0 {
            if src_off == isize {
                return Ok(0);
            }
            if src_off > isize {
                return Err(Error::Invalid(format!("source offset {src_off} past source EOF {isize}")));
            }
            len = isize - src_off;
        }
        let mut plan = remap_checks(src == dst, src_off, isize, dst_off, d.attrs.size, len, false)?;
        if plan.count != len && !can_shorten {
            return Err(Error::Invalid(format!(
                "range [{src_off}, +{len}) is unaligned or past source EOF {isize}"
            )));
        }
        if plan.bcount != plan.count && dst_off + plan.count < d.attrs.size {
            if !can_shorten {
                return Err(Error::Invalid(
                    "the source's partial EOF block cannot land inside the destination".into(),
                ));
            }
            // generic_remap_check_len: shortened to the whole blocks before the partial one.
            plan.count -= plan.count % BLOCK_SIZE;
            plan.bcount = plan.count;
        }
        if plan.count == 0 {
            return Ok(0);
        }
        let new_size = d.attrs.size.max(dst_off + plan.count);
        self.clear_tail_before_growth(dst, new_size)?;
        self.remap(
            src,
            src_off / BLOCK_SIZE,
            dst,
            dst_off / BLOCK_SIZE,
            plan.bcount / BLOCK_SIZE,
            Some(new_size),
        )?;
        Ok(plan.count)
    }

    /// Checks a dedupe request's source (request-level errors fail the whole call) and returns
    /// the length every destination works with (capped at 1 GiB like the kernel).
    pub fn dedupe_source_checks(&self, src: u64, src_off: u64, len: u64) -> Result<u64> {
        let s = self.state.inode(src)?;
        if s.is_dir() {
            return Err(Error::IsDir("dedupe source is a directory".into()));
        }
        check_offsets(src_off, 0, len)?;
        if src_off + len > s.attrs.size {
            return Err(Error::Invalid(format!(
                "dedupe source range [{src_off}, +{len}) past source EOF {}",
                s.attrs.size
            )));
        }
        Ok(len.min(MAX_DEDUPE_LEN))
    }

    /// FIDEDUPERANGE for one destination: shares the range if the contents are equal.
    pub fn dedupe_one(
        &mut self,
        src: u64,
        src_off: u64,
        dst: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<DedupeOutcome> {
        let (s, d) = (self.state.inode(src)?, self.state.inode(dst)?);
        // vfs_dedupe_file_range_one: remap_verify_area comes first.
        check_offsets(src_off, dst_off, len)?;
        if d.is_dir() {
            return Err(Error::IsDir("dedupe destination is a directory".into()));
        }
        if s.is_dir() {
            return Err(Error::IsDir("dedupe source is a directory".into()));
        }
        self.writable()?;
        if len == 0 {
            return Ok(DedupeOutcome::Same(0));
        }
        let plan = remap_checks(src == dst, src_off, s.attrs.size, dst_off, d.attrs.size, len, true)?;
        if !self.ranges_equal(src, src_off, dst, dst_off, plan.count)? {
            return Ok(DedupeOutcome::Differs);
        }
        if plan.bcount > 0 {
            self.remap(src, src_off / BLOCK_SIZE, dst, dst_off / BLOCK_SIZE, plan.bcount / BLOCK_SIZE, None)?;
        }
        Ok(DedupeOutcome::Same(len))
    }

    /// Compares two file ranges straight from pool memory: hole vs hole is equal, hole vs data
    /// differs, shared blocks are equal without reading them.
    fn ranges_equal(&self, a: u64, a_off: u64, b: u64, b_off: u64, len: u64) -> Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        let (ia, ib) = (self.state.inode(a)?, self.state.inode(b)?);
        let nblocks = blocks_of(len);
        let pa = ia.extents.pieces(a_off / BLOCK_SIZE, nblocks);
        let pb = ib.extents.pieces(b_off / BLOCK_SIZE, nblocks);
        let (mut i, mut j) = (0, 0);
        let (mut da, mut db) = (0u64, 0u64); // blocks consumed inside the current pieces
        let mut done = 0u64; // blocks compared
        while done < nblocks {
            let (x, y) = (pa[i], pb[j]);
            let step = (x.len - da).min(y.len - db);
            let bytes = (step * BLOCK_SIZE).min(len - done * BLOCK_SIZE);
            for (ino, piece, consumed) in [(a, x, da), (b, y, db)] {
                if let Some(p) = piece.phys {
                    if let Some(bad) = self.state.first_bad_block(p + consumed, step) {
                        return Err(self.poisoned(ino, (piece.file_block + (bad - p)) * BLOCK_SIZE));
                    }
                }
            }
            match (x.phys, y.phys) {
                (None, None) => {}
                (Some(_), None) | (None, Some(_)) => return Ok(false),
                (Some(p), Some(q)) if p + da == q + db => {}
                (Some(p), Some(q)) => {
                    let (left, right) = ((p + da) * BLOCK_SIZE, (q + db) * BLOCK_SIZE);
                    if !crate::pool::equal(self.backend.as_ref(), left, right, bytes)? {
                        return Ok(false);
                    }
                }
            }
            done += step;
            da += step;
            db += step;
            if da == x.len {
                i += 1;
                da = 0;
            }
            if db == y.len {
                j += 1;
                db = 0;
            }
        }
        Ok(true)
    }

    /// Points `n` blocks of `dst` at whatever backs the same blocks of `src` (holes stay holes),
    /// in one transaction.
    fn remap(&mut self, src: u64, sfb: u64, dst: u64, dfb: u64, n: u64, new_size: Option<u64>) -> Result<()> {
        if n == 0 && new_size.is_none() {
            return Ok(());
        }
        let mut tx = Vec::new();
        if n > 0 {
            // One fixed-size mutation, whatever the number of extents it copies.
            tx.push(Mutation::Clone { src, src_block: sfb, dst, dst_block: dfb, len: n });
            // Reflinking can fragment both files; keep room for the checkpoint to say so.
            let extents = self.state.inode(src)?.extents.mapped_in(sfb, n).count() as u64;
            self.ensure_metadata_room((extents * 48).div_ceil(BLOCK_SIZE))?;
        }
        if let Some(size) = new_size {
            let mut attrs = self.state.inode(dst)?.attrs.clone();
            modified(&mut attrs, size);
            tx.push(Mutation::PutInode(attrs));
        }
        self.commit(&tx)
    }

    // ----- reverse map -----

    /// Every owner of any byte of `[pool_offset, pool_offset + len)`, from the reverse map, each
    /// file owner with its path. Adjacent pieces of one file owner are joined.
    pub fn owners(&self, pool_offset: u64, len: u64) -> Vec<BlockOwner> {
        let mut out = self.owners_unnamed(pool_offset, len);
        self.fill_paths(&mut out, |o| match &mut o.owner {
            OwnerKind::File { ino, path, .. } => Some((*ino, path)),
            OwnerKind::Metadata { .. } => None,
        });
        out
    }

    /// [`FileSystem::owners`] without the paths (every file owner's `path` is `None`): only the
    /// reverse map is read, no inode or name. [`FileSystem::fill_paths`] names them later; a memory
    /// failure names its owners after the notices are out.
    pub fn owners_unnamed(&self, pool_offset: u64, len: u64) -> Vec<BlockOwner> {
        let first = pool_offset / BLOCK_SIZE;
        let end = blocks_of(pool_offset.saturating_add(len.max(1))).min(self.state.total_blocks);
        let mut out: Vec<BlockOwner> = Vec::new();
        // Owner continuing at the next block -> index in `out`. Inode numbers and file blocks are
        // the file system's own, so the integer hasher is safe here.
        let mut open: IntMap<Owner, usize> = IntMap::default();
        for (s, seg) in self.state.owners().overlapping(first, end.saturating_sub(first)) {
            let a = s.max(first);
            let b = (s + seg.len).min(end);
            out.reserve(seg.owners.len());
            for &o in &seg.owners {
                let key_here = match o {
                    Owner::File { ino, file_block } => Owner::File { ino, file_block: file_block + (a - s) },
                    meta => meta,
                };
                let key_next = match key_here {
                    Owner::File { ino, file_block } => {
                        Some(Owner::File { ino, file_block: file_block + (b - a) })
                    }
                    Owner::Meta(_) => None,
                };
                if let Some(&idx) = open.get(&key_here) {
                    let prev = &mut out[idx];
                    // A run continues only with the same sharing: a private page next to a shared
                    // one is its own owner entry, so neither is misreported.
                    let same_sharing = match prev.owner {
                        OwnerKind::File { refcount, .. } => refcount == seg.owners.len(),
                        OwnerKind::Metadata { .. } => true,
                    };
                    if prev.pool_offset + prev.length == a * BLOCK_SIZE && same_sharing {
                        prev.length += (b - a) * BLOCK_SIZE;
                        open.remove(&key_here);
                        open.insert(key_next.unwrap_or(key_here), idx);
                        continue;
                    }
                }
                let kind = match key_here {
                    Owner::File { ino, file_block } => OwnerKind::File {
                        ino: ino.get(),
                        path: None,
                        file_offset: file_block * BLOCK_SIZE,
                        refcount: seg.owners.len(),
                    },
                    Owner::Meta(m) => OwnerKind::Metadata { structure: m.to_string() },
                };
                out.push(BlockOwner {
                    pool_offset: a * BLOCK_SIZE,
                    length: (b - a) * BLOCK_SIZE,
                    owner: kind,
                });
                // Only a later segment can continue this run (none can when this one reaches the end).
                if b < end {
                    open.insert(key_next.unwrap_or(key_here), out.len() - 1);
                }
            }
        }
        out
    }

    /// Sets the path of every item that `slot` says is a file (its inode and where its path goes):
    /// the inode's first name joined to its directory's path, or `None` for an unlinked inode.
    pub fn fill_paths<T>(
        &self,
        items: &mut [T],
        mut slot: impl FnMut(&mut T) -> Option<(u64, &mut Option<String>)>,
    ) {
        // Many owners of one page usually sit in few directories: each directory's path is built
        // once per call, each item's path is that plus its name.
        let mut dir_paths: IntMap<u64, Option<String>> = IntMap::default();
        let mut inodes: Vec<Option<&Inode>> = Vec::with_capacity(items.len().min(NAMING_BATCH));
        let mut names: Vec<Option<(u64, &[u8])>> = Vec::with_capacity(items.len().min(NAMING_BATCH));
        for batch in items.chunks_mut(NAMING_BATCH) {
            // The inodes, then their first names, each in a loop of its own before any path is
            // built: every level (inode table entry, name list) is a cache miss that depends on
            // the one before but not on the other items, so the CPU overlaps the misses of many
            // items at each level instead of waiting for one item's chain at a time.
            inodes.clear();
            inodes.extend(
                batch
                    .iter_mut()
                    .map(|item| slot(item).and_then(|(ino, _)| self.state.inodes.get(&ino).map(|i| &**i))),
            );
            names.clear();
            names.extend(
                inodes
                    .iter()
                    .map(|inode| inode.and_then(|i| i.names.first()).map(|(dir, name)| (*dir, &name[..]))),
            );
            for (item, name) in batch.iter_mut().zip(&names) {
                let Some((_, path)) = slot(item) else { continue };
                *path = name.and_then(|(dir, name)| {
                    let dir_path =
                        dir_paths.entry(dir).or_insert_with(|| self.state.path_of(dir)).as_deref()?;
                    Some(join_path(dir_path, name))
                });
            }
        }
    }

    /// The share state of one pool block.
    pub fn share_state(&self, block: u64) -> ShareState {
        if self.state.quarantine.range(..=block).next_back().is_some_and(|(&s, &l)| s + l > block) {
            return ShareState::Quarantined;
        }
        match self.state.owners().overlapping(block, 1).next() {
            None => ShareState::Free,
            Some((s, seg)) => match seg.owners.as_slice() {
                [Owner::Meta(m)] => ShareState::Metadata { structure: m.to_string() },
                [Owner::File { ino, file_block }] => {
                    ShareState::Single { ino: ino.get(), file_block: file_block + (block - s) }
                }
                many => ShareState::Shared { count: many.len() },
            },
        }
    }

    /// The file's extents with FIEMAP's shared and last flags, split where sharing changes.
    pub fn fiemap(&self, ino: u64) -> Result<Vec<FiemapExtent>> {
        let inode = self.file(ino)?;
        let mut out: Vec<FiemapExtent> = Vec::new();
        for (fb, e) in inode.extents.iter() {
            for (s, seg) in self.state.owners().overlapping(e.phys, e.len) {
                let a = s.max(e.phys);
                let b = (s + seg.len).min(e.phys + e.len);
                let shared = seg.owners.len() > 1;
                let logical = (fb + (a - e.phys)) * BLOCK_SIZE;
                match out.last_mut() {
                    Some(last)
                        if last.shared == shared
                            && last.logical + last.length == logical
                            && last.physical + last.length == a * BLOCK_SIZE =>
                    {
                        last.length += (b - a) * BLOCK_SIZE
                    }
                    _ => out.push(FiemapExtent {
                        logical,
                        physical: a * BLOCK_SIZE,
                        length: (b - a) * BLOCK_SIZE,
                        shared,
                        last: false,
                    }),
                }
            }
        }
        if let Some(last) = out.last_mut() {
            last.last = true;
        }
        Ok(out)
    }

    /// Blocks in the pool.
    pub fn total_blocks(&self) -> u64 {
        self.state.total_blocks
    }

    /// Counts of the pool (blocks, inodes, extents, ownership segments; building the ownership
    /// map if nothing has yet).
    pub fn stats(&self) -> FsStats {
        FsStats {
            total_blocks: self.state.total_blocks,
            free_blocks: self.free_blocks(),
            reserved_blocks: self.metadata_reserve(),
            usable_blocks: self.usable_blocks(),
            quarantined_blocks: self.state.quarantine.values().sum(),
            inodes: self.state.inodes.len() as u64,
            extents: self.state.extent_count,
            segments: self.state.owners().segment_count() as u64,
            log_free_bytes: self.journal.log_free_bytes(),
        }
    }

    /// Where the blocks are (data, shared, metadata, free, reserve, quarantined) and the free
    /// runs by size: one pass over the ownership segments and the free runs.
    pub fn space_usage(&self) -> SpaceUsage {
        let (mut data_blocks, mut shared_blocks, mut metadata_blocks) = (0, 0, 0);
        for (_, segment) in self.state.owners().iter() {
            if segment.owners.iter().all(|o| matches!(o, Owner::Meta(_))) {
                metadata_blocks += segment.len;
            } else {
                data_blocks += segment.len;
                if segment.owners.len() > 1 {
                    shared_blocks += segment.len;
                }
            }
        }
        let mut free_runs_by_size: Vec<(u64, u64, u64)> = Vec::new();
        for (_, len) in self.state.free.runs() {
            let bucket_start = 1u64 << (63 - len.leading_zeros());
            match free_runs_by_size.iter_mut().find(|b| b.0 == bucket_start) {
                Some(bucket) => {
                    bucket.1 += 1;
                    bucket.2 += len;
                }
                None => free_runs_by_size.push((bucket_start, 1, len)),
            }
        }
        free_runs_by_size.sort_unstable();
        let free_blocks = self.free_blocks();
        let reserved_blocks = self.metadata_reserve();
        SpaceUsage {
            total_blocks: self.state.total_blocks,
            data_blocks,
            shared_blocks,
            metadata_blocks,
            free_blocks,
            reserved_blocks,
            available_blocks: free_blocks.saturating_sub(reserved_blocks + ALLOCATION_SLACK),
            quarantined_blocks: self.state.quarantine.values().sum(),
            free_runs_by_size,
        }
    }

    /// Metadata structures and where they live, for reports.
    pub fn metadata_layout(&self) -> Vec<(MetaStructure, u64, u64)> {
        let sb = self.journal.superblock();
        let mut v = vec![
            (MetaStructure::Superblock(0), 0, 1),
            (MetaStructure::Superblock(1), 1, 1),
            (MetaStructure::Log, sb.log_start, sb.log_blocks),
        ];
        if sb.log_mirror_start != 0 {
            v.push((MetaStructure::LogMirror, sb.log_mirror_start, sb.log_blocks));
        }
        for [chain0, chain1] in
            std::iter::once(self.journal.checkpoint_blocks()).chain(self.journal.delta_blocks())
        {
            v.extend(chain0.iter().map(|&b| (MetaStructure::Checkpoint, b, 1)));
            v.extend(chain1.iter().map(|&b| (MetaStructure::CheckpointMirror, b, 1)));
        }
        v
    }

    /// Tests: every checkpoint that may be a delta is one, whatever its size
    /// ([`journal::Journal::prefer_deltas`]); for this mount only.
    pub fn prefer_delta_checkpoints(&mut self, yes: bool) {
        self.journal.prefer_deltas(yes);
    }

    /// Writes a checkpoint now (tests and tools; commits do it by themselves when the log fills).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.writable()?;
        self.journal.checkpoint(&mut self.state)
    }

    /// Whether unmounting now writes a checkpoint: when replaying the log would cost the next
    /// mount at least [`UNMOUNT_CHECKPOINT_MIN_LOG_BYTES`] and more than reading a checkpoint of
    /// the state would. A record's cost is its bytes plus, for every extent it adds or removes,
    /// the bytes that extent takes in a checkpoint: a small record that clones or frees
    /// thousands of extents costs a replay what they cost.
    pub fn checkpoint_due_at_unmount(&self) -> bool {
        let replay_cost = self
            .journal
            .log_used_bytes()
            .saturating_add(self.journal.log_extent_changes().saturating_mul(state::EXTENT_IMAGE_BYTES));
        self.mounted
            && !std::thread::panicking()
            && self.writable().is_ok()
            && replay_cost >= UNMOUNT_CHECKPOINT_MIN_LOG_BYTES
            && replay_cost >= self.state.image_size_bound()
    }
}

/// The least replay cost (log bytes, see [`FileSystem::checkpoint_due_at_unmount`]) a process
/// leaves behind before its unmount writes a checkpoint: below this, replaying the log costs the
/// next mount less than the checkpoint would cost this one.
pub const UNMOUNT_CHECKPOINT_MIN_LOG_BYTES: u64 = 64 * 1024;

/// Whether unmount gives the in-memory state's memory back (see [`leave_memory_to_process_exit`]).
static FREE_STATE_AT_UNMOUNT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Tells every later unmount in this process that the process exits right after it (a
/// command-line command): the in-memory state (inodes, extent maps, the ownership map) is then
/// left for the kernel to reclaim with the process instead of being freed node by node, which on
/// a pool of millions of extents is most of an unmount. Nothing durable changes.
pub fn leave_memory_to_process_exit() {
    FREE_STATE_AT_UNMOUNT.store(false, std::sync::atomic::Ordering::Relaxed);
}

impl Drop for FileSystem {
    /// Unmount: writes a checkpoint when one is due ([`FileSystem::checkpoint_due_at_unmount`]:
    /// never after a mount that failed, nor while a panic unwinds), which bounds the next mount's
    /// replay. A checkpoint that fails changes nothing durable (the
    /// log stands, and the next mount replays it); it is only said.
    fn drop(&mut self) {
        // Unmount is a sync point: grouped operations become durable (not while a panic unwinds:
        // the state may be half changed, and a crash is what that is).
        if self.mounted && !std::thread::panicking() && self.journal.has_unsynced() {
            if let Err(e) = self.sync() {
                eprintln!(
                    "ferrodax: operations since the last sync could not be made durable at unmount: {e}"
                );
            }
        }
        if self.checkpoint_due_at_unmount() {
            if let Err(e) = self.journal.checkpoint(&mut self.state) {
                eprintln!("ferrodax: no checkpoint at unmount ({e}); the next mount replays the log");
            }
        }
        if !FREE_STATE_AT_UNMOUNT.load(std::sync::atomic::Ordering::Relaxed) {
            std::mem::forget(std::mem::take(&mut self.state));
        }
    }
}

/// Records that the pool blocks `inode` maps in `[file_block, file_block + len)` lose an owner.
fn push_unmapped(changes: &mut Vec<LayoutChange>, inode: Option<&Inode>, file_block: u64, len: u64) {
    if let Some(inode) = inode {
        changes.extend(
            inode
                .extents
                .mapped_in(file_block, len)
                .map(|(_, phys, len)| LayoutChange::Unmapped { phys, len }),
        );
    }
}

/// Sets a file's new size and stamps its modification and change times.
///
/// A change of a file's data by anyone but root drops its set-user-ID bit, and its set-group-ID
/// bit when group execute is set (Linux's `file_remove_privs`).
fn modified(attrs: &mut InodeAttrs, size: u64) {
    let now = now_ns();
    attrs.size = size;
    attrs.mtime_ns = now;
    attrs.ctime_ns = now;
    let group_exec_sgid = access::S_ISGID | 0o010;
    let privileged = attrs.mode & access::S_ISUID != 0 || attrs.mode & group_exec_sgid == group_exec_sgid;
    if privileged && !access::Credentials::current().is_root() {
        attrs.mode &= !access::S_ISUID;
        if attrs.mode & 0o010 != 0 {
            attrs.mode &= !access::S_ISGID;
        }
    }
}

/// Appends a one-block map, extending the previous one when it continues it.
fn push_map(tx: &mut Vec<Mutation>, ino: u64, file_block: u64, phys: u64) {
    if let Some(Mutation::Map { ino: i, file_block: f, len, phys: Some(p) }) = tx.last_mut() {
        if *i == ino && *f + *len == file_block && *p + *len == phys {
            *len += 1;
            return;
        }
    }
    tx.push(Mutation::Map { ino, file_block, len: 1, phys: Some(phys) });
}

/// remap_verify_area: offsets and lengths are signed 64-bit in the kernel; no wrapping.
fn check_offsets(src_off: u64, dst_off: u64, len: u64) -> Result<()> {
    let max = i64::MAX as u64;
    if src_off > max
        || dst_off > max
        || len > max
        || src_off.checked_add(len).is_none_or(|e| e > max)
        || dst_off.checked_add(len).is_none_or(|e| e > max)
    {
        return Err(Error::Invalid("offset or length out of range".into()));
    }
    Ok(())
}

/// The outcome of the kernel's generic_remap_checks.
struct RemapPlan {
    /// Bytes the caller sees remapped.
    count: u64,
    /// Bytes remapped, rounded up to whole blocks when the range ends at EOF.
    bcount: u64,
}

/// generic_remap_checks from fs/remap_range.c, in our words.
fn remap_checks(
    same_file: bool,
    pos_in: u64,
    size_in: u64,
    pos_out: u64,
    size_out: u64,
    len: u64,
    dedupe: bool,
) -> Result<RemapPlan> {
    if pos_in % BLOCK_SIZE != 0 || pos_out % BLOCK_SIZE != 0 {
        return Err(Error::Invalid(format!(
            "offsets {pos_in} and {pos_out} must be multiples of {BLOCK_SIZE}"
        )));
    }
    if dedupe
        && (pos_in >= size_in || pos_in + len > size_in || pos_out >= size_out || pos_out + len > size_out)
    {
        return Err(Error::Invalid("dedupe ranges must lie inside both files".into()));
    }
    if pos_in >= size_in {
        return Err(Error::Invalid(format!("source offset {pos_in} at or past source EOF {size_in}")));
    }
    let mut count = len.min(size_in - pos_in);
    // generic_write_check_limits: EFBIG at or past the limit, else the count is shortened (and
    // reflink, which cannot shorten, then fails with EINVAL).
    if pos_out >= MAX_FILE_SIZE {
        return Err(Error::TooBig(format!("destination offset {pos_out}")));
    }
    count = count.min(MAX_FILE_SIZE - pos_out);
    let bcount = if pos_in + count == size_in && (!dedupe || pos_out + count == size_out) {
        size_in.next_multiple_of(BLOCK_SIZE) - pos_in
    } else {
        count -= count % BLOCK_SIZE;
        count
    };
    if same_file && pos_out + bcount > pos_in && pos_out < pos_in + bcount {
        return Err(Error::Invalid("source and destination ranges overlap in the same file".into()));
    }
    Ok(RemapPlan { count, bcount })
}
