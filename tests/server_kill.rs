//! The pool server when processes die or misbehave (issue 8 item 5).
//!
//! Guards: a client process SIGKILLed at random points (while connecting, writing, reflinking,
//! faulting on stores, holding views and an unlinked open file) never stops the server from
//! serving another client process that works all along: every write that client got Ok for is
//! present, fsck is clean, and once the files are deleted the free blocks are back to where they
//! were (no block leaked by a dead client's handles, views or orphans). When the server itself is
//! killed, a client's next operations fail with ENOTCONN, its views raise SIGBUS instead of
//! showing a pool nobody owns, and a restarted server mounts the pool clean with every committed
//! write; client processes writing records while the server is killed lose no acknowledged
//! record and never find one torn after a restart. A client that sends bytes that are not the
//! protocol is disconnected and the server keeps serving the others; one that names another
//! client's views or handles in its requests gets EINVAL or EBADF and changes nothing. A clean
//! shutdown tells clients goodbye without killing them (ignored until fixed: it kills those that
//! hold views).
//!
//! FERRODAX_SOAK=1 runs 1000 kill iterations instead of 100.

mod server_common;

use ferrodax::dax::MapAccess;
use ferrodax::server::protocol::PROTOCOL_VERSION;
use ferrodax::server::wire;
use server_common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SURVIVOR_FILES: u64 = 8;
const FILE_PAGES: u64 = 8;
const SHARED_PAGES: u64 = 16;

/// The survivor: writes, reflinks from /shared and stores through views into its own files
/// /s0../s7 until its standard input closes; prints every operation that returned Ok.
fn survivor() {
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            drain_stdin();
            stop.store(true, Ordering::SeqCst);
        });
    }
    let shared = fs.open("/shared", &ro()).unwrap();
    let files: Vec<ferrodax::File> = (0..SURVIVOR_FILES)
        .map(|i| {
            let f = fs.open(&format!("/s{i}"), &rw()).unwrap();
            f.write_at(&vec![0u8; (FILE_PAGES * PAGE) as usize], 0).unwrap();
            f
        })
        .collect();
    say("started");
    let mut rng = Rng(env_u64("FDX_SEED"));
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let i = rng.below(SURVIVOR_FILES) as usize;
        let page = rng.below(FILE_PAGES);
        let seed = rng.next();
        match rng.below(3) {
            0 => {
                files[i].write_at(&noise(seed, PAGE as usize), page * PAGE).unwrap();
                say(&format!("W {i} {page} {seed}"));
            }
            1 => {
                let src = rng.below(SHARED_PAGES);
                fs.reflink(&shared, src * PAGE, &files[i], page * PAGE, PAGE).unwrap();
                say(&format!("R {i} {page} {src}"));
            }
            _ => {
                let view = files[i].map(0, FILE_PAGES * PAGE, MapAccess::ReadWrite).unwrap();
                view.store_plain((page * PAGE) as usize, &noise(seed, PAGE as usize)).unwrap();
                drop(view);
                say(&format!("M {i} {page} {seed}"));
            }
        }
        n += 1;
    }
    say(&format!("done {n}"));
    std::process::exit(0);
}

/// A victim: everything a client can be doing when it is killed.
fn victim() {
    let seed = env_u64("FDX_SEED");
    let mut rng = Rng(seed);
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let shared = fs.open("/shared", &ro()).unwrap();
    let f = fs.open(&format!("/v{}", seed % 10), &rw()).unwrap();
    f.write_at(&noise(seed, (4 * PAGE) as usize), 0).unwrap();
    fs.reflink(&shared, 0, &f, 4 * PAGE, 4 * PAGE).unwrap();
    let view = f.map(0, FILE_PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    // An unlinked file kept alive by an open handle and a view.
    let tmp_path = format!("/tmp{seed}");
    let tmp = fs.open(&tmp_path, &rw()).unwrap();
    tmp.write_at(&noise(seed + 1, (2 * PAGE) as usize), 0).unwrap();
    let tmp_view = tmp.map(0, 2 * PAGE, MapAccess::ReadWrite).unwrap();
    fs.remove_file(&tmp_path).unwrap();
    loop {
        let page = rng.below(FILE_PAGES);
        match rng.below(4) {
            0 => {
                f.write_at(&noise(rng.next(), PAGE as usize), page * PAGE).unwrap();
            }
            1 => {
                fs.reflink(&shared, rng.below(SHARED_PAGES) * PAGE, &f, page * PAGE, PAGE).unwrap();
            }
            2 => view.store_plain((page * PAGE) as usize, &noise(rng.next(), 64)).unwrap(),
            _ => tmp_view.store_plain((rng.below(2) * PAGE) as usize, &[7u8; 16]).unwrap(),
        }
    }
}

#[test]
fn clients_killed_at_random_points_leave_the_server_serving_another_client_whose_writes_all_survive_with_no_leak(
) {
    const TEST: &str =
        "clients_killed_at_random_points_leave_the_server_serving_another_client_whose_writes_all_survive_with_no_leak";
    match role().as_deref() {
        Some("survivor") => return survivor(),
        Some("victim") => return victim(),
        _ => {}
    }
    let iterations = if std::env::var_os("FERRODAX_SOAK").is_some() { 1000 } else { 100 };
    let pool = TestPool::new(128 << 20);
    let shared_data = noise(0xface, (SHARED_PAGES * PAGE) as usize);
    {
        let server = Server::start(&pool);
        server.connect().open("/shared", &rw()).unwrap().write_at(&shared_data, 0).unwrap();
        server.stop();
    }
    // The baseline: a server started on a pool just checkpointed with only /shared in it (the
    // checkpoint chain's size follows the state, so free blocks compare only across equal states
    // freshly checkpointed).
    let mut server = Server::start(&pool);
    let fs = server.connect();
    let at_start = fs.stats();
    let socket = ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string());
    let mut survivor =
        Kid::spawn(pool.dir.path(), TEST, "survivor", &[socket.clone(), ("FDX_SEED", "7".into())]);
    survivor.expect("started");
    let mut rng = Rng(0x5eed);
    for i in 0..iterations {
        let mut kid =
            Kid::spawn(pool.dir.path(), TEST, "victim", &[socket.clone(), ("FDX_SEED", i.to_string())]);
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        kid.kill9();
        assert!(
            server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "iteration {i}: the server went away:\n{}",
            server.log_text()
        );
    }
    // The survivor worked all along; stop it and replay what it committed.
    let status = survivor.wait();
    let log = survivor.rest();
    assert_eq!(status.code(), Some(0), "the survivor failed:\n{}", survivor.stderr_text());
    let done: u64 = log.last().and_then(|l| l.strip_prefix("done ")).expect("done line").parse().unwrap();
    assert_eq!(done as usize, log.len() - 1, "every committed operation is logged");
    assert!(done > 0, "the survivor committed nothing");
    let mut model: BTreeMap<u64, Vec<u8>> =
        (0..SURVIVOR_FILES).map(|i| (i, vec![0u8; (FILE_PAGES * PAGE) as usize])).collect();
    for line in &log[..log.len() - 1] {
        let w: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
        let page = &mut model.get_mut(&w[0]).unwrap()[(w[1] * PAGE) as usize..][..PAGE as usize];
        match &line[..1] {
            "W" | "M" => page.copy_from_slice(&noise(w[2], PAGE as usize)),
            "R" => page.copy_from_slice(&shared_data[(w[2] * PAGE) as usize..][..PAGE as usize]),
            other => panic!("unknown log line {other}"),
        }
    }
    // Every dead client's views are released once the server has seen it go.
    let deadline = Instant::now() + HANG;
    while fs.view_count() != 0 {
        assert!(Instant::now() < deadline, "views of dead clients are never released");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, want) in &model {
        assert!(read_all(&fs, &format!("/s{i}")) == *want, "/s{i} lost a committed write");
    }
    assert_eq!(read_all(&fs, "/shared"), shared_data);
    assert_clean(&fs, "the kill loop");
    // No leak: without the files (a victim killed before its unlink leaves its /tmpN), the free
    // blocks are back.
    for entry in fs.read_dir("/").unwrap() {
        if entry.name != "shared" {
            fs.remove_file(&format!("/{}", entry.name)).unwrap();
        }
    }
    assert_clean(&fs, "deleting every file");
    // A dead client's open handles (an unlinked file's last reference) are released right after
    // its views, as the server finishes with its connection: wait for that, not for a time. An
    // orphan a dead client's handle still held would count here (and look open to fsck).
    let deadline = Instant::now() + HANG;
    while fs.stats().inodes != at_start.inodes {
        assert!(
            Instant::now() < deadline,
            "killed clients' files are never released: {} inodes, {} at the start",
            fs.stats().inodes,
            at_start.inodes
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(fs);
    server.stop();
    // Checkpointed again with only /shared: every other block is free again.
    let server = Server::start(&pool);
    let fs = server.connect();
    assert_clean(&fs, "restarting after the kill loop");
    let now = fs.stats();
    assert_eq!(
        (now.free_blocks, now.inodes),
        (at_start.free_blocks, at_start.inodes),
        "blocks leaked by killed clients"
    );
    assert_eq!(read_all(&fs, "/shared"), shared_data);
    drop(fs);
    server.stop();
}

/// A client holding a view and an open file when the server is killed.
fn orphaned_client() {
    install_sigbus_recorder();
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    let view = f.map(0, 4 * PAGE, MapAccess::ReadWrite).unwrap();
    f.write_at(&noise(1, PAGE as usize), PAGE).unwrap();
    view.store_plain((2 * PAGE) as usize, &noise(2, PAGE as usize)).unwrap();
    say(&format!("ready {}", view.as_ptr() as usize));
    assert_eq!(hear(), "go");
    let mut buf = vec![0u8; 16];
    let errnos = [
        f.write_at(b"lost?", 0).map(|_| ()).unwrap_err().errno(),
        f.read_at(&mut buf, 0).map(|_| ()).unwrap_err().errno(),
        fs.metadata("/f").map(|_| ()).unwrap_err().errno(),
        fs.open("/new", &rw()).map(|_| ()).unwrap_err().errno(),
        f.map(0, PAGE, MapAccess::Read).map(|_| ()).unwrap_err().errno(),
    ];
    say(&format!("errnos {} {} {} {} {}", errnos[0], errnos[1], errnos[2], errnos[3], errnos[4]));
    assert_eq!(hear(), "touch");
    // The reader thread takes the views away when it sees the connection end (that it may do so
    // after a call already failed with ENOTCONN is the ignored test below).
    let deadline = std::time::Instant::now() + HANG;
    while view.page_state(0) != ferrodax::dax::PageState::Removed {
        assert!(std::time::Instant::now() < deadline, "the view is never taken away");
        std::thread::sleep(Duration::from_millis(1));
    }
    let v = touch(view.as_ptr() as usize + 5);
    say(&format!("value {v}"));
    std::process::exit(0);
}

#[test]
fn when_the_server_is_killed_clients_get_enotconn_views_raise_sigbus_and_a_restarted_server_mounts_clean() {
    const TEST: &str =
        "when_the_server_is_killed_clients_get_enotconn_views_raise_sigbus_and_a_restarted_server_mounts_clean";
    if role().is_some() {
        return orphaned_client();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let initial = noise(0, (4 * PAGE) as usize);
    let f = fs.open("/f", &rw()).unwrap();
    f.write_at(&initial, 0).unwrap();
    let socket = ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string());
    let mut kid = Kid::spawn(pool.dir.path(), TEST, "orphan", &[socket]);
    let base: usize = kid.expect("ready")[0].parse().unwrap();
    server.kill9();
    kid.send("go");
    let errnos: Vec<i32> = kid.expect("errnos").iter().map(|e| e.parse().unwrap()).collect();
    assert_eq!(errnos, vec![libc::ENOTCONN; 5], "write, read, stat, open, map after the server died");
    kid.send("touch");
    let line = kid.next_line();
    assert!(line.starts_with("signal "), "a view whose server died still reads: {line}");
    let (sig, code, addr, _) =
        parse_signal(&line.split_whitespace().skip(1).map(str::to_string).collect::<Vec<_>>());
    assert_eq!((sig, code, addr), (libc::SIGBUS, ferrodax::dax::mce::BUS_MCEERR_AR, base + 5));
    kid.wait_code(42);
    // This process's connection is gone too.
    assert_eq!(fs.metadata("/f").unwrap_err().errno(), libc::ENOTCONN);
    assert_eq!(f.write_at(b"x", 0).unwrap_err().errno(), libc::ENOTCONN);
    drop((f, fs));
    // A restarted server replaces the stale socket and mounts the pool clean.
    let server = Server::start(&pool);
    let fs = server.connect();
    assert_clean(&fs, "restarting after the server was killed");
    let mut want = initial;
    want[PAGE as usize..][..PAGE as usize].copy_from_slice(&noise(1, PAGE as usize));
    want[(2 * PAGE) as usize..][..PAGE as usize].copy_from_slice(&noise(2, PAGE as usize));
    assert!(read_all(&fs, "/f") == want, "a committed write or a store through the view was lost");
    drop(fs);
    server.stop();
    assert_clean(&pool.mount(), "a direct mount after the restarted server stopped");
}

/// A client whose server is killed: after its first call fails with ENOTCONN, says what page 0
/// of its view is (`removed` or anything else).
fn view_state_after_enotconn() {
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    let view = f.map(0, PAGE, MapAccess::Read).unwrap();
    say("ready");
    assert_eq!(hear(), "go");
    let errno = f.write_at(b"x", 0).unwrap_err().errno();
    let state = view.page_state(0);
    let word =
        if state == ferrodax::dax::PageState::Removed { "removed".to_string() } else { format!("{state:?}") };
    say(&format!("after {errno} {word}"));
    std::process::exit(0);
}

#[test]
fn once_a_call_failed_with_enotconn_the_clients_views_are_already_taken_away() {
    const TEST: &str = "once_a_call_failed_with_enotconn_the_clients_views_are_already_taken_away";
    if role().is_some() {
        return view_state_after_enotconn();
    }
    let pool = TestPool::new(64 << 20);
    {
        let server = Server::start(&pool);
        server.connect().open("/f", &rw()).unwrap().write_at(&[1u8; PAGE as usize], 0).unwrap();
        server.stop();
    }
    let mut seen = Vec::new();
    for _ in 0..30 {
        let server = Server::start(&pool);
        let socket = ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string());
        let mut kid = Kid::spawn(pool.dir.path(), TEST, "enotconn", &[socket]);
        kid.expect("ready");
        server.kill9();
        kid.send("go");
        seen.push(kid.expect("after").join(" "));
        kid.wait_code(0);
    }
    let want = format!("{} removed", libc::ENOTCONN);
    assert!(seen.iter().all(|s| *s == want), "after ENOTCONN, view page 0 was: {seen:?}");
}

/// Connects and sends what `FDX_GARBAGE` says; prints `closed` once the server has closed the
/// connection.
fn garbage_client() {
    let mut s = UnixStream::connect(env_str("FDX_SOCKET")).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let hello = format!(r#"{{"Hello":{{"version":{PROTOCOL_VERSION},"program":"garbage"}}}}"#).into_bytes();
    match env_str("FDX_GARBAGE").as_str() {
        "noise" => s.write_all(&noise(3, 4096)).unwrap(),
        "bad-json" => {
            wire::write_frame(&s, &hello, &[]).unwrap();
            let _welcome = wire::read_frame_with_fd(&s).unwrap();
            wire::write_frame(&s, b"this is not a protocol message", &[1, 2, 3]).unwrap();
        }
        "huge-header" => {
            wire::write_frame(&s, &hello, &[]).unwrap();
            let _welcome = wire::read_frame_with_fd(&s).unwrap();
            let mut h = [0xffu8; 8];
            h[4..].copy_from_slice(&0u32.to_le_bytes());
            s.write_all(&h).unwrap();
            // The server may already have hung up.
            let _ = s.write_all(&noise(4, 1000));
        }
        other => panic!("{other}"),
    }
    // Everything the server still sends (a refusal, say), then the end of the stream.
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => say("closed"),
        // Closed with our garbage unread: the kernel resets the connection.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => say("closed"),
        Err(e) => panic!("{e}"),
    }
    std::process::exit(0);
}

#[test]
fn a_client_sending_garbage_is_disconnected_and_the_server_keeps_serving_the_others() {
    const TEST: &str = "a_client_sending_garbage_is_disconnected_and_the_server_keeps_serving_the_others";
    if role().is_some() {
        return garbage_client();
    }
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let mut server = Server::start(&pool);
    let fs = server.connect();
    let g = fs.open("/g", &rw()).unwrap();
    let mut n = 0u64;
    for garbage in ["noise", "bad-json", "huge-header"] {
        let env =
            [("FDX_SOCKET", pool.socket().to_str().unwrap().to_string()), ("FDX_GARBAGE", garbage.into())];
        let mut kid = Kid::spawn(pool.dir.path(), TEST, garbage, &env);
        kid.expect("closed");
        kid.wait_code(0);
        assert!(server.child.as_mut().unwrap().try_wait().unwrap().is_none(), "{garbage}: the server died");
        // This process's connection still works...
        g.write_at(&noise(n, PAGE as usize), n * PAGE).unwrap();
        n += 1;
        // ...and so does a new client process.
        let (status, stdout, stderr) =
            run_cli(&["io", "-c", &format!("pread -q 0 {}", n * PAGE), &pool_path, "/g"]);
        assert!(status.success(), "{garbage}: a new client after the garbage: {stdout}{stderr}");
        assert_clean(&fs, garbage);
    }
    let want: Vec<u8> = (0..n).flat_map(|i| noise(i, PAGE as usize)).collect();
    assert!(read_all(&fs, "/g") == want);
    let log = server.log_text();
    assert!(log.contains("no valid hello"), "{log}");
    assert!(log.contains("not the protocol"), "{log}");
    assert!(log.contains("bad frame header"), "{log}");
    drop((g, fs));
    server.stop();
}

/// A client holding a view when the server stops cleanly: it is told goodbye, so its next calls
/// fail with ENOTCONN and its view raises SIGBUS; nothing kills it.
fn goodbye_client() {
    install_sigbus_recorder();
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    let view = f.map(0, 4 * PAGE, MapAccess::Read).unwrap();
    say(&format!("ready {}", view.as_ptr() as usize));
    assert_eq!(hear(), "go");
    let deadline = Instant::now() + HANG;
    while view.page_state(0) != ferrodax::dax::PageState::Removed {
        assert!(Instant::now() < deadline, "the view is never taken away after the goodbye");
        std::thread::sleep(Duration::from_millis(1));
    }
    let errno = f.write_at(b"x", 0).map(|_| ()).unwrap_err().errno();
    say(&format!("errno {errno}"));
    let v = touch(view.as_ptr() as usize + 3 * PAGE as usize);
    say(&format!("value {v}"));
    std::process::exit(0);
}

#[test]
fn a_clean_server_shutdown_tells_clients_holding_views_goodbye_without_killing_them() {
    const TEST: &str = "a_clean_server_shutdown_tells_clients_holding_views_goodbye_without_killing_them";
    if role().is_some() {
        return goodbye_client();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    server.connect().open("/f", &rw()).unwrap().write_at(&noise(1, (4 * PAGE) as usize), 0).unwrap();
    let socket = ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string());
    let mut kid = Kid::spawn(pool.dir.path(), TEST, "goodbye", &[socket]);
    let base: usize = kid.expect("ready")[0].parse().unwrap();
    let log = server.log.clone();
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // The server has exited: whatever it did to the client is done.
    let dead = kid.child.try_wait().unwrap();
    assert!(
        dead.is_none(),
        "a clean shutdown killed the client holding a view ({:?}):\n{text}",
        dead.unwrap()
    );
    kid.send("go");
    let status_line = kid.next_line();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status_line, format!("errno {}", libc::ENOTCONN), "the client after the goodbye:\n{text}");
    let (sig, code, addr, _) = parse_signal(&kid.expect("signal"));
    assert_eq!(
        (sig, code, addr),
        (libc::SIGBUS, ferrodax::dax::mce::BUS_MCEERR_AR, base + 3 * PAGE as usize)
    );
    kid.wait_code(42);
    assert!(!text.contains("killing it"), "a clean shutdown killed a client:\n{text}");
}

/// One request over a raw connection; returns the errno of the error reply (0 for success).
fn raw_request(s: &UnixStream, id: u64, op: ferrodax::server::protocol::Op) -> i32 {
    use ferrodax::server::protocol::{ClientMessage, ServerMessage};
    let json = serde_json::to_vec(&ClientMessage::Request { id, op }).unwrap();
    wire::write_frame(s, &json, &[]).unwrap();
    let mut reader = s;
    let (json, _) = wire::read_frame(&mut reader).unwrap().expect("a reply");
    match serde_json::from_slice::<ServerMessage>(&json).unwrap() {
        ServerMessage::Reply { id: got, result } => {
            assert_eq!(got, id);
            result.err().map(|e| e.errno).unwrap_or(0)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_client_cannot_use_another_clients_handles_or_views_through_the_protocol() {
    use ferrodax::server::protocol::{ClientMessage, Op, ServerMessage};
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let data = noise(6, (4 * PAGE) as usize);
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&data, 0).unwrap();
    let f = fs.open("/f", &rw()).unwrap();
    fs.reflink(&src, 0, &f, 0, 0).unwrap();
    let view = f.map(0, 4 * PAGE, MapAccess::ReadWrite).unwrap();
    let hit =
        fs.memory_failure(phys_of(&fs, &src, 3), 1, ferrodax::memfail::FailureFlags::default()).unwrap();
    let victim_view = hit.views[0].view;
    // A second client, speaking the protocol by hand.
    let s = UnixStream::connect(pool.socket()).unwrap();
    let hello =
        serde_json::to_vec(&ClientMessage::Hello { version: PROTOCOL_VERSION, program: "intruder".into() })
            .unwrap();
    wire::write_frame(&s, &hello, &[]).unwrap();
    let ((json, _), _fd) = wire::read_frame_with_fd(&s).unwrap();
    let ServerMessage::Welcome { connection, .. } = serde_json::from_slice(&json).unwrap() else { panic!() };
    assert_ne!(connection, victim_view >> 32, "another connection");
    let holder = ferrodax::dax::Holder { pid: 0, thread: "t".into(), tag: String::new() };
    let cases: Vec<(&str, Op, i32)> = vec![
        ("MakePrivate", Op::MakePrivate { view: victim_view, page: 0 }, libc::EINVAL),
        ("Unmap", Op::Unmap { view: victim_view }, libc::EINVAL),
        ("Subscribe", Op::Subscribe { view: victim_view, early: true }, libc::EINVAL),
        ("SyncView", Op::SyncView { view: victim_view }, libc::EINVAL),
        (
            "MemoryFailure",
            Op::MemoryFailure { pool_offset: 0, len: 1, accessor: Some((victim_view, 0)) },
            libc::EINVAL,
        ),
        ("ReadAt", Op::ReadAt { handle: 1, offset: 0, len: 16 }, libc::EBADF),
        ("WriteAt", Op::WriteAt { handle: 1, offset: 0 }, libc::EBADF),
        ("SetLen", Op::SetLen { handle: 1, size: 0 }, libc::EBADF),
        ("Close", Op::Close { handle: 1 }, libc::EBADF),
        (
            "Map with another connection's view id",
            Op::Map {
                handle: 1,
                view: victim_view + 100,
                offset: 0,
                len: PAGE,
                access: MapAccess::ReadWrite,
                holder,
                base: 0x7000_0000_0000,
            },
            libc::EINVAL,
        ),
    ];
    for (i, (what, op, errno)) in cases.into_iter().enumerate() {
        assert_eq!(raw_request(&s, i as u64 + 1, op), errno, "{what} with someone else's id");
    }
    assert_eq!(fs.bad_blocks().len(), 1, "the refused memory failure recorded nothing");
    // The owner's view and handles are untouched: a store fault still resolves over its own
    // connection, and its file is intact.
    view.store_plain(PAGE as usize, b"mine").unwrap();
    let mut want = data.clone();
    want[PAGE as usize..][..4].copy_from_slice(b"mine");
    let mut got = vec![0u8; (3 * PAGE) as usize];
    f.read_exact_at(&mut got, 0).unwrap();
    assert!(got[..] == want[..(3 * PAGE) as usize]);
    assert_eq!(fs.view_count(), 1);
    assert_clean(&fs, "an intruding client");
    drop((s, view, src, f, fs));
    server.stop();
}

/// Appends 4 KiB records (record k = noise(seed * 1_000_000 + k)) to its file at offset k * 4096
/// until a call fails; prints `ok K` after each Ok and `err ERRNO` at the end.
fn record_writer() {
    let seed = env_u64("FDX_SEED");
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let f = fs.open(&env_str("FDX_FILE"), &rw()).unwrap();
    say("started");
    let mut k = env_u64("FDX_FROM");
    loop {
        match f.write_at(&noise(seed * 1_000_000 + k, PAGE as usize), k * PAGE) {
            Ok(_) => say(&format!("ok {k}")),
            Err(e) => {
                say(&format!("err {}", e.errno()));
                std::process::exit(0);
            }
        }
        k += 1;
    }
}

#[test]
fn a_server_killed_mid_write_loses_no_acknowledged_write_and_tears_none() {
    const TEST: &str = "a_server_killed_mid_write_loses_no_acknowledged_write_and_tears_none";
    if role().is_some() {
        return record_writer();
    }
    const WRITERS: u64 = 4;
    let pool = TestPool::new(128 << 20);
    let mut rng = Rng(0xdead);
    // Records acknowledged so far, per writer.
    let mut acked = vec![0u64; WRITERS as usize];
    for round in 0..5 {
        let server = Server::start(&pool);
        let socket = pool.socket().to_str().unwrap().to_string();
        let mut kids: Vec<Kid> = (0..WRITERS)
            .map(|w| {
                let env = [
                    ("FDX_SOCKET", socket.clone()),
                    ("FDX_SEED", w.to_string()),
                    ("FDX_FILE", format!("/w{w}")),
                    ("FDX_FROM", acked[w as usize].to_string()),
                ];
                let mut kid = Kid::spawn(pool.dir.path(), TEST, &format!("writer{w}"), &env);
                kid.expect("started");
                kid
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.below(150)));
        server.kill9();
        for (w, kid) in kids.iter_mut().enumerate() {
            kid.wait_code(0);
            let lines = kid.rest();
            let last = lines.last().expect("a last line");
            assert_eq!(*last, format!("err {}", libc::ENOTCONN), "writer {w}: {lines:?}");
            if let Some(k) = lines.iter().rev().find_map(|l| l.strip_prefix("ok ")) {
                acked[w] = k.parse::<u64>().unwrap() + 1;
            }
        }
        // A restarted server mounts the pool clean, with every acknowledged record, and the one
        // that was in flight either whole or not there.
        let server = Server::start(&pool);
        let fs = server.connect();
        assert_clean(&fs, &format!("round {round}: restarting after the server was killed"));
        for w in 0..WRITERS {
            let data = read_all(&fs, &format!("/w{w}"));
            let acked_bytes = (acked[w as usize] * PAGE) as usize;
            assert!(data.len() >= acked_bytes, "round {round}: writer {w} lost acknowledged records");
            for k in 0..acked[w as usize] {
                assert!(
                    data[(k * PAGE) as usize..][..PAGE as usize] == noise(w * 1_000_000 + k, PAGE as usize),
                    "round {round}: writer {w} record {k} is wrong"
                );
            }
            assert!(
                data.len() <= acked_bytes + PAGE as usize,
                "round {round}: writer {w}: more than one unacknowledged record"
            );
            if data.len() > acked_bytes {
                let k = acked[w as usize];
                assert!(
                    data[acked_bytes..] == noise(w * 1_000_000 + k, PAGE as usize),
                    "round {round}: writer {w}: the record in flight is torn"
                );
                acked[w as usize] += 1;
            }
        }
        drop(fs);
        server.stop();
    }
    assert!(acked.iter().all(|&a| a > 0), "nothing was written: {acked:?}");
}
