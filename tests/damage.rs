//! Guards SPEC section 6's second promise: "a corrupt pool image never crashes the program: mount
//! or fsck says what is wrong and where", and the redundancy of the format: every superblock,
//! checkpoint block and log record has a second copy.
//!
//! A pool is built with a known history (one log record per operation, the tree after each).
//! Then bytes are flipped in one copy of a structure (mount reads the other copy, says so, and a
//! read-write mount makes both whole again), in both copies (mount fails naming both, or, for a
//! committed log record, naming the record and the proof that it was committed; salvage and
//! repair keep the rest), and in unused space (harmless). Whole metadata blocks are destroyed one
//! at a time: every file still reads back byte-exact. Proptests flip random bytes of random
//! metadata; CRC-valid but meaningless records are appended by hand; and the `ferrodax::fuzzing`
//! entry points run over hundreds of hostile images.

use ferrodax::format::record::{encode_record, InodeAttrs, Mutation};
use ferrodax::format::{checkpoint, checksum, checksum_with_hole, BLOCK_SIZE};
use ferrodax::fs::ownership::MetaStructure;
use ferrodax::fuzzing::{self, MountOutcome};
use ferrodax::pool::RecordingBackend;
use ferrodax::{DedupeTarget, Error, Fs, OpenOptions, Pool};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

const BLOCK: usize = BLOCK_SIZE as usize;

/// Every path with its kind and bytes.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn tree(fs: &Fs) -> Tree {
    fn walk(fs: &Fs, dir: &str, out: &mut Tree) {
        let mut read = OpenOptions::new();
        read.read(true);
        for e in fs.read_dir(dir).expect("read_dir") {
            let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
            if e.kind == ferrodax::format::record::InodeKind::Dir {
                out.insert(path.clone(), None);
                walk(fs, &path, out);
            } else {
                let f = fs.open(&path, &read).expect("open");
                let mut bytes = vec![0; f.metadata().unwrap().size as usize];
                f.read_exact_at(&mut bytes, 0).expect("read");
                out.insert(path, Some(bytes));
            }
        }
    }
    let mut out = Tree::new();
    walk(fs, "/", &mut out);
    out
}

fn mount(image: &[u8], read_only: bool) -> ferrodax::Result<Fs> {
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(image.to_vec())));
    if read_only {
        Fs::mount_read_only(&pool)
    } else {
        Fs::mount(&pool)
    }
}

/// A mount that must fail with EUCLEAN; returns the message.
fn corrupt_mount(image: &[u8], read_only: bool) -> String {
    match mount(image, read_only) {
        Ok(fs) => panic!("mount (read_only {read_only}) succeeded: {}", fs.check()),
        Err(e @ Error::Corrupt(_)) => {
            assert_eq!(e.errno(), libc::EUCLEAN);
            e.to_string()
        }
        Err(e) => panic!("mount failed with {e:?}, not Corrupt"),
    }
}

/// A pool image with a known history: the tree after every operation and where each operation's
/// log record lies.
struct History {
    image: Vec<u8>,
    /// trees[0] is the tree before the first recorded operation, trees[i] after operation i.
    trees: Vec<Tree>,
    /// Byte range of operation i's records (index i - 1) inside the pool.
    records: Vec<(usize, usize)>,
    /// Alignment padding after each record: not covered by any checksum, and never read.
    padding: Vec<(usize, usize)>,
    /// Metadata blocks: (structure, first block, blocks).
    layout: Vec<(MetaStructure, u64, u64)>,
    /// The log region in bytes.
    log: (usize, usize),
    /// Where the log mirror starts, counted from the log's start, in bytes: the mirror copy of the
    /// bytes at log position `p` is at `p + mirror_offset` (it may be negative in theory; it is
    /// not, since the mirror lies at the end of the pool).
    mirror_offset: usize,
    /// Checkpoint blocks of chain 0 with the bytes of their header and payload.
    checkpoint: Vec<(usize, usize)>,
    /// The same for chain 1 (the same bytes at other places).
    checkpoint_mirror: Vec<(usize, usize)>,
}

impl History {
    /// The range in the log mirror that holds the same bytes as `range` in the log.
    fn mirrored(&self, (start, end): (usize, usize)) -> (usize, usize) {
        (start + self.mirror_offset, end + self.mirror_offset)
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    fuzzing::pattern(seed, len)
}

/// One step of the history.
type Operation = Box<dyn Fn(&Fs)>;

fn history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::new(1 << 20));
        let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        // Some history before the last checkpoint, so the log region holds stale records too.
        fuzzing::populate(&fs).unwrap();
        let log_pos = |fs: &Fs| {
            let g = fs.read_lock();
            (g.journal().superblock().log_blocks * BLOCK_SIZE - g.journal().log_free_bytes()) as usize
        };
        let log_start = fs.read_lock().journal().superblock().log_start as usize * BLOCK;
        let mut trees = vec![tree(&fs)];
        let mut records = Vec::new();
        let ops: Vec<Operation> = vec![
            Box::new(|fs| fs.create_dir("/h").unwrap()),
            Box::new(move |fs| drop(fs.open("/h/x", &rw).unwrap())),
            Box::new(|fs| {
                let x = fs.open("/h/x", OpenOptions::new().write(true)).unwrap();
                x.write_at(&pattern(20, 3 * BLOCK + 77), 10).unwrap();
            }),
            Box::new(|fs| {
                let x = fs.open("/h/x", OpenOptions::new().read(true)).unwrap();
                let a = fs.open("/a", OpenOptions::new().read(true).write(true)).unwrap();
                fs.reflink(&x, 0, &a, 0, 2 * BLOCK_SIZE).unwrap();
            }),
            Box::new(|fs| {
                let a = fs.open("/a", OpenOptions::new().write(true)).unwrap();
                a.write_at(b"copy-on-write", 100).unwrap();
            }),
            Box::new(|fs| fs.rename("/h/x", "/h/y").unwrap()),
            Box::new(|fs| {
                let y = fs.open("/h/y", OpenOptions::new().read(true)).unwrap();
                let d = fs.open("/d", OpenOptions::new().read(true).write(true)).unwrap();
                let _ = fs.dedupe(&y, 0, BLOCK_SIZE, &[DedupeTarget { file: &d, offset: 0 }]).unwrap();
                d.set_len(BLOCK_SIZE + 5).unwrap();
            }),
            Box::new(|fs| fs.remove_file("/dir/b").unwrap()),
            Box::new(|fs| {
                let y = fs.open("/h/y", OpenOptions::new().write(true)).unwrap();
                y.write_at(&pattern(21, 2 * BLOCK), 3 * BLOCK_SIZE).unwrap();
            }),
        ];
        let checkpoints = fs.read_lock().journal().stats.checkpoints;
        for op in ops {
            let before = log_pos(&fs);
            op(&fs);
            let after = log_pos(&fs);
            // An op may commit more than once (the dedupe step also truncates): keep the range of
            // all its records; the tree is the state once they are all in.
            records.push((log_start + before, log_start + after));
            trees.push(tree(&fs));
        }
        assert_eq!(fs.read_lock().journal().stats.checkpoints, checkpoints, "history must stay in one log");
        assert!(fs.check().is_clean());
        let g = fs.read_lock();
        let layout = g.metadata_layout();
        let sb = g.journal().superblock().clone();
        let image = backend.volatile_image();
        assert_eq!(backend.unpersisted_lines(), 0);
        let chain = |structure: MetaStructure| -> Vec<(usize, usize)> {
            layout
                .iter()
                .filter(|m| m.0 == structure)
                .map(|m| {
                    let at = m.1 as usize * BLOCK;
                    let payload = u32::from_le_bytes(image[at + 36..at + 40].try_into().unwrap()) as usize;
                    (at, at + checkpoint::HEADER_LEN + payload)
                })
                .collect()
        };
        let checkpoint = chain(MetaStructure::Checkpoint);
        let checkpoint_mirror = chain(MetaStructure::CheckpointMirror);
        drop(g);
        let mut padding = Vec::new();
        for &(start, end) in &records {
            let mut at = start;
            while at < end {
                let payload = u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
                let unpadded = at + 24 + payload;
                let next = at + (24 + payload).next_multiple_of(8);
                padding.push((unpadded, next));
                at = next;
            }
            assert_eq!(at, end, "records tile the operation's range");
        }
        History {
            image,
            trees,
            records,
            padding,
            layout,
            log: (sb.log_start as usize * BLOCK, (sb.log_start + sb.log_blocks) as usize * BLOCK),
            mirror_offset: (sb.log_mirror_start - sb.log_start) as usize * BLOCK,
            checkpoint,
            checkpoint_mirror,
        }
    })
}

fn flipped(image: &[u8], positions: &[usize]) -> Vec<u8> {
    let mut out = image.to_vec();
    for &p in positions {
        out[p] ^= 0x5a;
    }
    out
}

/// Bytes of a superblock copy that are covered by its checksum: magic, geometry, generation,
/// checkpoint pointer, the reserved area and the checksum itself.
const SUPERBLOCK_POSITIONS: [usize; 6] = [0, 20, 48, 80, 200, 253];

#[test]
fn one_damaged_superblock_copy_is_named_and_rewritten_by_a_read_write_mount() {
    let h = history();
    let last = h.trees.last().unwrap();
    for copy in 0..2usize {
        for &p in &SUPERBLOCK_POSITIONS {
            let image = flipped(&h.image, &[copy * BLOCK + p]);
            let what = format!("superblock copy {copy}");
            // Read-only: mounts from the other copy, says which one it worked around.
            let fs = mount(&image, true).unwrap();
            let notes = fs.read_lock().mount_notes().clone();
            assert_eq!(notes.stale_superblocks, vec![copy as u32], "byte {p}");
            assert!(notes.repaired.iter().any(|r| r.contains(&what)), "byte {p}: {:?}", notes.repaired);
            let report = fs.check();
            assert!(report.is_clean(), "byte {p}: {report}");
            assert!(report.repaired.iter().any(|r| r.contains(&what)), "byte {p}: {report}");
            assert_eq!(&tree(&fs), last);
            drop(fs);
            // Read-write: rewrites the copy; the next mount has nothing to report.
            let backend = Arc::new(RecordingBackend::from_image(image));
            let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
            assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
            drop(fs);
            let repaired = backend.durable_image();
            assert_eq!(
                repaired[copy * BLOCK..(copy + 1) * BLOCK][..256],
                h.image[copy * BLOCK..(copy + 1) * BLOCK][..256],
                "byte {p}: the copy must be rewritten as it was"
            );
            let fs = mount(&repaired, true).unwrap();
            assert!(fs.read_lock().mount_notes().repaired.is_empty(), "byte {p}");
            let report = fs.check();
            assert!(report.is_clean() && report.repaired.is_empty(), "byte {p}: {report}");
            assert_eq!(&tree(&fs), last);
        }
    }
}

#[test]
fn both_superblock_copies_damaged_fail_to_mount_naming_both() {
    let h = history();
    for &p in &SUPERBLOCK_POSITIONS {
        let image = flipped(&h.image, &[p, BLOCK + SUPERBLOCK_POSITIONS[(p + 1) % 6]]);
        for read_only in [true, false] {
            let msg = corrupt_mount(&image, read_only);
            assert!(msg.contains("superblock copy 0") && msg.contains("superblock copy 1"), "{msg}");
        }
    }
    // A pool of zeros names both copies too (and calls them what they are not).
    let msg = corrupt_mount(&vec![0; 64 * BLOCK], true);
    assert!(msg.contains("copy 0") && msg.contains("copy 1") && msg.contains("magic"), "{msg}");
}

/// Mounts `image` read-only and read-write and checks that each shows `expected`, that the
/// read-only mount says (in its notes and in check's "repaired" list) that it used a second copy,
/// naming `what`, and that after the read-write mount nothing is left to report.
fn second_copy_serves(image: &[u8], expected: &Tree, what: &str) {
    let fs = mount(image, true).unwrap();
    let notes = fs.read_lock().mount_notes().clone();
    assert!(notes.repaired.iter().any(|r| r.contains(what)), "{what}: {:?}", notes.repaired);
    let report = fs.check();
    assert!(report.is_clean(), "{what}: {report}");
    assert!(report.repaired.iter().any(|r| r.contains(what)), "{what}: {report}");
    assert_eq!(&tree(&fs), expected, "{what}");
    drop(fs);
    let backend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
    assert_eq!(&tree(&fs), expected, "{what}");
    drop(fs);
    assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
    let fs = mount(&backend.durable_image(), true).unwrap();
    assert!(fs.read_lock().mount_notes().repaired.is_empty(), "{what}: {:?}", fs.read_lock().mount_notes());
    let report = fs.check();
    assert!(report.is_clean() && report.repaired.is_empty(), "{what}: {report}");
    assert_eq!(&tree(&fs), expected, "{what}");
}

#[test]
fn a_damaged_checkpoint_block_is_read_from_the_other_chain_and_rewritten() {
    let h = history();
    assert!(!h.checkpoint.is_empty() && h.checkpoint.len() == h.checkpoint_mirror.len());
    for (chain, blocks) in [(0, &h.checkpoint), (1, &h.checkpoint_mirror)] {
        for &(start, end) in blocks {
            // Magic, generation, both next pointers, index, payload length, checksum, first and
            // last payload byte.
            for p in [
                start,
                start + 9,
                start + 17,
                start + 25,
                start + 33,
                start + 37,
                start + 41,
                start + 48,
                end - 1,
            ] {
                let image = flipped(&h.image, &[p]);
                second_copy_serves(
                    &image,
                    h.trees.last().unwrap(),
                    &format!("checkpoint chain {chain} block"),
                );
            }
        }
    }
}

#[test]
fn a_checkpoint_block_damaged_in_both_chains_fails_naming_both_and_salvage_and_repair_go_on() {
    let h = history();
    let (a, b) = (h.checkpoint[0], h.checkpoint_mirror[0]);
    let image = flipped(&h.image, &[a.0 + 60, b.0 + 70]);
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("both copies") && msg.contains("chain 0") && msg.contains("chain 1"), "{msg}");
        assert!(msg.contains("check --repair"), "the message says what to run: {msg}");
    }
    salvage_then_repair(&image);
}

/// A salvage mount of `image` and a repair of it both work, and the repaired pool mounts normally
/// and checks clean; returns the salvaged tree.
fn salvage_then_repair(image: &[u8]) -> Tree {
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(image.to_vec())));
    let fs = Fs::mount_salvage(&pool).unwrap();
    assert!(!fs.read_lock().mount_notes().lost.is_empty(), "salvage reports what it lost");
    let salvaged = tree(&fs);
    drop(fs);
    let backend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    let notes = Fs::repair(&Pool::from_backend(backend.clone())).unwrap();
    assert!(!notes.lost.is_empty());
    assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
    let fs = mount(&backend.durable_image(), false).unwrap();
    let report = fs.check();
    assert!(report.is_clean() && report.repaired.is_empty(), "{report}");
    assert_eq!(tree(&fs), salvaged, "repair keeps what salvage shows");
    salvaged
}

#[test]
fn a_damaged_log_record_is_read_from_its_other_copy_and_rewritten() {
    let h = history();
    for (i, &record) in h.records.iter().enumerate() {
        for (copy, (start, end), what) in
            [(0, record, "read from the log mirror"), (1, h.mirrored(record), "log mirror: record")]
        {
            // Header (magic, length, sequence, checksum) and payload bytes.
            for p in [start, start + 5, start + 9, start + 17, (start + end) / 2, end - 9] {
                let image = flipped(&h.image, &[p]);
                let expected = h.trees.last().unwrap();
                let run = catch_unwind(AssertUnwindSafe(|| second_copy_serves(&image, expected, what)));
                assert!(run.is_ok(), "record of operation {} (copy {copy}), byte {}", i + 1, p - start);
            }
        }
    }
}

#[test]
fn a_committed_record_damaged_in_both_copies_is_refused_naming_it_never_dropped() {
    let h = history();
    for (i, &record) in h.records.iter().enumerate() {
        let last = i + 1 == h.records.len();
        let (start, end) = record;
        let (m_start, m_end) = h.mirrored(record);
        // Payload bytes in both copies (the mirror's header still names the record), and for a
        // record in the middle also both headers (the records after it prove it was committed).
        let mut cases = vec![vec![(start + end) / 2, (m_start + m_end) / 2 + 1]];
        if !last {
            cases.push(vec![start, m_start + 9]);
        }
        for positions in cases {
            let image = flipped(&h.image, &positions);
            for read_only in [true, false] {
                let msg = corrupt_mount(&image, read_only);
                assert!(
                    msg.contains("damaged in both copies, yet it was committed")
                        && msg.contains("check --repair"),
                    "record of operation {}: {msg}",
                    i + 1
                );
            }
            let salvaged = salvage_then_repair(&image);
            // What the lost operation did not touch is still there.
            let before = &h.trees[i];
            let untouched_by_op = |path: &String| {
                h.trees[i + 1].get(path) == before.get(path)
                    && h.trees.last().unwrap().get(path) == before.get(path)
            };
            for (path, node) in before.iter().filter(|(p, _)| untouched_by_op(p)) {
                assert_eq!(salvaged.get(path), Some(node), "operation {}: {path} survives salvage", i + 1);
            }
        }
    }
}

#[test]
fn a_last_record_torn_in_the_log_before_its_mirror_copy_began_is_dropped() {
    // A crash between the record's two fences: its log copy is partly written, its mirror copy
    // not begun. Nothing proves the operation happened; mount ends the log before it.
    let h = history();
    let (start, end) = *h.records.last().unwrap();
    let (m_start, m_end) = h.mirrored((start, end));
    let mut image = flipped(&h.image, &[(start + end) / 2]);
    image[m_start..m_end].fill(0);
    for read_only in [true, false] {
        let fs = mount(&image, read_only).unwrap();
        let report = fs.check();
        assert!(report.is_clean(), "{report}");
        assert_eq!(&tree(&fs), &h.trees[h.trees.len() - 2], "the torn operation is dropped whole");
    }
}

#[test]
fn damage_in_unused_log_space_is_harmless() {
    let h = history();
    let end = h.records.last().unwrap().1;
    // Right after the last record, and far beyond it (stale records of an earlier generation), in
    // both copies of the log.
    for p in [end, end + 8, end + 1000, h.log.1 - 1] {
        for p in [p, p + h.mirror_offset] {
            for read_only in [true, false] {
                let fs = mount(&flipped(&h.image, &[p]), read_only).unwrap();
                assert!(fs.check().is_clean());
                assert!(fs.read_lock().mount_notes().repaired.is_empty());
                assert_eq!(&tree(&fs), h.trees.last().unwrap());
            }
        }
    }
}

#[test]
fn every_metadata_block_destroyed_alone_loses_no_file() {
    // The closing-note number: destroy one whole metadata block with random bytes, for every
    // metadata block of the pool in turn; count the files that read back byte-exact.
    let h = history();
    let expected = h.trees.last().unwrap();
    let files = expected.values().filter(|n| n.is_some()).count();
    let mut rng = Rng(7);
    let (mut recovered, mut total) = (0usize, 0usize);
    let blocks: Vec<(MetaStructure, u64)> =
        h.layout.iter().flat_map(|&(structure, s, l)| (s..s + l).map(move |b| (structure, b))).collect();
    for &(structure, block) in &blocks {
        let mut image = h.image.clone();
        for byte in &mut image[block as usize * BLOCK..(block as usize + 1) * BLOCK] {
            *byte = rng.next() as u8;
        }
        // Read-only first: the damage is reported (unless the block held nothing: unused log).
        let fs = mount(&image, true).unwrap_or_else(|e| panic!("{structure} block {block} destroyed: {e}"));
        let held_something = !matches!(structure, MetaStructure::Log | MetaStructure::LogMirror)
            || (block as usize * BLOCK)
                < h.records.last().unwrap().1
                    + h.mirror_offset * usize::from(structure == MetaStructure::LogMirror);
        let reported = !fs.read_lock().mount_notes().repaired.is_empty();
        assert!(reported || !held_something, "{structure} block {block}: the damage is reported");
        drop(fs);
        // Read-write: every file, and a clean check once the mount has repaired it.
        let fs = mount(&image, false).unwrap_or_else(|e| panic!("{structure} block {block} destroyed: {e}"));
        let got = tree(&fs);
        total += files;
        recovered += expected.iter().filter(|(p, n)| n.is_some() && got.get(*p) == Some(n)).count();
        let report = fs.check();
        assert!(report.is_clean(), "{structure} block {block}: {report}");
    }
    eprintln!(
        "metadata blocks destroyed one at a time: {}; files recovered byte-exact: {recovered} of {total}",
        blocks.len()
    );
    assert_eq!(recovered, total);
}

/// What flipping bytes at `positions` (all inside one copy of one structure of the history image)
/// must lead to: the other copy serves, so the pool mounts, checks clean and shows the last tree.
fn expect_outcome(h: &History, image: &[u8], positions: &[usize], read_only: bool) -> Result<(), String> {
    match mount(image, read_only) {
        Err(e) => Err(format!("mount failed with {e}")),
        Ok(fs) => {
            let report = fs.check();
            if !report.is_clean() {
                return Err(format!("mounted but check is not clean:\n{report}"));
            }
            let notes = fs.read_lock().mount_notes().clone();
            // A position in the log mirror stands for the same position in the log.
            let in_log = |p: usize| if p >= h.log.0 + h.mirror_offset { p - h.mirror_offset } else { p };
            let meaningful =
                positions.iter().any(|&p| !h.padding.iter().any(|&(s, e)| s <= in_log(p) && in_log(p) < e));
            let in_unused =
                positions.iter().all(|&p| in_log(p) >= h.records.last().unwrap().1 && in_log(p) < h.log.1);
            if meaningful && !in_unused && notes.repaired.is_empty() {
                return Err("damage went unreported".into());
            }
            if &tree(&fs) != h.trees.last().unwrap() {
                return Err("mounted a tree that is not the last one".into());
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Flips 1-4 bytes inside one copy of one structure (a superblock copy's checksummed bytes, a
    /// checkpoint block of either chain, one log record in either log copy, or unused log space):
    /// the other copy always serves.
    #[test]
    fn flips_inside_one_structure_have_the_outcome_it_calls_for(
        which in 0usize..1000,
        offsets in proptest::collection::vec(0usize..1 << 20, 1..5),
        values in proptest::collection::vec(1u8..=255, 4),
        read_only in any::<bool>(),
    ) {
        let h = history();
        let mut ranges = vec![(0, 256), (BLOCK, BLOCK + 256), (h.records.last().unwrap().1, h.log.1)];
        ranges.extend(&h.checkpoint);
        ranges.extend(&h.checkpoint_mirror);
        ranges.extend(&h.records);
        ranges.extend(h.records.iter().map(|&r| h.mirrored(r)));
        let (start, end) = ranges[which % ranges.len()];
        let positions: Vec<usize> = offsets.iter().map(|o| start + o % (end - start)).collect();
        let mut image = h.image.clone();
        for (p, v) in positions.iter().zip(values.iter().cycle()) {
            image[*p] ^= v;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| expect_outcome(h, &image, &positions, read_only)));
        match outcome {
            Err(panic) => prop_assert!(false, "PANIC at positions {:?}: {:?}", positions, panic.downcast_ref::<String>()),
            Ok(Err(why)) => prop_assert!(false, "positions {:?} (read_only {}): {}", positions, read_only, why),
            Ok(Ok(())) => {}
        }
    }

    /// Flips random bytes anywhere in random metadata blocks (superblocks, log, checkpoint):
    /// never a panic; a failed mount says Corrupt; a mount that succeeds has a check() verdict,
    /// and when that verdict is clean every file reads back.
    #[test]
    fn random_flips_in_metadata_never_panic_and_stay_coherent(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..BLOCK, 1u8..=255), 1..12),
        read_only in any::<bool>(),
    ) {
        let h = history();
        let blocks: Vec<u64> = h.layout.iter().flat_map(|&(_, s, l)| s..s + l).collect();
        let mut image = h.image.clone();
        let mut positions = Vec::new();
        for (block, offset, value) in &flips {
            let at = *block.get(&blocks) as usize * BLOCK + offset;
            image[at] ^= value;
            positions.push(at);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            match mount(&image, read_only) {
                Err(e) if e.errno() == libc::EUCLEAN && !e.to_string().is_empty() => Ok(()),
                Err(e) => Err(format!("mount failed with {e:?}")),
                Ok(fs) => {
                    let report = fs.check();
                    if report.is_clean() {
                        let _ = tree(&fs);
                    } else if report.problems.iter().any(|p| p.structure.is_empty() || p.detail.is_empty()) {
                        return Err(format!("a problem without a name:\n{report}"));
                    }
                    Ok(())
                }
            }
        }));
        match outcome {
            Err(panic) => prop_assert!(false, "PANIC at positions {:?}: {:?}", positions, panic.downcast_ref::<String>()),
            Ok(Err(why)) => prop_assert!(false, "positions {:?}: {}", positions, why),
            Ok(Ok(())) => {}
        }
    }
}

/// Appends a record with a valid checksum but hostile content at the end of the history's log.
fn with_record(mutations: &[Mutation]) -> Vec<u8> {
    let h = history();
    let fs = mount(&h.image, true).unwrap();
    let g = fs.read_lock();
    let seq = g.journal().superblock().log_first_seq + g.journal().stats.replayed;
    let record = encode_record(seq, mutations);
    let at = h.records.last().unwrap().1;
    let mut image = h.image.clone();
    image[at..at + record.len()].copy_from_slice(&record);
    image
}

fn attrs_of(path: &str) -> InodeAttrs {
    let fs = mount(&history().image, true).unwrap();
    let ino = fs.metadata(path).unwrap().ino;
    let attrs = fs.read_lock().state().inodes[&ino].attrs.clone();
    attrs
}

#[test]
fn checksummed_but_meaningless_records_are_refused_or_reported() {
    // A directory (or the root) without a name: a read-only mount shows it and check reports
    // it; a read-write mount must refuse rather than try to reclaim it like an orphan file.
    for path in ["/dir", "/"] {
        let mut dir = attrs_of(path);
        dir.nlink = 0;
        let image = with_record(&[Mutation::PutInode(dir)]);
        let fs = mount(&image, true).unwrap();
        let report = fs.check();
        assert!(!report.is_clean(), "{path}: {report}");
        let msg = corrupt_mount(&image, false);
        assert!(msg.contains("link count 0"), "{path}: {msg}");
    }
    // Inode numbers that cannot be handed out, sizes past the largest file, maps past it.
    let mut max = attrs_of("/a");
    max.ino = u64::MAX;
    max.name = b"max".to_vec();
    let mut huge = attrs_of("/a");
    huge.size = u64::MAX - 5;
    let a = attrs_of("/a").ino;
    for (what, mutation, expect) in [
        ("inode number", Mutation::PutInode(max), "inode number"),
        ("size", Mutation::PutInode(huge), "largest file size"),
        ("map", Mutation::Map { ino: a, file_block: u64::MAX / 4096, len: 1, phys: None }, "bad range"),
        (
            "pool range",
            Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(1 << 40) },
            "outside the pool",
        ),
        ("free with blocks", Mutation::FreeInode { ino: a }, "still has blocks"),
    ] {
        for read_only in [true, false] {
            let msg = corrupt_mount(&with_record(std::slice::from_ref(&mutation)), read_only);
            assert!(msg.contains(expect), "{what}: {msg}");
        }
    }
}

#[test]
fn checkpoint_with_inode_numbers_at_or_above_next_ino_is_refused() {
    // Rewrite the checkpoint's next_ino (the first payload field) to 2 and reseal every checksum
    // over it: every inode above 1 would be handed out again.
    let h = history();
    assert_eq!(h.checkpoint.len(), 1, "the history's checkpoint fits one block");
    let (start, end) = h.checkpoint[0];
    let payload = start + checkpoint::HEADER_LEN;
    let mut image = h.image.clone();
    image[payload..payload + 8].copy_from_slice(&2u64.to_le_bytes());
    let crc = checksum_with_hole(&image[start..start + 40], &image[start + 44..end]);
    image[start + 40..start + 44].copy_from_slice(&crc.to_le_bytes());
    let payload_crc = checksum(&image[payload..end]);
    for copy in 0..2 {
        let sb = copy * BLOCK;
        image[sb + 96..sb + 100].copy_from_slice(&payload_crc.to_le_bytes());
        let crc = checksum_with_hole(&image[sb..sb + 252], &[]);
        image[sb + 252..sb + 256].copy_from_slice(&crc.to_le_bytes());
    }
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("checkpoint") && msg.contains("next free inode number 2"), "{msg}");
    }
}

/// A small deterministic generator for the fuzz-entry test (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn fuzz_entry_points_survive_hundreds_of_hostile_images() {
    let base = fuzzing::populated_image().0.clone();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tally = |o: &MountOutcome| {
        *outcomes
            .entry(match o {
                MountOutcome::NotTried => "not tried",
                MountOutcome::Failed(_) => "refused",
                MountOutcome::Mounted(true) => "mounted clean",
                MountOutcome::Mounted(false) => "mounted, problems reported",
            })
            .or_default() += 1;
    };
    for seed in 0..1000u64 {
        let mut rng = Rng(seed);
        let run = catch_unwind(AssertUnwindSafe(|| match seed % 4 {
            // Metadata edits of the populated image, half of them with every checksum resealed.
            0 | 1 => {
                let mut edits = vec![(seed / 4 % 4) as u8];
                for _ in 0..1 + rng.below(12) {
                    edits.extend_from_slice(&(rng.next() as u32).to_le_bytes());
                }
                Some(fuzzing::mount_edited_image(&edits))
            }
            // Random flips anywhere in the image, data blocks included.
            2 => {
                let mut image = base.clone();
                for _ in 0..1 + rng.below(6) {
                    let p = rng.below(image.len() as u64) as usize;
                    image[p] ^= 1 + rng.below(255) as u8;
                }
                Some(fuzzing::mount_arbitrary_image(&image))
            }
            // Random bytes, and real log bytes with a few flips, through the decoders.
            _ => {
                let len = rng.below(3 * BLOCK as u64) as usize;
                let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                fuzzing::decode_records(&noise);
                let log = 2 * BLOCK;
                let mut bytes = base[log - 8..log + 4 * BLOCK].to_vec();
                let first_seq = u64::from_le_bytes(base[72..80].try_into().unwrap());
                bytes[..8].copy_from_slice(&(first_seq + rng.below(3)).to_le_bytes());
                for _ in 0..rng.below(6) {
                    let p = 8 + rng.below(2 * BLOCK as u64) as usize;
                    bytes[p] ^= rng.next() as u8;
                }
                fuzzing::decode_records(&bytes);
                None
            }
        }));
        match run {
            Err(_) => panic!("a fuzz entry point panicked on seed {seed} (message above)"),
            Ok(Some(outcome)) => {
                tally(&outcome.read_only);
                tally(&outcome.read_write);
            }
            Ok(None) => {}
        }
    }
    eprintln!("hostile image outcomes: {outcomes:?}");
    // The inputs must reach every depth: refused at mount, mounted clean, mounted with problems.
    assert!(outcomes.get("refused").copied().unwrap_or(0) >= 50, "{outcomes:?}");
    assert!(outcomes.get("mounted clean").copied().unwrap_or(0) >= 100, "{outcomes:?}");
    assert!(outcomes.get("mounted, problems reported").copied().unwrap_or(0) >= 1, "{outcomes:?}");
}

#[test]
fn a_log_moved_off_bad_memory_keeps_its_mirror_and_either_copy_serves() {
    // A memory failure in the log moves it (a checkpoint names the new region); records written
    // after that go to the new log and to the mirror, and damage to either copy costs nothing.
    for poisoned in [MetaStructure::Log, MetaStructure::LogMirror] {
        let backend = Arc::new(RecordingBackend::new(1 << 20));
        let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
        fuzzing::populate(&fs).unwrap();
        let (old, mirror_offset) = {
            let g = fs.read_lock();
            let sb = g.journal().superblock().clone();
            let region = g.metadata_layout().into_iter().find(|m| m.0 == poisoned).unwrap();
            (region.1, (sb.log_mirror_start - sb.log_start) as i64)
        };
        fs.memory_failure(old * BLOCK_SIZE + 2 * BLOCK_SIZE, BLOCK_SIZE, Default::default()).unwrap();
        let (log_start, mirror_start, moved) = {
            let g = fs.read_lock();
            let sb = g.journal().superblock().clone();
            let now = if poisoned == MetaStructure::Log { sb.log_start } else { sb.log_mirror_start };
            (sb.log_start, sb.log_mirror_start, now != old)
        };
        assert!(moved, "{poisoned} moved off the bad block");
        assert_ne!((mirror_start - log_start) as i64, mirror_offset, "{poisoned}: the distance changed");
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        let f = fs.open("/after-move", &rw).unwrap();
        f.write_at(&pattern(30, 3 * BLOCK), 0).unwrap();
        drop(f);
        fs.rename("/after-move", "/moved").unwrap();
        let expected = tree(&fs);
        let records_end = {
            let g = fs.read_lock();
            (g.journal().superblock().log_blocks * BLOCK_SIZE - g.journal().log_free_bytes()) as usize
        };
        drop(fs);
        let image = backend.durable_image();
        for base in [log_start, mirror_start] {
            // The first and the last record of the new generation, in one copy.
            for at in [30, records_end - 9] {
                let damaged = flipped(&image, &[base as usize * BLOCK + at]);
                second_copy_serves(&damaged, &expected, "log");
            }
        }
    }
}
