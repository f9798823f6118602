//! The in-memory state of a mounted pool, and the one function that changes it: [`State::apply`].
//!
//! Owns inodes (attributes, extent maps, directory entries), the ownership map, free space and the
//! quarantine. Live operations and log replay both change the state only by applying
//! [`Mutation`]s, so what replay rebuilds is, by construction, what the operation did.
//! Must never touch the pool: the journal writes, this only remembers.

use super::alloc::FreeSpace;
use super::extents::{follows_canonically, Extent, ExtentMap};
use super::ownership::{MetaStructure, Owner, OwnerMap};
use super::validate::{check_pool_range, overlap_detail};
use crate::error::{Error, Result};
use crate::format::checkpoint::{DeltaImage, ExtentList, InodeImage, StateImage};
use crate::format::record::{InodeAttrs, InodeKind, Mutation};
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE, ROOT_INO};
use crate::intmap::IntMap;
use std::collections::BTreeMap;

/// A name in a directory: its bytes, shared by the directory's entry and the named inode's list of
/// names (one allocation for both).
pub type Name = std::sync::Arc<[u8]>;

/// One inode in memory: what every inode has, and what only some have (a directory's entries,
/// extended attributes, a symlink's target) behind one pointer, so that a file without those costs
/// 120 bytes (plus its extents and names) instead of 192.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Durable attributes.
    pub attrs: InodeAttrs,
    /// Forward map (files only).
    pub extents: ExtentMap,
    /// The entries that name this inode, as (directory, name), oldest first: the reverse of
    /// `children`, kept in memory only (a directory has one, a file one per hard link). Each name
    /// shares its bytes with the directory's entry.
    pub names: Box<[(u64, Name)]>,
    /// The parts only some inodes have: `None` until one of them is first set (it may stay
    /// allocated once they are emptied again).
    extra: Option<Box<InodeExtra>>,
}

/// The parts of an inode that most files do not have.
#[derive(Debug, Clone, Default)]
struct InodeExtra {
    children: BTreeMap<Name, u64>,
    subdir_count: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    target: Vec<u8>,
}

/// What an inode without extras shows.
static NO_EXTRA: InodeExtra =
    InodeExtra { children: BTreeMap::new(), subdir_count: 0, xattrs: BTreeMap::new(), target: Vec::new() };

impl PartialEq for Inode {
    fn eq(&self, other: &Inode) -> bool {
        self.attrs == other.attrs
            && self.extents == other.extents
            && self.names == other.names
            && self.children() == other.children()
            && self.subdir_count() == other.subdir_count()
            && self.xattrs() == other.xattrs()
            && self.target() == other.target()
    }
}

impl Eq for Inode {}

impl Inode {
    /// Adds a name (`names` is a boxed slice, 8 bytes smaller than a vector: most files have one
    /// name, and it rarely changes).
    pub fn add_name(&mut self, dir: u64, name: Name) {
        let mut names = std::mem::take(&mut self.names).into_vec();
        names.push((dir, name));
        self.names = names.into_boxed_slice();
    }

    /// Removes the name at index `at` of `names`.
    fn remove_name(&mut self, at: usize) {
        let mut names = std::mem::take(&mut self.names).into_vec();
        names.remove(at);
        self.names = names.into_boxed_slice();
    }

    /// An inode with these attributes and nothing else.
    pub fn new(attrs: InodeAttrs) -> Self {
        Inode { attrs, extents: ExtentMap::new(), names: Box::default(), extra: None }
    }

    fn extra(&self) -> &InodeExtra {
        self.extra.as_deref().unwrap_or(&NO_EXTRA)
    }

    fn extra_mut(&mut self) -> &mut InodeExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Directory entries, name -> inode (directories only).
    pub fn children(&self) -> &BTreeMap<Name, u64> {
        &self.extra().children
    }

    /// The inode that this directory's entry `name` names, if it has one.
    pub fn entry(&self, name: &[u8]) -> Option<u64> {
        self.children().get(name).copied()
    }

    /// The directory entries, to change.
    pub fn children_mut(&mut self) -> &mut BTreeMap<Name, u64> {
        &mut self.extra_mut().children
    }

    /// How many of `children` are directories: a directory's link count is 2 + this.
    pub fn subdir_count(&self) -> u64 {
        self.extra().subdir_count
    }

    /// The count of subdirectories, to change.
    pub fn subdir_count_mut(&mut self) -> &mut u64 {
        &mut self.extra_mut().subdir_count
    }

    /// Extended attributes, full name -> value.
    pub fn xattrs(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.extra().xattrs
    }

    /// The extended attributes, to change.
    pub fn xattrs_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        &mut self.extra_mut().xattrs
    }

    /// Removes extended attribute `name` and returns its value; an inode without it (without
    /// extras, even) is left as it is.
    pub fn remove_xattr(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        self.extra.as_mut()?.xattrs.remove(name)
    }

    /// A symlink's target (empty for other kinds).
    pub fn target(&self) -> &Vec<u8> {
        &self.extra().target
    }

    /// The symlink target, to change.
    pub fn target_mut(&mut self) -> &mut Vec<u8> {
        &mut self.extra_mut().target
    }

    /// Sets the symlink target (an empty one on an inode without extras allocates nothing).
    pub fn set_target(&mut self, target: Vec<u8>) {
        if !target.is_empty() || self.extra.is_some() {
            *self.target_mut() = target;
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.attrs.kind == InodeKind::Dir
    }

    /// The directory holding this one (`..`): its one entry's directory; the root is its own.
    pub fn parent(&self) -> u64 {
        self.names.first().map_or(ROOT_INO, |(dir, _)| *dir)
    }
}

/// Checkpoint bytes of one directory entry besides its name.
pub(super) const ENTRY_FIXED_BYTES: u64 = 2 + 8;
/// Checkpoint bytes of one extended attribute besides its name and value.
pub(super) const XATTR_FIXED_BYTES: u64 = 2 + 4;

/// Whether `apply` is replaying the durable log or applying a live operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Blocks newly mapped were reserved by the allocator beforehand.
    Live,
    /// Blocks newly mapped are still in the free set and must be claimed.
    Replay,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Blocks in the pool.
    pub total_blocks: u64,
    /// Every inode.
    pub inodes: IntMap<u64, Box<Inode>>,
    /// Owners of every used block; reach it through [`State::owners`] / [`State::owners_mut`],
    /// which build it from the files' extents the first time anything needs it.
    owners: OwnerMap,
    /// Free blocks.
    pub free: FreeSpace,
    /// Bad blocks, never handed out: start -> len.
    pub quarantine: BTreeMap<u64, u64>,
    /// The next inode number to hand out.
    pub next_ino: u64,
    /// Number of extents over all files (sizes the checkpoint).
    pub extent_count: u64,
    /// Extents added or removed by the changes applied since this state was built, over all
    /// files: a running count (wrapping) whose growth over a record is what replaying that
    /// record costs (a record that replaces extents by as many others leaves `extent_count` as
    /// it was, yet its replay removes and adds each).
    pub extent_changes: u64,
    /// Checkpoint bytes of every directory entry, extended attribute and symlink target (sizes
    /// the checkpoint without walking every inode).
    pub var_bytes: u64,
    /// Blocks freed by operations applied here but not yet durable (group commit, see
    /// `Journal::commit`): the durable state may still reference their bytes, so they are handed
    /// out again only after the operations that freed them are durable ([`State::release_held`]).
    pub held: Vec<(u64, u64)>,
    /// While set ([`State::apply_holding_frees`]), blocks that lose their last owner go to
    /// [`State::held`] instead of the free space.
    hold_frees: bool,
    /// The inodes created, changed or freed since the state the last checkpoint holds: what a
    /// delta checkpoint writes ([`State::delta_image`]). Every mutation marks the inodes it names
    /// ([`State::apply`]), replayed ones included; every checkpoint empties it
    /// ([`State::forget_changes`]).
    changed: IntMap<u64, ()>,
    /// Holds only the inodes read so far from the checkpoint of a lazily mounted pool
    /// (`fs/lazy.rs`): read-only, and nothing here describes the whole pool (free space, the
    /// ownership map, the counts). A missing inode is then EIO, never ENOENT.
    partial: bool,
}

/// Whether any of the file runs `(phys, len)`, sorted by start, shares a block with a metadata
/// run: one sweep over both in order of start, each side remembering how far its runs seen so far
/// reach (two runs meet exactly when the one that starts later starts before the other ends).
/// The quick test of a mount; [`file_on_metadata`] names the extent when it says yes.
fn files_meet_metadata(sorted_file_runs: &[(u64, u64)], meta: &[(u64, u64, MetaStructure)]) -> bool {
    debug_assert!(sorted_file_runs.is_sorted());
    let mut meta: Vec<(u64, u64)> =
        meta.iter().filter(|&&(_, len, _)| len > 0).map(|&(start, len, _)| (start, len)).collect();
    meta.sort_unstable();
    let (mut files, mut metas) = (sorted_file_runs.iter().peekable(), meta.iter().peekable());
    let (mut file_reach, mut meta_reach) = (0u64, 0u64);
    loop {
        let file_next = files.peek().map(|&&(start, _)| start);
        let meta_next = metas.peek().map(|&&(start, _)| start);
        let take_file = match (file_next, meta_next) {
            (None, None) => return false,
            (Some(f), Some(m)) => f <= m,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_file {
            let &(start, len) = files.next().expect("peeked");
            if len > 0 && meta_reach > start {
                return true;
            }
            file_reach = file_reach.max(start + len);
        } else {
            let &(start, len) = metas.next().expect("peeked");
            if file_reach > start {
                return true;
            }
            meta_reach = meta_reach.max(start + len);
        }
    }
}

/// The first file extent, in inode and file order, that maps a block a metadata structure owns,
/// described as a checkpoint problem; `None` when files and metadata never share a block. Each
/// extent is one binary search over the metadata runs (no ownership map needed).
fn file_on_metadata(meta: &[(u64, u64, MetaStructure)], inodes: &IntMap<u64, Box<Inode>>) -> Option<String> {
    let mut meta = meta.to_vec();
    meta.sort_unstable_by_key(|&(start, _, _)| start);
    // The furthest end among the runs up to each index: runs starting before an extent's end
    // overlap it exactly when that end lies past the extent's start.
    let reach: Vec<u64> = meta
        .iter()
        .scan(0, |furthest, &(start, len, _)| {
            *furthest = (*furthest).max(start + len);
            Some(*furthest)
        })
        .collect();
    let structure_under = |phys: u64, len: u64| -> Option<MetaStructure> {
        let before_end = meta.partition_point(|&(start, _, _)| start < phys + len);
        let last = before_end.checked_sub(1)?;
        (reach[last] > phys).then(|| {
            let (_, _, structure) = meta[..before_end]
                .iter()
                .rev()
                .find(|&&(start, n, _)| start + n > phys)
                .expect("reach says one");
            *structure
        })
    };
    let hit = |inode: &Inode| {
        inode.extents.iter().find_map(|(_, e)| structure_under(e.phys, e.len).map(|structure| (e, structure)))
    };
    let ino = inodes.iter().filter(|(_, inode)| hit(inode).is_some()).map(|(&ino, _)| ino).min()?;
    let (e, structure) = hit(&inodes[&ino]).expect("found above");
    Some(format!("inode {ino}: {}", overlap_detail(e.phys, e.len, structure)))
}

/// The checks an entry `name` of directory `dir` naming inode `ino` (`child`, if it exists) must
/// pass whoever adds it: the inode exists, is not the root, and is not a directory that already
/// has a name. Returns the child.
fn named_child<'a>(
    dir: u64,
    name: &[u8],
    ino: u64,
    child: Option<&'a Inode>,
) -> std::result::Result<&'a Inode, String> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    match child {
        None => Err(format!("entry {:?} of directory {dir} names missing inode {ino}", shown())),
        Some(_) if ino == ROOT_INO => {
            Err(format!("entry {:?} of directory {dir} names the root directory", shown()))
        }
        Some(child) if child.is_dir() && !child.names.is_empty() => Err(format!(
            "directory {ino} gets a second name {:?} in directory {dir} (a directory has one)",
            shown()
        )),
        Some(child) => Ok(child),
    }
}

/// Every file extent as an ownership run (first pool block, length, owner of that block).
fn file_runs(inodes: &IntMap<u64, Box<Inode>>) -> Vec<(u64, u64, Owner)> {
    let mut runs = Vec::with_capacity(inodes.values().map(|i| i.extents.len()).sum());
    for (&ino, inode) in inodes {
        runs.extend(inode.extents.iter().map(|(fb, e)| (e.phys, e.len, Owner::file(ino, fb))));
    }
    runs
}

/// Checks one file's extents as a checkpoint lists them, in one pass: every pool run inside the
/// pool, every file range below the largest file size, and the list canonical (ascending, no
/// overlap, no empty extent, none continuing the one before it in both file and pool: what
/// [`ExtentMap::is_canonical`] asks of a map). Appends each pool run to `runs`, joined to the last
/// one when it continues it.
fn check_extent_list(
    list: &ExtentList,
    total_blocks: u64,
    runs: &mut Vec<(u64, u64)>,
) -> std::result::Result<(), String> {
    let mut prev: Option<(u64, Extent)> = None;
    for (fb, phys, len) in list.iter() {
        check_pool_range(phys, len, total_blocks)?;
        if fb.checked_add(len).is_none_or(|end| end > MAX_FILE_SIZE / BLOCK_SIZE) {
            return Err(format!("file blocks [{fb}, +{len}) past the largest file size"));
        }
        let extent = (fb, Extent { phys, len });
        if prev.is_some_and(|prev| !follows_canonically(prev, extent)) {
            return Err("extents overlap or are unmerged".into());
        }
        prev = Some(extent);
        match runs.last_mut() {
            Some((start, run)) if *start + *run == phys => *run += len,
            _ => runs.push((phys, len)),
        }
    }
    Ok(())
}

/// Checkpoint bytes per extent: (file block, pool block, length), each a u64.
pub(super) const EXTENT_IMAGE_BYTES: u64 = 24;

/// Checkpoint bytes per inode besides its entries, extended attributes and target: attributes
/// (57), the extent and entry counts (16), the xattr count (4) and the target length (2), rounded,
/// and its inode index entry (16).
const INODE_IMAGE_FIXED_BYTES: u64 = 80 + crate::format::indexed::INDEX_ENTRY_BYTES as u64;

impl State {
    /// Builds the state a checkpoint describes, with `meta` blocks owned by metadata structures.
    /// Everything else that no file maps and that is not quarantined is free.
    ///
    /// The image is decoded from media, so it is validated whole: every rule of
    /// [`State::inode_problems`] for every inode, every extent against the pool layout, and the
    /// directory tree (a tree: no cycles, no duplicate names). A violation is `Error::Corrupt`
    /// naming the checkpoint, the inode and the problem.
    pub fn from_image(
        image: StateImage,
        total_blocks: u64,
        meta: &[(u64, u64, MetaStructure)],
    ) -> Result<Self> {
        let in_checkpoint = |detail: String| Error::Corrupt(format!("checkpoint: {detail}"));
        let mut inodes = IntMap::with_capacity_and_hasher(image.inodes.len(), Default::default());
        let mut extent_count = 0;
        let mut var_bytes = 0;
        // Entries are linked once every inode exists.
        let mut entries = Vec::new();
        // Every block a file extent maps, as pool runs, for the metadata-overlap test and the free
        // space, listed in the same pass that checks the extents: a run that continues the one
        // listed before it in the pool joins it (a file written in order lies in one run of the
        // pool however fragmented its file blocks are), so the list is often far shorter than the
        // extents. Runs that arrive ascending already (files written in order, one after
        // another) are found so in one pass.
        let mut file_runs: Vec<(u64, u64)> = Vec::new();
        // The inodes in the checkpoint's order, which is their order in memory: validation
        // visits them so.
        let mut order = Vec::with_capacity(image.inodes.len());
        for img in image.inodes {
            let ino = img.attrs.ino;
            order.push(ino);
            check_extent_list(&img.extents, total_blocks, &mut file_runs)
                .map_err(|d| in_checkpoint(format!("inode {ino}: {d}")))?;
            let extents = ExtentMap::from_list(img.extents);
            debug_assert!(extents.is_canonical());
            if img.attrs.kind == InodeKind::Dir && !extents.is_empty() {
                return Err(in_checkpoint(format!("directory {ino} has extents")));
            }
            extent_count += extents.len() as u64;
            var_bytes += var_bytes_of_xattrs_and_target(img.xattrs.iter().map(|(n, v)| (n, v)), &img.target);
            let mut inode = Inode::new(img.attrs);
            inode.extents = extents;
            if !img.xattrs.is_empty() {
                *inode.xattrs_mut() = img.xattrs.into_iter().collect();
            }
            inode.set_target(img.target);
            if inodes.insert(ino, Box::new(inode)).is_some() {
                return Err(in_checkpoint(format!("inode {ino} appears twice")));
            }
            if !img.entries.is_empty() {
                entries.push((ino, img.entries));
            }
        }
        file_runs.sort_unstable();
        if files_meet_metadata(&file_runs, meta) {
            let detail = file_on_metadata(meta, &inodes).expect("the sweep found a file run on metadata");
            return Err(in_checkpoint(detail));
        }
        // Inode numbers are handed out from next_ino: every existing one must lie below it.
        if let Some(&bad) = inodes.keys().find(|&&ino| ino == 0 || ino >= image.next_ino) {
            return Err(in_checkpoint(format!(
                "inode number {bad} is not below the next free inode number {}",
                image.next_ino
            )));
        }
        // Built from the metadata runs and the files' extents when something first asks who owns
        // a block or changes an owner (see `State::owners`).
        let meta_runs =
            meta.iter().map(|&(start, len, structure)| (start, len, Owner::Meta(structure))).collect();
        let mut state = State {
            var_bytes,
            total_blocks,
            inodes,
            owners: OwnerMap::awaiting_files(meta_runs),
            free: FreeSpace::new(),
            quarantine: BTreeMap::new(),
            next_ino: image.next_ino,
            extent_count,
            extent_changes: 0,
            held: Vec::new(),
            hold_frees: false,
            changed: IntMap::default(),
            partial: false,
        };
        for (dir, names) in entries {
            state.link_listed(dir, names).map_err(in_checkpoint)?;
        }
        for &(start, len) in &image.quarantine {
            check_pool_range(start, len, total_blocks)
                .map_err(|d| in_checkpoint(format!("quarantine: {d}")))?;
            state.add_bad_blocks(start, len);
        }
        state.validate_whole_in_order(order.into_iter()).map_err(in_checkpoint)?;
        state.rebuild_free_with(file_runs);
        Ok(state)
    }

    /// The ownership map, built first if nothing has needed it since mount: from the metadata
    /// runs it was made with and every file's extents.
    pub fn owners(&self) -> &OwnerMap {
        let inodes = &self.inodes;
        self.owners.build_with(|| file_runs(inodes));
        &self.owners
    }

    /// The ownership map to change, built first if needed (see [`State::owners`]).
    pub fn owners_mut(&mut self) -> &mut OwnerMap {
        let inodes = &self.inodes;
        self.owners.build_with(|| file_runs(inodes));
        &mut self.owners
    }

    /// Whether the ownership map is built (mount leaves it unbuilt until first needed).
    pub fn owners_built(&self) -> bool {
        self.owners.is_built()
    }

    /// Computes free space at mount, while the ownership map is not built: every block that no
    /// metadata run, no file extent (`sorted_file_runs`, their `(phys, len)` sorted) and no
    /// quarantined run holds.
    fn rebuild_free_with(&mut self, sorted_file_runs: Vec<(u64, u64)>) {
        debug_assert!(!self.owners.is_built() && sorted_file_runs.is_sorted());
        // Three sorted lists (the unbuilt map's runs are the metadata's), walked together in order
        // of start without building one list of them all; overlaps are harmless.
        let metadata = self.owners.used_runs();
        let quarantined: Vec<(u64, u64)> = self.quarantine.iter().map(|(&s, &l)| (s, l)).collect();
        let lists = [metadata.as_slice(), sorted_file_runs.as_slice(), quarantined.as_slice()];
        let mut heads = [0usize; 3];
        let mut gaps = Vec::new();
        let mut cursor = 0;
        while let Some(list) =
            (0..3).filter(|&i| heads[i] < lists[i].len()).min_by_key(|&i| lists[i][heads[i]])
        {
            let (s, l) = lists[list][heads[list]];
            heads[list] += 1;
            if s > cursor {
                gaps.push((cursor, s - cursor));
            }
            cursor = cursor.max(s + l);
        }
        if cursor < self.total_blocks {
            gaps.push((cursor, self.total_blocks - cursor));
        }
        self.free = FreeSpace::from_runs(gaps);
    }

    /// The state as a checkpoint stores it, inodes in ascending order.
    pub fn to_image(&self) -> StateImage {
        let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        StateImage {
            next_ino: self.next_ino,
            inodes: inos.into_iter().map(|ino| self.inode_image(ino).expect("listed above")).collect(),
            quarantine: self.quarantine.iter().map(|(&s, &l)| (s, l)).collect(),
        }
    }

    /// One inode as a checkpoint stores it, if it exists.
    fn inode_image(&self, ino: u64) -> Option<InodeImage> {
        let i = self.inodes.get(&ino)?;
        Some(InodeImage {
            attrs: i.attrs.clone(),
            extents: i.extents.to_list(),
            entries: i.children().iter().map(|(n, &c)| (n.to_vec(), c)).collect(),
            xattrs: i.xattrs().iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            target: i.target().clone(),
        })
    }

    /// What changed since the last checkpoint, as a delta stores it: every changed inode that
    /// exists, whole, and the numbers of those that do not any more (no previous delta named).
    pub fn delta_image(&self) -> DeltaImage {
        let mut inos: Vec<u64> = self.changed.keys().copied().collect();
        inos.sort_unstable();
        let mut delta = DeltaImage {
            next_ino: self.next_ino,
            quarantine: self.quarantine.iter().map(|(&s, &l)| (s, l)).collect(),
            ..DeltaImage::default()
        };
        for ino in inos {
            match self.inode_image(ino) {
                Some(image) => delta.inodes.push(image),
                None => delta.removed.push(ino),
            }
        }
        delta
    }

    /// How many inodes changed since the last checkpoint.
    pub fn changed_inodes(&self) -> usize {
        self.changed.len()
    }

    /// Marks inodes as changed since the last checkpoint.
    pub fn mark_changed(&mut self, inos: impl IntoIterator<Item = u64>) {
        self.changed.extend(inos.into_iter().map(|ino| (ino, ())));
    }

    /// A checkpoint holds everything: nothing has changed since it.
    pub fn forget_changes(&mut self) {
        self.changed = IntMap::default();
    }

    /// An upper bound of the encoded checkpoint payload size.
    pub fn image_size_bound(&self) -> u64 {
        let inode_bytes = self.inodes.len() as u64 * INODE_IMAGE_FIXED_BYTES + self.var_bytes;
        32 + crate::format::indexed::RUN_MAP_BYTES as u64
            + inode_bytes
            + self.extent_count * EXTENT_IMAGE_BYTES
            + self.quarantine.len() as u64 * 16
    }

    /// Applies one mutation. In `Live` mode an error is a bug in the caller; in `Replay` mode it
    /// means the log is damaged. Only what one mutation alone can break is checked here (ranges,
    /// kinds, the pool layout under a `Map`); the rules that hold once a whole record is in are
    /// [`State::replay_record`]'s.
    pub fn apply(&mut self, m: &Mutation, mode: ApplyMode) -> Result<()> {
        self.apply_one(m, mode).map_err(Error::Corrupt)
    }

    /// [`State::apply`] with the problem as plain text.
    pub(super) fn apply_one(&mut self, m: &Mutation, mode: ApplyMode) -> std::result::Result<(), String> {
        // Marked before the change, so a mutation that fails half way still has its inodes written
        // by the next delta (marking too many costs bytes, never correctness).
        match *m {
            Mutation::PutInode(ref attrs) => self.mark_changed([attrs.ino]),
            Mutation::FreeInode { ino }
            | Mutation::Map { ino, .. }
            | Mutation::SetXattr { ino, .. }
            | Mutation::SetTarget { ino, .. } => self.mark_changed([ino]),
            Mutation::Link { dir, ino, .. } | Mutation::Unlink { dir, ino, .. } => {
                self.mark_changed([dir, ino])
            }
            Mutation::Clone { dst, .. } => self.mark_changed([dst]),
            Mutation::Quarantine { .. } => {}
        }
        match m {
            Mutation::PutInode(attrs) => self.put_inode(attrs),
            Mutation::FreeInode { ino } => self.free_inode(*ino),
            Mutation::Map { ino, file_block, len, phys } => self.map(*ino, *file_block, *len, *phys, mode),
            Mutation::Quarantine { block, len } => {
                check_pool_range(*block, *len, self.total_blocks)
                    .map_err(|d| format!("quarantine of {d}"))?;
                self.free.claim(*block, *len);
                self.add_bad_blocks(*block, *len);
                Ok(())
            }
            Mutation::Link { dir, name, ino } => self.link(*dir, name, *ino),
            Mutation::Unlink { dir, name, ino } => self.unlink(*dir, name, *ino),
            Mutation::SetXattr { ino, name, value } => self.set_xattr(*ino, name, value.as_deref()),
            Mutation::SetTarget { ino, target } => {
                let inode = self
                    .inodes
                    .get_mut(ino)
                    .filter(|i| i.attrs.kind == InodeKind::Symlink)
                    .ok_or_else(|| format!("symlink target of missing or non-symlink inode {ino}"))?;
                self.var_bytes -= inode.target().len() as u64;
                self.var_bytes += target.len() as u64;
                inode.set_target(target.clone());
                Ok(())
            }
            Mutation::Clone { src, src_block, dst, dst_block, len } => {
                self.clone_blocks(*src, *src_block, *dst, *dst_block, *len, mode)
            }
        }
    }

    /// Points `dst`'s file blocks `[dst_block, +len)` at what `src`'s `[src_block, +len)` map
    /// now, hole for hole: the `Map` of each piece of the source range (see [`Mutation::Clone`]).
    fn clone_blocks(
        &mut self,
        src: u64,
        src_block: u64,
        dst: u64,
        dst_block: u64,
        len: u64,
        mode: ApplyMode,
    ) -> std::result::Result<(), String> {
        let max_blocks = MAX_FILE_SIZE / BLOCK_SIZE;
        for (ino, first) in [(src, src_block), (dst, dst_block)] {
            if len == 0 || first.checked_add(len).is_none_or(|e| e > max_blocks) {
                return Err(format!(
                    "clone of inode {src} into {dst}: bad range [{first}, +{len}) of inode {ino}"
                ));
            }
        }
        if src == dst && src_block < dst_block + len && dst_block < src_block + len {
            return Err(format!(
                "clone of inode {src} onto itself: ranges [{src_block}, +{len}) and [{dst_block}, +{len}) overlap"
            ));
        }
        let is_file = |i: &Inode| i.attrs.kind == InodeKind::File;
        let Some(source) = self.inodes.get(&src).filter(|i| is_file(i)) else {
            return Err(format!("clone from missing or non-file inode {src}"));
        };
        if !self.inodes.get(&dst).is_some_and(|i| is_file(i)) {
            return Err(format!("clone into missing or non-file inode {dst}"));
        }
        // Replay only: one 41-byte record may copy any number of extents, so a few corrupt ones
        // could ask for exponentially many; no live operation leaves more extents than a
        // checkpoint of the pool can hold (`ensure_metadata_room`).
        if mode == ApplyMode::Replay {
            let extents = self.extent_count + source.extents.count_in(src_block, len) as u64;
            if extents.saturating_mul(EXTENT_IMAGE_BYTES) > self.total_blocks * BLOCK_SIZE {
                return Err(format!(
                    "clone of inode {src} into {dst}: {extents} extents would not fit any checkpoint of this pool"
                ));
            }
        }
        if !self.inodes[&dst].extents.is_hole(dst_block, len) {
            // Over mapped blocks: each piece is a `Map`, which releases what it replaces.
            for piece in source.extents.pieces(src_block, len) {
                let at = dst_block + (piece.file_block - src_block);
                self.map(dst, at, piece.len, piece.phys, mode)?;
            }
            return Ok(());
        }
        // Into a hole (a new file, a reflink past EOF): nothing is released, and every block the
        // source maps is owned already, so the extents go in at once and the owners in one walk.
        let target_empty = self.inodes[&dst].extents.is_empty();
        let whole = src_block == dst_block
            && source.extents.iter().next().is_none_or(|(fb, _)| fb >= src_block)
            && source.extents.end_block() <= src_block + len;
        if target_empty && whole {
            // A whole file into an empty one (cp --reflink, a snapshot): the map is copied as it
            // is, node for node, with no list of runs to sort and build a tree from.
            let copy = source.extents.clone();
            let owners = self
                .owners
                .is_built()
                .then(|| copy.iter().map(|(fb, e)| (e.phys, e.len, Owner::file(dst, fb))).collect());
            let added_extents = copy.len() as u64;
            self.extent_changes = self.extent_changes.wrapping_add(added_extents);
            self.extent_count += added_extents;
            self.inodes.get_mut(&dst).expect("checked above").extents = copy;
            return self.add_cloned_owners(src, dst, owners);
        }
        let runs: Vec<(u64, u64, u64)> = source
            .extents
            .mapped_in(src_block, len)
            .map(|(fb, phys, n)| (dst_block + (fb - src_block), phys, n))
            .collect();
        // An ownership map not built yet needs nothing: it will be built from the extents, these
        // included, which are the source's own (checked against the metadata by mount).
        let owners = self
            .owners
            .is_built()
            .then(|| runs.iter().map(|&(fb, phys, n)| (phys, n, Owner::file(dst, fb))).collect());
        let target = self.inodes.get_mut(&dst).expect("checked above");
        let before = target.extents.len() as u64;
        self.extent_changes = self.extent_changes.wrapping_add(runs.len() as u64);
        target.extents.fill_hole(runs);
        self.extent_count = self.extent_count + target.extents.len() as u64 - before;
        self.add_cloned_owners(src, dst, owners)
    }

    /// Adds the owners of the blocks a clone of `src` gave `dst` (none to add while the ownership
    /// map is not built: building it walks the extents, these included). Every block must have
    /// been owned before, by the source, and none may be metadata.
    fn add_cloned_owners(
        &mut self,
        src: u64,
        dst: u64,
        owners: Option<Vec<(u64, u64, Owner)>>,
    ) -> std::result::Result<(), String> {
        let Some(owners) = owners else { return Ok(()) };
        let added = self.owners.add_runs(owners);
        if added.touched_metadata {
            return Err(format!("clone of inode {src} into {dst} onto metadata blocks"));
        }
        if added.newly_owned != 0 {
            return Err(format!("clone of inode {src} into {dst}: source blocks that nobody owned"));
        }
        Ok(())
    }

    /// Adds the entry `name` -> `ino` to directory `dir`.
    fn link(&mut self, dir: u64, name: &[u8], ino: u64) -> std::result::Result<(), String> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        let child_is_dir = named_child(dir, name, ino, self.inodes.get(&ino).map(|c| &**c))?.is_dir();
        let parent = match self.inodes.get_mut(&dir) {
            Some(d) if d.is_dir() => d,
            Some(_) => return Err(format!("inode {ino} is named in inode {dir}, which is not a directory")),
            None => return Err(format!("inode {ino} is named in missing directory {dir}")),
        };
        if let Some(&other) = parent.children().get(name) {
            return Err(format!(
                "directory {dir} already has an entry {:?} (inode {other}): a duplicate name",
                shown()
            ));
        }
        // One allocation of the name, for the entry and the inode's list of names.
        let name = Name::from(name);
        parent.children_mut().insert(name.clone(), ino);
        *parent.subdir_count_mut() += u64::from(child_is_dir);
        self.var_bytes += ENTRY_FIXED_BYTES + name.len() as u64;
        self.inodes.get_mut(&ino).expect("checked above").add_name(dir, name);
        Ok(())
    }

    /// Links the entries a checkpoint lists for directory `dir` (into a directory that has none
    /// yet), with the checks and errors of [`State::link`]. A checkpoint lists them as `children`
    /// iterates, sorted by name: the directory's map is then built in one pass instead of one
    /// descent per name. The decoder refuses entries out of order, but an image built in memory
    /// may hold them (or a name twice): those go through `link` one at a time, which says what is
    /// wrong with them.
    fn link_listed(&mut self, dir: u64, entries: Vec<(Vec<u8>, u64)>) -> std::result::Result<(), String> {
        let sorted_once = entries.windows(2).all(|w| w[0].0 < w[1].0);
        let empty_dir = self.inodes.get(&dir).is_some_and(|d| d.is_dir() && d.children().is_empty());
        if !sorted_once || !empty_dir {
            return entries.into_iter().try_for_each(|(name, child)| self.link(dir, &name, child));
        }
        // One allocation of each name, for the entry and the inode's list of names.
        let entries: Vec<(Name, u64)> =
            entries.into_iter().map(|(name, ino)| (Name::from(name), ino)).collect();
        let mut subdirs = 0;
        for (name, ino) in &entries {
            let child = self.inodes.get_mut(ino);
            named_child(dir, name, *ino, child.as_deref().map(|c| &**c))?;
            let child = child.expect("checked above");
            subdirs += u64::from(child.is_dir());
            child.add_name(dir, name.clone());
            self.var_bytes += ENTRY_FIXED_BYTES + name.len() as u64;
        }
        let parent = self.inodes.get_mut(&dir).expect("checked above");
        // Sorted input: the map is built leaf by leaf, with no search.
        *parent.children_mut() = entries.into_iter().collect();
        *parent.subdir_count_mut() += subdirs;
        Ok(())
    }

    /// Removes the entry `name` of directory `dir`, which must name `ino`.
    fn unlink(&mut self, dir: u64, name: &[u8], ino: u64) -> std::result::Result<(), String> {
        let holds = self.inodes.get(&dir).is_some_and(|d| d.is_dir() && d.children().get(name) == Some(&ino));
        if !holds {
            return Err(format!(
                "removal of entry {:?} -> inode {ino} that directory {dir} does not hold",
                String::from_utf8_lossy(name)
            ));
        }
        let child = self.inodes.get_mut(&ino).expect("entries name existing inodes");
        let at =
            child.names.iter().position(|(d, n)| *d == dir && **n == *name).expect("names mirror entries");
        child.remove_name(at);
        let child_is_dir = child.is_dir();
        let parent = self.inodes.get_mut(&dir).expect("checked above");
        parent.children_mut().remove(name);
        *parent.subdir_count_mut() -= u64::from(child_is_dir);
        self.var_bytes -= ENTRY_FIXED_BYTES + name.len() as u64;
        Ok(())
    }

    fn set_xattr(&mut self, ino: u64, name: &[u8], value: Option<&[u8]>) -> std::result::Result<(), String> {
        let inode =
            self.inodes.get_mut(&ino).ok_or_else(|| format!("extended attribute of missing inode {ino}"))?;
        let cost = |value: &[u8]| XATTR_FIXED_BYTES + name.len() as u64 + value.len() as u64;
        let old = match value {
            Some(v) => inode.xattrs_mut().insert(name.to_vec(), v.to_vec()),
            None => Some(inode.remove_xattr(name).ok_or_else(|| {
                format!(
                    "removal of extended attribute {:?} that inode {ino} does not have",
                    String::from_utf8_lossy(name)
                )
            })?),
        };
        if let Some(old) = old {
            self.var_bytes -= cost(&old);
        }
        if let Some(v) = value {
            self.var_bytes += cost(v);
        }
        Ok(())
    }

    fn put_inode(&mut self, attrs: &InodeAttrs) -> std::result::Result<(), String> {
        let ino = attrs.ino;
        if ino == 0 || ino == u64::MAX {
            return Err(format!("inode number {ino} cannot be handed out"));
        }
        match self.inodes.get_mut(&ino) {
            Some(inode) if inode.attrs.kind != attrs.kind => return Err(format!("inode {ino} changes kind")),
            Some(inode) => inode.attrs = attrs.clone(),
            None => {
                self.inodes.insert(ino, Box::new(Inode::new(attrs.clone())));
            }
        }
        self.next_ino = self.next_ino.max(ino + 1);
        Ok(())
    }

    fn free_inode(&mut self, ino: u64) -> std::result::Result<(), String> {
        let inode = self.inodes.get(&ino).ok_or_else(|| format!("free of missing inode {ino}"))?;
        if ino == ROOT_INO {
            return Err("free of the root directory".into());
        }
        if !inode.extents.is_empty() || !inode.children().is_empty() {
            return Err(format!("free of inode {ino} that still has blocks or entries"));
        }
        if !inode.names.is_empty() {
            return Err(format!("free of inode {ino} that a directory still names"));
        }
        self.var_bytes -= var_bytes_of_xattrs_and_target(inode.xattrs(), inode.target());
        self.inodes.remove(&ino);
        Ok(())
    }

    fn map(
        &mut self,
        ino: u64,
        file_block: u64,
        len: u64,
        phys: Option<u64>,
        mode: ApplyMode,
    ) -> std::result::Result<(), String> {
        if len == 0 || file_block.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE / BLOCK_SIZE) {
            return Err(format!("map of inode {ino}: bad range [{file_block}, +{len})"));
        }
        if let Some(p) = phys {
            check_pool_range(p, len, self.total_blocks)
                .map_err(|d| format!("map of inode {ino} onto {d}"))?;
            if mode == ApplyMode::Replay {
                self.map_target_problem(p, len).map_err(|d| format!("map of inode {ino} onto {d}"))?;
            }
        }
        // Built (if nothing has needed it yet) from the extents as they are before this change;
        // below it is reached through the field, built.
        let _ = self.owners_mut();
        let inode = self
            .inodes
            .get_mut(&ino)
            .filter(|i| i.attrs.kind == InodeKind::File)
            .ok_or_else(|| format!("map of missing or non-file inode {ino}"))?;
        let before = inode.extents.len() as u64;
        let removed = inode.extents.set(file_block, len, phys);
        let after = inode.extents.len() as u64;
        self.extent_count = self.extent_count + after - before;
        self.extent_changes =
            self.extent_changes.wrapping_add(removed.len() as u64 + u64::from(phys.is_some()));
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
            let added = self.owners.add(p, len, Owner::file(ino, file_block));
            if added.touched_metadata {
                return Err(format!("map of inode {ino} onto metadata blocks [{p}, +{len})"));
            }
            if mode == ApplyMode::Replay && claimed != added.newly_owned {
                return Err(format!("map of inode {ino} onto unaccounted pool blocks [{p}, +{len})"));
            }
        }
        for &piece in removed.iter() {
            let p = piece.phys.expect("removed pieces are mapped");
            let freed =
                self.owners.remove(p, piece.len, Owner::file(ino, piece.file_block)).map_err(|e| e.0)?;
            for (s, l) in freed {
                self.release_unless_quarantined(s, l);
            }
        }
        Ok(())
    }

    /// Applies `mutations` live (see [`State::apply`]), holding the blocks they free in
    /// [`State::held`] instead of freeing them: for operations that are not durable yet.
    pub fn apply_holding_frees(&mut self, mutations: &[Mutation]) -> Result<()> {
        self.hold_frees = true;
        let applied = mutations.iter().try_for_each(|m| self.apply(m, ApplyMode::Live));
        self.hold_frees = false;
        applied
    }

    /// The operations that freed the blocks in [`State::held`] are durable: the blocks become free
    /// (except those found bad meanwhile).
    pub fn release_held(&mut self) {
        debug_assert!(!self.hold_frees, "releasing held blocks while holding frees");
        for (start, len) in std::mem::take(&mut self.held) {
            self.release_unless_quarantined(start, len);
        }
    }

    /// Blocks in [`State::held`].
    pub fn held_blocks(&self) -> u64 {
        self.held.iter().map(|&(_, len)| len).sum()
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

    /// Frees `[start, start + len)` except the parts that are quarantined (the rest into
    /// [`State::held`] while [`State::hold_frees`] is set).
    pub fn release_unless_quarantined(&mut self, start: u64, len: u64) {
        let end = start + len;
        let mut cursor = start;
        let bad: Vec<(u64, u64)> =
            self.quarantine.range(..end).filter(|(&s, &l)| s + l > start).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in bad {
            if s > cursor {
                self.release_or_hold(cursor, s - cursor);
            }
            cursor = cursor.max(s + l);
        }
        if cursor < end {
            self.release_or_hold(cursor, end - cursor);
        }
    }

    /// Frees `[start, start + len)`, or holds it while [`State::hold_frees`] is set: a bad block
    /// is never held, so that it never counts as free ([`State::held_blocks`]).
    fn release_or_hold(&mut self, start: u64, len: u64) {
        if self.hold_frees {
            self.held.push((start, len));
        } else {
            self.free.release(start, len);
        }
    }

    /// Looks up an inode or fails with ENOENT naming it.
    pub fn inode(&self, ino: u64) -> Result<&Inode> {
        self.inodes.get(&ino).map(|i| &**i).ok_or_else(|| match self.partial {
            false => Error::NotFound(format!("inode {ino}")),
            true => {
                Error::Io(format!("inode {ino} was not read from the checkpoint of this lazily mounted pool"))
            }
        })
    }

    /// Whether this state holds only the inodes read so far of a lazily mounted pool (see
    /// `fs/lazy.rs`).
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// The state of a lazily mounted pool before any inode is read: its size, next inode number
    /// and bad blocks (each checked against the pool, as a whole mount checks them), no inode, no
    /// free space (nothing may be allocated from it).
    pub(super) fn partial(
        total_blocks: u64,
        next_ino: u64,
        quarantine: &[(u64, u64)],
    ) -> std::result::Result<Self, String> {
        let mut state = State {
            var_bytes: 0,
            total_blocks,
            inodes: IntMap::default(),
            owners: OwnerMap::awaiting_files(Vec::new()),
            free: FreeSpace::new(),
            quarantine: BTreeMap::new(),
            next_ino,
            extent_count: 0,
            extent_changes: 0,
            held: Vec::new(),
            hold_frees: false,
            changed: IntMap::default(),
            partial: true,
        };
        for &(start, len) in quarantine {
            check_pool_range(start, len, total_blocks).map_err(|d| format!("quarantine: {d}"))?;
            state.add_bad_blocks(start, len);
        }
        Ok(state)
    }

    /// Adds an inode read from the checkpoint to a partial state, named `name` in directory
    /// `dir` (the entry it was found through; `None` for the root), and checks it by itself: its
    /// extents against the pool, and every rule of [`State::inode_problems`] that needs no other
    /// inode. A directory's count of subdirectories is taken from its link count (the whole
    /// state is needed to count them). What is wrong, as text.
    pub(super) fn insert_read(
        &mut self,
        image: InodeImage,
        name: Option<(u64, Name)>,
    ) -> std::result::Result<(), String> {
        debug_assert!(self.partial, "only a partial state reads inodes one by one");
        let ino = image.attrs.ino;
        check_extent_list(&image.extents, self.total_blocks, &mut Vec::new())?;
        let mut inode = Inode::new(image.attrs);
        inode.extents = ExtentMap::from_list(image.extents);
        if !image.xattrs.is_empty() {
            *inode.xattrs_mut() = image.xattrs.into_iter().collect();
        }
        inode.set_target(image.target);
        if !image.entries.is_empty() {
            for (entry, _) in &image.entries {
                if let Some(problem) = super::validate::name_problem(entry) {
                    return Err(problem);
                }
            }
            *inode.children_mut() =
                image.entries.into_iter().map(|(n, child)| (Name::from(n), child)).collect();
        }
        if inode.is_dir() {
            *inode.subdir_count_mut() = u64::from(inode.attrs.nlink).saturating_sub(2);
        }
        if let Some((dir, name)) = name {
            inode.add_name(dir, name);
        }
        if let Some(problem) = self.problems_of(&inode).into_iter().next() {
            return Err(problem);
        }
        self.inodes.insert(ino, Box::new(inode));
        Ok(())
    }

    /// A path of an inode from the root (its first name at every step), or `None` if it has no
    /// name (unlinked but open).
    pub fn path_of(&self, ino: u64) -> Option<String> {
        if ino == ROOT_INO {
            return Some("/".into());
        }
        // Names are borrowed and joined once: this runs for every owner a reverse-map query reports.
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (dir, name) = self.inodes.get(&cur)?.names.first()?;
            parts.push(name);
            cur = *dir;
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

/// Checkpoint bytes of an inode's extended attributes and symlink target.
fn var_bytes_of_xattrs_and_target<'a>(
    xattrs: impl IntoIterator<Item = (&'a Vec<u8>, &'a Vec<u8>)>,
    target: &[u8],
) -> u64 {
    xattrs.into_iter().map(|(n, v)| XATTR_FIXED_BYTES + (n.len() + v.len()) as u64).sum::<u64>()
        + target.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_plain_file_inode_is_at_most_120_bytes_and_allocates_extras_only_once_one_is_set() {
        assert!(std::mem::size_of::<Inode>() <= 120, "{} bytes", std::mem::size_of::<Inode>());
        let attrs = InodeAttrs::empty_dir(5, 0o755, 0, 0, 0);
        let mut inode = Inode::new(InodeAttrs { kind: InodeKind::File, ..attrs });
        inode.set_target(Vec::new());
        assert_eq!(inode.remove_xattr(b"user.a"), None);
        assert!(inode.extra.is_none() && inode.children().is_empty() && inode.target().is_empty());
        let plain = inode.clone();
        inode.xattrs_mut().insert(b"user.a".to_vec(), b"1".to_vec());
        assert!(inode.extra.is_some() && inode != plain);
        assert_eq!(inode.remove_xattr(b"user.a"), Some(b"1".to_vec()));
        // An empty extra shows what no extra shows.
        assert_eq!(inode, plain);
    }

    #[test]
    fn a_mount_allocates_extras_only_for_inodes_that_have_entries_xattrs_or_a_target() {
        use crate::format::checkpoint::{InodeImage, StateImage};
        let attrs = |ino: u64, kind: InodeKind, nlink: u32, size: u64| InodeAttrs {
            kind,
            nlink,
            size,
            ..InodeAttrs::empty_dir(ino, 0o755, 0, 0, 0)
        };
        let image = |attrs,
                     extents: Vec<(u64, u64, u64)>,
                     entries: Vec<(&[u8], u64)>,
                     xattrs: Vec<(Vec<u8>, Vec<u8>)>| InodeImage {
            attrs,
            extents: extents.into(),
            entries: entries.into_iter().map(|(n, i)| (n.to_vec(), i)).collect(),
            xattrs,
            target: Vec::new(),
        };
        let root =
            image(attrs(1, InodeKind::Dir, 3, 0), vec![], vec![(b"d", 2), (b"f", 3), (b"x", 4)], vec![]);
        let empty_dir = image(attrs(2, InodeKind::Dir, 2, 0), vec![], vec![], vec![]);
        let file = image(attrs(3, InodeKind::File, 1, 8192), vec![(0, 100, 2)], vec![], vec![]);
        let with_xattr =
            image(attrs(4, InodeKind::File, 1, 0), vec![], vec![], vec![(b"user.k".to_vec(), b"v".to_vec())]);
        let state = State::from_image(
            StateImage { next_ino: 5, inodes: vec![root, empty_dir, file, with_xattr], quarantine: vec![] },
            1000,
            &[],
        )
        .unwrap();
        let extra = |ino: u64| state.inodes[&ino].extra.is_some();
        assert!(extra(1) && !extra(2) && !extra(3) && extra(4));
        assert_eq!(state.inodes[&1].children().len(), 3);
        assert_eq!(state.inodes[&4].xattrs().len(), 1);
    }

    #[test]
    fn a_whole_file_clone_into_an_empty_file_gives_what_a_clone_in_pieces_gives() {
        use crate::format::checkpoint::{InodeImage, StateImage};
        let inode = |ino: u64,
                     kind: InodeKind,
                     nlink: u32,
                     size: u64,
                     extents: Vec<(u64, u64, u64)>,
                     entries: Vec<(&[u8], u64)>| {
            InodeImage {
                attrs: InodeAttrs { kind, nlink, size, ..InodeAttrs::empty_dir(ino, 0o755, 0, 0, 0) },
                extents: extents.into(),
                entries: entries.into_iter().map(|(n, i)| (n.to_vec(), i)).collect(),
                xattrs: vec![],
                target: Vec::new(),
            }
        };
        let source = vec![(0, 100, 2), (4, 200, 3), (9, 300, 1)];
        let image = StateImage {
            next_ino: 6,
            inodes: vec![
                inode(1, InodeKind::Dir, 2, 0, vec![], vec![(b"a", 3), (b"b", 4), (b"c", 5)]),
                inode(3, InodeKind::File, 1, 40960, source.clone(), vec![]),
                inode(4, InodeKind::File, 1, 40960, vec![], vec![]),
                inode(5, InodeKind::File, 1, 40960, vec![], vec![]),
            ],
            quarantine: vec![],
        };
        for built in [false, true] {
            let mut state = State::from_image(image.clone(), 1000, &[]).unwrap();
            if built {
                state.owners();
            }
            let clone =
                |src_block, dst, dst_block, len| Mutation::Clone { src: 3, src_block, dst, dst_block, len };
            // The whole file at once into 4; into 5 in two pieces (the second one over a mapped
            // neighbour, so neither takes the whole-file path).
            for m in [clone(0, 4, 0, 10), clone(5, 5, 5, 5), clone(0, 5, 0, 5)] {
                state.apply(&m, ApplyMode::Live).unwrap();
            }
            let extents =
                |ino: u64| state.inodes[&ino].extents.iter().map(|(fb, e)| (fb, e.phys, e.len)).collect();
            let (four, five): (Vec<_>, Vec<_>) = (extents(4), extents(5));
            assert_eq!(four, source, "built: {built}");
            assert_eq!(five, source, "built: {built}");
            assert_eq!(state.extent_count, 9);
            // The ownership map, kept up to date or built now, is the one built from the extents.
            let rebuilt = State::from_image(state.to_image(), 1000, &[]).unwrap();
            assert_eq!(format!("{:?}", state.owners()), format!("{:?}", rebuilt.owners()), "built: {built}");
            // Pool block 201 is file block 5 of all three files.
            let (start, segment) = state.owners().overlapping(201, 1).next().unwrap();
            let owners: Vec<(u64, u64)> = segment
                .owners
                .iter()
                .map(|o| match *o {
                    Owner::File { ino, file_block } => (ino.get(), file_block + (201 - start)),
                    Owner::Meta(m) => panic!("block 201 owned by {m}"),
                })
                .collect();
            assert_eq!(owners, [(3, 5), (4, 5), (5, 5)], "built: {built}");
        }
    }

    #[test]
    fn a_mount_refuses_sorted_entries_with_the_errors_link_gives() {
        use crate::format::checkpoint::{InodeImage, StateImage};
        let dir = |ino: u64, nlink: u32, entries: Vec<(&[u8], u64)>| InodeImage {
            attrs: InodeAttrs { nlink, ..InodeAttrs::empty_dir(ino, 0o755, 0, 0, 0) },
            extents: Default::default(),
            entries: entries.into_iter().map(|(n, i)| (n.to_vec(), i)).collect(),
            xattrs: vec![],
            target: Vec::new(),
        };
        let mount = |inodes: Vec<InodeImage>| match State::from_image(
            StateImage { next_ino: 10, inodes, quarantine: vec![] },
            1000,
            &[],
        ) {
            Ok(_) => "mounted".to_string(),
            Err(e) => e.to_string(),
        };
        let missing = mount(vec![dir(1, 2, vec![(b"a", 9)])]);
        assert!(missing.contains("entry \"a\" of directory 1 names missing inode 9"), "{missing}");
        let root = mount(vec![dir(1, 3, vec![(b"d", 2)]), dir(2, 2, vec![(b"up", 1)])]);
        assert!(root.contains("entry \"up\" of directory 2 names the root directory"), "{root}");
        let twice = mount(vec![dir(1, 3, vec![(b"d", 2), (b"e", 2)]), dir(2, 2, vec![])]);
        assert!(twice.contains("directory 2 gets a second name \"e\" in directory 1"), "{twice}");
    }

    /// Runs `(start, len)` of a small pool, lengths 0 to 5.
    fn runs(max: usize) -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec((0u64..200, 0u64..6), 0..max)
    }

    proptest! {
        /// The sweep says a file run shares a block with a metadata run exactly when some pair of
        /// them does (checked pair by pair), with runs of any length, zero included, overlapping
        /// among themselves or not.
        #[test]
        fn files_meet_metadata_is_true_exactly_when_some_pair_shares_a_block(
            mut files in runs(40),
            meta in runs(12),
        ) {
            files.sort();
            let meta: Vec<(u64, u64, MetaStructure)> =
                meta.into_iter().map(|(s, l)| (s, l, MetaStructure::Log)).collect();
            let pairwise = files.iter().any(|&(fs, fl)| {
                meta.iter().any(|&(ms, ml, _)| fs.max(ms) < (fs + fl).min(ms + ml))
            });
            prop_assert_eq!(files_meet_metadata(&files, &meta), pairwise);
        }
    }

    /// Blocks of the pool of the checkpoint property below.
    const TOTAL: u64 = 120;

    /// Superblocks, a log at 2, a mirror log at 100 and checkpoint chain blocks, one inside the
    /// log (a corrupt chain) and two side by side.
    fn meta() -> Vec<(u64, u64, MetaStructure)> {
        vec![
            (0, 1, MetaStructure::Superblock(0)),
            (1, 1, MetaStructure::Superblock(1)),
            (2, 10, MetaStructure::Log),
            (100, 10, MetaStructure::LogMirror),
            (5, 1, MetaStructure::Checkpoint),
            (60, 1, MetaStructure::Checkpoint),
            (61, 1, MetaStructure::CheckpointMirror),
        ]
    }

    /// A regular file `ino` mapping the pool runs `extents`, in file order with a hole after each.
    fn file(ino: u64, extents: &[(u64, u64)]) -> InodeImage {
        let mut attrs = InodeAttrs::empty_dir(ino, 0o644, 0, 0, 0);
        attrs.kind = InodeKind::File;
        attrs.nlink = 1;
        // File blocks with a hole between extents, so none merges with the one before.
        let mut fb = 0;
        let mut triples = Vec::new();
        for &(phys, len) in extents {
            triples.push((fb, phys, len));
            fb += len + 1;
        }
        attrs.size = fb * BLOCK_SIZE;
        InodeImage { attrs, extents: triples.into(), ..InodeImage::default() }
    }

    #[test]
    fn a_checkpoint_whose_extents_are_not_canonical_is_refused_naming_the_inode_decoded_or_packed() {
        let root = InodeImage {
            attrs: InodeAttrs { nlink: 2, ..InodeAttrs::empty_dir(ROOT_INO, 0o755, 0, 0, 0) },
            entries: vec![(b"f".to_vec(), 2)],
            ..InodeImage::default()
        };
        type Triples = Vec<(u64, u64, u64)>;
        let bad_lists: [(&str, Triples); 4] = [
            ("overlapping", vec![(0, 20, 2), (1, 30, 1)]),
            ("unmerged", vec![(0, 20, 2), (2, 22, 1)]),
            ("descending", vec![(4, 20, 1), (0, 30, 1)]),
            ("the same file block twice", vec![(0, 20, 1), (0, 30, 1)]),
        ];
        for (what, extents) in bad_lists {
            let mut attrs = InodeAttrs::empty_dir(2, 0o644, 0, 0, 0);
            attrs.kind = InodeKind::File;
            attrs.nlink = 1;
            let bad = InodeImage { attrs, extents: extents.into(), ..InodeImage::default() };
            let image = StateImage { next_ino: 3, inodes: vec![root.clone(), bad], quarantine: vec![] };
            let packed = StateImage::decode_sharing(std::sync::Arc::new(image.encode())).unwrap();
            assert!(packed.inodes[1].extents.len() == 2, "{what}: decoded as it was written");
            for (how, image) in [("decoded", image), ("packed", packed)] {
                let err = State::from_image(image, TOTAL, &meta()).expect_err(what).to_string();
                assert_eq!(
                    err, "Structure needs cleaning: checkpoint: inode 2: extents overlap or are unmerged",
                    "{what}, {how}"
                );
            }
        }
    }

    proptest! {
        /// Any checkpoint of files whose extents lie anywhere in the pool (on metadata, on each
        /// other, on bad blocks) either loads with every block free exactly when no extent,
        /// metadata run or bad run holds it, or is refused; it is refused for lying on metadata
        /// exactly when some extent shares a block with a metadata run; mount never panics.
        #[test]
        fn a_checkpoint_loads_with_the_complement_as_free_space_or_is_refused_for_metadata_exactly_on_overlap(
            files in proptest::collection::vec(
                proptest::collection::vec((2u64..TOTAL - 8, 1u64..8), 0..4), 0..5),
            quarantine in proptest::collection::vec((2u64..TOTAL - 8, 1u64..8), 0..3),
        ) {
            let meta = meta();
            let mut root = InodeImage {
                attrs: InodeAttrs::empty_dir(ROOT_INO, 0o755, 0, 0, 0),
                ..InodeImage::default()
            };
            let mut inodes = Vec::new();
            for (i, extents) in files.iter().enumerate() {
                let ino = ROOT_INO + 1 + i as u64;
                root.entries.push((format!("f{i}").into_bytes(), ino));
                inodes.push(file(ino, extents));
            }
            inodes.insert(0, root);
            let image = StateImage {
                next_ino: ROOT_INO + 1 + files.len() as u64,
                inodes,
                quarantine: quarantine.clone(),
            };
            let on_meta = files.iter().flatten().any(|&(p, l)| {
                meta.iter().any(|&(s, n, _)| p.max(s) < (p + l).min(s + n))
            });
            match State::from_image(image, TOTAL, &meta) {
                Err(e) => {
                    prop_assert!(on_meta, "refused without an extent on metadata: {}", e);
                    prop_assert!(e.to_string().contains("overlap"), "refused for another reason: {}", e);
                }
                Ok(state) => {
                    prop_assert!(!on_meta, "loaded with an extent on metadata");
                    let mut used = vec![false; TOTAL as usize];
                    let runs = meta
                        .iter()
                        .map(|&(s, n, _)| (s, n))
                        .chain(files.iter().flatten().copied())
                        .chain(quarantine.iter().copied());
                    for (s, n) in runs {
                        (s..s + n).for_each(|b| used[b as usize] = true);
                    }
                    let mut free = vec![false; TOTAL as usize];
                    for (s, n) in state.free.runs() {
                        for b in s..s + n {
                            prop_assert!(!free[b as usize], "block {} free twice", b);
                            free[b as usize] = true;
                        }
                    }
                    for b in 0..TOTAL as usize {
                        prop_assert_eq!(free[b], !used[b], "block {}", b);
                    }
                }
            }
        }
    }
}
