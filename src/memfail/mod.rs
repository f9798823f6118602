//! Memory failure: when pool blocks go bad, find every owner through the reverse map, record the
//! poison durably, take the bad pages out of every view of every owner, and report it all.
//!
//! Owns the orchestration of SPEC section 5 and the report. It sits above the file system and the
//! DAX layer and only uses their interfaces: owners from `FileSystem::owners`, durable poison from
//! `FileSystem::record_bad_blocks`, view invalidation from the layout change that recording emits.
//! Must never: guess owners by scanning files, lose a good byte, or hand a bad block out again.

pub mod badblocks;

use crate::dax::DaxLayer;
use crate::error::Result;
use crate::format::BLOCK_SIZE;
use crate::fs::{BadBlockOutcome, FileSystem, OwnerKind};

/// One file that owns part of the failed range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileOwner {
    /// Inode.
    pub ino: u64,
    /// Path, or `None` for an open unlinked file.
    pub path: Option<String>,
    /// Offset in the file of the first bad byte it owns.
    pub file_offset: u64,
    /// Bytes it owns in the range.
    pub length: u64,
    /// Whether the blocks are shared with other owners (reflink or dedupe).
    pub shared: bool,
}

/// One view page that showed a bad block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewHit {
    /// The view.
    pub view: u64,
    /// Who holds it.
    pub holder: crate::dax::Holder,
    /// The file it shows.
    pub ino: u64,
    /// File offset of the page.
    pub file_offset: u64,
    /// Address of the page in the holder's view.
    pub address: usize,
    /// What was done: the page now raises SIGBUS (BUS_MCEERR_AR) on access.
    pub action: String,
}

/// Everything one memory failure did (SPEC section 5, step 8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailureReport {
    /// First failed pool byte.
    pub pool_offset: u64,
    /// Failed bytes.
    pub length: u64,
    /// File owners, from the reverse map.
    pub files: Vec<FileOwner>,
    /// Metadata structures on the failed blocks.
    pub metadata: Vec<String>,
    /// Blocks of the range that no one used (now quarantined).
    pub free_blocks: u64,
    /// What recording the poison did (new, already known, relocated metadata, lost superblock copies).
    pub recorded: BadBlockOutcome,
    /// View pages taken out.
    pub views: Vec<ViewHit>,
}

impl std::fmt::Display for FailureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "memory failure at pool [{:#x}, +{:#x}): {} block(s) newly bad, {} already known",
            self.pool_offset, self.length, self.recorded.newly_bad, self.recorded.already_bad
        )?;
        for o in &self.files {
            writeln!(
                f,
                "  file {} (ino {}) offset {} length {} {}",
                o.path.as_deref().unwrap_or("(unlinked)"),
                o.ino,
                o.file_offset,
                o.length,
                if o.shared { "shared" } else { "private" }
            )?;
        }
        for m in &self.metadata {
            writeln!(f, "  metadata: {m}")?;
        }
        if self.free_blocks > 0 {
            writeln!(f, "  free blocks quarantined: {}", self.free_blocks)?;
        }
        for r in &self.recorded.relocated {
            writeln!(f, "  repaired: {r} moved off the bad blocks, nothing lost")?;
        }
        for c in &self.recorded.lost_superblock_copies {
            writeln!(f, "  superblock copy {c} is on a bad block; the other copy carries on")?;
        }
        for v in &self.views {
            writeln!(
                f,
                "  view {} of ino {} (pid {} {}) page at file offset {} address {:#x}: {}",
                v.view, v.ino, v.holder.pid, v.holder.thread, v.file_offset, v.address, v.action
            )?;
        }
        Ok(())
    }
}

/// Handles the failure of pool bytes `[pool_offset, pool_offset + len)`: SPEC section 5 steps
/// 1-3, 5, 6 and 8. Views follow when the caller's write guard applies the layout changes.
pub fn handle(fs: &mut FileSystem, dax: &DaxLayer, pool_offset: u64, len: u64) -> Result<FailureReport> {
    let len = len.max(1);
    let first = pool_offset / BLOCK_SIZE;
    let end = (pool_offset + len).div_ceil(BLOCK_SIZE);
    // 1. Every owner, from the reverse map.
    let mut files = Vec::new();
    let mut metadata = Vec::new();
    for owner in fs.owners(first * BLOCK_SIZE, (end - first) * BLOCK_SIZE) {
        match owner.owner {
            OwnerKind::File { ino, path, file_offset, refcount } => {
                files.push(FileOwner { ino, path, file_offset, length: owner.length, shared: refcount > 1 })
            }
            OwnerKind::Metadata { structure } => {
                if !metadata.contains(&structure) {
                    metadata.push(structure);
                }
            }
        }
    }
    // 2. The views that show the bad blocks (they are re-pointed at SIGBUS sentinels when the
    // recorded poison reaches the DAX layer).
    let mut views = Vec::new();
    for block in first..end {
        for (view, page) in dax.views_showing(block) {
            views.push(ViewHit {
                view: view.id,
                holder: view.holder.clone(),
                ino: view.ino,
                file_offset: (view.first_page + page) * BLOCK_SIZE,
                address: view.addr() + (page * BLOCK_SIZE) as usize,
                action: "unmapped: an access raises SIGBUS BUS_MCEERR_AR".into(),
            });
        }
    }
    // 3, 5, 6. Record the poison durably; move metadata off it; quarantine free blocks.
    let free_before: u64 =
        (first..end).filter(|&b| matches!(fs.share_state(b), crate::fs::ShareState::Free)).count() as u64;
    let recorded = fs.record_bad_blocks(first, end - first)?;
    Ok(FailureReport { pool_offset, length: len, files, metadata, free_blocks: free_before, recorded, views })
}
