//! Guards machine-check-safe access to pool memory (issue "Real hardware", item 1): when a read of
//! pool memory by ferrodax itself meets a real SIGBUS, the copy or compare stops at its landing pad
//! instead of killing the process, the bad block is recorded through memory failure (so every owner
//! is handled as for injected poison), and the operation fails with EIO (or reads short).
//!
//! The SIGBUS here is real: the pool file is cut short underneath the mounted pool, so its mapping
//! raises SIGBUS (BUS_ADRERR) past the new end, as a machine check would on bad persistent memory.

use ferrodax::{DedupeStatus, DedupeTarget, Fs, OpenOptions, Pool};
use std::path::Path;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

const POOL: u64 = 32 << 20;

/// A pool whose file /pad fills the first part of the data space, and /a (64 KiB of 0x61) and /b (its
/// copy) after it. Returns the pool, the fs and the pool offset of /a's first block.
fn setup(path: &Path) -> (Pool, Fs, u64, u64) {
    let pool = Pool::create(path, POOL).unwrap();
    let fs = Fs::format(&pool).unwrap();
    fs.open("/pad", &rw()).unwrap().write_at(&vec![7u8; 8 << 20], 0).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![0x61; 65536], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    b.write_at(&vec![0x61; 65536], 0).unwrap();
    let pa = fs.fiemap(&a).unwrap()[0].physical;
    let pb = fs.fiemap(&b).unwrap()[0].physical;
    (pool, fs, pa, pb)
}

/// Cuts the pool file at `at` bytes: its mapping raises SIGBUS from there on.
fn cut_pool_file(path: &Path, at: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(at).unwrap();
}

#[test]
fn a_read_that_meets_a_real_sigbus_returns_eio_and_records_the_block_as_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, pa, pb) = setup(&path);
    assert!(pb > pa, "/b lies after /a in the pool");
    cut_pool_file(&path, pa);
    let a = fs.open("/a", &rw()).unwrap();
    let mut buf = vec![0u8; 65536];
    let err = a.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    let bad = fs.bad_blocks();
    assert!(
        bad.iter().any(|&(s, l)| s <= pa / 4096 && pa / 4096 < s + l),
        "block of /a recorded bad: {bad:?}"
    );
    // The owners of the block were found through the reverse map like for any memory failure.
    let owners = fs.owners(pa, 4096);
    assert!(owners
        .iter()
        .any(|o| matches!(&o.owner, ferrodax::OwnerKind::File { path: Some(p), .. } if p == "/a")));
    // The process lives on; the memory comes back (zeros) and a whole-block rewrite recovers /a.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(POOL).unwrap();
    a.write_at(&vec![0x62; 4096], 0).unwrap();
    let mut first = vec![0u8; 4096];
    assert_eq!(a.read_at(&mut first, 0).unwrap(), 4096);
    assert!(first.iter().all(|&b| b == 0x62));
}

#[test]
fn a_read_that_meets_bad_memory_after_good_bytes_is_short() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, pa, _) = setup(&path);
    cut_pool_file(&path, pa + 8192);
    let a = fs.open("/a", &rw()).unwrap();
    let mut buf = vec![0u8; 65536];
    assert_eq!(a.read_at(&mut buf, 0).unwrap(), 8192, "the read stops before the first bad block");
    assert!(buf[..8192].iter().all(|&b| b == 0x61));
}

#[test]
fn a_dedupe_compare_that_meets_bad_memory_fails_that_destination_with_eio() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, _, pb) = setup(&path);
    cut_pool_file(&path, pb);
    let (a, b) = (fs.open("/a", &rw()).unwrap(), fs.open("/b", &rw()).unwrap());
    let status = fs.dedupe(&a, 0, 65536, &[DedupeTarget { file: &b, offset: 0 }]).unwrap();
    match &status[0] {
        DedupeStatus::Failed(e) => assert_eq!(e.errno(), libc::EIO, "{e}"),
        other => panic!("expected EIO, got {other:?}"),
    }
    assert!(fs.bad_blocks().iter().any(|&(s, l)| s <= pb / 4096 && pb / 4096 < s + l));
}

#[test]
fn a_copy_on_write_edge_copy_that_meets_bad_memory_fails_the_write_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, pa, _) = setup(&path);
    let a = fs.open("/a", &rw()).unwrap();
    let before = fs.fiemap(&a).unwrap();
    cut_pool_file(&path, pa);
    // 10 bytes in the middle of block 0: the head and tail of the block are copied from it.
    let err = a.write_at(b"0123456789", 100).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(fs.fiemap(&a).unwrap(), before, "the failed write changed the file's layout");
}

#[test]
fn an_action_optional_machine_check_at_a_pool_address_is_recorded_as_a_memory_failure() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![0x61; 8192], 0).unwrap();
    let phys = fs.fiemap(&a).unwrap()[0].physical;
    let addr = fs.backend().base() as usize + phys as usize + 4096 + 100;
    // What the kernel sends a process that asked for early kill: BUS_MCEERR_AO at the address.
    ferrodax::dax::mce::queue_to_self_signal(libc::SIGBUS, ferrodax::dax::mce::BUS_MCEERR_AO, addr).unwrap();
    // A thread of the library records it (the handler cannot take the lock): wait for it.
    let block = phys / 4096 + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs.bad_blocks().iter().any(|&(s, l)| s <= block && block < s + l) {
        assert!(std::time::Instant::now() < deadline, "the machine check was never recorded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut buf = vec![0u8; 8192];
    assert_eq!(a.read_at(&mut buf, 0).unwrap(), 4096, "reads stop before the bad block");
    assert!(fs.check().is_clean());
}

#[test]
fn stores_into_new_blocks_that_meet_bad_memory_fail_with_eio_and_record_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, pa, _) = setup(&path);
    // Every block a new write can get lies past the cut.
    cut_pool_file(&path, pa);
    let c = fs.open("/c", &rw()).unwrap();
    // A whole block: the data store meets the bad memory. Ten bytes: zeroing the rest of the new
    // block does. Each is recorded and retried once, then the write fails with EIO.
    for (data, offset) in [(vec![0x63u8; 4096], 0u64), (vec![0x64u8; 10], 100)] {
        let bad_before = fs.bad_blocks().iter().map(|r| r.1).sum::<u64>();
        let err = c.write_at(&data, offset).unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err}");
        let bad_after = fs.bad_blocks().iter().map(|r| r.1).sum::<u64>();
        assert!(bad_after > bad_before, "the block the store met was not recorded: {:?}", fs.bad_blocks());
        assert!(fs.bad_blocks().iter().all(|&(s, _)| s * 4096 >= pa), "only blocks past the cut are bad");
    }
    assert_eq!(c.metadata().unwrap().size, 0, "a failed write changed the file");
    assert!(fs.fiemap(&c).unwrap().is_empty());
}

#[test]
fn an_action_optional_machine_check_naming_a_2_mib_granule_records_only_the_pages_that_fail_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, pa, _) = setup(&path);
    let cut = pa + 3 * 4096;
    cut_pool_file(&path, cut);
    // A device-dax machine check names its 2 MiB mapping entry (si_addr_lsb 21), not the page.
    let addr = fs.backend().base() as usize + pa as usize;
    let mut info = ferrodax::dax::mce::mce_siginfo(ferrodax::dax::mce::BUS_MCEERR_AO, addr);
    // SAFETY: si_addr_lsb sits at byte 24 of the 128-byte SIGBUS siginfo built above.
    unsafe { *((&mut info as *mut libc::siginfo_t as *mut u8).add(24) as *mut i16) = 21 };
    // SAFETY: rt_tgsigqueueinfo of a fully built siginfo to this very thread.
    let rc = unsafe {
        libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), libc::gettid(), libc::SIGBUS, &mut info)
    };
    assert_eq!(rc, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs.bad_blocks().iter().any(|&(s, l)| s <= cut / 4096 && cut / 4096 < s + l) {
        assert!(std::time::Instant::now() < deadline, "the failing page was never recorded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Pages that still read are not quarantined on a guess.
    assert!(fs.bad_blocks().iter().all(|&(s, _)| s * 4096 >= cut), "{:?}", fs.bad_blocks());
}

#[test]
fn a_log_mirror_copy_that_meets_bad_memory_still_commits_and_moves_the_mirror() {
    // The log mirror sits at the end of the pool: cutting the pool file there makes every store
    // into it a real SIGBUS. A record's log copy is durable first, so the operation happens; the
    // mirror block is recorded bad and the mirror moves (a checkpoint), so records have two copies
    // again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let (_pool, fs, _, _) = setup(&path);
    let mirror = fs.read_lock().journal().superblock().log_mirror_start;
    cut_pool_file(&path, mirror * 4096);
    fs.create_dir("/made-while-the-mirror-is-bad").unwrap();
    // A pool file on a disk groups commits: the sync point writes the record (and its mirror copy).
    fs.sync().expect("the operation commits");
    let moved_to = fs.read_lock().journal().superblock().log_mirror_start;
    assert_ne!(moved_to, mirror, "the mirror moved off the bad memory");
    let bad = fs.bad_blocks();
    assert!(bad.iter().any(|&(s, l)| s <= mirror && mirror < s + l), "mirror block recorded bad: {bad:?}");
    assert!(fs.metadata("/made-while-the-mirror-is-bad").is_ok());
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(POOL).unwrap();
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
}
