//! DAX views: zero-copy mappings of file ranges whose pages *are* pool pages.
//!
//! Owns every live view, the per-page state of each (which pool block it shows and how), the
//! registry of views per file, and the page share state of every mapped pool block: one mapping
//! entry (inode, page index) or a count of entries. Private blocks of writable views are mapped
//! read-write; shared blocks and holes read-only, so the first store faults and the fault handler
//! ([`fault`]) has the file system copy the page. After every change to a file's layout the front
//! end hands the changes to [`DaxLayer::apply_changes`], which re-points, protects or invalidates
//! the affected pages of every view before the operation returns; a store fault whose file keeps
//! its block (the other owners took the copy, and no view showed the block elsewhere) records no
//! change, and [`DaxLayer::show_kept_block`] turns that file page's views writable.
//!
//! A view's memory is either in this process ([`ViewMemory::Local`]) or in a client process of the
//! pool server ([`ViewMemory::Remote`]): the bookkeeping is the same, and every page change of a
//! remote view is queued to its [`ViewPeer`] and flushed — sent, applied by the client, answered —
//! before the call that caused it returns, so a view in any process follows every layout change
//! before the operation returns.
//!
//! Must never: map a block that no longer belongs to the file at that page, leave a page writable
//! whose block has other owners, return from a layout change before every peer has applied it, or
//! change the file system (it only reads it).

pub mod fault;
pub mod mce;
pub mod vm;

use crate::error::{Error, Result};
use crate::format::BLOCK_SIZE;
use crate::fs::state::Inode;
use crate::fs::{FileSystem, LayoutChange};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use vm::{PageProtection, Reservation};

/// Who holds a view, for notices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Thread that made the view (its name or id).
    pub thread: String,
    /// A tag the application chose.
    pub tag: String,
}

impl Holder {
    /// This process and thread, with `tag`.
    pub fn current(tag: impl Into<String>) -> Self {
        let t = std::thread::current();
        Holder {
            pid: std::process::id(),
            thread: t.name().map(str::to_string).unwrap_or_else(|| format!("{:?}", t.id())),
            tag: tag.into(),
        }
    }
}

/// How a memory-failure notice reaches a view's holder (the kernel's BUS_MCEERR_AO / _AR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The poison was found but not consumed: the holder may act (sent at once to early subscribers).
    ActionOptional,
    /// The holder's access consumed the poison: it must act before touching the page again.
    ActionRequired,
}

/// A memory-failure notice for one page of one view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    /// Optional or required.
    pub kind: NoticeKind,
    /// The view.
    pub view: u64,
    /// The file it shows.
    pub ino: u64,
    /// The file's path, if it has one.
    pub path: Option<String>,
    /// File offset of the first bad byte told about.
    pub file_offset: u64,
    /// The same byte's address in the holder's view.
    pub address: usize,
    /// The same byte's pool offset.
    pub pool_offset: u64,
    /// Bytes told about from there (within one page for a failure; a whole run for a pre-remove).
    pub length: u64,
}

/// A holder's notice callback. It may run on any thread; an action-required notice runs in
/// signal context on the accessing thread (see [`Subscription`]).
pub type NoticeCallback = Arc<dyn Fn(&Notice) + Send + Sync>;

/// A view holder's request to be told about memory failures in the view.
///
/// Early subscribers get [`NoticeKind::ActionOptional`] notices as soon as a failure is handled
/// (after every lock is released); the others get [`NoticeKind::ActionRequired`] when they touch
/// a poisoned page, from the SIGBUS handler on the accessing thread, in signal context, just before
/// the SIGBUS (BUS_MCEERR_AR) is queued: such a callback must not take locks the interrupted code
/// may hold, nor call into the file system.
#[derive(Clone)]
pub struct Subscription {
    /// Told at once (action-optional) instead of on access.
    pub early: bool,
    /// What to call.
    pub callback: NoticeCallback,
}

/// What one page of a view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PageState {
    /// A hole: read-only zeros.
    Hole,
    /// A pool block.
    Block {
        /// The pool block.
        phys: u64,
        /// How it is mapped.
        prot: PageProtection,
    },
    /// Past EOF: any access raises SIGBUS.
    PastEof,
    /// A poisoned pool block, taken out of the view: an access raises SIGBUS, which the library
    /// turns into BUS_MCEERR_AR.
    Poisoned {
        /// The bad pool block.
        phys: u64,
    },
    /// The pool was removed (pre-remove): an access raises SIGBUS, which the library turns into
    /// BUS_MCEERR_AR; the holder was told at the pre-remove.
    Removed,
}

/// Read or read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MapAccess {
    /// Loads only; a store is SIGSEGV.
    Read,
    /// Loads and stores; stores into shared blocks copy them first.
    ReadWrite,
}

/// One change to a run of pages of a view: what a client applies to its own address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageChange {
    /// The view.
    pub view: u64,
    /// First view page.
    pub page: u64,
    /// Pages.
    pub pages: u64,
    /// What the first page must show; a block's number advances by one per page.
    pub state: PageState,
    /// Only the protection changes: every page keeps its block and takes `state`'s protection.
    pub only_protection: bool,
}

/// A client process of the pool server, as the DAX layer sees it: somewhere to send the page
/// changes of its views.
pub trait ViewPeer: Send + Sync {
    /// Queues a page change of one of the peer's views.
    fn queue(&self, change: PageChange);
    /// Sends the queued changes without waiting for them (the first half of [`ViewPeer::flush`],
    /// so that the changes of many peers travel at once); `None` when there is nothing to wait
    /// for (nothing queued, or the peer is gone).
    fn send_queued(&self) -> Option<RecallTicket>;
    /// Returns once the peer has applied the changes `ticket` stands for, or is gone (a peer that
    /// does not answer by the ticket's deadline is fenced: it is killed and its exit awaited, so
    /// that no stale mapping of it outlives the call).
    fn wait_applied(&self, ticket: RecallTicket);
    /// Sends the queued changes and returns once the peer has applied them all, or is gone.
    fn flush(&self) {
        if let Some(ticket) = self.send_queued() {
            self.wait_applied(ticket);
        }
    }
    /// The peer's process id.
    fn pid(&self) -> u32;
}

/// Page changes sent to a peer and not yet known applied: the recall's number and when the peer
/// must have answered.
#[derive(Debug, Clone, Copy)]
pub struct RecallTicket {
    /// The recall's number (per peer, increasing).
    pub recall: u64,
    /// When an unanswered peer is fenced.
    pub deadline: std::time::Instant,
}

/// Where a view's pages are.
pub enum ViewMemory {
    /// In this process.
    Local(Reservation),
    /// In a client process of the pool server.
    Remote {
        /// The client.
        peer: Arc<dyn ViewPeer>,
        /// First address of the view in the client's address space.
        base: usize,
        /// Length in bytes.
        len: usize,
    },
}

/// Places `n` pages from `first` of a reservation as `want` says (a block's number advancing per
/// page; with `only_protection`, the pages keep their blocks and only change protection).
pub fn place_pages(
    reservation: &Reservation,
    first: usize,
    n: usize,
    want: PageState,
    only_protection: bool,
    fd: i32,
) -> Result<()> {
    match want {
        PageState::Block { prot, .. } if only_protection => reservation.protect(first, n, prot),
        PageState::Block { phys, prot } => reservation.map_pool(first, n, fd, phys * BLOCK_SIZE, prot),
        PageState::Hole => reservation.map_hole(first, n),
        PageState::PastEof | PageState::Poisoned { .. } | PageState::Removed => {
            reservation.map_sigbus(first, n)
        }
    }
}

/// What every page of a view shows: explicit for the pages below `covered.len()`, `tail` for all the
/// pages after them (past EOF, or removed). So a view costs memory and time in proportion to the
/// part of the file it shows, not to its length: a 128 GiB view of a 16 KiB file keeps 4 entries.
#[derive(Debug, Clone)]
struct PageStates {
    covered: Vec<PageState>,
    tail: PageState,
}

impl PageStates {
    fn new() -> Self {
        PageStates { covered: Vec::new(), tail: PageState::PastEof }
    }

    fn get(&self, page: u64) -> PageState {
        self.covered.get(page as usize).copied().unwrap_or(self.tail)
    }

    /// Sets one page (extending the explicit part only for a state other than the tail's).
    fn set(&mut self, page: u64, state: PageState) {
        let page = page as usize;
        if page >= self.covered.len() {
            if state == self.tail {
                return;
            }
            self.covered.resize(page + 1, self.tail);
        }
        self.covered[page] = state;
    }

    /// Drops explicit entries at the end that equal the tail.
    fn trim(&mut self) {
        while self.covered.last() == Some(&self.tail) {
            self.covered.pop();
        }
    }

    /// Every page shows `state`.
    fn set_all(&mut self, state: PageState) {
        self.covered.clear();
        self.tail = state;
    }

    /// The explicit pages, from page 0.
    fn explicit(&self) -> &[PageState] {
        &self.covered
    }
}

/// One live view.
pub struct View {
    /// Unique id.
    pub id: u64,
    /// The file.
    pub ino: u64,
    /// First file page (block) shown.
    pub first_page: u64,
    /// Number of pages.
    pub pages: u64,
    /// Whether stores are allowed.
    pub access: MapAccess,
    /// Who holds it.
    pub holder: Holder,
    memory: ViewMemory,
    state: Mutex<PageStates>,
    subscription: Mutex<Option<Subscription>>,
}

impl View {
    fn new(
        id: u64,
        ino: u64,
        first_page: u64,
        pages: u64,
        access: MapAccess,
        holder: Holder,
        memory: ViewMemory,
    ) -> View {
        View {
            id,
            ino,
            first_page,
            pages,
            access,
            holder,
            memory,
            state: Mutex::new(PageStates::new()),
            subscription: Mutex::new(None),
        }
    }

    /// A pool server client's own copy of one of its views: the memory is here, the bookkeeping
    /// at the server, which sends every page change ([`View::apply_change`]).
    pub fn for_client(
        id: u64,
        ino: u64,
        first_page: u64,
        access: MapAccess,
        holder: Holder,
        reservation: Reservation,
    ) -> View {
        let pages = (reservation.len() / vm::PAGE) as u64;
        View::new(id, ino, first_page, pages, access, holder, ViewMemory::Local(reservation))
    }

    /// Applies a page change from the pool server to this (client-side) view: places the pages
    /// and records what they show. Fails with EINVAL for pages outside the view or a view whose
    /// memory is not in this process.
    pub fn apply_change(&self, change: &PageChange, fd: i32) -> Result<()> {
        let ViewMemory::Local(reservation) = &self.memory else {
            return Err(Error::Invalid("a page change for a view in another process".into()));
        };
        if change.pages == 0 || change.page.checked_add(change.pages).is_none_or(|e| e > self.pages) {
            return Err(Error::Invalid(format!(
                "page change [{}, +{}) outside view {} of {} pages",
                change.page, change.pages, self.id, self.pages
            )));
        }
        let mut states = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (first, n) = (change.page as usize, change.pages as usize);
        place_pages(reservation, first, n, change.state, change.only_protection, fd)?;
        for i in 0..change.pages {
            let page = change.page + i;
            if page >= states.explicit().len() as u64 && change.state == states.tail {
                break; // the rest of the run is the tail already
            }
            let new = match (change.only_protection, change.state, states.get(page)) {
                (true, PageState::Block { prot, .. }, PageState::Block { phys, .. }) => {
                    PageState::Block { phys, prot }
                }
                (_, PageState::Block { phys, prot }, _) => PageState::Block { phys: phys + i, prot },
                (_, other, _) => other,
            };
            states.set(page, new);
        }
        states.trim();
        Ok(())
    }

    /// Turns every page into a SIGBUS sentinel ([`PageState::Removed`]): a client whose server is
    /// gone can no longer trust any page.
    pub fn remove_all_pages(&self) -> Result<()> {
        let ViewMemory::Local(reservation) = &self.memory else { return Ok(()) };
        let mut states = self.state.lock().unwrap_or_else(|e| e.into_inner());
        reservation.map_sigbus(0, self.pages as usize)?;
        states.set_all(PageState::Removed);
        Ok(())
    }

    /// First address of the view (in the holder's address space).
    pub fn addr(&self) -> usize {
        match &self.memory {
            ViewMemory::Local(r) => r.base(),
            ViewMemory::Remote { base, .. } => *base,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.memory {
            ViewMemory::Local(r) => r.len(),
            ViewMemory::Remote { len, .. } => *len,
        }
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the view's memory is in another process (a pool server client's).
    pub fn is_remote(&self) -> bool {
        matches!(self.memory, ViewMemory::Remote { .. })
    }

    /// The pool blocks the view maps writable (where its stores may not be written back yet).
    pub fn writable_blocks(&self) -> Vec<u64> {
        let states = self.state.lock().unwrap_or_else(|e| e.into_inner());
        states
            .explicit()
            .iter()
            .filter_map(|st| match *st {
                PageState::Block { phys, prot: PageProtection::ReadWrite } => Some(phys),
                _ => None,
            })
            .collect()
    }

    /// The page state at view page `page`.
    pub fn page_state(&self, page: u64) -> PageState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).get(page)
    }

    /// Replaces the view's memory-failure subscription.
    pub fn subscribe(&self, subscription: Subscription) {
        *self.subscription.lock().unwrap_or_else(|e| e.into_inner()) = Some(subscription);
    }

    /// The view's memory-failure subscription, if any.
    pub fn subscription(&self) -> Option<Subscription> {
        self.subscription.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The memory of the view (for loads and stores by the front end).
    ///
    /// # Panics
    /// For a view in another process ([`View::is_remote`]): only its holder can touch its memory.
    pub fn reservation(&self) -> &Reservation {
        match &self.memory {
            ViewMemory::Local(r) => r,
            ViewMemory::Remote { .. } => panic!("view {} lives in another process", self.id),
        }
    }
}

/// The share state of a mapped pool block, as the seed patchset describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PageShare {
    /// Mapped through one (inode, page) entry only.
    Single {
        /// The inode.
        ino: u64,
        /// The page index in the file.
        page: u64,
    },
    /// Mapped through several (inode, page) entries.
    Shared {
        /// How many entries.
        entries: usize,
    },
}

pub use crate::intmap::{IntHasher, IntMap};

/// Where the views show one pool block: (inode, file page) -> number of views showing it there.
/// Almost every block is shown at one place only, which is kept inline (no map of its own: a store
/// fault looks blocks up here, and a new view adds one entry per page).
#[derive(Debug, Clone)]
enum BlockEntries {
    /// One (inode, file page), shown by this many views.
    One((u64, u64), u32),
    /// Two or more.
    Many(IntMap<(u64, u64), u32>),
}

impl BlockEntries {
    /// Every (inode, file page).
    fn keys(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (one, many) = match self {
            BlockEntries::One(key, _) => (Some(*key), None),
            BlockEntries::Many(m) => (None, Some(m.keys().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Number of (inode, file page) keys.
    fn len(&self) -> usize {
        match self {
            BlockEntries::One(..) => 1,
            BlockEntries::Many(m) => m.len(),
        }
    }

    /// One more view shows the block at `key`.
    fn add(&mut self, key: (u64, u64)) {
        match self {
            BlockEntries::One(k, count) if *k == key => *count += 1,
            BlockEntries::One(k, count) => {
                let mut m = IntMap::default();
                m.insert(*k, *count);
                m.insert(key, 1);
                *self = BlockEntries::Many(m);
            }
            BlockEntries::Many(m) => *m.entry(key).or_insert(0) += 1,
        }
    }

    /// One view fewer shows the block at `key`; true when no view shows it anywhere any more.
    fn remove(&mut self, key: (u64, u64)) -> bool {
        match self {
            BlockEntries::One(k, count) => {
                if *k == key {
                    *count -= 1;
                }
                *count == 0
            }
            BlockEntries::Many(m) => {
                if let Some(c) = m.get_mut(&key) {
                    *c -= 1;
                    if *c == 0 {
                        m.remove(&key);
                    }
                }
                if m.len() == 1 {
                    let (&k, &count) = m.iter().next().expect("one");
                    *self = BlockEntries::One(k, count);
                }
                false
            }
        }
    }

    /// The same entries as `counts` (keys and numbers).
    fn same_as(&self, counts: &IntMap<(u64, u64), u32>) -> bool {
        match self {
            BlockEntries::One(key, count) => counts.len() == 1 && counts.get(key) == Some(count),
            BlockEntries::Many(m) => m == counts,
        }
    }
}

/// A run of view pages that showed consecutive pool blocks when the pool was removed:
/// (view, first view page, pages, first pool block).
pub type RemovedRun = (Arc<View>, u64, u64, u64);

/// All views of one mounted file system.
#[derive(Default)]
pub struct DaxLayer {
    views: BTreeMap<u64, Arc<View>>,
    by_ino: IntMap<u64, BTreeSet<u64>>,
    /// pool block -> (inode, file page) -> number of views showing it there.
    entries: IntMap<u64, BlockEntries>,
    next_id: u64,
    /// Pool blocks that were writable through a view and no longer are (re-pointed, made
    /// read-only, unmapped). Stores made through the view may not be written back yet, and msync
    /// and fsync only look at pages writable now, so [`DaxLayer::flush_retired`] writes them back
    /// before the change returns.
    retired_writable: Vec<u64>,
    /// (inode, first file page, pages) ranges that [`DaxLayer::write_protect`] made read-only,
    /// brought back in line by the next [`DaxLayer::apply_changes`].
    protected: Vec<(u64, u64, u64)>,
    /// Set by [`DaxLayer::invalidate_all`]: every page of every view is [`PageState::Removed`].
    removed: bool,
    /// Peers with page changes queued and not yet flushed.
    dirty_peers: Vec<Arc<dyn ViewPeer>>,
    /// [`DaxLayer::apply_changes`]'s (and [`DaxLayer::show_kept_block`]'s) working lists, kept
    /// (empty) between calls.
    ranges_to_refresh: Vec<(u64, u64, u64)>,
    views_to_refresh: Vec<Arc<View>>,
}

impl DaxLayer {
    /// No views.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if `ino` has a live view.
    pub fn has_views(&self, ino: u64) -> bool {
        self.by_ino.get(&ino).is_some_and(|v| !v.is_empty())
    }

    /// Number of live views.
    pub fn view_count(&self) -> usize {
        self.views.len()
    }

    /// Every view of `ino`.
    pub fn views_of(&self, ino: u64) -> Vec<Arc<View>> {
        self.by_ino
            .get(&ino)
            .map(|ids| ids.iter().map(|id| self.views[id].clone()).collect())
            .unwrap_or_default()
    }

    /// Replaces the contents of `views` with every view of `ino` (a list kept between calls, so
    /// the hot paths allocate nothing once it has grown).
    fn list_views_of(&self, ino: u64, views: &mut Vec<Arc<View>>) {
        views.clear();
        if let Some(ids) = self.by_ino.get(&ino) {
            views.extend(ids.iter().map(|id| self.views[id].clone()));
        }
    }

    /// The view with this id.
    pub fn view(&self, id: u64) -> Option<Arc<View>> {
        self.views.get(&id).cloned()
    }

    /// Creates a view of `pages` file pages of `ino` from `first_page`.
    pub fn create_view(
        &mut self,
        fs: &FileSystem,
        ino: u64,
        first_page: u64,
        pages: u64,
        access: MapAccess,
        holder: Holder,
    ) -> Result<Arc<View>> {
        if !vm::page_size_ok() {
            return Err(Error::Invalid("views need a 4096-byte page size".into()));
        }
        let fd = fs
            .backend()
            .raw_fd()
            .ok_or_else(|| Error::NotSupported("this pool's backend has no file descriptor to map".into()))?;
        let len = usize::try_from(pages * BLOCK_SIZE).map_err(|_| Error::Invalid("view too large".into()))?;
        let reservation = Reservation::new(len, 2 << 20)?;
        self.next_id += 1;
        let id = self.next_id;
        let memory = ViewMemory::Local(reservation);
        self.insert_view(fs, View::new(id, ino, first_page, pages, access, holder, memory), fd)
    }

    /// Creates a view that lives in a pool server client's address space at `base`, with the id
    /// the client chose (unique: its connection id is in the high 32 bits; local views count from
    /// 1 below 2^32). The whole layout reaches the client before this returns.
    #[allow(clippy::too_many_arguments)]
    pub fn create_remote_view(
        &mut self,
        fs: &FileSystem,
        id: u64,
        ino: u64,
        first_page: u64,
        pages: u64,
        access: MapAccess,
        holder: Holder,
        peer: Arc<dyn ViewPeer>,
        base: usize,
    ) -> Result<Arc<View>> {
        if self.views.contains_key(&id) || id < 1 << 32 {
            return Err(Error::Invalid(format!("view id {id:#x} is taken or not a client's")));
        }
        let fd = fs
            .backend()
            .raw_fd()
            .ok_or_else(|| Error::NotSupported("this pool's backend has no file descriptor to map".into()))?;
        let len = usize::try_from(pages * BLOCK_SIZE).map_err(|_| Error::Invalid("view too large".into()))?;
        if base % vm::PAGE != 0 || base.checked_add(len).is_none() {
            return Err(Error::Invalid(format!("view address {base:#x} is not page-aligned")));
        }
        let memory = ViewMemory::Remote { peer, base, len };
        self.insert_view(fs, View::new(id, ino, first_page, pages, access, holder, memory), fd)
    }

    fn insert_view(&mut self, fs: &FileSystem, view: View, fd: i32) -> Result<Arc<View>> {
        // A /dev/dax device with an align above 4096 cannot show single pool pages (docs/
        // ARCHITECTURE.md section 7, "Views on /dev/dax").
        if let Some(why) = crate::pool::view_granule_error(fs.backend().map_granule(), "this /dev/dax pool") {
            return Err(Error::Invalid(why));
        }
        let view = Arc::new(view);
        // Map everything: start from "unknown" by forcing every page to be written.
        let placed = self.refresh_view(fs, &view, 0, view.pages, fd, true);
        self.flush_peers();
        if let Err(e) = placed {
            // Forget the entries of the pages that were placed.
            self.views.insert(view.id, view.clone());
            self.remove_view(view.id);
            return Err(e);
        }
        self.views.insert(view.id, view.clone());
        self.by_ino.entry(view.ino).or_default().insert(view.id);
        Ok(view)
    }

    /// Places pages of a view, here or (queued) in its client's address space.
    fn place(
        &mut self,
        view: &View,
        first: usize,
        n: usize,
        want: PageState,
        only_protection: bool,
        fd: i32,
    ) -> Result<()> {
        match &view.memory {
            ViewMemory::Local(reservation) => place_pages(reservation, first, n, want, only_protection, fd),
            ViewMemory::Remote { peer, .. } => {
                peer.queue(PageChange {
                    view: view.id,
                    page: first as u64,
                    pages: n as u64,
                    state: want,
                    only_protection,
                });
                if !self.dirty_peers.iter().any(|p| Arc::ptr_eq(p, peer)) {
                    self.dirty_peers.push(peer.clone());
                }
                Ok(())
            }
        }
    }

    /// Sends every queued page change to its peer and waits until each has applied them: all the
    /// recalls first, then the answers, so that peers apply their changes at the same time.
    fn flush_peers(&mut self) {
        let peers = std::mem::take(&mut self.dirty_peers);
        let sent: Vec<_> = peers.iter().filter_map(|peer| Some((peer, peer.send_queued()?))).collect();
        for (peer, ticket) in sent {
            peer.wait_applied(ticket);
        }
    }

    /// Removes a view; its memory is unmapped when the last reference goes.
    pub fn remove_view(&mut self, id: u64) {
        let Some(view) = self.views.remove(&id) else { return };
        if let Some(set) = self.by_ino.get_mut(&view.ino) {
            set.remove(&id);
            if set.is_empty() {
                self.by_ino.remove(&view.ino);
            }
        }
        let states = view.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (i, st) in states.explicit().iter().enumerate() {
            if let PageState::Block { phys, prot } = st {
                self.drop_entry(*phys, view.ino, view.first_page + i as u64);
                if *prot == PageProtection::ReadWrite {
                    self.retired_writable.push(*phys);
                }
            }
        }
    }

    /// Writes back the blocks that stopped being writable in some view since the last call, so
    /// that stores made through views stay durable after msync or fsync of whoever owns them now.
    pub fn flush_retired(&mut self, backend: &dyn crate::pool::Backend) {
        if self.retired_writable.is_empty() {
            return;
        }
        for block in self.retired_writable.drain(..) {
            backend.flush(block * BLOCK_SIZE, BLOCK_SIZE);
        }
        backend.drain();
    }

    fn add_entry(&mut self, phys: u64, ino: u64, page: u64) {
        match self.entries.entry(phys) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().add((ino, page)),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(BlockEntries::One((ino, page), 1));
            }
        }
    }

    fn drop_entry(&mut self, phys: u64, ino: u64, page: u64) {
        if self.entries.get_mut(&phys).is_some_and(|m| m.remove((ino, page))) {
            self.entries.remove(&phys);
        }
    }

    /// True when no view shows pool block `block` anywhere but at file page `page` of `ino` (or
    /// no view shows it at all).
    pub fn shown_only_at(&self, block: u64, ino: u64, page: u64) -> bool {
        self.entries.get(&block).is_none_or(|m| m.keys().all(|key| key == (ino, page)))
    }

    /// Every (view, view page) that shows pool block `block` now.
    pub fn views_showing(&self, block: u64) -> Vec<(Arc<View>, u64)> {
        let mut out = Vec::new();
        let Some(entries) = self.entries.get(&block) else { return out };
        for (ino, file_page) in entries.keys() {
            for view in self.views_of(ino) {
                if file_page < view.first_page || file_page >= view.first_page + view.pages {
                    continue;
                }
                let page = file_page - view.first_page;
                if matches!(view.page_state(page), PageState::Block { phys, .. } if phys == block) {
                    out.push((view.clone(), page));
                }
            }
        }
        out.sort_by_key(|(v, p)| (v.id, *p));
        out
    }

    /// True if `addr` lies on a poisoned (or removed) page of a live view.
    pub fn poisoned_at(view: &View, addr: usize) -> bool {
        let page = ((addr - view.addr()) / vm::PAGE) as u64;
        page < view.pages && matches!(view.page_state(page), PageState::Poisoned { .. } | PageState::Removed)
    }

    /// Pre-remove: writes back every writable page, then turns every page of every view into a
    /// SIGBUS sentinel ([`PageState::Removed`]). Returns, per view, the runs of pages that showed
    /// pool blocks as (view, first view page, pages, first pool block), for the notices.
    pub fn invalidate_all(&mut self, backend: &dyn crate::pool::Backend) -> Result<Vec<RemovedRun>> {
        let mut runs = Vec::new();
        let views: Vec<Arc<View>> = self.views.values().cloned().collect();
        for view in views {
            let states = view.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut run: Option<(u64, u64, u64)> = None;
            for (i, st) in states.explicit().iter().enumerate() {
                let i = i as u64;
                let phys = match *st {
                    PageState::Block { phys, prot } => {
                        self.drop_entry(phys, view.ino, view.first_page + i);
                        if prot == PageProtection::ReadWrite {
                            self.retired_writable.push(phys);
                        }
                        Some(phys)
                    }
                    PageState::Poisoned { phys } => Some(phys),
                    _ => None,
                };
                run = match (run, phys) {
                    (Some((f, n, p)), Some(b)) if f + n == i && p + n == b => Some((f, n + 1, p)),
                    (r, b) => {
                        if let Some((f, n, p)) = r {
                            runs.push((view.clone(), f, n, p));
                        }
                        b.map(|b| (i, 1, b))
                    }
                };
            }
            if let Some((f, n, p)) = run {
                runs.push((view.clone(), f, n, p));
            }
            // Stores through writable pages must reach the pool before the pages go.
            self.flush_retired(backend);
            drop(states);
            self.place(&view, 0, view.pages as usize, PageState::Removed, false, -1)?;
            let mut states = view.state.lock().unwrap_or_else(|e| e.into_inner());
            states.set_all(PageState::Removed);
        }
        self.flush_peers();
        self.removed = true;
        Ok(runs)
    }

    /// The page share state of a pool block, or `None` when no view maps it.
    pub fn page_share(&self, block: u64) -> Option<PageShare> {
        match self.entries.get(&block)? {
            BlockEntries::One((ino, page), _) => Some(PageShare::Single { ino: *ino, page: *page }),
            m => Some(PageShare::Shared { entries: m.len() }),
        }
    }

    /// What a page of `view` must show now, from the file system.
    fn desired(fs: &FileSystem, view: &View, page: u64) -> PageState {
        Self::desired_in(fs, view, fs.state().inode(view.ino).ok(), page)
    }

    /// [`DaxLayer::desired`] with the view's inode (`None`: it is gone) looked up already.
    fn desired_in(fs: &FileSystem, view: &View, inode: Option<&Inode>, page: u64) -> PageState {
        let fb = view.first_page + page;
        // The size alone: `stat` would also sum the file's extents, once per page.
        let Some(inode) = inode else { return PageState::PastEof };
        if fb * BLOCK_SIZE >= inode.attrs.size {
            return PageState::PastEof;
        }
        match inode.extents.lookup(fb) {
            None => PageState::Hole,
            Some(phys) if fs.state().first_bad_block(phys, 1).is_some() => PageState::Poisoned { phys },
            Some(phys) => {
                let private = fs.is_private_durably(phys);
                let prot = if view.access == MapAccess::ReadWrite && private {
                    PageProtection::ReadWrite
                } else {
                    PageProtection::ReadOnly
                };
                PageState::Block { phys, prot }
            }
        }
    }

    /// Brings pages `[page, page + count)` of `view` in line with the file system, in runs.
    fn refresh_view(
        &mut self,
        fs: &FileSystem,
        view: &View,
        page: u64,
        count: u64,
        fd: i32,
        force: bool,
    ) -> Result<()> {
        let end = (page + count).min(view.pages);
        // Pages past EOF that are past the explicit states already show the tail (past EOF):
        // nothing to do there but place them once for a new view. This keeps a refresh in
        // proportion to the file, not to the view.
        let inode = fs.state().inode(view.ino).ok();
        let below_eof = match inode {
            Some(inode) => inode.attrs.size.div_ceil(BLOCK_SIZE).saturating_sub(view.first_page),
            None => 0,
        };
        let explicit = view.state.lock().unwrap_or_else(|e| e.into_inner()).explicit().len() as u64;
        let limit = end.min(below_eof.max(explicit)).max(page);
        if force && limit < end {
            self.place(view, limit as usize, (end - limit) as usize, PageState::PastEof, false, fd)?;
        }
        let end = limit;
        let mut p = page;
        while p < end {
            let want = Self::desired_in(fs, view, inode, p);
            // Extend a run of pages that continue each other.
            let mut run = 1;
            while p + run < end {
                let next = Self::desired_in(fs, view, inode, p + run);
                let continues = match (want, next) {
                    (PageState::Hole, PageState::Hole) | (PageState::PastEof, PageState::PastEof) => true,
                    (PageState::Block { phys: a, prot: pa }, PageState::Block { phys: b, prot: pb }) => {
                        b == a + run && pa == pb
                    }
                    _ => false,
                };
                if !continues {
                    break;
                }
                run += 1;
            }
            self.apply_run(view, p, run, want, fd, force)?;
            p += run;
        }
        Ok(())
    }

    /// Makes `run` pages from `page` show `want` (its phys advancing per page), changing only what differs.
    fn apply_run(
        &mut self,
        view: &View,
        page: u64,
        run: u64,
        want: PageState,
        fd: i32,
        force: bool,
    ) -> Result<()> {
        let mut states = view.state.lock().unwrap_or_else(|e| e.into_inner());
        let nth = |i: u64| match want {
            PageState::Block { phys, prot } => PageState::Block { phys: phys + i, prot },
            other => other,
        };
        let same = !force && (0..run).all(|i| states.get(page + i) == nth(i));
        if same {
            return Ok(());
        }
        // Protection-only change: mprotect is enough.
        let only_prot = !force
            && (0..run).all(|i| {
                matches!((states.get(page + i), nth(i)),
                    (PageState::Block { phys: a, .. }, PageState::Block { phys: b, .. }) if a == b)
            });
        let (first, n) = (page as usize, run as usize);
        let only_prot = only_prot && matches!(want, PageState::Block { .. });
        self.place(view, first, n, want, only_prot, fd)?;
        for i in 0..run {
            let idx = page + i;
            let file_page = view.first_page + page + i;
            let old = states.get(idx);
            if only_prot {
                // The same blocks at the same file pages: the entries stay as they are.
                if let PageState::Block { phys, prot: PageProtection::ReadWrite } = old {
                    if nth(i) != old {
                        self.retired_writable.push(phys);
                    }
                }
                states.set(idx, nth(i));
                continue;
            }
            if let PageState::Block { phys, prot } = old {
                if !force {
                    self.drop_entry(phys, view.ino, file_page);
                    if prot == PageProtection::ReadWrite && nth(i) != old {
                        self.retired_writable.push(phys);
                    }
                }
            }
            states.set(idx, nth(i));
            if let PageState::Block { phys, .. } = nth(i) {
                self.add_entry(phys, view.ino, file_page);
            }
        }
        states.trim();
        Ok(())
    }

    /// Makes every view's pages of file pages `[first, first + count)` of `ino` read-only until
    /// the next [`DaxLayer::apply_changes`], for an operation that reads blocks and then remaps
    /// them (dedupe compares both ranges; a truncate copies the kept part of a partial page): a
    /// store through a view then faults and waits for the lock the operation holds, instead of
    /// landing in between and being lost (or reaching the other file).
    pub fn write_protect(&mut self, ino: u64, first: u64, count: u64) -> Result<()> {
        for view in self.views_of(ino) {
            let start = first.max(view.first_page);
            let end = first.saturating_add(count).min(view.first_page + view.pages);
            if start >= end {
                continue;
            }
            self.protected.push((ino, start, end - start));
            let mut states = view.state.lock().unwrap_or_else(|e| e.into_inner());
            // Only explicit pages can be writable (the tail is past EOF or removed).
            let explicit = states.explicit().len();
            let (from, to) =
                ((start - view.first_page) as usize, ((end - view.first_page) as usize).min(explicit));
            let mut i = from;
            while i < to {
                let writable =
                    |st: PageState| matches!(st, PageState::Block { prot: PageProtection::ReadWrite, .. });
                if !writable(states.get(i as u64)) {
                    i += 1;
                    continue;
                }
                let run_end = (i..to).find(|&j| !writable(states.get(j as u64))).unwrap_or(to);
                let read_only = PageState::Block { phys: 0, prot: PageProtection::ReadOnly };
                self.place(&view, i, run_end - i, read_only, true, -1)?;
                for j in i..run_end {
                    if let PageState::Block { phys, .. } = states.get(j as u64) {
                        states.set(j as u64, PageState::Block { phys, prot: PageProtection::ReadOnly });
                        self.retired_writable.push(phys);
                    }
                }
                i = run_end;
            }
        }
        self.flush_peers();
        Ok(())
    }

    /// File block `file_block` of `ino` kept pool block `block`, which is now private to it (its
    /// other owners took a copy, and no view shows `block` anywhere else: see
    /// [`crate::fs::MadePrivate::KeptBlock`]): every view of that file page shows `block`,
    /// writable in a read-write view and read-only in a read-only one. The same pages
    /// [`DaxLayer::apply_changes`] would refresh, without looking for them among every view the
    /// change could have touched: a store fault's common case. Unlike `apply_changes` it touches
    /// no other page, so it does not also mend another page that an earlier failed refresh left
    /// out of line (`check` reports such a view).
    pub fn show_kept_block(&mut self, fs: &FileSystem, ino: u64, file_block: u64, block: u64) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        let Some(fd) = fs.backend().raw_fd() else { return Ok(()) };
        let mut views = std::mem::take(&mut self.views_to_refresh);
        self.list_views_of(ino, &mut views);
        let mut shown = Ok(());
        for view in &views {
            if file_block < view.first_page || file_block >= view.first_page + view.pages {
                continue;
            }
            let page = file_block - view.first_page;
            let prot = match view.access {
                MapAccess::ReadWrite => PageProtection::ReadWrite,
                _ => PageProtection::ReadOnly,
            };
            let want = PageState::Block { phys: block, prot };
            debug_assert_eq!(want, Self::desired(fs, view, page), "a kept block's page of view {}", view.id);
            shown = self.apply_run(view, page, 1, want, fd, false);
            if shown.is_err() {
                break;
            }
        }
        views.clear();
        self.views_to_refresh = views;
        self.flush_peers();
        shown
    }

    /// Re-points, protects or invalidates the pages of every view that `changes` affect, and
    /// restores the pages [`DaxLayer::write_protect`] protected.
    pub fn apply_changes(&mut self, fs: &FileSystem, changes: &[LayoutChange]) -> Result<()> {
        if self.removed || self.views.is_empty() || (changes.is_empty() && self.protected.is_empty()) {
            return Ok(());
        }
        let Some(fd) = fs.backend().raw_fd() else { return Ok(()) };
        // (ino, first file page, pages) ranges to refresh, in a list kept between calls (a store
        // fault comes here each time: no allocation once the lists have grown).
        let mut ranges = std::mem::take(&mut self.ranges_to_refresh);
        ranges.clear();
        ranges.append(&mut self.protected);
        for change in changes {
            match *change {
                LayoutChange::Remapped { ino, file_block, len, phys } => {
                    ranges.push((ino, file_block, len));
                    // Blocks that gained an owner: other files' views of them must turn read-only.
                    if let Some(p) = phys {
                        for block in p..p + len {
                            if let Some(m) = self.entries.get(&block) {
                                ranges.extend(m.keys().map(|(i, page)| (i, page, 1)));
                            }
                        }
                    }
                }
                LayoutChange::Unmapped { phys, len } | LayoutChange::Poisoned { phys, len } => {
                    // Blocks that lost an owner: a survivor may become private (writable).
                    for block in phys..phys + len {
                        if let Some(m) = self.entries.get(&block) {
                            ranges.extend(m.keys().map(|(i, page)| (i, page, 1)));
                        }
                    }
                }
                LayoutChange::Resized { ino, old_size, new_size } => {
                    let from = old_size.min(new_size) / BLOCK_SIZE;
                    ranges.push((ino, from, u64::MAX - from));
                }
            }
        }
        let mut views = std::mem::take(&mut self.views_to_refresh);
        let mut refreshed = Ok(());
        'ranges: for &(ino, first, count) in &ranges {
            self.list_views_of(ino, &mut views);
            for view in &views {
                let start = first.max(view.first_page);
                let end = first.saturating_add(count).min(view.first_page + view.pages);
                if start < end {
                    refreshed = self.refresh_view(fs, view, start - view.first_page, end - start, fd, false);
                    if refreshed.is_err() {
                        break 'ranges;
                    }
                }
            }
        }
        views.clear();
        self.views_to_refresh = views;
        self.ranges_to_refresh = ranges;
        self.flush_peers();
        if refreshed.is_ok() {
            self.flush_retired(fs.backend().as_ref());
        }
        refreshed
    }

    /// Checks that every page of every view shows what the file system says, with the right
    /// protection, and that the page share state counts exactly the views' entries.
    pub fn check(&self, fs: &FileSystem) -> Vec<String> {
        let mut problems = Vec::new();
        let mut counted: IntMap<u64, IntMap<(u64, u64), u32>> = IntMap::default();
        if self.removed {
            // After a pre-remove every page must be a sentinel, whatever the media says.
            for view in self.views.values() {
                let states = view.state.lock().unwrap_or_else(|e| e.into_inner());
                if states.tail != PageState::Removed
                    || states.explicit().iter().any(|st| *st != PageState::Removed)
                {
                    problems.push(format!("view {} still shows pool pages after the pre-remove", view.id));
                }
            }
            return problems;
        }
        for view in self.views.values() {
            let states = view.state.lock().unwrap_or_else(|e| e.into_inner());
            // Past the explicit pages every page shows the tail; the file must end before them.
            let below_eof = fs
                .state()
                .inode(view.ino)
                .map(|i| i.attrs.size.div_ceil(BLOCK_SIZE).saturating_sub(view.first_page).min(view.pages))
                .unwrap_or(0);
            if states.tail != PageState::PastEof || below_eof > states.explicit().len() as u64 {
                problems.push(format!(
                    "view {} of inode {}: pages from {} show {:?}, but the file reaches page {}",
                    view.id,
                    view.ino,
                    view.first_page + states.explicit().len() as u64,
                    states.tail,
                    view.first_page + below_eof
                ));
            }
            // With group commit a private block's page mapped while operations were not yet
            // durable stays read-only until a store faults on it (and makes it writable): allowed.
            let groups = fs.journal().groups_commits();
            for (i, st) in states.explicit().iter().enumerate() {
                let want = Self::desired(fs, view, i as u64);
                let demoted_by_group = groups
                    && matches!(
                        (st, want),
                        (
                            PageState::Block { phys: a, prot: PageProtection::ReadOnly },
                            PageState::Block { phys: b, prot: PageProtection::ReadWrite }
                        ) if *a == b
                    );
                if *st != want && !demoted_by_group {
                    problems.push(format!(
                        "view {} of inode {} page {}: shows {:?}, should show {:?}",
                        view.id,
                        view.ino,
                        view.first_page + i as u64,
                        st,
                        want
                    ));
                }
                if let PageState::Block { phys, .. } = st {
                    *counted
                        .entry(*phys)
                        .or_default()
                        .entry((view.ino, view.first_page + i as u64))
                        .or_insert(0) += 1;
                }
            }
        }
        let same = counted.len() == self.entries.len()
            && counted
                .iter()
                .all(|(block, counts)| self.entries.get(block).is_some_and(|m| m.same_as(counts)));
        if !same {
            problems.push(format!(
                "page share state differs from the views ({} blocks tracked, {} counted)",
                self.entries.len(),
                counted.len()
            ));
        }
        problems
    }
}
