//! Real media errors in a real kernel: the kernel lab's scenarios (`scripts/lab-tests` runs them
//! inside `../shared/kernel-lab/run`, once with `--pmem fsdax` and once with `--pmem devdax`).
//!
//! Every test is `#[ignore]`d on the host and, when run with `--ignored` outside the lab (no
//! `KLAB_PMEM`), skips with a loud message. Each prints one line
//! `LAB-RESULT|<scenario>|<PASS or FAIL or LIMIT>|<what happened>` that the script turns into its
//! table (docs/REAL-HARDWARE.md). The poison is made the way hardware reports it
//! (`ferrodax::memfail::hardware::inject`: the page's sectors in the pmem badblocks list, then
//! MADV_HWPOISON so the kernel runs memory_failure), and what finds it first runs in a process of
//! its own (the `ferrodax` CLI), so a process killed by SIGBUS is an outcome, not a lost test run.
//!
//! The scenarios need the `ferrodax` binary: `FERRODAX_BIN`, or `ferrodax` on PATH (the lab puts
//! copied files in /lab, which is on PATH).

use ferrodax::memfail::hardware;
use ferrodax::{Fs, OpenOptions, Pool};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;
/// The file every scenario poisons: 4 blocks, page 1 is the victim.
const FILE_LEN: u64 = 4 * BLOCK;
/// File offset of the poisoned page.
const VICTIM: u64 = BLOCK;

/// Where the lab's pmem is, or `None` (after saying so loudly) outside the lab.
fn lab(test: &str) -> Option<String> {
    match std::env::var("KLAB_PMEM") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: not inside the kernel lab (KLAB_PMEM is unset). These scenarios \
                 need a real DAX device and root: run scripts/lab-tests. ***\n"
            );
            None
        }
    }
}

fn is_devdax(pmem: &str) -> bool {
    pmem.starts_with("/dev/dax")
}

fn ferrodax_bin() -> PathBuf {
    std::env::var_os("FERRODAX_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("ferrodax"))
}

/// Prints the scenario's result line and fails the test unless it passed (LIMIT counts as
/// passed: the kernel, not ferrodax, is what cannot report the error there).
fn result(scenario: &str, verdict: &str, detail: &str) {
    let detail = detail.replace(['\n', '|'], " ");
    println!("\nLAB-RESULT|{scenario}|{verdict}|{detail}");
    assert!(verdict != "FAIL", "{scenario}: {detail}");
}

/// How a process ended, and what it printed.
struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    out: String,
}

impl Ended {
    fn killed_by_sigbus(&self) -> bool {
        self.signal == Some(libc::SIGBUS)
    }
    fn eio(&self) -> bool {
        self.code == Some(1) && self.out.contains("Input/output error")
    }
    fn describe(&self) -> String {
        let how = match (self.code, self.signal) {
            (_, Some(libc::SIGBUS)) => "killed by SIGBUS".to_string(),
            (_, Some(s)) => format!("killed by signal {s}"),
            (Some(c), None) => format!("exit {c}"),
            _ => "?".into(),
        };
        let out: String = self.out.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("; ");
        let out: String = out.chars().take(300).collect();
        format!("{how}: {out}")
    }
}

fn ended(status: std::process::ExitStatus, out: String) -> Ended {
    Ended { code: status.code(), signal: status.signal(), out }
}

/// Runs `program args` to the end.
fn run(program: &Path, args: &[&str]) -> Ended {
    let out = Command::new(program).args(args).output().expect("run the program");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ended(out.status, text)
}

fn ferrodax(args: &[&str]) -> Ended {
    run(&ferrodax_bin(), args)
}

/// Starts `program args`, waits until its standard output shows a line containing `ready`, then
/// runs `meanwhile` and waits for the program's end.
fn run_with_window(program: &Path, args: &[&str], ready: &str, meanwhile: impl FnOnce()) -> Ended {
    let mut child: Child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        let found = line.contains(ready);
        line.clear();
        if found {
            break;
        }
    }
    meanwhile();
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    ended(status, format!("{seen}{rest}{err}"))
}

/// Injects a media error at pool byte `offset` (one page), or fails the scenario saying why.
fn inject(scenario: &str, pool: &Path, offset: u64) {
    match hardware::inject(pool, offset, BLOCK) {
        Ok(done) => eprint!("{scenario}: {done}"),
        Err(e) => result(scenario, "FAIL", &format!("injection refused: {e}")),
    }
}

/// A fresh 64 MiB pool: a file on the fsdax mount, or the /dev/dax device.
fn fresh_pool(pmem: &str, name: &str) -> PathBuf {
    let pool =
        if is_devdax(pmem) { PathBuf::from(pmem) } else { Path::new(pmem).join(format!("{name}.pool")) };
    if !is_devdax(pmem) {
        let _ = std::fs::remove_file(&pool);
    }
    // Sparse: a preallocated 64 MiB per scenario would fill the lab's small fsdax file system.
    let mut args = vec!["mkfs", pool.to_str().unwrap(), "--size", "64m", "--force"];
    if !is_devdax(pmem) {
        args.push("--sparse");
    }
    let made = ferrodax(&args);
    assert_eq!(made.code, Some(0), "mkfs: {}", made.describe());
    pool
}

/// Writes /a (4 blocks, a pattern) and, when `shared`, reflinks it to /b; returns the pool offset
/// of /a's page 1.
fn files(pool: &Path, shared: bool) -> u64 {
    let fs = Fs::mount(&Pool::open(pool).unwrap()).unwrap();
    let mut create = OpenOptions::new();
    create.read(true).write(true).create(true);
    let a = fs.open("/a", &create).unwrap();
    let data: Vec<u8> = (0..FILE_LEN).map(|i| (i / BLOCK) as u8 + b'A').collect();
    a.write_at(&data, 0).unwrap();
    if shared {
        let b = fs.open("/b", &create).unwrap();
        fs.reflink(&a, 0, &b, 0, 0).unwrap();
    }
    let extents = fs.fiemap(&a).unwrap();
    let e = extents.iter().find(|e| e.logical <= VICTIM && VICTIM < e.logical + e.length).unwrap();
    e.physical + (VICTIM - e.logical)
}

/// The pool offset of a block of the checkpoint chain.
fn checkpoint_block(pool: &Path) -> u64 {
    let fs = Fs::mount_read_only(&Pool::open_read_only(pool).unwrap()).unwrap();
    let len = fs.stats().total_blocks * BLOCK;
    fs.owners(0, len)
        .into_iter()
        .find(|o| matches!(&o.owner, ferrodax::OwnerKind::Metadata { structure } if structure.contains("checkpoint")))
        .map(|o| o.pool_offset)
        .expect("a checkpoint block")
}

/// The pool's recorded bad blocks as the CLI lists them (a read-only mount: it imports nothing,
/// so this shows what ferrodax itself recorded).
fn recorded(pool: &Path) -> String {
    ferrodax(&["badblocks", pool.to_str().unwrap()]).out
}

/// The sector line `ferrodax badblocks` prints for pool byte `offset`.
fn sector_line(offset: u64) -> String {
    format!("{} 8", offset / 512)
}

const ITEM1: &str = "ferrodax copies pool memory with a plain memcpy and the kernel's SIGBUS \
                     BUS_MCEERR_AR during it takes the default action (issue 10 item 1)";

/// A running `ferrodax io` reads the page after it went bad: pread must fail with EIO (and the
/// failure be recorded), not kill the process.
fn found_by_read(scenario: &str, pool: &Path, file: &str, offset: u64) {
    let p = pool.to_str().unwrap();
    let victim = format!("pread {VICTIM} {BLOCK}");
    let args = ["io", "-c", "pread 0 1", "-c", "sleep 8000", "-c", &victim, p, file];
    let end = run_with_window(&ferrodax_bin(), &args, "read 1/1", || inject(scenario, pool, offset));
    let listed = recorded(pool).contains(&sector_line(offset));
    if end.eio() && listed {
        result(scenario, "PASS", &format!("pread: EIO; recorded ({})", end.describe()));
    } else if end.killed_by_sigbus() {
        result(scenario, "FAIL", &format!("{}; {ITEM1}", end.describe()));
    } else {
        result(scenario, "FAIL", &format!("{}; recorded: {listed}", end.describe()));
    }
}

/// A running `ferrodax io` with a view of the file touches the page after it went bad: like the
/// kernel, the access ends in SIGBUS BUS_MCEERR_AR, and ferrodax records the failure first.
fn found_by_view(scenario: &str, pool: &Path, file: &str, offset: u64) {
    let p = pool.to_str().unwrap();
    let map = format!("mmap 0 {FILE_LEN}");
    let touch = format!("mread {VICTIM} {BLOCK}");
    let args = [
        "io",
        "-c",
        &map,
        "-c",
        "mread 0 16384",
        "-c",
        "pread 0 1",
        "-c",
        "sleep 8000",
        "-c",
        &touch,
        p,
        file,
    ];
    let end = run_with_window(&ferrodax_bin(), &args, "read 1/1", || inject(scenario, pool, offset));
    let listed = recorded(pool).contains(&sector_line(offset));
    match (end.killed_by_sigbus(), listed) {
        (true, true) => {
            result(scenario, "PASS", "SIGBUS BUS_MCEERR_AR on the access, failure recorded first")
        }
        (true, false) => result(
            scenario,
            "FAIL",
            &format!(
                "{}; nothing recorded: the kernel's SIGBUS took the default action before memory_failure",
                end.describe()
            ),
        ),
        (false, _) => result(scenario, "FAIL", &format!("{}; recorded: {listed}", end.describe())),
    }
}

/// The page goes bad while nothing has the pool mounted; the next mount learns it from the
/// device's list (`Fs::mount` imports it), so a read is EIO.
fn found_by_mount(scenario: &str, pool: &Path, file: &str, offset: u64) {
    inject(scenario, pool, offset);
    let end = ferrodax(&["io", "-c", &format!("pread {VICTIM} {BLOCK}"), pool.to_str().unwrap(), file]);
    let listed = recorded(pool).contains(&sector_line(offset));
    if end.eio() && listed {
        result(scenario, "PASS", "imported from the device's badblocks at mount; pread: EIO");
    } else if end.killed_by_sigbus() {
        result(scenario, "FAIL", &format!("{}; {ITEM1}", end.describe()));
    } else {
        result(scenario, "FAIL", &format!("{}; recorded: {listed}", end.describe()));
    }
}

/// Metadata goes bad while nothing has the pool mounted: mount must survive, repair (move the
/// structure), and the pool must check clean.
fn metadata_found_by_mount(scenario: &str, pool: &Path, offset: u64) {
    inject(scenario, pool, offset);
    let p = pool.to_str().unwrap();
    let end = ferrodax(&["io", "-c", "pread 0 4096", p, "/a"]);
    let check = ferrodax(&["check", p]);
    if end.code == Some(0) && check.code == Some(0) && recorded(pool).contains(&sector_line(offset)) {
        result(
            scenario,
            "PASS",
            &format!("mount survived and moved the structure; check: {}", check.describe()),
        );
    } else if end.killed_by_sigbus() {
        result(
            scenario,
            "FAIL",
            &format!("{}; mount reads the checkpoint and log with a plain memcpy before it can import the device's list (item 1)", end.describe()),
        );
    } else {
        result(scenario, "FAIL", &format!("{}; check: {}", end.describe(), check.describe()));
    }
}

// ------------------------------------------------------------------------------------------------
// fsdax: a pool file on the DAX XFS at /mnt/pmem (badblocks in /sys/block/pmem0/badblocks)

fn fsdax(test: &str) -> Option<String> {
    lab(test).filter(|p| {
        let on = !is_devdax(p);
        if !on {
            eprintln!("*** SKIPPED {test}: an fsdax scenario, and this lab run is {p} ***");
        }
        on
    })
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_pool_file_is_mapped_with_map_sync() {
    let Some(pmem) = fsdax("fsdax_pool_file_is_mapped_with_map_sync") else { return };
    let pool = fresh_pool(&pmem, "mapsync");
    let backend = ferrodax::pool::MappedBackend::open_path(&pool).unwrap();
    let ok = backend.is_map_sync() && backend.persistence() == ferrodax::pool::Persistence::CacheFlush;
    let tmp = std::env::temp_dir().join("ferrodax-lab-mapsync.pool");
    let _ = std::fs::remove_file(&tmp);
    let plain = ferrodax::pool::MappedBackend::create_file(&tmp, 4 * MIB).unwrap();
    let tmp_ok = !plain.is_map_sync();
    drop(plain);
    let _ = std::fs::remove_file(&tmp);
    let detail = format!(
        "pool on {pmem}: MAP_SYNC {} ({:?}); pool on tmpfs: MAP_SYNC {} (refused by the kernel, fallback)",
        backend.is_map_sync(),
        backend.persistence(),
        !tmp_ok
    );
    result("fsdax: MAP_SYNC pool mapping", if ok && tmp_ok { "PASS" } else { "FAIL" }, &detail);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_private_found_by_read() {
    let Some(pmem) = fsdax("fsdax_data_private_found_by_read") else { return };
    let pool = fresh_pool(&pmem, "private-read");
    let offset = files(&pool, false);
    found_by_read("fsdax: private data, found by a read", &pool, "/a", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_private_found_by_view() {
    let Some(pmem) = fsdax("fsdax_data_private_found_by_view") else { return };
    let pool = fresh_pool(&pmem, "private-view");
    let offset = files(&pool, false);
    found_by_view("fsdax: private data, found by a view access", &pool, "/a", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_private_found_by_mount() {
    let Some(pmem) = fsdax("fsdax_data_private_found_by_mount") else { return };
    let pool = fresh_pool(&pmem, "private-mount");
    let offset = files(&pool, false);
    found_by_mount("fsdax: private data, found by mount", &pool, "/a", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_shared_found_by_read() {
    let Some(pmem) = fsdax("fsdax_data_shared_found_by_read") else { return };
    let pool = fresh_pool(&pmem, "shared-read");
    let offset = files(&pool, true);
    found_by_read("fsdax: shared (reflink) data, found by a read", &pool, "/b", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_shared_found_by_view() {
    let Some(pmem) = fsdax("fsdax_data_shared_found_by_view") else { return };
    let pool = fresh_pool(&pmem, "shared-view");
    let offset = files(&pool, true);
    found_by_view("fsdax: shared (reflink) data, found by a view access", &pool, "/b", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_data_shared_found_by_mount() {
    let Some(pmem) = fsdax("fsdax_data_shared_found_by_mount") else { return };
    let pool = fresh_pool(&pmem, "shared-mount");
    let offset = files(&pool, true);
    found_by_mount("fsdax: shared (reflink) data, found by mount", &pool, "/b", offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_checkpoint_found_by_mount() {
    let Some(pmem) = fsdax("fsdax_checkpoint_found_by_mount") else { return };
    let pool = fresh_pool(&pmem, "ckpt-mount");
    files(&pool, false);
    let offset = checkpoint_block(&pool);
    metadata_found_by_mount("fsdax: checkpoint block, found by mount", &pool, offset);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_log_found_by_mount() {
    let Some(pmem) = fsdax("fsdax_log_found_by_mount") else { return };
    let pool = fresh_pool(&pmem, "log-mount");
    files(&pool, false);
    // The log region starts at block 2; replay at mount reads its first record there.
    metadata_found_by_mount("fsdax: log block, found by mount", &pool, 2 * BLOCK);
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_log_found_by_a_commit() {
    let Some(pmem) = fsdax("fsdax_log_found_by_a_commit") else { return };
    let scenario = "fsdax: log block, found by the next commit (a store)";
    let pool = fresh_pool(&pmem, "log-commit");
    files(&pool, false);
    let p = pool.to_str().unwrap();
    let args = ["io", "-c", "pread 0 1", "-c", "sleep 8000", "-c", "pwrite 0 4096", p, "/a"];
    let end = run_with_window(&ferrodax_bin(), &args, "read 1/1", || inject(scenario, &pool, 2 * BLOCK));
    let check = ferrodax(&["check", p]);
    if end.code.is_some() && check.code == Some(0) {
        result(scenario, "PASS", &format!("{}; check clean", end.describe()));
    } else if end.killed_by_sigbus() {
        result(
            scenario,
            "FAIL",
            &format!("{}; the log append stores into the bad page and the kernel's SIGBUS takes the default action (item 1 covers copies that read; a store fault in the pool's own mapping needs the same landing pad)", end.describe()),
        );
    } else {
        result(scenario, "FAIL", &format!("{}; check: {}", end.describe(), check.describe()));
    }
}

/// A process (a fork of this one) that maps a file on the fsdax mount MAP_SHARED, reads it all,
/// says so, and reads page [`VICTIM`] again when told to go on: what xfs_io's mmap + mread do,
/// with a window in between.
struct Mapper {
    pid: libc::pid_t,
    go: libc::c_int,
}

fn map_and_wait(path: &Path) -> Mapper {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let (mut ready, mut go) = ([0; 2], [0; 2]);
    // SAFETY: plain pipe creation.
    unsafe { assert_eq!(libc::pipe(ready.as_mut_ptr()), 0) };
    // SAFETY: plain pipe creation.
    unsafe { assert_eq!(libc::pipe(go.as_mut_ptr()), 0) };
    // SAFETY: the child only makes async-signal-safe calls (mmap, read, write, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: (child) async-signal-safe calls only; SIGBUS keeps its default action.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            let len = FILE_LEN as usize;
            let addr =
                libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
            if addr == libc::MAP_FAILED {
                libc::_exit(3);
            }
            let mut sum = 0u8;
            for i in (0..len).step_by(64) {
                sum = sum.wrapping_add(std::ptr::read_volatile((addr as *const u8).add(i)));
            }
            libc::write(ready[1], [sum].as_ptr().cast(), 1);
            let mut b = [0u8; 1];
            libc::read(go[0], b.as_mut_ptr().cast(), 1);
            let v = std::ptr::read_volatile((addr as *const u8).add(VICTIM as usize));
            libc::_exit(if v == b'A' { 0 } else { 4 });
        }
    }
    // SAFETY: closing our copies of the child's ends, then waiting for its "ready" byte.
    unsafe {
        libc::close(ready[1]);
        libc::close(go[0]);
        let mut b = [0u8; 1];
        libc::read(ready[0], b.as_mut_ptr().cast(), 1);
        libc::close(ready[0]);
    }
    Mapper { pid, go: go[1] }
}

impl Mapper {
    /// Lets the process touch the page again and says how it ended (exit 0: it read the old data).
    fn finish(self) -> Ended {
        let mut status = 0;
        // SAFETY: our own pipe and child.
        unsafe {
            libc::write(self.go, [1u8].as_ptr().cast(), 1);
            libc::close(self.go);
            libc::waitpid(self.pid, &mut status, 0);
        }
        let (code, signal) = if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (Some(libc::WEXITSTATUS(status)), None)
        };
        Ended { code, signal, out: String::new() }
    }
}

/// Starts `ferrodax serve POOL` and waits for its socket.
fn serve(pool: &Path) -> Child {
    let socket = PathBuf::from(format!("{}.sock", pool.display()));
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(ferrodax_bin())
        .args(["serve", pool.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the pool server");
    let start = Instant::now();
    while !socket.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Stops the server; says how it ended (and what it logged).
fn stop(mut server: Child) -> Ended {
    if server.try_wait().ok().flatten().is_none() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    }
    let status = server.wait().unwrap();
    let mut err = String::new();
    let _ = server.stderr.take().unwrap().read_to_string(&mut err);
    ended(status, err)
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_checkpoint_found_by_a_check_through_the_server() {
    let Some(pmem) = fsdax("fsdax_checkpoint_found_by_a_check_through_the_server") else { return };
    let scenario = "fsdax: checkpoint block, found by fsck in a running pool server";
    let pool = fresh_pool(&pmem, "ckpt-server");
    files(&pool, false);
    let offset = checkpoint_block(&pool);
    let server = serve(&pool);
    inject(scenario, &pool, offset);
    let check = ferrodax(&["check", pool.to_str().unwrap()]);
    let server = stop(server);
    if server.signal.is_none() && check.code.is_some() && check.code != Some(2) {
        result(scenario, "PASS", &format!("server survived; check: {}", check.describe()));
    } else if server.killed_by_sigbus() {
        result(
            scenario,
            "FAIL",
            &format!("server {}; check: {}; {ITEM1}", server.describe(), check.describe()),
        );
    } else {
        result(scenario, "FAIL", &format!("server {}; check: {}", server.describe(), check.describe()));
    }
}

/// xfs/550-552 style: /a and /b share a block (reflink); two processes map them through the pool
/// server and read; the block goes bad; both touch it again. The kernel's fsdax XFS, on the same
/// guest, with the same poison, on a reflinked pair made by xfs_io, is the reference.
#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn fsdax_reflinked_views_in_many_processes_versus_xfs() {
    let Some(pmem) = fsdax("fsdax_reflinked_views_in_many_processes_versus_xfs") else { return };
    let pool = fresh_pool(&pmem, "multi");
    let offset = files(&pool, true);
    let server = serve(&pool);
    let p = pool.to_str().unwrap().to_string();
    let map = format!("mmap 0 {FILE_LEN}");
    let touch = format!("mread {VICTIM} {BLOCK}");
    let spawn_client = |file: &str| {
        Command::new(ferrodax_bin())
            .args([
                "io",
                "-c",
                &map,
                "-c",
                "mread 0 16384",
                "-c",
                "pread 0 1",
                "-c",
                "sleep 10000",
                "-c",
                &touch,
                &p,
                file,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut clients = vec![spawn_client("/a"), spawn_client("/b")];
    for c in &mut clients {
        let mut line = String::new();
        let mut r = BufReader::new(c.stdout.as_mut().unwrap());
        while r.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("read 1/1") {
            line.clear();
        }
    }
    inject("fsdax: reflinked views, several processes, pool server", &pool, offset);
    let ends: Vec<Ended> = clients
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            ended(out.status, String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    let server = stop(server);
    let listed = recorded(&pool).contains(&sector_line(offset));
    let ours = format!(
        "client /a: {}; client /b: {}; server: {}; recorded: {listed}",
        ends[0].describe(),
        ends[1].describe(),
        if server.signal.is_some() { server.describe() } else { "alive".into() }
    );

    // The same on the kernel's own fsdax XFS.
    let xa = Path::new(&pmem).join("xfs-a");
    let xb = Path::new(&pmem).join("xfs-b");
    let _ = std::fs::remove_file(&xa);
    let _ = std::fs::remove_file(&xb);
    let xfs_io = Path::new("xfs_io");
    let xa_s = xa.to_str().unwrap();
    let xb_s = xb.to_str().unwrap();
    run(xfs_io, &["-f", "-c", &format!("pwrite -S 0x41 0 {FILE_LEN}"), "-c", "fsync", xa_s]);
    run(xfs_io, &["-f", "-c", &format!("reflink {xa_s}"), "-c", "fsync", xb_s]);
    let xclients = [map_and_wait(&xa), map_and_wait(&xb)];
    match hardware::inject(&xa, VICTIM, BLOCK) {
        Ok(done) => eprint!("xfs: {done}"),
        Err(e) => eprintln!("xfs: injection refused: {e}"),
    }
    let xends: Vec<Ended> = xclients.into_iter().map(|c| c.finish()).collect();
    let xread = run(xfs_io, &["-c", &format!("pread {VICTIM} {BLOCK}"), xb_s]);
    let theirs = format!(
        "process mapping /a: {}; process mapping /b: {}; xfs_io pread of /b afterwards: {}",
        xends[0].describe(),
        xends[1].describe(),
        xread.describe()
    );
    println!("\nLAB-XFS|reflinked views, several processes|{}", theirs.replace(['\n', '|'], " "));
    let same = ends.iter().all(Ended::killed_by_sigbus) && server.signal.is_none() && listed;
    result(
        "fsdax: reflinked views in several processes (pool server) vs XFS",
        if same { "PASS" } else { "FAIL" },
        &ours,
    );
}

// ------------------------------------------------------------------------------------------------
// devdax: the pool is /dev/dax0.0 (2 MiB align as the lab makes it; views need 4 KiB)

fn devdax(test: &str) -> Option<String> {
    lab(test).filter(|p| {
        let on = is_devdax(p);
        if !on {
            eprintln!("*** SKIPPED {test}: a devdax scenario, and this lab run is {p} ***");
        }
        on
    })
}

fn dax_sysfs(pmem: &str) -> PathBuf {
    let name = Path::new(pmem).file_name().unwrap().to_str().unwrap().to_string();
    PathBuf::from(format!("/sys/bus/dax/devices/{name}"))
}

fn align_of(pmem: &str) -> u64 {
    std::fs::read_to_string(dax_sysfs(pmem).join("align")).unwrap().trim().parse().unwrap()
}

/// Reconfigures the lab's device-DAX instance to a 4 KiB align, as `ndctl create-namespace -f -m
/// devdax -a 4K` would: unbind it from dax_pmem, a new uuid and align 4096, bind again.
fn make_4k(pmem: &str) -> Result<(), String> {
    if align_of(pmem) == BLOCK {
        return Ok(());
    }
    let name = Path::new(pmem).file_name().unwrap().to_str().unwrap();
    let nd = PathBuf::from(format!("/sys/bus/nd/devices/{name}"));
    let w = |p: PathBuf, v: &str| std::fs::write(&p, v).map_err(|e| format!("{}: {e}", p.display()));
    w("/sys/bus/nd/drivers/dax_pmem/unbind".into(), name)?;
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    w(nd.join("uuid"), uuid.trim())?;
    w(nd.join("align"), "4096")?;
    w("/sys/bus/nd/drivers/dax_pmem/bind".into(), name)?;
    let start = Instant::now();
    while !(Path::new(pmem).exists() && align_of(pmem) == BLOCK) && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    (align_of(pmem) == BLOCK).then_some(()).ok_or_else(|| "align did not become 4096".into())
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn devdax_align_size_and_force() {
    let Some(pmem) = devdax("devdax_align_size_and_force") else { return };
    let scenario = "devdax: mkfs --size, --force, views on a 2 MiB and a 4 KiB align";
    let mut notes = Vec::new();
    let mut ok = true;
    let no_force = ferrodax(&["mkfs", &pmem, "--size", "64m"]);
    ok &= no_force.code == Some(1) && no_force.out.contains("--force");
    notes.push(format!("mkfs without --force: {}", no_force.describe()));
    let tour = ferrodax(&["tour", "--pool", &pmem, "--force"]);
    ok &= tour.code == Some(1);
    notes.push(format!("tour --pool {pmem} --force: exit {:?}", tour.code));
    let huge = ferrodax(&["mkfs", &pmem, "--size", "64g", "--force"]);
    ok &= huge.code == Some(1) && huge.out.contains("larger than the device");
    notes.push(format!("mkfs --size 64g: {}", huge.describe()));
    fresh_pool(&pmem, "dax");
    let stats = Fs::mount(&Pool::open(&pmem).unwrap()).unwrap().stats();
    ok &= stats.total_blocks == 64 * MIB / BLOCK;
    notes.push(format!("mkfs --size 64m then mount: {} blocks", stats.total_blocks));
    let align = align_of(&pmem);
    let view = ferrodax(&[
        "io",
        "-f",
        "-c",
        "pwrite 0 8192",
        "-c",
        "mmap 0 8192",
        "-c",
        "mread 0 8192",
        &pmem,
        "/v",
    ]);
    if align > BLOCK {
        ok &= view.code == Some(1) && view.out.contains("align");
        notes.push(format!("mmap at align {align}: {}", view.describe()));
        // Through a pool server: a large write is placed by the client unless the device cannot
        // be mapped block by block; then its data goes in the frames.
        let server = serve(Path::new(&pmem));
        let big =
            ferrodax(&["io", "-f", "-c", "pwrite -b 1m 0 1m", "-c", "pread -v 1048560 16", &pmem, "/big"]);
        let server = stop(server);
        ok &= big.code == Some(0) && server.signal.is_none();
        notes.push(format!("a 1 MiB write through the pool server at align {align}: {}", big.describe()));
    } else {
        notes.push(format!("the device already had align {align} (an earlier scenario reconfigured it)"));
    }
    match make_4k(&pmem) {
        Ok(()) => {
            fresh_pool(&pmem, "dax");
            let view = ferrodax(&[
                "io",
                "-f",
                "-c",
                "pwrite 0 8192",
                "-c",
                "mmap 0 8192",
                "-c",
                "mread 0 8192",
                "-c",
                "mwrite 0 16",
                &pmem,
                "/v",
            ]);
            ok &= view.code == Some(0);
            notes.push(format!(
                "after align 4096 (unbind, align, bind): mmap/mread/mwrite {}",
                view.describe()
            ));
        }
        Err(e) => {
            ok = false;
            notes.push(format!("could not reconfigure to 4 KiB: {e}"));
        }
    }
    result(scenario, if ok { "PASS" } else { "FAIL" }, &notes.join("; "));
}

/// On /dev/dax the region's badblocks list is read-only, so the media error is MADV_HWPOISON
/// alone. The kernel tears down every mapping of the page and signals the processes that asked
/// for early kill (BUS_MCEERR_AO); a later load just re-faults and reads the old data (lab README).
/// With vm.memory_failure_early_kill=1 the pool's owner is told: ferrodax must record it.
#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn devdax_data_early_kill_tells_the_owner() {
    let Some(pmem) = devdax("devdax_data_early_kill_tells_the_owner") else { return };
    let scenario = "devdax: private data, action-optional SIGBUS (early kill) to a running mount";
    let pool = fresh_pool(&pmem, "dax");
    let offset = files(&pool, false);
    let _ = std::fs::write("/proc/sys/vm/memory_failure_early_kill", "1");
    let p = pool.to_str().unwrap();
    let victim = format!("pread {VICTIM} {BLOCK}");
    let args = ["io", "-c", "pread 0 1", "-c", "sleep 8000", "-c", &victim, p, "/a"];
    let end = run_with_window(&ferrodax_bin(), &args, "read 1/1", || inject(scenario, &pool, offset));
    let _ = std::fs::write("/proc/sys/vm/memory_failure_early_kill", "0");
    let listed = recorded(&pool).contains(&sector_line(offset));
    if end.eio() && listed {
        result(scenario, "PASS", "BUS_MCEERR_AO turned into memory_failure; pread: EIO");
    } else if end.killed_by_sigbus() {
        result(
            scenario,
            "FAIL",
            &format!("{}; the kernel's BUS_MCEERR_AO for the pool mapping takes the default action (item 1: turn AO into memory_failure)", end.describe()),
        );
    } else if end.code == Some(0) && !listed {
        result(
            scenario,
            "FAIL",
            &format!(
                "{}; nothing recorded: the kernel sent the mounting process SIGBUS BUS_MCEERR_AO \
                 (dmesg: \"Sending SIGBUS to ferrodax\") and ferrodax dropped it (item 1: an AO for a \
                 pool address becomes memory_failure; item 3: a forwarded signal is not lost)",
                end.describe()
            ),
        );
    } else {
        result(scenario, "FAIL", &format!("{}; recorded: {listed}", end.describe()));
    }
}

#[test]
#[ignore = "kernel lab only: scripts/lab-tests"]
fn devdax_data_found_by_view_and_mount() {
    let Some(pmem) = devdax("devdax_data_found_by_view_and_mount") else { return };
    let scenario = "devdax: private data, view access and next mount (default kill policy)";
    if let Err(e) = make_4k(&pmem) {
        return result(scenario, "FAIL", &format!("views need a 4 KiB align: {e}"));
    }
    let pool = fresh_pool(&pmem, "dax");
    let offset = files(&pool, false);
    let p = pool.to_str().unwrap();
    let map = format!("mmap 0 {FILE_LEN}");
    let touch = format!("mread -v {VICTIM} 16");
    let args = [
        "io",
        "-c",
        &map,
        "-c",
        "mread 0 16384",
        "-c",
        "pread 0 1",
        "-c",
        "sleep 8000",
        "-c",
        &touch,
        p,
        "/a",
    ];
    let end = run_with_window(&ferrodax_bin(), &args, "read 1/1", || inject(scenario, &pool, offset));
    let after_mount = ferrodax(&["io", "-c", &format!("pread -v {VICTIM} 16"), p, "/a"]);
    let listed = recorded(&pool).contains(&sector_line(offset));
    let detail = format!(
        "view: {}; next mount + pread: {}; recorded: {listed}",
        end.describe(),
        after_mount.describe()
    );
    if end.code == Some(0) && after_mount.code == Some(0) && !listed {
        // Nothing reports the error: the kernel re-faults the page and reads the old data, and
        // the region's list does not show a software poison.
        result(scenario, "LIMIT", &format!("the kernel reports nothing after the madvise: {detail}"));
    } else if end.killed_by_sigbus() && !listed {
        result(scenario, "FAIL", &format!("{detail}; {ITEM1}"));
    } else {
        result(scenario, if listed { "PASS" } else { "FAIL" }, &detail);
    }
}
