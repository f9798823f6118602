//! Memory failures across processes through the pool server (issue 8 item 2: SPEC section 7
//! scenarios A, B and C with separate processes).
//!
//! Guards: a poisoned page of a file mapped by client processes raises SIGBUS with si_code
//! BUS_MCEERR_AR, si_addr the faulting address in the accessing process's own view and
//! si_addr_lsb 12, for one-page and two-page failures, while good pages keep reading; with a
//! reflinked clone, mappers of the poisoned file and of the clone all get that signal, and early
//! subscribers in every process get an action-optional notice at once (before touching the page)
//! naming the address in their own view; a two-page failure over one shared and one private page
//! reports exactly those pages' files and offsets as owners and every process (pid) and view page
//! told, and no view that does not show those pages. The failed pages read EIO afterwards and
//! fsck is clean after every sequence. Also: a recovery write by another process re-points the
//! poisoned page in every client view; kernel machine checks (AO, AR) in a client process become
//! memory failures every process sees; a pre-remove through the server takes every client view
//! away, tells subscribers and leaves a pool that remounts clean.

mod server_common;

use ferrodax::dax::mce::{self, BUS_MCEERR_AO, BUS_MCEERR_AR};
use ferrodax::dax::{MapAccess, Notice, NoticeKind};
use ferrodax::memfail::{FailureFlags, FailureReport, Told};
use server_common::*;
use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A client process holding one view of `FDX_FILE` (pages `FDX_FIRST`.. `+FDX_PAGES`, access
/// `FDX_ACCESS` r/w), subscribed as `FDX_SUB` (early, late, none). Commands: `notice` (waits
/// for the next early notice and prints it), `touch OFF` (a load at view byte OFF; a poisoned
/// page raises SIGBUS, which the recorder prints before exiting 42), `exit`.
fn mf_holder() {
    install_sigbus_recorder();
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let write = env_str("FDX_ACCESS") == "w";
    let options = if write { rw() } else { ro() };
    let file = fs.open(&env_str("FDX_FILE"), &options).unwrap();
    let access = if write { MapAccess::ReadWrite } else { MapAccess::Read };
    let view = file.map(env_u64("FDX_FIRST") * PAGE, env_u64("FDX_PAGES") * PAGE, access).unwrap();
    let (tx, rx) = mpsc::channel::<Notice>();
    let tx = Mutex::new(tx);
    match env_str("FDX_SUB").as_str() {
        "early" => view.subscribe(
            true,
            Arc::new(move |n: &Notice| {
                if n.kind == NoticeKind::ActionOptional {
                    let _ = tx.lock().unwrap().send(n.clone());
                }
            }),
        ),
        // Told on access, in signal context: it does nothing here.
        "late" => view.subscribe(false, Arc::new(|_: &Notice| {})),
        _ => {}
    }
    say(&format!("mapped {} {} {}", view.as_ptr() as usize, std::process::id(), file.ino()));
    loop {
        let line = hear();
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("notice") => {
                let n = rx.recv_timeout(HANG).expect("an early notice");
                let kind = if n.kind == NoticeKind::ActionOptional { "AO" } else { "AR" };
                say(&format!(
                    "notice {kind} {} {} {} {} {}",
                    n.address, n.file_offset, n.pool_offset, n.length, n.ino
                ));
            }
            Some("touch") => {
                let v = touch(view.as_ptr() as usize + w[1].parse::<usize>().unwrap());
                say(&format!("value {v}"));
            }
            Some("store") => {
                let byte = w[2].parse::<u8>().unwrap();
                view.store_plain(w[1].parse().unwrap(), &[byte]).unwrap();
                say("stored");
            }
            // What the kernel sends when a load through the view consumed poison (AR) or when it
            // found poison in the background (AO): queued to this thread, it reaches the library's
            // handler as the kernel's would.
            Some("mce-ar") | Some("mce-ao") => {
                let code = if w[0] == "mce-ar" { BUS_MCEERR_AR } else { BUS_MCEERR_AO };
                mce::queue_to_self(code, view.as_ptr() as usize + w[1].parse::<usize>().unwrap()).unwrap();
                say("absorbed");
            }
            _ => break,
        }
    }
    drop(view);
    std::process::exit(0);
}

/// A holder process and what it said when it mapped.
struct Holder {
    kid: Kid,
    base: usize,
    ino: u64,
}

fn spawn_holder(
    pool: &TestPool,
    test: &str,
    file: &str,
    first: u64,
    pages: u64,
    access: &str,
    sub: &str,
) -> Holder {
    let env = [
        ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string()),
        ("FDX_FILE", file.to_string()),
        ("FDX_FIRST", first.to_string()),
        ("FDX_PAGES", pages.to_string()),
        ("FDX_ACCESS", access.to_string()),
        ("FDX_SUB", sub.to_string()),
    ];
    let role = format!("{}-{access}-{sub}", file.trim_start_matches('/'));
    let mut kid = Kid::spawn(pool.dir.path(), test, &role, &env);
    let f = kid.expect("mapped");
    assert_eq!(f[1].parse::<u32>().unwrap(), kid.pid());
    Holder { base: f[0].parse().unwrap(), ino: f[2].parse().unwrap(), kid }
}

impl Holder {
    /// Touches view byte `off` and expects SIGBUS BUS_MCEERR_AR at exactly that address with
    /// si_addr_lsb 12; the recorder then exits 42.
    fn touch_expecting_mce(&mut self, off: u64, who: &str) {
        self.expect_mce_after(&format!("touch {off}"), off, who);
    }

    /// Sends `command` and expects SIGBUS BUS_MCEERR_AR at view byte `off` with si_addr_lsb 12.
    fn expect_mce_after(&mut self, command: &str, off: u64, who: &str) {
        self.kid.send(command);
        let line = self.kid.next_line();
        let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert_eq!(fields[0], "signal", "{who}: touching a poisoned page did not raise a signal: {line}");
        let (sig, code, addr, lsb) = parse_signal(&fields[1..]);
        assert_eq!(sig, libc::SIGBUS, "{who}: signal");
        assert_eq!(code, ferrodax::dax::mce::BUS_MCEERR_AR, "{who}: si_code");
        assert_eq!(addr, self.base + off as usize, "{who}: si_addr is the address in its own view");
        assert_eq!(lsb, 12, "{who}: si_addr_lsb");
        self.kid.wait_code(42);
    }

    fn touch_expecting(&mut self, off: u64, value: u8, who: &str) {
        self.kid.send(&format!("touch {off}"));
        let got = self.kid.expect("value");
        assert_eq!(got[0].parse::<u8>().unwrap(), value, "{who}: a good page reads");
    }

    fn exit(&mut self) {
        self.kid.send("exit");
        self.kid.wait_code(0);
    }
}

/// Waits until the server counts `n` live views (a dead holder's views are released when the
/// server sees its connection end).
fn wait_views(fs: &ferrodax::Fs, n: usize) {
    let deadline = Instant::now() + HANG;
    while fs.view_count() != n {
        assert!(Instant::now() < deadline, "the server still counts {} views, not {n}", fs.view_count());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (pid, ino, file offset, address, how) of every view page the report names.
fn told(report: &FailureReport) -> BTreeSet<(u32, u64, u64, usize, String)> {
    report
        .views
        .iter()
        .map(|v| (v.holder.pid, v.ino, v.file_offset, v.address, format!("{:?}", v.how)))
        .collect()
}

/// A file of `pages` pages, page i filled with `byte(i)`.
fn fill(fs: &ferrodax::Fs, path: &str, pages: u64, byte: impl Fn(u64) -> u8) -> ferrodax::File {
    let f = fs.open(path, &rw()).unwrap();
    let d: Vec<u8> = (0..pages * PAGE).map(|i| byte(i / PAGE)).collect();
    f.write_at(&d, 0).unwrap();
    f
}

fn read_errno(file: &ferrodax::File, page: u64) -> Option<i32> {
    let mut buf = vec![0u8; PAGE as usize];
    file.read_at(&mut buf, page * PAGE).err().map(|e| e.errno())
}

#[test]
fn scenario_a_poisoned_pages_of_a_file_mapped_in_two_processes_raise_sigbus_mceerr_ar_at_each_accessors_own_address(
) {
    const TEST: &str =
        "scenario_a_poisoned_pages_of_a_file_mapped_in_two_processes_raise_sigbus_mceerr_ar_at_each_accessors_own_address";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let mut p1 = spawn_holder(&pool, TEST, "/a", 0, 16, "r", "none");
    let mut p2 = spawn_holder(&pool, TEST, "/a", 0, 16, "w", "none");
    let bad = phys_of(&fs, &a, 3);
    let report = fs.memory_failure(bad, PAGE, FailureFlags::default()).unwrap();
    let sigbus = format!("{:?}", Told::SigbusOnAccess);
    assert_eq!(
        told(&report),
        [
            (p1.kid.pid(), p1.ino, 3 * PAGE, p1.base + 3 * PAGE as usize, sigbus.clone()),
            (p2.kid.pid(), p2.ino, 3 * PAGE, p2.base + 3 * PAGE as usize, sigbus.clone()),
        ]
        .into_iter()
        .collect(),
        "{report}"
    );
    assert_eq!(report.files.len(), 1, "{report}");
    assert_eq!(
        (report.files[0].file_offset, report.files[0].length, report.files[0].shared),
        (3 * PAGE, PAGE, false)
    );
    p1.touch_expecting_mce(3 * PAGE + 123, "process 1 (one-page failure)");
    p2.touch_expecting(4 * PAGE + 9, 5, "process 2");
    wait_views(&fs, 1);

    // Two pages at once.
    let bad2 = phys_of(&fs, &a, 7);
    assert_eq!(phys_of(&fs, &a, 8), bad2 + PAGE, "pages 7 and 8 are consecutive in the pool");
    // This time a third process injects it: `ferrodax poison`, through the server.
    let pool_path = pool.path.to_str().unwrap().to_string();
    let (status, stdout, stderr) =
        run_cli(&["poison", &pool_path, &bad2.to_string(), &(2 * PAGE).to_string(), "--json"]);
    assert!(status.success(), "ferrodax poison: {stderr}");
    let report: FailureReport = serde_json::from_str(&stdout).unwrap();
    assert_eq!((report.pool_offset, report.length, report.recorded.newly_bad), (bad2, 2 * PAGE, 2));
    assert_eq!(
        told(&report),
        [7, 8]
            .into_iter()
            .map(|p| (p2.kid.pid(), p2.ino, p * PAGE, p2.base + (p * PAGE) as usize, sigbus.clone()))
            .collect(),
        "{report}"
    );
    p2.touch_expecting(9 * PAGE, 10, "process 2");
    p2.touch_expecting_mce(8 * PAGE + 1, "process 2 (two-page failure)");
    for page in 0..16 {
        let want = if [3, 7, 8].contains(&page) { Some(libc::EIO) } else { None };
        assert_eq!(read_errno(&a, page), want, "page {page}");
    }
    assert_eq!(fs.bad_blocks(), vec![(bad / PAGE, 1), (bad2 / PAGE, 2)]);
    wait_views(&fs, 0);
    assert_clean(&fs, "scenario A");
    drop((a, fs));
    server.stop();
}

#[test]
fn a_recovery_write_by_another_process_makes_a_poisoned_page_readable_again_in_every_client_view() {
    const TEST: &str =
        "a_recovery_write_by_another_process_makes_a_poisoned_page_readable_again_in_every_client_view";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let mut p1 = spawn_holder(&pool, TEST, "/a", 0, 16, "r", "none");
    let mut p2 = spawn_holder(&pool, TEST, "/a", 0, 16, "w", "early");
    let bad = phys_of(&fs, &a, 3);
    let report = fs.memory_failure(bad, PAGE, FailureFlags::default()).unwrap();
    assert_eq!(report.views.len(), 2, "{report}");
    p2.kid.send("notice");
    assert_eq!(p2.kid.expect("notice")[2], (3 * PAGE).to_string());
    assert_eq!(read_errno(&a, 3), Some(libc::EIO));
    // Another process rewrites the whole page: the file is clean again, in every view.
    let (status, stdout, stderr) = run_cli(&["io", "-c", "pwrite -S 0x5a 12288 4096", &pool_path, "/a"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert_ne!(phys_of(&fs, &a, 3), bad, "the recovery write went to a new block");
    assert_eq!(read_errno(&a, 3), None);
    p1.touch_expecting(3 * PAGE + 10, 0x5a, "the read-only holder after the recovery write");
    p2.touch_expecting(3 * PAGE + 4095, 0x5a, "the read-write holder after the recovery write");
    p1.touch_expecting(4 * PAGE, 5, "the read-only holder");
    assert_eq!(fs.bad_blocks(), vec![(bad / PAGE, 1)], "the bad block stays out of use");
    p1.exit();
    p2.exit();
    wait_views(&fs, 0);
    assert_clean(&fs, "a recovery write");
    drop((a, fs));
    server.stop();
}

#[test]
fn kernel_machine_checks_in_a_client_process_become_memory_failures_seen_by_every_process() {
    const TEST: &str =
        "kernel_machine_checks_in_a_client_process_become_memory_failures_seen_by_every_process";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let mut ao = spawn_holder(&pool, TEST, "/a", 0, 16, "w", "none");
    let mut early = spawn_holder(&pool, TEST, "/a", 0, 16, "r", "early");
    let mut ar = spawn_holder(&pool, TEST, "/a", 0, 16, "r", "none");
    let (b5, b9) = (phys_of(&fs, &a, 5), phys_of(&fs, &a, 9));
    // Action-optional in one process: recorded, the process carries on, the others are told.
    ao.kid.send(&format!("mce-ao {}", 5 * PAGE + 7));
    ao.kid.expect("absorbed");
    assert_eq!(fs.bad_blocks(), vec![(b5 / PAGE, 1)]);
    early.kid.send("notice");
    let want = [
        "AO".to_string(),
        (early.base + 5 * PAGE as usize + 7).to_string(),
        (5 * PAGE + 7).to_string(),
        (b5 + 7).to_string(),
        "1".to_string(),
        early.ino.to_string(),
    ];
    assert_eq!(early.kid.expect("notice"), want, "the early subscriber in another process");
    ao.touch_expecting(6 * PAGE, 7, "the process that absorbed the AO machine check");
    // Action-required in another: recorded, then its handler gets BUS_MCEERR_AR at its address.
    ar.expect_mce_after(
        &format!("mce-ar {}", 9 * PAGE + 3),
        9 * PAGE + 3,
        "the process whose load consumed poison",
    );
    assert_eq!(fs.bad_blocks(), vec![(b5 / PAGE, 1), (b9 / PAGE, 1)]);
    early.kid.send("notice");
    let want = [
        "AO".to_string(),
        (early.base + 9 * PAGE as usize + 3).to_string(),
        (9 * PAGE + 3).to_string(),
        (b9 + 3).to_string(),
        "1".to_string(),
        early.ino.to_string(),
    ];
    assert_eq!(early.kid.expect("notice"), want, "the early subscriber in another process");
    // Both pages are gone from every view.
    early.touch_expecting(4 * PAGE, 5, "the early subscriber");
    early.touch_expecting_mce(9 * PAGE + 100, "the early subscriber");
    ao.touch_expecting_mce(5 * PAGE + 1, "the process that absorbed the AO machine check");
    for page in 0..16 {
        assert_eq!(
            read_errno(&a, page),
            if [5, 9].contains(&page) { Some(libc::EIO) } else { None },
            "page {page}"
        );
    }
    wait_views(&fs, 0);
    assert_clean(&fs, "kernel machine checks in client processes");
    drop((a, fs));
    server.stop();
}

#[test]
fn scenario_b_poison_of_a_reflinked_page_signals_mappers_of_both_files_and_early_subscribers_everywhere_are_told_at_once(
) {
    const TEST: &str = "scenario_b_poison_of_a_reflinked_page_signals_mappers_of_both_files_and_early_subscribers_everywhere_are_told_at_once";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let mut holders = [("/a", "r", "early"), ("/a", "w", "none"), ("/b", "w", "early"), ("/b", "r", "late")]
        .map(|(file, access, sub)| (file, sub, spawn_holder(&pool, TEST, file, 0, 16, access, sub)));
    let bad = phys_of(&fs, &a, 3);
    assert_eq!(phys_of(&fs, &b, 3), bad, "page 3 is shared");
    let report = fs.memory_failure(bad + 100, 1, FailureFlags::default()).unwrap();
    let want: BTreeSet<_> = holders
        .iter()
        .map(|(_, sub, h)| {
            let how = match *sub {
                "early" => Told::ActionOptionalNotice,
                "late" => Told::OnAccess,
                _ => Told::SigbusOnAccess,
            };
            (h.kid.pid(), h.ino, 3 * PAGE, h.base + 3 * PAGE as usize, format!("{how:?}"))
        })
        .collect();
    assert_eq!(told(&report), want, "{report}");
    // Owners are named by the failed block's file offset and length.
    let owners: BTreeSet<(Option<String>, u64, u64, bool)> =
        report.files.iter().map(|f| (f.path.clone(), f.file_offset, f.length, f.shared)).collect();
    assert_eq!(
        owners,
        [(Some("/a".to_string()), 3 * PAGE, PAGE, true), (Some("/b".to_string()), 3 * PAGE, PAGE, true)]
            .into_iter()
            .collect(),
        "{report}"
    );
    // Early subscribers, in their own processes, were told before touching anything.
    for (file, sub, h) in holders.iter_mut().filter(|(_, sub, _)| *sub == "early") {
        h.kid.send("notice");
        let n = h.kid.expect("notice");
        let want = [
            "AO".to_string(),
            (h.base + 3 * PAGE as usize + 100).to_string(),
            (3 * PAGE + 100).to_string(),
            (bad + 100).to_string(),
            "1".to_string(),
            h.ino.to_string(),
        ];
        assert_eq!(n, want, "the {sub} subscriber of {file} (pid {}): kind, address in its view, file offset, pool offset, length, ino", h.kid.pid());
    }
    // Everyone who touches the page gets the machine-check signal, in its own view.
    for (file, sub, h) in holders.iter_mut() {
        h.touch_expecting(5 * PAGE, 6, &format!("{sub} holder of {file}"));
        h.touch_expecting_mce(3 * PAGE + 100, &format!("{sub} holder of {file}"));
    }
    for f in [&a, &b] {
        for page in 0..16 {
            assert_eq!(read_errno(f, page), if page == 3 { Some(libc::EIO) } else { None }, "page {page}");
        }
    }
    wait_views(&fs, 0);
    assert_clean(&fs, "scenario B");
    drop((a, b, fs));
    server.stop();
}

#[test]
fn scenario_c_a_two_page_failure_over_a_shared_and_a_private_page_names_exactly_those_owners_and_every_process_view_told(
) {
    const TEST: &str = "scenario_c_a_two_page_failure_over_a_shared_and_a_private_page_names_exactly_those_owners_and_every_process_view_told";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let x = fill(&fs, "/x", 16, |_| 0x61);
    let y = fill(&fs, "/y", 16, |_| 0x62);
    for page in (0..16).step_by(2) {
        fs.reflink(&x, page * PAGE, &y, page * PAGE, PAGE).unwrap();
    }
    let mut px = spawn_holder(&pool, TEST, "/x", 0, 16, "r", "none");
    let mut py = spawn_holder(&pool, TEST, "/y", 0, 16, "w", "none");
    // A view of /x pages 2..4 only, and one of /y pages 8..16 (which shows no failed page).
    let mut px2 = spawn_holder(&pool, TEST, "/x", 2, 2, "w", "early");
    let mut py2 = spawn_holder(&pool, TEST, "/y", 8, 8, "r", "none");
    let bad = phys_of(&fs, &x, 2);
    assert_eq!(phys_of(&fs, &x, 3), bad + PAGE, "x's pages 2 and 3 are consecutive in the pool");
    assert_eq!(phys_of(&fs, &y, 2), bad, "x's page 2 is shared with y");
    let report = fs.memory_failure(bad, 2 * PAGE, FailureFlags::default()).unwrap();
    // Owners, page by page: (path, file page, shared).
    let mut owners = BTreeSet::new();
    for f in &report.files {
        for k in 0..f.length / PAGE {
            owners.insert((f.path.clone().unwrap(), f.file_offset / PAGE + k));
        }
    }
    assert_eq!(
        owners,
        [("/x".to_string(), 2), ("/x".to_string(), 3), ("/y".to_string(), 2)].into_iter().collect(),
        "{report}"
    );
    assert!(report.metadata.is_empty() && report.free_blocks == 0, "{report}");
    let sig = format!("{:?}", Told::SigbusOnAccess);
    let early = format!("{:?}", Told::ActionOptionalNotice);
    let want: BTreeSet<_> = [
        (px.kid.pid(), px.ino, 2 * PAGE, px.base + 2 * PAGE as usize, sig.clone()),
        (px.kid.pid(), px.ino, 3 * PAGE, px.base + 3 * PAGE as usize, sig.clone()),
        (py.kid.pid(), py.ino, 2 * PAGE, py.base + 2 * PAGE as usize, sig.clone()),
        (px2.kid.pid(), px2.ino, 2 * PAGE, px2.base, early.clone()),
        (px2.kid.pid(), px2.ino, 3 * PAGE, px2.base + PAGE as usize, early.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(told(&report), want, "{report}");
    // The early subscriber is told about both pages, at the addresses of its offset view.
    let mut notices = BTreeSet::new();
    for _ in 0..2 {
        px2.kid.send("notice");
        notices.insert(px2.kid.expect("notice"));
    }
    let mut want_notices = BTreeSet::new();
    for k in 0..2u64 {
        want_notices.insert(vec![
            "AO".to_string(),
            (px2.base + (k * PAGE) as usize).to_string(),
            ((2 + k) * PAGE).to_string(),
            (bad + k * PAGE).to_string(),
            PAGE.to_string(),
            px2.ino.to_string(),
        ]);
    }
    // One notice may also cover both pages at once.
    if notices != want_notices {
        panic!("early notices of the offset view: {notices:?}, want {want_notices:?}");
    }
    py.touch_expecting(3 * PAGE, 0x62, "the holder of /y (private page 3)");
    py.touch_expecting(4 * PAGE, 0x61, "the holder of /y (shared page 4)");
    py.touch_expecting_mce(2 * PAGE + 77, "the holder of /y");
    px2.touch_expecting_mce(PAGE + 9, "the holder of /x pages 2..4");
    px.touch_expecting(4 * PAGE, 0x61, "the holder of /x");
    px.touch_expecting_mce(3 * PAGE, "the holder of /x");
    py2.touch_expecting(0, 0x61, "the holder of /y pages 8..16");
    py2.exit();
    for page in 0..16 {
        let want = if [2, 3].contains(&page) { Some(libc::EIO) } else { None };
        assert_eq!(read_errno(&x, page), want, "/x page {page}");
        let want = if page == 2 { Some(libc::EIO) } else { None };
        assert_eq!(read_errno(&y, page), want, "/y page {page}");
    }
    wait_views(&fs, 0);
    assert_clean(&fs, "scenario C");
    drop((x, y, fs));
    server.stop();
}

/// Scenario C's report, block by block: the failed page that only /x owns must be reported as
/// private. The report merges /x's two failed pages into one owner entry marked shared.
#[test]
fn scenario_c_the_failed_private_page_is_reported_private_and_the_shared_page_shared() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let x = fill(&fs, "/x", 16, |_| 0x61);
    let y = fill(&fs, "/y", 16, |_| 0x62);
    for page in (0..16).step_by(2) {
        fs.reflink(&x, page * PAGE, &y, page * PAGE, PAGE).unwrap();
    }
    let bad = phys_of(&fs, &x, 2);
    assert_eq!(phys_of(&fs, &x, 3), bad + PAGE, "x's pages 2 and 3 are consecutive in the pool");
    let report = fs.memory_failure(bad, 2 * PAGE, FailureFlags::default()).unwrap();
    let mut owners = BTreeSet::new();
    for f in &report.files {
        for k in 0..f.length / PAGE {
            owners.insert((f.path.clone().unwrap(), f.file_offset / PAGE + k, f.shared));
        }
    }
    assert_eq!(
        owners,
        [("/x".to_string(), 2, true), ("/x".to_string(), 3, false), ("/y".to_string(), 2, true)]
            .into_iter()
            .collect(),
        "{report}"
    );
    assert_clean(&fs, "scenario C");
    drop((x, y, fs));
    server.stop();
}

#[test]
fn a_pre_remove_through_the_server_takes_every_client_view_away_tells_subscribers_and_the_pool_remounts_clean(
) {
    const TEST: &str =
        "a_pre_remove_through_the_server_takes_every_client_view_away_tells_subscribers_and_the_pool_remounts_clean";
    if role().is_some() {
        return mf_holder();
    }
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let mut server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let first = phys_of(&fs, &a, 0);
    assert_eq!(phys_of(&fs, &a, 15), first + 15 * PAGE, "one extent");
    let mut early = spawn_holder(&pool, TEST, "/a", 0, 16, "w", "early");
    let mut plain = spawn_holder(&pool, TEST, "/a", 0, 16, "r", "none");
    early.kid.send(&format!("store {} 238", 2 * PAGE + 5));
    early.kid.expect("stored");
    let report = fs.pre_remove().unwrap();
    assert_eq!(report.views_invalidated, 2, "{report:?}");
    assert!(report.checkpoint_written);
    assert_eq!(report.unsubscribed_views.len(), 1, "{report:?}");
    early.kid.send("notice");
    let want = [
        "AO".to_string(),
        early.base.to_string(),
        "0".to_string(),
        first.to_string(),
        (16 * PAGE).to_string(),
        early.ino.to_string(),
    ];
    assert_eq!(early.kid.expect("notice"), want, "one notice for the view's whole run of blocks");
    plain.touch_expecting_mce(7 * PAGE + 1, "the holder without a subscription");
    early.touch_expecting_mce(0, "the early subscriber");
    assert_eq!(fs.metadata("/a").unwrap_err().errno(), libc::EIO);
    assert_eq!(read_errno(&a, 0), Some(libc::EIO));
    let (status, _, stderr) = run_cli(&["ls", &pool_path]);
    assert_eq!(status.code(), Some(1), "a new client after the pre-remove: {stderr}");
    assert!(stderr.contains("Input/output error"), "{stderr}");
    drop((a, fs));
    // The server still stops cleanly: the pre-remove already wrote the final checkpoint.
    let mut child = server.child.take().unwrap();
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_deadline(&mut child, "ferrodax serve after a pre-remove");
    let log = server.log_text();
    let fs = pool.mount();
    assert_clean(&fs, "remounting after a pre-remove through the server");
    let mut want: Vec<u8> = (0..16 * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
    want[(2 * PAGE + 5) as usize] = 238;
    assert!(read_all(&fs, "/a") == want, "a store through a client's view was lost");
    assert!(status.success(), "ferrodax serve exited with {status} after a pre-remove:\n{log}");
}

/// `Fs::memory_failure` promises that early subscribers have their notices before it returns; a
/// connected `Fs` is the same API, so its own process's subscribers must have them too.
#[test]
fn through_the_server_early_subscribers_of_the_calling_process_are_told_before_memory_failure_returns() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let view = a.map(0, 16 * PAGE, MapAccess::Read).unwrap();
    let inbox: Arc<Mutex<Vec<Notice>>> = Arc::default();
    let sink = inbox.clone();
    view.subscribe(true, Arc::new(move |n: &Notice| sink.lock().unwrap().push(n.clone())));
    // Busy threads, as in any loaded application: the caller and the notice thread compete for
    // the CPUs, which makes the order between them visible.
    let spin = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let spin = spin.clone();
            std::thread::spawn(move || {
                while spin.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut late = Vec::new();
    for page in 0..16 {
        let bad = phys_of(&fs, &a, page);
        fs.memory_failure(bad, PAGE, FailureFlags::default()).unwrap();
        let got = inbox.lock().unwrap().len();
        if got != page as usize + 1 {
            late.push(page);
        }
        // Let a late notice arrive before the next round.
        let deadline = Instant::now() + HANG;
        while inbox.lock().unwrap().len() != page as usize + 1 {
            assert!(Instant::now() < deadline, "the notice for page {page} never came");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    spin.store(false, std::sync::atomic::Ordering::Relaxed);
    spinners.into_iter().for_each(|t| t.join().unwrap());
    assert!(
        late.is_empty(),
        "memory_failure returned before the early notice of pages {late:?} was delivered"
    );
    let notices = inbox.lock().unwrap().clone();
    for (page, n) in notices.iter().enumerate() {
        assert_eq!(
            (n.kind, n.file_offset, n.address),
            (NoticeKind::ActionOptional, page as u64 * PAGE, view.as_ptr() as usize + page * PAGE as usize)
        );
    }
    drop(view);
    assert_clean(&fs, "sixteen failures");
    drop((a, fs));
    server.stop();
}

#[test]
fn a_safe_write_through_a_client_view_into_a_poisoned_page_fails_with_eio_and_changes_nothing() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = fill(&fs, "/a", 16, |p| p as u8 + 1);
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let va = a.map(0, 16 * PAGE, MapAccess::ReadWrite).unwrap();
    let vb = b.map(0, 16 * PAGE, MapAccess::ReadWrite).unwrap();
    let bad = phys_of(&fs, &a, 3);
    fs.memory_failure(bad, PAGE, FailureFlags::default()).unwrap();
    let free = fs.stats().free_blocks;
    // The page is private to nobody: copying it for the write would read poison.
    assert_eq!(va.write_at((3 * PAGE + 10) as usize, b"x").unwrap_err().errno(), libc::EIO);
    assert_eq!(vb.write_at((3 * PAGE) as usize, b"y").unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.stats().free_blocks, free, "no block was allocated");
    assert_eq!(phys_of(&fs, &a, 3), bad);
    assert_eq!(phys_of(&fs, &b, 3), bad);
    // Good pages are written as usual, each file's own.
    va.write_at((4 * PAGE) as usize, b"a4").unwrap();
    vb.write_at((4 * PAGE) as usize, b"b4").unwrap();
    let mut two = [0u8; 2];
    a.read_exact_at(&mut two, 4 * PAGE).unwrap();
    assert_eq!(&two, b"a4");
    b.read_exact_at(&mut two, 4 * PAGE).unwrap();
    assert_eq!(&two, b"b4");
    assert_eq!(read_errno(&a, 3), Some(libc::EIO));
    drop((va, vb));
    assert_clean(&fs, "safe writes into a poisoned page");
    drop((a, b, fs));
    server.stop();
}

#[test]
fn an_early_notice_callback_may_call_the_server_and_sees_the_failure_recorded() {
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    let fs = server.connect();
    let a = Arc::new(fill(&fs, "/a", 16, |p| p as u8 + 1));
    let view = a.map(0, 16 * PAGE, MapAccess::Read).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let (fs2, a2) = (fs.clone(), a.clone());
    view.subscribe(
        true,
        Arc::new(move |n: &Notice| {
            // Calls into the file system from the callback: a read of the failed page and the
            // list of bad blocks, both answered by the server.
            let page = n.file_offset / PAGE;
            let errno = read_errno(&a2, page);
            let bad = fs2.bad_blocks();
            let _ = tx.lock().unwrap().send((page, errno, bad));
        }),
    );
    let bad = phys_of(&fs, &a, 6);
    let (status, stdout, stderr) = run_cli(&["poison", &pool_path, &bad.to_string()]);
    assert!(status.success(), "{stdout}{stderr}");
    let (page, errno, bad_blocks) = rx.recv_timeout(HANG).expect("the early notice");
    assert_eq!((page, errno, bad_blocks), (6, Some(libc::EIO), vec![(bad / PAGE, 1)]));
    drop(view);
    assert_clean(&fs, "a callback calling the server");
    drop((a, fs));
    server.stop();
}
