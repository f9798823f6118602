//! Free-space allocation.
//!
//! Owns the set of free pool blocks, indexed by start and by size once anything changes it (a
//! mount's free space stays the sorted list of runs it was computed as until then, so a command
//! that only reads never builds the indexes). Prefers, in order: the run that
//! starts right at the caller's goal (so files grow contiguously), a 2 MiB-aligned window for
//! requests of 2 MiB or more, the smallest run that fits whole, then the largest runs piece by piece.
//! Must never hand out a block twice, a metadata block, or a quarantined block: callers only give
//! back blocks that no owner references any more.

use std::collections::{BTreeMap, BTreeSet};

/// Blocks in 2 MiB: requests this large get 2 MiB-aligned runs when one is free.
pub const HUGE_RUN_BLOCKS: u64 = 512;

/// The free runs of the pool.
#[derive(Debug, Clone, Default)]
pub struct FreeSpace {
    /// The runs given to [`FreeSpace::from_runs`], ascending, until the first change moves them
    /// into the indexes (which are empty while it holds any).
    unindexed: Vec<(u64, u64)>,
    by_start: BTreeMap<u64, u64>,
    by_size: BTreeSet<(u64, u64)>,
    free_blocks: u64,
}

/// Two free spaces are equal when they hold the same blocks, indexed or not.
impl PartialEq for FreeSpace {
    fn eq(&self, other: &Self) -> bool {
        self.free_blocks == other.free_blocks && self.runs().eq(other.runs())
    }
}

impl Eq for FreeSpace {}

impl FreeSpace {
    /// No free blocks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exactly these free runs, (start, length), given ascending, non-empty, and neither
    /// overlapping nor touching (as the gaps between used runs are). They are kept as this list,
    /// which answers every question by binary search; the first change (release, claim, allocate)
    /// builds both indexes from it, in one pass each instead of a descent per run.
    pub fn from_runs(runs: Vec<(u64, u64)>) -> Self {
        debug_assert!(runs.iter().all(|&(_, len)| len > 0));
        debug_assert!(runs.windows(2).all(|w| w[0].0 + w[0].1 < w[1].0), "free runs unsorted or touching");
        let free_blocks = runs.iter().map(|&(_, len)| len).sum();
        FreeSpace { unindexed: runs, free_blocks, ..FreeSpace::default() }
    }

    /// Builds both indexes from the runs [`FreeSpace::from_runs`] kept, if it has not been done.
    fn index(&mut self) {
        if self.unindexed.is_empty() {
            return;
        }
        // The list becomes the start index's sorted input (collecting reuses its buffer, freed
        // once the tree is built), whose walk then fills the size index's.
        self.by_start = std::mem::take(&mut self.unindexed).into_iter().collect();
        let mut by_size: Vec<(u64, u64)> = self.by_start.iter().map(|(&start, &len)| (len, start)).collect();
        by_size.sort_unstable();
        self.by_size = by_size.into_iter().collect();
    }

    /// The free run starting at or before `block` that starts last, whether it reaches `block`
    /// or not.
    fn run_at_or_before(&self, block: u64) -> Option<(u64, u64)> {
        if self.unindexed.is_empty() {
            return self.by_start.range(..=block).next_back().map(|(&s, &l)| (s, l));
        }
        let after = self.unindexed.partition_point(|&(s, _)| s <= block);
        after.checked_sub(1).map(|i| self.unindexed[i])
    }

    /// Whether a free run starts in `[start, end)`.
    fn run_starts_in(&self, start: u64, end: u64) -> bool {
        if self.unindexed.is_empty() {
            return self.by_start.range(start..end).next().is_some();
        }
        let first = self.unindexed.partition_point(|&(s, _)| s < start);
        self.unindexed.get(first).is_some_and(|&(s, _)| s < end)
    }

    /// Number of free blocks.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }

    /// Number of free runs.
    pub fn run_count(&self) -> usize {
        self.unindexed.len() + self.by_start.len()
    }

    /// The free run of at least `len` blocks that starts highest, as (start, len): found among
    /// the runs at least that long (the size index), not by walking every run.
    pub fn highest_run_of(&self, len: u64) -> Option<(u64, u64)> {
        if !self.unindexed.is_empty() {
            return self.unindexed.iter().rev().find(|&&(_, l)| l >= len).copied();
        }
        self.by_size.range((len, 0)..).map(|&(l, s)| (s, l)).max()
    }

    /// Every free run as (start, len), ascending.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        // At most one of the two holds any run.
        self.unindexed.iter().copied().chain(self.by_start.iter().map(|(&s, &l)| (s, l)))
    }

    /// True if every block of `[start, start + len)` is free.
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        self.run_at_or_before(start).is_some_and(|(s, l)| s + l >= start + len)
    }

    /// True if any block of `[start, start + len)` is free.
    pub fn any_free(&self, start: u64, len: u64) -> bool {
        let end = start + len;
        if let Some((s, l)) = self.run_at_or_before(start) {
            if s + l > start {
                return true;
            }
        }
        self.run_starts_in(start, end)
    }

    /// Returns `[start, start + len)` to the free set, merging with neighbours.
    pub fn release(&mut self, start: u64, len: u64) {
        debug_assert!(len > 0);
        debug_assert!(!self.any_free(start, len), "double free of [{start}, +{len})");
        self.index();
        let mut start = start;
        let mut len = len;
        self.free_blocks += len;
        if let Some((&ps, &pl)) = self.by_start.range(..start).next_back() {
            if ps + pl == start {
                self.remove_run(ps, pl);
                self.free_blocks += pl;
                start = ps;
                len += pl;
            }
        }
        if let Some(&nl) = self.by_start.get(&(start + len)) {
            self.remove_run(start + len, nl);
            self.free_blocks += nl;
            len += nl;
        }
        self.by_start.insert(start, len);
        self.by_size.insert((len, start));
    }

    /// Removes every free block of `[start, start + len)` from the free set (blocks that are not
    /// free are left alone). Returns how many blocks were free.
    pub fn claim(&mut self, start: u64, len: u64) -> u64 {
        self.index();
        let end = start + len;
        let mut claimed = 0;
        let first = self
            .by_start
            .range(..=start)
            .next_back()
            .filter(|(&s, &l)| s + l > start)
            .map(|(&s, _)| s)
            .unwrap_or(start);
        let runs: Vec<(u64, u64)> = self.by_start.range(first..end).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in runs {
            self.remove_run(s, l);
            let cut_start = s.max(start);
            let cut_end = (s + l).min(end);
            claimed += cut_end - cut_start;
            if s < cut_start {
                self.insert_run(s, cut_start - s);
            }
            if cut_end < s + l {
                self.insert_run(cut_end, s + l - cut_end);
            }
        }
        claimed
    }

    /// Takes `count` blocks, as few runs as it can, preferring `goal` (see module docs).
    /// Returns `None`, taking nothing, when fewer than `count` blocks are free.
    pub fn allocate(&mut self, count: u64, goal: Option<u64>) -> Option<Vec<(u64, u64)>> {
        if count == 0 {
            return Some(Vec::new());
        }
        if count > self.free_blocks {
            return None;
        }
        self.index();
        let mut out = Vec::new();
        let mut need = count;
        // 1. Continue right where the caller left off.
        if let Some(goal) = goal {
            if let Some((&s, &l)) = self.by_start.range(..=goal).next_back() {
                if s + l > goal {
                    let take = need.min(s + l - goal);
                    self.take_exact(goal, take);
                    out.push((goal, take));
                    need -= take;
                }
            }
        }
        while need > 0 {
            let (start, take) = self.pick_run(need);
            self.take_exact(start, take);
            match out.last_mut() {
                Some(last) if last.0 + last.1 == start => last.1 += take,
                _ => out.push((start, take)),
            }
            need -= take;
        }
        Some(out)
    }

    /// Takes one block, the one [`FreeSpace::allocate`] of one block would take, without building
    /// a list (a copy-on-write of one block runs in a store-fault handler). `None` when no block
    /// is free.
    pub fn allocate_one(&mut self, goal: Option<u64>) -> Option<u64> {
        if self.free_blocks == 0 {
            return None;
        }
        self.index();
        // The run holding the block is known from the one search that chose it, so the block
        // is cut out of it without searching for the run again.
        let at_goal = goal.and_then(|g| {
            let (&s, &l) = self.by_start.range(..=g).next_back()?;
            (s + l > g).then_some((g, s, l))
        });
        let Some((block, s, l)) = at_goal else {
            // The smallest run (every run holds a block): the first by size, taken off the front
            // of that index without a search.
            let (l, s) = self.by_size.pop_first().expect("free blocks counted");
            self.by_start.remove(&s);
            self.free_blocks -= l;
            if l > 1 {
                self.insert_run(s + 1, l - 1);
            }
            return Some(s);
        };
        self.cut(s, l, block, 1);
        Some(block)
    }

    /// Chooses where the next `need` blocks come from: (start, how many).
    fn pick_run(&self, need: u64) -> (u64, u64) {
        if need >= HUGE_RUN_BLOCKS {
            for &(len, start) in self.by_size.range((need, 0)..) {
                let aligned = start.next_multiple_of(HUGE_RUN_BLOCKS);
                if aligned + need <= start + len {
                    return (aligned, need);
                }
            }
        }
        if let Some(&(_, start)) = self.by_size.range((need, 0)..).next() {
            return (start, need);
        }
        let &(len, start) = self.by_size.iter().next_back().expect("free blocks counted");
        (start, len.min(need))
    }

    /// Removes exactly `[start, start + len)`, which must lie inside one free run.
    fn take_exact(&mut self, start: u64, len: u64) {
        let (&s, &l) = self.by_start.range(..=start).next_back().expect("inside a free run");
        self.cut(s, l, start, len);
    }

    /// Removes `[start, start + len)` from the free run `[s, s + l)` that holds it.
    fn cut(&mut self, s: u64, l: u64, start: u64, len: u64) {
        debug_assert!(s <= start && s + l >= start + len);
        self.remove_run(s, l);
        if s < start {
            self.insert_run(s, start - s);
        }
        if start + len < s + l {
            self.insert_run(start + len, s + l - start - len);
        }
    }

    fn remove_run(&mut self, start: u64, len: u64) {
        self.by_start.remove(&start);
        self.by_size.remove(&(len, start));
        self.free_blocks -= len;
    }

    fn insert_run(&mut self, start: u64, len: u64) {
        self.by_start.insert(start, len);
        self.by_size.insert((len, start));
        self.free_blocks += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_goal_then_aligned_then_best_fit() {
        let mut f = FreeSpace::new();
        f.release(10, 2000);
        assert_eq!(f.allocate(4, Some(100)), Some(vec![(100, 4)]));
        assert_eq!(f.allocate(600, None), Some(vec![(512, 600)]));
        assert_eq!(f.free_blocks(), 2000 - 604);
        assert!(f.allocate(100_000, None).is_none());
        assert_eq!(f.claim(0, 20), 10);
        let mut g = FreeSpace::new();
        g.release(10, 100);
        g.release(500, 4);
        assert_eq!(g.allocate(2, None), Some(vec![(500, 2)]), "best fit is the 4-block run");
        let total: u64 = f.runs().map(|r| r.1).sum();
        assert_eq!(total, f.free_blocks());
    }

    #[test]
    fn highest_run_of_is_the_highest_starting_run_that_long_indexed_or_not() {
        let runs = vec![(10, 100), (300, 3), (500, 4), (900, 1)];
        let listed = FreeSpace::from_runs(runs.clone());
        let mut indexed = FreeSpace::new();
        for &(s, l) in &runs {
            indexed.release(s, l);
        }
        for f in [&listed, &indexed] {
            assert_eq!(f.highest_run_of(1), Some((900, 1)));
            assert_eq!(f.highest_run_of(3), Some((500, 4)));
            assert_eq!(f.highest_run_of(5), Some((10, 100)));
            assert_eq!(f.highest_run_of(101), None);
        }
    }

    #[test]
    fn allocate_one_takes_what_allocate_of_one_block_takes() {
        let mut runs = FreeSpace::new();
        runs.release(10, 100);
        runs.release(500, 4);
        runs.release(600, 2);
        for goal in [None, Some(50), Some(109), Some(110), Some(501), Some(601), Some(5000)] {
            let (mut one, mut list) = (runs.clone(), runs.clone());
            let taken = one.allocate_one(goal).expect("free blocks");
            assert_eq!(list.allocate(1, goal), Some(vec![(taken, 1)]), "goal {goal:?}");
            assert_eq!(one, list, "goal {goal:?}");
        }
        let mut empty = FreeSpace::new();
        assert_eq!(empty.allocate_one(Some(3)), None);
    }

    proptest::proptest! {
        /// Over any free runs (single blocks among them) and any goal, free or not,
        /// `allocate_one` takes the block `allocate` of one block takes and leaves the same set.
        #[test]
        fn allocate_one_equals_allocate_of_one_block_on_any_free_space(
            runs in proptest::collection::vec((0u64..400, 1u64..6), 1..40),
            goal in proptest::option::of(0u64..420),
        ) {
            let mut free = FreeSpace::new();
            for (start, len) in runs {
                if !free.any_free(start, len) {
                    free.release(start, len);
                }
            }
            let (mut one, mut list) = (free.clone(), free);
            let taken = one.allocate_one(goal).expect("a run was released");
            proptest::prop_assert_eq!(list.allocate(1, goal), Some(vec![(taken, 1)]));
            proptest::prop_assert_eq!(one, list);
        }

        /// Mount builds free space from the gaps between used runs; before its first change it
        /// answers every question as the set releasing each gap does, and after that change (which
        /// builds its indexes) it holds the same blocks and allocates the same ones.
        #[test]
        fn free_space_built_from_gaps_answers_and_changes_as_releasing_each(
            steps in proptest::collection::vec((1u64..20, 1u64..20), 0..60),
            claimed in (0u64..800, 0u64..40),
            wanted in 1u64..60,
            goal in proptest::option::of(0u64..800),
        ) {
            let mut gaps = Vec::new();
            let mut at = 0;
            for (used, free) in steps {
                at += used;
                gaps.push((at, free));
                at += free;
            }
            let mut released = FreeSpace::new();
            for &(start, len) in gaps.iter().rev() {
                released.release(start, len);
            }
            let mut built = FreeSpace::from_runs(gaps);
            proptest::prop_assert_eq!(built.runs().collect::<Vec<_>>(), released.runs().collect::<Vec<_>>());
            proptest::prop_assert_eq!(built.run_count(), released.run_count());
            proptest::prop_assert_eq!(built.free_blocks(), released.free_blocks());
            for start in 0..at + 2 {
                for len in 0..4 {
                    proptest::prop_assert_eq!(built.is_free(start, len), released.is_free(start, len));
                    proptest::prop_assert_eq!(built.any_free(start, len), released.any_free(start, len));
                }
            }
            let (start, len) = claimed;
            proptest::prop_assert_eq!(built.claim(start, len), released.claim(start, len));
            proptest::prop_assert_eq!(&built, &released);
            proptest::prop_assert_eq!(built.allocate(wanted, goal), released.allocate(wanted, goal));
            proptest::prop_assert_eq!(&built, &released);
            proptest::prop_assert_eq!(built.by_size, released.by_size);
        }
    }
}
