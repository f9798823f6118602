//! DAX views: stores through a view reach the pool with no copy; stores into shared pages copy
//! them (copy-on-write fault) and leave every other file unchanged; views follow every layout change.

use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, PageShare, PageState};
use ferrodax::{Fs, OpenOptions, Pool};

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn setup() -> Fs {
    Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap()
}

fn contents(f: &ferrodax::File, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = f.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn store_through_private_view_is_visible_to_read_and_pwrite_to_view() {
    let fs = setup();
    let f = fs.open("/f", &rw()).unwrap();
    f.write_at(&vec![1u8; 8192], 0).unwrap();
    let m = f.map(0, 8192, MapAccess::ReadWrite).unwrap();
    assert!(matches!(m.page_state(0), PageState::Block { .. }));
    // SAFETY-free: the library exposes the pointer; a plain store through it.
    let p = m.as_ptr();
    unsafe { p.add(10).write_volatile(0xAB) };
    assert_eq!(contents(&f, 8192)[10], 0xAB);
    f.write_at(b"xyz", 4096).unwrap();
    let mut buf = [0u8; 3];
    m.read_at(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"xyz");
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn store_into_shared_page_copies_it_and_leaves_the_source_unchanged() {
    let fs = setup();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![7u8; 16384], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let va = a.map(0, 16384, MapAccess::ReadWrite).unwrap();
    let vb = b.map(0, 16384, MapAccess::ReadWrite).unwrap();
    let shared_block = match vb.page_state(1) {
        PageState::Block { phys, .. } => phys,
        other => panic!("{other:?}"),
    };
    assert_eq!(fs.page_share(shared_block), Some(PageShare::Shared { entries: 2 }));
    // A plain store into the clone's shared page: the fault handler copies it.
    unsafe { vb.as_ptr().add(4096 + 5).write_volatile(0x55) };
    assert_eq!(contents(&b, 16384)[4096 + 5], 0x55);
    assert!(contents(&a, 16384).iter().all(|&x| x == 7), "source changed");
    let mut byte = [0u8; 1];
    va.read_at(4096 + 5, &mut byte).unwrap();
    assert_eq!(byte[0], 7, "source view changed");
    assert_ne!(vb.page_state(1), va.page_state(1));
    assert_eq!(fs.page_share(shared_block), Some(PageShare::Single { ino: a.ino(), page: 1 }));
    // Only that block stopped being shared.
    let ext = fs.fiemap(&b).unwrap();
    let shared: u64 = ext.iter().filter(|e| e.shared).map(|e| e.length).sum();
    assert_eq!(shared, 12288);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn store_into_a_hole_allocates_a_block() {
    let fs = setup();
    let f = fs.open("/f", &rw()).unwrap();
    f.set_len(3 * 4096).unwrap();
    let m = f.map(0, 3 * 4096, MapAccess::ReadWrite).unwrap();
    assert_eq!(m.page_state(2), PageState::Hole);
    unsafe { m.as_ptr().add(2 * 4096).write_volatile(9) };
    assert!(matches!(m.page_state(2), PageState::Block { .. }));
    let c = contents(&f, 3 * 4096);
    assert_eq!(c[2 * 4096], 9);
    assert!(c[..2 * 4096].iter().all(|&x| x == 0));
    assert_eq!(f.metadata().unwrap().blocks, 8);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn reading_into_a_shared_view_page_does_not_deadlock() {
    let fs = setup();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![3u8; 4096], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&vec![9u8; 4096], 0).unwrap();
    let vb = b.map(0, 4096, MapAccess::ReadWrite).unwrap();
    // The destination buffer of read_at is the clone's shared page: filling it must fault and copy
    // without the library holding its lock.
    let buf = unsafe { std::slice::from_raw_parts_mut(vb.as_ptr(), 4096) };
    assert_eq!(src.read_at(buf, 0).unwrap(), 4096);
    assert!(contents(&b, 4096).iter().all(|&x| x == 9));
    assert!(contents(&a, 4096).iter().all(|&x| x == 3));
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn reflink_over_a_mapped_range_repoints_the_view() {
    let fs = setup();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![1u8; 8192], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    b.write_at(&vec![2u8; 8192], 0).unwrap();
    let vb = b.map(0, 8192, MapAccess::ReadWrite).unwrap();
    let va = a.map(0, 8192, MapAccess::ReadWrite).unwrap();
    fs.reflink(&a, 0, &b, 0, 8192).unwrap();
    let mut buf = vec![0u8; 8192];
    vb.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 1));
    // a's view must have turned read-only for the now-shared blocks: a store copies.
    assert!(matches!(
        va.page_state(0),
        PageState::Block { prot: ferrodax::dax::vm::PageProtection::ReadOnly, .. }
    ));
    unsafe { va.as_ptr().write_volatile(0xEE) };
    assert_eq!(contents(&b, 1)[0], 1);
    assert_eq!(contents(&a, 1)[0], 0xEE);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn views_need_a_pool_with_a_file_descriptor() {
    let backend = std::sync::Arc::new(ferrodax::pool::RecordingBackend::new(1 << 20));
    let fs = Fs::format(&Pool::from_backend(backend)).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    f.write_at(&[1], 0).unwrap();
    assert_eq!(f.map(0, 4096, MapAccess::Read).unwrap_err().errno(), libc::EOPNOTSUPP);
}

/// Resident memory of this process, in bytes (VmRSS).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_view_far_longer_than_its_file_costs_memory_in_proportion_to_the_file_not_the_view() {
    let fs = setup();
    let f = fs.open("/small", &rw()).unwrap();
    f.write_at(&[0x5a; 16384], 0).unwrap();
    let before = resident_bytes();
    // 64 GiB of view over 16 KiB of file: 16 M pages. A per-page state costs 16 bytes a page
    // (256 MiB); a state in proportion to the file costs a few entries.
    let view = f.map(0, 64 << 30, MapAccess::ReadWrite).unwrap();
    view.store_plain(100, b"hello").unwrap();
    let mut buf = [0u8; 5];
    view.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(view.page_state(10_000_000), PageState::PastEof);
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "a 64 GiB view of a 16 KiB file made the process {grown} bytes bigger");
    // Growing the file brings the new pages in; check sees every page as the file says.
    f.write_at(&[0x33; 4096], 1 << 20).unwrap();
    assert!(matches!(view.page_state(256), PageState::Block { .. }));
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn a_store_fault_that_gives_the_copy_to_a_hard_linked_setuid_sharer_keeps_its_names_links_mode_and_times() {
    // The clone's page is shown by no other view, so the clone keeps the shared block and the
    // source (two names, set-user-ID) is re-pointed at a copy: its bytes, names, link count, mode
    // and times must stay as they were, live and after a remount.
    let pool = Pool::memfd(16 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![7u8; 16384], 0).unwrap();
    fs.set_permissions("/a", 0o4755).unwrap();
    fs.hard_link("/a", "/a2").unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let vb = b.map(0, 16384, MapAccess::ReadWrite).unwrap();
    let PageState::Block { phys: shared_block, .. } = vb.page_state(1) else {
        panic!("page 1 shows no block")
    };
    let before = fs.metadata("/a").unwrap();
    // SAFETY: inside the view (4 pages of a file that long); the store faults and resumes.
    unsafe { vb.as_ptr().add(4096 + 5).write_volatile(0x55) };
    assert!(
        matches!(vb.page_state(1), PageState::Block { phys, .. } if phys == shared_block),
        "/b keeps its block"
    );
    assert_eq!(fs.page_share(shared_block), Some(PageShare::Single { ino: b.ino(), page: 1 }));
    let after = fs.metadata("/a").unwrap();
    let kept =
        |s: &ferrodax::Stat| (s.ino, s.mode, s.uid, s.gid, s.nlink, s.size, s.blocks, s.mtime_ns, s.ctime_ns);
    assert_eq!(kept(&after), kept(&before));
    assert_eq!(after.mode, 0o4755);
    assert_eq!(after.nlink, 2);
    drop(vb);
    let names: Vec<String> = fs.read_dir("/").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "a2", "b"]);
    assert!(fs.check().is_clean(), "{}", fs.check());
    drop((a, b, fs));
    let fs = Fs::mount(&pool).unwrap();
    let a2 = fs.open("/a2", OpenOptions::new().read(true)).unwrap();
    assert!(contents(&a2, 16384).iter().all(|&x| x == 7), "the source's bytes changed");
    let b = fs.open("/b", OpenOptions::new().read(true)).unwrap();
    assert_eq!(contents(&b, 16384)[4096 + 5], 0x55);
    assert_eq!(kept(&fs.metadata("/a").unwrap()), kept(&before));
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn a_store_fault_that_keeps_the_block_turns_every_read_write_view_of_that_page_writable_and_leaves_read_only_views_read_only(
) {
    // Three views of the clone's page (two read-write, one read-only) and none of the source's:
    // the clone keeps the shared block, the source takes the copy, and every view of the page
    // follows: both read-write views map it writable, the read-only view still shows it
    // read-only, and a store through the second read-write view lands without faulting.
    let fs = setup();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![7u8; 16384], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let v1 = b.map(0, 16384, MapAccess::ReadWrite).unwrap();
    let v2 = b.map(4096, 8192, MapAccess::ReadWrite).unwrap();
    let ro = b.map(0, 8192, MapAccess::Read).unwrap();
    let PageState::Block { phys: shared, .. } = v1.page_state(1) else { panic!("page 1 shows no block") };
    assert_eq!(v2.page_state(0), PageState::Block { phys: shared, prot: PageProtection::ReadOnly });
    // SAFETY: inside the view (4 pages of a file that long); the store faults and resumes.
    unsafe { v1.as_ptr().add(4096 + 5).write_volatile(0x55) };
    assert_eq!(
        v1.page_state(1),
        PageState::Block { phys: shared, prot: PageProtection::ReadWrite },
        "/b keeps its block"
    );
    assert_eq!(v2.page_state(0), PageState::Block { phys: shared, prot: PageProtection::ReadWrite });
    assert_eq!(ro.page_state(1), PageState::Block { phys: shared, prot: PageProtection::ReadOnly });
    v2.store_plain(6, &[0x66]).unwrap();
    let mut seen = [0u8; 2];
    ro.read_at(4096 + 5, &mut seen).unwrap();
    assert_eq!(seen, [0x55, 0x66], "the read-only view shows both stores");
    assert!(contents(&a, 16384).iter().all(|&x| x == 7), "the source's bytes changed");
    assert_eq!(fs.fiemap(&a).unwrap().iter().filter(|e| e.shared).map(|e| e.length).sum::<u64>(), 12288);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// A store fault's commit can fill the log: the fault handler then writes a checkpoint (which
/// zeroes log stretches) inside the signal handler, and the store completes. (When the handlers
/// ran on Rust's 8 KiB alternate signal stack, zeroing from a page-sized stack buffer overflowed
/// it and the kernel killed the process.)
#[test]
fn a_store_fault_whose_commit_writes_a_checkpoint_completes() {
    // A 64 MiB pool has a 1 MiB log: eight terminator stretches.
    let fs = Fs::format(&Pool::memfd(64 << 20).unwrap()).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    let pages = 256usize;
    a.write_at(&vec![7u8; pages * 4096], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    // Fill the log to a few KiB of its end with extended attributes.
    let free = |fs: &Fs| fs.read_lock().journal().log_free_bytes() as usize;
    let mut i = 0;
    while free(&fs) > 8 << 10 {
        let len = (free(&fs) - (6 << 10)).min(60 << 10);
        fs.set_xattr("/a", &format!("user.fill{i}"), &vec![1u8; len], 0).unwrap();
        i += 1;
    }
    let checkpoints = fs.read_lock().journal().stats.checkpoints;
    let vb = b.map(0, (pages * 4096) as u64, MapAccess::ReadWrite).unwrap();
    for page in 0..pages {
        // A plain store into a shared page: the fault handler copies it and commits.
        unsafe { vb.as_ptr().add(page * 4096 + 9).write_volatile(0x55) };
    }
    assert!(fs.read_lock().journal().stats.checkpoints > checkpoints, "a fault's commit wrote a checkpoint");
    let got = contents(&b, pages * 4096);
    assert!((0..pages).all(|p| got[p * 4096 + 9] == 0x55), "every store landed");
    assert!(contents(&a, pages * 4096).iter().all(|&x| x == 7), "source changed");
    assert!(fs.check().is_clean(), "{}", fs.check());
}
