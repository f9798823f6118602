//! The ownership map: reference counts and the reverse map in one structure.
//!
//! Owns, for every used pool block, the exact set of its owners: (inode, file block) pairs and
//! metadata structures. The pool's used blocks are cut into *segments*, maximal runs over which the
//! owner set does not change; a segment stores each file owner by the file block of its first pool
//! block. So the reference count of a block is its segment's owner count, and "who owns pool range
//! R" is a range query: O(log n + segments + owners), never a scan of files.
//!
//! Invariant (checked by `fs::check`): segments never overlap, never are empty, and two touching
//! segments never carry the same owners (they would have been merged), which makes the map
//! canonical: rebuilding it from the forward maps must give an identical map.
//!
//! Must never: decide allocation (free space is `alloc`'s), or hold owners that the forward maps do
//! not have once an operation has finished.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::{Mutex, OnceLock};

/// Which metadata structure uses a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaStructure {
    /// Superblock copy 0 or 1.
    Superblock(u8),
    /// The log region.
    Log,
    /// The log mirror: a second region holding the same records.
    LogMirror,
    /// A block of the current checkpoint (chain 0).
    Checkpoint,
    /// A block of the current checkpoint's mirror (chain 1).
    CheckpointMirror,
}

impl std::fmt::Display for MetaStructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaStructure::Superblock(copy) => write!(f, "superblock copy {copy}"),
            MetaStructure::Log => write!(f, "log"),
            MetaStructure::LogMirror => write!(f, "log mirror"),
            MetaStructure::Checkpoint => write!(f, "checkpoint"),
            MetaStructure::CheckpointMirror => write!(f, "checkpoint mirror"),
        }
    }
}

/// One owner of a block. For file owners, `file_block` is the file block that maps the *first*
/// block of the segment (or of the range being added or removed). 16 bytes: an inode number is
/// never 0, so that value tells a metadata owner apart (segments shared by many files hold one
/// per sharer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A file's data.
    File {
        /// The inode.
        ino: NonZeroU64,
        /// The file block mapping the first block of the run.
        file_block: u64,
    },
    /// A metadata structure.
    Meta(MetaStructure),
}

impl Owner {
    /// File block `file_block` of inode `ino`.
    ///
    /// # Panics
    /// When `ino` is 0, which no inode is (mount refuses one).
    pub fn file(ino: u64, file_block: u64) -> Owner {
        Owner::File { ino: NonZeroU64::new(ino).expect("inode numbers are never 0"), file_block }
    }

    /// The same owner seen `delta` blocks earlier along the run, if the file block allows it.
    fn unshifted(self, delta: u64) -> Option<Owner> {
        match self {
            Owner::File { ino, file_block } => {
                file_block.checked_sub(delta).map(|file_block| Owner::File { ino, file_block })
            }
            meta => Some(meta),
        }
    }

    /// The same owner seen `delta` blocks further along the run.
    fn shifted(self, delta: u64) -> Owner {
        match self {
            Owner::File { ino, file_block } => Owner::File { ino, file_block: file_block + delta },
            meta => meta,
        }
    }
}

/// What [`OwnerMap::add`] found on its way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddOutcome {
    /// Blocks that had no owner before.
    pub newly_owned: u64,
    /// Some block of the range was owned by a metadata structure.
    pub touched_metadata: bool,
}

/// A run of pool blocks with one owner set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Number of blocks.
    pub len: u64,
    /// The owners, sorted (duplicates only transiently, inside one `Map` mutation).
    pub owners: Owners,
}

/// A segment's owners, used as a slice. One owner (a block of one file, the usual case) is kept
/// inline, with nothing on the heap; more are one exactly sized heap list. Both take the 24 bytes
/// of a `Vec`, so a private extent costs its segment no allocation at all.
#[derive(Clone)]
pub struct Owners(OwnersRepr);

#[derive(Clone)]
enum OwnersRepr {
    One(Owner),
    /// Any other number (none: transiently, before the segment goes).
    Many(Box<[Owner]>),
}

impl Owners {
    /// A list of one owner.
    pub fn one(owner: Owner) -> Owners {
        Owners(OwnersRepr::One(owner))
    }

    /// The owners as a slice.
    pub fn as_slice(&self) -> &[Owner] {
        self
    }

    /// Inserts `owner` at index `at` (at most the length).
    pub fn insert(&mut self, at: usize, owner: Owner) {
        let mut list = Vec::with_capacity(self.len() + 1);
        list.extend_from_slice(&self[..at]);
        list.push(owner);
        list.extend_from_slice(&self[at..]);
        *self = Owners::from(list);
    }

    /// Removes and returns the owner at index `at` (below the length).
    pub fn remove(&mut self, at: usize) -> Owner {
        let removed = self[at];
        let kept: Vec<Owner> = self.iter().enumerate().filter(|&(i, _)| i != at).map(|(_, &o)| o).collect();
        *self = Owners::from(kept);
        removed
    }
}

impl From<Vec<Owner>> for Owners {
    fn from(list: Vec<Owner>) -> Owners {
        match list[..] {
            [only] => Owners::one(only),
            _ => Owners(OwnersRepr::Many(list.into_boxed_slice())),
        }
    }
}

impl FromIterator<Owner> for Owners {
    fn from_iter<I: IntoIterator<Item = Owner>>(iter: I) -> Owners {
        Owners::from(iter.into_iter().collect::<Vec<Owner>>())
    }
}

impl std::ops::Deref for Owners {
    type Target = [Owner];

    fn deref(&self) -> &[Owner] {
        match &self.0 {
            OwnersRepr::One(owner) => std::slice::from_ref(owner),
            OwnersRepr::Many(list) => list,
        }
    }
}

impl std::ops::DerefMut for Owners {
    fn deref_mut(&mut self) -> &mut [Owner] {
        match &mut self.0 {
            OwnersRepr::One(owner) => std::slice::from_mut(owner),
            OwnersRepr::Many(list) => list,
        }
    }
}

impl<'a> IntoIterator for &'a Owners {
    type Item = &'a Owner;
    type IntoIter = std::slice::Iter<'a, Owner>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Owners {
    fn eq(&self, other: &Owners) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Owners {}

impl PartialEq<Vec<Owner>> for Owners {
    fn eq(&self, other: &Vec<Owner>) -> bool {
        self[..] == other[..]
    }
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// An error meaning the forward maps and the ownership map disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipMismatch(pub String);

/// Whether segment `a` (of `a_len` blocks) continues into a touching segment with `next_owners`:
/// the same owners, each one `a_len` blocks further along (then the two must be one segment).
fn continues(a: &Segment, a_len: u64, next_owners: &[Owner]) -> bool {
    a.owners.len() == next_owners.len()
        && a.owners.iter().zip(next_owners).all(|(p, n)| p.shifted(a_len) == *n)
}

/// See the module documentation.
///
/// The segments may be built on first use: a map made by [`OwnerMap::awaiting_files`] (a
/// mount's) keeps only the metadata runs; its owner (`State`) hands it every file's extents when
/// something first needs it ([`OwnerMap::build_with`]), so a command that never asks who owns
/// what nor frees a block (a reflink into a new file, a read, a listing) neither builds the map
/// nor copies its runs. Anything but `build_with`, `is_built`, `used_runs`, `clone` and `Debug`
/// on a map not built yet is a bug, and panics.
#[derive(Default)]
pub struct OwnerMap {
    segments: OnceLock<BTreeMap<u64, Segment>>,
    /// The metadata runs, while `segments` is unset.
    deferred: Mutex<Vec<(u64, u64, Owner)>>,
}

impl Clone for OwnerMap {
    fn clone(&self) -> Self {
        // The runs' lock first: a build in progress holds it until its segments are set.
        let runs = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        match self.segments.get() {
            Some(segments) => {
                OwnerMap { segments: OnceLock::from(segments.clone()), deferred: Mutex::default() }
            }
            None => OwnerMap::awaiting_files(runs.clone()),
        }
    }
}

impl PartialEq for OwnerMap {
    fn eq(&self, other: &Self) -> bool {
        self.segs() == other.segs()
    }
}

impl Eq for OwnerMap {}

impl std::fmt::Debug for OwnerMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never builds: a map awaiting its files cannot build itself.
        match self.segments.get() {
            Some(segments) => f.debug_struct("OwnerMap").field("segments", segments).finish(),
            None => f.debug_struct("OwnerMap").field("unbuilt, runs", &self.deferred).finish(),
        }
    }
}

impl OwnerMap {
    /// An empty map: no block is used.
    pub fn new() -> Self {
        OwnerMap { segments: OnceLock::from(BTreeMap::new()), deferred: Mutex::default() }
    }

    /// The map of these metadata runs and of the file runs that [`OwnerMap::build_with`] will be
    /// given: until then it is unbuilt (see [`OwnerMap`] for what may be asked of it meanwhile).
    pub fn awaiting_files(meta_runs: Vec<(u64, u64, Owner)>) -> Self {
        OwnerMap { segments: OnceLock::new(), deferred: Mutex::new(meta_runs) }
    }

    /// Builds the map, if it is not built yet, from its runs and the runs `file_runs` returns
    /// (called only then). Concurrent callers wait for one build; the runs stay under their lock
    /// until the segments are set.
    pub fn build_with(&self, file_runs: impl FnOnce() -> Vec<(u64, u64, Owner)>) {
        if self.segments.get().is_some() {
            return;
        }
        let mut runs = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        if self.segments.get().is_none() {
            runs.extend(file_runs());
            let _ = self.segments.set(sweep(&mut runs));
            *runs = Vec::new();
        }
    }

    /// Whether the segments exist yet (a map [awaiting its files](OwnerMap::awaiting_files) that
    /// nothing has needed has none).
    pub fn is_built(&self) -> bool {
        self.segments.get().is_some()
    }

    /// The segments (the map must be built: see [`OwnerMap::build_with`]).
    fn segs(&self) -> &BTreeMap<u64, Segment> {
        self.segments.get().expect("an ownership map awaiting its files is built only by build_with")
    }

    /// The segments to change (the map must be built).
    fn segs_mut(&mut self) -> &mut BTreeMap<u64, Segment> {
        self.segments.get_mut().expect("an ownership map awaiting its files is built only by build_with")
    }

    /// The map of exactly these runs, as (first pool block, length, owner of that first block):
    /// what adding them one by one gives, built in one sweep over the runs sorted by pool block.
    /// Empty runs are ignored.
    pub fn from_runs(mut runs: Vec<(u64, u64, Owner)>) -> Self {
        OwnerMap { segments: OnceLock::from(sweep(&mut runs)), deferred: Mutex::default() }
    }

    /// Every used run as (first block, length), ascending by first block: the segments, or, on a
    /// map not built yet, only its metadata runs as given (nothing is built for this).
    pub fn used_runs(&self) -> Vec<(u64, u64)> {
        // The runs' lock first: a build in progress holds it until its segments are set.
        let deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        match self.segments.get() {
            Some(segments) => segments.iter().map(|(&start, seg)| (start, seg.len)).collect(),
            None => {
                let mut runs: Vec<(u64, u64)> =
                    deferred.iter().filter(|r| r.1 > 0).map(|&(start, len, _)| (start, len)).collect();
                runs.sort_unstable();
                runs
            }
        }
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segs().len()
    }

    /// Every segment as (first pool block, segment), ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        self.segs().iter().map(|(&b, s)| (b, s))
    }

    /// Segments overlapping `[block, block + len)`, as (first block, segment), ascending.
    pub fn overlapping(&self, block: u64, len: u64) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        let end = block.saturating_add(len);
        let segments = self.segs();
        let first = segments
            .range(..=block)
            .next_back()
            .filter(|(&s, seg)| s + seg.len > block)
            .map(|(&s, _)| s)
            .unwrap_or(block);
        segments.range(first..end).map(|(&b, s)| (b, s))
    }

    /// The first metadata structure owning a block of `[block, block + len)`, if any.
    pub fn metadata_in(&self, block: u64, len: u64) -> Option<MetaStructure> {
        self.overlapping(block, len).find_map(|(_, seg)| {
            seg.owners.iter().find_map(|o| match o {
                Owner::Meta(structure) => Some(*structure),
                Owner::File { .. } => None,
            })
        })
    }

    /// The first block of `[block, block + len)` that nobody owns, if any.
    pub fn first_unowned(&self, block: u64, len: u64) -> Option<u64> {
        let end = block.saturating_add(len);
        let mut cursor = block;
        for (start, seg) in self.overlapping(block, len) {
            if start > cursor {
                return Some(cursor);
            }
            cursor = cursor.max(start + seg.len);
        }
        (cursor < end).then_some(cursor)
    }

    /// The number of owners of `block` (0 when unused).
    pub fn refcount(&self, block: u64) -> usize {
        self.overlapping(block, 1).next().map_or(0, |(_, s)| s.owners.len())
    }

    /// Adds `owner` to every block of `[block, block + len)`.
    ///
    /// Only the two ends of the range can become mergeable: inside it, every segment gains the same
    /// (shifted) owner, so neighbours that differed before still differ, and a new segment for a
    /// gap has one owner while its used neighbours now have two or more.
    pub fn add(&mut self, block: u64, len: u64, owner: Owner) -> AddOutcome {
        debug_assert!(len > 0);
        let end = block + len;
        // Fresh blocks first: every write maps some, and the test costs one descent.
        if let Some(outcome) = self.add_to_gap(block, len, owner) {
            return outcome;
        }
        if let Some(outcome) = self.add_to_exact_segment(block, len, owner) {
            return outcome;
        }
        self.split_at(block);
        self.split_at(end);
        let mut cursor = block;
        let mut gaps = Vec::new();
        let mut outcome = AddOutcome::default();
        for (&start, seg) in self.segs_mut().range_mut(block..end) {
            if start > cursor {
                gaps.push((cursor, start - cursor));
            }
            outcome.touched_metadata |= seg.owners.iter().any(|o| matches!(o, Owner::Meta(_)));
            let o = owner.shifted(start - block);
            let at = seg.owners.binary_search(&o).unwrap_or_else(|i| i);
            seg.owners.insert(at, o);
            cursor = start + seg.len;
        }
        if cursor < end {
            gaps.push((cursor, end - cursor));
        }
        for (start, glen) in gaps {
            outcome.newly_owned += glen;
            self.segs_mut()
                .insert(start, Segment { len: glen, owners: Owners::one(owner.shifted(start - block)) });
        }
        self.merge_ends(block, end);
        outcome
    }

    /// Adds each run `(first pool block, length, owner of that block)`, as [`OwnerMap::add`] of
    /// each would, and says what that found. Runs that cover exactly one segment (a reflink of
    /// whole extents: the usual case) are placed in one ordered walk over the map instead of a
    /// descent each; the rest take `add`.
    pub fn add_runs(&mut self, mut runs: Vec<(u64, u64, Owner)>) -> AddOutcome {
        runs.sort_unstable_by_key(|&(block, _, _)| block);
        let mut outcome = AddOutcome::default();
        let mut rest = Vec::new();
        let mut merges = Vec::new();
        let Some(&(lo, _, _)) = runs.first() else { return outcome };
        // From the segment before the first run, so the boundary at its start is seen too.
        let from = self.segs_mut().range(..lo).next_back().map_or(lo, |(&s, _)| s);
        let mut walk = self.segs_mut().range_mut(from..);
        let mut prev: Option<(u64, &mut Segment)> = None;
        let mut prev_gained = false;
        let mut next_run = 0;
        // Segments walked past without a run: bounded, so a few runs spread over a huge map cost
        // descents rather than a walk over everything between them.
        let mut idle_budget = 4 * runs.len() + 1024;
        for (&start, seg) in walk.by_ref() {
            while next_run < runs.len() && runs[next_run].0 < start {
                rest.push(runs[next_run]);
                next_run += 1;
            }
            let mut gained = false;
            while next_run < runs.len() && runs[next_run].0 == start {
                let (block, len, owner) = runs[next_run];
                if len == seg.len {
                    outcome.touched_metadata |= seg.owners.iter().any(|o| matches!(o, Owner::Meta(_)));
                    let at = seg.owners.binary_search(&owner).unwrap_or_else(|i| i);
                    seg.owners.insert(at, owner);
                    gained = true;
                } else {
                    rest.push((block, len, owner));
                }
                next_run += 1;
            }
            if gained || prev_gained {
                if let Some((pstart, p)) = &prev {
                    if pstart + p.len == start && continues(p, p.len, &seg.owners) {
                        merges.push(start);
                    }
                }
            }
            let done = next_run == runs.len() && !gained;
            if !gained {
                idle_budget = idle_budget.saturating_sub(1);
            }
            if done || idle_budget == 0 {
                break;
            }
            prev = Some((start, seg));
            prev_gained = gained;
        }
        rest.extend_from_slice(&runs[next_run..]);
        // Owner sets that now continue their predecessor's: merged in order, so a chain of them
        // ends as one segment.
        for start in merges {
            self.merge_into_predecessor(start);
        }
        for (block, len, owner) in rest {
            let added = self.add(block, len, owner);
            outcome.newly_owned += added.newly_owned;
            outcome.touched_metadata |= added.touched_metadata;
        }
        outcome
    }

    /// Fast path of `add` when one segment covers exactly the range (a reflink of whole extents).
    /// One B-tree descent finds the segment and both neighbours.
    fn add_to_exact_segment(&mut self, block: u64, len: u64, owner: Owner) -> Option<AddOutcome> {
        let end = block + len;
        let mut it = self.segs_mut().range_mut(..=end).rev();
        let (mut next, mut here) = (None, None);
        for (&start, seg) in it.by_ref() {
            if start == end && next.is_none() && here.is_none() {
                next = Some(seg);
                continue;
            }
            if start == block && seg.len == len {
                here = Some(seg);
            }
            break;
        }
        let here = here?;
        let touched_metadata = here.owners.iter().any(|o| matches!(o, Owner::Meta(_)));
        let at = here.owners.binary_search(&owner).unwrap_or_else(|i| i);
        here.owners.insert(at, owner);
        let merge_next = next.is_some_and(|n| continues(here, len, &n.owners));
        let merge_prev = match it.next() {
            Some((&pstart, prev)) => pstart + prev.len == block && continues(prev, prev.len, &here.owners),
            None => false,
        };
        if merge_next {
            let n = self.segs_mut().remove(&end).expect("seen").len;
            self.segs_mut().get_mut(&block).expect("seen").len += n;
        }
        if merge_prev {
            self.merge_into_predecessor(block);
        }
        Some(AddOutcome { newly_owned: 0, touched_metadata })
    }

    /// Fast path of `add` when no block of the range has an owner (a freshly allocated run).
    fn add_to_gap(&mut self, block: u64, len: u64, owner: Owner) -> Option<AddOutcome> {
        let end = block + len;
        let mut it = self.segs_mut().range(..=end).rev();
        let mut next_continues = false;
        let mut prev_continues = false;
        for (&start, seg) in it.by_ref() {
            if start == end {
                next_continues = seg.owners.len() == 1 && seg.owners[0] == owner.shifted(len);
                continue;
            }
            if start + seg.len > block {
                return None; // something in the range is owned
            }
            prev_continues =
                start + seg.len == block && seg.owners.len() == 1 && seg.owners[0].shifted(seg.len) == owner;
            break;
        }
        let next_len = if next_continues { self.segs_mut().remove(&end).map_or(0, |s| s.len) } else { 0 };
        if prev_continues {
            let (_, prev) = self.segs_mut().range_mut(..block).next_back().expect("seen");
            prev.len += len + next_len;
        } else {
            self.segs_mut().insert(block, Segment { len: len + next_len, owners: Owners::one(owner) });
        }
        Some(AddOutcome { newly_owned: len, touched_metadata: false })
    }

    /// Removes one instance of `owner` from every block of `[block, block + len)`. Returns the
    /// runs that no longer have any owner (now free).
    pub fn remove(
        &mut self,
        block: u64,
        len: u64,
        owner: Owner,
    ) -> Result<Vec<(u64, u64)>, OwnershipMismatch> {
        debug_assert!(len > 0);
        let end = block + len;
        if let Some(freed) = self.remove_inside_one_segment(block, len, owner) {
            return Ok(freed);
        }
        self.split_at(block);
        self.split_at(end);
        let mut cursor = block;
        let mut emptied = Vec::new();
        let mut failure = None;
        for (&start, seg) in self.segs_mut().range_mut(block..end) {
            if start != cursor {
                failure = Some(format!("pool blocks [{cursor}, {start}) have no owner"));
                break;
            }
            let o = owner.shifted(start - block);
            match seg.owners.binary_search(&o) {
                Ok(i) => {
                    seg.owners.remove(i);
                }
                Err(_) => {
                    failure = Some(format!("pool block {start} is not owned by {o:?}"));
                    break;
                }
            }
            if seg.owners.is_empty() {
                emptied.push((start, seg.len));
            }
            cursor = start + seg.len;
        }
        if failure.is_none() && cursor != end {
            failure = Some(format!("pool blocks [{cursor}, {end}) have no owner"));
        }
        for &(start, _) in &emptied {
            self.segs_mut().remove(&start);
        }
        // As in `add`, only the ends can become mergeable.
        self.merge_ends(block, end);
        match failure {
            Some(detail) => Err(OwnershipMismatch(detail)),
            None => Ok(coalesce(emptied)),
        }
    }

    /// Fast path of `remove` when the range lies inside one segment (a copy-on-write of part of a
    /// shared run, or of all of a segment that earlier copies cut out): the segment splits in two
    /// or three, or loses the owner whole. A middle part lacks an owner its split-off neighbours
    /// have, so it cannot merge with them; where it touches the segment's own end it may merge with
    /// the segment beyond. One descent finds the segment and both neighbours, so every merge is
    /// decided from what it saw (no descent per boundary), and a part that merges into the
    /// segment after it takes that one's owner list instead of building its own. Returns `None`
    /// (changing nothing) to take the general path.
    fn remove_inside_one_segment(&mut self, block: u64, len: u64, owner: Owner) -> Option<Vec<(u64, u64)>> {
        let end = block + len;
        let mut segments = self.segs_mut().range_mut(..=end).rev();
        let mut next = None;
        let (start, seg) = loop {
            let (&start, seg) = segments.next()?;
            if start == end && next.is_none() {
                next = Some(seg);
                continue;
            }
            break (start, seg);
        };
        let seg_end = start + seg.len;
        if start > block || seg_end < end {
            return None;
        }
        // Only a segment that starts where this one ends touches it.
        let next = next.filter(|_| seg_end == end);
        let prev = segments.next().filter(|(&pstart, p)| pstart + p.len == start).map(|(_, p)| p);
        let relative = owner.unshifted(block - start)?;
        let index = seg.owners.binary_search(&relative).ok()?;
        // The owners the range keeps, seen from its first block (shifting keeps them sorted).
        let kept = |owners: &[Owner]| without(owners, index, block - start).collect::<Owners>();
        let freed = seg.owners.len() == 1;
        if start == block && seg_end > end {
            // The head of a segment (a sequential copy-on-write): when the owners left there
            // continue the segment before, that one grows over the range and the rest of this one
            // moves up, its list shifted in place, with no list built.
            if let Some(prev) = prev {
                if prev.owners.len() + 1 == seg.owners.len()
                    && prev
                        .owners
                        .iter()
                        .zip(without(&seg.owners, index, 0))
                        .all(|(p, n)| p.shifted(prev.len) == n)
                {
                    prev.len += len;
                    self.move_up(block, len);
                    return Some(Vec::new());
                }
            }
            if freed {
                self.move_up(block, len);
                return Some(vec![(block, len)]);
            }
            // Otherwise the range keeps the key with a list of its own, and the rest takes the
            // segment's list, shifted in place, to its new start.
            let middle = kept(&seg.owners);
            let mut rest = std::mem::replace(&mut seg.owners, middle);
            rest.iter_mut().for_each(|o| *o = o.shifted(len));
            seg.len = len;
            self.segs_mut().insert(end, Segment { len: seg_end - end, owners: rest });
            return Some(Vec::new());
        }
        if start == block {
            // The whole segment (it ends at `end`).
            if freed {
                self.segs_mut().remove(&block);
                return Some(vec![(block, len)]);
            }
            seg.owners.remove(index);
            let next_len = next.filter(|n| continues(seg, len, &n.owners)).map(|n| n.len);
            match prev.filter(|p| continues(p, p.len, &seg.owners)) {
                Some(prev) => {
                    prev.len += len + next_len.unwrap_or(0);
                    self.segs_mut().remove(&block);
                }
                None => seg.len += next_len.unwrap_or(0),
            }
            if next_len.is_some() {
                self.segs_mut().remove(&end);
            }
            return Some(Vec::new());
        }
        // The range starts inside the segment, which keeps its head.
        let tail = (seg_end > end).then(|| Segment {
            len: seg_end - end,
            owners: seg.owners.iter().map(|o| o.shifted(end - start)).collect(),
        });
        seg.len = block - start;
        if freed {
            if let Some(tail) = tail {
                self.segs_mut().insert(end, tail);
            }
            return Some(vec![(block, len)]);
        }
        if let Some(tail) = tail {
            let middle = Segment { len, owners: kept(&seg.owners) };
            self.segs_mut().insert(block, middle);
            self.segs_mut().insert(end, tail);
            return Some(Vec::new());
        }
        // The range reaches the segment's end: it may continue into the segment beyond, which
        // then moves down over it with its own list.
        let joins_next = next.is_some_and(|n| {
            n.owners.len() + 1 == seg.owners.len()
                && without(&seg.owners, index, block - start)
                    .zip(&n.owners)
                    .all(|(m, o)| m.shifted(len) == *o)
        });
        if joins_next {
            self.move_down(end, len, block);
        } else {
            let middle = Segment { len, owners: kept(&seg.owners) };
            self.segs_mut().insert(block, middle);
        }
        Some(Vec::new())
    }

    /// Moves the segment at `block` up by `len` blocks (it loses its first `len`, and keeps at
    /// least one), its owner list shifted in place.
    fn move_up(&mut self, block: u64, len: u64) {
        let mut rest = self.segs_mut().remove(&block).expect("a segment at block");
        rest.len -= len;
        rest.owners.iter_mut().for_each(|o| *o = o.shifted(len));
        self.segs_mut().insert(block + len, rest);
    }

    /// Moves the segment at `from` down to `to` (`len` blocks earlier), growing it by `len`, its
    /// owner list shifted back in place.
    fn move_down(&mut self, from: u64, len: u64, to: u64) {
        let mut grown = self.segs_mut().remove(&from).expect("a segment at from");
        grown.len += len;
        grown.owners.iter_mut().for_each(|o| *o = o.unshifted(len).expect("continues a run before it"));
        self.segs_mut().insert(to, grown);
    }

    fn split_at(&mut self, block: u64) {
        let Some((&start, seg)) = self.segs_mut().range(..block).next_back() else { return };
        if start + seg.len <= block {
            return;
        }
        let head = block - start;
        let tail =
            Segment { len: seg.len - head, owners: seg.owners.iter().map(|o| o.shifted(head)).collect() };
        self.segs_mut().get_mut(&start).expect("listed").len = head;
        self.segs_mut().insert(block, tail);
    }

    /// Merges across the boundaries at `end` and at `block` where the owner sets continue.
    fn merge_ends(&mut self, block: u64, end: u64) {
        self.merge_into_predecessor(end);
        self.merge_into_predecessor(block);
    }

    fn merge_into_predecessor(&mut self, start: u64) {
        // One descent finds the segment and its predecessor.
        let mut it = self.segs_mut().range_mut(..=start).rev();
        let Some((&found, next)) = it.next() else { return };
        if found != start {
            return;
        }
        let Some((&pstart, prev)) = it.next() else { return };
        // Owner lists are sorted and shifting preserves order, so they compare pairwise.
        if pstart + prev.len == start && continues(prev, prev.len, &next.owners) {
            prev.len += next.len;
            self.segs_mut().remove(&start);
        }
    }

    /// Checks the structural invariants; returns the first violation.
    pub fn validate(&self) -> Result<(), OwnershipMismatch> {
        let mut prev: Option<(u64, &Segment)> = None;
        for (&start, seg) in self.segs() {
            if seg.len == 0 || seg.owners.is_empty() {
                return Err(OwnershipMismatch(format!("empty segment at pool block {start}")));
            }
            if seg.owners.windows(2).any(|w| w[0] >= w[1]) {
                return Err(OwnershipMismatch(format!(
                    "owners of pool block {start} unsorted or duplicated"
                )));
            }
            if let Some((ps, p)) = prev {
                if ps + p.len > start {
                    return Err(OwnershipMismatch(format!("segments overlap at pool block {start}")));
                }
            }
            prev = Some((start, seg));
        }
        Ok(())
    }
}

/// `owners` without the one at `index`, each seen `delta` blocks further along the run.
fn without(owners: &[Owner], index: usize, delta: u64) -> impl Iterator<Item = Owner> + '_ {
    owners.iter().enumerate().filter(move |&(i, _)| i != index).map(move |(_, o)| o.shifted(delta))
}

/// Builds the segments of exactly these runs (see [`OwnerMap::from_runs`]) in one sweep over
/// them sorted by pool block.
fn sweep(runs: &mut Vec<(u64, u64, Owner)>) -> BTreeMap<u64, Segment> {
    runs.retain(|&(_, len, _)| len > 0);
    runs.sort_unstable_by_key(|&(start, _, _)| start);
    let mut segments: Vec<(u64, Segment)> = Vec::with_capacity(runs.len());
    // Runs covering the sweep position, as (end, start, owner at start).
    let mut active: Vec<(u64, u64, Owner)> = Vec::new();
    let mut next = 0;
    let mut at = 0;
    loop {
        if active.is_empty() {
            match runs.get(next) {
                Some(&(start, _, _)) => at = start,
                None => break,
            }
        }
        while let Some(&(start, len, owner)) = runs.get(next).filter(|r| r.0 == at) {
            active.push((start + len, start, owner));
            next += 1;
        }
        let mut end = active.iter().map(|&(end, _, _)| end).min().expect("a run covers `at`");
        if let Some(&(start, _, _)) = runs.get(next) {
            end = end.min(start);
        }
        let mut owners: Vec<Owner> = active.iter().map(|&(_, start, o)| o.shifted(at - start)).collect();
        owners.sort_unstable();
        let owners = Owners::from(owners);
        match segments.last_mut() {
            Some((prev_start, prev))
                if *prev_start + prev.len == at && continues(prev, prev.len, &owners) =>
            {
                prev.len += end - at;
            }
            _ => segments.push((at, Segment { len: end - at, owners })),
        }
        active.retain(|&(run_end, _, _)| run_end != end);
        at = end;
    }
    segments.into_iter().collect()
}

/// Joins touching runs.
fn coalesce(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, l) in runs {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == s => last.1 += l,
            _ => out.push((s, l)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, file_block: u64) -> Owner {
        Owner::file(ino, file_block)
    }

    #[test]
    fn an_owner_is_two_words_and_a_vec_sized_owner_list_keeps_one_owner_inline_through_inserts_and_removes() {
        assert_eq!(std::mem::size_of::<Owners>(), std::mem::size_of::<Vec<Owner>>());
        // An owner is two words: the inode number's 0 tells a metadata owner apart.
        assert_eq!(std::mem::size_of::<Owner>(), 16);
        let mut owners = Owners::one(file(2, 7));
        assert!(matches!(owners.0, OwnersRepr::One(_)));
        owners.insert(0, file(1, 3));
        owners.insert(2, Owner::Meta(MetaStructure::Log));
        assert_eq!(owners, vec![file(1, 3), file(2, 7), Owner::Meta(MetaStructure::Log)]);
        assert_eq!(owners.remove(1), file(2, 7));
        assert_eq!(owners.remove(1), Owner::Meta(MetaStructure::Log));
        // Back to one owner: inline again, and equal to a list built any other way.
        assert!(matches!(owners.0, OwnersRepr::One(_)));
        assert_eq!(owners, [file(1, 3)].into_iter().collect::<Owners>());
        assert_eq!(owners.remove(0), file(1, 3));
        assert!(owners.is_empty());
        owners.insert(0, file(4, 4));
        assert_eq!(owners.as_slice(), &[file(4, 4)]);
    }

    /// Generated (start, length, inode, file block, is metadata) as runs with their owners.
    fn owned_runs(runs: Vec<(u64, u64, u64, u64, bool)>) -> Vec<(u64, u64, Owner)> {
        runs.into_iter()
            .map(|(start, len, ino, fb, meta)| {
                let owner = if meta { Owner::Meta(MetaStructure::Log) } else { file(ino + 1, fb) };
                (start, len, owner)
            })
            .collect()
    }

    proptest::proptest! {
        /// Mount builds the map in one sweep; it must be the very map that adding the runs one by
        /// one builds (the canonical form `check` compares against).
        #[test]
        fn a_map_built_in_one_sweep_equals_the_map_built_run_by_run(
            runs in proptest::collection::vec((0u64..64, 1u64..12, 0u64..4, 0u64..40, proptest::bool::ANY), 0..40)
        ) {
            let runs = owned_runs(runs);
            let mut one_by_one = OwnerMap::new();
            for &(start, len, owner) in &runs {
                one_by_one.add(start, len, owner);
            }
            proptest::prop_assert_eq!(OwnerMap::from_runs(runs), one_by_one);
        }

        /// Mount keeps the metadata runs and builds the map when first needed, from them and the
        /// files' runs it is then given; until then `used_runs` names only its own runs. The map
        /// finally built must be the map of all the runs.
        #[test]
        fn a_map_awaiting_its_files_is_built_as_the_map_of_all_runs(
            base in proptest::collection::vec((0u64..64, 1u64..12, 0u64..4, 0u64..40), 0..30),
            files in proptest::collection::vec((0u64..64, 1u64..12, 0u64..40), 0..10),
        ) {
            let base: Vec<(u64, u64, Owner)> =
                base.into_iter().map(|(start, len, ino, fb)| (start, len, file(ino + 1, fb))).collect();
            let files: Vec<(u64, u64, Owner)> =
                files.into_iter().map(|(start, len, fb)| (start, len, file(9, fb * 64))).collect();
            let awaiting = OwnerMap::awaiting_files(base.clone());
            proptest::prop_assert!(!awaiting.is_built());
            let mut used = awaiting.used_runs();
            used.dedup();
            let mut expected_used: Vec<(u64, u64)> = base.iter().map(|&(s, l, _)| (s, l)).collect();
            expected_used.sort_unstable();
            expected_used.dedup();
            proptest::prop_assert_eq!(used, expected_used);
            let all: Vec<(u64, u64, Owner)> = base.into_iter().chain(files.clone()).collect();
            awaiting.build_with(|| files);
            proptest::prop_assert!(awaiting.is_built());
            proptest::prop_assert_eq!(&awaiting, &OwnerMap::from_runs(all));
        }

        /// A reflink adds one owner to many whole segments at once; the walk must leave the very
        /// map (and outcome) that adding the runs one by one leaves, also for runs that straddle
        /// segments, fall in gaps or repeat a block.
        #[test]
        fn adding_runs_in_one_walk_equals_adding_them_one_by_one(
            base in proptest::collection::vec((0u64..64, 1u64..12, 0u64..4, 0u64..40, proptest::bool::ANY), 0..30),
            exact in proptest::collection::vec((0usize..64, 0u64..40, proptest::bool::ANY), 0..30),
            loose in proptest::collection::vec((0u64..80, 1u64..12, 0u64..40), 0..6),
        ) {
            let base = owned_runs(base);
            let map = OwnerMap::from_runs(base);
            // Two overlapping runs of one metadata structure make a map no pool has.
            proptest::prop_assume!(map.validate().is_ok());
            let segments: Vec<(u64, &Segment)> = map.iter().collect();
            // Whole segments, each given a new owner (inode 9) or the continuation of an owner of
            // the segment just before it (which can make the two one segment); then a few runs
            // anywhere.
            let mut runs: Vec<(u64, u64, Owner)> = Vec::new();
            for (pick, fb, continuation) in exact {
                let Some(at) = (!segments.is_empty()).then(|| pick % segments.len()) else { break };
                let (start, seg) = segments[at];
                let before = at.checked_sub(1).map(|i| segments[i]).filter(|(s, p)| s + p.len == start);
                let continued = before.and_then(|(_, p)| {
                    p.owners.iter().find(|o| matches!(o, Owner::File { .. })).map(|o| o.shifted(p.len))
                });
                let owner = match continued {
                    Some(continued) if continuation => continued,
                    _ => file(9, fb * 64 + runs.len() as u64),
                };
                // A block owned twice by the same owner is no state a pool reaches.
                if !seg.owners.contains(&owner) && !runs.iter().any(|r| r.0 == start && r.2 == owner) {
                    runs.push((start, seg.len, owner));
                }
            }
            // Each of its own inode: two overlapping runs of one inode could name one block twice
            // with the same owner, which no pool reaches.
            for (i, (start, len, fb)) in loose.into_iter().enumerate() {
                runs.push((start, len, file(10 + i as u64, fb * 64)));
            }
            let mut one_by_one = map.clone();
            let mut expected = AddOutcome::default();
            for &(start, len, owner) in &runs {
                let added = one_by_one.add(start, len, owner);
                expected.newly_owned += added.newly_owned;
                expected.touched_metadata |= added.touched_metadata;
            }
            let mut walked = map;
            let outcome = walked.add_runs(runs);
            proptest::prop_assert_eq!(walked.validate(), Ok(()));
            proptest::prop_assert_eq!(&walked, &one_by_one);
            proptest::prop_assert_eq!(outcome, expected);
        }

        /// Copy-on-write of single blocks of a shared run, in any order (sequential ones take the
        /// fast path that grows the run before): the map stays the canonical one.
        #[test]
        fn removing_single_blocks_of_a_shared_run_in_any_order_keeps_the_map_canonical(
            order in proptest::collection::vec(0u64..24, 0..40)
        ) {
            let mut m = OwnerMap::new();
            m.add(100, 24, file(1, 0));
            m.add(100, 24, file(2, 0));
            let mut removed = std::collections::BTreeSet::new();
            for block in order.into_iter().chain(0..6) {
                if removed.insert(block) {
                    proptest::prop_assert_eq!(m.remove(100 + block, 1, file(2, block)).unwrap(), vec![]);
                }
            }
            let mut runs = vec![(100, 24, file(1, 0))];
            runs.extend((0..24).filter(|b| !removed.contains(b)).map(|b| (100 + b, 1, file(2, b))));
            proptest::prop_assert_eq!(m, OwnerMap::from_runs(runs));
        }
    }

    proptest::proptest! {
        /// Copy-on-write of runs of any length of a run shared by up to three files (or owned by
        /// one file alone, whose blocks are then freed), in any order: each remove reports exactly
        /// the blocks it freed, and the map stays the canonical one.
        #[test]
        fn removing_runs_of_a_run_shared_by_up_to_three_files_keeps_the_map_canonical(
            others in 0usize..3,
            cuts in proptest::collection::vec((0u64..24, 1u64..6), 0..30)
        ) {
            let mut m = OwnerMap::new();
            let mut runs = Vec::new();
            for ino in (1..=others as u64).chain([9]) {
                m.add(100, 24, file(ino, 0));
                if ino != 9 {
                    runs.push((100, 24, file(ino, 0)));
                }
            }
            let mut removed = std::collections::BTreeSet::new();
            for (first, len) in cuts {
                let len = len.min(24 - first);
                if (first..first + len).any(|b| removed.contains(&b)) {
                    continue;
                }
                removed.extend(first..first + len);
                let freed = m.remove(100 + first, len, file(9, first)).unwrap();
                let expected = if others == 0 { vec![(100 + first, len)] } else { vec![] };
                proptest::prop_assert_eq!(freed, expected);
                m.validate().unwrap();
            }
            runs.extend((0..24).filter(|b| !removed.contains(b)).map(|b| (100 + b, 1, file(9, b))));
            proptest::prop_assert_eq!(m, OwnerMap::from_runs(runs));
        }
    }

    #[test]
    fn shared_runs_split_and_merge_back() {
        let mut m = OwnerMap::new();
        m.add(100, 10, file(1, 0));
        m.add(104, 2, file(2, 50));
        assert_eq!(m.segment_count(), 3);
        assert_eq!(m.refcount(104), 2);
        assert_eq!(m.refcount(106), 1);
        let seg: Vec<_> = m.overlapping(105, 1).collect();
        assert_eq!(seg[0].1.owners, vec![file(1, 4), file(2, 50)]);
        assert_eq!(m.remove(104, 2, file(2, 50)).unwrap(), vec![]);
        assert_eq!(m.segment_count(), 1, "must merge back into one run");
        assert_eq!(m.remove(100, 10, file(1, 0)).unwrap(), vec![(100, 10)]);
        assert_eq!(m.segment_count(), 0);
    }

    #[test]
    fn removing_the_head_of_a_shared_run_merges_with_the_run_before() {
        let mut m = OwnerMap::new();
        m.add(100, 10, file(1, 0));
        m.add(105, 5, file(2, 0));
        assert_eq!(m.segment_count(), 2);
        assert_eq!(m.remove(105, 1, file(2, 0)).unwrap(), vec![]);
        // [100, 106) is owned by file 1 alone again and must be one segment.
        assert_eq!(m.overlapping(100, 1).next().unwrap().1.len, 6);
        assert_eq!(m.remove(109, 1, file(2, 4)).unwrap(), vec![]);
        assert_eq!(m.segment_count(), 3);
        let mut rebuilt = OwnerMap::new();
        rebuilt.add(100, 10, file(1, 0));
        rebuilt.add(106, 3, file(2, 1));
        assert_eq!(m, rebuilt, "canonical form");
    }

    #[test]
    fn removing_an_owner_from_a_whole_segment_merges_with_both_neighbours_or_frees_it() {
        let mut m = OwnerMap::new();
        m.add(100, 10, file(1, 0));
        m.add(100, 10, file(2, 0));
        // Copy-on-write of blocks 103 and 105 by file 2: block 104 becomes a segment of its own.
        m.remove(103, 1, file(2, 3)).unwrap();
        m.remove(105, 1, file(2, 5)).unwrap();
        assert_eq!(
            m.overlapping(104, 1).next().unwrap(),
            (104, &Segment { len: 1, owners: Owners::from(vec![file(1, 4), file(2, 4)]) })
        );
        // Then of block 104 itself: [103, 106) is file 1's alone, one segment.
        assert_eq!(m.remove(104, 1, file(2, 4)).unwrap(), vec![]);
        assert_eq!(
            m.overlapping(104, 1).next().unwrap(),
            (103, &Segment { len: 3, owners: Owners::one(file(1, 3)) })
        );
        assert_eq!(m.segment_count(), 3);
        // A whole segment's last owner: the blocks are free.
        assert_eq!(m.remove(103, 3, file(1, 3)).unwrap(), vec![(103, 3)]);
        assert_eq!(m.refcount(104), 0);
        assert!(m.remove(103, 3, file(1, 3)).is_err(), "a segment that is gone");
        m.validate().unwrap();
    }

    #[test]
    fn removing_a_missing_owner_is_reported() {
        let mut m = OwnerMap::new();
        m.add(10, 2, file(1, 0));
        assert!(m.remove(10, 3, file(1, 0)).is_err());
        assert!(m.remove(20, 1, file(1, 0)).is_err());
    }
}
