//! The pool server's protocol: every message a client and the server exchange, as data.
//!
//! Owns the message types and their meaning (the table in docs/ARCHITECTURE.md section 9 is this
//! file in prose). A message is JSON (serde) in a frame; bulk bytes (the data of a read or a
//! write) travel raw after the JSON in the same frame, never inside it. Nothing here touches a
//! socket or the file system: `wire` moves frames, `daemon` and `client` give them effect.
//!
//! Must never: carry an address or a pool offset that the receiver uses without checking it (the
//! server checks every view id and handle against the sender's own tables), or change the meaning
//! of a message without bumping [`PROTOCOL_VERSION`].

use crate::dax::{Holder, MapAccess, Notice, PageChange, PageShare};
use crate::error::Error;
use crate::fs::access::Credentials;
use crate::fs::check::CheckReport;
use crate::fs::falloc::SeekTarget;
use crate::fs::namespace::SetAttributes;
use crate::fs::{BlockOwner, DirEntry, FiemapExtent, FsStats, HandleAccess, ShareState, SpaceUsage, Stat};
use crate::memfail::{FailureReport, PreRemoveReport};
use serde::{Deserialize, Serialize};

/// The protocol version both sides send in the handshake; a mismatch is refused.
pub const PROTOCOL_VERSION: u32 = 3;

/// What a client may do with the pool file itself, decided by the server from the client's
/// credentials (SO_PEERCRED) and the pool file's owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolAccess {
    /// The pool's descriptor came with the welcome, open for reading and writing: views of any kind.
    ReadWrite,
    /// The descriptor came open for reading only: read-only views.
    ReadOnly,
    /// No descriptor: the client may not read the pool file, so data goes over the socket and
    /// views are refused (EACCES).
    None,
}

/// How to open a file (the fields of [`crate::OpenOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSpec {
    /// Read access.
    pub read: bool,
    /// Write access.
    pub write: bool,
    /// Append-only writes.
    pub append: bool,
    /// Create if missing.
    pub create: bool,
    /// Create, failing if it exists.
    pub create_new: bool,
    /// Truncate to zero.
    pub truncate: bool,
    /// Permission bits for a new file.
    pub mode: u32,
    /// O_NOFOLLOW.
    pub no_follow: bool,
    /// Overwrites in place (`OpenOptions::in_place`); absent from older clients' requests.
    #[serde(default)]
    pub in_place: bool,
}

/// A request a client sends; the server answers each with one [`ServerMessage::Reply`].
/// Handles and view ids are the sender's own (the server's tables for that connection).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// Opens (maybe creates) a file: `Answer::Opened`.
    Open {
        /// The path.
        path: String,
        /// How.
        options: OpenSpec,
    },
    /// Closes a handle (the last close of an unlinked file frees it).
    Close {
        /// The handle.
        handle: u64,
    },
    /// pread: `Answer::Data` with the bytes in the frame's data.
    ReadAt {
        /// The handle.
        handle: u64,
        /// File offset.
        offset: u64,
        /// Bytes wanted (at most [`super::wire::MAX_DATA`]).
        len: u64,
    },
    /// pwrite of the frame's data: `Answer::Count`.
    WriteAt {
        /// The handle.
        handle: u64,
        /// File offset (ignored for an append-only handle).
        offset: u64,
    },
    /// The first half of a placed write (the zero-copy path of a large pwrite): takes the blocks
    /// for `len` bytes at `offset` and answers `Answer::Reserved`; the client stores the data
    /// straight into them through its own mapping of the pool, then sends `CommitWrite`. A client
    /// that goes away first gives them back.
    ReserveWrite {
        /// The handle (writable, not append-only).
        handle: u64,
        /// File offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// The second half of a placed write: the data is in the reserved blocks; commit it like a
    /// pwrite (`Answer::Count`).
    CommitWrite {
        /// The reservation's token.
        token: u64,
    },
    /// ftruncate.
    SetLen {
        /// The handle.
        handle: u64,
        /// New size.
        size: u64,
    },
    /// fstat: `Answer::Stat`.
    FileStat {
        /// The handle.
        handle: u64,
    },
    /// fsync (writes back stores made through every view of the file, in any process).
    SyncAll {
        /// The handle.
        handle: u64,
    },
    /// syncfs: every operation that returned is durable (group commit).
    SyncFs,
    /// stat by path: `Answer::Stat`.
    Metadata {
        /// The path.
        path: String,
    },
    /// link(2).
    Link {
        /// The existing name.
        existing: String,
        /// The new name.
        new: String,
    },
    /// symlink(2).
    Symlink {
        /// What it points at.
        target: String,
        /// Where it is made.
        path: String,
    },
    /// readlink(2): `Answer::Path`.
    ReadLink {
        /// The symlink.
        path: String,
    },
    /// lstat(2): `Answer::Stat`.
    SymlinkMetadata {
        /// The path.
        path: String,
    },
    /// chmod/chown/utimensat by path.
    SetAttributes {
        /// The path.
        path: String,
        /// What changes.
        set: SetAttributes,
        /// Follow a final symlink.
        follow: bool,
    },
    /// fchmod/fchown/futimens.
    FileSetAttributes {
        /// The handle.
        handle: u64,
        /// What changes.
        set: SetAttributes,
    },
    /// renameat2.
    RenameWithFlags {
        /// Old name.
        from: String,
        /// New name.
        to: String,
        /// RENAME_NOREPLACE, RENAME_EXCHANGE.
        flags: u32,
    },
    /// access(2).
    Access {
        /// The path.
        path: String,
        /// R_OK | W_OK | X_OK.
        mask: u32,
    },
    /// getxattr: `Answer::Bytes`.
    GetXattr {
        /// The path.
        path: String,
        /// The attribute.
        name: String,
    },
    /// listxattr: `Answer::Names`.
    ListXattrs {
        /// The path.
        path: String,
    },
    /// setxattr.
    SetXattr {
        /// The path.
        path: String,
        /// The attribute.
        name: String,
        /// Its value.
        value: Vec<u8>,
        /// XATTR_CREATE, XATTR_REPLACE.
        flags: u32,
    },
    /// removexattr.
    RemoveXattr {
        /// The path.
        path: String,
        /// The attribute.
        name: String,
    },
    /// Runs `op` for `caller` instead of the connection's own credentials: only a root client
    /// may (the FUSE mount, which serves many users); others get EPERM.
    AsCaller {
        /// Who the request is for.
        caller: Credentials,
        /// The request.
        op: Box<Op>,
    },
    /// mkdir.
    CreateDir {
        /// The path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// rmdir.
    RemoveDir {
        /// The path.
        path: String,
    },
    /// unlink.
    RemoveFile {
        /// The path.
        path: String,
    },
    /// rename.
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
    /// readdir: `Answer::Entries`.
    ReadDir {
        /// The directory.
        path: String,
    },
    /// FICLONERANGE: `Answer::Count`.
    Reflink {
        /// Source handle.
        src: u64,
        /// Source offset.
        src_off: u64,
        /// Destination handle.
        dst: u64,
        /// Destination offset.
        dst_off: u64,
        /// Length (0 = to source EOF).
        len: u64,
    },
    /// FIDEDUPERANGE: `Answer::Dedupe`.
    Dedupe {
        /// Source handle.
        src: u64,
        /// Source offset.
        src_off: u64,
        /// Length.
        len: u64,
        /// (destination handle, destination offset) pairs.
        targets: Vec<(u64, u64)>,
    },
    /// FALLOC_FL_UNSHARE_RANGE.
    Unshare {
        /// The handle.
        handle: u64,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// fallocate(2) with the kernel's `FALLOC_FL_*` mode bits (protocol version 2).
    Fallocate {
        /// The handle.
        handle: u64,
        /// The mode bits.
        mode: u32,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// lseek(SEEK_DATA / SEEK_HOLE) without a position (the client keeps it): `Answer::Count`
    /// (protocol version 2).
    Seek {
        /// The handle.
        handle: u64,
        /// Where to start.
        offset: u64,
        /// Data or hole.
        target: SeekTarget,
    },
    /// copy_file_range(2) between two handles of this pool: `Answer::Count` (protocol version 2).
    CopyFileRange {
        /// Source handle.
        src: u64,
        /// Source offset.
        src_off: u64,
        /// Destination handle.
        dst: u64,
        /// Destination offset.
        dst_off: u64,
        /// Length.
        len: u64,
    },
    /// Every owner of a pool range: `Answer::Owners`.
    Owners {
        /// Pool byte offset.
        pool_offset: u64,
        /// Length.
        len: u64,
    },
    /// The share state of a pool block: `Answer::ShareState`.
    ShareState {
        /// The block.
        block: u64,
    },
    /// FIEMAP: `Answer::Fiemap`.
    Fiemap {
        /// The handle.
        handle: u64,
    },
    /// fsck of the live file system and of every view in every process: `Answer::Check`.
    Check,
    /// A memory failure: `Answer::Failure`. `accessor` names the sender's view and the address in
    /// it whose access consumed the poison (a machine check in that client).
    MemoryFailure {
        /// Pool byte offset.
        pool_offset: u64,
        /// Length.
        len: u64,
        /// (view id, address) of the access that consumed the poison.
        accessor: Option<(u64, usize)>,
    },
    /// The pool is going away: `Answer::PreRemove`.
    PreRemove,
    /// Records a badblocks list: `Answer::Failures`.
    ImportBadblocks {
        /// The list's text.
        text: String,
        /// Its name, for errors.
        source: String,
    },
    /// The bad block runs: `Answer::BadBlocks`.
    BadBlocks,
    /// The page share state of a mapped block: `Answer::PageShare`.
    PageShare {
        /// The block.
        block: u64,
    },
    /// Live views in every process: `Answer::Count`.
    ViewCount,
    /// Space and object counts: `Answer::Stats`.
    Stats,
    /// Where the blocks are, for `df`: `Answer::SpaceUsage`.
    SpaceUsage,
    /// The path of an inode: `Answer::Path`.
    PathOf {
        /// The inode.
        ino: u64,
    },
    /// Creates a view in the sender's address space at `base` (reserved by the sender). Before the
    /// reply, the server sends the view's whole layout as a [`ServerMessage::Recall`].
    Map {
        /// The handle.
        handle: u64,
        /// The view id the sender chose: its connection id in the high 32 bits.
        view: u64,
        /// File offset (page-aligned).
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Read or read-write.
        access: MapAccess,
        /// Who holds it.
        holder: Holder,
        /// First address of the reservation in the sender's address space.
        base: usize,
    },
    /// Removes a view (the sender has stopped using its memory).
    Unmap {
        /// The view.
        view: u64,
    },
    /// Makes one page of a view writable: a store fault on a shared block or a hole. Every view of
    /// that file page, in every process, is re-pointed (recalls answered) before the reply.
    MakePrivate {
        /// The view.
        view: u64,
        /// Page index in the view.
        page: u64,
    },
    /// Subscribes the view's holder to memory-failure notices.
    Subscribe {
        /// The view.
        view: u64,
        /// Action-optional notices at once, instead of on access only.
        early: bool,
    },
    /// msync of a view: its writable pages are written back.
    SyncView {
        /// The view.
        view: u64,
    },
}

/// An error as it crosses the wire: the errno and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The errno.
    pub errno: i32,
    /// The message (the library's `Display`).
    pub message: String,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        WireError { errno: e.errno(), message: e.to_string() }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        Error::from_errno(w.errno, w.message)
    }
}

/// One destination's dedupe result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireDedupe {
    /// Shared.
    Same {
        /// Bytes the kernel would report.
        bytes_deduped: u64,
    },
    /// Contents differ.
    Differs,
    /// This destination failed.
    Failed(WireError),
}

/// What a request returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// Nothing.
    Unit,
    /// A handle was opened.
    Opened {
        /// The handle.
        handle: u64,
        /// The inode.
        ino: u64,
        /// How it was opened.
        access: HandleAccess,
    },
    /// Bytes in the frame's data.
    Data,
    /// Blocks reserved for a placed write: byte `offset + i` goes to byte `offset % 4096 + i` of
    /// the runs (first block, count) taken together.
    Reserved {
        /// Names the reservation in `CommitWrite`.
        token: u64,
        /// The runs.
        runs: Vec<(u64, u64)>,
    },
    /// A count (bytes written, linked, views).
    Count(u64),
    /// stat.
    Stat(Stat),
    /// readdir.
    Entries(Vec<DirEntry>),
    /// Per-destination dedupe results.
    Dedupe(Vec<WireDedupe>),
    /// Owners.
    Owners(Vec<BlockOwner>),
    /// A block's share state.
    ShareState(ShareState),
    /// Extents.
    Fiemap(Vec<FiemapExtent>),
    /// fsck.
    Check(CheckReport),
    /// A memory failure.
    Failure(FailureReport),
    /// Several.
    Failures(Vec<FailureReport>),
    /// Pre-remove.
    PreRemove(PreRemoveReport),
    /// (first block, count) runs.
    BadBlocks(Vec<(u64, u64)>),
    /// A mapped block's page share state.
    PageShare(Option<PageShare>),
    /// Counts.
    Stats(FsStats),
    /// Where the blocks are.
    SpaceUsage(SpaceUsage),
    /// A path.
    Path(Option<String>),
    /// Bytes (an extended attribute's value).
    Bytes(Vec<u8>),
    /// Names (of extended attributes).
    Names(Vec<String>),
}

/// Everything a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message: who is asking.
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// The program, for the server's log.
        program: String,
    },
    /// A request; the reply carries the same id.
    Request {
        /// Chosen by the client, unique among its requests in flight.
        id: u64,
        /// What to do.
        op: Op,
    },
    /// A recall was carried out (every page op applied), or could not be (`error`).
    RecallDone {
        /// The recall's id.
        recall: u64,
        /// Why not, if it failed.
        error: Option<String>,
    },
}

/// Everything the server sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to `Hello`; the pool's descriptor rides along (SCM_RIGHTS) unless `access` is
    /// [`PoolAccess::None`].
    Welcome {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// This connection's id (the high half of the client's view ids).
        connection: u64,
        /// Pool size in bytes.
        pool_len: u64,
        /// What the descriptor allows.
        access: PoolAccess,
    },
    /// The connection is refused (bad version, credentials).
    Refused {
        /// Why.
        message: String,
    },
    /// The answer to a request.
    Reply {
        /// The request's id.
        id: u64,
        /// Its result.
        result: Result<Answer, WireError>,
    },
    /// Change these pages of the client's views now, then answer `RecallDone`. The operation
    /// that caused it does not return (to anyone) before the answer.
    Recall {
        /// Its id.
        recall: u64,
        /// The page changes, in order.
        ops: Vec<PageChange>,
    },
    /// A memory-failure notice for one of the client's subscribed views.
    Notice(Notice),
    /// The server is shutting down: every view of this client is gone.
    Goodbye {
        /// Why.
        reason: String,
    },
}
