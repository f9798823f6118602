//! The pool-server rows: what a client process pays for going through `ferrodax serve`, each
//! measured side by side with its baseline in the same run.
//!
//! Owns the server's processes and pools for these rows: a pool file on /dev/shm served by a child
//! process (this binary re-executed with a hidden role that runs `ferrodax::server::daemon::serve`),
//! a second /dev/shm pool mounted directly for the in-process comparison, the echo child of the
//! socket baseline and the ten view-holding children of the memory-failure row. Every row keeps
//! all of its runs and reports the best (the result column), the median and the worst.
//!
//! Must never: leave a child process, a socket or a pool file behind (the guards below stop the
//! children and delete the files on every path, errors included), or reach below the public
//! library API. No `unsafe`: descriptors reach the children as their standard streams.

use crate::{num, progress, size_text, Plan, Row, Samples, Verdict, BLOCK, MIB};
use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, Notice, PageState};
use ferrodax::memfail::FailureFlags;
use ferrodax::server::daemon::{self, ServeOptions};
use ferrodax::{File, Fs, OpenOptions, Pool};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first argument that makes this binary one of the bench's helper processes.
pub const ROLE: &str = "__ferrodax-bench-role";

/// Target: a cross-process copy-on-write store fault costs at most this multiple of the
/// in-process one.
const CROSS_FAULT_TARGET_RATIO: f64 = 2.0;
/// Target: memory failure of a page viewed by [`MEMFAIL_CLIENTS`] client processes, every view
/// taken out and every early subscriber notified, in at most this many milliseconds.
const MEMFAIL_CLIENTS_TARGET_MS: f64 = 1.0;
/// Client processes holding a view of the failing page.
const MEMFAIL_CLIENTS: usize = 10;
/// Target: 1 MiB loads and stores through a client's view reach this fraction of memcpy.
const VIEW_IO_TARGET_RATIO: f64 = 0.8;
/// Bytes of the socket baseline's message.
const ECHO_BYTES: usize = 64;
/// How long a helper process may take to answer before the row fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

/// Sizes and repetitions of the server rows.
struct ServerPlan {
    /// Samples of every row; best, median and worst are reported.
    runs: usize,
    /// Round trips per sample of the small-operation rows.
    round_trips: usize,
    /// Pages of the shared clone each CoW fault sample stores into (one fault per page).
    cow_pages: u64,
    /// Memory failures timed (each a fresh page), after one untimed.
    failures: usize,
    /// Bytes of the sequential view rows (and their memcpy).
    sequential: u64,
    /// The served pool.
    pool: u64,
    /// The directly mounted pool of the in-process fault.
    direct_pool: u64,
}

impl ServerPlan {
    fn new(plan: &Plan) -> ServerPlan {
        let quick = plan.quick;
        ServerPlan {
            runs: if quick { 5 } else { 7 },
            round_trips: if quick { 400 } else { 1_500 },
            cow_pages: if quick { 256 } else { 1_024 },
            failures: if quick { 10 } else { 30 },
            // Source and destination together well past the last-level cache, even in quick mode.
            sequential: if quick { 128 * MIB } else { 256 * MIB },
            pool: if quick { 256 * MIB } else { 512 * MIB },
            direct_pool: 64 * MIB,
        }
    }
}

/// What the server rows measure.
pub struct ServerSuite {
    plan: ServerPlan,
    /// Microseconds per 64-byte echo between two processes, and between two threads.
    echo_process: Result<Samples, String>,
    echo_thread: Result<Samples, String>,
    /// Microseconds per File::metadata and per 16-byte read_at through the server.
    metadata: Result<Samples, String>,
    read16: Result<Samples, String>,
    /// Microseconds per CoW store fault: direct mount, and through the server.
    fault_direct: Result<Samples, String>,
    fault_server: Result<Samples, String>,
    /// Milliseconds until every client reported its notice, and until memory_failure returned.
    memfail: Result<(Samples, Samples), String>,
    /// GB/s: memcpy, stores through a client's view, loads through it.
    memcpy: Result<Samples, String>,
    view_store: Result<Samples, String>,
    view_load: Result<Samples, String>,
}

// ----- helper processes -----

/// Runs this process as a helper (`ROLE` was its first argument); returns its exit status.
pub fn run_role(args: &[String]) -> i32 {
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", pool, socket] => serve_role(Path::new(pool), Path::new(socket)),
        ["echo"] => echo_role(),
        ["view", socket, path, len] => match len.parse() {
            Ok(len) => view_role(Path::new(socket), path, len),
            Err(e) => Err(format!("bad length {len:?}: {e}")),
        },
        _ => Err(format!("unknown helper role {args:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrodax-bench helper {args:?}: {e}");
            1
        }
    }
}

/// The pool server, until its standard input ends; says "ready" on standard output once clients
/// can connect. Only the server's complaints reach standard error.
fn serve_role(pool: &Path, socket: &Path) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        stopper.store(true, Ordering::Relaxed);
    });
    let log: daemon::Log = Arc::new(|line: &str| {
        if ["killing", "failed", "refused", "cannot", "could not"].iter().any(|w| line.contains(w)) {
            eprintln!("bench: pool server: {line}");
        }
    });
    let mut options = ServeOptions::new(pool);
    options.socket = Some(socket.to_path_buf());
    daemon::serve(&options, stop, log, |_| {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
    })
    .map_err(|e| format!("serve {}: {e}", pool.display()))
}

/// The echo end of the socket baseline: its standard input is a Unix socket; everything read is
/// written back, until the end of the stream.
fn echo_role() -> Result<(), String> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().map_err(|e| format!("stdin: {e}"))?;
    let mut socket = UnixStream::from(fd);
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        socket.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
    }
}

/// A client holding a read-only view of `path`, subscribed early: its standard output is a Unix
/// socket to the bench, on which it writes `R` once the view is mapped and touched, then one `n`
/// per notice; it ends when the bench closes the socket.
fn view_role(socket: &Path, path: &str, len: u64) -> Result<(), String> {
    let fd = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| format!("stdout: {e}"))?;
    let report = Arc::new(UnixStream::from(fd));
    let fs = Fs::connect(socket).map_err(|e| format!("connect: {e}"))?;
    let file = fs.open(path, OpenOptions::new().read(true)).map_err(|e| format!("open {path}: {e}"))?;
    let view = file.map(0, len, MapAccess::Read).map_err(|e| format!("map: {e}"))?;
    let told = report.clone();
    view.subscribe(
        true,
        Arc::new(move |_notice: &Notice| {
            let _ = (&*told).write_all(b"n");
        }),
    );
    let mut byte = [0u8; 1];
    for page in 0..len / BLOCK {
        view.read_at((page * BLOCK) as usize, &mut byte).map_err(|e| format!("load: {e}"))?;
    }
    (&*report).write_all(b"R").map_err(|e| format!("report: {e}"))?;
    // Until the bench closes its end.
    let mut sink = [0u8; 16];
    while matches!((&*report).read(&mut sink), Ok(n) if n > 0) {}
    drop(view);
    drop(file);
    drop(fs);
    Ok(())
}

/// This binary, run as a helper.
fn helper(args: &[&str]) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = Command::new(exe);
    command.arg(ROLE).args(args).stdin(Stdio::null()).stdout(Stdio::null());
    Ok(command)
}

/// A helper process that is ended (its link to the bench closed, then waited for, then killed if it
/// lingers) when this is dropped.
struct Helper {
    child: Child,
    /// Closed first on drop: the helper's signal to stop.
    link: Option<UnixStream>,
    name: String,
}

impl Helper {
    fn stop(&mut self) {
        drop(self.child.stdin.take());
        if let Some(link) = self.link.take() {
            let _ = link.shutdown(std::net::Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        progress(&format!("{} ended with {status}", self.name));
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    progress(&format!("{} did not stop: killing it", self.name));
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Files on /dev/shm removed when this is dropped.
struct ShmFiles(Vec<PathBuf>);

impl Drop for ShmFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A new, fully written (so every tmpfs page exists before anything is timed) pool file of
/// `size` bytes at `path`, formatted.
fn make_pool(path: &Path, size: u64) -> Result<(Pool, Fs), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("create {}: {e}", path.display()))?;
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..size / MIB {
        file.write_all(&zeros).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    drop(file);
    let pool = Pool::open(path).map_err(|e| format!("open pool {}: {e}", path.display()))?;
    let fs = Fs::format(&pool).map_err(|e| format!("mkfs {}: {e}", path.display()))?;
    Ok((pool, fs))
}

/// Starts a pool server process for `pool` on `socket` and waits until it listens.
fn start_server(pool: &Path, socket: &Path) -> Result<Helper, String> {
    let mut command = helper(&["serve", &pool.to_string_lossy(), &socket.to_string_lossy()])?;
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("starting the pool server: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut server = Helper { child, link: None, name: "the bench's pool server".into() };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("pool server: {e}"))?;
    if line.trim() != "ready" {
        server.stop();
        return Err("the pool server did not start (see its message above)".into());
    }
    Ok(server)
}

fn create(fs: &Fs, path: &str) -> Result<File, String> {
    fs.open(path, OpenOptions::new().read(true).write(true).create_new(true))
        .map_err(|e| format!("create {path}: {e}"))
}

/// Writes `len` bytes of `byte` into `file` from offset 0, 1 MiB per write.
fn fill(file: &File, len: u64, byte: u8) -> Result<(), String> {
    let chunk = vec![byte; MIB.min(len) as usize];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(MIB) as usize;
        file.write_at(&chunk[..n], offset).map_err(|e| format!("write at {offset}: {e}"))?;
        offset += n as u64;
    }
    Ok(())
}

// ----- the measurements -----

/// Per-operation microseconds of `n` calls of `op`.
fn per_op_us(n: usize, mut op: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let start = Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// One 64-byte echo through `socket`.
fn echo_once(socket: &mut UnixStream, message: &[u8; ECHO_BYTES]) -> Result<(), String> {
    socket.write_all(message).map_err(|e| format!("echo write: {e}"))?;
    let mut back = [0u8; ECHO_BYTES];
    socket.read_exact(&mut back).map_err(|e| format!("echo read: {e}"))?;
    if back != *message {
        return Err("the echo came back changed".into());
    }
    Ok(())
}

/// The small-operation rows and their socket baselines, interleaved run by run.
#[allow(clippy::type_complexity)]
fn round_trips(
    sp: &ServerPlan,
    fs: &Fs,
) -> (Result<Samples, String>, Result<Samples, String>, Result<Samples, String>, Result<Samples, String>) {
    let message = [0x5au8; ECHO_BYTES];
    // Two processes: this one and an echo child whose standard input is the other end.
    let echo_process = (|| {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut command = helper(&["echo"])?;
        command.stdin(Stdio::from(OwnedFd::from(theirs)));
        let child = command.spawn().map_err(|e| format!("starting the echo process: {e}"))?;
        ours.set_read_timeout(Some(CHILD_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
        let link = ours.try_clone().map_err(|e| format!("socket: {e}"))?;
        Ok::<_, String>((ours, Helper { child, link: Some(link), name: "the echo process".into() }))
    })();
    // Two threads of this process.
    let echo_thread = (|| {
        let (ours, mut theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        ours.set_read_timeout(Some(CHILD_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = theirs.read(&mut buf) {
                if n == 0 || theirs.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        Ok::<_, String>((ours, thread))
    })();
    let file = (|| {
        let file = create(fs, "/small")?;
        fill(&file, BLOCK, 0x11)?;
        Ok::<_, String>(file)
    })();

    let (mut p, mut t, mut m, mut r) =
        (Samples::times(), Samples::times(), Samples::times(), Samples::times());
    let (mut p_err, mut t_err, mut m_err, mut r_err) = (None, None, None, None);
    let n = sp.round_trips;
    let mut echo_process = echo_process;
    let mut echo_thread = echo_thread;
    // One untimed pass of each first (threads started, caches warm), then the timed runs.
    for run in 0..=sp.runs {
        let record = |samples: &mut Samples, err: &mut Option<String>, value: Result<f64, String>| match value
        {
            Ok(v) if run > 0 => samples.values.push(v),
            Ok(_) => {}
            Err(e) => {
                err.get_or_insert(e);
            }
        };
        if p_err.is_none() {
            let v = match &mut echo_process {
                Ok((socket, _)) => per_op_us(n, || echo_once(socket, &message)),
                Err(e) => Err(e.clone()),
            };
            record(&mut p, &mut p_err, v);
        }
        if t_err.is_none() {
            let v = match &mut echo_thread {
                Ok((socket, _)) => per_op_us(n, || echo_once(socket, &message)),
                Err(e) => Err(e.clone()),
            };
            record(&mut t, &mut t_err, v);
        }
        if m_err.is_none() {
            let v = match &file {
                Ok(file) => per_op_us(n, || {
                    let stat = file.metadata().map_err(|e| format!("metadata: {e}"))?;
                    black_box(stat);
                    Ok(())
                }),
                Err(e) => Err(e.clone()),
            };
            record(&mut m, &mut m_err, v);
        }
        if r_err.is_none() {
            let v = match &file {
                Ok(file) => per_op_us(n, || {
                    let mut buf = [0u8; 16];
                    file.read_exact_at(&mut buf, 0).map_err(|e| format!("read_at: {e}"))?;
                    if buf != [0x11; 16] {
                        return Err("read_at returned the wrong bytes".into());
                    }
                    Ok(())
                }),
                Err(e) => Err(e.clone()),
            };
            record(&mut r, &mut r_err, v);
        }
    }
    drop(echo_process);
    if let Ok((socket, thread)) = echo_thread {
        let _ = socket.shutdown(std::net::Shutdown::Both);
        let _ = thread.join();
    }
    if let Ok(file) = file {
        drop(file);
        let _ = fs.remove_file("/small");
    }
    let done = |s: Samples, e: Option<String>| match e {
        Some(e) => Err(e),
        None => Ok(s),
    };
    (done(p, p_err), done(t, t_err), done(m, m_err), done(r, r_err))
}

/// One sample of the CoW fault: clone `base` (`pages` pages), map the clone read-write, then one
/// plain store per page, each of which faults and copies; microseconds per fault.
fn cow_fault_once(fs: &Fs, base: &File, pages: u64, run: usize, tag: &str) -> Result<f64, String> {
    let name = format!("/{tag}-clone-{run}");
    let len = pages * BLOCK;
    let clone = create(fs, &name)?;
    fs.reflink(base, 0, &clone, 0, len).map_err(|e| format!("reflink: {e}"))?;
    let view = clone.map(0, len, MapAccess::ReadWrite).map_err(|e| format!("map: {e}"))?;
    if !matches!(view.page_state(0), PageState::Block { prot: PageProtection::ReadOnly, .. }) {
        return Err(format!("the clone's first page is {:?}, not shared read-only", view.page_state(0)));
    }
    let stored = [0x3cu8];
    let start = Instant::now();
    for page in 0..pages {
        view.store_plain((page * BLOCK) as usize, &stored).map_err(|e| format!("store: {e}"))?;
    }
    let time = start.elapsed();
    let last = view.page_state(pages - 1);
    if !matches!(last, PageState::Block { prot: PageProtection::ReadWrite, .. }) {
        return Err(format!("after its store the clone's last page is {last:?}"));
    }
    drop(view);
    let mut check = [0u8; 1];
    clone.read_exact_at(&mut check, len - BLOCK).map_err(|e| format!("read: {e}"))?;
    if check != stored {
        return Err("the clone does not show the store".into());
    }
    base.read_exact_at(&mut check, len - BLOCK).map_err(|e| format!("read: {e}"))?;
    if check == stored {
        return Err("the store reached the shared source".into());
    }
    drop(clone);
    fs.remove_file(&name).map_err(|e| format!("remove {name}: {e}"))?;
    Ok(time.as_secs_f64() * 1e6 / pages as f64)
}

/// The in-process and the cross-process CoW faults, interleaved run by run.
fn cow_faults(
    sp: &ServerPlan,
    direct: &Fs,
    served: &Fs,
) -> (Result<Samples, String>, Result<Samples, String>) {
    let len = sp.cow_pages * BLOCK;
    let bases = (|| {
        let d = create(direct, "/fault-base")?;
        fill(&d, len, 0xa5)?;
        let s = create(served, "/fault-base")?;
        fill(&s, len, 0xa5)?;
        Ok::<_, String>((d, s))
    })();
    let (d_base, s_base) = match bases {
        Ok(b) => b,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let (mut d, mut s) = (Samples::times(), Samples::times());
    let (mut d_err, mut s_err) = (None, None);
    for run in 0..sp.runs {
        if d_err.is_none() {
            match cow_fault_once(direct, &d_base, sp.cow_pages, run, "fault") {
                Ok(v) => d.values.push(v),
                Err(e) => d_err = Some(e),
            }
        }
        if s_err.is_none() {
            match cow_fault_once(served, &s_base, sp.cow_pages, run, "fault") {
                Ok(v) => s.values.push(v),
                Err(e) => s_err = Some(e),
            }
        }
    }
    drop((d_base, s_base));
    let _ = direct.remove_file("/fault-base");
    let _ = served.remove_file("/fault-base");
    (d_err.map_or(Ok(d), Err), s_err.map_or(Ok(s), Err))
}

/// memcpy of `sp.sequential` bytes in 1 MiB chunks, and 1 MiB stores and loads through a client's
/// read-write view of a private file of that size, interleaved run by run; GB/s each.
fn view_io(
    sp: &ServerPlan,
    fs: &Fs,
) -> (Result<Samples, String>, Result<Samples, String>, Result<Samples, String>) {
    let len = sp.sequential as usize;
    let chunk = MIB as usize;
    let mut source = vec![0u8; len];
    for (i, c) in source.chunks_mut(chunk).enumerate() {
        c.fill(i as u8 ^ 0x77);
    }
    let mut dest = vec![1u8; len]; // written, so its pages exist before timing
    let mut memcpy = Samples::rates();
    let copy_all = |dest: &mut [u8]| {
        let start = Instant::now();
        for (d, s) in dest.chunks_mut(chunk).zip(source.chunks(chunk)) {
            d.copy_from_slice(black_box(s));
        }
        black_box(&mut *dest);
        start.elapsed()
    };
    let views = (|| {
        let file = create(fs, "/sequential")?;
        fill(&file, sp.sequential, 0x42)?;
        let view = file.map(0, sp.sequential, MapAccess::ReadWrite).map_err(|e| format!("map: {e}"))?;
        Ok::<_, String>((file, view))
    })();
    let (file, view) = match views {
        Ok(v) => v,
        Err(e) => {
            for _ in 0..sp.runs {
                memcpy.values.push(gb(len, copy_all(&mut dest)));
            }
            return (Ok(memcpy), Err(e.clone()), Err(e));
        }
    };
    let store_all = |view: &ferrodax::api::Mapping| -> Result<Duration, String> {
        let start = Instant::now();
        for (i, s) in source.chunks(chunk).enumerate() {
            view.store_plain(i * chunk, black_box(s)).map_err(|e| format!("store: {e}"))?;
        }
        Ok(start.elapsed())
    };
    let load_all = |view: &ferrodax::api::Mapping, dest: &mut [u8]| -> Result<Duration, String> {
        let start = Instant::now();
        for (i, d) in dest.chunks_mut(chunk).enumerate() {
            view.read_at(i * chunk, d).map_err(|e| format!("load: {e}"))?;
        }
        black_box(&mut *dest);
        Ok(start.elapsed())
    };
    let (mut stores, mut loads) = (Samples::rates(), Samples::rates());
    let measured = (|| {
        // Untimed first passes: every page-table entry of the view exists before timing, as the
        // memcpy destination's pages do.
        store_all(&view)?;
        load_all(&view, &mut dest)?;
        for _ in 0..sp.runs {
            memcpy.values.push(gb(len, copy_all(&mut dest)));
            stores.values.push(gb(len, store_all(&view)?));
            loads.values.push(gb(len, load_all(&view, &mut dest)?));
        }
        if dest != source {
            return Err("loads through the view do not return what was stored".into());
        }
        drop(view);
        let mut check = vec![0u8; chunk];
        file.read_exact_at(&mut check, (len - chunk) as u64).map_err(|e| format!("read: {e}"))?;
        if check[..] != source[len - chunk..] {
            return Err("read_at does not show the bytes stored through the view".into());
        }
        Ok::<(), String>(())
    })();
    drop(file);
    let _ = fs.remove_file("/sequential");
    match measured {
        Ok(()) => (Ok(memcpy), Ok(stores), Ok(loads)),
        Err(e) if memcpy.values.is_empty() => (Err(e.clone()), Err(e.clone()), Err(e)),
        Err(e) => (Ok(memcpy), Err(e.clone()), Err(e)),
    }
}

fn gb(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

/// Reads one byte from `link` (a helper's report), failing after CHILD_TIMEOUT.
fn read_report(link: &mut UnixStream, what: &str) -> Result<u8, String> {
    let mut byte = [0u8; 1];
    link.read_exact(&mut byte).map_err(|e| format!("waiting for {what}: {e}"))?;
    Ok(byte[0])
}

/// Memory failure of a page viewed by MEMFAIL_CLIENTS client processes: per failure, the
/// milliseconds until every client reported its notice, and until memory_failure returned.
fn memfail_clients(sp: &ServerPlan, fs: &Fs, socket: &Path) -> Result<(Samples, Samples), String> {
    let blocks = sp.failures as u64 + 1;
    let len = blocks * BLOCK;
    let file = create(fs, "/failing")?;
    for b in 0..blocks {
        file.write_at(&[b as u8 + 1; BLOCK as usize], b * BLOCK).map_err(|e| format!("write: {e}"))?;
    }
    let mut phys = Vec::new();
    for e in fs.fiemap(&file).map_err(|e| format!("fiemap: {e}"))? {
        phys.extend((0..e.length / BLOCK).map(|b| e.physical / BLOCK + b));
    }
    if phys.len() as u64 != blocks {
        return Err(format!("fiemap shows {} blocks of {blocks}", phys.len()));
    }
    let mut clients = Vec::new();
    for i in 0..MEMFAIL_CLIENTS {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let mut command = helper(&["view", &socket.to_string_lossy(), "/failing", &len.to_string()])?;
        command.stdout(Stdio::from(OwnedFd::from(theirs)));
        let child = command.spawn().map_err(|e| format!("starting view client {i}: {e}"))?;
        ours.set_read_timeout(Some(CHILD_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
        let link = ours.try_clone().map_err(|e| format!("socket: {e}"))?;
        clients.push((ours, Helper { child, link: Some(link), name: format!("view client {i}") }));
    }
    for (i, (link, _)) in clients.iter_mut().enumerate() {
        match read_report(link, &format!("view client {i} to map its view"))? {
            b'R' => {}
            other => return Err(format!("view client {i} said {other:?} instead of ready")),
        }
    }
    let (mut all, mut returned) = (Samples::times(), Samples::times());
    for (i, &block) in phys.iter().enumerate() {
        let start = Instant::now();
        let report = fs
            .memory_failure(block * BLOCK, BLOCK, FailureFlags::default())
            .map_err(|e| format!("memory_failure: {e}"))?;
        let back = start.elapsed();
        for (c, (link, _)) in clients.iter_mut().enumerate() {
            match read_report(link, &format!("the notice of view client {c}"))? {
                b'n' => {}
                other => return Err(format!("view client {c} said {other:?} instead of a notice")),
            }
        }
        let told = start.elapsed();
        if report.views.len() != MEMFAIL_CLIENTS || report.files.len() != 1 {
            return Err(format!(
                "memory failure of block {block}: {} owners and {} view pages, 1 and {MEMFAIL_CLIENTS} expected",
                report.files.len(),
                report.views.len()
            ));
        }
        if i > 0 {
            // The first failure is untimed: the paths it takes for the first time are warm after.
            all.values.push(told.as_secs_f64() * 1e3);
            returned.values.push(back.as_secs_f64() * 1e3);
        }
    }
    drop(clients);
    drop(file);
    let _ = fs.remove_file("/failing");
    Ok((all, returned))
}

/// Runs every server measurement: a served pool and a direct pool on /dev/shm, a server process.
pub fn server_suite(plan: &Plan) -> ServerSuite {
    let sp = ServerPlan::new(plan);
    let failed = |sp: ServerPlan, e: String| ServerSuite {
        plan: sp,
        echo_process: Err(e.clone()),
        echo_thread: Err(e.clone()),
        metadata: Err(e.clone()),
        read16: Err(e.clone()),
        fault_direct: Err(e.clone()),
        fault_server: Err(e.clone()),
        memfail: Err(e.clone()),
        memcpy: Err(e.clone()),
        view_store: Err(e.clone()),
        view_load: Err(e),
    };
    let stem = format!("/dev/shm/ferrodax-bench-{}", std::process::id());
    let served_path = PathBuf::from(format!("{stem}-served.pool"));
    let direct_path = PathBuf::from(format!("{stem}-direct.pool"));
    let socket = PathBuf::from(format!("{stem}.sock"));
    let _files = ShmFiles(vec![served_path.clone(), direct_path.clone(), socket.clone()]);

    progress(&format!(
        "pool server: pools on /dev/shm ({} served, {} direct), server in a child process",
        size_text(sp.pool),
        size_text(sp.direct_pool)
    ));
    if let Err(e) = make_pool(&served_path, sp.pool) {
        return failed(sp, e);
    }
    let direct = match make_pool(&direct_path, sp.direct_pool) {
        Ok((_pool, fs)) => fs,
        Err(e) => return failed(sp, e),
    };
    let server = match start_server(&served_path, &socket) {
        Ok(s) => s,
        Err(e) => return failed(sp, e),
    };
    let fs = match Fs::connect(&socket) {
        Ok(fs) => fs,
        Err(e) => return failed(sp, format!("connect to {}: {e}", socket.display())),
    };

    progress(&format!(
        "pool server: small operations vs a bare {ECHO_BYTES}-byte socket echo, {} x {} round trips",
        sp.runs, sp.round_trips
    ));
    let (echo_process, echo_thread, metadata, read16) = round_trips(&sp, &fs);
    progress(&format!(
        "pool server: CoW store faults, direct mount vs through the server, {} x {} pages",
        sp.runs, sp.cow_pages
    ));
    let (fault_direct, fault_server) = cow_faults(&sp, &direct, &fs);
    drop(direct);
    progress(&format!(
        "pool server: 1 MiB loads/stores through a client's view vs memcpy, {} x {}",
        sp.runs,
        size_text(sp.sequential)
    ));
    let (memcpy, view_store, view_load) = view_io(&sp, &fs);
    progress(&format!(
        "pool server: memory failure of a page viewed by {MEMFAIL_CLIENTS} client processes, {} fresh pages",
        sp.failures
    ));
    let memfail = memfail_clients(&sp, &fs, &socket);
    drop(fs);
    drop(server);
    ServerSuite {
        plan: sp,
        echo_process,
        echo_thread,
        metadata,
        read16,
        fault_direct,
        fault_server,
        memfail,
        memcpy,
        view_store,
        view_load,
    }
}

// ----- the rows -----

fn measured(r: Row, samples: &Samples) -> Row {
    r.measured(samples)
}

pub fn server_rows(s: &ServerSuite) -> Vec<Row> {
    let sp = &s.plan;
    let mut rows = Vec::new();

    let echo_text = match (&s.echo_process, &s.echo_thread) {
        (Ok(p), Ok(t)) => {
            format!("socket echo: {} us (threads: {} us)", num(p.best()), num(t.best()))
        }
        (Ok(p), Err(_)) => format!("socket echo: {} us", num(p.best())),
        _ => "-".into(),
    };
    for (what, result) in [("two processes", &s.echo_process), ("two threads of one process", &s.echo_thread)]
    {
        let r = Row::new(format!("bare Unix-socket round trip, {ECHO_BYTES}-byte echo, {what}"), "us/op");
        rows.push(match result {
            Ok(samples) => {
                let mut r = measured(r, samples);
                r.comparison = "machine baseline".into();
                r
            }
            Err(e) => r.failed(e),
        });
    }
    for (what, result) in [("File::metadata (fstat)", &s.metadata), ("16-byte File::read_at", &s.read16)] {
        let r = Row::new(
            format!("small op through the pool server: {what}, client and server processes"),
            "us/op",
        );
        rows.push(match result {
            Ok(samples) => {
                let mut r = measured(r, samples);
                r.comparison = echo_text.clone();
                if let Ok(p) = &s.echo_process {
                    r.baseline = Some(p.best());
                    r.ratio = Some(samples.best() / p.best());
                }
                r
            }
            Err(e) => r.failed(e),
        });
    }

    let clone = size_text(sp.cow_pages * BLOCK);
    let r = Row::new(
        format!("CoW store fault, direct mount (in-process), shared {clone} clone on /dev/shm"),
        "us/page",
    );
    rows.push(match &s.fault_direct {
        Ok(samples) => measured(r, samples),
        Err(e) => r.failed(e),
    });
    let mut r = Row::new(
        format!("CoW store fault through the pool server (MakePrivate + recall), shared {clone} clone"),
        "us/page",
    );
    r.target = format!("<= {CROSS_FAULT_TARGET_RATIO}x in-process");
    rows.push(match &s.fault_server {
        Ok(samples) => {
            let mut r = measured(r, samples);
            if let Ok(d) = &s.fault_direct {
                let ratio = samples.best() / d.best();
                r.comparison = format!("in-process {} us", num(d.best()));
                if let Ok(m) = &s.metadata {
                    // A fault is a request and a recall: about two server round trips.
                    r.comparison += &format!("; one server round trip (fstat) {} us", num(m.best()));
                }
                r.baseline = Some(d.best());
                r.ratio = Some(ratio);
                r.verdict = if ratio <= CROSS_FAULT_TARGET_RATIO { Verdict::Pass } else { Verdict::Miss };
            }
            r
        }
        Err(e) => r.failed(e),
    });

    let mut r = Row::new(
        format!(
            "memory failure of a page viewed by {MEMFAIL_CLIENTS} client processes (early subscribers), \
             until all views out and all notified"
        ),
        "ms",
    );
    r.target = format!("<= {MEMFAIL_CLIENTS_TARGET_MS} ms");
    rows.push(match &s.memfail {
        Ok((all, returned)) => {
            let mut r = measured(r, all);
            let back = returned.spread();
            r.comparison = format!(
                "memory_failure returned after {} ms (median {}); {} fresh pages",
                num(back.best),
                num(back.median),
                all.values.len()
            );
            r.verdict = if all.best() <= MEMFAIL_CLIENTS_TARGET_MS { Verdict::Pass } else { Verdict::Miss };
            r
        }
        Err(e) => r.failed(e),
    });

    let size = size_text(sp.sequential);
    let r = Row::new(format!("memcpy, {size} in 1 MiB chunks (same run as the view rows)"), "GB/s");
    rows.push(match &s.memcpy {
        Ok(samples) => {
            let mut r = measured(r, samples);
            r.comparison = "machine baseline".into();
            r
        }
        Err(e) => r.failed(e),
    });
    for (what, result) in [("stores", &s.view_store), ("loads", &s.view_load)] {
        let mut r = Row::new(
            format!("1 MiB sequential {what} through a client's view (connected Fs), {size} private file"),
            "GB/s",
        );
        r.target = format!(">= {VIEW_IO_TARGET_RATIO}x memcpy");
        rows.push(match result {
            Ok(samples) => {
                let mut r = measured(r, samples);
                if let Ok(m) = &s.memcpy {
                    let ratio = samples.best() / m.best();
                    r.comparison = format!("memcpy {} GB/s", num(m.best()));
                    r.baseline = Some(m.best());
                    r.ratio = Some(ratio);
                    r.verdict = if ratio >= VIEW_IO_TARGET_RATIO { Verdict::Pass } else { Verdict::Miss };
                }
                r
            }
            Err(e) => r.failed(e),
        });
    }
    rows
}

/// The table's note about these rows.
pub fn server_note(s: &ServerSuite) -> String {
    format!(
        "pool-server rows: a pool file on /dev/shm served by a child process (daemon::serve), this process a client; \
         each row is {} runs side by side with its baseline: result = best, then median / worst; ratios compare bests",
        s.plan.runs
    )
}
