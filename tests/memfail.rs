//! Memory failure (SPEC sections 5 and 7): owners come from the reverse map, every view of every
//! owner loses the bad page, an access to it raises SIGBUS with BUS_MCEERR_AR at the right address,
//! and a whole-block rewrite recovers one owner while the others stay poisoned.

use ferrodax::dax::{MapAccess, PageState};
use ferrodax::{Fs, OpenOptions, Pool};
use std::os::unix::process::ExitStatusExt;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn phys(fs: &Fs, f: &ferrodax::File, page: u64) -> u64 {
    fs.read_lock().block_of(f.ino(), page).unwrap()
}

/// SPEC 7 scenario C: 16 pages of 0x61 and 16 of 0x62; even pages of the first reflinked into the
/// second; a 2-page failure over one shared and one private page names exactly those owners.
#[test]
fn scenario_c_owners_are_exactly_the_pages_files_and_offsets() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let a = fs.open("/file1", &rw()).unwrap();
    a.write_at(&vec![0x61; 16 * 4096], 0).unwrap();
    let b = fs.open("/file2", &rw()).unwrap();
    b.write_at(&vec![0x62; 16 * 4096], 0).unwrap();
    for page in (0..16).step_by(2) {
        fs.reflink(&a, page * 4096, &b, page * 4096, 4096).unwrap();
    }
    // b's page 4 shares a's block 4; b's page 5 is private to b. Make them adjacent in the pool
    // is not guaranteed, so fail each block in one call over its own range.
    let shared = phys(&fs, &a, 4);
    let private = phys(&fs, &b, 5);
    let r1 = fs.memory_failure(shared * 4096, 4096, ferrodax::memfail::FailureFlags::default()).unwrap();
    let r2 = fs.memory_failure(private * 4096, 4096, ferrodax::memfail::FailureFlags::default()).unwrap();
    let mut owners: Vec<(String, u64, bool)> = r1
        .files
        .iter()
        .chain(&r2.files)
        .map(|o| (o.path.clone().unwrap(), o.file_offset, o.shared))
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        vec![
            ("/file1".into(), 4 * 4096, true),
            ("/file2".into(), 4 * 4096, true),
            ("/file2".into(), 5 * 4096, false)
        ]
    );
    let mut buf = vec![0u8; 4096];
    assert_eq!(a.read_at(&mut buf, 4 * 4096).unwrap_err().errno(), libc::EIO);
    assert_eq!(b.read_at(&mut buf, 5 * 4096).unwrap_err().errno(), libc::EIO);
    assert_eq!(a.read_at(&mut buf, 5 * 4096).unwrap(), 4096, "good bytes stay readable");
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// SPEC 7 scenario B: a full reflink; both files' views lose the page; recovery of one owner.
#[test]
fn scenario_b_every_view_of_every_owner_is_handled_and_recovery_is_per_file() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![7u8; 16 * 4096], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let va1 = a.map(0, 16 * 4096, MapAccess::ReadWrite).unwrap();
    let va2 = a.map(0, 16 * 4096, MapAccess::Read).unwrap();
    let vb = b.map(0, 16 * 4096, MapAccess::ReadWrite).unwrap();
    let bad = phys(&fs, &b, 3);
    let report = fs.memory_failure(bad * 4096 + 100, 1, ferrodax::memfail::FailureFlags::default()).unwrap();
    assert_eq!(report.files.len(), 2, "{report}");
    assert_eq!(report.views.len(), 3, "{report}");
    for v in [&va1, &va2, &vb] {
        assert_eq!(v.page_state(3), PageState::Poisoned { phys: bad });
        assert!(matches!(v.page_state(2), PageState::Block { .. }));
    }
    assert_eq!(
        fs.memory_failure(bad * 4096, 4096, ferrodax::memfail::FailureFlags::default())
            .unwrap()
            .recorded
            .already_bad,
        1,
        "idempotent"
    );
    // Recovery write through b: b's views show the new block, a's stay poisoned.
    b.write_at(&vec![9u8; 4096], 3 * 4096).unwrap();
    assert!(matches!(vb.page_state(3), PageState::Block { .. }));
    let mut byte = [0u8; 1];
    vb.read_at(3 * 4096, &mut byte).unwrap();
    assert_eq!(byte[0], 9);
    assert_eq!(va1.page_state(3), PageState::Poisoned { phys: bad });
    assert!(fs.check().is_clean(), "{}", fs.check());
}

const CHILD: &str = "FERRODAX_MEMFAIL_CHILD";

static EXPECTED_ADDR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn record_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: a SIGBUS siginfo from the kernel (or from the library's rt_tgsigqueueinfo).
    let info = unsafe { &*info };
    let ok = info.si_code == ferrodax::dax::mce::BUS_MCEERR_AR
        && unsafe { info.si_addr() } as usize == EXPECTED_ADDR.load(std::sync::atomic::Ordering::SeqCst)
        && ferrodax::dax::mce::addr_lsb(info) == 12;
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if ok { 42 } else { 43 }) };
}

/// SPEC 7 scenario A, in a child process: the accessor of a poisoned page gets SIGBUS with
/// BUS_MCEERR_AR, si_addr the faulting address and si_addr_lsb 12.
#[test]
fn scenario_a_the_accessor_gets_bus_mceerr_ar_at_the_faulting_address() {
    if std::env::var(CHILD).as_deref() == Ok("handler") || std::env::var(CHILD).as_deref() == Ok("default") {
        if std::env::var(CHILD).as_deref() == Ok("handler") {
            // SAFETY: installing a plain SA_SIGINFO handler before ferrodax installs its own.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = record_sigbus as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
            }
        }
        let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
        let f = fs.open("/f", &rw()).unwrap();
        f.write_at(&vec![1u8; 16 * 4096], 0).unwrap();
        let v1 = f.map(0, 16 * 4096, MapAccess::ReadWrite).unwrap();
        let _v2 = f.map(0, 16 * 4096, MapAccess::Read).unwrap();
        let bad = phys(&fs, &f, 5);
        fs.memory_failure(bad * 4096, 4096, ferrodax::memfail::FailureFlags::default()).unwrap();
        let addr = v1.as_ptr() as usize + 5 * 4096 + 123;
        EXPECTED_ADDR.store(addr, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: a load through the view, which the poisoned page turns into SIGBUS.
        let value = unsafe { std::ptr::read_volatile(addr as *const u8) };
        std::process::exit(i32::from(value) + 100); // not reached
    }
    let run = |mode: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "scenario_a_the_accessor_gets_bus_mceerr_ar_at_the_faulting_address",
                "--test-threads=1",
            ])
            .env(CHILD, mode)
            .output()
            .unwrap()
            .status
    };
    assert_eq!(
        run("handler").code(),
        Some(42),
        "the application's SIGBUS handler saw BUS_MCEERR_AR at the address"
    );
    assert_eq!(run("default").signal(), Some(libc::SIGBUS), "without a handler the accessor dies of SIGBUS");
}

/// SPEC 7 scenario A with real threads: one 64 KiB file mapped by two holders; poison 1 page, then
/// a 2-page range: both holders' views lose exactly those pages, the report names both each time,
/// and the file system records the failure and stays clean.
#[test]
fn scenario_a_two_holders_then_one_page_then_two_pages() {
    use ferrodax::memfail::FailureFlags;
    use std::sync::{Arc, Barrier};
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    f.write_at(&vec![0x61; 16 * 4096], 0).unwrap();
    let blocks: Vec<u64> = (0..16).map(|p| phys(&fs, &f, p)).collect();
    assert!(blocks.windows(2).all(|w| w[1] == w[0] + 1), "one extent expected: {blocks:?}");
    let mapped = Arc::new(Barrier::new(3));
    let poisoned = Arc::new(Barrier::new(3));
    let checked = Arc::new(Barrier::new(3));
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let (fs, mapped, poisoned, checked) =
                (fs.clone(), mapped.clone(), poisoned.clone(), checked.clone());
            std::thread::Builder::new()
                .name(format!("holder-{i}"))
                .spawn(move || {
                    let f = fs.open("/f", &rw()).unwrap();
                    let view = f.map(0, 16 * 4096, MapAccess::ReadWrite).unwrap();
                    mapped.wait();
                    for expected_bad in [vec![3u64], vec![3, 8, 9]] {
                        poisoned.wait();
                        for page in 0..16 {
                            let bad = expected_bad.contains(&page);
                            assert_eq!(
                                matches!(view.page_state(page), PageState::Poisoned { .. }),
                                bad,
                                "holder {i} page {page}"
                            );
                        }
                        checked.wait();
                    }
                })
                .unwrap()
        })
        .collect();
    mapped.wait();
    let one = fs.memory_failure(blocks[3] * 4096, 4096, FailureFlags::default()).unwrap();
    assert_eq!(one.files.len(), 1);
    assert_eq!(one.views.len(), 2, "{one}");
    poisoned.wait();
    checked.wait();
    let two = fs.memory_failure(blocks[8] * 4096, 2 * 4096, FailureFlags::default()).unwrap();
    assert_eq!(two.recorded.newly_bad, 2);
    assert_eq!(two.views.len(), 4, "two pages in each of two views: {two}");
    poisoned.wait();
    checked.wait();
    for h in holders {
        h.join().unwrap();
    }
    let mut buf = vec![0u8; 4096];
    for page in [3u64, 8, 9] {
        assert_eq!(f.read_at(&mut buf, page * 4096).unwrap_err().errno(), libc::EIO);
    }
    assert_eq!(f.read_at(&mut buf, 4 * 4096).unwrap(), 4096);
    assert_eq!(fs.bad_blocks(), vec![(blocks[3], 1), (blocks[8], 2)]);
    assert!(fs.check().is_clean(), "{}", fs.check());
}
