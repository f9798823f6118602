//! The lazy read-only mount: inodes are read from the checkpoint when an operation first needs
//! them, not all at mount (format version 6 and later; `format/indexed.rs` has the run map and the
//! inode index that make one inode findable).
//!
//! A lazy mount reads the superblocks, checks that the log holds nothing to replay, decodes the
//! deltas written since the base checkpoint (each is small: at most a quarter of the base), and
//! reads the root directory. [`FileSystem::read_path`] then reads the inodes that resolving a path
//! touches, through the base's inode index (a binary search over a few index blocks), or from a
//! delta when one holds a newer version. Every block it reads is checked by its own header (magic,
//! generation, index in its chain, checksum) and taken from chain 1 when chain 0's copy is damaged;
//! every inode it reads is checked by itself ([`State::insert_read`]). A pool that a lazy mount
//! cannot serve so (an older format, records in the log, anything mount notes before it reads the
//! base: a superblock copy stale or damaged, a delta damaged; a checkpoint whose run map lists no
//! runs) is mounted the usual way, whole. A lazy mount checks less than a whole one (not chain 1
//! where chain 0 is good, not the payload's checksum, not the rules between inodes): `ferrodax
//! check` reads everything.
//!
//! The state of a lazy mount is partial ([`State::is_partial`]): it holds the inodes read so far
//! and nothing that describes the whole pool. [`FileSystem::read_whole`] replaces it by the whole
//! state, read as a read-only mount reads it; the library does that before every operation except
//! the few that need only the inodes of one path (opening a file; stat, readlink, access and
//! extended attributes of a path; reading, stat and seek on an open file) or of one directory's
//! entries (listing it).
//!
//! Owns reading one inode of a checkpoint and the walk that reads a path's inodes. Must never
//! write the pool, and never answer for an inode it has not read (a partial state says EIO).

use super::journal::{read_block, repair_hint, DeltaRead, Journal};
use super::namespace::MAX_SYMLINK_FOLLOWS;
use super::state::{Name, State};
use super::FileSystem;
use crate::error::{Error, Result};
use crate::format::checkpoint::{self, InodeImage, PAYLOAD_PER_BLOCK};
use crate::format::codec::Reader;
use crate::format::indexed::{self, EncodedEntries, RunMap, INDEX_ENTRY_BYTES, RUN_MAP_BYTES};
use crate::format::superblock::{Superblock, FIRST_VERSION_WITH_INDEX};
use crate::format::ROOT_INO;
use crate::intmap::IntMap;
use crate::pool::SharedBackend;
use std::collections::VecDeque;

/// One inode at a time from a checkpoint: the base through its run map and inode index, the
/// deltas written since from memory.
pub struct LazyCheckpoint {
    backend: SharedBackend,
    /// The generation the base's blocks carry.
    generation: u64,
    payload_len: u64,
    map: RunMap,
    /// Inodes the base's index lists.
    inode_count: u64,
    /// The base's payload bytes read so far, block by block (checked), by index in the chain.
    chunks: IntMap<u64, Vec<u8>>,
    /// The newest version of every inode the deltas hold (`None`: a delta removed it).
    newer: IntMap<u64, Option<InodeImage>>,
    /// The entries of the base's directories read so far, left encoded: a walk looks up one name
    /// of each (the partial state's directories hold only the entries looked up).
    entries: IntMap<u64, EncodedEntries>,
    /// Blocks found damaged in chain 0 and read from chain 1 instead, as mount notes say them.
    pub damaged: Vec<String>,
}

impl LazyCheckpoint {
    /// The base checkpoint `sb` names, when its run map lists its blocks (`None`: read it whole),
    /// with the newest inodes of the deltas over it.
    fn open(
        backend: SharedBackend,
        sb: &Superblock,
        newer: IntMap<u64, Option<InodeImage>>,
    ) -> Result<Option<Self>> {
        let mut lazy = LazyCheckpoint {
            backend,
            generation: sb.checkpoint_generation,
            payload_len: sb.checkpoint_len,
            map: RunMap::default(),
            inode_count: 0,
            chunks: IntMap::default(),
            newer,
            entries: IntMap::default(),
            damaged: Vec::new(),
        };
        // The run map is the head block's payload: found through the superblock's heads.
        let heads = [sb.checkpoint_head, sb.checkpoint_mirror_head];
        let head = lazy.read_chunk(0, |chain, _| Some(heads[chain]))?;
        lazy.map = indexed::decode_run_map(&head, sb.checkpoint_len, sb.total_blocks)?;
        if !lazy.map.has_runs() || lazy.map.runs[0][0].0 != heads[0] || lazy.map.runs[1][0].0 != heads[1] {
            return Ok(None);
        }
        lazy.inode_count = lazy.map.inode_count(sb.checkpoint_len);
        Ok(Some(lazy))
    }

    /// The payload bytes of chain block `index`, checked by its header, from chain 0 or, when that
    /// copy is damaged or unreadable, chain 1 (`block(chain, index)` says where each is; a damaged
    /// copy goes into `damaged`).
    fn read_chunk(&mut self, index: u64, block: impl Fn(usize, u64) -> Option<u64>) -> Result<Vec<u8>> {
        let expected = (self.payload_len - (index * PAYLOAD_PER_BLOCK as u64).min(self.payload_len))
            .min(PAYLOAD_PER_BLOCK as u64) as usize;
        let mut reasons = Vec::new();
        for chain in 0..2 {
            let Some(at) = block(chain, index) else {
                return Err(Error::Corrupt(format!("checkpoint: the run map has no block #{index}")));
            };
            let what = format!("checkpoint chain {chain} block {at} (#{index})");
            let checked =
                read_block(&self.backend, at).map_err(|e| format!("unreadable ({e})")).and_then(|bytes| {
                    let chunk = checkpoint::check_block(&bytes, self.generation, index as usize)?;
                    if chunk.len() != expected {
                        return Err(format!(
                            "{} payload bytes where the payload needs {expected}",
                            chunk.len()
                        ));
                    }
                    Ok(chunk.to_vec())
                });
            match checked {
                Ok(chunk) => {
                    self.damaged.extend(reasons.drain(..).map(|r| format!("{r}; the other chain holds it")));
                    return Ok(chunk);
                }
                Err(why) => reasons.push(format!("{what}: {why}")),
            }
        }
        Err(Error::Corrupt(format!(
            "checkpoint: both copies of block #{index} are damaged: {}; {}",
            reasons.join("; "),
            repair_hint()
        )))
    }

    /// Payload bytes `[from, to)` of the base.
    fn bytes(&mut self, from: u64, to: u64) -> Result<Vec<u8>> {
        debug_assert!(from <= to && to <= self.payload_len);
        let per = PAYLOAD_PER_BLOCK as u64;
        // Grown as checked blocks arrive: offsets from the pool are not trusted with an allocation.
        let mut out = Vec::new();
        let mut at = from;
        while at < to {
            let index = at / per;
            if !self.chunks.contains_key(&index) {
                let blocks = [0, 1].map(|chain| self.map.block(chain, index));
                let chunk = self.read_chunk(index, |chain, _| blocks[chain])?;
                self.chunks.insert(index, chunk);
            }
            let chunk = &self.chunks[&index];
            let start = (at - index * per) as usize;
            let end = ((to - index * per) as usize).min(chunk.len());
            out.extend_from_slice(&chunk[start..end]);
            at = index * per + end as u64;
        }
        Ok(out)
    }

    /// Entry `k` of the base's inode index: (inode number, payload offset).
    fn index_entry(&mut self, k: u64) -> Result<(u64, u64)> {
        let at = self.map.index_at + k * INDEX_ENTRY_BYTES as u64;
        let bytes = self.bytes(at, at + INDEX_ENTRY_BYTES as u64)?;
        Ok(indexed::index_entry(&bytes, 0))
    }

    /// Inode `ino` as the checkpoint and its deltas hold it, `None` when they do not. The base's
    /// copy is found by a binary search of its index and decoded from the bytes between its
    /// entry's offset and the next one's; an index that lists another inode there, or offsets
    /// out of order or outside the body, is damage. A base directory's entries are left encoded
    /// ([`LazyCheckpoint::dir_entry`] finds them): its image holds none.
    pub fn inode(&mut self, ino: u64) -> Result<Option<InodeImage>> {
        if let Some(newer) = self.newer.get(&ino) {
            return Ok(newer.clone());
        }
        let (mut low, mut high) = (0, self.inode_count);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.index_entry(mid)?.0 < ino {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        if low == self.inode_count {
            return Ok(None);
        }
        let (found, at) = self.index_entry(low)?;
        if found != ino {
            return Ok(None);
        }
        let end =
            if low + 1 < self.inode_count { self.index_entry(low + 1)?.1 } else { self.map.quarantine_at };
        let body = (RUN_MAP_BYTES + 16) as u64;
        if at < body || end <= at || end > self.map.quarantine_at {
            return Err(Error::Corrupt(format!(
                "checkpoint inode index: inode {ino} at bytes {at}..{end} of a body that ends at {}; {}",
                self.map.quarantine_at,
                repair_hint()
            )));
        }
        let bytes = self.bytes(at, end)?;
        let (image, entries) = indexed::decode_inode_keeping_entries(&bytes, ino)
            .map_err(|e| Error::Corrupt(format!("{e}; {}", repair_hint())))?;
        if !entries.is_empty() {
            self.entries.insert(ino, entries);
        }
        Ok(Some(image))
    }

    /// The inode that entry `name` of directory `dir` names, when `dir` is a base directory read
    /// with its entries left encoded: `Some(found)`; `None` when its image held them (a delta's).
    fn dir_entry(&self, dir: u64, name: &[u8]) -> Option<Result<Option<u64>>> {
        let entries = self.entries.get(&dir)?;
        Some(entries.find(name).map_err(|e| Error::Corrupt(format!("{e}; {}", repair_hint()))))
    }

    /// The next inode number and the bad blocks, as the newest delta says them or else the base.
    fn next_ino_and_quarantine(
        &mut self,
        newest: Option<(u64, Vec<(u64, u64)>)>,
    ) -> Result<(u64, Vec<(u64, u64)>)> {
        if let Some(newest) = newest {
            return Ok(newest);
        }
        let next_ino = self.bytes(RUN_MAP_BYTES as u64, RUN_MAP_BYTES as u64 + 8)?;
        let quarantine = self.bytes(self.map.quarantine_at, self.map.index_at)?;
        let runs = checkpoint::quarantine_to_the_end(&mut Reader::new(&quarantine, "checkpoint"))?;
        Ok((Reader::new(&next_ino, "checkpoint").u64()?, runs))
    }
}

impl Journal {
    /// A lazy read-only mount of the pool, or `None` when the pool needs the usual mount (see
    /// the module documentation): the journal, the partial state holding the root directory,
    /// and the checkpoint to read the other inodes from.
    pub fn mount_lazy(backend: SharedBackend) -> Option<(Journal, State, LazyCheckpoint)> {
        let (sb, deltas) = Journal::lazy_superblock(&backend)?;
        let (deltas, chains): (Vec<_>, Vec<_>) = deltas.into_iter().unzip();
        let newer = checkpoint::NewerVersions::of(deltas).ok()?;
        let mut lazy = LazyCheckpoint::open(backend.clone(), &sb, newer.inodes).ok()??;
        let (next_ino, quarantine) = lazy.next_ino_and_quarantine(newer.last).ok()?;
        let mut state = State::partial(sb.total_blocks, next_ino, &quarantine).ok()?;
        let root = lazy.inode(ROOT_INO).ok()??;
        state.insert_read(root, None).ok()?;
        if !state.inodes.get(&ROOT_INO).is_some_and(|r| r.is_dir()) {
            return None;
        }
        let base_chains = [0, 1]
            .map(|chain| lazy.map.runs[chain].iter().flat_map(|&(start, len)| start..start + len).collect());
        let journal = Journal::at_superblock(backend, sb, base_chains, chains);
        Some((journal, state, lazy))
    }
}

impl FileSystem {
    /// Mounts `backend` read-only, lazily when it can (see the module documentation), else as
    /// [`FileSystem::mount`] does.
    pub fn mount_lazy(backend: SharedBackend) -> Result<Self> {
        let Some((journal, state, lazy)) = Journal::mount_lazy(backend.clone()) else {
            return FileSystem::mount(backend, true);
        };
        let mut fs = FileSystem::assemble(backend, journal, state, Default::default(), true);
        let mut lazy = lazy;
        fs.notes.repaired.append(&mut lazy.damaged);
        fs.lazy = Some(Box::new(lazy));
        fs.mounted = true;
        Ok(fs)
    }

    /// Whether this is a lazy mount that has not read its whole state yet.
    pub fn is_partial(&self) -> bool {
        self.lazy.is_some()
    }

    /// On a lazy mount, reads every inode that resolving `path` touches (following every
    /// symlink on the way and a final one), so that [`FileSystem::resolve`] and
    /// [`FileSystem::open_path`] find them all. Stops quietly where the path breaks (a missing
    /// name, a file where a directory must be, too many symlinks): the resolution itself then
    /// says why. EUCLEAN for damage met on the way. Nothing to do on any other mount.
    pub fn read_path(&mut self, path: &str) -> Result<()> {
        if self.lazy.is_none() {
            return Ok(());
        }
        let mut pending: VecDeque<Vec<u8>> = super::namespace::components(path).map(<[u8]>::to_vec).collect();
        let mut cur = ROOT_INO;
        let mut follows = 0;
        while let Some(name) = pending.pop_front() {
            let Some(dir) = self.state.inodes.get(&cur) else { break };
            if !dir.is_dir() {
                break;
            }
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    cur = dir.parent();
                    continue;
                }
                _ => {}
            }
            let lazy = self.lazy.as_ref().expect("a lazy mount");
            let next = match lazy.dir_entry(cur, &name) {
                None => dir.entry(&name),
                Some(found) => {
                    let found = found?;
                    if let Some(ino) = found {
                        let dir = self.state.inodes.get_mut(&cur).expect("read above");
                        dir.children_mut().insert(Name::from(name.as_slice()), ino);
                    }
                    found
                }
            };
            let Some(next) = next else { break };
            self.read_inode(next, cur, Name::from(name))?;
            let node = &self.state.inodes[&next];
            if node.attrs.kind == crate::format::record::InodeKind::Symlink {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    break;
                }
                let target = super::namespace::target_path(node.target()).to_string();
                if node.target().starts_with(b"/") {
                    cur = ROOT_INO;
                }
                for c in super::namespace::components(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(c.to_vec());
                }
                continue;
            }
            cur = next;
        }
        Ok(())
    }

    /// On a lazy mount, reads what listing the directory at `path` needs: the inodes of its path
    /// ([`FileSystem::read_path`]), all its entries, and every inode they name (a listing says
    /// each one's kind). Stops quietly where `path` does not resolve to a directory: the listing
    /// itself then says why. Nothing to do on any other mount.
    pub fn read_listing(&mut self, path: &str) -> Result<()> {
        if self.lazy.is_none() {
            return Ok(());
        }
        self.read_path(path)?;
        let Ok(dir) = self.resolve(path) else { return Ok(()) };
        if !self.state.inodes.get(&dir).is_some_and(|d| d.is_dir()) {
            return Ok(());
        }
        let lazy = self.lazy.as_mut().expect("a lazy mount");
        if let Some(encoded) = lazy.entries.get(&dir) {
            let damaged = |e: Error| Error::Corrupt(format!("{e}; {}", repair_hint()));
            // Kept encoded until all of them decode: a lookup after a damaged listing still
            // searches them (and meets the damage again).
            let entries = encoded.decode_all().map_err(damaged)?;
            if let Some(problem) = entries.iter().find_map(|(name, _)| super::validate::name_problem(name)) {
                return Err(Error::Corrupt(format!(
                    "checkpoint: directory {dir}: {problem}; {}",
                    repair_hint()
                )));
            }
            lazy.entries.remove(&dir);
            let inode = self.state.inodes.get_mut(&dir).expect("read above");
            *inode.children_mut() = entries.into_iter().map(|(name, ino)| (Name::from(name), ino)).collect();
        }
        let children: Vec<(Name, u64)> =
            self.state.inodes[&dir].children().iter().map(|(name, &ino)| (name.clone(), ino)).collect();
        for (name, ino) in children {
            self.read_inode(ino, dir, name)?;
        }
        Ok(())
    }

    /// Reads inode `ino`, named `name` in directory `dir`, into the partial state, unless it is
    /// there already.
    fn read_inode(&mut self, ino: u64, dir: u64, name: Name) -> Result<()> {
        if self.state.inodes.contains_key(&ino) {
            return Ok(());
        }
        let lazy = self.lazy.as_mut().expect("a lazy mount");
        let image = lazy.inode(ino)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "checkpoint: directory {dir} names inode {ino}, which the checkpoint does not hold; {}",
                repair_hint()
            ))
        })?;
        let found = std::mem::take(&mut lazy.damaged);
        self.notes.repaired.extend(found);
        self.state.insert_read(image, Some((dir, name))).map_err(|problem| {
            Error::Corrupt(format!("checkpoint: inode {ino}: {problem}; {}", repair_hint()))
        })
    }

    /// On a lazy mount, replaces the partial state by the whole state, read as a read-only
    /// [`FileSystem::mount`] reads it (and failing as it fails: EUCLEAN naming the damage).
    /// Open files stay open. Nothing to do on any other mount.
    pub fn read_whole(&mut self) -> Result<()> {
        if self.lazy.is_none() {
            return Ok(());
        }
        let mut whole = FileSystem::mount(self.backend.clone(), true)?;
        std::mem::swap(&mut self.journal, &mut whole.journal);
        std::mem::swap(&mut self.state, &mut whole.state);
        std::mem::swap(&mut self.notes, &mut whole.notes);
        whole.mounted = false;
        self.lazy = None;
        Ok(())
    }
}

/// Whether a lazy mount may serve the superblock `sb` chose: the format has the index and a
/// checkpoint exists.
fn lazy_format(sb: &Superblock) -> bool {
    sb.version >= FIRST_VERSION_WITH_INDEX && sb.checkpoint_head != 0
}

impl Journal {
    /// The superblock and the deltas (oldest first, with their chains) of a pool a lazy mount can
    /// serve; `None` when it cannot.
    fn lazy_superblock(backend: &SharedBackend) -> Option<(Superblock, Vec<DeltaRead>)> {
        let (sb, deltas, notes) = Journal::superblock_and_deltas(backend).ok()?;
        (lazy_format(&sb) && notes.is_clean() && Journal::log_is_empty(backend, &sb)).then_some((sb, deltas))
    }
}
