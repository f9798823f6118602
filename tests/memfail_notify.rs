//! Memory-failure notices (issue 4 items 2, 4 and 7; SPEC section 5 steps 2 and 7): threads that
//! hold views and subscribed early get action-optional notices at once, outside every lock, with
//! the file, offset and address in *their* view; a subscriber whose access consumes poison is told
//! action-required on its own thread and then gets SIGBUS BUS_MCEERR_AR at the faulting address;
//! a repeated failure sends nothing new; a kernel machine check at a good view page becomes a
//! memory failure; a pre-remove tells every holder, invalidates every view and unmounts cleanly.

use ferrodax::dax::mce::{self, BUS_MCEERR_AO, BUS_MCEERR_AR};
use ferrodax::dax::{MapAccess, Notice, NoticeKind, PageState};
use ferrodax::memfail::{FailureFlags, Told};
use ferrodax::{Fs, OpenOptions, Pool};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};

const PAGE: u64 = 4096;
const PAGES: u64 = 16;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn phys(fs: &Fs, f: &ferrodax::File, page: u64) -> u64 {
    fs.read_lock().block_of(f.ino(), page).unwrap()
}

/// A pool with `/a` (16 pages, page i filled with byte i + 1) and `/b`, a full reflink of it.
fn reflinked_pair(pool: &Pool) -> (Fs, ferrodax::File, ferrodax::File) {
    let fs = Fs::format(pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    let data: Vec<u8> = (0..PAGES * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
    a.write_at(&data, 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    (fs, a, b)
}

/// Notices a subscriber received, and whether any arrived while a ferrodax lock was held.
#[derive(Default)]
struct Inbox {
    notices: Mutex<Vec<Notice>>,
    under_lock: AtomicUsize,
}

impl Inbox {
    fn callback(self: &Arc<Self>) -> Arc<dyn Fn(&Notice) + Send + Sync> {
        let inbox = self.clone();
        Arc::new(move |n: &Notice| {
            if ferrodax::dax::fault::holds_lock() {
                inbox.under_lock.fetch_add(1, Ordering::SeqCst);
            }
            inbox.notices.lock().unwrap().push(n.clone());
        })
    }
    fn taken(&self) -> Vec<Notice> {
        self.notices.lock().unwrap().clone()
    }
}

/// How a holder thread subscribes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Sub {
    Early,
    OnAccess,
    None,
}

/// Scenario B with threads: four threads map `/a` or `/b` (read and read-write), subscribe in
/// different ways and hold their views while the shared page 3 fails.
#[test]
fn early_subscribers_get_action_optional_notices_at_once_with_their_own_address() {
    let pool = Pool::memfd(32 << 20).unwrap();
    let (fs, a, b) = reflinked_pair(&pool);
    let holders = [
        ("/a", MapAccess::Read, Sub::Early),
        ("/b", MapAccess::ReadWrite, Sub::Early),
        ("/a", MapAccess::ReadWrite, Sub::OnAccess),
        ("/b", MapAccess::Read, Sub::None),
    ];
    let mapped = Arc::new(Barrier::new(holders.len() + 1));
    let poisoned = Arc::new(Barrier::new(holders.len() + 1));
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (i, &(path, access, sub)) in holders.iter().enumerate() {
        let (fs, mapped, poisoned, tx) = (fs.clone(), mapped.clone(), poisoned.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let inbox = Arc::new(Inbox::default());
            let file = fs.open(path, &rw()).unwrap();
            let view = file.map(0, PAGES * PAGE, access).unwrap();
            match sub {
                Sub::Early => view.subscribe(true, inbox.callback()),
                Sub::OnAccess => view.subscribe(false, inbox.callback()),
                Sub::None => {}
            }
            tx.send((i, view.as_ptr() as usize, file.ino(), inbox.clone())).unwrap();
            mapped.wait();
            poisoned.wait();
            // The holder's own view has lost the page, and only that page.
            assert!(matches!(view.page_state(3), PageState::Poisoned { .. }), "holder {i}");
            let mut byte = [0u8; 1];
            view.read_at(4 * PAGE as usize, &mut byte).unwrap();
            assert_eq!(byte[0], 5, "holder {i}: a good page still reads");
        }));
    }
    drop(tx);
    mapped.wait();
    let mut seen: Vec<(usize, usize, u64, Arc<Inbox>)> = rx.iter().take(holders.len()).collect();
    seen.sort_by_key(|s| s.0);
    let bad = phys(&fs, &b, 3);
    assert_eq!(bad, phys(&fs, &a, 3), "page 3 is shared");
    let report = fs.memory_failure(bad * PAGE + 100, 1, FailureFlags::default()).unwrap();
    // The notices arrived before memory_failure returned, outside every lock.
    for (i, base, ino, inbox) in &seen {
        let (path, _, sub) = holders[*i];
        let got = inbox.taken();
        assert_eq!(inbox.under_lock.load(Ordering::SeqCst), 0, "holder {i}: called under a lock");
        if sub == Sub::Early {
            assert_eq!(
                got,
                vec![Notice {
                    kind: NoticeKind::ActionOptional,
                    view: got[0].view,
                    ino: *ino,
                    path: Some(path.into()),
                    file_offset: 3 * PAGE + 100,
                    address: base + 3 * PAGE as usize + 100,
                    pool_offset: bad * PAGE + 100,
                    length: 1,
                }],
                "holder {i}"
            );
        } else {
            assert!(got.is_empty(), "holder {i} is told on access, not now: {got:?}");
        }
        let hit = report
            .views
            .iter()
            .find(|v| v.address == base + 3 * PAGE as usize)
            .unwrap_or_else(|| panic!("holder {i}'s view is missing from the report:\n{report}"));
        let (want, words) = match sub {
            Sub::Early => (Told::ActionOptionalNotice, "action-optional notice sent"),
            Sub::OnAccess => (Told::OnAccess, "told on access (action-required)"),
            Sub::None => (Told::SigbusOnAccess, "no subscriber: SIGBUS BUS_MCEERR_AR on access"),
        };
        assert_eq!((hit.how, hit.ino, hit.file_offset), (want, *ino, 3 * PAGE), "holder {i}");
        assert!(hit.action.contains(words), "{}", hit.action);
    }
    assert_eq!(report.views.len(), holders.len(), "{report}");
    assert_eq!(report.files.len(), 2, "{report}");
    poisoned.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// A block that is already bad is in no view any more: failing it again reports it as already
/// bad and tells nobody again, not even a view made since.
#[test]
fn the_same_block_failing_twice_reports_already_bad_and_sends_no_new_notice() {
    let pool = Pool::memfd(32 << 20).unwrap();
    let (fs, a, b) = reflinked_pair(&pool);
    let first_inbox = Arc::new(Inbox::default());
    let va = a.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
    va.subscribe(true, first_inbox.callback());
    let bad = phys(&fs, &a, 7);
    let first = fs.memory_failure(bad * PAGE, PAGE, FailureFlags::default()).unwrap();
    assert_eq!((first.recorded.newly_bad, first.recorded.already_bad), (1, 0));
    assert_eq!(first_inbox.taken().len(), 1);
    let later_inbox = Arc::new(Inbox::default());
    let vb = b.map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    vb.subscribe(true, later_inbox.callback());
    assert_eq!(vb.page_state(7), PageState::Poisoned { phys: bad }, "a new view never shows a bad block");
    let again = fs.memory_failure(bad * PAGE, PAGE, FailureFlags::default()).unwrap();
    assert_eq!((again.recorded.newly_bad, again.recorded.already_bad), (0, 1));
    assert!(again.views.is_empty(), "{again}");
    assert_eq!(again.files.len(), 2, "the owners are still reported: {again}");
    assert_eq!(first_inbox.taken().len(), 1, "no second notice");
    assert!(later_inbox.taken().is_empty(), "no notice for a block already bad when mapped");
    assert_eq!(fs.bad_blocks(), vec![(bad, 1)]);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// The early notices go out before the report's owners are named: a subscriber that renames its
/// file when told (it may call into the file system: no lock is held) finds the new name in the
/// report, while its notice carries the name the file had when the failure was handled.
#[test]
fn owners_are_named_after_the_early_notices_so_a_rename_by_a_subscriber_shows_in_the_report() {
    let pool = Pool::memfd(32 << 20).unwrap();
    let (fs, a, b) = reflinked_pair(&pool);
    let inbox = Arc::new(Inbox::default());
    let view = b.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
    let (renamer, record) = (fs.clone(), inbox.callback());
    view.subscribe(
        true,
        Arc::new(move |n: &Notice| {
            record(n);
            renamer.rename("/b", "/b-told").unwrap();
        }),
    );
    let bad = phys(&fs, &a, 3);
    let report = fs.memory_failure(bad * PAGE, PAGE, FailureFlags::default()).unwrap();
    let told = inbox.taken();
    assert_eq!(told.len(), 1);
    assert_eq!((told[0].kind, told[0].path.as_deref()), (NoticeKind::ActionOptional, Some("/b")));
    let mut named: Vec<(u64, Option<String>)> =
        report.files.iter().map(|o| (o.ino, o.path.clone())).collect();
    named.sort();
    let mut expected = vec![(a.ino(), Some("/a".to_string())), (b.ino(), Some("/b-told".to_string()))];
    expected.sort();
    assert_eq!(named, expected, "{report}");
}

/// Real hardware: the kernel's BUS_MCEERR_AO at a view page that shows a good block (queued to
/// ourselves here, which reaches the handler as the kernel's would) becomes a memory failure of
/// that block: it is recorded bad, every view loses it, early subscribers are told, and the
/// process carries on.
#[test]
fn a_kernel_action_optional_machine_check_becomes_a_memory_failure_of_that_block() {
    let pool = Pool::memfd(32 << 20).unwrap();
    let (fs, a, b) = reflinked_pair(&pool);
    let early = Arc::new(Inbox::default());
    let va = a.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
    va.subscribe(true, early.callback());
    let late = Arc::new(Inbox::default());
    let vb = b.map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    vb.subscribe(false, late.callback());
    let bad = phys(&fs, &a, 5);
    let addr = va.as_ptr() as usize + 5 * PAGE as usize + 10;
    mce::queue_to_self(BUS_MCEERR_AO, addr).unwrap();
    // The signal was delivered on return from the system call, on this thread.
    assert_eq!(fs.bad_blocks(), vec![(bad, 1)]);
    assert_eq!(va.page_state(5), PageState::Poisoned { phys: bad });
    assert_eq!(vb.page_state(5), PageState::Poisoned { phys: bad });
    let got = early.taken();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].kind, NoticeKind::ActionOptional);
    assert_eq!(
        (got[0].address, got[0].file_offset, got[0].pool_offset),
        (addr, 5 * PAGE + 10, bad * PAGE + 10)
    );
    assert_eq!(got[0].path.as_deref(), Some("/a"));
    assert!(late.taken().is_empty(), "the late subscriber is told on access");
    let mut buf = vec![0u8; PAGE as usize];
    assert_eq!(b.read_at(&mut buf, 5 * PAGE).unwrap_err().errno(), libc::EIO);
    // An action-optional machine check for a block already known is absorbed as well.
    mce::queue_to_self(BUS_MCEERR_AO, addr).unwrap();
    assert_eq!(early.taken().len(), 1);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// Pre-remove with threads holding views: every subscriber (early or not) is told about every
/// pool block its view showed, every page of every view becomes a SIGBUS sentinel, every later
/// operation is EIO, and the pool remounts clean with every byte (stores through views included).
#[test]
fn pre_remove_tells_every_holder_invalidates_every_view_and_unmounts_cleanly() {
    let pool = Pool::memfd(32 << 20).unwrap();
    let (fs, a, b) = reflinked_pair(&pool);
    let holders = [
        ("/a", MapAccess::ReadWrite, Sub::Early),
        ("/b", MapAccess::Read, Sub::OnAccess),
        ("/b", MapAccess::Read, Sub::None),
    ];
    let mapped = Arc::new(Barrier::new(holders.len() + 1));
    let removed = Arc::new(Barrier::new(holders.len() + 1));
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (i, &(path, access, sub)) in holders.iter().enumerate() {
        let (fs, mapped, removed, tx) = (fs.clone(), mapped.clone(), removed.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let inbox = Arc::new(Inbox::default());
            let file = fs.open(path, &rw()).unwrap();
            let view = file.map(0, PAGES * PAGE, access).unwrap();
            if sub != Sub::None {
                view.subscribe(sub == Sub::Early, inbox.callback());
            }
            if access == MapAccess::ReadWrite {
                // A plain store through the view: it must survive the removal.
                view.store_plain(2 * PAGE as usize, b"stored through a view").unwrap();
            }
            tx.send((i, view.as_ptr() as usize, inbox.clone())).unwrap();
            mapped.wait();
            removed.wait();
            for page in 0..PAGES {
                assert_eq!(view.page_state(page), PageState::Removed, "holder {i} page {page}");
            }
            assert_eq!(file.read_at(&mut [0u8; 16], 0).unwrap_err().errno(), libc::EIO);
        }));
    }
    drop(tx);
    mapped.wait();
    let seen: Vec<(usize, usize, Arc<Inbox>)> = rx.iter().take(holders.len()).collect();
    let blocks: Vec<u64> = (0..PAGES).map(|p| phys(&fs, &a, p)).collect();
    let b_blocks: Vec<u64> = (0..PAGES).map(|p| phys(&fs, &b, p)).collect();
    let report = fs.pre_remove().unwrap();
    assert_eq!(report.views_invalidated, holders.len());
    assert_eq!(report.unsubscribed_views.len(), 1);
    assert!(report.checkpoint_written);
    for (i, base, inbox) in &seen {
        let (path, _, sub) = holders[*i];
        let got = inbox.taken();
        assert_eq!(inbox.under_lock.load(Ordering::SeqCst), 0);
        if sub == Sub::None {
            continue;
        }
        assert!(!got.is_empty(), "holder {i} was not told");
        let mut covered = 0;
        for n in &got {
            assert_eq!((n.kind, n.path.as_deref()), (NoticeKind::ActionOptional, Some(path)));
            assert_eq!(n.address, base + n.file_offset as usize, "holder {i}: address in its own view");
            let want = if path == "/a" { &blocks } else { &b_blocks };
            for k in 0..n.length / PAGE {
                assert_eq!(n.pool_offset / PAGE + k, want[(n.file_offset / PAGE + k) as usize]);
            }
            covered += n.length;
        }
        assert_eq!(covered, PAGES * PAGE, "holder {i}: every page of the view is told about");
    }
    // Every later operation fails with EIO.
    let mut buf = [0u8; 16];
    assert_eq!(fs.open("/a", &rw()).unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.metadata("/a").unwrap_err().errno(), libc::EIO);
    assert_eq!(a.read_at(&mut buf, 0).unwrap_err().errno(), libc::EIO);
    assert_eq!(a.write_at(b"x", 0).unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.reflink(&a, 0, &b, 0, PAGE).unwrap_err().errno(), libc::EIO);
    assert_eq!(a.map(0, PAGE, MapAccess::Read).unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.create_dir("/d").unwrap_err().errno(), libc::EIO);
    assert_eq!(
        fs.memory_failure(blocks[0] * PAGE, PAGE, FailureFlags::default()).unwrap_err().errno(),
        libc::EIO
    );
    assert_eq!(fs.pre_remove().unwrap_err().errno(), libc::EIO);
    removed.wait();
    for t in threads {
        t.join().unwrap();
    }
    drop((a, b, fs));
    // Unmounted cleanly: the media mounts, checks clean and holds every byte.
    let fs = Fs::mount(&pool).unwrap();
    assert!(fs.check().is_clean(), "{}", fs.check());
    for path in ["/a", "/b"] {
        let f = fs.open(path, &rw()).unwrap();
        let mut data = vec![0u8; (PAGES * PAGE) as usize];
        f.read_exact_at(&mut data, 0).unwrap();
        let mut want: Vec<u8> = (0..PAGES * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
        if path == "/a" {
            want[2 * PAGE as usize..][..21].copy_from_slice(b"stored through a view");
        }
        assert!(data == want, "{path} lost bytes");
    }
}

// ----- signals, observed in child processes -----

const CHILD: &str = "FERRODAX_NOTIFY_CHILD";

/// What the child's application SIGBUS handler expects, and what the subscriber saw.
static EXPECTED_ADDR: AtomicUsize = AtomicUsize::new(0);
static EXPECTED_POOL: AtomicI64 = AtomicI64::new(-1);
static NOTICE_KIND: AtomicI64 = AtomicI64::new(-1);
static NOTICE_ADDR: AtomicUsize = AtomicUsize::new(0);
static NOTICE_POOL: AtomicI64 = AtomicI64::new(-1);
static NOTICE_TID: AtomicI64 = AtomicI64::new(-1);
static EARLY_NOTICES: AtomicUsize = AtomicUsize::new(0);
/// False where no action-required notice is due (a page invalidated by a pre-remove).
static NOTICE_DUE: AtomicBool = AtomicBool::new(true);

/// The application's handler: exit 42 only if the signal is BUS_MCEERR_AR at the expected address
/// with si_addr_lsb 12, on the thread whose subscriber was just told action-required about that
/// very byte (and, where there is one, the early subscriber was told first).
extern "C" fn app_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: a SIGBUS siginfo from the kernel or from rt_tgsigqueueinfo.
    let info = unsafe { &*info };
    // SAFETY: reading the fault address of a SIGBUS siginfo.
    let addr = unsafe { info.si_addr() } as usize;
    // SAFETY: gettid has no preconditions.
    let tid = i64::from(unsafe { libc::gettid() });
    let code = if info.si_code != BUS_MCEERR_AR {
        43
    } else if addr != EXPECTED_ADDR.load(Ordering::SeqCst) || mce::addr_lsb(info) != 12 {
        44
    } else if !NOTICE_DUE.load(Ordering::SeqCst) {
        if NOTICE_KIND.load(Ordering::SeqCst) == 1 {
            48
        } else {
            42
        }
    } else if NOTICE_KIND.load(Ordering::SeqCst) != 1
        || NOTICE_ADDR.load(Ordering::SeqCst) != addr
        || NOTICE_POOL.load(Ordering::SeqCst) != EXPECTED_POOL.load(Ordering::SeqCst)
    {
        45
    } else if NOTICE_TID.load(Ordering::SeqCst) != tid {
        46
    } else if std::env::var_os("FERRODAX_NOTIFY_EARLY").is_some() && EARLY_NOTICES.load(Ordering::SeqCst) != 1
    {
        47
    } else {
        42
    };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(code) };
}

/// A subscriber callback that only stores atomics (it runs in signal context for action-required).
fn recording_callback() -> Arc<dyn Fn(&Notice) + Send + Sync> {
    Arc::new(|n: &Notice| {
        NOTICE_KIND.store(if n.kind == NoticeKind::ActionRequired { 1 } else { 0 }, Ordering::SeqCst);
        NOTICE_ADDR.store(n.address, Ordering::SeqCst);
        NOTICE_POOL.store(n.pool_offset as i64, Ordering::SeqCst);
        // SAFETY: gettid has no preconditions.
        NOTICE_TID.store(i64::from(unsafe { libc::gettid() }), Ordering::SeqCst);
    })
}

fn install_app_handler() {
    // SAFETY: installing a plain SA_SIGINFO handler before ferrodax installs its own.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = app_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

/// Runs test `name` again in a child process with `CHILD=mode`; returns its exit code.
fn run_child(name: &str, mode: &str, extra_env: &[(&str, &str)]) -> Option<i32> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(CHILD, mode)
        .envs(extra_env.iter().copied())
        .output()
        .unwrap();
    if out.status.code() != Some(42) {
        eprintln!("child stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code()
}

/// Scenario B, the accessor: a thread holding a view of the clone, subscribed without early
/// notice, touches the poisoned page; its callback is told action-required about the exact byte
/// on its own thread, then the application's handler gets SIGBUS BUS_MCEERR_AR at that address
/// with si_addr_lsb 12. Another thread's early subscription on the original was told before.
#[test]
fn a_thread_touching_a_poisoned_page_is_told_action_required_then_gets_sigbus_ar() {
    if std::env::var(CHILD).as_deref() == Ok("touch") {
        install_app_handler();
        let pool = Pool::memfd(32 << 20).unwrap();
        let (fs, a, b) = reflinked_pair(&pool);
        let va = a.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
        va.subscribe(
            true,
            Arc::new(|n: &Notice| {
                if n.kind == NoticeKind::ActionOptional && n.file_offset == 3 * PAGE {
                    EARLY_NOTICES.fetch_add(1, Ordering::SeqCst);
                }
            }),
        );
        let bad = phys(&fs, &b, 3);
        let (mapped_tx, mapped_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let fs2 = fs.clone();
        let toucher = std::thread::spawn(move || {
            let file = fs2.open("/b", &rw()).unwrap();
            let view = file.map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap();
            view.subscribe(false, recording_callback());
            mapped_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let addr = view.as_ptr() as usize + 3 * PAGE as usize + 123;
            EXPECTED_ADDR.store(addr, Ordering::SeqCst);
            EXPECTED_POOL.store((bad * PAGE + 123) as i64, Ordering::SeqCst);
            // SAFETY: a load through the live view; the poisoned page turns it into SIGBUS.
            let value = unsafe { std::ptr::read_volatile(addr as *const u8) };
            std::process::exit(i32::from(value) + 100); // not reached
        });
        mapped_rx.recv().unwrap();
        fs.memory_failure(bad * PAGE, PAGE, FailureFlags::default()).unwrap();
        go_tx.send(()).unwrap();
        let _ = toucher.join();
        std::process::exit(50); // not reached: the toucher's handler exits
    }
    assert_eq!(
        run_child(
            "a_thread_touching_a_poisoned_page_is_told_action_required_then_gets_sigbus_ar",
            "touch",
            &[("FERRODAX_NOTIFY_EARLY", "1")]
        ),
        Some(42),
        "43: not BUS_MCEERR_AR; 44: wrong address or lsb; 45: no action-required notice for that byte; \
         46: notice on another thread; 47: the early subscriber was not told"
    );
}

/// Real hardware, action-required: the kernel's BUS_MCEERR_AR at a view page that still shows a
/// good block first becomes a memory failure naming the accessor (whose subscriber is told
/// action-required), then reaches the application's handler as BUS_MCEERR_AR at that address.
#[test]
fn a_kernel_action_required_machine_check_becomes_a_memory_failure_then_reaches_the_application() {
    if std::env::var(CHILD).as_deref() == Ok("kernel-ar") {
        install_app_handler();
        let pool = Pool::memfd(32 << 20).unwrap();
        let (fs, a, _b) = reflinked_pair(&pool);
        let va = a.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
        va.subscribe(false, recording_callback());
        let block = phys(&fs, &a, 9);
        let addr = va.as_ptr() as usize + 9 * PAGE as usize + 7;
        EXPECTED_ADDR.store(addr, Ordering::SeqCst);
        EXPECTED_POOL.store((block * PAGE + 7) as i64, Ordering::SeqCst);
        mce::queue_to_self(BUS_MCEERR_AR, addr).unwrap();
        std::process::exit(51); // not reached: the application's handler exits
    }
    assert_eq!(
        run_child(
            "a_kernel_action_required_machine_check_becomes_a_memory_failure_then_reaches_the_application",
            "kernel-ar",
            &[]
        ),
        Some(42)
    );
}

/// After a pre-remove the view's memory is really gone: a load through it raises SIGBUS
/// BUS_MCEERR_AR at the address (the holder was told at the pre-remove, so no second notice).
#[test]
fn a_load_through_a_view_after_pre_remove_raises_sigbus_ar() {
    if std::env::var(CHILD).as_deref() == Ok("removed") {
        install_app_handler();
        NOTICE_DUE.store(false, Ordering::SeqCst);
        let pool = Pool::memfd(32 << 20).unwrap();
        let (fs, a, _b) = reflinked_pair(&pool);
        let va = a.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
        va.subscribe(false, recording_callback());
        fs.pre_remove().unwrap();
        if NOTICE_KIND.load(Ordering::SeqCst) != 0 {
            std::process::exit(52); // the pre-remove notice is action-optional
        }
        let addr = va.as_ptr() as usize + 6 * PAGE as usize + 1;
        EXPECTED_ADDR.store(addr, Ordering::SeqCst);
        // SAFETY: a load through the live (invalidated) view; it raises SIGBUS.
        let value = unsafe { std::ptr::read_volatile(addr as *const u8) };
        std::process::exit(i32::from(value) + 100); // not reached
    }
    assert_eq!(
        run_child("a_load_through_a_view_after_pre_remove_raises_sigbus_ar", "removed", &[]),
        Some(42)
    );
}
