//! A pool server's client: one connection, the requests in flight on it, and this process's views.
//!
//! Owns the client end of the protocol. Any thread may send a request and wait for its reply; one
//! reader thread receives everything the server sends: replies (handed to the waiting thread),
//! recalls (page changes applied to this process's views at once, then answered, so the server's
//! operation can return), notices (handed to a notice thread that calls the subscribers) and the
//! server's goodbye. When the server goes away, every view of this process becomes a SIGBUS
//! sentinel and every request fails with ENOTCONN: nothing is read from or written to a pool whose
//! owner is gone.
//!
//! Store faults and machine checks in views call [`Client::call`] from the signal handler of the
//! faulting thread (signal context): it takes the connection's request lock, allocates and waits,
//! which is safe there only because the library never touches view memory while holding that lock
//! (data written from a view is copied first) and the reader thread never touches view memory.
//!
//! Must never: touch view memory on the reader thread, run user code on the reader thread (a
//! notice callback that calls the server would wait for itself), or apply a page change to memory
//! that is not one of this connection's views.

use super::protocol::{Answer, ClientMessage, Op, PoolAccess, ServerMessage, PROTOCOL_VERSION};
use super::wire::{self, DATA_PIECE};
use crate::dax::{Notice, View};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};

/// The views of this process, by id.
type Views = Arc<RwLock<HashMap<u64, Arc<View>>>>;

/// How far the notice thread has got: notices handed to it, and notices whose subscriber returned.
#[derive(Default)]
struct NoticeProgress {
    queued: std::sync::atomic::AtomicU64,
    done: Mutex<u64>,
    advanced: Condvar,
}

thread_local! {
    /// Set on the notice thread, which must never wait for itself.
    static ON_NOTICE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// An answer and the data after it.
type Answered = Result<(Answer, Vec<u8>)>;

/// Where a request's answer lands.
#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Answered>>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, answer: Answered) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
        self.ready.notify_all();
    }

    fn wait(&self) -> Answered {
        let mut answer = self.answer.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(a) = answer.take() {
                return a;
            }
            answer = self.ready.wait(answer).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Requests in flight, and whether the connection is gone (and why).
#[derive(Default)]
struct Calls {
    next: u64,
    waiting: HashMap<u64, Arc<Slot>>,
    gone: Option<String>,
}

/// What the reader thread and the requesting threads share.
struct Shared {
    socket: PathBuf,
    writer: Mutex<UnixStream>,
    calls: Mutex<Calls>,
    views: Views,
    pool_fd: Option<OwnedFd>,
    notices: Arc<NoticeProgress>,
}

impl Shared {
    fn gone_error(&self, why: &str) -> Error {
        Error::os(
            format!("pool server at {}: {why}", self.socket.display()),
            std::io::Error::from_raw_os_error(libc::ENOTCONN),
        )
    }

    /// The connection is over: take every view's pages away, then fail every waiting request
    /// (in that order: whoever sees ENOTCONN finds the views gone already).
    fn end(&self, why: String) {
        {
            // Views first, under the views' write lock: a view added meanwhile would be added
            // after the connection is marked gone below, and its Map call fails.
            let views = self.views.write().unwrap_or_else(|e| e.into_inner());
            for view in views.values() {
                if let Err(e) = view.remove_all_pages() {
                    eprintln!("ferrodax: could not take view {} away after the server left: {e}", view.id);
                }
            }
        }
        let waiting = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            if calls.gone.is_none() {
                calls.gone = Some(why.clone());
            }
            std::mem::take(&mut calls.waiting)
        };
        for slot in waiting.values() {
            slot.fill(Err(self.gone_error(&why)));
        }
        let _ = self.writer.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Both);
    }

    fn send(&self, message: &ClientMessage, data: &[u8]) -> std::io::Result<()> {
        let json = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        wire::write_frame(&writer, &json, data)
    }
}

/// A connection to a pool server, shared by the `Fs`, `File` and `Mapping` handles made through it.
pub struct Client {
    shared: Arc<Shared>,
    connection: u64,
    pool_len: u64,
    access: PoolAccess,
    next_view: AtomicU64,
    /// The whole pool mapped read-write in this process, made at the first placed write and kept
    /// (`None`: it cannot be mapped page by page, as a /dev/dax with a 2 MiB align; the data then
    /// goes in the frames).
    placing_window: std::sync::OnceLock<Option<crate::dax::vm::Reservation>>,
}

impl Client {
    /// Connects to the server at `socket` and shakes hands: protocol version, then the pool's
    /// descriptor when this process may read the pool file.
    pub fn connect(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket).map_err(|e| Error::os(socket.display(), e))?;
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, program: program_name() };
        let json = serde_json::to_vec(&hello).map_err(|e| Error::Invalid(e.to_string()))?;
        let protocol = |e: std::io::Error| Error::os(format!("pool server at {}", socket.display()), e);
        wire::write_frame(&stream, &json, &[]).map_err(protocol)?;
        let ((json, _), fd) = wire::read_frame_with_fd(&stream).map_err(protocol)?;
        let welcome: ServerMessage = serde_json::from_slice(&json)
            .map_err(|e| Error::Io(format!("pool server at {}: bad welcome: {e}", socket.display())))?;
        let (connection, pool_len, access) = match welcome {
            ServerMessage::Welcome { version, connection, pool_len, access }
                if version == PROTOCOL_VERSION =>
            {
                (connection, pool_len, access)
            }
            ServerMessage::Welcome { version, .. } => {
                return Err(Error::NotSupported(format!(
                    "pool server at {} speaks protocol {version}, this program {PROTOCOL_VERSION}",
                    socket.display()
                )))
            }
            ServerMessage::Refused { message } => {
                return Err(Error::os(
                    format!("pool server at {}: {message}", socket.display()),
                    std::io::Error::from_raw_os_error(libc::EACCES),
                ))
            }
            other => return Err(Error::Io(format!("pool server sent {other:?} instead of a welcome"))),
        };
        if access != PoolAccess::None && fd.is_none() {
            return Err(Error::Io("pool server promised the pool's descriptor but sent none".into()));
        }
        let reader = stream.try_clone().map_err(|e| Error::os("socket", e))?;
        let shared = Arc::new(Shared {
            socket: socket.to_path_buf(),
            writer: Mutex::new(stream),
            calls: Mutex::new(Calls::default()),
            views: Views::default(),
            pool_fd: fd,
            notices: Arc::default(),
        });
        let (notice_tx, notice_rx) = mpsc::channel::<Notice>();
        let (views, progress) = (shared.views.clone(), shared.notices.clone());
        std::thread::Builder::new()
            .name("ferrodax-notices".into())
            .spawn(move || deliver_notices(views, progress, notice_rx))
            .map_err(|e| Error::os("spawning the notice thread", e))?;
        let for_reader = shared.clone();
        std::thread::Builder::new()
            .name("ferrodax-client".into())
            .spawn(move || read_loop(for_reader, reader, notice_tx))
            .map_err(|e| Error::os("spawning the client reader", e))?;
        Ok(Client {
            shared,
            connection,
            pool_len,
            access,
            next_view: AtomicU64::new(0),
            placing_window: std::sync::OnceLock::new(),
        })
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.shared.socket
    }

    /// Pool size in bytes.
    pub fn pool_len(&self) -> u64 {
        self.pool_len
    }

    /// What this process may do with the pool file (and so which views it may make).
    pub fn pool_access(&self) -> PoolAccess {
        self.access
    }

    /// The pool's descriptor, when the server sent it.
    pub fn pool_fd(&self) -> Option<RawFd> {
        self.shared.pool_fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Sends a request with `data` after it and waits for the answer (and its data).
    /// Runs in signal context when a store fault or a machine check calls it (module docs).
    pub fn call(&self, op: Op, data: &[u8]) -> Result<(Answer, Vec<u8>)> {
        // A request made for someone else (the FUSE mount serving a user) says for whom.
        let op = match crate::fs::access::Credentials::explicit() {
            Some(caller) => Op::AsCaller { caller, op: Box::new(op) },
            None => op,
        };
        let slot = Arc::new(Slot::default());
        let id = {
            let mut calls = self.shared.calls.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &calls.gone {
                return Err(self.shared.gone_error(why));
            }
            calls.next += 1;
            let id = calls.next;
            calls.waiting.insert(id, slot.clone());
            id
        };
        if let Err(e) = self.shared.send(&ClientMessage::Request { id, op }, data) {
            // The connection is broken: end it for every thread, views first.
            let why = format!("sending a request failed: {e}");
            self.shared.end(why.clone());
            return Err(self.shared.gone_error(&why));
        }
        slot.wait()
    }

    /// Waits until every notice that arrived before now has been delivered to its subscriber: a
    /// memory failure requested by this process returns only after its own early subscribers were
    /// told, as on a direct mount. (Not on the notice thread itself, which would wait for itself.)
    pub fn wait_for_notices(&self) {
        if ON_NOTICE_THREAD.with(|t| t.get()) {
            return;
        }
        let progress = &self.shared.notices;
        let target = progress.queued.load(Ordering::SeqCst);
        let mut done = progress.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < target && self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).gone.is_none() {
            done = progress
                .advanced
                .wait_timeout(done, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// [`Client::call`] for requests without data that answer `Unit`.
    pub fn call_unit(&self, op: Op) -> Result<()> {
        match self.call(op, &[])? {
            (Answer::Unit, _) => Ok(()),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// pread through the server (the copy path), in pieces of at most [`DATA_PIECE`] bytes.
    pub fn read_at(&self, handle: u64, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let want = (buf.len() - done).min(DATA_PIECE);
            let op = Op::ReadAt { handle, offset: offset + done as u64, len: want as u64 };
            let data = match self.call(op, &[])? {
                (Answer::Data, data) => data,
                (other, _) => return Err(unexpected(&other)),
            };
            if data.len() > want {
                return Err(Error::Io(format!("pool server returned {} bytes for {want}", data.len())));
            }
            buf[done..done + data.len()].copy_from_slice(&data);
            done += data.len();
            if data.len() < want {
                break;
            }
        }
        Ok(done)
    }

    /// pwrite through the server, in pieces of at most [`DATA_PIECE`] bytes, each one atomic.
    pub fn write_at(&self, handle: u64, buf: &[u8], offset: u64) -> Result<usize> {
        if buf.is_empty() {
            return match self.call(Op::WriteAt { handle, offset }, &[])? {
                (Answer::Count(n), _) => Ok(n as usize),
                (other, _) => Err(unexpected(&other)),
            };
        }
        let mut done = 0usize;
        for piece in buf.chunks(DATA_PIECE) {
            match self.call(Op::WriteAt { handle, offset: offset + done as u64 }, piece)? {
                (Answer::Count(n), _) => done += n as usize,
                (other, _) => return Err(unexpected(&other)),
            }
        }
        Ok(done)
    }

    /// pwrite by placing the data: the server reserves the blocks, this process stores the data
    /// straight into them through its own mapping of the pool, and the server commits them like a
    /// pwrite (the unaligned edges are copied there, under its lock). Pieces of at most
    /// [`PLACED_PIECE`] bytes, each one atomic.
    pub fn write_placed(&self, handle: u64, buf: &[u8], offset: u64) -> Result<usize> {
        let fd =
            self.pool_fd().ok_or_else(|| Error::BadHandle("no pool descriptor for a placed write".into()))?;
        let window = self.placing_window.get_or_init(|| {
            use crate::dax::vm::{PageProtection, Reservation, PAGE};
            // A /dev/dax pool with an align above 4096 cannot be mapped block by block.
            if crate::pool::fd_map_granule(fd) > crate::pool::PAGE_SIZE {
                return None;
            }
            let bytes = usize::try_from(self.pool_len).ok().filter(|&b| b > 0 && b % PAGE == 0)?;
            let window = Reservation::new(bytes, PAGE).ok()?;
            window.map_pool(0, bytes / PAGE, fd, 0, PageProtection::ReadWrite).ok()?;
            Some(window)
        });
        let Some(window) = window else {
            // The data goes in the frames instead.
            return self.write_at(handle, buf, offset);
        };
        let mut done = 0usize;
        for piece in buf.chunks(PLACED_PIECE) {
            let at = offset + done as u64;
            let op = Op::ReserveWrite { handle, offset: at, len: piece.len() as u64 };
            let (token, runs) = match self.call(op, &[])? {
                (Answer::Reserved { token, runs }, _) => (token, runs),
                (other, _) => return Err(unexpected(&other)),
            };
            let placed = place_data(window, &runs, at, piece, self.pool_len);
            // Commit even after a failed store: the server then gives the blocks back (a commit
            // of blocks the data did not reach would be wrong, so a failure commits nothing).
            if let Err(e) = placed {
                let _ = self.call(Op::CommitWrite { token: token | ABANDON }, &[]);
                return Err(e);
            }
            match self.call(Op::CommitWrite { token }, &[])? {
                (Answer::Count(n), _) => done += n as usize,
                (other, _) => return Err(unexpected(&other)),
            }
        }
        Ok(done)
    }

    /// A fresh view id: this connection's id in the high 32 bits.
    pub fn next_view_id(&self) -> u64 {
        (self.connection << 32) | (self.next_view.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Registers a view of this process, so that recalls and notices find it.
    pub fn add_view(&self, view: Arc<View>) {
        self.shared.views.write().unwrap_or_else(|e| e.into_inner()).insert(view.id, view);
    }

    /// Forgets a view of this process.
    pub fn remove_view(&self, id: u64) {
        self.shared.views.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// The view of this process that contains `addr`, if any.
    pub fn view_at(&self, addr: usize) -> Option<Arc<View>> {
        let views = self.shared.views.read().unwrap_or_else(|e| e.into_inner());
        views.values().find(|v| addr >= v.addr() && addr < v.addr() + v.len()).cloned()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Ends the reader thread (it sees the end of the stream) and tells the server we are gone.
        let writer = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }
}

/// The largest piece of a placed write.
pub const PLACED_PIECE: usize = 64 << 20;

/// Set in a `CommitWrite` token: the data could not be placed; give the blocks back.
pub const ABANDON: u64 = 1 << 63;

/// Stores `data` (file bytes from `offset`) into the reserved `runs` through `window`, this
/// process's mapping of the whole pool; each run is checked against the pool's size first.
fn place_data(
    window: &crate::dax::vm::Reservation,
    runs: &[(u64, u64)],
    offset: u64,
    data: &[u8],
    pool_len: u64,
) -> Result<()> {
    let block = crate::dax::vm::PAGE as u64;
    let end = offset + data.len() as u64;
    let mut file_block = offset / block;
    for &(start, len) in runs {
        if start.checked_add(len).is_none_or(|e| e * block > pool_len) || len == 0 {
            return Err(Error::Io(format!("pool server reserved blocks [{start}, +{len}) outside the pool")));
        }
        let byte_start = (file_block * block).max(offset);
        let byte_end = ((file_block + len) * block).min(end);
        if byte_start < byte_end {
            let src = &data[(byte_start - offset) as usize..(byte_end - offset) as usize];
            window.store((start * block + (byte_start - file_block * block)) as usize, src);
        }
        file_block += len;
    }
    Ok(())
}

/// An answer of the wrong kind: the server and the client disagree about the protocol.
pub fn unexpected(answer: &Answer) -> Error {
    Error::Io(format!("pool server sent an unexpected answer: {answer:?}"))
}

/// This program's command line, for the server's log.
fn program_name() -> String {
    crate::pool::command_line(std::process::id())
}

/// The reader thread: everything the server sends, until the connection ends.
fn read_loop(shared: Arc<Shared>, mut stream: UnixStream, notices: mpsc::Sender<Notice>) {
    let why = loop {
        let (json, data) = match wire::read_frame(&mut stream) {
            Ok(Some(frame)) => frame,
            Ok(None) => break "the server closed the connection (it stopped or died)".to_string(),
            Err(e) => break format!("the connection broke: {e}"),
        };
        let message: ServerMessage = match serde_json::from_slice(&json) {
            Ok(m) => m,
            Err(e) => break format!("the server sent a message this client cannot read: {e}"),
        };
        match message {
            ServerMessage::Reply { id, result } => {
                let slot = shared.calls.lock().unwrap_or_else(|e| e.into_inner()).waiting.remove(&id);
                if let Some(slot) = slot {
                    slot.fill(result.map(|a| (a, data)).map_err(Error::from));
                }
            }
            ServerMessage::Recall { recall, ops } => {
                let fd = shared.pool_fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
                let mut error = None;
                {
                    let views = shared.views.read().unwrap_or_else(|e| e.into_inner());
                    for op in &ops {
                        // A view this process already let go of has no memory left to change.
                        let Some(view) = views.get(&op.view) else { continue };
                        if let Err(e) = view.apply_change(op, fd) {
                            error.get_or_insert(e.to_string());
                        }
                    }
                }
                if let Err(e) = shared.send(&ClientMessage::RecallDone { recall, error }, &[]) {
                    break format!("answering a recall failed: {e}");
                }
            }
            ServerMessage::Notice(notice) => {
                // Counted before the reply that follows it is handed over (see wait_for_notices).
                shared.notices.queued.fetch_add(1, Ordering::SeqCst);
                let _ = notices.send(notice);
            }
            ServerMessage::Goodbye { reason } => break format!("the server said goodbye: {reason}"),
            other => break format!("the server sent {other:?} in the middle of a session"),
        }
    };
    shared.end(why);
}

/// The notice thread: calls the subscriber of each notice's view, off the reader thread.
fn deliver_notices(views: Views, progress: Arc<NoticeProgress>, notices: mpsc::Receiver<Notice>) {
    ON_NOTICE_THREAD.with(|t| t.set(true));
    for notice in notices {
        let view = views.read().unwrap_or_else(|e| e.into_inner()).get(&notice.view).cloned();
        if let Some(subscription) = view.and_then(|v| v.subscription()) {
            (subscription.callback)(&notice);
        }
        *progress.done.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        progress.advanced.notify_all();
    }
}
