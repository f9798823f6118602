//! Per-file extent maps: which pool blocks back which file blocks.
//!
//! Owns one file's forward map (file block -> pool block run), held as a tree or, as a mount
//! leaves every file, as packed extents read in place (as the checkpoint stores them; shared by
//! the file's whole-file clones, turned into a tree by its first change). Holes are the absence of
//! an extent.
//! Adjacent extents that continue each other both in the file and in the pool are always merged, so
//! the map is canonical. Must never touch reference counts or the pool: callers pass what `set`
//! returns to the ownership map.

use std::collections::BTreeMap;

use crate::format::checkpoint::{ExtentList, PackedExtents, PackedIter};

/// A run of pool blocks backing a run of file blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First pool block.
    pub phys: u64,
    /// Number of blocks.
    pub len: u64,
}

/// One piece of a file range: mapped to pool blocks, or a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// First file block of the piece.
    pub file_block: u64,
    /// Number of blocks.
    pub len: u64,
    /// First pool block, or `None` for a hole.
    pub phys: Option<u64>,
}

/// What [`ExtentMap::set`] found mapped in its range, as pieces with `phys` set, in order. One
/// piece (a copy-on-write: the usual case) is kept inline, with no vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// One piece.
    One(Piece),
    /// Any number of pieces (none: the range was a hole).
    Many(Vec<Piece>),
}

impl std::ops::Deref for Removed {
    type Target = [Piece];

    fn deref(&self) -> &[Piece] {
        match self {
            Removed::One(piece) => std::slice::from_ref(piece),
            Removed::Many(pieces) => pieces,
        }
    }
}

impl PartialEq<Vec<Piece>> for Removed {
    fn eq(&self, other: &Vec<Piece>) -> bool {
        **self == other[..]
    }
}

/// A file's forward map, keyed by first file block: a tree, or (a file as mount left it, and its
/// whole-file clones) extents packed as the checkpoint stores them, read in place until the first
/// change turns them into a tree.
#[derive(Debug, Clone)]
pub struct ExtentMap {
    repr: Repr,
}

/// How an [`ExtentMap`] holds its extents.
#[derive(Debug, Clone)]
enum Repr {
    /// A tree keyed by first file block.
    Tree(BTreeMap<u64, Extent>),
    /// Canonical extents packed as a checkpoint stores them, shared: changed only by turning them
    /// into a tree.
    Packed(PackedExtents),
}

impl Default for ExtentMap {
    fn default() -> Self {
        Self { repr: Repr::Tree(BTreeMap::new()) }
    }
}

impl PartialEq for ExtentMap {
    /// The same extents, however each side holds them.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtentMap {}

/// Extents of an [`ExtentMap`] in order, as (first file block, extent), however it holds them.
pub enum Iter<'a> {
    /// A tree's.
    Tree(std::collections::btree_map::Range<'a, u64, Extent>),
    /// Packed extents'.
    Packed(PackedIter<'a>),
}

impl Iterator for Iter<'_> {
    type Item = (u64, Extent);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Tree(it) => it.next().map(|(&fb, &e)| (fb, e)),
            Iter::Packed(it) => it.next().map(unpacked),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Tree(it) => it.size_hint(),
            Iter::Packed(it) => it.size_hint(),
        }
    }
}

/// Whether extent `next` may follow extent `prev` in a canonical map: it starts after `prev`
/// ends, and does not continue it in both file and pool (it would have been merged into it).
pub fn follows_canonically((pfb, pe): (u64, Extent), (fb, e): (u64, Extent)) -> bool {
    pfb + pe.len < fb || (pfb + pe.len == fb && pe.phys + pe.len != e.phys)
}

/// A packed extent as the map shows it.
fn unpacked((fb, phys, len): (u64, u64, u64)) -> (u64, Extent) {
    (fb, Extent { phys, len })
}

impl ExtentMap {
    /// An empty map: the file is one big hole.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Tree(map) => map.len(),
            Repr::Packed(packed) => packed.len(),
        }
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the extents are still packed as the checkpoint left them (shared, not yet a tree).
    pub fn is_packed(&self) -> bool {
        matches!(self.repr, Repr::Packed(_))
    }

    /// The tree, built from the packed extents first if they are packed (they are copied: the
    /// buffer may be shared).
    fn tree_mut(&mut self) -> &mut BTreeMap<u64, Extent> {
        if let Repr::Packed(packed) = &self.repr {
            self.repr = Repr::Tree(packed.iter_from(0).map(unpacked).collect());
        }
        match &mut self.repr {
            Repr::Tree(map) => map,
            Repr::Packed(_) => unreachable!("just built"),
        }
    }

    /// Every extent as (first file block, extent), ascending.
    pub fn iter(&self) -> Iter<'_> {
        match &self.repr {
            Repr::Tree(map) => Iter::Tree(map.range(..)),
            Repr::Packed(packed) => Iter::Packed(packed.iter_from(0)),
        }
    }

    /// Extents that start at or after `file_block`, plus the one containing it.
    pub fn iter_from(&self, file_block: u64) -> Iter<'_> {
        match &self.repr {
            Repr::Tree(map) => {
                let first = map
                    .range(..=file_block)
                    .next_back()
                    .filter(|(&fb, e)| fb + e.len > file_block)
                    .map(|(&fb, _)| fb)
                    .unwrap_or(file_block);
                Iter::Tree(map.range(first..))
            }
            Repr::Packed(packed) => Iter::Packed(packed.iter_from(packed.first_ending_after(file_block))),
        }
    }

    /// Total number of mapped blocks.
    pub fn mapped_blocks(&self) -> u64 {
        self.iter().map(|(_, e)| e.len).sum()
    }

    /// The pool block backing `file_block`, if any (one descent of a tree, one binary search of
    /// packed extents).
    pub fn lookup(&self, file_block: u64) -> Option<u64> {
        let (fb, e) = match &self.repr {
            Repr::Tree(map) => map.range(..=file_block).next_back().map(|(&fb, &e)| (fb, e))?,
            Repr::Packed(_) => self.iter_from(file_block).next()?,
        };
        (fb <= file_block && file_block < fb + e.len).then(|| e.phys + (file_block - fb))
    }

    /// The pool blocks backing `file_block - 1` (`None` for block 0) and `file_block`, in one
    /// descent: where a write at `file_block` allocates (after its predecessor) and what it replaces.
    pub fn lookup_with_previous(&self, file_block: u64) -> (Option<u64>, Option<u64>) {
        let block_in = |(fb, e): (u64, Extent), block: u64| {
            (fb <= block && block < fb + e.len).then(|| e.phys + (block - fb))
        };
        if let Repr::Tree(map) = &self.repr {
            // One descent (a copy-on-write's hot path).
            let mut it = map.range(..=file_block).rev().map(|(&fb, &e)| (fb, e));
            let Some(last) = it.next() else { return (None, None) };
            let here = block_in(last, file_block);
            let Some(before) = file_block.checked_sub(1) else { return (None, here) };
            let previous = block_in(last, before).or_else(|| it.next().and_then(|e| block_in(e, before)));
            return (previous, here);
        }
        let Some(before) = file_block.checked_sub(1) else { return (None, self.lookup(file_block)) };
        // The extent holding (or first after) the block before, and the one after it.
        let mut it = self.iter_from(before);
        let Some(first) = it.next() else { return (None, None) };
        let previous = block_in(first, before);
        let here = block_in(first, file_block).or_else(|| it.next().and_then(|e| block_in(e, file_block)));
        (previous, here)
    }

    /// One past the last mapped file block (0 when empty).
    pub fn end_block(&self) -> u64 {
        match &self.repr {
            Repr::Tree(map) => map.iter().next_back().map_or(0, |(&fb, e)| fb + e.len),
            Repr::Packed(packed) => packed.len().checked_sub(1).map_or(0, |last| {
                let (fb, _, len) = packed.get(last);
                fb + len
            }),
        }
    }

    /// The mapped parts of `[file_block, file_block + len)` as (file block, pool block, length),
    /// in order, holes left out: [`ExtentMap::pieces`] without the holes and without a vector.
    pub fn mapped_in(&self, file_block: u64, len: u64) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let end = file_block + len;
        self.iter_from(file_block).take_while(move |&(fb, _)| fb < end).map(move |(fb, e)| {
            let from = fb.max(file_block);
            (from, e.phys + (from - fb), (fb + e.len).min(end) - from)
        })
    }

    /// How many extents map part of `[file_block, file_block + len)`: two binary searches when the
    /// extents are packed, a walk of the range in a tree.
    pub fn count_in(&self, file_block: u64, len: u64) -> usize {
        match &self.repr {
            Repr::Tree(_) => self.mapped_in(file_block, len).count(),
            Repr::Packed(packed) => {
                let end = file_block.saturating_add(len);
                let first = packed.first_ending_after(file_block);
                packed.first_starting_at_or_after(end).saturating_sub(first)
            }
        }
    }

    /// Splits `[file_block, file_block + len)` into mapped pieces and holes, in order.
    pub fn pieces(&self, file_block: u64, len: u64) -> Vec<Piece> {
        let end = file_block + len;
        let mut out = Vec::new();
        let mut cursor = file_block;
        for (fb, e) in self.iter_from(file_block) {
            if fb >= end {
                break;
            }
            if fb > cursor {
                out.push(Piece { file_block: cursor, len: fb - cursor, phys: None });
                cursor = fb;
            }
            let skip = cursor - fb;
            let take = (fb + e.len).min(end) - cursor;
            out.push(Piece { file_block: cursor, len: take, phys: Some(e.phys + skip) });
            cursor += take;
        }
        if cursor < end {
            out.push(Piece { file_block: cursor, len: end - cursor, phys: None });
        }
        out
    }

    /// Maps `[file_block, file_block + len)` to `phys..` (or punches a hole when `None`).
    /// Returns what the range mapped before, as pieces with `phys` always set.
    pub fn set(&mut self, file_block: u64, len: u64, phys: Option<u64>) -> Removed {
        debug_assert!(len > 0);
        let end = file_block + len;
        let map = self.tree_mut();
        // Overwrites first: a copy-on-write is the hot path, and the test costs one descent.
        if let Some(removed) = Self::set_inside_one_extent(map, file_block, len, phys) {
            return removed;
        }
        if Self::set_in_hole(map, file_block, len, phys) {
            return Removed::Many(Vec::new());
        }
        Self::split_at(map, file_block);
        Self::split_at(map, end);
        let keys: Vec<u64> = map.range(file_block..end).map(|(&k, _)| k).collect();
        let mut removed = Vec::with_capacity(keys.len());
        for k in keys {
            let e = map.remove(&k).expect("key just listed");
            removed.push(Piece { file_block: k, len: e.len, phys: Some(e.phys) });
        }
        if let Some(phys) = phys {
            map.insert(file_block, Extent { phys, len });
            Self::merge_at(map, end);
            Self::merge_at(map, file_block);
        } else {
            Self::merge_at(map, file_block);
        }
        Removed::Many(removed)
    }

    /// Fast path of `set` when one extent contains the whole range (a copy-on-write of blocks of a
    /// run: in its middle, at its head or tail, or all of it). The extent keeps its head, if any;
    /// the new run and the tail, if any, are inserted. The new run cannot merge with a part of the
    /// same extent unless it maps the very same blocks, which takes the general path; where the
    /// range reaches an end of the extent, it may merge with the neighbour beyond. One descent
    /// finds the extent and both neighbours, so every merge is decided from what it saw (a
    /// sequential copy-on-write grows the extent before; a random one merges with nothing and
    /// looks no further). Returns `None` (changing nothing) when the fast path does not apply.
    fn set_inside_one_extent(
        map: &mut BTreeMap<u64, Extent>,
        file_block: u64,
        len: u64,
        phys: Option<u64>,
    ) -> Option<Removed> {
        let end = file_block + len;
        let mut extents = map.range_mut(..=end).rev();
        let mut next = None;
        let (fb, e) = loop {
            let (&fb, e) = extents.next()?;
            if fb == end && next.is_none() {
                next = Some(*e);
                continue;
            }
            break (fb, e);
        };
        let e_end = fb + e.len;
        if fb > file_block || e_end < end {
            return None;
        }
        let old_phys = e.phys + (file_block - fb);
        if phys == Some(old_phys) {
            return None;
        }
        let removed = Removed::One(Piece { file_block, len, phys: Some(old_phys) });
        let tail = (e_end > end).then(|| Extent { phys: e.phys + (end - fb), len: e_end - end });
        let keeps_head = fb < file_block;
        let Some(phys) = phys else {
            if keeps_head {
                e.len = file_block - fb;
            } else {
                map.remove(&file_block);
            }
            if let Some(tail) = tail {
                map.insert(end, tail);
            }
            return Some(removed);
        };
        // Only an extent that starts where the range ends, with no tail between, touches it.
        let next_len = next.filter(|n| tail.is_none() && n.phys == phys + len).map(|n| n.len);
        let grown = Extent { phys, len: len + next_len.unwrap_or(0) };
        let prev =
            extents.next().filter(|(&pfb, p)| !keeps_head && pfb + p.len == fb && p.phys + p.len == phys);
        match prev {
            Some((_, prev)) => {
                prev.len += grown.len;
                map.remove(&file_block);
            }
            None if keeps_head => {
                e.len = file_block - fb;
                map.insert(file_block, grown);
            }
            None => *e = grown,
        }
        if let Some(tail) = tail {
            map.insert(end, tail);
        }
        if next_len.is_some() {
            map.remove(&end);
        }
        Some(removed)
    }

    /// Fast path of `set` when the range is a hole: one descent finds both neighbours; the new
    /// run extends the predecessor or absorbs the successor when they continue it. Returns `None`
    /// false (changing nothing) when something is mapped in the range.
    fn set_in_hole(map: &mut BTreeMap<u64, Extent>, file_block: u64, len: u64, phys: Option<u64>) -> bool {
        let end = file_block + len;
        let mut it = map.range_mut(..=end).rev();
        let mut next = None;
        let mut prev = None;
        for (&fb, e) in it.by_ref() {
            if fb == end && next.is_none() {
                next = Some(*e);
                continue;
            }
            if fb + e.len > file_block {
                return false; // overlaps the range
            }
            prev = Some((fb, e));
            break;
        }
        let Some(phys) = phys else { return true };
        let absorb_next = next.is_some_and(|n| n.phys == phys + len);
        let extra = if absorb_next { next.map_or(0, |n| n.len) } else { 0 };
        match prev {
            Some((fb, e)) if fb + e.len == file_block && e.phys + e.len == phys => e.len += len + extra,
            _ => {
                map.insert(file_block, Extent { phys, len: len + extra });
            }
        }
        if absorb_next {
            map.remove(&end);
        }
        true
    }

    /// Splits the extent containing `file_block` (strictly inside it) in two.
    fn split_at(map: &mut BTreeMap<u64, Extent>, file_block: u64) {
        let Some((&fb, &e)) = map.range(..file_block).next_back() else { return };
        if fb + e.len > file_block {
            let head = file_block - fb;
            map.insert(fb, Extent { phys: e.phys, len: head });
            map.insert(file_block, Extent { phys: e.phys + head, len: e.len - head });
        }
    }

    /// Merges the extent starting at `file_block` into its predecessor when they continue each other.
    fn merge_at(map: &mut BTreeMap<u64, Extent>, file_block: u64) {
        // One descent finds the extent and its predecessor.
        let mut it = map.range_mut(..=file_block).rev();
        let Some((&start, &mut next)) = it.next() else { return };
        if start != file_block {
            return;
        }
        let Some((&fb, prev)) = it.next() else { return };
        if fb + prev.len == file_block && prev.phys + prev.len == next.phys {
            prev.len += next.len;
            map.remove(&file_block);
        }
    }

    /// True when nothing is mapped in `[file_block, file_block + len)`.
    pub fn is_hole(&self, file_block: u64, len: u64) -> bool {
        self.iter_from(file_block).next().is_none_or(|(fb, _)| fb >= file_block + len)
    }

    /// Maps the runs `(file block, pool block, length)` into a hole of this map in one pass (a
    /// reflink into a hole): the runs ascend, lie in a range [`ExtentMap::is_hole`] says is a hole,
    /// and none continues the one before it in both file and pool (pieces of a canonical map), so
    /// only the two ends of the range can merge with the extents around it.
    pub fn fill_hole(&mut self, runs: Vec<(u64, u64, u64)>) {
        let (Some(&(first, _, _)), Some(&(last, _, last_len))) = (runs.first(), runs.last()) else { return };
        debug_assert!(self.is_hole(first, last + last_len - first));
        debug_assert!(runs
            .windows(2)
            .all(|w| w[0].0 + w[0].2 <= w[1].0 && !(w[0].0 + w[0].2 == w[1].0 && w[0].1 + w[0].2 == w[1].1)));
        let map = self.tree_mut();
        let many = runs.len() * 8 >= map.len();
        // Consumed in place: collecting the runs reuses their buffer for the tree's sort.
        let new = runs.into_iter().map(|(fb, phys, len)| (fb, Extent { phys, len }));
        if many {
            // Merging two sorted trees rebuilds them in one pass: cheaper than a descent per run.
            let mut others: BTreeMap<u64, Extent> = new.collect();
            map.append(&mut others);
        } else {
            map.extend(new);
        }
        Self::merge_at(map, last + last_len);
        Self::merge_at(map, first);
    }

    /// Builds a map from (file block, pool block, length) triples, as a checkpoint stores them.
    pub fn from_triples(triples: Vec<(u64, u64, u64)>) -> Self {
        // Collecting builds the tree in one pass from sorted input (a checkpoint's order), and
        // reuses the triples' buffer for its sort (same size and alignment).
        Self { repr: Repr::Tree(triples.into_iter().map(unpacked).collect()) }
    }

    /// Builds a map from a checkpoint's extent list: a decoded list becomes a tree, packed extents
    /// stay packed (shared, read in place). Either way [`ExtentMap::is_canonical`] must be checked.
    pub fn from_list(list: ExtentList) -> Self {
        match list {
            ExtentList::Decoded(triples) => Self::from_triples(triples),
            ExtentList::Packed(packed) => Self { repr: Repr::Packed(packed) },
        }
    }

    /// The extents as a checkpoint stores them: packed ones shared as they are.
    pub fn to_list(&self) -> ExtentList {
        match &self.repr {
            Repr::Tree(map) => ExtentList::Decoded(map.iter().map(|(&fb, e)| (fb, e.phys, e.len)).collect()),
            Repr::Packed(packed) => ExtentList::Packed(packed.clone()),
        }
    }

    /// True if the stored extents are sorted, non-overlapping, non-empty and fully merged.
    pub fn is_canonical(&self) -> bool {
        let mut prev: Option<(u64, Extent)> = None;
        for (fb, e) in self.iter() {
            if e.len == 0 {
                return false;
            }
            if prev.is_some_and(|prev| !follows_canonically(prev, (fb, e))) {
                return false;
            }
            prev = Some((fb, e));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any sequence of sets (copy-on-writes of single blocks or runs, their pool blocks often
        /// continuing the run before, and holes punched): after each, the map shows per block what
        /// a plain array of blocks shows, stays canonical, and `set` returned exactly what the
        /// range mapped before.
        #[test]
        fn set_maps_what_a_block_array_maps_and_returns_what_was_there(
            sets in proptest::collection::vec((0u64..32, 1u64..5, proptest::option::weighted(0.8, 0u64..4)), 0..60)
        ) {
            let mut m = ExtentMap::new();
            let mut model: Vec<Option<u64>> = vec![None; 40];
            m.set(0, 32, Some(1000));
            model.iter_mut().take(32).enumerate().for_each(|(b, p)| *p = Some(1000 + b as u64));
            let mut next_phys = 2000;
            for (i, (fb, len, how)) in sets.into_iter().enumerate() {
                // 0: the pool block right after the last one handed out (a sequential copy-on-write
                // continues the run it just made); 1: a fresh place; 2: the block's own old pool
                // block plus an offset; 3: the very blocks it maps already.
                let phys = how.map(|how| match how {
                    0 => next_phys,
                    1 => 5000 + 100 * i as u64,
                    2 => 1000 + fb + 64,
                    _ => model[fb as usize].unwrap_or(9000),
                });
                let mut expected = Vec::new();
                for b in fb..fb + len {
                    match (expected.last_mut(), model[b as usize]) {
                        (Some(Piece { file_block, len, phys: Some(p) }), Some(q))
                            if *file_block + *len == b && *p + *len == q => *len += 1,
                        (_, Some(q)) => expected.push(Piece { file_block: b, len: 1, phys: Some(q) }),
                        (_, None) => {}
                    }
                    model[b as usize] = phys.map(|p| p + (b - fb));
                }
                let removed = m.set(fb, len, phys);
                proptest::prop_assert_eq!(removed, expected);
                if let Some(p) = phys {
                    next_phys = next_phys.max(p + len);
                }
                proptest::prop_assert!(m.is_canonical());
                for (b, &p) in model.iter().enumerate() {
                    proptest::prop_assert_eq!(m.lookup(b as u64), p);
                }
            }
        }

        /// A reflink into a hole fills it in one pass; the map must be the one that setting each
        /// piece in turn gives, merged with the extents around the hole where they continue. The
        /// pieces come from `mapped_in`, which must list what `pieces` lists, holes left out.
        #[test]
        fn filling_a_hole_equals_setting_each_piece_and_mapped_in_is_pieces_without_holes(
            source in proptest::collection::vec((0u64..40, 1u64..6, 0u64..60), 0..12),
            target in proptest::collection::vec((0u64..40, 1u64..6, 0u64..60), 0..12),
            from in 0u64..40, len in 1u64..30, to in 0u64..80, continue_ends in proptest::bool::ANY,
        ) {
            let build = |sets: &[(u64, u64, u64)]| {
                let mut m = ExtentMap::new();
                for &(fb, n, phys) in sets {
                    m.set(fb, n, Some(phys * 8));
                }
                m
            };
            let (src, mut dst) = (build(&source), build(&target));
            // The hole: blocks [to, to + len) made one in the target, with its neighbours kept.
            dst.set(to, len, None);
            let runs: Vec<(u64, u64, u64)> = src
                .pieces(from, len)
                .iter()
                .filter_map(|p| p.phys.map(|phys| (to + (p.file_block - from), phys, p.len)))
                .collect();
            // Neighbours that continue the first and last runs, so both ends must merge.
            if let (true, Some(&(fb, phys, _))) = (continue_ends, runs.first()) {
                if fb == to && to >= 2 && phys >= 2 {
                    dst.set(to - 2, 2, Some(phys - 2));
                }
            }
            if let (true, Some(&(fb, phys, n))) = (continue_ends, runs.last()) {
                if fb + n == to + len {
                    dst.set(to + len, 2, Some(phys + n));
                }
            }
            let mut piece_by_piece = dst.clone();
            for &(fb, phys, n) in &runs {
                piece_by_piece.set(fb, n, Some(phys));
            }
            let without_holes: Vec<(u64, u64, u64)> = src
                .pieces(from, len)
                .iter()
                .filter_map(|p| p.phys.map(|phys| (p.file_block, phys, p.len)))
                .collect();
            proptest::prop_assert_eq!(src.mapped_in(from, len).collect::<Vec<_>>(), without_holes);
            proptest::prop_assert!(dst.is_hole(to, len));
            dst.fill_hole(runs.clone());
            proptest::prop_assert!(dst.is_canonical());
            proptest::prop_assert_eq!(dst, piece_by_piece);
        }
    }

    #[test]
    fn a_range_inside_one_extent_splits_it_in_three() {
        let mut m = ExtentMap::new();
        m.set(0, 10, Some(100));
        assert_eq!(m.set(4, 2, Some(500)), vec![Piece { file_block: 4, len: 2, phys: Some(104) }]);
        assert_eq!(m.len(), 3);
        assert!(m.is_canonical());
        assert_eq!(m.set(1, 1, None), vec![Piece { file_block: 1, len: 1, phys: Some(101) }]);
        assert_eq!(m.lookup(1), None);
        assert_eq!(m.lookup(2), Some(102));
        assert_eq!(m.lookup(5), Some(501));
        assert_eq!(m.lookup(9), Some(109));
        // Mapping the same blocks back takes the general path and merges.
        m.set(4, 2, Some(104));
        m.set(1, 1, Some(101));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_range_at_an_end_of_an_extent_or_all_of_it_merges_with_the_neighbour_beyond() {
        let mut m = ExtentMap::new();
        m.set(0, 4, Some(100));
        m.set(4, 4, Some(200));
        m.set(8, 4, Some(300));
        // The head of [4, 8) onto blocks that continue [0, 4): merges into it.
        assert_eq!(m.set(4, 1, Some(104)), vec![Piece { file_block: 4, len: 1, phys: Some(200) }]);
        assert_eq!(
            m.iter().collect::<Vec<_>>()[..2],
            [(0, Extent { phys: 100, len: 5 }), (5, Extent { phys: 201, len: 3 })]
        );
        // The tail of [5, 8) onto blocks that [8, 12) continues: absorbs it.
        assert_eq!(m.set(7, 1, Some(299)), vec![Piece { file_block: 7, len: 1, phys: Some(203) }]);
        assert_eq!(m.lookup(8), Some(300));
        assert_eq!(m.iter().last(), Some((7, Extent { phys: 299, len: 5 })));
        // All of [5, 7) onto blocks between its neighbours' ends: one extent again.
        assert_eq!(m.set(5, 2, Some(105)), vec![Piece { file_block: 5, len: 2, phys: Some(201) }]);
        assert_eq!(m.set(7, 5, Some(107)), vec![Piece { file_block: 7, len: 5, phys: Some(299) }]);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(0, Extent { phys: 100, len: 12 })]);
        // A hole at the head, at the tail and over a whole extent.
        assert_eq!(m.set(0, 2, None), vec![Piece { file_block: 0, len: 2, phys: Some(100) }]);
        assert_eq!(m.set(10, 2, None), vec![Piece { file_block: 10, len: 2, phys: Some(110) }]);
        assert_eq!(m.iter().collect::<Vec<_>>(), [(2, Extent { phys: 102, len: 8 })]);
        assert_eq!(m.set(2, 8, None), vec![Piece { file_block: 2, len: 8, phys: Some(102) }]);
        assert!(m.is_empty());
    }

    #[test]
    fn lookup_with_previous_sees_both_blocks_across_extents_and_holes() {
        let mut m = ExtentMap::new();
        m.set(0, 4, Some(100));
        m.set(4, 2, Some(200));
        m.set(8, 1, Some(300));
        assert_eq!(m.lookup_with_previous(0), (None, Some(100)));
        assert_eq!(m.lookup_with_previous(2), (Some(101), Some(102)));
        assert_eq!(m.lookup_with_previous(4), (Some(103), Some(200)));
        assert_eq!(m.lookup_with_previous(6), (Some(201), None));
        assert_eq!(m.lookup_with_previous(7), (None, None));
        assert_eq!(m.lookup_with_previous(8), (None, Some(300)));
        assert_eq!(m.lookup_with_previous(9), (Some(300), None));
        assert_eq!(ExtentMap::new().lookup_with_previous(5), (None, None));
    }

    #[test]
    fn set_splits_merges_and_reports_removed() {
        let mut m = ExtentMap::new();
        assert!(m.set(0, 10, Some(100)).is_empty());
        let removed = m.set(3, 2, Some(500));
        assert_eq!(removed, vec![Piece { file_block: 3, len: 2, phys: Some(103) }]);
        assert_eq!(m.len(), 3);
        // Mapping the hole back to the original blocks merges everything again.
        m.set(3, 2, Some(103));
        assert_eq!(m.len(), 1);
        assert!(m.is_canonical());
        m.set(2, 4, None);
        assert_eq!(
            m.pieces(0, 8),
            vec![
                Piece { file_block: 0, len: 2, phys: Some(100) },
                Piece { file_block: 2, len: 4, phys: None },
                Piece { file_block: 6, len: 2, phys: Some(106) },
            ]
        );
        assert_eq!(m.lookup(7), Some(107));
        assert_eq!(m.lookup(3), None);
        assert_eq!(m.mapped_blocks(), 6);
    }

    /// The map `tree` holds, packed as a mount leaves a file (decoded from a payload).
    fn packed_copy(tree: &ExtentMap) -> ExtentMap {
        use crate::format::checkpoint::{InodeImage, StateImage};
        let mut attrs = crate::format::record::InodeAttrs::empty_dir(2, 0o644, 0, 0, 0);
        attrs.kind = crate::format::record::InodeKind::File;
        let image = StateImage {
            next_ino: 3,
            inodes: vec![InodeImage { attrs, extents: tree.to_list(), ..InodeImage::default() }],
            quarantine: vec![],
        };
        let decoded = StateImage::decode_sharing(std::sync::Arc::new(image.encode())).unwrap();
        let packed = ExtentMap::from_list(decoded.inodes.into_iter().next().unwrap().extents);
        assert!(packed.is_packed(), "{} extents are packed", tree.len());
        packed
    }

    proptest::proptest! {
        /// A packed map answers every read as the tree of the same extents does; a change turns it
        /// into a tree that then equals the tree changed the same way, and a clone taken before
        /// stays packed with the old extents.
        #[test]
        fn a_packed_map_reads_as_its_tree_and_a_change_turns_it_into_that_tree(
            holes in proptest::collection::vec((0u64..200, 1u64..6), 0..20),
            change in (0u64..210, 1u64..8, proptest::option::of(5000u64..6000)),
        ) {
            // A fragmented file (an extent at every other block), with holes punched in it.
            let mut tree = ExtentMap::new();
            for i in 0..100u64 {
                tree.set(2 * i, 1, Some(1000 + 3 * i));
            }
            for (fb, len) in holes {
                tree.set(fb, len, None);
            }
            proptest::prop_assume!(!tree.is_empty());
            let mut packed = packed_copy(&tree);
            proptest::prop_assert_eq!(&packed, &tree);
            proptest::prop_assert!(packed.is_canonical());
            proptest::prop_assert_eq!(packed.end_block(), tree.end_block());
            proptest::prop_assert_eq!(packed.mapped_blocks(), tree.mapped_blocks());
            for block in 0..215 {
                proptest::prop_assert_eq!(packed.lookup(block), tree.lookup(block), "block {}", block);
                proptest::prop_assert_eq!(packed.lookup_with_previous(block), tree.lookup_with_previous(block));
                proptest::prop_assert_eq!(packed.iter_from(block).collect::<Vec<_>>(), tree.iter_from(block).collect::<Vec<_>>());
                proptest::prop_assert_eq!(packed.pieces(block, 7), tree.pieces(block, 7));
                proptest::prop_assert_eq!(packed.is_hole(block, 3), tree.is_hole(block, 3));
                for len in [1, 2, 5, 40, 1000] {
                    proptest::prop_assert_eq!(packed.count_in(block, len), tree.count_in(block, len));
                    proptest::prop_assert_eq!(packed.count_in(block, len), tree.mapped_in(block, len).count());
                }
            }
            let before = packed.clone();
            let (fb, len, phys) = change;
            let removed_packed = packed.set(fb, len, phys);
            let removed_tree = tree.set(fb, len, phys);
            proptest::prop_assert_eq!(removed_packed, removed_tree);
            proptest::prop_assert!(!packed.is_packed());
            proptest::prop_assert_eq!(&packed, &tree);
            proptest::prop_assert!(before.is_packed());
            proptest::prop_assert_eq!(&before, &packed_copy(&before));
        }
    }
}
