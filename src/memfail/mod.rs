//! Memory failure: when pool blocks go bad, find every owner through the reverse map, record the
//! poison durably, take the bad pages out of every view of every owner, and report it all.
//!
//! Owns the orchestration of SPEC section 5 and the report. It sits above the file system and the
//! DAX layer and only uses their interfaces: owners from `FileSystem::owners`, durable poison from
//! `FileSystem::record_bad_blocks`, view invalidation from the layout change that recording emits.
//! Notices: [`handle`] only collects them (under the file-system lock); the caller delivers them
//! with [`PendingNotices::deliver`] after releasing every lock, because user code never runs under
//! a ferrodax lock (see `dax::fault`). Early subscribers get action-optional notices; the others
//! are told on access (action-required, from the SIGBUS handler); the accessor named in
//! [`FailureFlags`] gets an action-required notice. A block that is already bad shows in no view
//! (its pages are sentinels already), so failing it again reports it as already bad and sends no
//! new notice.
//! Must never: guess owners by scanning files, lose a good byte, hand a bad block out again, or
//! call a subscriber while a lock is held.

pub mod badblocks;
pub mod hardware;

use crate::dax::{DaxLayer, Notice, NoticeCallback, NoticeKind};
use crate::error::Result;
use crate::format::BLOCK_SIZE;
use crate::fs::{BadBlockOutcome, FileSystem, OwnerKind};

/// One file that owns part of the failed range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileOwner {
    /// Inode.
    pub ino: u64,
    /// Path, or `None` for an open unlinked file (as named right after the notices went out).
    pub path: Option<String>,
    /// Pool offset of the first bad byte it owns.
    pub pool_offset: u64,
    /// Offset in the file of the first bad byte it owns.
    pub file_offset: u64,
    /// Bytes it owns in the range.
    pub length: u64,
    /// Whether the blocks are shared with other owners (reflink or dedupe).
    pub shared: bool,
}

/// How a memory failure is reported (the `flags` of `Fs::memory_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureFlags {
    /// Like the kernel's MF_ACTION_REQUIRED: the calling thread consumed the poison through one of
    /// the views at this address. That view page's holder gets an action-required notice (whether
    /// it subscribed early or not) instead of an action-optional one. Delivering the SIGBUS
    /// (BUS_MCEERR_AR) itself is the caller's business: the library's SIGBUS handler passes the
    /// kernel's signal on after handling the failure. `None`: an injection, a bad-block list or an
    /// action-optional machine check; nobody consumed the poison yet.
    pub accessor: Option<usize>,
    /// The view that `accessor` lies in, when the address alone is ambiguous: a pool server's
    /// clients are separate processes whose views may sit at the same addresses. `None`: any view
    /// of the calling process (a direct mount has only those).
    pub accessor_view: Option<u64>,
}

/// How the holder of a view page that showed a bad block is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Told {
    /// An early subscriber: an action-optional notice was sent at once.
    ActionOptionalNotice,
    /// A subscriber without early notice: told (action-required) when it touches the page.
    OnAccess,
    /// No subscriber: an access raises SIGBUS BUS_MCEERR_AR.
    SigbusOnAccess,
    /// The accessor named in the flags, subscribed: an action-required notice was sent.
    AccessorNotice,
    /// The accessor named in the flags, not subscribed: it gets SIGBUS BUS_MCEERR_AR.
    AccessorSigbus,
}

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Told::ActionOptionalNotice => "action-optional notice sent",
            Told::OnAccess => "told on access (action-required)",
            Told::SigbusOnAccess => "no subscriber: SIGBUS BUS_MCEERR_AR on access",
            Told::AccessorNotice => "accessor: action-required notice sent, SIGBUS BUS_MCEERR_AR",
            Told::AccessorSigbus => "accessor, no subscriber: SIGBUS BUS_MCEERR_AR",
        })
    }
}

/// Notices collected under the file-system lock, to deliver after it is released.
#[derive(Default)]
pub struct PendingNotices(Vec<(NoticeCallback, Notice)>);

impl PendingNotices {
    /// Queues `notice` for `callback`.
    pub fn push(&mut self, callback: NoticeCallback, notice: Notice) {
        self.0.push((callback, notice));
    }

    /// Number of notices waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Calls every callback. The caller must hold no ferrodax lock.
    pub fn deliver(self) {
        debug_assert!(!crate::dax::fault::holds_lock(), "notices are delivered outside every lock");
        for (callback, notice) in self.0 {
            callback(&notice);
        }
    }
}

/// One view page that showed a bad block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// How the holder is told.
    pub how: Told,
    /// The same in words: the page now raises SIGBUS (BUS_MCEERR_AR) on access, and how the
    /// holder is told.
    pub action: String,
}

/// Everything one memory failure did (SPEC section 5, step 8).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        for lost in &self.recorded.lost {
            writeln!(f, "  LOST: {lost}")?;
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

/// What a pre-remove did (SPEC section 5 step 7): the pool is going away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreRemoveReport {
    /// Views whose every page now raises SIGBUS (BUS_MCEERR_AR).
    pub views_invalidated: usize,
    /// Action-optional notices sent: one per run of view pages that showed consecutive pool
    /// blocks, to every subscriber, early or not.
    pub notices: Vec<Notice>,
    /// Views that showed pool blocks but had no subscriber: their holders learn on access.
    pub unsubscribed_views: Vec<u64>,
    /// Whether a final checkpoint was written (not on a read-only mount).
    pub checkpoint_written: bool,
}

/// Handles the failure of pool bytes `[pool_offset, pool_offset + len)`: SPEC section 5 steps
/// 1-3, 5, 6 and 8. Views follow when the caller's write guard applies the layout changes; the
/// notices are returned for the caller to deliver after releasing the lock. The report's file
/// owners have no paths yet: the caller names them with [`name_owners`] once the notices are out
/// (naming 10,000 sharers reads 10,000 inodes and names; nobody waits for that to be told).
pub fn handle(
    fs: &mut FileSystem,
    dax: &DaxLayer,
    pool_offset: u64,
    len: u64,
    flags: FailureFlags,
) -> Result<(FailureReport, PendingNotices)> {
    let len = len.max(1);
    let first = pool_offset / BLOCK_SIZE;
    let end = (pool_offset + len).div_ceil(BLOCK_SIZE);
    // 1. Every owner, from the reverse map, without paths yet (see [`name_owners`]). The file
    // owners are collected in place of the owner list (no second list of 10,000 entries for a
    // widely shared page).
    let mut metadata = Vec::new();
    let files: Vec<FileOwner> = fs
        .owners_unnamed(first * BLOCK_SIZE, (end - first) * BLOCK_SIZE)
        .into_iter()
        .filter_map(|owner| match owner.owner {
            OwnerKind::File { ino, path, file_offset, refcount } => Some(FileOwner {
                ino,
                path,
                pool_offset: owner.pool_offset,
                file_offset,
                length: owner.length,
                shared: refcount > 1,
            }),
            OwnerKind::Metadata { structure } => {
                if !metadata.contains(&structure) {
                    metadata.push(structure);
                }
                None
            }
        })
        .collect();
    // 2. The views that show the bad blocks (they are re-pointed at SIGBUS sentinels when the
    // recorded poison reaches the DAX layer), and how each holder is told.
    let mut views = Vec::new();
    let mut notices = PendingNotices::default();
    for block in first..end {
        // The failed bytes of this block: [block_start + skip, block_end').
        let block_start = block * BLOCK_SIZE;
        let skip = pool_offset.saturating_sub(block_start);
        let bad_len = (pool_offset + len).min(block_start + BLOCK_SIZE) - (block_start + skip);
        for (view, page) in dax.views_showing(block) {
            let page_addr = view.addr() + (page * BLOCK_SIZE) as usize;
            let accessor = flags
                .accessor
                .filter(|&a| a >= page_addr && a < page_addr + BLOCK_SIZE as usize)
                .filter(|_| flags.accessor_view.is_none_or(|v| v == view.id));
            let subscription = view.subscription();
            let how = match (accessor, &subscription) {
                (Some(_), Some(_)) => Told::AccessorNotice,
                (Some(_), None) => Told::AccessorSigbus,
                (None, Some(s)) if s.early => Told::ActionOptionalNotice,
                (None, Some(_)) => Told::OnAccess,
                (None, None) => Told::SigbusOnAccess,
            };
            let file_offset = (view.first_page + page) * BLOCK_SIZE;
            if let Some(s) = subscription.filter(|_| how != Told::OnAccess) {
                let (kind, delta, length) = match accessor {
                    Some(a) => (NoticeKind::ActionRequired, (a - page_addr) as u64, 1),
                    None => (NoticeKind::ActionOptional, skip, bad_len),
                };
                notices.push(
                    s.callback,
                    Notice {
                        kind,
                        view: view.id,
                        ino: view.ino,
                        path: fs.path_of(view.ino),
                        file_offset: file_offset + delta,
                        address: page_addr + delta as usize,
                        pool_offset: block_start + delta,
                        length,
                    },
                );
            }
            views.push(ViewHit {
                view: view.id,
                holder: view.holder.clone(),
                ino: view.ino,
                file_offset,
                address: page_addr,
                how,
                action: format!("unmapped: {how}"),
            });
        }
    }
    // 3, 5, 6. Record the poison durably; move metadata off it; quarantine free blocks.
    let free_before: u64 =
        (first..end).filter(|&b| matches!(fs.share_state(b), crate::fs::ShareState::Free)).count() as u64;
    let recorded = fs.record_bad_blocks(first, end - first)?;
    let report = FailureReport {
        pool_offset,
        length: len,
        files,
        metadata,
        free_blocks: free_before,
        recorded,
        views,
    };
    Ok((report, notices))
}

/// Sets the path of every file owner in `report` (as the names are now; `None` for a file that
/// has none, an open unlinked file): the second half of [`handle`], under a shared lock.
pub fn name_owners(fs: &FileSystem, report: &mut FailureReport) {
    fs.fill_paths(&mut report.files, |owner| Some((owner.ino, &mut owner.path)));
}
