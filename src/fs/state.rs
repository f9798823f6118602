//! The in-memory state of a mounted pool, and the one function that changes it: [`State::apply`].
//!
//! Owns inodes (attributes, extent maps, directory entries), the ownership map, free space and the
//! quarantine. Live operations and log replay both change the state only by applying
//! [`Mutation`]s, so what replay rebuilds is, by construction, what the operation did.
//! Must never touch the pool: the journal writes, this only remembers.

use super::alloc::FreeSpace;
use super::extents::ExtentMap;
use super::ownership::{MetaStructure, Owner, OwnerMap};
use crate::error::{Error, Result};
use crate::format::checkpoint::{InodeImage, StateImage};
use crate::format::record::{InodeAttrs, InodeKind, Mutation};
use crate::format::{BLOCK_SIZE, ROOT_INO};
use std::collections::{BTreeMap, HashMap};

/// One inode in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Durable attributes.
    pub attrs: InodeAttrs,
    /// Forward map (files only).
    pub extents: ExtentMap,
    /// Directory entries, name -> inode (directories only).
    pub children: BTreeMap<Vec<u8>, u64>,
}

impl Inode {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.attrs.kind == InodeKind::Dir
    }
}

/// Whether `apply` is replaying the durable log or applying a live operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Blocks newly mapped were reserved by the allocator beforehand.
    Live,
    /// Blocks newly mapped are still in the free set and must be claimed.
    Replay,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct State {
    /// Blocks in the pool.
    pub total_blocks: u64,
    /// Every inode.
    pub inodes: HashMap<u64, Inode>,
    /// Owners of every used block.
    pub owners: OwnerMap,
    /// Free blocks.
    pub free: FreeSpace,
    /// Bad blocks, never handed out: start -> len.
    pub quarantine: BTreeMap<u64, u64>,
    /// The next inode number to hand out.
    pub next_ino: u64,
    /// Number of extents over all files (sizes the checkpoint).
    pub extent_count: u64,
    /// Bytes of all inode names (sizes the checkpoint without walking every inode).
    pub name_bytes: u64,
}

/// Checkpoint bytes per inode besides its name: attributes (63) and the extent count (8), rounded up.
const INODE_IMAGE_FIXED_BYTES: u64 = 72;

fn corrupt(detail: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("log replay: {detail}"))
}

impl State {
    /// Builds the state a checkpoint describes, with `meta` blocks owned by metadata structures.
    /// Everything else that no file maps and that is not quarantined is free.
    pub fn from_image(
        image: &StateImage,
        total_blocks: u64,
        meta: &[(u64, u64, MetaStructure)],
    ) -> Result<Self> {
        let mut owners = OwnerMap::new();
        let mut inodes = HashMap::with_capacity(image.inodes.len());
        let mut extent_count = 0;
        for &(start, len, structure) in meta {
            owners.add(start, len, Owner::Meta(structure));
        }
        for img in &image.inodes {
            let ino = img.attrs.ino;
            // Ranges first: the canonical-form check below adds starts and lengths.
            for &(fb, phys, len) in &img.extents {
                check_pool_range(phys, len, total_blocks)
                    .map_err(|d| Error::Corrupt(format!("checkpoint: inode {ino}: {d}")))?;
                if fb.checked_add(len).is_none_or(|end| end > crate::format::MAX_FILE_SIZE / BLOCK_SIZE) {
                    return Err(Error::Corrupt(format!(
                        "checkpoint: inode {ino}: file blocks [{fb}, +{len}) past the largest file size"
                    )));
                }
            }
            let extents = ExtentMap::from_triples(&img.extents);
            if extents.len() != img.extents.len() || !extents.is_canonical() {
                return Err(Error::Corrupt(format!(
                    "checkpoint: extents of inode {ino} overlap or are unmerged"
                )));
            }
            if img.attrs.kind == InodeKind::Dir && !extents.is_empty() {
                return Err(Error::Corrupt(format!("checkpoint: directory {ino} has extents")));
            }
            for (fb, e) in extents.iter() {
                if owners.add(e.phys, e.len, Owner::File { ino, file_block: fb }).touched_metadata {
                    return Err(Error::Corrupt(format!(
                        "checkpoint: inode {ino} maps metadata blocks [{}, +{})",
                        e.phys, e.len
                    )));
                }
            }
            extent_count += extents.len() as u64;
            let inode = Inode { attrs: img.attrs.clone(), extents, children: BTreeMap::new() };
            if inodes.insert(ino, inode).is_some() {
                return Err(Error::Corrupt(format!("checkpoint: inode {ino} appears twice")));
            }
        }
        // Inode numbers are handed out from next_ino: every existing one must lie below it.
        if let Some(&bad) = inodes.keys().find(|&&ino| ino == 0 || ino >= image.next_ino) {
            return Err(Error::Corrupt(format!(
                "checkpoint: inode number {bad} is not below the next free inode number {}",
                image.next_ino
            )));
        }
        let name_bytes = inodes.values().map(|i: &Inode| i.attrs.name.len() as u64).sum();
        let mut state = State {
            name_bytes,
            total_blocks,
            inodes,
            owners,
            free: FreeSpace::new(),
            quarantine: BTreeMap::new(),
            next_ino: image.next_ino,
            extent_count,
        };
        state.link_children()?;
        for &(start, len) in &image.quarantine {
            check_pool_range(start, len, total_blocks)
                .map_err(|d| Error::Corrupt(format!("checkpoint: quarantine: {d}")))?;
            state.add_bad_blocks(start, len);
        }
        state.rebuild_free();
        Ok(state)
    }

    /// Fills directory entry maps from each inode's (parent, name).
    fn link_children(&mut self) -> Result<()> {
        let named: Vec<(u64, u64, Vec<u8>)> = self
            .inodes
            .values()
            .filter(|i| i.attrs.ino != ROOT_INO && i.attrs.nlink > 0)
            .map(|i| (i.attrs.ino, i.attrs.parent, i.attrs.name.clone()))
            .collect();
        for (ino, parent, name) in named {
            let dir = self.inodes.get_mut(&parent).filter(|d| d.is_dir()).ok_or_else(|| {
                Error::Corrupt(format!("checkpoint: inode {ino} names missing directory {parent}"))
            })?;
            if dir.children.insert(name.clone(), ino).is_some() {
                return Err(Error::Corrupt(format!(
                    "checkpoint: directory {parent} has two entries named {:?}",
                    String::from_utf8_lossy(&name)
                )));
            }
        }
        Ok(())
    }

    /// Recomputes free space as every block that is neither owned nor quarantined.
    pub fn rebuild_free(&mut self) {
        let mut free = FreeSpace::new();
        let mut used: Vec<(u64, u64)> = self.owners.iter().map(|(s, seg)| (s, seg.len)).collect();
        used.extend(self.quarantine.iter().map(|(&s, &l)| (s, l)));
        used.sort_unstable();
        let mut cursor = 0;
        for (s, l) in used {
            if s > cursor {
                free.release(cursor, s - cursor);
            }
            cursor = cursor.max(s + l);
        }
        if cursor < self.total_blocks {
            free.release(cursor, self.total_blocks - cursor);
        }
        self.free = free;
    }

    /// The state as a checkpoint stores it, inodes in ascending order.
    pub fn to_image(&self) -> StateImage {
        let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        StateImage {
            next_ino: self.next_ino,
            inodes: inos
                .into_iter()
                .map(|ino| {
                    let i = &self.inodes[&ino];
                    InodeImage {
                        attrs: i.attrs.clone(),
                        extents: i.extents.iter().map(|(fb, e)| (fb, e.phys, e.len)).collect(),
                    }
                })
                .collect(),
            quarantine: self.quarantine.iter().map(|(&s, &l)| (s, l)).collect(),
        }
    }

    /// An upper bound of the encoded checkpoint payload size.
    pub fn image_size_bound(&self) -> u64 {
        let inode_bytes = self.inodes.len() as u64 * INODE_IMAGE_FIXED_BYTES + self.name_bytes;
        32 + inode_bytes + self.extent_count * 24 + self.quarantine.len() as u64 * 16
    }

    /// Applies one mutation. In `Live` mode an error is a bug in the caller; in `Replay` mode it
    /// means the log is damaged.
    pub fn apply(&mut self, m: &Mutation, mode: ApplyMode) -> Result<()> {
        match m {
            Mutation::PutInode(attrs) => self.put_inode(attrs),
            Mutation::FreeInode { ino } => self.free_inode(*ino),
            Mutation::Map { ino, file_block, len, phys } => self.map(*ino, *file_block, *len, *phys, mode),
            Mutation::Quarantine { block, len } => {
                check_pool_range(*block, *len, self.total_blocks).map_err(corrupt)?;
                self.free.claim(*block, *len);
                self.add_bad_blocks(*block, *len);
                Ok(())
            }
        }
    }

    fn put_inode(&mut self, attrs: &InodeAttrs) -> Result<()> {
        let ino = attrs.ino;
        if ino == 0 || ino == u64::MAX {
            return Err(corrupt(format!("inode number {ino}")));
        }
        let old = self
            .inodes
            .get(&ino)
            .map(|i| (i.attrs.parent, i.attrs.name.clone(), i.attrs.nlink, i.attrs.kind));
        if let Some((_, _, _, kind)) = &old {
            if *kind != attrs.kind {
                return Err(corrupt(format!("inode {ino} changes kind")));
            }
        }
        // Unlink the old name.
        if let Some((parent, name, nlink, _)) = &old {
            if ino != ROOT_INO && *nlink > 0 {
                if let Some(dir) = self.inodes.get_mut(parent) {
                    if dir.children.get(name) == Some(&ino) {
                        dir.children.remove(name);
                    }
                }
            }
        }
        // Link the new name.
        if ino != ROOT_INO && attrs.nlink > 0 {
            let dir =
                self.inodes.get_mut(&attrs.parent).filter(|d| d.is_dir()).ok_or_else(|| {
                    corrupt(format!("inode {ino} names missing directory {}", attrs.parent))
                })?;
            if let Some(&other) = dir.children.get(&attrs.name) {
                if other != ino {
                    return Err(corrupt(format!(
                        "directory {} already has an entry {:?}",
                        attrs.parent,
                        String::from_utf8_lossy(&attrs.name)
                    )));
                }
            }
            dir.children.insert(attrs.name.clone(), ino);
        }
        self.name_bytes += attrs.name.len() as u64;
        match self.inodes.get_mut(&ino) {
            Some(inode) => {
                self.name_bytes -= inode.attrs.name.len() as u64;
                inode.attrs = attrs.clone();
            }
            None => {
                self.inodes.insert(
                    ino,
                    Inode { attrs: attrs.clone(), extents: ExtentMap::new(), children: BTreeMap::new() },
                );
            }
        }
        self.next_ino = self.next_ino.max(ino + 1);
        Ok(())
    }

    fn free_inode(&mut self, ino: u64) -> Result<()> {
        let inode = self.inodes.get(&ino).ok_or_else(|| corrupt(format!("free of missing inode {ino}")))?;
        if ino == ROOT_INO || !inode.extents.is_empty() || !inode.children.is_empty() {
            return Err(corrupt(format!("free of inode {ino} that still has blocks or entries")));
        }
        let (parent, name, nlink) = (inode.attrs.parent, inode.attrs.name.clone(), inode.attrs.nlink);
        if nlink > 0 {
            if let Some(dir) = self.inodes.get_mut(&parent) {
                if dir.children.get(&name) == Some(&ino) {
                    dir.children.remove(&name);
                }
            }
        }
        self.name_bytes -= name.len() as u64;
        self.inodes.remove(&ino);
        Ok(())
    }

    fn map(&mut self, ino: u64, file_block: u64, len: u64, phys: Option<u64>, mode: ApplyMode) -> Result<()> {
        if len == 0
            || file_block.checked_add(len).is_none_or(|e| e > crate::format::MAX_FILE_SIZE / BLOCK_SIZE)
        {
            return Err(corrupt(format!("map of inode {ino}: bad range [{file_block}, +{len})")));
        }
        if let Some(p) = phys {
            // A bad block may gain owners only while it has some (a reflink of a poisoned range);
            // replay's accounting below rejects a map onto a bad block that nobody owns.
            check_pool_range(p, len, self.total_blocks).map_err(corrupt)?;
        }
        let inode = self
            .inodes
            .get_mut(&ino)
            .filter(|i| i.attrs.kind == InodeKind::File)
            .ok_or_else(|| corrupt(format!("map of missing or non-file inode {ino}")))?;
        let before = inode.extents.len() as u64;
        let removed = inode.extents.set(file_block, len, phys);
        let after = inode.extents.len() as u64;
        self.extent_count = self.extent_count + after - before;
        // Add the new owner before dropping the old ones, so remapping a block onto itself never
        // frees it in between.
        if let Some(p) = phys {
            let claimed = match mode {
                ApplyMode::Replay => self.free.claim(p, len),
                ApplyMode::Live => {
                    debug_assert!(!self.free.any_free(p, len), "live map onto free blocks [{p}, +{len})");
                    0
                }
            };
            let added = self.owners.add(p, len, Owner::File { ino, file_block });
            if added.touched_metadata {
                return Err(corrupt(format!("map of inode {ino} onto metadata blocks [{p}, +{len})")));
            }
            if mode == ApplyMode::Replay && claimed != added.newly_owned {
                return Err(corrupt(format!(
                    "map of inode {ino} onto unaccounted pool blocks [{p}, +{len})"
                )));
            }
        }
        for piece in removed {
            let p = piece.phys.expect("removed pieces are mapped");
            let freed = self
                .owners
                .remove(p, piece.len, Owner::File { ino, file_block: piece.file_block })
                .map_err(|e| corrupt(e.0))?;
            for (s, l) in freed {
                self.release_unless_quarantined(s, l);
            }
        }
        Ok(())
    }

    /// Records `[start, start + len)` as bad, merging with the runs already recorded.
    pub fn add_bad_blocks(&mut self, start: u64, len: u64) {
        let mut start = start;
        let mut end = start + len;
        let touching: Vec<(u64, u64)> =
            self.quarantine.range(..=end).filter(|(&s, &l)| s + l >= start).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in touching {
            self.quarantine.remove(&s);
            start = start.min(s);
            end = end.max(s + l);
        }
        self.quarantine.insert(start, end - start);
    }

    /// The first bad block of `[start, start + len)`, if any.
    pub fn first_bad_block(&self, start: u64, len: u64) -> Option<u64> {
        if self.quarantine.is_empty() {
            return None;
        }
        let end = start + len;
        if let Some((&s, &l)) = self.quarantine.range(..=start).next_back() {
            if s + l > start {
                return Some(start);
            }
        }
        self.quarantine.range(start..end).next().map(|(&s, _)| s)
    }

    /// Frees `[start, start + len)` except the parts that are quarantined.
    pub fn release_unless_quarantined(&mut self, start: u64, len: u64) {
        let end = start + len;
        let mut cursor = start;
        let bad: Vec<(u64, u64)> =
            self.quarantine.range(..end).filter(|(&s, &l)| s + l > start).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in bad {
            if s > cursor {
                self.free.release(cursor, s - cursor);
            }
            cursor = cursor.max(s + l);
        }
        if cursor < end {
            self.free.release(cursor, end - cursor);
        }
    }

    /// Looks up an inode or fails with ENOENT naming it.
    pub fn inode(&self, ino: u64) -> Result<&Inode> {
        self.inodes.get(&ino).ok_or_else(|| Error::NotFound(format!("inode {ino}")))
    }

    /// The path of an inode from the root, or `None` if it has no name (unlinked but open).
    pub fn path_of(&self, ino: u64) -> Option<String> {
        if ino == ROOT_INO {
            return Some("/".into());
        }
        // Names are borrowed and joined once: this runs for every owner a reverse-map query reports.
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let inode = self.inodes.get(&cur)?;
            if inode.attrs.nlink == 0 {
                return None;
            }
            parts.push(&inode.attrs.name);
            cur = inode.attrs.parent;
            if parts.len() > self.inodes.len() {
                return None;
            }
        }
        let mut path = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for name in parts.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(name);
        }
        Some(String::from_utf8_lossy(&path).into_owned())
    }
}

/// Checks that a pool block range lies inside the data area of the pool.
fn check_pool_range(start: u64, len: u64, total_blocks: u64) -> std::result::Result<(), String> {
    if len == 0 || start < 2 || start.checked_add(len).is_none_or(|e| e > total_blocks) {
        return Err(format!("pool blocks [{start}, +{len}) outside the pool of {total_blocks} blocks"));
    }
    Ok(())
}
