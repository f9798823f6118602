//! Poisoned pool blocks at the file-system level: every owner reads EIO (or a short read up to the
//! first bad byte), dedupe and copy-on-write edges that would read poison fail with EIO and change
//! nothing, a whole-block pwrite recovers one owner, bad blocks are never handed out again, and
//! metadata on a bad block is moved off it without losing anything.

use ferrodax::{DedupeStatus, DedupeTarget, Fs, OpenOptions, Pool};

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn block_of(fs: &Fs, f: &ferrodax::File, file_block: u64) -> u64 {
    fs.read_lock().block_of(f.ino(), file_block).expect("mapped")
}

fn poison(fs: &Fs, block: u64) -> ferrodax::fs::BadBlockOutcome {
    fs.exclusive().record_bad_blocks(block, 1).unwrap()
}

#[test]
fn every_owner_of_a_shared_bad_block_reads_eio_until_it_rewrites_it() {
    let pool = Pool::memfd(8 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![0x61; 4 * 4096], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let bad = block_of(&fs, &a, 2);
    let out = poison(&fs, bad);
    assert_eq!(out.newly_bad, 1);
    assert_eq!(poison(&fs, bad).already_bad, 1, "idempotent");
    let mut buf = vec![0u8; 4 * 4096];
    for f in [&a, &b] {
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 2 * 4096, "short read up to the bad block");
        assert_eq!(f.read_at(&mut buf, 2 * 4096 + 10).unwrap_err().errno(), libc::EIO);
        assert_eq!(f.read_at(&mut buf[..4096], 3 * 4096).unwrap(), 4096);
    }
    // Dedupe compare over poison: EIO for that destination, nothing shared.
    let c = fs.open("/c", &rw()).unwrap();
    c.write_at(&vec![0x61; 4 * 4096], 0).unwrap();
    let st = fs.dedupe(&a, 0, 4 * 4096, &[DedupeTarget { file: &c, offset: 0 }]).unwrap();
    assert!(matches!(&st[0], DedupeStatus::Failed(e) if e.errno() == libc::EIO), "{st:?}");
    // A partial write needs the bad block's other bytes: EIO, nothing changes.
    assert_eq!(b.write_at(b"xy", 2 * 4096 + 100).unwrap_err().errno(), libc::EIO);
    assert_eq!(block_of(&fs, &b, 2), bad);
    // A whole-block write recovers b only.
    b.write_at(&vec![0x62; 4096], 2 * 4096).unwrap();
    assert_eq!(b.read_at(&mut buf, 0).unwrap(), 4 * 4096);
    assert_eq!(&buf[2 * 4096..3 * 4096], &vec![0x62; 4096][..]);
    assert_eq!(a.read_at(&mut buf, 2 * 4096).unwrap_err().errno(), libc::EIO);
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    // a rewrites too: the bad block loses its last owner and is never handed out again.
    a.write_at(&vec![0x63; 4096], 2 * 4096).unwrap();
    let big = fs.open("/big", &rw()).unwrap();
    let mut off = 0;
    while big.write_at(&vec![1u8; 1 << 16], off).is_ok() {
        off += 1 << 16;
    }
    let st = fs.read_lock();
    for e in st.fiemap(big.ino()).unwrap() {
        let first = e.physical / 4096;
        assert!(!(first..first + e.length / 4096).contains(&bad), "bad block handed out again");
    }
    drop(st);
    assert!(fs.check().is_clean(), "{}", fs.check());
    drop((a, b, c, big));
    let fs = Fs::mount(&pool).unwrap();
    assert!(
        fs.read_lock().bad_blocks().iter().any(|&(s, l)| (s..s + l).contains(&bad)),
        "bad blocks survive remount"
    );
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn bad_log_and_checkpoint_blocks_are_moved_off_without_loss() {
    let pool = Pool::memfd(8 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![5u8; 3 * 4096], 0).unwrap();
    let find = |name: &str| {
        let layout = fs.read_lock().metadata_layout();
        layout.iter().find(|m| m.0.to_string() == name).unwrap().1
    };
    let log_start = find("log");
    let out = poison(&fs, log_start + 1);
    assert_eq!(out.relocated, vec!["log".to_string()]);
    let ckpt = find("checkpoint");
    let out = poison(&fs, ckpt);
    assert!(out.relocated.contains(&"checkpoint".to_string()), "{out:?}");
    a.write_at(b"after", 0).unwrap();
    assert!(fs.check().is_clean(), "{}", fs.check());
    drop(a);
    let fs = Fs::mount(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    let mut buf = vec![0u8; 3 * 4096];
    assert_eq!(a.read_at(&mut buf, 0).unwrap(), 3 * 4096);
    assert_eq!(&buf[..5], b"after");
    assert!(buf[5..].iter().all(|&x| x == 5));
    let layout = fs.read_lock().metadata_layout();
    assert!(
        layout.iter().all(|m| !(m.1..m.1 + m.2).contains(&(log_start + 1))),
        "log still on the bad block"
    );
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// A superblock copy on bad memory is recorded in the surviving copy and never written again;
/// the pool keeps working and remounts. With both copies bad the file system goes read-only with
/// an error naming the lost structure, and reads keep working.
#[test]
fn superblock_copies_on_bad_memory_degrade_to_read_only_only_when_both_are_lost() {
    use ferrodax::memfail::FailureFlags;
    let pool = Pool::memfd(8 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(b"kept", 0).unwrap();
    let report = fs.memory_failure(0, 4096, FailureFlags::default()).unwrap();
    assert_eq!(report.recorded.lost_superblock_copies, vec![0]);
    assert!(report.recorded.lost.is_empty());
    let copy0 = pool.backend().clone();
    let before: Vec<u8> = ferrodax::pool::read_vec(copy0.as_ref(), 0, 4096).unwrap();
    a.write_at(b"more", 4).unwrap();
    fs.exclusive().checkpoint().unwrap();
    assert_eq!(
        ferrodax::pool::read_vec(copy0.as_ref(), 0, 4096).unwrap(),
        before,
        "a lost copy is never written"
    );
    assert!(fs.check().is_clean(), "{}", fs.check());
    drop(a);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert!(fs.read_lock().mount_notes().repaired.is_empty(), "{:?}", fs.read_lock().mount_notes());
    let a = fs.open("/a", &rw()).unwrap();
    let report = fs.memory_failure(4096, 4096, FailureFlags::default()).unwrap();
    assert_eq!(report.recorded.lost.len(), 1, "{report}");
    assert!(report.recorded.lost[0].contains("superblock"), "{report}");
    let err = a.write_at(b"x", 0).unwrap_err();
    assert_eq!(err.errno(), libc::EROFS);
    assert!(err.to_string().contains("superblock"), "{err}");
    let mut buf = [0u8; 8];
    assert_eq!(a.read_at(&mut buf, 0).unwrap(), 8);
    assert_eq!(&buf, b"keptmore");
}

#[test]
fn a_sysfs_badblocks_list_is_imported_as_memory_failures() {
    let pool = Pool::memfd(8 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![1u8; 3 * 4096], 0).unwrap();
    let bad = block_of(&fs, &a, 1);
    let list = format!("# pmem0\n{} 1\n", bad * 8 + 3);
    let reports = fs.import_badblocks(&list, "badblocks").unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].files.len(), 1);
    assert_eq!(fs.bad_blocks(), vec![(bad, 1)]);
    let mut buf = vec![0u8; 4096];
    assert_eq!(a.read_at(&mut buf, 4096).unwrap_err().errno(), libc::EIO);
    assert!(fs.import_badblocks("12", "list").unwrap_err().to_string().contains("list:1"));
}
