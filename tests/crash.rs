//! Guards SPEC section 6 (durability): every operation is atomic under power failure and durable
//! when it returns.
//!
//! Each test starts from a populated pool on a recording backend (files with private, reflinked and
//! deduped blocks, directories), runs one operation with crash sampling on, and then, for every
//! crash image sampled at every fence (the durable lines plus random subsets of the lines not yet
//! durable): the image mounts read-only and read-write, check() is clean, and the whole tree (every
//! path, kind, size, byte, and extent mapping with its shared flags) equals the tree before the
//! operation or the tree after it, never a mix. After the operation returns nothing may be left
//! unpersisted, and the durable image alone must show the new tree. Operations that write a
//! checkpoint (a full log, a transaction larger than the log) are crashed too, and so is recovery
//! itself (orphan reclaim, superblock repair at mount).

use ferrodax::pool::{CrashImage, RecordingBackend};
use ferrodax::{DedupeTarget, File, Fs, OpenOptions, Pool};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Small pools keep every image cheap: 256 blocks, a 16-block log.
const POOL_BYTES: u64 = 1 << 20;
/// Random mixes of unflushed lines sampled at every fence (besides none and all of them).
const RANDOM_SUBSETS: u32 = 32;
const BLOCK: u64 = 4096;

/// One object of the tree as a user sees it, plus where its bytes live and which are shared
/// (so that reflink, dedupe and unshare, which change no byte, are visible too).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { bytes: Vec<u8>, extents: Vec<ferrodax::FiemapExtent> },
}

/// Every path of a mounted file system with what it holds.
type Tree = BTreeMap<String, Node>;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed.wrapping_mul(37)).collect()
}

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn ro() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true);
    o
}

fn tree(fs: &Fs) -> Tree {
    fn walk(fs: &Fs, dir: &str, out: &mut Tree) {
        for e in fs.read_dir(dir).expect("read_dir") {
            let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
            let meta = fs.metadata(&path).expect("metadata");
            if meta.kind == ferrodax::format::record::InodeKind::Dir {
                out.insert(path.clone(), Node::Dir);
                walk(fs, &path, out);
            } else {
                let f = fs.open(&path, &ro()).expect("open");
                let mut bytes = vec![0; meta.size as usize];
                f.read_exact_at(&mut bytes, 0).expect("read");
                let extents = fs.fiemap(&f).expect("fiemap");
                out.insert(path, Node::File { bytes, extents });
            }
        }
    }
    let mut out = Tree::new();
    walk(fs, "/", &mut out);
    out
}

/// A populated pool on a recording backend.
struct Fixture {
    backend: Arc<RecordingBackend>,
    fs: Fs,
}

impl Fixture {
    /// /a (5 blocks + 100 bytes), /b sharing a's first 3 blocks with one CoW'd block, /c private,
    /// /dir/d sharing 2 blocks with /a by dedupe, /dir/empty, /victim, /target, /twin (same bytes
    /// as /c's first 2 blocks, for dedupe).
    fn new() -> Fixture {
        let backend = Arc::new(RecordingBackend::new(POOL_BYTES));
        let fs = Fs::format(&Pool::from_backend(backend.clone())).expect("format");
        fs.create_dir("/dir").unwrap();
        fs.create_dir("/dir/empty").unwrap();
        let a = fs.open("/a", &rw()).unwrap();
        a.write_at(&pattern(1, 5 * BLOCK as usize + 100), 0).unwrap();
        let b = fs.open("/b", &rw()).unwrap();
        fs.reflink(&a, 0, &b, 0, 3 * BLOCK).unwrap();
        b.write_at(&pattern(2, 300), BLOCK + 50).unwrap();
        let c = fs.open("/c", &rw()).unwrap();
        c.write_at(&pattern(3, 3 * BLOCK as usize + 10), 0).unwrap();
        let d = fs.open("/dir/d", &rw()).unwrap();
        d.write_at(&pattern(1, 5 * BLOCK as usize), 0).unwrap();
        let status = fs.dedupe(&a, 0, 2 * BLOCK, &[DedupeTarget { file: &d, offset: 0 }]).unwrap();
        assert!(matches!(status[0], ferrodax::DedupeStatus::Same { .. }), "{status:?}");
        fs.open("/victim", &rw()).unwrap().write_at(&pattern(4, 2 * BLOCK as usize + 1), 0).unwrap();
        fs.open("/target", &rw()).unwrap().write_at(&pattern(5, 700), 0).unwrap();
        fs.open("/twin", &rw()).unwrap().write_at(&pattern(3, 2 * BLOCK as usize), 0).unwrap();
        let report = fs.check();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.shared_blocks, 3, "the fixture must share blocks: {report}");
        Fixture { backend, fs }
    }

    fn open(&self, path: &str) -> File {
        self.fs.open(path, &rw()).unwrap()
    }
}

fn mount_image(bytes: &[u8], read_only: bool) -> ferrodax::Result<Fs> {
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(bytes.to_vec())));
    if read_only {
        Fs::mount_read_only(&pool)
    } else {
        Fs::mount(&pool)
    }
}

/// Which of the two trees a crash image showed.
#[derive(Debug, Default)]
struct Seen {
    before: usize,
    after: usize,
}

/// Mounts one crash image both ways and checks it shows exactly `before` or exactly `after`.
fn check_image(what: &str, image: &CrashImage, before: &Tree, after: &Tree, seen: &mut Seen) {
    let at = format!("{what}: crash image at fence {} variant {}", image.fence, image.variant);
    let mut trees = Vec::new();
    for read_only in [true, false] {
        let fs = mount_image(&image.bytes, read_only)
            .unwrap_or_else(|e| panic!("{at} (read_only {read_only}): mount failed: {e}"));
        let report = fs.check();
        assert!(report.is_clean(), "{at} (read_only {read_only}): check:\n{report}");
        trees.push(tree(&fs));
    }
    assert_eq!(trees[0], trees[1], "{at}: read-only and read-write mounts disagree");
    if trees[0] == *before {
        seen.before += 1;
    } else if trees[0] == *after {
        seen.after += 1;
    } else {
        panic!("{at}: neither before nor after:\n{}", describe_mix(before, after, &trees[0]));
    }
}

/// Names the paths where `got` differs from `before` and from `after`.
fn describe_mix(before: &Tree, after: &Tree, got: &Tree) -> String {
    let summary = |node: Option<&Node>| match node {
        None => "absent".to_string(),
        Some(Node::Dir) => "directory".to_string(),
        Some(Node::File { bytes, extents }) => format!("{} bytes in {} extents", bytes.len(), extents.len()),
    };
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> =
        before.keys().chain(after.keys()).chain(got.keys()).collect();
    for path in paths {
        let (b, a, g) = (before.get(path), after.get(path), got.get(path));
        if g != b || g != a {
            let first_diff = |other: Option<&Node>| match (g, other) {
                (Some(Node::File { bytes: x, .. }), Some(Node::File { bytes: y, .. })) => x
                    .iter()
                    .zip(y)
                    .position(|(p, q)| p != q)
                    .map_or(String::new(), |i| format!(" (bytes differ from offset {i})")),
                _ => String::new(),
            };
            let same_extents = |other: Option<&Node>| match (g, other) {
                (Some(Node::File { extents: x, .. }), Some(Node::File { extents: y, .. })) if x != y => {
                    " (extents differ)"
                }
                _ => "",
            };
            out += &format!(
                "{path}:\n  before {}\n  after  {}\n  got    {}\n  vs before{}{}; vs after{}{}\n",
                summary(b),
                summary(a),
                summary(g),
                first_diff(b),
                same_extents(b),
                first_diff(a),
                same_extents(a)
            );
        }
    }
    out
}

/// Runs `op` on a fresh fixture prepared by `setup`, crashing it at every fence.
fn crash_test<S>(what: &str, setup: impl FnOnce(&Fixture) -> S, op: impl FnOnce(&Fixture, S)) {
    let fx = Fixture::new();
    let state = setup(&fx);
    assert_eq!(fx.backend.unpersisted_lines(), 0, "{what}: setup left lines unpersisted");
    let before = tree(&fx.fs);
    let seed =
        what.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    fx.backend.start_sampling(RANDOM_SUBSETS, seed);
    op(&fx, state);
    let images = fx.backend.take_images();
    assert_eq!(fx.backend.unpersisted_lines(), 0, "{what}: the operation returned before it was durable");
    let after = tree(&fx.fs);
    assert_ne!(before, after, "{what}: the operation changed nothing (the test would prove nothing)");
    let report = fx.fs.check();
    assert!(report.is_clean(), "{what}: live check:\n{report}");

    // Durable when it returns: the durable image alone shows the new tree.
    let durable = mount_image(&fx.backend.durable_image(), true).expect("durable image mounts");
    assert_eq!(tree(&durable), after, "{what}: the durable image lost the operation");

    let mut seen = Seen::default();
    for image in &images {
        check_image(what, image, &before, &after, &mut seen);
    }
    // Variant 0 of the first fence is the pool before the commit; variant 1 of the last fence has
    // the whole record: both trees must have been observed, or the sampling missed the operation.
    assert!(seen.before > 0 && seen.after > 0, "{what}: sampled only one side: {seen:?}");
    // Every operation commits at least once: a fence ordering its data, one making its record
    // durable, each sampled as none, all and RANDOM_SUBSETS random mixes of the pending lines.
    assert!(images.len() >= 2 * (2 + RANDOM_SUBSETS as usize), "{what}: only {} crash images", images.len());
    eprintln!("{what}: {} crash images ({seen:?})", images.len());
}

#[test]
fn create_is_atomic() {
    crash_test("create", |_| (), |fx, ()| drop(fx.open("/dir/new")));
}

#[test]
fn mkdir_is_atomic() {
    crash_test("mkdir", |_| (), |fx, ()| fx.fs.create_dir("/dir/newdir").unwrap());
}

#[test]
fn unaligned_pwrite_inside_a_block_is_atomic() {
    crash_test(
        "pwrite unaligned",
        |fx| fx.open("/a"),
        |_, a| {
            assert_eq!(a.write_at(&pattern(9, 1000), 2 * BLOCK + 123).unwrap(), 1000);
        },
    );
}

#[test]
fn multi_block_pwrite_that_extends_the_file_is_atomic() {
    crash_test(
        "pwrite multi-block extending",
        |fx| fx.open("/c"),
        |_, c| {
            let data = pattern(10, 4 * BLOCK as usize + 900);
            assert_eq!(c.write_at(&data, 2 * BLOCK + 500).unwrap(), data.len());
        },
    );
}

#[test]
fn pwrite_over_shared_blocks_is_atomic() {
    // /b's block 0 and 2 are shared with /a: copy-on-write of both edges and the middle.
    crash_test(
        "pwrite over shared",
        |fx| fx.open("/b"),
        |_, b| {
            b.write_at(&pattern(11, 2 * BLOCK as usize), 100).unwrap();
        },
    );
}

#[test]
fn truncate_down_into_a_partial_shared_block_is_atomic() {
    // Block 0 of /b is shared with /a: the kept part is copied to a new block.
    crash_test("truncate down partial shared", |fx| fx.open("/b"), |_, b| b.set_len(BLOCK / 2 + 7).unwrap());
}

#[test]
fn truncate_down_into_a_partial_private_block_is_atomic() {
    crash_test("truncate down partial private", |fx| fx.open("/c"), |_, c| c.set_len(BLOCK + 1).unwrap());
}

#[test]
fn truncate_up_from_a_partial_block_is_atomic() {
    crash_test("truncate up", |fx| fx.open("/c"), |_, c| c.set_len(6 * BLOCK + 3).unwrap());
}

#[test]
fn reflink_over_existing_blocks_is_atomic() {
    crash_test(
        "reflink",
        |fx| (fx.open("/a"), fx.open("/c")),
        |fx, (a, c)| {
            assert_eq!(fx.fs.reflink(&a, 0, &c, BLOCK, 3 * BLOCK).unwrap(), 3 * BLOCK);
        },
    );
}

#[test]
fn reflink_to_source_eof_with_a_partial_block_is_atomic() {
    crash_test(
        "reflink to EOF",
        |fx| (fx.open("/a"), fx.open("/dir/new")),
        |fx, (a, new)| {
            assert_eq!(fx.fs.reflink(&a, 0, &new, 0, 0).unwrap(), 5 * BLOCK + 100);
        },
    );
}

#[test]
fn dedupe_is_atomic() {
    crash_test(
        "dedupe",
        |fx| (fx.open("/c"), fx.open("/twin")),
        |fx, (c, twin)| {
            let status = fx.fs.dedupe(&c, 0, 2 * BLOCK, &[DedupeTarget { file: &twin, offset: 0 }]).unwrap();
            assert!(
                matches!(status[0], ferrodax::DedupeStatus::Same { bytes_deduped } if bytes_deduped == 2 * BLOCK)
            );
        },
    );
}

#[test]
fn unshare_is_atomic() {
    crash_test("unshare", |fx| fx.open("/b"), |fx, b| fx.fs.unshare(&b, 0, 3 * BLOCK).unwrap());
}

#[test]
fn preallocation_that_grows_a_file_is_atomic() {
    use ferrodax::fs::falloc::FALLOC_FL_KEEP_SIZE;
    crash_test(
        "fallocate grow",
        |fx| fx.open("/c"),
        |_, c| c.fallocate(0, 2 * BLOCK + 5, 4 * BLOCK).unwrap(),
    );
    crash_test(
        "fallocate keep size",
        |fx| {
            let c = fx.open("/c");
            c.set_len(8 * BLOCK).unwrap();
            c
        },
        |_, c| c.fallocate(FALLOC_FL_KEEP_SIZE, 4 * BLOCK, 100 * BLOCK).unwrap(),
    );
}

#[test]
fn punching_a_shared_and_deduped_range_is_atomic() {
    use ferrodax::fs::falloc::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};
    // /a's blocks 0-2 are shared with /b, 0-1 also with /dir/d: partial edges are copied, the
    // whole blocks dropped from /a only.
    crash_test(
        "punch shared",
        |fx| fx.open("/a"),
        |_, a| a.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 3 * BLOCK).unwrap(),
    );
}

#[test]
fn zeroing_a_shared_range_is_atomic() {
    use ferrodax::fs::falloc::FALLOC_FL_ZERO_RANGE;
    crash_test(
        "zero range",
        |fx| fx.open("/b"),
        |_, b| b.fallocate(FALLOC_FL_ZERO_RANGE, 700, 2 * BLOCK).unwrap(),
    );
}

#[test]
fn collapsing_a_file_with_shared_blocks_is_atomic() {
    use ferrodax::fs::falloc::FALLOC_FL_COLLAPSE_RANGE;
    crash_test(
        "collapse",
        |fx| fx.open("/a"),
        |_, a| a.fallocate(FALLOC_FL_COLLAPSE_RANGE, BLOCK, 2 * BLOCK).unwrap(),
    );
}

#[test]
fn inserting_into_a_deduped_file_is_atomic() {
    use ferrodax::fs::falloc::FALLOC_FL_INSERT_RANGE;
    crash_test(
        "insert",
        |fx| fx.open("/dir/d"),
        |_, d| d.fallocate(FALLOC_FL_INSERT_RANGE, BLOCK, BLOCK).unwrap(),
    );
}

#[test]
fn copy_file_range_by_reflink_and_by_bytes_is_atomic() {
    crash_test(
        "copy_file_range reflinked",
        |fx| (fx.open("/a"), fx.open("/c")),
        |fx, (a, c)| assert_eq!(fx.fs.copy_file_range(&a, 0, &c, BLOCK, 2 * BLOCK + 10).unwrap(), 2 * BLOCK),
    );
    crash_test(
        "copy_file_range bytes",
        |fx| (fx.open("/a"), fx.open("/c")),
        |fx, (a, c)| assert_eq!(fx.fs.copy_file_range(&a, 10, &c, 20, 3000).unwrap(), 3000),
    );
}

#[test]
fn unlink_is_atomic() {
    crash_test("unlink", |_| (), |fx, ()| fx.fs.remove_file("/victim").unwrap());
}

#[test]
fn unlink_while_open_then_close_is_atomic() {
    // Two commits: the name goes (the file lives on as an orphan), then the last close frees it.
    // A crash in between leaves an orphan that mount reclaims; either way the tree is "after".
    crash_test(
        "unlink open then close",
        |fx| fx.open("/victim"),
        |fx, victim| {
            fx.fs.remove_file("/victim").unwrap();
            let mut buf = vec![0; 10];
            assert_eq!(victim.read_at(&mut buf, 0).unwrap(), 10, "an unlinked open file stays readable");
            drop(victim);
        },
    );
}

#[test]
fn rename_over_an_existing_file_is_atomic() {
    crash_test("rename over file", |_| (), |fx, ()| fx.fs.rename("/c", "/target").unwrap());
}

#[test]
fn rename_of_a_directory_across_directories_is_atomic() {
    crash_test("rename dir", |_| (), |fx, ()| fx.fs.rename("/dir/empty", "/moved").unwrap());
}

#[test]
fn rmdir_is_atomic() {
    crash_test("rmdir", |_| (), |fx, ()| fx.fs.remove_dir("/dir/empty").unwrap());
}

#[test]
fn a_write_that_forces_a_checkpoint_is_atomic() {
    // Fill the log with records exactly as large as the operation's, until the next one cannot
    // fit: the operation then writes a checkpoint, switches both superblocks and starts the log
    // over before its own record.
    let log_free = |fx: &Fixture| fx.fs.stats().log_free_bytes;
    crash_test(
        "checkpoint",
        |fx| {
            let a = fx.open("/a");
            let mut last_free = log_free(fx);
            let mut record = 0;
            loop {
                a.write_at(&pattern(12, 10), 4 * BLOCK).unwrap();
                let free = log_free(fx);
                assert!(free < last_free, "the filler must use the log without a checkpoint");
                record = record.max(last_free - free);
                last_free = free;
                if free < record {
                    break;
                }
            }
            let checkpoints = fx.fs.read_lock().journal().stats.checkpoints;
            (a, checkpoints)
        },
        |fx, (a, checkpoints)| {
            a.write_at(&pattern(13, 10), 4 * BLOCK).unwrap();
            assert_eq!(
                fx.fs.read_lock().journal().stats.checkpoints,
                checkpoints + 1,
                "the operation must have written a checkpoint"
            );
        },
    );
}

/// Crashes a read-write mount of `image` at every fence it issues; each crash image must mount
/// to `expected`, and so must the finished mount.
fn crash_recovery(what: &str, image: &[u8], expected: &Tree) -> usize {
    let backend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    backend.start_sampling(RANDOM_SUBSETS, 7);
    let fs = Fs::mount(&Pool::from_backend(backend.clone())).expect("recovery mount");
    let images = backend.take_images();
    assert_eq!(backend.unpersisted_lines(), 0);
    assert_eq!(&tree(&fs), expected);
    assert!(fs.check().is_clean(), "{what}: {}", fs.check());
    let mut seen = Seen::default();
    for image in &images {
        check_image(what, image, expected, expected, &mut seen);
    }
    eprintln!("{what}: {} crash images", images.len());
    images.len()
}

#[test]
fn orphan_reclaim_at_mount_is_crash_safe() {
    // Leave an open-unlinked file behind, as a crash would, then crash the recovery.
    let fx = Fixture::new();
    let victim = fx.open("/victim");
    fx.fs.remove_file("/victim").unwrap();
    let image = fx.backend.durable_image();
    let expected = tree(&fx.fs);
    drop(victim);
    let orphan_before = mount_image(&image, true).unwrap().stats().inodes;
    let reclaimed = mount_image(&image, false).unwrap();
    assert_eq!(reclaimed.stats().inodes, orphan_before - 1, "a read-write mount must free the orphan");
    assert!(crash_recovery("orphan reclaim", &image, &expected) > 0, "reclaim must write");
}

#[test]
fn superblock_repair_at_mount_is_crash_safe() {
    let fx = Fixture::new();
    let mut image = fx.backend.durable_image();
    image[BLOCK as usize + 40] ^= 0xff; // superblock copy 1
    let expected = tree(&fx.fs);
    assert!(crash_recovery("superblock repair", &image, &expected) > 0, "repair must write");
}

#[test]
fn a_transaction_larger_than_the_log_is_atomic() {
    // One pool block reflinked into 2100 consecutive file blocks of /frag gives 2100 extents that
    // cannot merge; unlinking /frag is one transaction of 2100+ map mutations (about 70 KiB), more
    // than the 64 KiB log holds, so a checkpoint of the new state is itself the atomic step.
    // /frag also owns 20 private blocks, which that transaction frees. The layout is arranged so
    // that those freed blocks are exactly where the allocator would put the new checkpoint: until
    // the checkpoint is durable they still hold /frag's bytes in the old state, so they must not be
    // reused for it.
    const EXTENTS: u64 = 2100;
    crash_test(
        "transaction larger than the log",
        |fx| {
            let one = fx.open("/one");
            one.write_at(&pattern(14, BLOCK as usize), 0).unwrap();
            let frag = fx.open("/frag");
            frag.write_at(&pattern(15, 20 * BLOCK as usize), EXTENTS * BLOCK).unwrap();
            for i in 0..EXTENTS {
                fx.fs.reflink(&one, 0, &frag, i * BLOCK, BLOCK).unwrap();
            }
            assert_eq!(frag.metadata().unwrap().extents, EXTENTS + 1);
            // Enough surviving extents that the new checkpoint needs more than one block.
            let keep = fx.open("/keep");
            for i in 0..200 {
                fx.fs.reflink(&one, 0, &keep, i * BLOCK, BLOCK).unwrap();
            }
            // Fill the free run right after the current checkpoint (where the next one would
            // go first) with a file larger than every other free run, so best fit puts it there.
            let (goal, runs) = {
                let fs = fx.fs.read_lock();
                let goal = fs.journal().checkpoint_blocks().last().unwrap() + 1;
                (goal, fs.state().free.runs().collect::<Vec<_>>())
            };
            let at_goal = runs.iter().find(|r| r.0 == goal).copied().expect("a free run starts at the goal");
            let filler_blocks = runs.iter().filter(|r| r.0 != goal).map(|r| r.1).max().unwrap_or(0) + 1;
            fx.open("/filler").write_at(&pattern(16, (filler_blocks * BLOCK) as usize), 0).unwrap();
            let private = fx.fs.fiemap(&frag).unwrap().into_iter().find(|e| !e.shared).unwrap();
            let fs = fx.fs.read_lock();
            assert!(!fs.state().free.is_free(goal, 1), "the filler must take the goal block");
            // Once /frag's blocks are freed they merge with their free neighbours; that run must
            // be the smallest free run of two or more blocks, so best fit picks it.
            let (p_start, p_end) = (private.physical / BLOCK, (private.physical + private.length) / BLOCK);
            let touches_p = |r: &(u64, u64)| r.0 + r.1 == p_start || r.0 == p_end;
            let p_merged: u64 =
                p_end - p_start + fs.state().free.runs().filter(touches_p).map(|r| r.1).sum::<u64>();
            let others: Vec<(u64, u64)> = fs.state().free.runs().filter(|r| !touches_p(r)).collect();
            assert!(
                others.iter().all(|r| r.1 < 2 || r.1 > p_merged),
                "layout premise: {others:?} vs {p_merged}"
            );
            assert!(at_goal.1 > filler_blocks, "the filler must fit the goal run");
            drop(fs);
            drop((one, frag, keep));
            fx.fs.read_lock().journal().stats.checkpoints
        },
        |fx, checkpoints| {
            fx.fs.remove_file("/frag").unwrap();
            assert_eq!(fx.fs.read_lock().journal().stats.checkpoints, checkpoints + 1);
        },
    );
}
