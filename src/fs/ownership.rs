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

/// Which metadata structure uses a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaStructure {
    /// Superblock copy 0 or 1.
    Superblock(u8),
    /// The log region.
    Log,
    /// A block of the current checkpoint.
    Checkpoint,
}

impl std::fmt::Display for MetaStructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetaStructure::Superblock(copy) => write!(f, "superblock copy {copy}"),
            MetaStructure::Log => write!(f, "log"),
            MetaStructure::Checkpoint => write!(f, "checkpoint"),
        }
    }
}

/// One owner of a block. For file owners, `file_block` is the file block that maps the *first*
/// block of the segment (or of the range being added or removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A file's data.
    File {
        /// The inode.
        ino: u64,
        /// The file block mapping the first block of the run.
        file_block: u64,
    },
    /// A metadata structure.
    Meta(MetaStructure),
}

impl Owner {
    /// The same owner seen `delta` blocks further along the run.
    fn shifted(self, delta: u64) -> Owner {
        match self {
            Owner::File { ino, file_block } => Owner::File { ino, file_block: file_block + delta },
            meta => meta,
        }
    }
}

/// A run of pool blocks with one owner set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Number of blocks.
    pub len: u64,
    /// The owners, sorted (duplicates only transiently, inside one `Map` mutation).
    pub owners: Vec<Owner>,
}

/// An error meaning the forward maps and the ownership map disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipMismatch(pub String);

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerMap {
    segments: BTreeMap<u64, Segment>,
}

impl OwnerMap {
    /// An empty map: no block is used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Every segment as (first pool block, segment), ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        self.segments.iter().map(|(&b, s)| (b, s))
    }

    /// Segments overlapping `[block, block + len)`, as (first block, segment), ascending.
    pub fn overlapping(&self, block: u64, len: u64) -> impl Iterator<Item = (u64, &Segment)> + '_ {
        let end = block.saturating_add(len);
        let first = self
            .segments
            .range(..=block)
            .next_back()
            .filter(|(&s, seg)| s + seg.len > block)
            .map(|(&s, _)| s)
            .unwrap_or(block);
        self.segments.range(first..end).map(|(&b, s)| (b, s))
    }

    /// The number of owners of `block` (0 when unused).
    pub fn refcount(&self, block: u64) -> usize {
        self.overlapping(block, 1).next().map_or(0, |(_, s)| s.owners.len())
    }

    /// Adds `owner` to every block of `[block, block + len)`.
    pub fn add(&mut self, block: u64, len: u64, owner: Owner) {
        debug_assert!(len > 0);
        let end = block + len;
        self.split_at(block);
        self.split_at(end);
        let mut cursor = block;
        let mut gaps = Vec::new();
        for (&start, seg) in self.segments.range_mut(block..end) {
            if start > cursor {
                gaps.push((cursor, start - cursor));
            }
            let o = owner.shifted(start - block);
            let at = seg.owners.binary_search(&o).unwrap_or_else(|i| i);
            seg.owners.insert(at, o);
            cursor = start + seg.len;
        }
        if cursor < end {
            gaps.push((cursor, end - cursor));
        }
        for (start, glen) in gaps {
            self.segments.insert(start, Segment { len: glen, owners: vec![owner.shifted(start - block)] });
        }
        self.merge_range(block, end);
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
        self.split_at(block);
        self.split_at(end);
        let mut cursor = block;
        let mut emptied = Vec::new();
        let mut failure = None;
        for (&start, seg) in self.segments.range_mut(block..end) {
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
            self.segments.remove(&start);
        }
        self.merge_range(block, end);
        match failure {
            Some(detail) => Err(OwnershipMismatch(detail)),
            None => Ok(coalesce(emptied)),
        }
    }

    fn split_at(&mut self, block: u64) {
        let Some((&start, seg)) = self.segments.range(..block).next_back() else { return };
        if start + seg.len <= block {
            return;
        }
        let head = block - start;
        let tail =
            Segment { len: seg.len - head, owners: seg.owners.iter().map(|o| o.shifted(head)).collect() };
        self.segments.get_mut(&start).expect("listed").len = head;
        self.segments.insert(block, tail);
    }

    /// Merges every mergeable boundary from the segment touching `block` to the one touching `end`.
    fn merge_range(&mut self, block: u64, end: u64) {
        let starts: Vec<u64> = {
            let from = self.segments.range(..block).next_back().map_or(block, |(&s, _)| s);
            self.segments.range(from..=end).map(|(&s, _)| s).collect()
        };
        for &s in starts.iter().rev() {
            self.merge_into_predecessor(s);
        }
    }

    fn merge_into_predecessor(&mut self, start: u64) {
        let Some(next) = self.segments.get(&start) else { return };
        let Some((&pstart, prev)) = self.segments.range(..start).next_back() else { return };
        if pstart + prev.len != start || prev.owners.len() != next.owners.len() {
            return;
        }
        let same = prev.owners.iter().zip(&next.owners).all(|(p, n)| p.shifted(prev.len) == *n);
        if same {
            let next_len = next.len;
            self.segments.remove(&start);
            self.segments.get_mut(&pstart).expect("listed").len += next_len;
        }
    }

    /// Checks the structural invariants; returns the first violation.
    pub fn validate(&self) -> Result<(), OwnershipMismatch> {
        let mut prev: Option<(u64, &Segment)> = None;
        for (&start, seg) in &self.segments {
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
        Owner::File { ino, file_block }
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
    fn removing_a_missing_owner_is_reported() {
        let mut m = OwnerMap::new();
        m.add(10, 2, file(1, 0));
        assert!(m.remove(10, 3, file(1, 0)).is_err());
        assert!(m.remove(20, 1, file(1, 0)).is_err());
    }
}
