//! The rules every state decoded from media must obey, and the validation of replay and checkpoints.
//!
//! Owns the rules themselves: names (not empty, no '/', no NUL, not "." or "..", at most 255
//! bytes; the root's is empty), kinds, parents (an existing directory holding the name, no
//! duplicate names, no directory cycles), link counts (a file 1, or 0 only while open after an
//! unlink; a directory 2 plus its subdirectories; the root its own parent), sizes (at most
//! [`MAX_FILE_SIZE`], directories 0, no block mapped past EOF), inode numbers (below `next_ino`),
//! and where an extent may lie (inside the pool, never on the superblocks, the log, the checkpoint,
//! or a bad block nobody owns).
//!
//! Three callers share them, so they agree: [`State::replay_record`] (after each log record, only
//! what the record touched: cheap and local, because one record is one whole operation),
//! [`State::from_image`] (every inode once, through [`State::validate_whole`]), and fsck
//! (`fs::check`, on the live state). Must never change the state, and never run for live
//! operations: those states are right by construction, and validating them would cost every
//! operation.

use super::ownership::MetaStructure;
use super::state::{ApplyMode, Inode, State};
use crate::error::{Error, Result};
use crate::format::record::{InodeKind, Mutation};
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE, MAX_NAME_LEN, ROOT_INO};
use std::collections::HashSet;

/// What is wrong with a name in a directory, or `None` for a good one.
pub fn name_problem(name: &[u8]) -> Option<String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() {
        Some("an empty name".into())
    } else if name == b"." || name == b".." {
        Some(format!("the name {shown:?} is reserved for the directory itself or its parent"))
    } else if name.contains(&b'/') {
        Some(format!("the name {shown:?} contains '/'"))
    } else if name.contains(&0) {
        Some(format!("the name {shown:?} contains NUL"))
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("a name of {} bytes (at most {MAX_NAME_LEN})", name.len()))
    } else {
        None
    }
}

/// Names the log record at `log_byte` with sequence number `seq` in a corruption found in it.
pub fn in_log_record(seq: u64, log_byte: u64, e: Error) -> Error {
    match e {
        Error::Corrupt(detail) => Error::Corrupt(format!("log record {seq} (log byte {log_byte}): {detail}")),
        other => other,
    }
}

/// Checks that a pool block range lies inside the data area of the pool.
pub(super) fn check_pool_range(start: u64, len: u64, total_blocks: u64) -> std::result::Result<(), String> {
    if len == 0 || start.checked_add(len).is_none_or(|e| e > total_blocks) {
        return Err(format!("pool blocks [{start}, +{len}) outside the pool of {total_blocks} blocks"));
    }
    if start < 2 {
        return Err(format!("pool blocks [{start}, +{len}): block 0 and 1 are the superblocks"));
    }
    Ok(())
}

/// Why pool blocks `[start, +len)` cannot be a file's: they overlap `structure`.
pub(super) fn overlap_detail(start: u64, len: u64, structure: MetaStructure) -> String {
    match structure {
        MetaStructure::Superblock(_) => {
            format!("pool blocks [{start}, +{len}): block 0 and 1 are the superblocks")
        }
        MetaStructure::Log => format!("pool blocks [{start}, +{len}) overlap the log region"),
        MetaStructure::LogMirror => format!("pool blocks [{start}, +{len}) overlap the log mirror"),
        MetaStructure::Checkpoint => format!("pool blocks [{start}, +{len}) overlap the checkpoint"),
        MetaStructure::CheckpointMirror => {
            format!("pool blocks [{start}, +{len}) overlap the checkpoint mirror")
        }
    }
}

impl State {
    /// Applies one log record (all the mutations of one operation) during replay, then validates
    /// what it touched: the inodes it put, mapped or freed, their old and new parents, and the
    /// ancestors of every directory among them (no cycle). `seq` and `log_byte` name the record
    /// in the error: `Error::Corrupt("log record <seq> (log byte <offset>): <what is wrong>")`.
    pub fn replay_record(&mut self, mutations: &[Mutation], seq: u64, log_byte: u64) -> Result<()> {
        let in_record = |detail: String| in_log_record(seq, log_byte, Error::Corrupt(detail));
        // The inodes the record names first (the report then names what the record did), then
        // the directories whose entries it changed.
        let mut named = Vec::with_capacity(mutations.len());
        let mut parents = Vec::with_capacity(2 * mutations.len());
        for m in mutations {
            match m {
                Mutation::PutInode(attrs) => {
                    named.push(attrs.ino);
                    parents.push(attrs.parent);
                    parents.extend(self.inodes.get(&attrs.ino).map(|i| i.attrs.parent));
                }
                Mutation::FreeInode { ino } => parents.extend(self.inodes.get(ino).map(|i| i.attrs.parent)),
                Mutation::Map { ino, .. } => named.push(*ino),
                Mutation::Quarantine { .. } => {}
            }
            self.apply_one(m, ApplyMode::Replay).map_err(in_record)?;
        }
        named.sort_unstable();
        named.dedup();
        parents.sort_unstable();
        parents.dedup();
        parents.retain(|p| named.binary_search(p).is_err());
        for ino in named.into_iter().chain(parents) {
            let Some(inode) = self.inodes.get(&ino) else { continue };
            if let Some(problem) = self.inode_problems(ino).into_iter().next() {
                return Err(in_record(format!("inode {ino}: {problem}")));
            }
            if inode.is_dir() {
                if let Some(problem) = self.directory_cycle(ino) {
                    return Err(in_record(format!("inode {ino}: {problem}")));
                }
            }
        }
        Ok(())
    }

    /// Everything wrong with inode `ino` by itself and with its name: see the module
    /// documentation. Cheap: no walk over extents or entries. Empty when it is fine.
    pub fn inode_problems(&self, ino: u64) -> Vec<String> {
        match self.inodes.get(&ino) {
            Some(inode) => self.problems_of(inode, false),
            None => vec!["missing".into()],
        }
    }

    /// [`State::inode_problems`] of `inode`. With `links_built`, trusts that a named inode's
    /// parent is a directory holding its entry (true when the entries were built from the names,
    /// as a checkpoint's are, which refuses a missing parent or a duplicate): two lookups fewer per
    /// inode, one of them in a possibly large directory.
    fn problems_of(&self, inode: &Inode, links_built: bool) -> Vec<String> {
        let mut out = Vec::new();
        let ino = inode.attrs.ino;
        let attrs = &inode.attrs;
        if ino == 0 || ino >= self.next_ino {
            out.push(format!("inode number {ino} is not below the next free inode number {}", self.next_ino));
        }
        if ino == ROOT_INO {
            if attrs.kind != InodeKind::Dir {
                out.push("the root is not a directory".into());
            }
            if attrs.parent != ROOT_INO {
                out.push(format!("the root directory's parent is {}, not itself", attrs.parent));
            }
            if !attrs.name.is_empty() {
                out.push(format!(
                    "the root directory has a name, {:?}",
                    String::from_utf8_lossy(&attrs.name)
                ));
            }
        } else if attrs.nlink > 0 {
            out.extend(name_problem(&attrs.name));
            let parent = attrs.parent;
            if !links_built {
                match self.inodes.get(&parent) {
                    None => out.push(format!("named in directory {parent}, which does not exist")),
                    Some(dir) if !dir.is_dir() => {
                        out.push(format!("named in inode {parent}, which is a file"))
                    }
                    Some(dir) => match dir.children.get(&attrs.name) {
                        Some(&entry) if entry == ino => {}
                        Some(&other) => out.push(format!(
                            "its name {:?} in directory {parent} is inode {other}'s: a duplicate name",
                            String::from_utf8_lossy(&attrs.name)
                        )),
                        None => out.push(format!("missing from the entries of directory {parent}")),
                    },
                }
            }
        } else if !attrs.name.is_empty() {
            // An open file after its unlink keeps the name it had, which was a good one.
            out.extend(name_problem(&attrs.name));
        }
        match attrs.kind {
            InodeKind::Dir => {
                if attrs.nlink == 0 {
                    out.push("a directory with link count 0 (only a file outlives its last name)".into());
                } else if u64::from(attrs.nlink) != 2 + inode.subdir_count {
                    out.push(format!(
                        "directory link count {} but {} subdirectories (expected {})",
                        attrs.nlink,
                        inode.subdir_count,
                        2 + inode.subdir_count
                    ));
                }
                if attrs.size != 0 {
                    out.push(format!("a directory of size {} (a directory has size 0)", attrs.size));
                }
                if !inode.extents.is_empty() {
                    out.push("a directory with mapped blocks".into());
                }
            }
            InodeKind::File => {
                if attrs.nlink > 1 {
                    out.push(format!(
                        "a file with link count {} (a file has one name, or none while open after an unlink)",
                        attrs.nlink
                    ));
                }
                if attrs.size > MAX_FILE_SIZE {
                    out.push(format!("size {} past the largest file size {MAX_FILE_SIZE}", attrs.size));
                }
                let eof_block = attrs.size.div_ceil(BLOCK_SIZE);
                if inode.extents.end_block() > eof_block {
                    out.push(format!(
                        "blocks mapped past EOF (size {}, mapped to block {})",
                        attrs.size,
                        inode.extents.end_block()
                    ));
                }
                if !inode.children.is_empty() {
                    out.push("a file with directory entries".into());
                }
            }
        }
        out
    }

    /// Whether directory `dir`'s ancestors fail to reach the root (a directory cycle), walking
    /// at most one step per inode. `None` when they reach it, or when the walk meets a missing or
    /// unnamed ancestor ([`State::inode_problems`] reports those).
    pub fn directory_cycle(&self, dir: u64) -> Option<String> {
        let mut cur = dir;
        for _ in 0..=self.inodes.len() {
            if cur == ROOT_INO {
                return None;
            }
            let inode = self.inodes.get(&cur)?;
            if inode.attrs.nlink == 0 {
                return None;
            }
            cur = inode.attrs.parent;
            if cur == dir {
                return Some(format!("directory {dir} is inside itself: a directory cycle"));
            }
        }
        Some(format!("directory {dir} lies below a directory cycle: its ancestors never reach the root"))
    }

    /// Validates a whole state (a checkpoint's): every inode's rules, a root directory, and a
    /// tree: every named inode reachable from the root.
    pub(super) fn validate_whole(&self) -> std::result::Result<(), String> {
        if !self.inodes.get(&ROOT_INO).is_some_and(|r| r.is_dir()) {
            return Err("no root directory".into());
        }
        // The lowest-numbered inode with a problem, so the report does not depend on hash order.
        // The entries were built from the names (link_children), so each name's entry is its own.
        let first_bad = self
            .inodes
            .values()
            .filter(|inode| !self.problems_of(inode, true).is_empty())
            .map(|inode| inode.attrs.ino)
            .min();
        if let Some(ino) = first_bad {
            return Err(format!("inode {ino}: {}", self.problems_of(&self.inodes[&ino], true)[0]));
        }
        // Every entry is now its inode's own (parent, name), so an inode sits in at most one
        // directory and the walk from the root visits each at most once: it reaches every named
        // inode unless some hang below a cycle.
        let named = self.inodes.values().filter(|i| i.attrs.nlink > 0).count();
        let mut reached = 0;
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            reached += 1;
            for &child in self.inodes[&dir].children.values() {
                if self.inodes[&child].is_dir() {
                    stack.push(child);
                } else {
                    reached += 1;
                }
            }
        }
        if reached == named {
            return Ok(());
        }
        let mut reached = HashSet::with_capacity(reached);
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            reached.insert(dir);
            stack.extend(self.inodes[&dir].children.values().copied());
        }
        let lost = self
            .inodes
            .values()
            .filter(|i| i.attrs.nlink > 0 && !reached.contains(&i.attrs.ino))
            .map(|i| i.attrs.ino)
            .min()
            .expect("some named inode is not reached");
        let dir = if self.inodes[&lost].is_dir() { lost } else { self.inodes[&lost].attrs.parent };
        let why = self.directory_cycle(dir).unwrap_or_else(|| "not reachable from the root".into());
        Err(format!("inode {lost}: {why}"))
    }

    /// Replay only: why file data may not land on pool blocks `[start, +len)` (already inside the
    /// pool): they overlap a metadata structure, or a bad block nobody owns. A bad block may gain
    /// owners only while it has some (a reflink of a poisoned range).
    pub(super) fn map_target_problem(&self, start: u64, len: u64) -> std::result::Result<(), String> {
        if let Some(structure) = self.owners.metadata_in(start, len) {
            return Err(overlap_detail(start, len, structure));
        }
        let end = start + len;
        // Bad runs are disjoint and sorted: walk back from the range's end to the first one below it.
        for (&bad, &bad_len) in self.quarantine.range(..end).rev().take_while(|(&s, &l)| s + l > start) {
            let (from, to) = (bad.max(start), (bad + bad_len).min(end));
            if let Some(block) = self.owners.first_unowned(from, to - from) {
                return Err(format!(
                    "pool blocks [{start}, +{len}): block {block} is quarantined (bad) and no file owns it"
                ));
            }
        }
        Ok(())
    }
}
