//! The ownership map mount leaves unbuilt, and the `Clone` mutation on it: mount and lookups do
//! not build it, a reflink into a new file changes only extent maps (not building it) and
//! replays to the very same state, concurrent readers build it once, every kind of first change
//! after mount leaves the same owners and free space whether the map was built before it or
//! not, and replay refuses `Clone` records that would multiply extents past what the pool could
//! ever checkpoint.

use ferrodax::pool::RecordingBackend;
use ferrodax::{DedupeTarget, Fs, OpenOptions, Pool};
use std::sync::Arc;

const BLOCK: u64 = 4096;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed.wrapping_mul(37)).collect()
}

fn mount(image: Vec<u8>, read_only: bool) -> (Arc<RecordingBackend>, Fs) {
    let backend = Arc::new(RecordingBackend::from_image(image));
    let pool = Pool::from_backend(backend.clone());
    let fs = if read_only { Fs::mount_read_only(&pool) } else { Fs::mount(&pool) }.unwrap();
    (backend, fs)
}

fn built(fs: &Fs) -> bool {
    fs.read_lock().state().owners_built()
}

/// A pool whose whole content is in a checkpoint (empty log): /a fragmented (alternate blocks
/// shared with /b), /c plain.
fn checkpointed_pool() -> Vec<u8> {
    let backend = Arc::new(RecordingBackend::new(8 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&pattern(1, 16 * BLOCK as usize), 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    b.write_at(&pattern(2, 16 * BLOCK as usize), 0).unwrap();
    for i in (0..16).step_by(2) {
        fs.reflink(&b, i * BLOCK, &a, i * BLOCK, BLOCK).unwrap();
    }
    fs.open("/c", &rw()).unwrap().write_at(&pattern(3, 4 * BLOCK as usize), 0).unwrap();
    fs.checkpoint().unwrap();
    drop((a, b));
    drop(fs);
    backend.volatile_image()
}

#[test]
fn a_mount_and_lookups_leave_the_ownership_map_unbuilt() {
    let image = checkpointed_pool();
    for read_only in [true, false] {
        let (_, fs) = mount(image.clone(), read_only);
        assert!(!built(&fs), "mount built the map (read_only {read_only})");
        let _ = fs.metadata("/a").unwrap();
        let _ = fs.read_dir("/").unwrap();
        let mut buf = vec![0; 4096];
        fs.open("/a", &OpenOptions::new().read(true).clone()).unwrap().read_at(&mut buf, 0).unwrap();
        assert!(!built(&fs), "a lookup or read built the map (read_only {read_only})");
    }
}

#[test]
fn a_reflink_into_a_new_file_on_an_unbuilt_map_replays_to_the_same_state() {
    let image = checkpointed_pool();
    let (backend, fs) = mount(image, false);
    let a = fs.open("/a", &rw()).unwrap();
    let n = fs.open("/n", &rw()).unwrap();
    // Past EOF of /n twice (holes), then onto itself in another hole, then a dedupe over mapped blocks.
    fs.reflink(&a, 0, &n, 0, 16 * BLOCK).unwrap();
    fs.reflink(&a, 2 * BLOCK, &n, 20 * BLOCK, 6 * BLOCK).unwrap();
    assert!(!built(&fs), "a reflink into a hole built the map");
    fs.reflink(&n, 0, &n, 32 * BLOCK, 4 * BLOCK).unwrap();
    assert!(!built(&fs));
    let live_extents = fs.fiemap(&n).unwrap();
    let live_state = {
        let g = fs.read_lock();
        let s = g.state();
        (s.owners().clone(), s.extent_count, s.free.free_blocks())
    };
    // The crash image: whatever is durable now (no checkpoint: the log is small).
    let crashed = backend.durable_image();
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    let (_, again) = mount(crashed, false);
    let n2 = again.open("/n", &rw()).unwrap();
    assert_eq!(again.fiemap(&n2).unwrap(), live_extents);
    let g = again.read_lock();
    let s = g.state();
    assert_eq!(*s.owners(), live_state.0);
    assert_eq!(s.extent_count, live_state.1);
    assert_eq!(s.free.free_blocks(), live_state.2);
    drop(g);
    let report = again.check();
    assert!(report.is_clean(), "{report}");
    // Dedupe on the unbuilt map of a fresh mount: over mapped blocks.
    let c2 = again.open("/c", &rw()).unwrap();
    let d = again.open("/d", &rw()).unwrap();
    d.write_at(&pattern(3, 4 * BLOCK as usize), 0).unwrap();
    again.dedupe(&c2, 0, 4 * BLOCK, &[DedupeTarget { file: &d, offset: 0 }]).unwrap();
    assert!(again.check().is_clean());
}

#[test]
fn many_first_readers_of_an_unbuilt_map_see_the_same_owners() {
    let image = checkpointed_pool();
    let (_, fs) = mount(image, true);
    let fs = Arc::new(fs);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let fs = fs.clone();
            std::thread::spawn(move || fs.owners(0, 64 * BLOCK).len())
        })
        .collect();
    let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    assert!(fs.check().is_clean());
}

/// A corrupt but checksummed log: each record clones all of /a onto the hole after it, doubling
/// its extents. `doublings` records of 72 bytes give /a 2^doublings times its extents.
fn doubling_records(doublings: u32) -> Vec<Vec<ferrodax::format::record::Mutation>> {
    use ferrodax::format::record::Mutation;
    let mut attrs = ferrodax::fuzzing::replay::base_attrs("/a");
    attrs.size = ferrodax::format::MAX_FILE_SIZE;
    let a = attrs.ino;
    let mut records = vec![vec![Mutation::PutInode(attrs)]];
    for k in 0..doublings {
        let len = 8u64 << k;
        records.push(vec![Mutation::Clone { src: a, src_block: 0, dst: a, dst_block: len, len }]);
    }
    records
}

#[test]
fn a_log_whose_clones_could_never_be_checkpointed_in_the_pool_is_refused() {
    // 14 records (about 1 KiB of log) of a 1 MiB pool: the replayed /a would have over 2^14 times
    // its extents, a checkpoint of more than the pool. No live operation reaches that state
    // (ensure_metadata_room), so replay must refuse it as corrupt instead of building it: with a
    // few more records the same log would ask for exponentially more memory and time at mount.
    let outcome = ferrodax::fuzzing::replay::replay_records(&doubling_records(14));
    assert!(
        matches!(outcome.read_only, ferrodax::fuzzing::replay::ReplayVerdict::Refused(_)),
        "{:?}",
        outcome.read_only
    );
}

/// What a state says of ownership and space: the ownership map, the free runs and the extent count.
type Accounting = (ferrodax::fs::ownership::OwnerMap, Vec<(u64, u64)>, u64);

fn accounting(fs: &Fs) -> Accounting {
    let g = fs.read_lock();
    let s = g.state();
    (s.owners().clone(), s.free.runs().collect(), s.extent_count)
}

/// Every kind of change a first operation after mount can make, each run once on a fresh mount
/// whose map is unbuilt and once on one whose map was built right after mount: the ownership map,
/// free space and extent count end up the same, `check()` is clean in both, and the unbuilt
/// session's durable image mounts to the same accounting.
#[test]
fn every_first_change_after_mount_leaves_the_same_owners_built_or_not() {
    use ferrodax::fs::falloc::{
        FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
        FALLOC_FL_ZERO_RANGE,
    };
    let image = checkpointed_pool();
    // A block of /a shared with /b (even blocks are /b's), found on a mount of its own: fiemap
    // builds the map.
    let shared_phys = {
        let (_, fs) = mount(image.clone(), true);
        let a = fs.open("/a", &OpenOptions::new().read(true).clone()).unwrap();
        let extents = fs.fiemap(&a).unwrap();
        extents.iter().find(|e| e.shared).expect("/a shares blocks with /b").physical
    };
    type Op = Box<dyn Fn(&Fs)>;
    let open = |fs: &Fs, path: &str| fs.open(path, &rw()).unwrap();
    let ops: Vec<(&str, Op)> = vec![
        ("remove a shared file", Box::new(move |fs| fs.remove_file("/a").unwrap())),
        ("remove a private file", Box::new(move |fs| fs.remove_file("/c").unwrap())),
        ("rename over a file", Box::new(move |fs| fs.rename("/c", "/b").unwrap())),
        ("truncate", Box::new(move |fs| open(fs, "/a").set_len(3 * BLOCK + 5).unwrap())),
        ("grow", Box::new(move |fs| open(fs, "/a").set_len(64 * BLOCK).unwrap())),
        (
            "overwrite a shared block",
            Box::new(move |fs| open(fs, "/a").write_at(&[9; 100], 0).map(drop).unwrap()),
        ),
        (
            "write past EOF",
            Box::new(move |fs| open(fs, "/c").write_at(&[7; 5000], 20 * BLOCK).map(drop).unwrap()),
        ),
        (
            "punch",
            Box::new(move |fs| {
                open(fs, "/a")
                    .fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BLOCK, 5 * BLOCK)
                    .unwrap()
            }),
        ),
        (
            "zero range",
            Box::new(move |fs| open(fs, "/a").fallocate(FALLOC_FL_ZERO_RANGE, 100, 3 * BLOCK).unwrap()),
        ),
        (
            "collapse",
            Box::new(move |fs| open(fs, "/a").fallocate(FALLOC_FL_COLLAPSE_RANGE, BLOCK, 2 * BLOCK).unwrap()),
        ),
        (
            "insert",
            Box::new(move |fs| open(fs, "/a").fallocate(FALLOC_FL_INSERT_RANGE, BLOCK, 2 * BLOCK).unwrap()),
        ),
        ("allocate", Box::new(move |fs| open(fs, "/c").fallocate(0, 8 * BLOCK, 4 * BLOCK).unwrap())),
        (
            "reflink into a hole",
            Box::new(move |fs| {
                fs.reflink(&open(fs, "/a"), 0, &open(fs, "/n"), 0, 16 * BLOCK).unwrap();
            }),
        ),
        (
            "reflink over mapped blocks",
            Box::new(move |fs| {
                fs.reflink(&open(fs, "/a"), 0, &open(fs, "/c"), 0, 4 * BLOCK).unwrap();
            }),
        ),
        (
            "reflink onto itself",
            Box::new(move |fs| {
                let a = open(fs, "/a");
                fs.reflink(&a, 0, &a, 32 * BLOCK, 8 * BLOCK).unwrap();
            }),
        ),
        ("unshare", Box::new(move |fs| fs.unshare(&open(fs, "/a"), 0, 16 * BLOCK).unwrap())),
        (
            "dedupe",
            Box::new(move |fs| {
                let d = open(fs, "/d");
                d.write_at(&pattern(3, 4 * BLOCK as usize), 0).unwrap();
                fs.dedupe(&open(fs, "/c"), 0, 4 * BLOCK, &[DedupeTarget { file: &d, offset: 0 }]).unwrap();
            }),
        ),
        (
            "memory failure",
            Box::new(move |fs| {
                let _ = fs.memory_failure(shared_phys, BLOCK, Default::default()).unwrap();
            }),
        ),
        ("checkpoint", Box::new(move |fs| fs.checkpoint().unwrap())),
    ];
    for (what, op) in &ops {
        let (unbuilt_backend, unbuilt) = mount(image.clone(), false);
        assert!(!built(&unbuilt), "{what}: mount built the map");
        op(&unbuilt);
        let (_, prebuilt) = mount(image.clone(), false);
        let _ = prebuilt.space_usage().unwrap();
        assert!(built(&prebuilt), "{what}: space_usage left the map unbuilt");
        op(&prebuilt);
        let expected = accounting(&prebuilt);
        assert_eq!(accounting(&unbuilt), expected, "{what}: built after the change differs");
        for fs in [&unbuilt, &prebuilt] {
            let report = fs.check();
            assert!(report.is_clean(), "{what}: {report}");
        }
        drop(unbuilt);
        let (_, again) = mount(unbuilt_backend.durable_image(), false);
        assert_eq!(accounting(&again), expected, "{what}: the remount differs");
        let report = again.check();
        assert!(report.is_clean(), "{what}: after remount {report}");
    }
}
