//! End-to-end smoke test of the core: write, reflink, CoW write, dedupe, owners, remount, check.

use ferrodax::{DedupeTarget, Fs, OpenOptions, OwnerKind, Pool};

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

#[test]
fn reflink_cow_dedupe_and_remount_keep_contents_and_owners_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.pool");
    let pool = Pool::create(&path, 8 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![0x61; 16384], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    assert_eq!(fs.reflink(&a, 0, &b, 0, 0).unwrap(), 16384);
    let ext = fs.fiemap(&a).unwrap();
    assert!(ext.iter().all(|e| e.shared));
    // CoW write into b: only that block stops being shared.
    b.write_at(b"hello", 4100).unwrap();
    let mut buf = vec![0; 16384];
    a.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&x| x == 0x61));
    b.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[4100..4105], b"hello");
    assert_eq!(buf[4096], 0x61);
    assert_eq!(buf[4105], 0x61);
    let phys_a0 = ext[0].physical;
    let owners = fs.owners(phys_a0, 4096);
    assert_eq!(owners.len(), 2, "{owners:?}");
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    // Dedupe a fresh copy back into sharing.
    let c = fs.open("/c", &rw()).unwrap();
    c.write_at(&vec![0x61; 16384], 0).unwrap();
    let st = fs.dedupe(&a, 0, 16384, &[DedupeTarget { file: &c, offset: 0 }]).unwrap();
    assert!(matches!(st[0], ferrodax::DedupeStatus::Same { bytes_deduped: 16384 }), "{st:?}");
    let owners = fs.owners(phys_a0, 4096);
    let mut inos: Vec<u64> = owners
        .iter()
        .filter_map(|o| match &o.owner {
            OwnerKind::File { ino, .. } => Some(*ino),
            _ => None,
        })
        .collect();
    inos.sort();
    assert_eq!(inos, vec![a.ino(), b.ino(), c.ino()]);
    assert!(fs.check().is_clean());
    drop((a, b, c));
    fs.remove_file("/b").unwrap();
    // The pool has one read-write owner at a time: the first opener lets go before the remount.
    drop((fs, pool));
    let fs = Fs::mount(&Pool::open(&path).unwrap()).unwrap();
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    let c = fs.open("/c", &rw()).unwrap();
    c.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&x| x == 0x61));
    assert_eq!(fs.owners(phys_a0, 4096).len(), 2);
}

#[test]
fn many_operations_force_checkpoints_and_replay_matches() {
    let pool = Pool::memfd(4 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    for i in 0..300u64 {
        let f = fs.open(&format!("/f{}", i % 17), &rw()).unwrap();
        f.write_at(&[i as u8; 1000], i * 333 % 20000).unwrap();
        if i % 7 == 0 {
            f.set_len(i * 100 % 9000).unwrap();
        }
    }
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    let fs2 = Fs::mount_read_only(&pool).unwrap();
    for i in 0..17 {
        let p = format!("/f{i}");
        assert_eq!(fs.metadata(&p).unwrap(), fs2.metadata(&p).unwrap());
    }
}
