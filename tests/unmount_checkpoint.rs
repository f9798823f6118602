//! When unmount writes a checkpoint: when replaying the log would cost the next mount more than
//! reading a checkpoint. A record of a few bytes that removes thousands of extents costs a replay
//! what those extents cost, so a process that removes big fragmented files leaves a checkpoint
//! even though its log is tiny; one that only clones them does not (replaying a clone costs what
//! reading its extents from a checkpoint would); one that dedupes copies onto their original
//! does, though their number of extents stays the same (each is removed and another added).

use ferrodax::pool::RecordingBackend;
use ferrodax::{DedupeStatus, DedupeTarget, Fs, OpenOptions, Pool};
use std::sync::Arc;

const BLOCK: u64 = 4096;
/// Extents of the fragmented file.
const EXTENTS: u64 = 2048;
const COPIES: usize = 4;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// Mounts a copy of `image`, runs `work`, says whether unmount is due to checkpoint, unmounts and
/// returns the pool's image afterwards and how many records the mount replayed.
fn session(image: Vec<u8>, work: impl FnOnce(&Fs)) -> (Vec<u8>, u64, bool) {
    let backend = Arc::new(RecordingBackend::from_image(image));
    let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
    let replayed = fs.read_lock().journal().stats.replayed;
    work(&fs);
    let due = fs.read_lock().checkpoint_due_at_unmount();
    drop(fs);
    (backend.volatile_image(), replayed, due)
}

/// A pool whose checkpoint holds /big, a file of `EXTENTS` one-block extents (every other block).
fn fragmented_pool() -> Vec<u8> {
    let backend = Arc::new(RecordingBackend::new(64 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let big = fs.open("/big", &rw()).unwrap();
    for i in 0..EXTENTS {
        big.write_at(&[i as u8 | 1; BLOCK as usize], 2 * i * BLOCK).unwrap();
    }
    fs.checkpoint().unwrap();
    drop(big);
    drop(fs);
    backend.volatile_image()
}

#[test]
fn removing_big_fragmented_files_leaves_a_checkpoint_and_cloning_them_does_not() {
    let (image, _, _) = session(fragmented_pool(), |_| {});
    let (image, replayed, due_after_clones) = session(image, |fs| {
        let big = fs.open("/big", &rw()).unwrap();
        let len = big.metadata().unwrap().size;
        for c in 0..COPIES {
            let copy = fs.open(&format!("/copy{c}"), &rw()).unwrap();
            fs.reflink(&big, 0, &copy, 0, len).unwrap();
        }
        assert_eq!(fs.fiemap(&big).unwrap().len() as u64, EXTENTS);
    });
    assert_eq!(replayed, 0, "the fragmented pool's writer left a checkpoint");
    assert!(!due_after_clones, "clones replay as cheaply as a checkpoint reads them");
    let (image, replayed, due_after_removals) = session(image, |fs| {
        for c in 0..COPIES {
            fs.remove_file(&format!("/copy{c}")).unwrap();
        }
    });
    assert_eq!(replayed as usize, 2 * COPIES, "the creates and clones were left in the log");
    assert!(due_after_removals, "removing {COPIES} files of {EXTENTS} extents each leaves a checkpoint");
    let (_, replayed, _) = session(image, |fs| {
        let report = fs.check();
        assert!(report.is_clean(), "{report}");
        let big = fs.open("/big", &rw()).unwrap();
        assert_eq!(fs.fiemap(&big).unwrap().len() as u64, EXTENTS);
        assert!(fs.open("/copy0", &OpenOptions::new().read(true).clone()).is_err());
    });
    assert_eq!(replayed, 0, "the removals' unmount wrote a checkpoint");
}

#[test]
fn deduping_fragmented_copies_onto_their_original_leaves_a_checkpoint() {
    // Each copy has /big's layout in blocks of its own (a reflink, then unshared): a dedupe
    // against /big replaces every one of its EXTENTS extents by one of /big's, so the count of
    // extents does not change while replaying the 41-byte record removes and adds EXTENTS each.
    let (image, _, _) = session(fragmented_pool(), |fs| {
        let big = fs.open("/big", &rw()).unwrap();
        let len = big.metadata().unwrap().size;
        for c in 0..COPIES {
            let copy = fs.open(&format!("/copy{c}"), &rw()).unwrap();
            fs.reflink(&big, 0, &copy, 0, len).unwrap();
            fs.unshare(&copy, 0, len).unwrap();
            assert!(fs.fiemap(&copy).unwrap().iter().all(|e| !e.shared));
        }
        fs.checkpoint().unwrap();
    });
    let (image, replayed, due_after_dedupes) = session(image, |fs| {
        let big = fs.open("/big", &rw()).unwrap();
        let len = big.metadata().unwrap().size;
        for c in 0..COPIES {
            let copy = fs.open(&format!("/copy{c}"), &rw()).unwrap();
            let status = fs.dedupe(&big, 0, len, &[DedupeTarget { file: &copy, offset: 0 }]).unwrap();
            assert!(
                matches!(status[..], [DedupeStatus::Same { bytes_deduped }] if bytes_deduped == len),
                "{status:?}"
            );
            assert_eq!(fs.fiemap(&copy).unwrap().len() as u64, EXTENTS);
        }
    });
    assert_eq!(replayed, 0, "the copies' writer left a checkpoint");
    assert!(due_after_dedupes, "deduping {COPIES} copies of {EXTENTS} extents each leaves a checkpoint");
    let (_, replayed, _) = session(image, |fs| {
        let report = fs.check();
        assert!(report.is_clean(), "{report}");
        let copy = fs.open("/copy0", &rw()).unwrap();
        assert!(fs.fiemap(&copy).unwrap().iter().all(|e| e.shared));
    });
    assert_eq!(replayed, 0, "the dedupes' unmount wrote a checkpoint");
}
