//! The pool server: the one process that owns a pool, serving any number of client processes.
//!
//! Owns the listening socket, the handshake (protocol version; who the peer is, from SO_PEERCRED;
//! whether it may connect and what it may do with the pool file), one reader thread and one worker
//! thread per client, the client's tables (its open handles and its views), the recalls sent to
//! it, and the clean shutdown. Requests run on the server's direct mount (`crate::Fs`), so every
//! rule of the library holds for every client; a client's view is a view of the server's DAX
//! layer whose memory lives in the client ([`crate::dax::ViewMemory::Remote`]).
//!
//! Trust: the socket's mode is the gate (0600: the server's user; `--group`: 0660 and that group).
//! A connected client may do every file operation; it receives the pool's descriptor — a fresh
//! open of the pool file, never the server's own (which carries the pool lock) — for reading and
//! writing, or reading only, exactly as its own credentials allow on the pool file, and may make
//! views only within that access. A client that does not answer a recall within the timeout, or
//! whose connection closes while its process still holds views, is killed (through a pidfd, so no
//! other process can be hit) and its exit awaited before the operation goes on: a view that no
//! longer follows the layout must not outlive the operation that changed it.
//!
//! Must never: run a request of one client with another's handle or view, let the reader thread
//! of a client wait for the file system (it must always be free to take recall answers), or
//! return from an operation while a live client still shows the old layout.

use super::protocol::{
    Answer, ClientMessage, Op, PoolAccess, ServerMessage, WireDedupe, WireError, PROTOCOL_VERSION,
};
use super::wire;
use crate::api::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use crate::dax::{MapAccess, Notice, PageChange, RecallTicket, Subscription, ViewPeer};
use crate::error::{Error, Result};
use crate::fs::access::{as_caller, Credentials};
use crate::memfail::FailureFlags;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Requests of one client queued for its worker at most.
const REQUEST_QUEUE: usize = 256;

/// Where the server's log lines go (one line per call, no newline).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The pool file or /dev/dax device.
    pub pool: PathBuf,
    /// The socket; [`super::default_socket`] of the pool when `None`.
    pub socket: Option<PathBuf>,
    /// A group whose members may connect too (the socket becomes 0660, owned by that group).
    pub group: Option<u32>,
    /// How long a client may take to apply a recall before it is killed.
    pub recall_timeout: Duration,
}

impl ServeOptions {
    /// Defaults for `pool`: the default socket, no group, a 10-second recall timeout.
    pub fn new(pool: impl Into<PathBuf>) -> Self {
        ServeOptions { pool: pool.into(), socket: None, group: None, recall_timeout: Duration::from_secs(10) }
    }
}

/// The state every connection shares.
struct Server {
    fs: Fs,
    pool_path: PathBuf,
    pool_meta: std::fs::Metadata,
    uid: u32,
    group: Option<u32>,
    recall_timeout: Duration,
    log: Log,
    next_connection: AtomicU64,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    /// Set when the server stops: clients were told goodbye and take their views away themselves.
    stopping: AtomicBool,
}

/// Runs a server for `options.pool` until `stop` becomes true, then shuts down cleanly: every
/// client is told goodbye and cut off (its views and handles released), a final checkpoint is
/// written and the socket removed. `ready` is called with the socket path once clients can
/// connect.
pub fn serve(
    options: &ServeOptions,
    stop: Arc<AtomicBool>,
    log: Log,
    ready: impl FnOnce(&Path),
) -> Result<()> {
    let pool = Pool::open(&options.pool)?;
    let fs = Fs::mount(&pool)?;
    serve_mounted(options, fs, stop, log, ready)
}

/// [`serve`] with a mount this process already made of `options.pool` (a direct mount:
/// [`Fs::mount`] of [`Pool::open`]), so that the process can use the same mount beside its
/// clients — `ferrodax mount` serves a FUSE mount from it. Everything else is as in [`serve`]:
/// the final checkpoint is written through `fs` after every client was released.
pub fn serve_mounted(
    options: &ServeOptions,
    fs: Fs,
    stop: Arc<AtomicBool>,
    log: Log,
    ready: impl FnOnce(&Path),
) -> Result<()> {
    if fs.is_connected() {
        return Err(Error::Invalid(
            "a pool server needs a direct mount, not a connection to another server".into(),
        ));
    }
    let pool_meta = std::fs::metadata(&options.pool).map_err(|e| Error::os(options.pool.display(), e))?;
    let socket = options.socket.clone().unwrap_or_else(|| super::default_socket(&options.pool));
    let listener = listen(&socket, options.group)?;
    let server = Arc::new(Server {
        fs,
        pool_path: options.pool.clone(),
        pool_meta,
        // SAFETY: geteuid has no preconditions.
        uid: unsafe { libc::geteuid() },
        group: options.group,
        recall_timeout: options.recall_timeout,
        log: log.clone(),
        next_connection: AtomicU64::new(1),
        peers: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
    });
    // A pool file on a disk groups commits: its operations become durable within a second even
    // when no client asks (fsync) and no further request comes.
    let periodic_sync = server.fs.sync_periodically();
    let stats = server.fs.stats();
    log(&format!(
        "serving {} on {} ({} blocks, {} free); stop with SIGTERM or Ctrl-C",
        options.pool.display(),
        socket.display(),
        stats.total_blocks,
        stats.free_blocks
    ));
    ready(&socket);
    let mut connections = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let server = server.clone();
                let spawned = std::thread::Builder::new()
                    .name("ferrodax-serve-conn".into())
                    .spawn(move || serve_connection(server, stream));
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(e) => log(&format!("cannot start a thread for a new client: {e}")),
                }
                connections.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                wait_readable(listener.as_raw_fd(), 100);
            }
            Err(e) => {
                log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    log("stopping: telling every client goodbye");
    server.stopping.store(true, Ordering::SeqCst);
    let _ = std::fs::remove_file(&socket);
    drop(listener);
    let peers: Vec<Arc<Peer>> =
        server.peers.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    for peer in peers {
        let _ = peer.send(&ServerMessage::Goodbye { reason: "the pool server is shutting down".into() }, &[]);
        peer.cut_off();
    }
    for handle in connections {
        let _ = handle.join();
    }
    drop(periodic_sync);
    server.fs.checkpoint()?;
    log("stopped: final checkpoint written, every client released");
    Ok(())
}

/// Binds the socket with mode 0600 (0660 and the group's ownership with `group`), replacing a
/// stale socket that nobody listens on. The listener is non-blocking.
fn listen(socket: &Path, group: Option<u32>) -> Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(Error::Exists(format!(
                "{} (not a socket; choose another with --socket)",
                socket.display()
            )));
        }
        if UnixStream::connect(socket).is_ok() {
            return Err(Error::Busy(format!("a server already listens on {}", socket.display())));
        }
        std::fs::remove_file(socket).map_err(|e| Error::os(socket.display(), e))?;
    }
    // SAFETY: umask only changes this process's file-creation mask; it is restored right after, so
    // the socket is never reachable with looser permissions than asked.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(socket);
    // SAFETY: restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| {
        let hint = if socket.as_os_str().len() > 107 {
            " (a socket path has at most 107 bytes: use --socket)"
        } else {
            ""
        };
        Error::os(format!("{}{hint}", socket.display()), e)
    })?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(socket, None, Some(gid)).map_err(|e| Error::os(socket.display(), e))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| Error::os(socket.display(), e))?;
    }
    listener.set_nonblocking(true).map_err(|e| Error::os(socket.display(), e))?;
    Ok(listener)
}

/// Waits up to `ms` milliseconds for `fd` to become readable.
fn wait_readable(fd: i32, ms: i32) {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one pollfd we own.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// One client, as the server's DAX layer and its threads see it.
struct Peer {
    id: u64,
    pid: u32,
    /// Who the client is: every request it makes runs with these credentials.
    caller: Credentials,
    program: String,
    access: PoolAccess,
    writer: Mutex<UnixStream>,
    /// A pidfd of the client, to kill exactly it when it must be fenced.
    pidfd: Option<OwnedFd>,
    queued: Mutex<Vec<PageChange>>,
    recalls: Mutex<Recalls>,
    answered: Condvar,
    timeout: Duration,
    log: Log,
}

#[derive(Default)]
struct Recalls {
    sent: u64,
    done: u64,
    gone: bool,
}

impl Peer {
    fn send(&self, message: &ServerMessage, data: &[u8]) -> io::Result<()> {
        let json = serde_json::to_vec(message).map_err(io::Error::other)?;
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        wire::write_frame(&writer, &json, data)
    }

    /// The client is gone (or cut off): no recall waits for it any more.
    fn mark_gone(&self) {
        self.recalls.lock().unwrap_or_else(|e| e.into_inner()).gone = true;
        self.answered.notify_all();
    }

    /// Closes the connection: the reader thread sees its end and releases everything.
    fn cut_off(&self) {
        self.mark_gone();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.shutdown(std::net::Shutdown::Both);
    }

    fn recall_done(&self, recall: u64, error: Option<String>) {
        if let Some(e) = error {
            (self.log)(&format!(
                "client {} (pid {}): a page change failed in its views: {e}",
                self.id, self.pid
            ));
        }
        let mut r = self.recalls.lock().unwrap_or_else(|e| e.into_inner());
        r.done = r.done.max(recall);
        drop(r);
        self.answered.notify_all();
    }

    /// True while the client's process exists.
    fn alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one pollfd we own; a pidfd is readable once the process exited.
                let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
                rc == 0
            }
            None => {
                // SAFETY: kill with signal 0 only checks that the process exists.
                let rc = unsafe { libc::kill(self.pid as i32, 0) };
                rc == 0
            }
        }
    }

    /// Kills the client and waits (up to 5 s) for it to be gone, so that none of its views can
    /// show a stale layout after this returns.
    fn fence(&self, why: &str) {
        (self.log)(&format!("client {} (pid {}, {}): {why}: killing it", self.id, self.pid, self.program));
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal on a pidfd we own; it reaches exactly that process.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<u8>(),
                        0,
                    )
                };
                wait_readable(fd.as_raw_fd(), 5000);
            }
            None => {
                // SAFETY: kill(2) of the peer's pid (no pidfd: an old kernel).
                unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.cut_off();
    }
}

impl ViewPeer for Peer {
    fn queue(&self, change: PageChange) {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).push(change);
    }

    fn send_queued(&self) -> Option<RecallTicket> {
        let ops = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|e| e.into_inner()));
        if ops.is_empty() {
            return None;
        }
        let recall = {
            let mut r = self.recalls.lock().unwrap_or_else(|e| e.into_inner());
            if r.gone {
                return None;
            }
            r.sent += 1;
            r.sent
        };
        if self.send(&ServerMessage::Recall { recall, ops }, &[]).is_err() {
            // The connection broke: the process is going or gone; make sure it is.
            if self.alive() {
                self.fence("its connection broke while it holds views");
            }
            self.mark_gone();
            return None;
        }
        Some(RecallTicket { recall, deadline: Instant::now() + self.timeout })
    }

    fn wait_applied(&self, ticket: RecallTicket) {
        let RecallTicket { recall, deadline } = ticket;
        let mut r = self.recalls.lock().unwrap_or_else(|e| e.into_inner());
        while r.done < recall && !r.gone {
            let now = Instant::now();
            if now >= deadline {
                drop(r);
                self.fence(&format!("it did not apply a layout change within {:?}", self.timeout));
                return;
            }
            r = self.answered.wait_timeout(r, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Opens a pidfd for `pid` (None on kernels without pidfd_open).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1; we own what it returns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a fresh descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The supplementary groups of `pid`, from /proc/PID/status.
fn groups_of(pid: u32) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

impl Server {
    /// Whether a peer with these credentials may connect (the socket's mode already let it in;
    /// this holds even if someone loosened the mode).
    fn may_connect(&self, pid: u32, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == self.uid || self.group.is_some_and(|g| gid == g || groups_of(pid).contains(&g))
    }

    /// What the peer may do with the pool file, from its owner, group and mode bits.
    fn pool_access(&self, pid: u32, uid: u32, gid: u32) -> PoolAccess {
        let mode = self.pool_meta.mode();
        let bits = if uid == 0 {
            0o6
        } else if uid == self.pool_meta.uid() {
            (mode >> 6) & 7
        } else if gid == self.pool_meta.gid() || groups_of(pid).contains(&self.pool_meta.gid()) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        match (bits & 4 != 0, bits & 2 != 0) {
            (true, true) => PoolAccess::ReadWrite,
            (true, false) => PoolAccess::ReadOnly,
            _ => PoolAccess::None,
        }
    }

    /// A fresh open of the pool file for a client (no lock rides on it).
    fn pool_descriptor(&self, access: PoolAccess) -> io::Result<Option<std::fs::File>> {
        let write = match access {
            PoolAccess::ReadWrite => true,
            PoolAccess::ReadOnly => false,
            PoolAccess::None => return Ok(None),
        };
        std::fs::OpenOptions::new().read(true).write(write).open(&self.pool_path).map(Some)
    }
}

/// One client connection: the handshake, then its reader loop; the worker runs its requests.
fn serve_connection(server: Arc<Server>, stream: UnixStream) {
    let log = server.log.clone();
    let Ok((pid, uid, gid)) = wire::peer_credentials(&stream) else { return };
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let refuse = |message: String| {
        log(&format!("refused a connection from pid {pid} uid {uid}: {message}"));
        if let Ok(json) = serde_json::to_vec(&ServerMessage::Refused { message }) {
            let _ = wire::write_frame(&stream, &json, &[]);
        }
    };
    let mut reader = match stream.try_clone() {
        Ok(r) => r,
        Err(_) => return,
    };
    let program = match wire::read_frame(&mut reader).ok().flatten().map(|(j, _)| serde_json::from_slice(&j))
    {
        Some(Ok(ClientMessage::Hello { version, program })) if version == PROTOCOL_VERSION => program,
        Some(Ok(ClientMessage::Hello { version, .. })) => {
            return refuse(format!("protocol {version} asked, this server speaks {PROTOCOL_VERSION}"))
        }
        _ => return refuse("no valid hello".into()),
    };
    if !server.may_connect(pid, uid, gid) {
        return refuse(format!("uid {uid} may not use this pool server"));
    }
    let mut access = server.pool_access(pid, uid, gid);
    let descriptor = match server.pool_descriptor(access) {
        Ok(d) => d,
        Err(e) => {
            log(&format!("cannot open the pool file for pid {pid}: {e}; it gets the copy path"));
            access = PoolAccess::None;
            None
        }
    };
    let id = server.next_connection.fetch_add(1, Ordering::Relaxed);
    let welcome = ServerMessage::Welcome {
        version: PROTOCOL_VERSION,
        connection: id,
        pool_len: server.fs.stats().total_blocks * crate::format::BLOCK_SIZE,
        access,
    };
    let Ok(json) = serde_json::to_vec(&welcome) else { return };
    let sent = match &descriptor {
        Some(file) => wire::write_frame_with_fd(&stream, &json, file.as_raw_fd()),
        None => wire::write_frame(&stream, &json, &[]),
    };
    drop(descriptor);
    if sent.is_err() {
        return;
    }
    let _ = stream.set_read_timeout(None);
    // The user and group SO_PEERCRED reported at connect; the supplementary groups from /proc.
    let caller = Credentials { uid, gid, groups: groups_of(pid) };
    let peer = Arc::new(Peer {
        id,
        pid,
        caller,
        program: program.clone(),
        access,
        writer: Mutex::new(stream),
        pidfd: pidfd_open(pid),
        queued: Mutex::new(Vec::new()),
        recalls: Mutex::new(Recalls::default()),
        answered: Condvar::new(),
        timeout: server.recall_timeout,
        log: log.clone(),
    });
    server.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(id, peer.clone());
    let access_text = match access {
        PoolAccess::ReadWrite => "views read-write",
        PoolAccess::ReadOnly => "views read-only",
        PoolAccess::None => "no views (copy path)",
    };
    log(&format!("client {id} connected: pid {pid} uid {uid} ({program}); {access_text}"));
    // Bounded: a client has at most one request in flight per thread; one that floods the queue
    // stalls its own reader, misses its recalls and is fenced after the recall timeout.
    let (requests, queue) = mpsc::sync_channel::<(u64, Op, Vec<u8>)>(REQUEST_QUEUE);
    let worker = {
        let (server, peer) = (server.clone(), peer.clone());
        std::thread::Builder::new().name("ferrodax-serve-work".into()).spawn(move || {
            let mut worker = Worker {
                server,
                peer,
                handles: HashMap::new(),
                next_handle: 0,
                views: HashSet::new(),
                reserved: HashMap::new(),
                next_token: 0,
            };
            for (request, op, data) in queue {
                worker.answer(request, op, data);
            }
            worker.release()
        })
    };
    let Ok(worker) = worker else {
        peer.cut_off();
        server.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        return;
    };
    let why = loop {
        let (json, data) = match wire::read_frame(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => break "disconnected".to_string(),
            Err(e) => break format!("disconnected ({e})"),
        };
        match serde_json::from_slice::<ClientMessage>(&json) {
            Ok(ClientMessage::Request { id: request, op }) => {
                if requests.send((request, op, data)).is_err() {
                    break "its worker stopped".into();
                }
            }
            Ok(ClientMessage::RecallDone { recall, error }) => peer.recall_done(recall, error),
            Ok(ClientMessage::Hello { .. }) => break "sent a second hello: disconnected".into(),
            Err(e) => break format!("sent a message that is not the protocol ({e}): disconnected"),
        }
    };
    // No recall waits for a client that is gone; its worker then releases what it held.
    peer.mark_gone();
    drop(requests);
    let released = worker.join().unwrap_or_default();
    server.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    log(&format!("client {id} (pid {pid}) {why}; released {released}"));
}

/// A placed write between its reservation and its commit.
struct PlacedWrite {
    handle: u64,
    offset: u64,
    len: u64,
    runs: Vec<(u64, u64)>,
}

/// Runs one client's requests, in order, and owns its handles and views.
struct Worker {
    server: Arc<Server>,
    peer: Arc<Peer>,
    handles: HashMap<u64, File>,
    next_handle: u64,
    views: HashSet<u64>,
    /// Placed writes in flight, by token.
    reserved: HashMap<u64, PlacedWrite>,
    next_token: u64,
}

impl Worker {
    fn answer(&mut self, request: u64, op: Op, data: Vec<u8>) {
        // Every request runs with the client's credentials (SO_PEERCRED, groups from /proc).
        let caller = self.peer.caller.clone();
        let (result, out) = match as_caller(caller, || self.execute(op, data)) {
            Ok((answer, out)) => (Ok(answer), out),
            Err(e) => (Err(WireError::from(&e)), Vec::new()),
        };
        // A client that is gone does not need its answer.
        let _ = self.peer.send(&ServerMessage::Reply { id: request, result }, &out);
    }

    /// Releases every view and handle of the client; returns what was released, for the log.
    fn release(mut self) -> String {
        let views = self.views.len();
        // A client told goodbye takes its views away itself (its library does, on the goodbye),
        // and the server is going away: no layout change can follow. Otherwise a client that
        // hangs up while still holding views must not run on with them.
        if views > 0 && !self.server.stopping.load(Ordering::SeqCst) && self.peer.alive() {
            // Its views would no longer follow layout changes: it must not run on with them.
            self.peer.fence(&format!("its connection closed while it still holds {views} view(s)"));
        }
        for id in std::mem::take(&mut self.views) {
            self.server.fs.unmap_for_peer(id);
        }
        let placed = self.reserved.len();
        for (_, placed) in self.reserved.drain() {
            self.server.fs.release_reserved(&placed.runs);
        }
        let handles = self.handles.len();
        self.handles.clear();
        format!("{views} view(s), {handles} open handle(s), {placed} unfinished placed write(s)")
    }

    fn file(&self, handle: u64) -> Result<&File> {
        self.handles.get(&handle).ok_or_else(|| Error::BadHandle(format!("no open handle {handle}")))
    }

    fn own_view(&self, view: u64) -> Result<()> {
        if self.views.contains(&view) {
            Ok(())
        } else {
            Err(Error::Invalid(format!("view {view:#x} is not one of this client's")))
        }
    }

    fn execute(&mut self, op: Op, data: Vec<u8>) -> Result<(Answer, Vec<u8>)> {
        let fs = self.server.fs.clone();
        let none = Vec::new;
        let answer = match op {
            Op::Open { path, options } => {
                let mut o = OpenOptions::new();
                o.read(options.read)
                    .write(options.write)
                    .append(options.append)
                    .create(options.create)
                    .create_new(options.create_new)
                    .truncate(options.truncate)
                    .mode(options.mode)
                    .no_follow(options.no_follow)
                    .in_place(options.in_place);
                let file = fs.open(&path, &o)?;
                self.next_handle += 1;
                let (ino, access) = (file.ino(), file.access());
                self.handles.insert(self.next_handle, file);
                Answer::Opened { handle: self.next_handle, ino, access }
            }
            Op::Close { handle } => {
                self.handles
                    .remove(&handle)
                    .ok_or_else(|| Error::BadHandle(format!("no open handle {handle}")))?;
                Answer::Unit
            }
            Op::ReadAt { handle, offset, len } => {
                if len > wire::MAX_DATA as u64 {
                    return Err(Error::Invalid(format!(
                        "a read of {len} bytes crosses the socket in pieces"
                    )));
                }
                let mut buf = vec![0u8; len as usize];
                let n = self.file(handle)?.read_at(&mut buf, offset)?;
                buf.truncate(n);
                return Ok((Answer::Data, buf));
            }
            Op::WriteAt { handle, offset } => {
                Answer::Count(self.file(handle)?.write_at(&data, offset)? as u64)
            }
            Op::ReserveWrite { handle, offset, len } => {
                let runs = fs.reserve_for_peer(self.file(handle)?, offset, len)?;
                self.next_token += 1;
                self.reserved
                    .insert(self.next_token, PlacedWrite { handle, offset, len, runs: runs.clone() });
                Answer::Reserved { token: self.next_token, runs }
            }
            Op::CommitWrite { token } => {
                let abandon = token & super::client::ABANDON != 0;
                let token = token & !super::client::ABANDON;
                let PlacedWrite { handle, offset, len, runs } = self
                    .reserved
                    .remove(&token)
                    .ok_or_else(|| Error::Invalid(format!("no placed write {token} in flight")))?;
                if abandon {
                    fs.release_reserved(&runs);
                    return Ok((Answer::Count(0), none()));
                }
                match self.file(handle) {
                    Ok(file) => Answer::Count(fs.commit_placed_for_peer(file, offset, len, &runs)? as u64),
                    Err(e) => {
                        fs.release_reserved(&runs);
                        return Err(e);
                    }
                }
            }
            Op::SetLen { handle, size } => {
                self.file(handle)?.set_len(size)?;
                Answer::Unit
            }
            Op::FileStat { handle } => Answer::Stat(self.file(handle)?.metadata()?),
            Op::SyncAll { handle } => {
                self.file(handle)?.sync_all()?;
                Answer::Unit
            }
            Op::SyncFs => {
                fs.sync()?;
                Answer::Unit
            }
            Op::Metadata { path } => Answer::Stat(fs.metadata(&path)?),
            Op::CreateDir { path, mode } => {
                fs.create_dir_with_mode(&path, mode)?;
                Answer::Unit
            }
            Op::RemoveDir { path } => {
                fs.remove_dir(&path)?;
                Answer::Unit
            }
            Op::RemoveFile { path } => {
                fs.remove_file(&path)?;
                Answer::Unit
            }
            Op::Rename { from, to } => {
                fs.rename(&from, &to)?;
                Answer::Unit
            }
            Op::RenameWithFlags { from, to, flags } => {
                fs.rename_with_flags(&from, &to, flags)?;
                Answer::Unit
            }
            Op::Link { existing, new } => {
                fs.hard_link(&existing, &new)?;
                Answer::Unit
            }
            Op::Symlink { target, path } => {
                fs.symlink(&target, &path)?;
                Answer::Unit
            }
            Op::ReadLink { path } => Answer::Path(Some(fs.read_link(&path)?)),
            Op::SymlinkMetadata { path } => Answer::Stat(fs.symlink_metadata(&path)?),
            Op::SetAttributes { path, set, follow } => {
                fs.set_attributes(&path, &set, follow)?;
                Answer::Unit
            }
            Op::FileSetAttributes { handle, set } => {
                self.file(handle)?.set_attributes(&set)?;
                Answer::Unit
            }
            Op::Access { path, mask } => {
                fs.access(&path, mask)?;
                Answer::Unit
            }
            Op::GetXattr { path, name } => Answer::Bytes(fs.get_xattr(&path, &name)?),
            Op::ListXattrs { path } => Answer::Names(fs.list_xattrs(&path)?),
            Op::SetXattr { path, name, value, flags } => {
                fs.set_xattr(&path, &name, &value, flags)?;
                Answer::Unit
            }
            Op::RemoveXattr { path, name } => {
                fs.remove_xattr(&path, &name)?;
                Answer::Unit
            }
            Op::AsCaller { caller, op } => {
                if !self.peer.caller.is_root() {
                    return Err(Error::NotPermitted(format!(
                        "uid {} may not make requests for other users (only root, such as a FUSE mount, may)",
                        self.peer.caller.uid
                    )));
                }
                return as_caller(caller, || self.execute(*op, data));
            }
            Op::ReadDir { path } => Answer::Entries(fs.read_dir(&path)?),
            Op::Reflink { src, src_off, dst, dst_off, len } => {
                Answer::Count(fs.reflink(self.file(src)?, src_off, self.file(dst)?, dst_off, len)?)
            }
            Op::Dedupe { src, src_off, len, targets } => {
                let mut wanted = Vec::with_capacity(targets.len());
                for (handle, offset) in &targets {
                    wanted.push(DedupeTarget { file: self.file(*handle)?, offset: *offset });
                }
                let statuses = fs.dedupe(self.file(src)?, src_off, len, &wanted)?;
                Answer::Dedupe(
                    statuses
                        .into_iter()
                        .map(|s| match s {
                            DedupeStatus::Same { bytes_deduped } => WireDedupe::Same { bytes_deduped },
                            DedupeStatus::Differs => WireDedupe::Differs,
                            DedupeStatus::Failed(e) => WireDedupe::Failed(WireError::from(&e)),
                        })
                        .collect(),
                )
            }
            Op::Unshare { handle, offset, len } => {
                fs.unshare(self.file(handle)?, offset, len)?;
                Answer::Unit
            }
            Op::Fallocate { handle, mode, offset, len } => {
                self.file(handle)?.fallocate(mode, offset, len)?;
                Answer::Unit
            }
            Op::Seek { handle, offset, target } => Answer::Count(self.file(handle)?.find(offset, target)?),
            Op::CopyFileRange { src, src_off, dst, dst_off, len } => {
                Answer::Count(fs.copy_file_range(self.file(src)?, src_off, self.file(dst)?, dst_off, len)?)
            }
            Op::Owners { pool_offset, len } => Answer::Owners(fs.owners(pool_offset, len)),
            Op::ShareState { block } => Answer::ShareState(fs.share_state(block)),
            Op::Fiemap { handle } => Answer::Fiemap(fs.fiemap(self.file(handle)?)?),
            Op::Check => Answer::Check(fs.check()),
            Op::MemoryFailure { pool_offset, len, accessor } => {
                if let Some((view, _)) = accessor {
                    self.own_view(view)?;
                }
                let flags =
                    FailureFlags { accessor: accessor.map(|a| a.1), accessor_view: accessor.map(|a| a.0) };
                let report = fs.memory_failure(pool_offset, len, flags)?;
                self.log_failure(&report);
                Answer::Failure(report)
            }
            Op::PreRemove => {
                let report = fs.pre_remove()?;
                (self.server.log)(&format!(
                    "pre-remove by client {} (pid {}): {} view(s) invalidated; the pool is unmounted",
                    self.peer.id, self.peer.pid, report.views_invalidated
                ));
                Answer::PreRemove(report)
            }
            Op::ImportBadblocks { text, source } => {
                let reports = fs.import_badblocks(&text, &source)?;
                reports.iter().for_each(|r| self.log_failure(r));
                Answer::Failures(reports)
            }
            Op::BadBlocks => Answer::BadBlocks(fs.bad_blocks()),
            Op::PageShare { block } => Answer::PageShare(fs.page_share(block)),
            Op::ViewCount => Answer::Count(fs.view_count() as u64),
            Op::Stats => Answer::Stats(fs.stats()),
            Op::SpaceUsage => Answer::SpaceUsage(fs.space_usage()?),
            Op::PathOf { ino } => Answer::Path(fs.path_of(ino)),
            Op::Map { handle, view, offset, len, access, mut holder, base } => {
                if view >> 32 != self.peer.id {
                    return Err(Error::Invalid(format!(
                        "view id {view:#x} does not carry this connection's id"
                    )));
                }
                let allowed = match self.peer.access {
                    PoolAccess::ReadWrite => true,
                    PoolAccess::ReadOnly => access == MapAccess::Read,
                    PoolAccess::None => false,
                };
                if !allowed {
                    return Err(Error::os(
                        "this client may not open the pool file for such a view",
                        io::Error::from_raw_os_error(libc::EACCES),
                    ));
                }
                // The holder's pid is the kernel's word, not the client's.
                holder.pid = self.peer.pid;
                let peer: Arc<dyn ViewPeer> = self.peer.clone();
                fs.map_for_peer(self.file(handle)?, view, offset, len, access, holder, peer, base)?;
                self.views.insert(view);
                Answer::Unit
            }
            Op::Unmap { view } => {
                self.own_view(view)?;
                self.views.remove(&view);
                fs.unmap_for_peer(view);
                Answer::Unit
            }
            Op::MakePrivate { view, page } => {
                self.own_view(view)?;
                fs.make_page_private_for_peer(view, page)?;
                Answer::Unit
            }
            Op::Subscribe { view, early } => {
                self.own_view(view)?;
                let peer: Weak<Peer> = Arc::downgrade(&self.peer);
                let callback = Arc::new(move |notice: &Notice| {
                    if let Some(peer) = peer.upgrade() {
                        let _ = peer.send(&ServerMessage::Notice(notice.clone()), &[]);
                    }
                });
                fs.subscribe_for_peer(view, Subscription { early, callback })?;
                Answer::Unit
            }
            Op::SyncView { view } => {
                self.own_view(view)?;
                fs.sync_view_for_peer(view)?;
                Answer::Unit
            }
        };
        Ok((answer, none()))
    }

    /// One log line per memory failure: the range, the owners, every process told.
    fn log_failure(&self, report: &crate::memfail::FailureReport) {
        let owners: Vec<String> = report
            .files
            .iter()
            .map(|f| format!("{}@{}", f.path.as_deref().unwrap_or("(unlinked)"), f.file_offset))
            .chain(report.metadata.iter().cloned())
            .collect();
        let mut pids: Vec<u32> = report.views.iter().map(|v| v.holder.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        (self.server.log)(&format!(
            "memory failure at pool [{:#x}, +{:#x}) (from client {}, pid {}): owners [{}]; {} view page(s) in {} process(es) {:?} taken out",
            report.pool_offset,
            report.length,
            self.peer.id,
            self.peer.pid,
            owners.join(", "),
            report.views.len(),
            pids.len(),
            pids
        ));
    }
}
