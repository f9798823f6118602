//! The rules every state decoded from media must obey, and the validation of replay and checkpoints.
//!
//! Owns the rules themselves: names (not empty, no '/', no NUL, not "." or "..", at most 255
//! bytes; the root has none), kinds (only files map blocks, only directories hold entries, only
//! symlinks have a target: 1 to 4095 bytes without NUL, their size), names per inode (a directory
//! exactly one, no directory cycles; a file or symlink any number, its link count; a file 0 only
//! while open after its last unlink), directory link counts (2 plus its subdirectories), sizes (at
//! most [`MAX_FILE_SIZE`], directories 0, no block mapped past EOF), modes (`0o7777` at most),
//! extended attributes (`user.` names, values of at most 64 KiB), inode numbers (below `next_ino`),
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
use crate::format::{
    BLOCK_SIZE, MAX_FILE_SIZE, MAX_NAME_LEN, MAX_SYMLINK_LEN, MAX_XATTR_NAME_LEN, MAX_XATTR_VALUE_LEN,
    ROOT_INO,
};
use std::collections::HashSet;

/// What is wrong with a name in a directory, or `None` for a good one.
pub fn name_problem(name: &[u8]) -> Option<String> {
    // Built only for a message: mount checks every name, and most are fine.
    let shown = || String::from_utf8_lossy(name);
    if name.is_empty() {
        Some("an empty name".into())
    } else if name == b"." || name == b".." {
        Some(format!("the name {:?} is reserved for the directory itself or its parent", shown()))
    } else if name.contains(&b'/') {
        Some(format!("the name {:?} contains '/'", shown()))
    } else if name.contains(&0) {
        Some(format!("the name {:?} contains NUL", shown()))
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("a name of {} bytes (at most {MAX_NAME_LEN})", name.len()))
    } else {
        None
    }
}

/// What is wrong with an extended attribute, or `None` for a good one: only the `user.`
/// namespace is kept, names of at most [`MAX_XATTR_NAME_LEN`] bytes without NUL, values of at most
/// [`MAX_XATTR_VALUE_LEN`] bytes.
pub fn xattr_problem(name: &[u8], value: &[u8]) -> Option<String> {
    let shown = || String::from_utf8_lossy(name);
    if !name.starts_with(b"user.") || name.len() == 5 {
        Some(format!("the extended attribute {:?} is not named user.<something>", shown()))
    } else if name.len() > MAX_XATTR_NAME_LEN || name.contains(&0) {
        Some(format!("the extended attribute name {:?} is too long or contains NUL", shown()))
    } else if value.len() > MAX_XATTR_VALUE_LEN {
        Some(format!("the extended attribute {:?} has a value of {} bytes", shown(), value.len()))
    } else {
        None
    }
}

/// The word for an inode kind in messages.
pub fn kind_name(kind: InodeKind) -> &'static str {
    match kind {
        InodeKind::File => "file",
        InodeKind::Dir => "directory",
        InodeKind::Symlink => "symlink",
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
        // The inodes the record names, in its order (the report then names what the record did
        // first), and the directories whose entries it changed.
        let mut touched = Vec::with_capacity(2 * mutations.len());
        for m in mutations {
            match m {
                Mutation::PutInode(attrs) => touched.push(attrs.ino),
                Mutation::Map { ino, .. }
                | Mutation::SetXattr { ino, .. }
                | Mutation::SetTarget { ino, .. } => touched.push(*ino),
                Mutation::Link { dir, ino, .. } | Mutation::Unlink { dir, ino, .. } => {
                    touched.push(*ino);
                    touched.push(*dir);
                }
                Mutation::Clone { dst, .. } => touched.push(*dst),
                Mutation::FreeInode { .. } | Mutation::Quarantine { .. } => {}
            }
            self.apply_one(m, ApplyMode::Replay).map_err(in_record)?;
        }
        let mut seen = HashSet::with_capacity(touched.len());
        for ino in touched {
            if !seen.insert(ino) {
                continue;
            }
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

    /// Everything wrong with inode `ino` by itself and with its names: see the module
    /// documentation. Cheap: no walk over extents or entries. Empty when it is fine.
    pub fn inode_problems(&self, ino: u64) -> Vec<String> {
        match self.inodes.get(&ino) {
            Some(inode) => self.problems_of(inode),
            None => vec!["missing".into()],
        }
    }

    /// [`State::inode_problems`] of `inode`. Entries and names mirror each other by construction
    /// ([`State::apply`] keeps both), so a name's directory holds its entry.
    pub(super) fn problems_of(&self, inode: &Inode) -> Vec<String> {
        let mut out = Vec::new();
        let ino = inode.attrs.ino;
        let attrs = &inode.attrs;
        let names = inode.names.len();
        if ino == 0 || ino >= self.next_ino {
            out.push(format!("inode number {ino} is not below the next free inode number {}", self.next_ino));
        }
        if ino == ROOT_INO {
            if attrs.kind != InodeKind::Dir {
                out.push("the root is not a directory".into());
            }
            if names != 0 {
                out.push(format!("the root directory has {names} name(s)"));
            }
        }
        for (_, name) in &inode.names {
            out.extend(name_problem(name));
        }
        for (name, value) in inode.xattrs() {
            out.extend(xattr_problem(name, value));
        }
        if attrs.mode & !0o7777 != 0 {
            out.push(format!("mode {:o} has bits beyond 0o7777", attrs.mode));
        }
        if attrs.kind != InodeKind::Dir && !inode.children().is_empty() {
            out.push("a file with directory entries".into());
        }
        if attrs.kind != InodeKind::Symlink && !inode.target().is_empty() {
            out.push("a symlink target on an inode that is not a symlink".into());
        }
        if attrs.kind != InodeKind::File && !inode.extents.is_empty() {
            out.push(format!("a {} with mapped blocks", kind_name(attrs.kind)));
        }
        match attrs.kind {
            InodeKind::Dir => {
                if ino != ROOT_INO && names != 1 {
                    out.push(format!("a directory with {names} names (a directory has exactly one)"));
                }
                if u64::from(attrs.nlink) != 2 + inode.subdir_count() {
                    out.push(format!(
                        "directory link count {} but {} subdirectories (expected {})",
                        attrs.nlink,
                        inode.subdir_count(),
                        2 + inode.subdir_count()
                    ));
                }
                if attrs.size != 0 {
                    out.push(format!("a directory of size {} (a directory has size 0)", attrs.size));
                }
            }
            InodeKind::File => {
                // A partial state (a lazily mounted pool) holds the names an inode was walked
                // through, not necessarily all: link counts are checked with the whole state.
                if attrs.nlink as usize != names && !self.is_partial() {
                    out.push(format!("link count {} but {names} name(s)", attrs.nlink));
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
            }
            InodeKind::Symlink => {
                if (attrs.nlink as usize != names && !self.is_partial()) || names == 0 {
                    out.push(format!(
                        "symlink link count {} with {names} name(s) (a symlink has at least one)",
                        attrs.nlink
                    ));
                }
                if inode.target().is_empty()
                    || inode.target().contains(&0)
                    || inode.target().len() > MAX_SYMLINK_LEN
                {
                    out.push(format!(
                        "a symlink target of {} bytes, empty or with NUL",
                        inode.target().len()
                    ));
                }
                if attrs.size != inode.target().len() as u64 {
                    out.push(format!(
                        "symlink size {} but a target of {} bytes",
                        attrs.size,
                        inode.target().len()
                    ));
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
            cur = self.inodes.get(&cur)?.names.first()?.0;
            if cur == dir {
                return Some(format!("directory {dir} is inside itself: a directory cycle"));
            }
        }
        Some(format!("directory {dir} lies below a directory cycle: its ancestors never reach the root"))
    }

    /// Validates a whole state (a checkpoint's): every inode's rules, a root directory, and a
    /// tree: every directory reachable from the root (then every named file is too).
    pub(super) fn validate_whole(&self) -> std::result::Result<(), String> {
        self.validate_whole_in_order(self.inodes.keys().copied())
    }

    /// [`State::validate_whole`], visiting the inodes in the order `inos` lists them (each once,
    /// all of them). Mount passes the checkpoint's order, the order the inodes and their extents
    /// were laid out in memory: visiting them in the map's hash order instead made every inode a
    /// cache miss (a quarter of a process start on a pool of a million extents).
    pub(super) fn validate_whole_in_order(
        &self,
        inos: impl Iterator<Item = u64>,
    ) -> std::result::Result<(), String> {
        if !self.inodes.get(&ROOT_INO).is_some_and(|r| r.is_dir()) {
            return Err("no root directory".into());
        }
        // The lowest-numbered inode with a problem, so the report does not depend on the order.
        let first_bad = inos
            .filter(|ino| self.inodes.get(ino).is_some_and(|inode| !self.problems_of(inode).is_empty()))
            .min();
        if let Some(ino) = first_bad {
            return Err(format!("inode {ino}: {}", self.problems_of(&self.inodes[&ino])[0]));
        }
        // Every directory but the root has exactly one name now, so the walk from the root visits
        // each at most once: it reaches every directory unless some hang below a cycle.
        let dirs = self.inodes.values().filter(|i| i.is_dir()).count();
        let mut reached = HashSet::with_capacity(dirs);
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            reached.insert(dir);
            stack.extend(self.inodes[&dir].children().values().copied().filter(|c| self.inodes[c].is_dir()));
        }
        if reached.len() == dirs {
            return Ok(());
        }
        let lost = self
            .inodes
            .values()
            .filter(|i| i.is_dir() && !reached.contains(&i.attrs.ino))
            .map(|i| i.attrs.ino)
            .min()
            .expect("some directory is not reached");
        let why = self.directory_cycle(lost).unwrap_or_else(|| "not reachable from the root".into());
        Err(format!("inode {lost}: {why}"))
    }

    /// Replay only: why file data may not land on pool blocks `[start, +len)` (already inside the
    /// pool): they overlap a metadata structure, or a bad block nobody owns. A bad block may gain
    /// owners only while it has some (a reflink of a poisoned range).
    pub(super) fn map_target_problem(&self, start: u64, len: u64) -> std::result::Result<(), String> {
        if let Some(structure) = self.owners().metadata_in(start, len) {
            return Err(overlap_detail(start, len, structure));
        }
        let end = start + len;
        // Bad runs are disjoint and sorted: walk back from the range's end to the first one below it.
        for (&bad, &bad_len) in self.quarantine.range(..end).rev().take_while(|(&s, &l)| s + l > start) {
            let (from, to) = (bad.max(start), (bad + bad_len).min(end));
            if let Some(block) = self.owners().first_unowned(from, to - from) {
                return Err(format!(
                    "pool blocks [{start}, +{len}): block {block} is quarantined (bad) and no file owns it"
                ));
            }
        }
        Ok(())
    }
}
