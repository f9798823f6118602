//! Property test of memory failure (SPEC section 5) over random layouts.
//!
//! Guards: on random files built with pwrites, reflinks (also within one file) and dedupes, with
//! live DAX views, poison injected with `Fs::memory_failure` into one block of every class —
//! private data, shared data, a log block, a checkpoint block, a free block and a superblock copy —
//! reports exactly the owners a brute-force scan of every file's FIEMAP finds (file, offset,
//! length, shared); every view page that showed the bad block is in the report and now shows
//! `PageState::Poisoned`; no block mapping moves; every good byte still reads as the model says and
//! the bad blocks read EIO (a read running into one is short); `check()` is clean and counts the
//! bad blocks as quarantined; the same block failing twice is reported as already known; a
//! partial rewrite of a shared bad block is EIO and changes nothing, a whole-block rewrite
//! recovers it for that file only; and a remount keeps the poison records and the EIOs.
//! A second test injects poison while other threads reflink, dedupe, copy-on-write and fault
//! through views, under a watchdog (a deadlock fails the test), and checks the result.
//!
//! Knobs: FERRODAX_PROPTEST_CASES (default 512), FERRODAX_PROPTEST_SEED (default fixed; a
//! number, or "random").

mod model_common;

use ferrodax::api::Mapping;
use ferrodax::dax::{MapAccess, PageState};
use ferrodax::fs::ownership::MetaStructure;
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use model_common::{block_map, pattern, BS};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const POOL_BYTES: u64 = 4 << 20;
const NFILES: usize = 4;

static SHARED_HITS: AtomicU64 = AtomicU64::new(0);
static VIEW_HITS: AtomicU64 = AtomicU64::new(0);
static RECOVERIES: AtomicU64 = AtomicU64::new(0);
static CLASSES_HIT: AtomicU64 = AtomicU64::new(0);
static DEDUPES: AtomicU64 = AtomicU64::new(0);

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

fn path(i: usize) -> String {
    format!("/f{i}")
}

/// One layout-building operation (block units; resolved against the model's sizes).
#[derive(Debug, Clone)]
enum Op {
    Write { file: usize, offset: u64, len: u64, seed: u8 },
    Reflink { src: usize, src_block: u64, dst: usize, dst_block: u64, blocks: u64 },
    Dedupe { src: usize, src_block: u64, dst: usize, dst_block: u64, blocks: u64 },
}

/// The block classes poison goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    PrivateData,
    SharedData,
    Log,
    Checkpoint,
    Free,
    Superblock,
}

#[derive(Debug, Clone)]
struct Case {
    sizes: Vec<(u64, u64)>,
    ops: Vec<Op>,
    views: Vec<Option<bool>>,
    classes: Vec<Class>,
    picks: Vec<u64>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..NFILES, 0u64..14 * BS, 1u64..3 * BS, 1u8..200)
            .prop_map(|(file, offset, len, seed)| Op::Write { file, offset, len, seed }),
        4 => (0..NFILES, 0u64..12, 0..NFILES, 0u64..14, 1u64..5)
            .prop_map(|(src, src_block, dst, dst_block, blocks)| Op::Reflink { src, src_block, dst, dst_block, blocks }),
        2 => (0..NFILES, 0u64..12, 0..NFILES, 0u64..14, 1u64..4)
            .prop_map(|(src, src_block, dst, dst_block, blocks)| Op::Dedupe { src, src_block, dst, dst_block, blocks }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let classes = Just(vec![
        Class::PrivateData,
        Class::SharedData,
        Class::Log,
        Class::Checkpoint,
        Class::Free,
        Class::Superblock,
    ])
    .prop_shuffle();
    (
        prop::collection::vec((1u64..12, 0u64..BS), NFILES),
        prop::collection::vec(op(), 0..14),
        prop::collection::vec(prop::option::of(any::<bool>()), NFILES),
        classes,
        prop::collection::vec(any::<u64>(), 8),
    )
        .prop_map(|(sizes, ops, views, classes, picks)| Case { sizes, ops, views, classes, picks })
}

/// Pool block -> every (ino, file offset) that maps it, from FIEMAP (the brute-force scan).
fn brute_owners(fs: &Fs, files: &[File]) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let mut out: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for f in files {
        for e in fs.fiemap(f).unwrap() {
            for b in 0..e.length / BS {
                out.entry(e.physical / BS + b).or_default().push((f.ino(), e.logical + b * BS));
            }
        }
    }
    out
}

fn block_maps(fs: &Fs, files: &[File]) -> Vec<Vec<Option<u64>>> {
    files.iter().map(|f| block_map(fs, f).unwrap()).collect()
}

/// Every file's bytes: blocks on bad media read EIO, the rest equal the model; a whole-file read
/// stops short at the first bad byte.
fn verify_contents(
    fs: &Fs,
    files: &[File],
    model: &[Vec<u8>],
    bad: &BTreeSet<u64>,
) -> Result<(), TestCaseError> {
    for (i, f) in files.iter().enumerate() {
        let map = block_map(fs, f).map_err(TestCaseError::fail)?;
        let want = &model[i];
        prop_assert_eq!(f.metadata().unwrap().size, want.len() as u64);
        let mut first_bad = None;
        for (fb, phys) in map.iter().enumerate() {
            let start = fb * BS as usize;
            let end = (start + BS as usize).min(want.len());
            let mut buf = vec![0u8; end - start];
            let r = f.read_at(&mut buf, start as u64);
            if phys.is_some_and(|p| bad.contains(&p)) {
                first_bad.get_or_insert(start);
                prop_assert_eq!(r.map_err(|e| e.errno()), Err(libc::EIO), "file {} block {}", i, fb);
            } else {
                prop_assert_eq!(r.map_err(|e| e.errno()), Ok(buf.len()), "file {} block {}", i, fb);
                prop_assert!(buf == want[start..end], "file {} block {}: good bytes changed", i, fb);
            }
        }
        let mut whole = vec![0u8; want.len()];
        match first_bad {
            Some(0) => prop_assert_eq!(f.read_at(&mut whole, 0).map_err(|e| e.errno()), Err(libc::EIO)),
            Some(at) => {
                prop_assert_eq!(f.read_at(&mut whole, 0).unwrap(), at, "file {}: short read", i);
                prop_assert!(whole[..at] == want[..at]);
            }
            None => {
                prop_assert_eq!(f.read_at(&mut whole, 0).unwrap(), want.len());
                prop_assert!(&whole == want);
            }
        }
    }
    Ok(())
}

fn pick_block(candidates: &[u64], pick: u64) -> Option<u64> {
    (!candidates.is_empty()).then(|| candidates[(pick % candidates.len() as u64) as usize])
}

/// Builds the layout of `c`, returning the files and the model bytes.
fn build(fs: &Fs, c: &Case) -> Result<(Vec<File>, Vec<Vec<u8>>), TestCaseError> {
    let mut files = Vec::new();
    let mut model = Vec::new();
    for (i, &(blocks, tail)) in c.sizes.iter().enumerate() {
        let f = fs.open(&path(i), &rw()).unwrap();
        let data = pattern(2 * i as u8 + 1, 0, (blocks * BS + tail) as usize);
        f.write_at(&data, 0).unwrap();
        files.push(f);
        model.push(data);
    }
    for op in &c.ops {
        match *op {
            Op::Write { file, offset, len, seed } => {
                let data = pattern(seed, offset, len as usize);
                files[file].write_at(&data, offset).unwrap();
                let m = &mut model[file];
                let end = (offset + len) as usize;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[offset as usize..end].copy_from_slice(&data);
            }
            Op::Reflink { src, src_block, dst, dst_block, blocks }
            | Op::Dedupe { src, src_block, dst, dst_block, blocks } => {
                // Whole source blocks only, destination at or below its EOF block, no overlap.
                let src_full = model[src].len() as u64 / BS;
                let blocks = blocks.min(src_full.saturating_sub(src_block));
                let dst_block = dst_block.min(model[dst].len() as u64 / BS);
                if blocks == 0
                    || (src == dst && src_block < dst_block + blocks && dst_block < src_block + blocks)
                {
                    continue;
                }
                let (s, d, n) =
                    ((src_block * BS) as usize, (dst_block * BS) as usize, (blocks * BS) as usize);
                let bytes = model[src][s..s + n].to_vec();
                if matches!(op, Op::Dedupe { .. }) {
                    // Make the destination equal first, then dedupe it into sharing.
                    files[dst].write_at(&bytes, d as u64).unwrap();
                    let st = fs
                        .dedupe(
                            &files[src],
                            s as u64,
                            n as u64,
                            &[DedupeTarget { file: &files[dst], offset: d as u64 }],
                        )
                        .unwrap();
                    // Equal bytes share; a source hole against written zeros differs (the
                    // library compares holes as holes). Either way the bytes are already equal.
                    prop_assert!(
                        matches!(st[0], DedupeStatus::Same { .. } | DedupeStatus::Differs),
                        "{:?}",
                        st
                    );
                    if matches!(st[0], DedupeStatus::Same { .. }) {
                        DEDUPES.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    fs.reflink(&files[src], s as u64, &files[dst], d as u64, n as u64).unwrap();
                }
                let m = &mut model[dst];
                if m.len() < d + n {
                    m.resize(d + n, 0);
                }
                m[d..d + n].copy_from_slice(&bytes);
            }
        }
    }
    Ok((files, model))
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let pool = Pool::memfd(POOL_BYTES).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let (files, mut model) = build(&fs, c)?;
    let inos: Vec<u64> = files.iter().map(File::ino).collect();
    let mut views: Vec<(usize, Mapping)> = Vec::new();
    for (i, v) in c.views.iter().enumerate() {
        let Some(write) = *v else { continue };
        let len = (model[i].len() as u64).div_ceil(BS) * BS;
        let access = if write { MapAccess::ReadWrite } else { MapAccess::Read };
        views.push((i, files[i].map(0, len, access).unwrap()));
        // A second view of some files: every view of an owner must be handled.
        if write {
            views.push((i, files[i].map(0, len, MapAccess::Read).unwrap()));
        }
    }
    let mut bad: BTreeSet<u64> = BTreeSet::new();
    let mut shared_bad: Option<u64> = None;
    let total_blocks = fs.stats().total_blocks;
    for (k, &class) in c.classes.iter().enumerate() {
        let pick = c.picks[k];
        let owners = brute_owners(&fs, &files);
        let maps_before = block_maps(&fs, &files);
        let layout = fs.read_lock().metadata_layout();
        let meta_blocks = |want: &dyn Fn(&MetaStructure) -> bool| -> Vec<u64> {
            layout
                .iter()
                .filter(|(s, _, _)| want(s))
                .flat_map(|&(_, start, len)| start..start + len)
                .collect()
        };
        let target = match class {
            Class::PrivateData => pick_block(
                &owners
                    .iter()
                    .filter(|(b, o)| o.len() == 1 && !bad.contains(b))
                    .map(|(&b, _)| b)
                    .collect::<Vec<_>>(),
                pick,
            ),
            Class::SharedData => pick_block(
                &owners
                    .iter()
                    .filter(|(b, o)| o.len() > 1 && !bad.contains(b))
                    .map(|(&b, _)| b)
                    .collect::<Vec<_>>(),
                pick,
            ),
            Class::Log => pick_block(&meta_blocks(&|s| *s == MetaStructure::Log), pick),
            Class::Checkpoint => pick_block(&meta_blocks(&|s| *s == MetaStructure::Checkpoint), pick),
            Class::Free => {
                let start = 2 + pick % (total_blocks - 2);
                (start..total_blocks).chain(2..start).find(|&b| {
                    matches!(fs.share_state(b), ferrodax::fs::ShareState::Free) && !bad.contains(&b)
                })
            }
            Class::Superblock => Some(pick % 2),
        };
        let Some(block) = target else { continue };
        CLASSES_HIT.fetch_add(1, Ordering::Relaxed);
        // Brute-force expectations: owners from FIEMAP, view pages that show the block.
        let expect_owners: BTreeSet<(u64, Option<String>, u64, u64, bool)> = owners
            .get(&block)
            .map(|v| {
                v.iter()
                    .map(|&(ino, off)| {
                        let i = inos.iter().position(|&x| x == ino).unwrap();
                        (ino, Some(path(i)), off, BS, v.len() > 1)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut expect_views = BTreeSet::new();
        for (i, v) in &views {
            for page in 0..(v.len() as u64 / BS) {
                if matches!(v.page_state(page), PageState::Block { phys, .. } if phys == block) {
                    expect_views.insert((inos[*i], page * BS, v.as_ptr() as usize + (page * BS) as usize));
                }
            }
        }
        let report =
            fs.memory_failure(block * BS + pick % BS, 1, ferrodax::memfail::FailureFlags::default()).unwrap();
        let got_owners: BTreeSet<_> =
            report.files.iter().map(|o| (o.ino, o.path.clone(), o.file_offset, o.length, o.shared)).collect();
        prop_assert_eq!(&got_owners, &expect_owners, "{:?} block {}: owners\n{}", class, block, report);
        let got_views: BTreeSet<_> = report.views.iter().map(|v| (v.ino, v.file_offset, v.address)).collect();
        prop_assert_eq!(&got_views, &expect_views, "{:?} block {}: views\n{}", class, block, report);
        VIEW_HITS.fetch_add(expect_views.len() as u64, Ordering::Relaxed);
        for (_, v) in &views {
            for page in 0..(v.len() as u64 / BS) {
                if expect_views.contains(&(v.ino(), page * BS, v.as_ptr() as usize + (page * BS) as usize)) {
                    prop_assert_eq!(v.page_state(page), PageState::Poisoned { phys: block });
                }
            }
        }
        prop_assert_eq!(block_maps(&fs, &files), maps_before, "memory failure moved file blocks");
        match class {
            Class::Superblock => {
                prop_assert_eq!(&report.recorded.lost_superblock_copies, &vec![block as u32]);
                prop_assert!(report.metadata.contains(&format!("superblock copy {block}")), "{}", report);
            }
            Class::Log | Class::Checkpoint => {
                let name = if class == Class::Log { "log" } else { "checkpoint" };
                prop_assert!(report.metadata.iter().any(|m| m == name), "{}", report);
                prop_assert!(report.files.is_empty());
                prop_assert_eq!(report.recorded.newly_bad, 1);
            }
            Class::Free => {
                prop_assert_eq!(report.free_blocks, 1);
                prop_assert!(report.files.is_empty() && report.metadata.is_empty(), "{}", report);
            }
            Class::PrivateData | Class::SharedData => {
                prop_assert_eq!(report.recorded.newly_bad, 1);
                prop_assert!(report.metadata.is_empty());
            }
        }
        if class != Class::Superblock {
            bad.insert(block);
        }
        if class == Class::SharedData {
            shared_bad = Some(block);
            SHARED_HITS.fetch_add(1, Ordering::Relaxed);
        }
        // The same block failing twice: already known, same owners.
        if pick % 3 == 0 && class != Class::Superblock {
            let again =
                fs.memory_failure(block * BS, BS, ferrodax::memfail::FailureFlags::default()).unwrap();
            prop_assert_eq!((again.recorded.newly_bad, again.recorded.already_bad), (0, 1));
            let again_owners: BTreeSet<_> = again
                .files
                .iter()
                .map(|o| (o.ino, o.path.clone(), o.file_offset, o.length, o.shared))
                .collect();
            prop_assert_eq!(&again_owners, &expect_owners);
        }
    }
    let flat_bad =
        |fs: &Fs| -> BTreeSet<u64> { fs.bad_blocks().iter().flat_map(|&(s, l)| s..s + l).collect() };
    prop_assert_eq!(&flat_bad(&fs), &bad);
    let report = fs.check();
    prop_assert!(report.is_clean(), "{}", report);
    prop_assert_eq!(report.quarantined_blocks, bad.len() as u64);
    verify_contents(&fs, &files, &model, &bad)?;

    // Recovery writes into a shared bad block: a partial cover is EIO and changes nothing; a whole
    // block rewrite recovers that file only.
    if let Some(block) = shared_bad {
        let owners = brute_owners(&fs, &files);
        let who = owners[&block].clone();
        let (ino, off) = who[0];
        let i = inos.iter().position(|&x| x == ino).unwrap();
        let maps_before = block_maps(&fs, &files);
        let err = files[i].write_at(&[0xee; 100], off + 1).unwrap_err();
        prop_assert_eq!(err.errno(), libc::EIO);
        prop_assert_eq!(
            block_maps(&fs, &files),
            maps_before.clone(),
            "a failed partial cover changed the layout"
        );
        verify_contents(&fs, &files, &model, &bad)?;
        let data = pattern(77, off, BS as usize);
        prop_assert_eq!(files[i].write_at(&data, off).unwrap(), BS as usize);
        let end = (off + BS) as usize;
        if model[i].len() < end {
            model[i].resize(end, 0);
        }
        model[i][off as usize..end].copy_from_slice(&data);
        RECOVERIES.fetch_add(1, Ordering::Relaxed);
        let after = block_maps(&fs, &files);
        prop_assert_ne!(
            after[i][(off / BS) as usize],
            Some(block),
            "the recovered block still maps the bad one"
        );
        for &(other_ino, other_off) in &who[1..] {
            let j = inos.iter().position(|&x| x == other_ino).unwrap();
            prop_assert_eq!(
                after[j][(other_off / BS) as usize],
                Some(block),
                "other owners keep the bad block"
            );
        }
        prop_assert_eq!(&flat_bad(&fs), &bad, "the bad block stays quarantined");
        verify_contents(&fs, &files, &model, &bad)?;
        let report = fs.check();
        prop_assert!(report.is_clean(), "{}", report);
    }

    // Reopen: the poison records and the EIOs survive.
    drop(views);
    drop(files);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    prop_assert_eq!(&flat_bad(&fs), &bad, "poison records lost on remount");
    let report = fs.check();
    prop_assert!(report.is_clean(), "{}", report);
    prop_assert_eq!(report.quarantined_blocks, bad.len() as u64);
    let files: Vec<File> = (0..NFILES).map(|i| fs.open(&path(i), &rw()).unwrap()).collect();
    verify_contents(&fs, &files, &model, &bad)?;
    Ok(())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rand_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes)
}

#[test]
fn poison_in_every_block_class_finds_every_owner_and_view_and_loses_no_good_byte() {
    let cases = env_u64("FERRODAX_PROPTEST_CASES", 512) as u32;
    let seed = match std::env::var("FERRODAX_PROPTEST_SEED").as_deref() {
        Ok("random") => rand_seed(),
        Ok(v) => v.parse().expect("FERRODAX_PROPTEST_SEED: a number or \"random\""),
        Err(_) => 0x0bad_b10c,
    };
    eprintln!("memfail property test: {cases} cases, FERRODAX_PROPTEST_SEED={seed}");
    let mut seed_bytes = [0u8; 32];
    for (i, chunk) in seed_bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ (i as u64).wrapping_mul(0x9e37_79b9)).to_le_bytes());
    }
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    if let Err(e) = runner.run(&case(), |c| run_case(&c)) {
        panic!("{e}\n(reproduce with FERRODAX_PROPTEST_SEED={seed})");
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "coverage: {} injections, {} into shared data, {} view pages poisoned, {} recovery writes, {} dedupes",
        get(&CLASSES_HIT),
        get(&SHARED_HITS),
        get(&VIEW_HITS),
        get(&RECOVERIES),
        get(&DEDUPES)
    );
    assert!(get(&DEDUPES) > 0, "no dedupe shared anything");
    assert!(get(&SHARED_HITS) > 0 && get(&VIEW_HITS) > 0 && get(&RECOVERIES) > 0, "coverage too thin");
}

/// Poison keeps arriving (into the files other threads reflink, dedupe and rewrite) while a
/// separate group of files is faulted through views with plain stores; nothing deadlocks, every
/// report names only the poisoned group, the faulted files hold exactly what was stored, bad blocks
/// read EIO, and check() is clean with every bad block quarantined, before and after a remount.
#[test]
fn poison_during_concurrent_reflink_dedupe_cow_writes_and_faults() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        concurrent_body();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => worker.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: deadlock (no progress in 120 s)")
        }
    }
}

fn concurrent_body() {
    const P: usize = 4; // poisoned group
    const BLOCKS: u64 = 16;
    const INJECTIONS: u64 = 200;
    let pool = Pool::memfd(16 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let pfiles: Arc<Vec<File>> = Arc::new(
        (0..P)
            .map(|i| {
                let f = fs.open(&format!("/p{i}"), &rw()).unwrap();
                f.write_at(&pattern(2 * i as u8 + 1, 0, (BLOCKS * BS) as usize), 0).unwrap();
                f
            })
            .collect(),
    );
    // The faulted group: a source and two clones of it, each clone stored into by one thread.
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&pattern(9, 0, (BLOCKS * BS) as usize), 0).unwrap();
    let clones: Vec<File> = (0..2)
        .map(|i| {
            let f = fs.open(&format!("/clone{i}"), &rw()).unwrap();
            fs.reflink(&src, 0, &f, 0, 0).unwrap();
            f
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    // Reflinker, deduper and CoW writer over the poisoned group; EIO is the only allowed error.
    for role in 0..3u64 {
        let (fs, files, stop, ops) = (fs.clone(), pfiles.clone(), stop.clone(), ops.clone());
        threads.push(std::thread::spawn(move || {
            let mut x = role * 7919 + 1;
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (a, b) = ((x >> 33) as usize % P, (x >> 40) as usize % P);
                let (sb, db, n) = ((x >> 20) % 8, (x >> 12) % 8, 1 + (x >> 50) % 4);
                let result = match role {
                    0 if a != b => fs.reflink(&files[a], sb * BS, &files[b], db * BS, n * BS).map(|_| ()),
                    1 if a != b => fs
                        .dedupe(
                            &files[a],
                            sb * BS,
                            n * BS,
                            &[DedupeTarget { file: &files[b], offset: sb * BS }],
                        )
                        .map(|st| {
                            if let DedupeStatus::Failed(e) = &st[0] {
                                assert_eq!(e.errno(), libc::EIO, "dedupe: {e}");
                            }
                        }),
                    _ => files[a].write_at(&[x as u8; 1000], db * BS + 100).map(|_| ()),
                };
                if let Err(e) = result {
                    assert_eq!(e.errno(), libc::EIO, "role {role}: {e}");
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Faulters: plain stores through a view of their own clone (copy-on-write faults).
    let mut faulters = Vec::new();
    for (i, clone) in clones.iter().enumerate() {
        let view = clone.map(0, BLOCKS * BS, MapAccess::ReadWrite).unwrap();
        let (stop, ops) = (stop.clone(), ops.clone());
        faulters.push(std::thread::spawn(move || {
            let mut round = 0u8;
            let mut last = vec![None; BLOCKS as usize];
            while !stop.load(Ordering::Relaxed) {
                round = round.wrapping_add(1);
                let page = (round as usize * 5 + i) % BLOCKS as usize;
                view.store_plain(page * BS as usize + 17, &[round; 64]).unwrap();
                last[page] = Some(round);
                ops.fetch_add(1, Ordering::Relaxed);
            }
            drop(view);
            last
        }));
    }
    let faulted_inos: BTreeSet<u64> = clones.iter().map(File::ino).chain([src.ino()]).collect();
    let mut injections = 0;
    for k in 0..INJECTIONS {
        // A block the poisoned group owns right now, pinned by a reflink until it is poisoned:
        // the group may drop it meanwhile (then the report names only owners from that moment,
        // all in the poisoned group or the pin), but nobody else can take it — a faulter's
        // copy-on-write given that block would meet the poison with a real SIGBUS.
        let f = &pfiles[(k % P as u64) as usize];
        let pin_path = format!("/pin{k}");
        let pin = fs.open(&pin_path, &rw()).unwrap();
        fs.reflink(f, 0, &pin, 0, 0).unwrap();
        let extents = fs.fiemap(&pin).unwrap();
        let blocks: Vec<u64> =
            extents.iter().flat_map(|e| (0..e.length / BS).map(move |b| e.physical / BS + b)).collect();
        let block = blocks[(k as usize * 13) % blocks.len()];
        let report = fs.memory_failure(block * BS, BS, ferrodax::memfail::FailureFlags::default()).unwrap();
        injections += 1;
        for o in &report.files {
            assert!(!faulted_inos.contains(&o.ino), "a faulted file owns poisoned block {block}: {report}");
        }
        drop(pin);
        fs.remove_file(&pin_path).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let stores: Vec<Vec<Option<u8>>> = faulters.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(ops.load(Ordering::Relaxed) > 0 && injections == INJECTIONS);
    let bad: BTreeSet<u64> = fs.bad_blocks().iter().flat_map(|&(s, l)| s..s + l).collect();
    assert!(!bad.is_empty());
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.quarantined_blocks, bad.len() as u64);
    // The faulted clones hold the source pattern plus exactly the last store into each page.
    let src_bytes = pattern(9, 0, (BLOCKS * BS) as usize);
    for (clone, last) in clones.iter().zip(&stores) {
        let mut want = src_bytes.clone();
        for (page, v) in last.iter().enumerate() {
            if let Some(v) = v {
                let at = page * BS as usize + 17;
                want[at..at + 64].fill(*v);
            }
        }
        let mut got = vec![0u8; want.len()];
        assert_eq!(clone.read_at(&mut got, 0).unwrap(), want.len());
        assert!(got == want, "a faulted clone lost stores");
    }
    // Every block of the poisoned group reads EIO exactly when it is bad; then remount.
    let check_eio = |fs: &Fs, files: &[File]| {
        for f in files {
            for (fb, phys) in block_map(fs, f).unwrap().iter().enumerate() {
                let mut buf = vec![0u8; BS as usize];
                let r = f.read_at(&mut buf, fb as u64 * BS);
                if phys.is_some_and(|p| bad.contains(&p)) {
                    assert_eq!(r.unwrap_err().errno(), libc::EIO);
                } else {
                    assert!(r.is_ok());
                }
            }
        }
    };
    check_eio(&fs, &pfiles);
    drop(pfiles);
    drop(clones);
    drop(src);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    let again: BTreeSet<u64> = fs.bad_blocks().iter().flat_map(|&(s, l)| s..s + l).collect();
    assert_eq!(again, bad);
    assert!(fs.check().is_clean(), "{}", fs.check());
    let files: Vec<File> = (0..P).map(|i| fs.open(&format!("/p{i}"), &rw()).unwrap()).collect();
    check_eio(&fs, &files);
}
