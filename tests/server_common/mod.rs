//! Shared harness of the pool-server tests: a pool file in a temporary directory, a `ferrodax
//! serve` child that is always killed and awaited (a guard), child processes that re-run the test
//! binary in a role (`--exact NAME`) and talk to the test over their standard input and output,
//! and an application SIGBUS handler that reports si_code, si_addr and si_addr_lsb on standard
//! output before `_exit(42)`. A child is stopped with [`Kid::stop`], which returns only once the
//! stop has taken effect in every thread (kill(2) returns before); a child can hold its main
//! thread ([`stall_main_thread`]) so that a stop sent to it stays pending as long as a test wants.
//!
//! Protocol with a child: the child prints lines `@@ KEY FIELDS...` (anything else on its output
//! is the test harness's and ignored); the parent sends it one line per command on its standard
//! input. Every wait has a generous deadline only so that a hang fails instead of blocking CI; no
//! assertion depends on how long anything took.

#![allow(dead_code)]

use ferrodax::{Fs, OpenOptions, Pool};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const PAGE: u64 = 4096;
/// The environment variable that selects a child's role.
pub const ROLE: &str = "FERRODAX_SERVER_TEST_ROLE";
/// How long any single wait may take before the test counts as hung.
pub const HANG: Duration = Duration::from_secs(60);

pub fn ferrodax() -> &'static str {
    env!("CARGO_BIN_EXE_ferrodax")
}

pub fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

pub fn ro() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true);
    o
}

/// A deterministic generator (splitmix64).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `len` bytes of noise from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..len).map(|_| r.next() as u8).collect()
}

/// FNV-1a, printed by children instead of whole pages.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A pool file in a temporary directory, made by `ferrodax mkfs` (no lock held).
///
/// Made by another process on purpose: a pool opened in this (multi-threaded) test process
/// leaves its descriptor, hence its lock, in any child that another test thread forks at that
/// moment, until that child execs; a server started right after could find the pool busy.
pub struct TestPool {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestPool {
    pub fn new(size: u64) -> TestPool {
        // On tmpfs where there is one: every commit msyncs the pool file, which on a shared disk
        // costs milliseconds and makes the tests' run time depend on other people's I/O.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let path = dir.path().join("p.pool");
        let (status, stdout, stderr) =
            run_cli(&["mkfs", path.to_str().unwrap(), "--size", &size.to_string()]);
        assert!(status.success(), "ferrodax mkfs: {stdout}{stderr}");
        TestPool { dir, path }
    }

    pub fn socket(&self) -> PathBuf {
        ferrodax::server::default_socket(&self.path)
    }

    /// A direct read-write mount (only while no server runs; see [`TestPool`] for why nothing
    /// should need the pool's lock right after it is dropped).
    pub fn mount(&self) -> Fs {
        Fs::mount(&Pool::open(&self.path).unwrap()).unwrap()
    }
}

/// A running `ferrodax serve POOL`; killed (SIGKILL) and awaited when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and waits until its socket accepts connections.
    pub fn start(pool: &TestPool) -> Server {
        Self::start_with(pool, &[])
    }

    pub fn start_with(pool: &TestPool, extra: &[&str]) -> Server {
        let n = std::fs::read_dir(pool.dir.path()).unwrap().count();
        let log = pool.dir.path().join(format!("serve-{n}.log"));
        let child = Command::new(ferrodax())
            .arg("serve")
            .arg(&pool.path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child: Some(child), socket: pool.socket(), log };
        let deadline = Instant::now() + HANG;
        loop {
            if UnixStream::connect(&server.socket).is_ok() {
                break;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ferrodax serve exited with {status} before listening:\n{}", server.log_text());
            }
            assert!(Instant::now() < deadline, "ferrodax serve never listened:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn connect(&self) -> Fs {
        Fs::connect(&self.socket).unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log_text()))
    }

    /// SIGTERM: a clean shutdown (final checkpoint, socket removed); asserts exit status 0.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) of our own child, which we have not awaited yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_deadline(&mut child, "ferrodax serve after SIGTERM");
        assert!(status.success(), "ferrodax serve exited with {status}:\n{}", self.log_text());
        assert!(!self.socket.exists(), "the socket is removed at a clean shutdown");
    }

    /// SIGKILL, awaited.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- ferrodax serve's log ---\n{}", self.log_text());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` with the hang deadline (then kills it and panics).
pub fn wait_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `ferrodax ARGS`; returns (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(ferrodax()).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process running the test binary in a role.
pub struct Kid {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Kid {
    /// Re-runs test `test` with `ROLE=role` and `env`; its stderr goes to a file in `dir`.
    pub fn spawn(dir: &Path, test: &str, role: &str, env: &[(&str, String)]) -> Kid {
        Self::spawn_as(dir, test, role, env, None)
    }

    /// [`Kid::spawn`], running as user and group `ids` when given (the test must be root).
    pub fn spawn_as(
        dir: &Path,
        test: &str,
        role: &str,
        env: &[(&str, String)],
        ids: Option<(u32, u32)>,
    ) -> Kid {
        use std::os::unix::process::CommandExt;
        let n = std::fs::read_dir(dir).unwrap().count();
        let stderr = dir.join(format!("kid-{role}-{n}.err"));
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some((uid, gid)) = ids {
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .args(["--exact", test, "--include-ignored", "--test-threads=1", "--nocapture"])
            .env(ROLE, role)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        Kid { name: role.to_string(), stdin: child.stdin.take(), child, lines: rx, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next `@@` line; panics (with the child's stderr) when the child ends first.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(HANG) {
            Ok(line) => line,
            Err(e) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "child {} said nothing more ({e:?}, status {status:?}):\n{}",
                    self.name,
                    self.stderr_text()
                )
            }
        }
    }

    /// The next line, which must start with `key`; returns its fields after the key.
    pub fn expect(&mut self, key: &str) -> Vec<String> {
        let line = self.next_line();
        let mut words = line.split_whitespace().map(str::to_string);
        let got = words.next().unwrap_or_default();
        assert_eq!(got, key, "child {}: expected `{key}`, got `{line}`:\n{}", self.name, self.stderr_text());
        words.collect()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes its standard input and waits for it.
    pub fn wait(&mut self) -> ExitStatus {
        self.stdin.take();
        let name = self.name.clone();
        wait_deadline(&mut self.child, &format!("child {name}"))
    }

    /// Waits, and asserts the child exited with `code`.
    pub fn wait_code(&mut self, code: i32) {
        let status = self.wait();
        assert_eq!(
            status.code(),
            Some(code),
            "child {} exited with {status}:\n{}",
            self.name,
            self.stderr_text()
        );
    }

    /// The remaining `@@` lines after the child exited.
    pub fn rest(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(HANG) {
            out.push(line);
        }
        out
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGSTOP and returns once every thread of the child has stopped. kill(2) only makes
    /// the stop pending: the kernel wakes one thread (the main one) to start the group stop, and
    /// until that thread runs the others go on — under load for milliseconds, long enough for
    /// the child's client reader to answer a recall. waitpid(WUNTRACED) reports the stop only
    /// once the whole group has stopped.
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.await_stopped();
    }

    /// Sends `signal` to the child (process-directed, as kill(1) does).
    pub fn signal(&mut self, signal: libc::c_int) {
        // SAFETY: kill(2) of our own child, which we have not awaited yet.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}): {}", self.pid(), std::io::Error::last_os_error());
    }

    /// Waits until a stop of the child has taken effect in all its threads.
    pub fn await_stopped(&mut self) {
        let deadline = Instant::now() + HANG;
        while !self.stopped_now() {
            assert!(Instant::now() < deadline, "child {} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// True once a stop of the child has taken effect in all its threads (each stop is reported
    /// once); panics if the child ended instead.
    pub fn stopped_now(&mut self) -> bool {
        let pid = self.pid() as libc::pid_t;
        let mut status = 0;
        // SAFETY: waitpid on our own child; with WUNTRACED | WNOHANG it reaps the child only if
        // it ended, which fails the test below.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::WNOHANG) };
        match rc {
            0 => false,
            _ if rc == pid && libc::WIFSTOPPED(status) => true,
            _ => panic!(
                "child {} ended instead of stopping (waitpid {rc}, status {status:#x}):\n{}",
                self.name,
                self.stderr_text()
            ),
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- child {} (pid {}) stderr ---\n{}", self.name, self.child.id(), self.stderr_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the child side -----

/// This process's role, when it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

pub fn env_str(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} missing"))
}

pub fn env_u64(key: &str) -> u64 {
    env_str(key).parse().unwrap()
}

/// Prints `@@ KEY FIELDS` and flushes.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n@@ {line}").unwrap();
    out.flush().unwrap();
}

/// The next command line from the parent ("" at end of input).
pub fn hear() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim().to_string()
}

/// Reads all of standard input (the parent closes it to say "stop").
pub fn drain_stdin() {
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

/// Writes `n` in decimal into `buf` at `at`; returns the new position (async-signal-safe).
fn put_num(buf: &mut [u8], mut at: usize, n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut n = n;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while len > 0 {
        len -= 1;
        buf[at] = digits[len];
        at += 1;
    }
    at
}

/// The application's SIGBUS handler: prints `@@ sigbus SIGNO CODE ADDR LSB` and `_exit(42)`.
extern "C" fn record_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: a siginfo from the kernel or from rt_tgsigqueueinfo.
    let info = unsafe { &*info };
    // SAFETY: reading the fault address of a SIGBUS/SIGSEGV siginfo.
    let addr = unsafe { info.si_addr() } as usize;
    let lsb = ferrodax::dax::mce::addr_lsb(info);
    let mut buf = [0u8; 128];
    let mut at = 0;
    for &b in b"\n@@ signal " {
        buf[at] = b;
        at += 1;
    }
    for (i, n) in [sig as u64, info.si_code as u64, addr as u64, lsb as u64].into_iter().enumerate() {
        if i > 0 {
            buf[at] = b' ';
            at += 1;
        }
        at = put_num(&mut buf, at, n);
    }
    buf[at] = b'\n';
    at += 1;
    // SAFETY: write(2) and _exit(2) are async-signal-safe; buf is ours.
    unsafe {
        libc::write(1, buf.as_ptr().cast(), at);
        libc::_exit(42);
    }
}

/// Installs [`record_signal`] for SIGBUS (before ferrodax installs its own, which passes
/// machine-check signals and past-EOF faults on to it).
pub fn install_sigbus_recorder() {
    install_recorder(libc::SIGBUS);
}

/// Installs [`record_signal`] for `signal` (SIGBUS or SIGSEGV).
pub fn install_recorder(signal: libc::c_int) {
    // SAFETY: installing a plain SA_SIGINFO handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = record_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// A signal a child reported: (signo, si_code, si_addr, si_addr_lsb).
pub fn parse_signal(fields: &[String]) -> (i32, i32, usize, i16) {
    (
        fields[0].parse().unwrap(),
        fields[1].parse::<u64>().unwrap() as i32,
        fields[2].parse().unwrap(),
        fields[3].parse::<u64>().unwrap() as i16,
    )
}

/// The pipes and the stack of [`stall_main_thread`]: release (read, write), stalled (read, write),
/// and the top of the stack its helper process runs on.
static STALL_FDS: [std::sync::atomic::AtomicI32; 4] = [const { std::sync::atomic::AtomicI32::new(-1) }; 4];
static STALL_STACK_TOP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Holds this process's main thread in the kernel, in a sleep only a fatal signal ends, until
/// [`release_main_thread`]; returns once it is held. A process-directed SIGSTOP sent meanwhile
/// wakes only the main thread (the kernel's pick when it sleeps) and so stays pending: the other
/// threads run on until the main thread is released and starts the group stop. This makes the
/// window between kill(SIGSTOP) and the stop taking effect as wide as a test wants.
///
/// How: a SIGUSR1 handler on the main thread starts a helper process with
/// clone(CLONE_VM | CLONE_VFORK), so the main thread waits (killable only) until the helper
/// exits; the helper says it runs on a pipe, then waits on another for the release.
pub fn stall_main_thread() {
    use std::sync::atomic::Ordering;
    let (mut release, mut stalled) = ([-1; 2], [-1; 2]);
    // SAFETY: pipe2 into two arrays of two descriptors each.
    unsafe {
        assert_eq!(libc::pipe2(release.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(stalled.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    for (slot, fd) in STALL_FDS.iter().zip([release[0], release[1], stalled[0], stalled[1]]) {
        slot.store(fd, Ordering::SeqCst);
    }
    let stack: &'static mut [u8] = Box::leak(vec![0u8; 256 << 10].into_boxed_slice());
    STALL_STACK_TOP.store((stack.as_mut_ptr() as usize + stack.len()) & !15, Ordering::SeqCst);
    // SAFETY: installing a plain handler for SIGUSR1, then sending it to the main thread (its
    // thread id is the process id).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = hold_main_thread as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        let pid = libc::getpid();
        assert_eq!(libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1), 0);
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(stalled[0], (&mut byte as *mut u8).cast(), 1) };
    assert_eq!(n, 1, "the main thread's helper did not start");
}

/// Lets the main thread held by [`stall_main_thread`] go on.
pub fn release_main_thread() {
    let fd = STALL_FDS[1].load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: writing one byte from a static.
    let n = unsafe { libc::write(fd, b"r".as_ptr().cast(), 1) };
    assert_eq!(n, 1, "release: {}", std::io::Error::last_os_error());
}

/// The SIGUSR1 handler of [`stall_main_thread`], on the main thread: runs the helper sharing this
/// memory and waits for it (async-signal-safe calls only: clone, waitpid).
extern "C" fn hold_main_thread(_signal: libc::c_int) {
    let top = STALL_STACK_TOP.load(std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the helper runs on its own stack (leaked, never freed) and only makes raw
    // read/write/close calls; CLONE_VFORK keeps this thread in the kernel until it exits.
    unsafe {
        let helper = libc::clone(
            stalled_helper,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK,
            std::ptr::null_mut(),
        );
        if helper > 0 {
            libc::waitpid(helper, std::ptr::null_mut(), libc::__WALL);
        }
    }
}

/// The helper process of [`stall_main_thread`]: says it runs, then waits for the release (or for
/// the end of the pipe, when the process it serves dies).
extern "C" fn stalled_helper(_arg: *mut libc::c_void) -> libc::c_int {
    use std::sync::atomic::Ordering;
    let fd = |i: usize| STALL_FDS[i].load(Ordering::SeqCst);
    let mut byte = 0u8;
    // SAFETY: raw calls on this process's copies of the pipes' descriptors.
    unsafe {
        libc::close(fd(1));
        libc::write(fd(3), b"s".as_ptr().cast(), 1);
        libc::read(fd(0), (&mut byte as *mut u8).cast(), 1);
    }
    0
}

/// A volatile load of one byte through a view (may raise SIGBUS).
pub fn touch(addr: usize) -> u8 {
    // SAFETY: a load through a live view; a page that may not be accessed raises a signal, which
    // the recorder handles.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// Pool byte offset of file page `page`, from FIEMAP.
pub fn phys_of(fs: &Fs, file: &ferrodax::File, page: u64) -> u64 {
    let off = page * PAGE;
    for e in fs.fiemap(file).unwrap() {
        if off >= e.logical && off < e.logical + e.length {
            return e.physical + (off - e.logical);
        }
    }
    panic!("page {page} is a hole");
}

/// The whole contents of `path` through `fs`.
pub fn read_all(fs: &Fs, path: &str) -> Vec<u8> {
    let f = fs.open(path, &ro()).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let size = f.metadata().unwrap().size as usize;
    let mut buf = vec![0u8; size];
    f.read_exact_at(&mut buf, 0).unwrap_or_else(|e| panic!("read {path}: {e}"));
    buf
}

/// Asserts a clean fsck.
pub fn assert_clean(fs: &Fs, when: &str) {
    let report = fs.check();
    assert!(report.is_clean(), "fsck after {when}:\n{report}");
}
