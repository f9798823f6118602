//! The seed corpus of every fuzz target, generated rather than stored by hand.
//!
//! Owns the list of targets and a few dozen small, meaningful inputs for each: real pools, real
//! log records and checkpoints of the current format (taken from pools built through the public
//! API, never from hard-coded offsets, so the corpus regenerates after a format change), edits of
//! them, and operation sequences that reach reflink, dedupe, copy-on-write, memory failure and
//! remount. Must never write files itself: the caller decides where the corpus goes
//! (`tests/fuzz_regressions.rs` has the ignored test that writes `fuzz/corpus/`).

use super::ops::{encode_ops, Len, Off, Op};
use super::replay::{appended_records, record_payload, RAW_PAYLOADS};
use super::{pattern, pool_over, populated_image};
use crate::api::{DedupeTarget, Fs, OpenOptions, Pool};
use crate::format::codec::u32_at;
use crate::format::record::{self, RecordAt};
use crate::format::BLOCK_SIZE;
use crate::fs::ownership::MetaStructure;
use crate::memfail::FailureFlags;
use crate::pool::RecordingBackend;
use std::sync::Arc;

/// Every fuzz target in `fuzz/fuzz_targets/`, by name.
pub const TARGETS: [&str; 5] =
    ["mount_image", "decode_records", "decode_checkpoint", "replay_log", "op_sequence"];

/// A deterministic generator for seed bytes (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every seed: (target, file name, bytes). Names start with `seed-` (what `.gitignore` keeps).
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add =
        |target: &'static str, name: &str, bytes: Vec<u8>| out.push((target, format!("seed-{name}"), bytes));
    for (name, bytes) in mount_image_seeds() {
        add("mount_image", &name, bytes);
    }
    for (name, bytes) in decode_records_seeds() {
        add("decode_records", &name, bytes);
    }
    for (name, bytes) in decode_checkpoint_seeds() {
        add("decode_checkpoint", &name, bytes);
    }
    for (name, bytes) in replay_log_seeds() {
        add("replay_log", &name, bytes);
    }
    for (name, bytes) in op_sequence_seeds() {
        add("op_sequence", &name, bytes);
    }
    out
}

/// A pool image with its trailing zero bytes cut (mount pads them back).
fn trimmed(image: Vec<u8>) -> Vec<u8> {
    let end = image.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    image[..end].to_vec()
}

/// A pool of `blocks` blocks, formatted and holding `files` small files.
fn small_pool_image(blocks: u64, files: usize) -> Vec<u8> {
    let backend = Arc::new(RecordingBackend::new(blocks * BLOCK_SIZE));
    let pool = Pool::from_backend(backend.clone());
    let fs = Fs::format(&pool).expect("format");
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    for i in 0..files {
        let f = fs.open(&format!("/f{i}"), &rw).expect("create");
        f.write_at(&pattern(i as u8, 100 + 1500 * i), 0).expect("write");
    }
    if files > 1 {
        let a = fs.open("/f0", &rw).expect("open");
        let b = fs.open("/f1", &rw).expect("open");
        let _ = fs.reflink(&a, 0, &b, 0, 0);
    }
    drop(fs);
    backend.volatile_image()
}

fn mount_image_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    // The smallest pool: mount pads a raw image to MIN_IMAGE_BLOCKS, so its zero tail can go.
    let mut raw = vec![0xff];
    raw.extend(trimmed(small_pool_image(super::MIN_IMAGE_BLOCKS as u64, 0)));
    seeds.push(("raw-smallest-pool".into(), raw));
    seeds.push(("populated-unchanged".into(), vec![0]));
    let mut rng = Rng(1);
    for i in 0..28 {
        // Flags cycle through plain, resealed, XOR and resealed XOR edits; 1 to 6 edits each.
        let mut edits = vec![(i % 4) as u8];
        for _ in 0..1 + i % 6 {
            edits.extend(rng.bytes(4));
        }
        seeds.push((format!("edits-{i:02}-flags-{}", i % 4), edits));
    }
    // The same kinds of edits over the pool with nothing in its log (flag bit 3), which a lazy
    // mount reads.
    seeds.push(("checkpointed-unchanged".into(), vec![8]));
    for i in 0..8 {
        let mut edits = vec![8 | (i % 4) as u8];
        for _ in 0..1 + i % 3 {
            edits.extend(rng.bytes(4));
        }
        seeds.push((format!("checkpointed-edits-{i:02}-flags-{}", 8 | (i % 4)), edits));
    }
    seeds
}

/// The populated pool's metadata: its log's used bytes and first sequence number, and its
/// checkpoint payload.
fn populated_metadata() -> (Vec<u8>, u64, Vec<u8>, Vec<u8>) {
    let (image, _) = populated_image();
    let pool = pool_over(image);
    let fs = Fs::mount_read_only(&pool).expect("the populated image mounts");
    let g = fs.read_lock();
    let journal = g.journal();
    let sb = journal.superblock();
    let (_, start, len) =
        g.metadata_layout().into_iter().find(|(s, _, _)| *s == MetaStructure::Log).expect("a log region");
    let used = (len * BLOCK_SIZE - journal.log_free_bytes()) as usize;
    let at = (start * BLOCK_SIZE) as usize;
    let log = image[at..at + used].to_vec();
    let superblock = image[..BLOCK_SIZE as usize].to_vec();
    (log, sb.log_first_seq, g.state().to_image().encode(), superblock)
}

fn decode_records_seeds() -> Vec<(String, Vec<u8>)> {
    let (log, first_seq, checkpoint, superblock) = populated_metadata();
    let with_seq = |seq: u64, bytes: &[u8]| {
        let mut v = seq.to_le_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    };
    let mut seeds = vec![
        ("whole-log".to_string(), with_seq(first_seq, &log)),
        ("superblock".into(), with_seq(first_seq, &superblock[..256.min(superblock.len())])),
        ("checkpoint-payload".into(), with_seq(0, &checkpoint)),
        ("empty".into(), with_seq(1, &[])),
    ];
    // Each of the first records alone, and runs of them.
    let mut pos = 0;
    let mut seq = first_seq;
    let mut starts = Vec::new();
    while let Ok(RecordAt::Valid(_, len)) = record::decode_record(&log[pos..], seq) {
        starts.push((seq, pos, len));
        pos += len;
        seq += 1;
    }
    for &(seq, pos, len) in starts.iter().step_by(2).take(20) {
        seeds.push((format!("record-{seq}"), with_seq(seq, &log[pos..pos + len])));
    }
    for &(seq, pos, _) in starts.iter().step_by(10).take(4) {
        let end = (pos + 2048).min(log.len());
        seeds.push((format!("records-from-{seq}"), with_seq(seq, &log[pos..end])));
    }
    let mut rng = Rng(2);
    for i in 0..6 {
        let mut bytes = with_seq(first_seq, &log[..log.len().min(1024)]);
        for _ in 0..1 + i {
            let p = 8 + (rng.next() as usize % (bytes.len() - 8).max(1));
            bytes[p] ^= rng.next() as u8 | 1;
        }
        seeds.push((format!("log-flipped-{i}"), bytes));
    }
    seeds
}

/// Checkpoint payloads of pools with different content.
fn decode_checkpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let (_, _, populated, _) = populated_metadata();
    let mut payloads = vec![("populated".to_string(), 1u16 << 8, populated)];
    for files in [0, 1, 3] {
        let pool = pool_over(&small_pool_image(64, files));
        let fs = Fs::mount_read_only(&pool).expect("mounts");
        let payload = fs.read_lock().state().to_image().encode();
        payloads.push((format!("small-pool-{files}-files"), 64, payload));
    }
    // A pool with shared blocks, a poisoned block (the quarantine list) and an unlinked open file.
    {
        let backend = Arc::new(RecordingBackend::new(64 * BLOCK_SIZE));
        let pool = Pool::from_backend(backend);
        let fs = Fs::format(&pool).expect("format");
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        let a = fs.open("/a", &rw).expect("create");
        a.write_at(&pattern(5, 3 * 4096 + 9), 0).expect("write");
        let b = fs.open("/b", &rw).expect("create");
        fs.reflink(&a, 0, &b, 4096, 0).expect("reflink");
        let c = fs.open("/c", &rw).expect("create");
        c.write_at(&pattern(5, 3 * 4096 + 9), 0).expect("write");
        let _ = fs.dedupe(&a, 0, 4096, &[DedupeTarget { file: &c, offset: 0 }]);
        fs.create_dir("/dir").expect("mkdir");
        let block = fs.fiemap(&a).expect("fiemap")[0].physical;
        fs.memory_failure(block + 4096, 4096, FailureFlags::default()).expect("poison");
        fs.remove_file("/c").expect("unlink while open");
        let payload = fs.read_lock().state().to_image().encode();
        payloads.push(("shared-poisoned-orphan".into(), 64, payload));
    }
    // Each also as a whole checkpoint of format version 6 (run map, body, inode index), its runs
    // in one piece per chain.
    let indexed: Vec<(String, u16, Vec<u8>)> = payloads
        .iter()
        .filter_map(|(name, blocks, payload)| {
            let image = crate::format::checkpoint::StateImage::decode(payload).ok()?;
            let mut bytes = crate::format::indexed::encode(&image);
            let n = crate::format::checkpoint::blocks_for(bytes.len()) as u64;
            crate::format::indexed::set_runs(&mut bytes, [&[(2, n)], &[(2 + n, n)]]);
            Some((format!("{name}-indexed"), (*blocks).max(2 + 2 * n as u16), bytes))
        })
        .collect();
    payloads.extend(indexed);
    let mut seeds = Vec::new();
    for (name, blocks, payload) in &payloads {
        let with_header = |blocks: u16, generation: u8, payload: &[u8]| {
            let mut v = blocks.wrapping_sub(16).to_le_bytes().to_vec();
            v.push(generation);
            v.extend_from_slice(payload);
            v
        };
        seeds.push((name.clone(), with_header(*blocks, 1, payload)));
        seeds.push((format!("{name}-cut-in-half"), with_header(*blocks, 2, &payload[..payload.len() / 2])));
        seeds.push((format!("{name}-in-a-smaller-pool"), with_header(16, 3, payload)));
        seeds.push((
            format!("{name}-last-quarter-cut"),
            with_header(*blocks, 5, &payload[..payload.len() * 3 / 4]),
        ));
        seeds.push((
            format!("{name}-with-trailing-bytes"),
            with_header(*blocks, 6, &[payload.as_slice(), &[0; 8]].concat()),
        ));
        let mut flipped = payload.clone();
        let mut rng = Rng(payload.len() as u64);
        for _ in 0..3 {
            let p = rng.next() as usize % flipped.len();
            flipped[p] ^= 0x41;
        }
        seeds.push((format!("{name}-flipped"), with_header(*blocks, 4, &flipped)));
    }
    seeds
}

/// Raw records of real operations, appended to the replay base's log: each operation runs on a
/// read-write copy of the base, and what it appended to the log is the seed.
fn replay_log_seeds() -> Vec<(String, Vec<u8>)> {
    let base_image = populated_image().0.clone();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    type Step = fn(&Fs, &OpenOptions);
    let steps: [(&str, Step); 12] = [
        ("create", |fs, rw| drop(fs.open("/fresh", rw).expect("create"))),
        ("mkdir", |fs, _| fs.create_dir("/newdir").expect("mkdir")),
        ("write", |fs, rw| {
            fs.open("/a", rw).expect("open").write_at(&pattern(7, 9000), 100).expect("write");
        }),
        ("append", |fs, rw| {
            fs.open("/d", rw).expect("open").write_at(b"tail", 9100).expect("write");
        }),
        ("truncate-down", |fs, rw| fs.open("/a", rw).expect("open").set_len(5000).expect("truncate")),
        ("truncate-up", |fs, rw| fs.open("/dir/b", rw).expect("open").set_len(40_000).expect("truncate")),
        ("reflink", |fs, rw| {
            let (a, n) = (fs.open("/a", rw).expect("open"), fs.open("/clone", rw).expect("create"));
            fs.reflink(&a, 0, &n, 0, 0).expect("reflink");
        }),
        ("dedupe", |fs, rw| {
            let (a, c) = (fs.open("/a", rw).expect("open"), fs.open("/dir/sub/c", rw).expect("open"));
            let _ = fs.dedupe(&a, 0, 4096, &[DedupeTarget { file: &c, offset: 0 }]);
        }),
        ("unshare", |fs, rw| {
            fs.unshare(&fs.open("/dir/b", rw).expect("open"), 0, 3 * 4096).expect("unshare")
        }),
        ("unlink", |fs, _| fs.remove_file("/dir/sub/c").expect("unlink")),
        ("rename", |fs, _| fs.rename("/dir/sub", "/moved").expect("rename")),
        ("poison", |fs, rw| {
            let block = fs.fiemap(&fs.open("/a", rw).expect("open")).expect("fiemap")[0].physical;
            fs.memory_failure(block, 4096, FailureFlags::default()).expect("poison");
        }),
    ];
    let mut seeds = Vec::new();
    let mut all = Vec::new();
    for (name, step) in steps {
        let backend = Arc::new(RecordingBackend::from_image(base_image.clone()));
        let pool = Pool::from_backend(backend.clone());
        let fs = Fs::mount(&pool).expect("the replay base mounts");
        step(&fs, &rw);
        drop(fs);
        let records = appended_records(&backend.volatile_image());
        let mut input = vec![RAW_PAYLOADS | ((records.len().clamp(1, 4) - 1) as u8) << 1];
        for r in records.iter().take(4) {
            input.push(u32_at(r, 20) as u8);
            let payload = record_payload(r);
            input.extend_from_slice(&(payload.len() as u16).to_le_bytes());
            input.extend_from_slice(payload);
        }
        all.push(input.clone());
        seeds.push((format!("raw-{name}"), input));
    }
    // A raw record whose payload is cut, and one with a count that does not match.
    let write = all[2].clone();
    let mut cut = write.clone();
    cut.truncate(write.len() - 5);
    seeds.push(("raw-write-cut".into(), cut));
    let mut miscounted = write;
    miscounted[1] = miscounted[1].wrapping_add(1);
    seeds.push(("raw-write-miscounted".into(), miscounted));
    // Structured inputs: mutations chosen among the base's inodes and blocks.
    let mut rng = Rng(3);
    for i in 0..20u8 {
        let mut input = vec![(i % 4) << 1];
        input.extend(rng.bytes(8 + 12 * i as usize));
        seeds.push((format!("chosen-{i:02}"), input));
    }
    seeds
}

fn op_sequence_seeds() -> Vec<(String, Vec<u8>)> {
    use Op::*;
    let w = |path, off, len, seed| Write { path, off, len, seed };
    let scenarios: Vec<(&str, Vec<Op>)> = vec![
        ("create-write", vec![Create(0), w(0, Off::Block(0), 10_000, 1), w(0, Off::Bytes(131), 300, 2)]),
        (
            "reflink-then-cow",
            vec![
                Create(0),
                w(0, Off::Block(0), 16_384, 1),
                Create(1),
                Reflink { src: 0, src_off: Off::Block(0), dst: 1, dst_off: Off::Block(0), len: Len::Zero },
                w(1, Off::Bytes(131 * 40), 100, 3),
                Remount,
            ],
        ),
        (
            "reflink-partial-eof",
            vec![
                Create(0),
                w(0, Off::Block(0), 5000, 1),
                Create(1),
                w(1, Off::Block(0), 4096, 2),
                Reflink { src: 0, src_off: Off::Block(1), dst: 1, dst_off: Off::Block(1), len: Len::ToEof },
            ],
        ),
        (
            "dedupe-copies",
            vec![
                Create(0),
                w(0, Off::Block(0), 12_288, 4),
                Create(1),
                w(1, Off::Block(0), 12_288, 4),
                Dedupe { src: 0, src_off: Off::Block(0), len: Len::ToEof, dst: 1, dst_off: None },
                w(0, Off::Block(1), 4096, 5),
            ],
        ),
        (
            "dedupe-differs",
            vec![
                Create(0),
                w(0, Off::Block(0), 8192, 4),
                Create(1),
                w(1, Off::Block(0), 8192, 8),
                Dedupe { src: 0, src_off: Off::Block(0), len: Len::Blocks(2), dst: 1, dst_off: None },
            ],
        ),
        (
            "truncate-partial",
            vec![
                Create(0),
                w(0, Off::Block(0), 20_000, 1),
                Truncate { path: 0, size: Off::Bytes(131 * 50) },
                Truncate { path: 0, size: Off::Block(9) },
                Remount,
            ],
        ),
        (
            "unshare",
            vec![
                Create(0),
                w(0, Off::Block(0), 8192, 1),
                Create(1),
                Reflink { src: 0, src_off: Off::Block(0), dst: 1, dst_off: Off::Block(2), len: Len::Zero },
                Unshare { path: 1, off: Off::Block(0), len: Len::Blocks(4) },
            ],
        ),
        (
            "directories",
            vec![
                Mkdir(2),
                Create(3),
                Mkdir(4),
                Create(5),
                Rename(2, 6),
                Rmdir(6),
                Unlink(7),
                Rename(0, 3),
                Rmdir(4),
            ],
        ),
        (
            "rename-over",
            vec![
                Create(0),
                w(0, Off::Block(0), 100, 1),
                Create(1),
                w(1, Off::Block(0), 5000, 2),
                Rename(0, 1),
                Remount,
            ],
        ),
        (
            "poison-then-recovery-write",
            vec![
                Create(0),
                w(0, Off::Block(0), 12_288, 1),
                Create(1),
                Reflink { src: 0, src_off: Off::Block(0), dst: 1, dst_off: Off::Block(0), len: Len::Zero },
                Poison { kind: 0, pick: 1 },
                w(0, Off::Block(1), 4096, 6),
                w(1, Off::Bytes(131 * 35), 10, 6),
                Remount,
            ],
        ),
        (
            "poison-metadata",
            vec![
                Create(0),
                w(0, Off::Block(0), 5000, 1),
                Poison { kind: 1, pick: 2 },
                Poison { kind: 1, pick: 3 },
                Poison { kind: 2, pick: 100 },
                w(0, Off::Eof, 300, 2),
                Remount,
            ],
        ),
        (
            "errors",
            vec![
                Write { path: 0, off: Off::Block(0), len: 10, seed: 1 },
                Mkdir(0),
                Write { path: 0, off: Off::Block(0), len: 10, seed: 1 },
                Create(3),
                Rmdir(1),
                Create(0),
                Truncate { path: 0, size: Off::Huge(u64::MAX) },
            ],
        ),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> =
        scenarios.into_iter().map(|(name, ops)| (name.to_string(), encode_ops(&ops))).collect();
    let mut rng = Rng(4);
    for i in 0..20usize {
        let mut bytes = encode_ops(&populating_steps());
        bytes.extend(rng.bytes(8 * (8 + 2 * i)));
        seeds.push((format!("random-{i:02}"), bytes));
    }
    seeds
}

/// Steps that make two directories and four files with data, so that random steps after them
/// find something to work on.
pub fn populating_steps() -> Vec<Op> {
    use Op::*;
    let w = |path, len, seed| Write { path, off: Off::Block(0), len, seed };
    vec![
        Mkdir(2),
        Mkdir(6),
        Create(0),
        Create(1),
        Create(3),
        Create(7),
        w(0, 9000, 1),
        w(1, 12_288, 4),
        w(3, 4096, 4),
        w(7, 300, 2),
    ]
}
