//! fsck: proves the mounted state and the media agree with every invariant.
//!
//! Owns the list of invariants and the report. Checks: superblocks, checkpoint and log decode and
//! replay to exactly the live state; reference counts and the reverse map equal what the forward
//! maps imply (by rebuilding them); no block is leaked, doubly used, or both free and used; no
//! extent lies outside the pool or on the superblocks, the log or the checkpoint; every inode obeys
//! the rules mount validation enforces on what it decodes ([`State::inode_problems`]: names, link
//! counts, sizes, inode numbers, parents, duplicate names), so the two agree; the directory tree is
//! a tree (no directory cycle). (Bytes past EOF in a partial last block may be non-zero: a DAX view
//! maps the last page whole and stores land there as in the kernel; the file system zeroes them
//! before the file grows over them.)
//! Must never change anything: it reads only.

use super::journal::Journal;
use super::ownership::{Owner, OwnerMap};
#[cfg(doc)]
use super::state::State;
use super::state::{ENTRY_FIXED_BYTES, XATTR_FIXED_BYTES};
use super::validate::overlap_detail;
use super::FileSystem;
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE, ROOT_INO};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One thing check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// The structure involved ("reverse map", "inode 12", "free space", "superblock copy 1", ...).
    pub structure: String,
    /// What is wrong.
    pub detail: String,
}

/// What check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Every problem; empty means clean.
    pub problems: Vec<Problem>,
    /// Things mount repaired on the way in (not problems any more).
    pub repaired: Vec<String>,
    /// Inodes checked.
    pub inodes: u64,
    /// Extents checked.
    pub extents: u64,
    /// Blocks in use by files (counted once however many owners).
    pub data_blocks: u64,
    /// Blocks with more than one owner.
    pub shared_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Metadata blocks.
    pub metadata_blocks: u64,
    /// Quarantined blocks.
    pub quarantined_blocks: u64,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, structure: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem { structure: structure.into(), detail: detail.into() });
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for r in &self.repaired {
            writeln!(f, "repaired: {r}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem: {}: {}", p.structure, p.detail)?;
        }
        write!(
            f,
            "{}: {} inodes, {} extents, {} data blocks ({} shared), {} metadata, {} free, {} quarantined",
            if self.is_clean() { "clean" } else { "NOT CLEAN" },
            self.inodes,
            self.extents,
            self.data_blocks,
            self.shared_blocks,
            self.metadata_blocks,
            self.free_blocks,
            self.quarantined_blocks
        )
    }
}

impl FileSystem {
    /// Runs every check; see the module documentation.
    pub fn check(&self) -> CheckReport {
        let mut report = CheckReport { repaired: self.notes.repaired.clone(), ..CheckReport::default() };
        let state = &self.state;
        report.inodes = state.inodes.len() as u64;
        report.quarantined_blocks = state.quarantine.values().sum();
        report.free_blocks = state.free.free_blocks();

        // 1. Ownership map structure, and equality with one rebuilt from the forward maps.
        if let Err(e) = state.owners().validate() {
            report.problem("reverse map", e.0);
        }
        let mut rebuilt = OwnerMap::new();
        for (structure, start, len) in self.metadata_layout() {
            rebuilt.add(start, len, Owner::Meta(structure));
        }
        let mut extent_total = 0;
        let mut inos: Vec<u64> = state.inodes.keys().copied().collect();
        inos.sort_unstable();
        for &ino in &inos {
            let inode = &state.inodes[&ino];
            extent_total += inode.extents.len() as u64;
            if !inode.extents.is_canonical() {
                report.problem(format!("inode {ino}"), "extent map not canonical");
            }
            for detail in state.inode_problems(ino) {
                report.problem(format!("inode {ino}"), detail);
            }
            for (fb, e) in inode.extents.iter() {
                let outside = e.phys.checked_add(e.len).is_none_or(|end| end > state.total_blocks);
                if outside || fb.checked_add(e.len).is_none_or(|end| end > MAX_FILE_SIZE / BLOCK_SIZE) {
                    report.problem(
                        format!("inode {ino}"),
                        format!("extent at file block {fb} (pool blocks [{}, +{})) outside the pool or the largest file", e.phys, e.len),
                    );
                    continue;
                }
                if let Some(structure) = rebuilt.metadata_in(e.phys, e.len) {
                    report.problem(
                        format!("inode {ino}"),
                        format!("extent at file block {fb}: {}", overlap_detail(e.phys, e.len, structure)),
                    );
                }
                rebuilt.add(e.phys, e.len, Owner::file(ino, fb));
            }
        }
        report.extents = extent_total;
        let var_bytes: u64 = state
            .inodes
            .values()
            .map(|i| {
                i.children().keys().map(|n| ENTRY_FIXED_BYTES + n.len() as u64).sum::<u64>()
                    + i.xattrs()
                        .iter()
                        .map(|(n, v)| XATTR_FIXED_BYTES + (n.len() + v.len()) as u64)
                        .sum::<u64>()
                    + i.target().len() as u64
            })
            .sum();
        if var_bytes != state.var_bytes {
            report.problem(
                "checkpoint size",
                format!(
                    "entries, extended attributes and targets take {var_bytes} bytes, tracked {}",
                    state.var_bytes
                ),
            );
        }
        if extent_total != state.extent_count {
            report.problem("extent count", format!("counted {extent_total}, tracked {}", state.extent_count));
        }
        if rebuilt != *state.owners() {
            report.problem(
                "reverse map",
                format!(
                    "differs from the forward maps ({} segments live, {} rebuilt){}",
                    state.owners().segment_count(),
                    rebuilt.segment_count(),
                    first_difference(state.owners(), &rebuilt)
                ),
            );
        }

        // 2. Every block exactly once used or free, or else bad; bad blocks never free. A bad
        // block may still be used: its owners read EIO until they rewrite it.
        let mut marks: Vec<(u64, u64, &'static str)> = Vec::new();
        for (s, seg) in state.owners().iter() {
            let is_meta = seg.owners.iter().all(|o| matches!(o, Owner::Meta(_)));
            if is_meta {
                report.metadata_blocks += seg.len;
            } else {
                report.data_blocks += seg.len;
                if seg.owners.len() > 1 {
                    report.shared_blocks += seg.len;
                }
            }
            marks.push((s, seg.len, "used"));
        }
        marks.extend(state.free.runs().map(|(s, l)| (s, l, "free")));
        marks.extend(self.reserved_runs().map(|(s, l)| (s, l, "reserved for a placed write")));
        marks.extend(state.held.iter().map(|&(s, l)| (s, l, "freed by an operation not yet durable")));
        marks.sort_unstable();
        let mut cursor = 0;
        let mut unaccounted = Vec::new();
        for (s, l, what) in marks {
            if s < cursor {
                report.problem("free space", format!("block {s} is {what} and also counted before"));
            } else if s > cursor {
                unaccounted.push((cursor, s));
            }
            cursor = cursor.max(s + l);
        }
        if cursor < state.total_blocks {
            unaccounted.push((cursor, state.total_blocks));
        }
        for (a, b) in unaccounted {
            for block in a..b {
                if state.first_bad_block(block, 1).is_none() {
                    report.problem("free space", format!("block {block} leaked: neither used, free nor bad"));
                    break;
                }
            }
        }
        for (&s, &l) in &state.quarantine {
            if state.free.any_free(s, l) {
                report.problem("quarantine", format!("bad blocks [{s}, +{l}) are in the free space"));
            }
        }

        // 3. The directory tree.
        self.check_tree(&mut report);

        // 4. The media replays to exactly this state, once the operations not yet durable (group
        // commit) are applied to it as their record will be.
        match Journal::mount(self.backend.clone(), super::journal::MountMode::Normal) {
            Err(e) => report.problem("media", format!("cannot be mounted: {e}")),
            Ok((_, mut media, notes)) => {
                for m in self.journal.unsynced() {
                    if let Err(e) = media.apply(m, super::state::ApplyMode::Replay) {
                        report.problem(
                            "media",
                            format!("an operation not yet durable does not apply to it: {e}"),
                        );
                        break;
                    }
                }
                for r in notes.repaired {
                    if !report.repaired.contains(&r) {
                        report.problem("metadata copy", r);
                    }
                }
                let mut live_inos: Vec<_> = state.inodes.keys().copied().collect();
                let mut media_inos: Vec<_> = media.inodes.keys().copied().collect();
                live_inos.sort_unstable();
                media_inos.sort_unstable();
                if live_inos != media_inos {
                    report.problem("media", "the set of inodes on media differs from memory");
                }
                for ino in live_inos {
                    if let (Some(a), Some(b)) = (state.inodes.get(&ino), media.inodes.get(&ino)) {
                        if a.attrs != b.attrs
                            || a.extents != b.extents
                            || a.children() != b.children()
                            || a.xattrs() != b.xattrs()
                            || a.target() != b.target()
                        {
                            report.problem(format!("inode {ino}"), "on media differs from memory");
                        }
                    }
                }
                if media.quarantine != state.quarantine {
                    report.problem("quarantine", "on media differs from memory");
                }
            }
        }
        report
    }

    fn check_tree(&self, report: &mut CheckReport) {
        let state = &self.state;
        match state.inodes.get(&ROOT_INO) {
            Some(r) if r.is_dir() => {}
            _ => {
                report.problem("inode 1", "the root directory is missing");
                return;
            }
        }
        let mut seen = HashSet::new();
        let mut entries_naming: HashMap<u64, usize> = HashMap::new();
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            if !seen.insert(dir) {
                report.problem(
                    format!("inode {dir}"),
                    "a directory reachable twice (a cycle or a second name)",
                );
                continue;
            }
            let inode = &state.inodes[&dir];
            let mut subdirs = 0;
            for (name, &child) in inode.children() {
                let Some(c) = state.inodes.get(&child) else {
                    report.problem(
                        format!("inode {dir}"),
                        format!("entry {:?} points at missing inode {child}", String::from_utf8_lossy(name)),
                    );
                    continue;
                };
                *entries_naming.entry(child).or_default() += 1;
                if !c.names.iter().any(|(d, n)| *d == dir && n == name) {
                    report.problem(
                        format!("inode {child}"),
                        format!(
                            "its names do not list the entry {:?} of directory {dir}",
                            String::from_utf8_lossy(name)
                        ),
                    );
                }
                if c.is_dir() {
                    subdirs += 1;
                    stack.push(child);
                } else {
                    seen.insert(child);
                }
            }
            // Link counts are checked against the tracked count (State::inode_problems); here the
            // tracked count against the entries.
            if inode.subdir_count() != subdirs {
                report.problem(
                    format!("inode {dir}"),
                    format!("{subdirs} subdirectories but {} tracked", inode.subdir_count()),
                );
            }
        }
        for (&ino, inode) in &state.inodes {
            let entries = entries_naming.get(&ino).copied().unwrap_or(0);
            if seen.contains(&ino) && inode.names.len() != entries {
                report.problem(
                    format!("inode {ino}"),
                    format!("{} names tracked but {entries} directory entries name it", inode.names.len()),
                );
            }
        }
        let orphans: BTreeMap<u64, bool> = state
            .inodes
            .keys()
            .filter(|ino| !seen.contains(ino))
            .map(|&ino| (ino, self.open_counts.contains_key(&ino)))
            .collect();
        for (ino, open) in orphans {
            let inode = &state.inodes[&ino];
            // A file unlinked while open outlives a crash; the next read-write mount frees it, so
            // a read-only mount legitimately still holds it.
            let pending_reclaim = self.read_only && !inode.is_dir();
            if inode.attrs.nlink != 0 {
                let dir = if inode.is_dir() { ino } else { inode.parent() };
                let why = state.directory_cycle(dir).unwrap_or_else(|| "not reachable from the root".into());
                report.problem(format!("inode {ino}"), why);
            } else if !open && !pending_reclaim {
                report.problem(format!("inode {ino}"), "unlinked, not open, yet not freed");
            }
        }
    }
}

fn first_difference(a: &OwnerMap, b: &OwnerMap) -> String {
    for (x, y) in a.iter().zip(b.iter()) {
        if x != y {
            return format!(
                "; first difference at pool block {}: live {:?} vs rebuilt {:?}",
                x.0.min(y.0),
                x,
                y
            );
        }
    }
    String::new()
}
