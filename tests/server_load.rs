//! Load through the pool server (issue 8 item 6): eight client processes for a bounded time, each
//! doing random pwrites, reflinks, dedupes, plain stores through a held read-write view (store
//! faults when the page is shared) and verified reads on its own files, reflinks and dedupes from
//! a shared file it also holds a read-only view of, and reads of a file of its own that the test
//! poisons now and then. Each client logs every operation that returned Ok; the test replays the
//! logs into a model afterwards.
//!
//! Guards: every file's bytes equal the model (so no committed write, store or reflink was lost or
//! misplaced, and no client's work reached another's files); every dedupe that said "same" or
//! "differs" was right about the model's bytes; exactly the poisoned pages read EIO, and a
//! recovery write makes them readable again; fsck is clean through the server and after a
//! remount. Each client also checks every read (and its views) against its own model as it goes.
//!
//! FERRODAX_LOAD_MS sets each client's run time (3000 ms by default).

mod server_common;

use ferrodax::dax::MapAccess;
use ferrodax::memfail::FailureFlags;
use ferrodax::{DedupeStatus, DedupeTarget};
use server_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CLIENTS: u64 = 8;
const PAGES: u64 = 16;
const LEN: usize = (PAGES * PAGE) as usize;
/// File indices in a client's log: 0..3 its own files, 3 its poison target, 4 the shared file.
const OWN: usize = 3;
const POISONED: usize = 3;
const SHARED: usize = 4;

fn own_path(k: u64, j: usize) -> String {
    format!("/c{k}/f{j}")
}

fn initial(k: u64, j: usize) -> Vec<u8> {
    noise(1000 * (k + 1) + j as u64, LEN)
}

fn shared_initial() -> Vec<u8> {
    // Some pages equal some clients' pages, so that dedupes against it sometimes succeed.
    let mut d = noise(77, LEN);
    d[..(2 * PAGE) as usize].copy_from_slice(&initial(0, 0)[..(2 * PAGE) as usize]);
    d
}

fn client() {
    let k = env_u64("FDX_K");
    let mut rng = Rng(env_u64("FDX_SEED"));
    let run_for = Duration::from_millis(env_u64("FDX_MS"));
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let mut files: Vec<ferrodax::File> = (0..OWN).map(|j| fs.open(&own_path(k, j), &rw()).unwrap()).collect();
    files.push(fs.open(&format!("/p{k}"), &ro()).unwrap());
    files.push(fs.open("/s0", &ro()).unwrap());
    let mut model: Vec<Vec<u8>> = (0..OWN).map(|j| initial(k, j)).collect();
    model.push(initial(k, POISONED));
    model.push(shared_initial());
    let view = files[0].map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    let shared_view = files[SHARED].map(0, PAGES * PAGE, MapAccess::Read).unwrap();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < run_for {
        n += 1;
        match rng.below(7) {
            0 => {
                let j = rng.below(OWN as u64) as usize;
                let len = 1 + rng.below(2 * PAGE) as usize;
                let off = rng.below((LEN - len) as u64 + 1) as usize;
                let seed = rng.next();
                let data = noise(seed, len);
                assert_eq!(files[j].write_at(&data, off as u64).unwrap(), len);
                model[j][off..off + len].copy_from_slice(&data);
                say(&format!("W {j} {off} {len} {seed}"));
            }
            1 => {
                let len = 1 + rng.below(PAGE) as usize;
                let off = rng.below((LEN - len) as u64 + 1) as usize;
                let seed = rng.next();
                let data = noise(seed, len);
                view.store_plain(off, &data).unwrap();
                model[0][off..off + len].copy_from_slice(&data);
                say(&format!("W 0 {off} {len} {seed}"));
            }
            2 => {
                let src = [0, 1, 2, SHARED][rng.below(4) as usize];
                let dst = rng.below(OWN as u64) as usize;
                let pages = 1 + rng.below(4);
                let (sp, dp) = (rng.below(PAGES - pages + 1), rng.below(PAGES - pages + 1));
                if src == dst && sp.abs_diff(dp) < pages {
                    continue;
                }
                fs.reflink(&files[src], sp * PAGE, &files[dst], dp * PAGE, pages * PAGE).unwrap();
                let bytes = model[src][(sp * PAGE) as usize..][..(pages * PAGE) as usize].to_vec();
                model[dst][(dp * PAGE) as usize..][..bytes.len()].copy_from_slice(&bytes);
                say(&format!("R {src} {sp} {dst} {dp} {pages}"));
            }
            3 => {
                let src = [0, 1, 2, SHARED][rng.below(4) as usize];
                let dst = rng.below(OWN as u64) as usize;
                let pages = 1 + rng.below(2);
                let sp = rng.below(PAGES - pages + 1);
                // Often the same offset, where an earlier reflink may have made the bytes equal.
                let dp = if rng.below(2) == 0 { sp } else { rng.below(PAGES - pages + 1) };
                if src == dst && sp.abs_diff(dp) < pages {
                    continue;
                }
                let target = [DedupeTarget { file: &files[dst], offset: dp * PAGE }];
                let status = fs.dedupe(&files[src], sp * PAGE, pages * PAGE, &target).unwrap();
                let word = match &status[0] {
                    DedupeStatus::Same { bytes_deduped } => {
                        assert_eq!(*bytes_deduped, pages * PAGE);
                        "same"
                    }
                    DedupeStatus::Differs => "differs",
                    DedupeStatus::Failed(e) => panic!("dedupe failed: {e}"),
                };
                say(&format!("D {src} {sp} {dst} {dp} {pages} {word}"));
            }
            4 => {
                let j = [0, 1, 2, SHARED][rng.below(4) as usize];
                let len = 1 + rng.below(3 * PAGE) as usize;
                let off = rng.below((LEN - len) as u64 + 1) as usize;
                let mut buf = vec![0u8; len];
                files[j].read_exact_at(&mut buf, off as u64).unwrap();
                assert!(buf == model[j][off..off + len], "client {k}: file {j} [{off}, +{len}) differs");
            }
            5 => {
                let mut buf = vec![0u8; LEN];
                view.read_at(0, &mut buf).unwrap();
                assert!(buf == model[0], "client {k}: its view of f0 differs from its model");
                shared_view.read_at(0, &mut buf).unwrap();
                assert!(buf == model[SHARED], "client {k}: its view of /s0 differs");
            }
            _ => {
                let page = rng.below(PAGES);
                let mut buf = vec![0u8; PAGE as usize];
                match files[POISONED].read_at(&mut buf, page * PAGE) {
                    Ok(got) => {
                        assert_eq!(got, PAGE as usize);
                        assert!(buf[..] == model[POISONED][(page * PAGE) as usize..][..PAGE as usize]);
                    }
                    Err(e) => {
                        assert_eq!(e.errno(), libc::EIO, "client {k}: reading /p{k} page {page}: {e}");
                        say(&format!("E {page}"));
                    }
                }
            }
        }
    }
    drop((view, shared_view));
    say(&format!("done {n}"));
    std::process::exit(0);
}

#[test]
fn eight_client_processes_under_load_with_poison_injected_leave_every_file_equal_to_the_replayed_model() {
    const TEST: &str =
        "eight_client_processes_under_load_with_poison_injected_leave_every_file_equal_to_the_replayed_model";
    if role().is_some() {
        return client();
    }
    let run_ms: u64 = std::env::var("FERRODAX_LOAD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let pool = TestPool::new(256 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    fs.open("/s0", &rw()).unwrap().write_at(&shared_initial(), 0).unwrap();
    let mut poison_targets = Vec::new();
    for k in 0..CLIENTS {
        fs.create_dir(&format!("/c{k}")).unwrap();
        for j in 0..OWN {
            fs.open(&own_path(k, j), &rw()).unwrap().write_at(&initial(k, j), 0).unwrap();
        }
        let p = fs.open(&format!("/p{k}"), &rw()).unwrap();
        p.write_at(&initial(k, POISONED), 0).unwrap();
        poison_targets.push(p);
    }
    let socket = pool.socket().to_str().unwrap().to_string();
    let mut kids: Vec<Kid> = (0..CLIENTS)
        .map(|k| {
            let env = [
                ("FDX_SOCKET", socket.clone()),
                ("FDX_K", k.to_string()),
                ("FDX_SEED", (k * 7919 + 1).to_string()),
                ("FDX_MS", run_ms.to_string()),
            ];
            Kid::spawn(pool.dir.path(), TEST, &format!("client{k}"), &env)
        })
        .collect();
    // Poison a page of some client's /pK now and then while they run.
    let mut rng = Rng(99);
    let mut poisoned: BTreeSet<(u64, u64)> = BTreeSet::new();
    while kids.iter_mut().any(|kid| kid.child.try_wait().unwrap().is_none()) {
        std::thread::sleep(Duration::from_millis(200));
        let (k, page) = (rng.below(CLIENTS), rng.below(PAGES));
        let phys = phys_of(&fs, &poison_targets[k as usize], page);
        let report = fs.memory_failure(phys + rng.below(PAGE), 1, FailureFlags::default()).unwrap();
        let owners: Vec<_> = report.files.iter().map(|f| (f.path.clone(), f.file_offset)).collect();
        assert_eq!(owners, vec![(Some(format!("/p{k}")), page * PAGE)], "{report}");
        poisoned.insert((k, page));
    }
    assert!(!poisoned.is_empty());
    // Replay every client's log.
    let mut total_ops = 0;
    let mut dedupes_same = 0;
    for (k, kid) in kids.iter_mut().enumerate() {
        let k = k as u64;
        kid.wait_code(0);
        let log = kid.rest();
        let done: u64 = log.last().and_then(|l| l.strip_prefix("done ")).expect("done").parse().unwrap();
        total_ops += done;
        let mut model: Vec<Vec<u8>> = (0..OWN).map(|j| initial(k, j)).collect();
        model.push(initial(k, POISONED));
        model.push(shared_initial());
        let mut eio_seen = BTreeSet::new();
        for line in &log[..log.len() - 1] {
            let w: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| -> usize { w[i].parse().unwrap() };
            match w[0] {
                "W" => {
                    let (j, off, len) = (num(1), num(2), num(3));
                    let data = noise(w[4].parse().unwrap(), len);
                    model[j][off..off + len].copy_from_slice(&data);
                }
                "R" => {
                    let (src, sp, dst, dp, pages) = (num(1), num(2), num(3), num(4), num(5));
                    let len = pages * PAGE as usize;
                    let bytes = model[src][sp * PAGE as usize..][..len].to_vec();
                    model[dst][dp * PAGE as usize..][..len].copy_from_slice(&bytes);
                }
                "D" => {
                    let (src, sp, dst, dp, pages) = (num(1), num(2), num(3), num(4), num(5));
                    let len = pages * PAGE as usize;
                    let equal =
                        model[src][sp * PAGE as usize..][..len] == model[dst][dp * PAGE as usize..][..len];
                    assert_eq!(equal, w[6] == "same", "client {k}: dedupe `{line}` answered wrongly");
                    dedupes_same += usize::from(equal);
                }
                "E" => {
                    eio_seen.insert(num(1) as u64);
                }
                other => panic!("client {k}: unknown log line {other}"),
            }
        }
        for (j, want) in model.iter().enumerate().take(OWN) {
            let path = own_path(k, j);
            assert!(read_all(&fs, &path) == *want, "client {k}: {path} differs from the model");
        }
        // Exactly the poisoned pages of /pK read EIO; the others are intact. A page the client
        // saw EIO on was poisoned.
        let p = &poison_targets[k as usize];
        for page in 0..PAGES {
            let mut buf = vec![0u8; PAGE as usize];
            let got = p.read_at(&mut buf, page * PAGE);
            if poisoned.contains(&(k, page)) {
                assert_eq!(got.unwrap_err().errno(), libc::EIO, "/p{k} page {page} was poisoned");
            } else {
                assert_eq!(got.unwrap(), PAGE as usize);
                assert!(
                    buf[..] == model[POISONED][(page * PAGE) as usize..][..PAGE as usize],
                    "/p{k} page {page}"
                );
                assert!(!eio_seen.contains(&page), "client {k} read EIO from good page {page}");
            }
        }
    }
    eprintln!(
        "{total_ops} operations, {dedupes_same} dedupes of equal ranges, {} pages poisoned",
        poisoned.len()
    );
    assert_eq!(read_all(&fs, "/s0"), shared_initial());
    assert_clean(&fs, "the load");
    // Recovery writes make the poisoned pages readable again; the bad blocks stay out of use.
    let bad_before = fs.bad_blocks();
    for &(k, page) in &poisoned {
        let p = fs.open(&format!("/p{k}"), &rw()).unwrap();
        p.write_at(&noise(k * 100 + page, PAGE as usize), page * PAGE).unwrap();
        let mut buf = vec![0u8; PAGE as usize];
        p.read_exact_at(&mut buf, page * PAGE).unwrap();
        assert!(buf == noise(k * 100 + page, PAGE as usize));
    }
    assert_eq!(fs.bad_blocks(), bad_before, "bad blocks stay quarantined");
    assert_clean(&fs, "the recovery writes");
    let snapshot: BTreeMap<String, Vec<u8>> = (0..CLIENTS)
        .flat_map(|k| (0..OWN).map(move |j| own_path(k, j)).chain(std::iter::once(format!("/p{k}"))))
        .map(|path| {
            let data = read_all(&fs, &path);
            (path, data)
        })
        .collect();
    drop((poison_targets, fs));
    server.stop();
    let fs = pool.mount();
    assert_clean(&fs, "remounting after the load");
    for (path, data) in &snapshot {
        assert!(read_all(&fs, path) == *data, "{path} changed across the server's shutdown");
    }
}
