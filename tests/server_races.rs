//! Races between client processes' stores through views and other clients' layout changes
//! through the pool server.
//!
//! Guards: while threads in two client processes store through read-write views of a clone and
//! other threads (in the same processes) read into their own view memory (a `read_at` whose
//! buffer is a shared view page, so the copy faults in the middle of a call) — and, in the tests
//! kept ignored until the bug they show is fixed, keep reflinking and deduping the source's pages
//! back over the clone — no store is ever refused, the source file never changes (no view ever
//! maps a shared block writable), a read-only view of the source in a third process always shows
//! the source's bytes, every byte of the clone is a source byte or a stored byte, nothing
//! deadlocks (every process finishes), and fsck is clean; a store stopped by another process's
//! truncate raises SIGBUS (ignored until fixed: it can be SIGSEGV).

mod server_common;

use ferrodax::dax::MapAccess;
use ferrodax::DedupeTarget;
use server_common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGES: u64 = 16;
const LEN: usize = (PAGES * PAGE) as usize;

fn source() -> Vec<u8> {
    // Bytes below 0x80; stores use bytes from 0x80 up.
    noise(11, LEN).into_iter().map(|b| b & 0x7f).collect()
}

/// Threads storing into the clone (`s` in `FDX_KINDS`), reflinking and deduping the source over
/// it (`r`), and reading into the view (`x`). A refused store fault (SIGSEGV) is reported by the
/// recorder as `signal 11 ...`.
fn racer() {
    install_recorder(libc::SIGSEGV);
    let kinds = env_str("FDX_KINDS");
    let k = env_u64("FDX_K");
    let run_for = Duration::from_millis(env_u64("FDX_MS"));
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let src = Arc::new(fs.open("/src", &ro()).unwrap());
    let clone = Arc::new(fs.open("/clone", &rw()).unwrap());
    let view = Arc::new(clone.map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Stores: whole pages of one byte (0x80 + k*16 + i % 16).
    if kinds.contains('s') {
        let (view, stop) = (view.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(k * 31 + 1);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let page = rng.below(PAGES);
                let byte = 0x80 + (k as u8) * 16 + (n % 16) as u8;
                view.store_plain((page * PAGE) as usize, &[byte; PAGE as usize]).unwrap();
                n += 1;
            }
            n
        }));
    }
    // Reflinks and dedupes of the source over the clone.
    if kinds.contains('r') {
        let (fs, src, clone, stop) = (fs.clone(), src.clone(), clone.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(k * 31 + 2);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let page = rng.below(PAGES);
                if rng.below(2) == 0 {
                    fs.reflink(&src, page * PAGE, &clone, page * PAGE, PAGE).unwrap();
                } else {
                    let target = [DedupeTarget { file: &clone, offset: page * PAGE }];
                    fs.dedupe(&src, page * PAGE, PAGE, &target).unwrap();
                }
                n += 1;
            }
            n
        }));
    }
    // read_at into the view's own memory: the copy lands in pages that may be shared.
    if kinds.contains('x') {
        let (clone, view, stop) = (clone.clone(), view.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(k * 31 + 3);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (from, to) = (rng.below(PAGES), rng.below(PAGES));
                if from == to {
                    continue;
                }
                // SAFETY: `to` is a page inside the live view; the slice is only written by
                // read_at (other threads may store into it concurrently, as in any program that
                // races on shared memory; the bytes are only checked at the end).
                let buf = unsafe {
                    std::slice::from_raw_parts_mut(view.as_ptr().add((to * PAGE) as usize), PAGE as usize)
                };
                clone.read_at(buf, from * PAGE).unwrap();
                n += 1;
            }
            n
        }));
    }
    let started = Instant::now();
    while started.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    say(&format!("done {}", counts.join(" ")));
    drop(view);
    std::process::exit(0);
}

/// A read-only view of the source, hashed until stdin closes: prints `bad` if it ever differs.
fn source_watcher() {
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let src = fs.open("/src", &ro()).unwrap();
    let view = src.map(0, PAGES * PAGE, MapAccess::Read).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            drain_stdin();
            stop.store(true, Ordering::SeqCst);
        });
    }
    let want = source();
    let mut buf = vec![0u8; LEN];
    let (mut n, mut bad) = (0u64, 0u64);
    say("watching");
    while !stop.load(Ordering::SeqCst) {
        view.read_at(0, &mut buf).unwrap();
        if buf != want {
            bad += 1;
        }
        n += 1;
    }
    say(&format!("watched {n} {bad}"));
    drop(view);
    std::process::exit(0);
}

/// Runs a watcher of the source and two racers doing `kinds[k]` for `FERRODAX_LOAD_MS` (1500 by
/// default), then checks everything the module promises.
fn race(test: &str, kinds: [&str; 2]) {
    let run_ms: u64 = std::env::var("FERRODAX_LOAD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&source(), 0).unwrap();
    let clone = fs.open("/clone", &rw()).unwrap();
    fs.reflink(&src, 0, &clone, 0, 0).unwrap();
    let socket = pool.socket().to_str().unwrap().to_string();
    let mut watcher = Kid::spawn(pool.dir.path(), test, "watcher", &[("FDX_SOCKET", socket.clone())]);
    watcher.expect("watching");
    let mut racers: Vec<Kid> = (0..2u64)
        .map(|k| {
            let env = [
                ("FDX_SOCKET", socket.clone()),
                ("FDX_K", k.to_string()),
                ("FDX_MS", run_ms.to_string()),
                ("FDX_KINDS", kinds[k as usize].to_string()),
            ];
            Kid::spawn(pool.dir.path(), test, &format!("racer{k}-{}", kinds[k as usize]), &env)
        })
        .collect();
    for racer in &mut racers {
        let line = racer.next_line();
        assert!(
            line.starts_with("done "),
            "{}: a store through its read-write view was refused (the recorder got {line}: signal, si_code, si_addr)",
            racer.name
        );
        let counts: Vec<u64> = line.split_whitespace().skip(1).map(|c| c.parse().unwrap()).collect();
        assert!(counts.iter().all(|&c| c > 0), "{}: a thread never ran: {counts:?}", racer.name);
        racer.wait_code(0);
    }
    let status = watcher.wait();
    let watched: Vec<u64> =
        watcher.rest()[0].split_whitespace().skip(1).map(|c| c.parse().unwrap()).collect();
    assert_eq!(status.code(), Some(0));
    assert!(watched[0] > 0);
    assert_eq!(
        watched[1], 0,
        "a read-only view of the source showed other bytes {} of {} times",
        watched[1], watched[0]
    );
    assert_eq!(read_all(&fs, "/src"), source(), "a store through a clone's view reached the source");
    let got = read_all(&fs, "/clone");
    let src_bytes = source();
    // A read_at into the view copies a clone page (source bytes, or stored ones) into another
    // page: a byte is a stored byte, or the source's byte at the same offset of some page.
    for (i, &b) in got.iter().enumerate() {
        let at = i % PAGE as usize;
        let from_source = (0..PAGES as usize).any(|p| src_bytes[p * PAGE as usize + at] == b);
        assert!(
            b >= 0x80 || from_source,
            "clone byte {i} is {b:#x}: neither a source byte nor a stored byte"
        );
    }
    assert_clean(&fs, "the races");
    drop((src, clone, fs));
    server.stop();
}

fn child_roles() -> bool {
    match role().as_deref() {
        Some("watcher") => source_watcher(),
        Some(_) => racer(),
        None => return false,
    }
    true
}

#[test]
fn stores_racing_with_reads_into_views_in_two_client_processes_never_reach_the_source_or_fault_fatally() {
    if child_roles() {
        return;
    }
    race(
        "stores_racing_with_reads_into_views_in_two_client_processes_never_reach_the_source_or_fault_fatally",
        ["sx", "sx"],
    );
}

#[test]
fn a_store_through_a_read_write_view_is_never_refused_while_another_process_reflinks_over_the_page() {
    if child_roles() {
        return;
    }
    race(
        "a_store_through_a_read_write_view_is_never_refused_while_another_process_reflinks_over_the_page",
        ["s", "r"],
    );
}

#[test]
fn stores_racing_with_reflinks_dedupes_and_reads_into_views_across_processes_never_reach_the_source() {
    if child_roles() {
        return;
    }
    race(
        "stores_racing_with_reflinks_dedupes_and_reads_into_views_across_processes_never_reach_the_source",
        ["srx", "srx"],
    );
}

/// Stores one byte into each page of its view of `FDX_FILE`, from the last page down, with a
/// little pause between; `signal ...` from the recorder if a store is stopped.
fn cut_storer() {
    install_sigbus_recorder();
    install_recorder(libc::SIGSEGV);
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let f = fs.open(&env_str("FDX_FILE"), &rw()).unwrap();
    let view = f.map(0, PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    say(&format!("ready {}", view.as_ptr() as usize));
    assert_eq!(hear(), "go");
    let mut rng = Rng(env_u64("FDX_SEED"));
    for page in (0..PAGES).rev() {
        view.store_plain((page * PAGE) as usize, &[0x99]).unwrap();
        let spin = Instant::now();
        let pause = Duration::from_micros(rng.below(200));
        while spin.elapsed() < pause {
            std::hint::spin_loop();
        }
    }
    say("done");
    std::process::exit(0);
}

#[test]
fn a_store_into_a_shared_page_that_another_process_truncates_away_raises_sigbus_never_sigsegv() {
    const TEST: &str =
        "a_store_into_a_shared_page_that_another_process_truncates_away_raises_sigbus_never_sigsegv";
    if role().is_some() {
        return cut_storer();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&source(), 0).unwrap();
    let mut rng = Rng(3);
    let (mut completed, mut sigbus) = (0, 0);
    for i in 0..30u64 {
        let path = format!("/t{i}");
        let t = fs.open(&path, &rw()).unwrap();
        fs.reflink(&src, 0, &t, 0, 0).unwrap();
        let env = [
            ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string()),
            ("FDX_FILE", path.clone()),
            ("FDX_SEED", i.to_string()),
        ];
        let mut kid = Kid::spawn(pool.dir.path(), TEST, "cut-storer", &env);
        let base: usize = kid.expect("ready")[0].parse().unwrap();
        kid.send("go");
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        t.set_len(8 * PAGE).unwrap();
        let line = kid.next_line();
        if line == "done" {
            completed += 1;
            kid.wait_code(0);
        } else {
            let fields: Vec<String> = line.split_whitespace().skip(1).map(str::to_string).collect();
            let (sig, code, addr, _) = parse_signal(&fields);
            assert_eq!(
                (sig, code),
                (libc::SIGBUS, libc::BUS_ADRERR),
                "iteration {i}: a store stopped by a truncate must be SIGBUS BUS_ADRERR, got {line} (view page {})",
                addr.wrapping_sub(base) as i64 / PAGE as i64
            );
            assert!(addr >= base + 8 * PAGE as usize && (addr - base) % PAGE as usize == 0, "{line}");
            sigbus += 1;
            kid.wait_code(42);
        }
        // Pages below the cut that the storer reached hold its byte, the rest the source's.
        let got = read_all(&fs, &path);
        assert_eq!(got.len(), 8 * PAGE as usize);
        for page in 0..8 {
            let b = got[(page * PAGE) as usize];
            assert!(b == 0x99 || b == source()[(page * PAGE) as usize], "iteration {i} page {page}");
            assert!(
                got[(page * PAGE + 1) as usize..((page + 1) * PAGE) as usize]
                    == source()[(page * PAGE + 1) as usize..((page + 1) * PAGE) as usize]
            );
        }
        assert_clean(&fs, &format!("iteration {i}"));
    }
    eprintln!("{completed} stores completed, {sigbus} stopped by SIGBUS");
    drop((src, fs));
    server.stop();
}
