//! The pool server with real separate processes (issue 8, items 1, 3 and 4).
//!
//! Guards: concurrent `ferrodax io` writer processes (and a mkdir loop) through a running server
//! lose no file and leave every byte exact and fsck clean, while without a server a second
//! concurrent writer is refused loudly (non-zero exit, the holder's pid and `ferrodax serve`
//! named) and no writer that exited 0 lost its data; a store into a shared page of a clone mapped
//! read-write in three client processes makes exactly one copy that the other two see at once
//! while the source's mapper (a fourth process) keeps the old bytes, and two processes storing
//! into the same shared pages at the same moment make exactly one copy per page with both stores
//! landing; every layout change made by another process (reflink over a range, pwrite of a shared
//! block, dedupe, unshare, truncate) reaches a client process's view before the operation
//! returns, and pages past the new EOF raise SIGBUS there; a stopped client process is killed
//! before a layout change returns, while one whose stop takes effect only after it applied the
//! recall is left alone.

mod server_common;

use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{MapAccess, PageState};
use server_common::*;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

// ----- 1. concurrent command-line writers -----

/// `ferrodax io -f -c "pwrite -S SEED 0 8k" POOL PATH`.
fn cli_pwrite(
    pool: &str,
    path: &str,
    seed: u8,
    extra: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let cmd = format!("pwrite -S {seed:#x} 0 8k");
    let mut args = vec!["io"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-f", "-c", &cmd, pool, path]);
    run_cli(&args)
}

#[test]
fn two_cli_writer_loops_and_a_mkdir_loop_through_the_server_lose_no_file_and_check_clean() {
    const FILES: usize = 30;
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let pool_path = pool.path.to_str().unwrap().to_string();
    // -v says the command goes through the server.
    let (status, _, stderr) = run_cli(&["-v", "ls", &pool_path]);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("through the pool server"), "{stderr}");
    let mut loops = Vec::new();
    for (prefix, seed) in [("a", 0x41u8), ("b", 0x42u8)] {
        let pool_path = pool_path.clone();
        loops.push(std::thread::spawn(move || {
            (0..FILES)
                .map(|i| {
                    let (status, _, stderr) = cli_pwrite(&pool_path, &format!("/{prefix}{i}"), seed, &[]);
                    (format!("/{prefix}{i}"), status, stderr)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mkdirs = {
        let pool_path = pool_path.clone();
        std::thread::spawn(move || {
            (0..FILES)
                .map(|i| {
                    let (status, _, stderr) = run_cli(&["mkdir", &pool_path, &format!("/d{i}")]);
                    (format!("/d{i}"), status, stderr)
                })
                .collect::<Vec<_>>()
        })
    };
    let mut results = Vec::new();
    for l in loops {
        results.extend(l.join().unwrap());
    }
    results.extend(mkdirs.join().unwrap());
    for (path, status, stderr) in &results {
        assert!(status.success(), "{path}: exit {status}: {stderr}\nserver:\n{}", server.log_text());
    }
    let verify = |fs: &ferrodax::Fs, when: &str| {
        let names: BTreeSet<String> = fs.read_dir("/").unwrap().into_iter().map(|e| e.name).collect();
        let want: BTreeSet<String> =
            ["a", "b", "d"].iter().flat_map(|p| (0..FILES).map(move |i| format!("{p}{i}"))).collect();
        assert_eq!(names, want, "{when}: the root lists exactly every file and directory made");
        for (prefix, seed) in [("a", 0x41u8), ("b", 0x42u8)] {
            for i in 0..FILES {
                let data = read_all(fs, &format!("/{prefix}{i}"));
                assert_eq!(fnv(&data), fnv(&[seed; 8192]), "{when}: /{prefix}{i} is not 8 KiB of {seed:#x}");
            }
        }
        assert_clean(fs, when);
    };
    verify(&server.connect(), "the loops, through the server");
    let (status, stdout, stderr) = run_cli(&["check", &pool_path]);
    assert!(status.success(), "ferrodax check through the server: {stdout}{stderr}");
    server.stop();
    // The clean shutdown left everything on the media.
    verify(&pool.mount(), "the server stopped, mounted directly");
}

#[test]
fn without_a_server_a_second_concurrent_writer_is_refused_naming_the_holder_and_no_exit_0_loses_data() {
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    // A writer that holds the pool (its pwrite done, then it sleeps).
    let mut holder = std::process::Command::new(ferrodax())
        .args(["io", "-f", "-c", "pwrite -S 0x48 0 8k", "-c", "sleep 60000", &pool_path, "/held"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut first)
        .unwrap();
    assert!(first.starts_with("wrote 8192/8192 bytes at offset 0"), "holder said {first:?}");
    // The holder has the pool: a second writer is refused loudly, and so is a read-only check.
    let (status, _, stderr) = cli_pwrite(&pool_path, "/second", 0x49, &[]);
    assert_eq!(status.code(), Some(1), "a second writer must fail: {stderr}");
    assert!(stderr.contains(&format!("pid {}", holder.id())), "the holder's pid is named: {stderr}");
    assert!(stderr.contains("ferrodax serve"), "the refusal says what to do: {stderr}");
    assert!(stderr.contains("Device or resource busy"), "EBUSY: {stderr}");
    let (status, _, stderr) = run_cli(&["check", &pool_path]);
    assert_ne!(status.code(), Some(0), "a check beside a read-write owner is refused: {stderr}");
    assert!(stderr.contains(&format!("pid {}", holder.id())), "{stderr}");
    // The holder dies without a clean exit: its pwrite had returned, so it is on the media.
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Two loops racing for the pool: each process either writes (exit 0, data exact) or is
    // refused loudly (non-zero, named holder); never exit 0 with data missing.
    let mut loops = Vec::new();
    for (prefix, seed) in [("x", 0x58u8), ("y", 0x59u8)] {
        let pool_path = pool_path.clone();
        loops.push(std::thread::spawn(move || {
            (0..20)
                .map(|i| {
                    let path = format!("/{prefix}{i}");
                    let (status, _, stderr) = cli_pwrite(&pool_path, &path, seed, &[]);
                    (path, seed, status, stderr)
                })
                .collect::<Vec<_>>()
        }));
    }
    let results: Vec<_> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
    let (status, stdout, stderr) = run_cli(&["check", &pool_path]);
    assert!(status.success(), "{stdout}{stderr}");
    let fs = pool.mount();
    assert_eq!(fnv(&read_all(&fs, "/held")), fnv(&[0x48; 8192]), "the killed holder's write is lost");
    assert_eq!(fs.metadata("/second").unwrap_err().errno(), libc::ENOENT, "the refused writer wrote nothing");
    let mut refused = 0;
    for (path, seed, status, stderr) in &results {
        if status.success() {
            assert_eq!(
                fnv(&read_all(&fs, path)),
                fnv(&[*seed; 8192]),
                "{path} exited 0 but its data is wrong"
            );
        } else {
            refused += 1;
            assert_eq!(status.code(), Some(1), "{path}: {stderr}");
            // The holder is named when it still holds the pool while the message is made; one
            // that let go in between shows as "another process".
            assert!(
                stderr.contains("Device or resource busy")
                    && stderr.contains("ferrodax serve")
                    && (stderr.contains("in use by pid ") || stderr.contains("in use by another process")),
                "{path} failed without the loud refusal: {stderr}"
            );
        }
    }
    eprintln!("{refused} of {} racing writers were refused", results.len());
    assert_clean(&fs, "the racing writers, mounted directly");
}

// ----- client processes holding views -----

const VIEW_PAGES: u64 = 16;

/// A client process holding one view of `FDX_FILE` (`FDX_ACCESS` r or w), obeying commands:
/// `store PAGE OFF LEN BYTE` (plain stores, the fault path runs), `storeall FIRST LAST OFF LEN BYTE`,
/// `hash LEN` (FNV of the view's first LEN bytes), `pagehash PAGE`, `phys` (each page's state),
/// `touch OFF` (a load; may raise SIGBUS, reported by the recorder), `exit`.
fn view_holder() {
    install_sigbus_recorder();
    install_recorder(libc::SIGSEGV);
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let path = env_str("FDX_FILE");
    let write = env_str("FDX_ACCESS") == "w";
    let options = if write { rw() } else { ro() };
    let file = fs.open(&path, &options).unwrap();
    let access = if write { MapAccess::ReadWrite } else { MapAccess::Read };
    let view = file.map(0, VIEW_PAGES * PAGE, access).unwrap();
    say(&format!("mapped {} {}", view.as_ptr() as usize, std::process::id()));
    loop {
        let line = hear();
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u64 { w[i].parse().unwrap() };
        match w.first().copied() {
            Some("store") => {
                let data = vec![num(4) as u8; num(3) as usize];
                view.store_plain((num(1) * PAGE + num(2)) as usize, &data).unwrap();
                say("stored");
            }
            Some("storeall") => {
                let data = vec![num(5) as u8; num(4) as usize];
                for page in num(1)..=num(2) {
                    view.store_plain((page * PAGE + num(3)) as usize, &data).unwrap();
                }
                say("stored");
            }
            Some("hash") => {
                let mut buf = vec![0u8; num(1) as usize];
                view.read_at(0, &mut buf).unwrap();
                say(&format!("hash {}", fnv(&buf)));
            }
            Some("pagehash") => {
                let mut buf = vec![0u8; PAGE as usize];
                view.read_at((num(1) * PAGE) as usize, &mut buf).unwrap();
                say(&format!("hash {}", fnv(&buf)));
            }
            Some("phys") => {
                let states: Vec<String> = (0..VIEW_PAGES).map(|p| page_word(view.page_state(p))).collect();
                say(&format!("phys {}", states.join(" ")));
            }
            Some("touch") => {
                let v = touch(view.as_ptr() as usize + num(1) as usize);
                say(&format!("value {v}"));
            }
            Some("stallmain") => {
                stall_main_thread();
                say("stalled");
            }
            // No answer: the process may stop right after.
            Some("releasemain") => release_main_thread(),
            _ => break,
        }
    }
    drop(view);
    std::process::exit(0);
}

fn page_word(state: PageState) -> String {
    match state {
        PageState::Block { phys, prot: PageProtection::ReadWrite } => format!("w{phys}"),
        PageState::Block { phys, .. } => format!("r{phys}"),
        PageState::Hole => "hole".into(),
        PageState::PastEof => "eof".into(),
        PageState::Poisoned { phys } => format!("poisoned{phys}"),
        PageState::Removed => "removed".into(),
    }
}

fn spawn_holder(pool: &TestPool, test: &str, file: &str, access: &str) -> (Kid, usize) {
    let env = [
        ("FDX_SOCKET", pool.socket().to_str().unwrap().to_string()),
        ("FDX_FILE", file.to_string()),
        ("FDX_ACCESS", access.to_string()),
    ];
    let mut kid =
        Kid::spawn(pool.dir.path(), test, &format!("holder-{}", file.trim_start_matches('/')), &env);
    let fields = kid.expect("mapped");
    assert_eq!(fields[1].parse::<u32>().unwrap(), kid.pid());
    (kid, fields[0].parse().unwrap())
}

fn ask_u64(kid: &mut Kid, command: &str, key: &str) -> u64 {
    kid.send(command);
    kid.expect(key)[0].parse().unwrap()
}

/// Page `page` of `bytes`.
fn page_of(bytes: &[u8], page: u64) -> &[u8] {
    &bytes[(page * PAGE) as usize..((page + 1) * PAGE) as usize]
}

/// Every distinct pool block the files map.
fn blocks_of(fs: &ferrodax::Fs, paths: &[&str]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for path in paths {
        let f = fs.open(path, &ro()).unwrap();
        for e in fs.fiemap(&f).unwrap() {
            for b in 0..e.length / PAGE {
                out.insert(e.physical / PAGE + b);
            }
        }
    }
    out
}

// ----- 3. cross-process copy-on-write -----

#[test]
fn a_store_into_a_shared_page_in_one_client_process_makes_one_copy_seen_by_the_clones_other_processes_not_the_sources(
) {
    const TEST: &str = "a_store_into_a_shared_page_in_one_client_process_makes_one_copy_seen_by_the_clones_other_processes_not_the_sources";
    if role().is_some() {
        return view_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let src = fs.open("/src", &rw()).unwrap();
    let data: Vec<u8> = (0..VIEW_PAGES * PAGE).map(|i| 0x10 + (i / PAGE) as u8).collect();
    src.write_at(&data, 0).unwrap();
    let clone = fs.open("/clone", &rw()).unwrap();
    fs.reflink(&src, 0, &clone, 0, 0).unwrap();
    let mut clones: Vec<(Kid, usize)> = (0..3).map(|_| spawn_holder(&pool, TEST, "/clone", "w")).collect();
    let (mut source_mapper, _) = spawn_holder(&pool, TEST, "/src", "r");
    let blocks_before = blocks_of(&fs, &["/src", "/clone"]);
    assert_eq!(blocks_before.len(), VIEW_PAGES as usize, "the clone shares every block");
    let free_before = fs.stats().free_blocks;

    // One process stores 100 bytes into shared page 5 with plain stores.
    clones[0].0.send("store 5 7 100 238");
    clones[0].0.expect("stored");
    let mut new_clone = data.clone();
    new_clone[(5 * PAGE + 7) as usize..][..100].fill(238);
    for (i, (kid, _)) in clones.iter_mut().enumerate() {
        let h = ask_u64(kid, "pagehash 5", "hash");
        assert_eq!(h, fnv(page_of(&new_clone, 5)), "clone holder {i} does not see the store");
    }
    assert_eq!(
        ask_u64(&mut source_mapper, "pagehash 5", "hash"),
        fnv(page_of(&data, 5)),
        "the source changed"
    );
    assert_eq!(ask_u64(&mut source_mapper, "hash 65536", "hash"), fnv(&data));
    assert_eq!(fnv(&read_all(&fs, "/clone")), fnv(&new_clone));
    assert_eq!(fnv(&read_all(&fs, "/src")), fnv(&data));
    assert_eq!(fs.stats().free_blocks, free_before - 1, "exactly one block was allocated");
    let blocks_after = blocks_of(&fs, &["/src", "/clone"]);
    assert_eq!(blocks_after.len(), VIEW_PAGES as usize + 1);
    assert_ne!(phys_of(&fs, &src, 5), phys_of(&fs, &clone, 5));
    for page in (0..VIEW_PAGES).filter(|&p| p != 5) {
        assert_eq!(phys_of(&fs, &src, page), phys_of(&fs, &clone, page), "page {page} stays shared");
    }
    assert_clean(&fs, "one cross-process store fault");

    // Two processes store into the same shared pages 8..=15 at the same moment.
    let free_before = fs.stats().free_blocks;
    clones[1].0.send("storeall 8 15 0 100 161");
    clones[2].0.send("storeall 8 15 2000 100 178");
    clones[1].0.expect("stored");
    clones[2].0.expect("stored");
    for page in 8..VIEW_PAGES {
        new_clone[(page * PAGE) as usize..][..100].fill(161);
        new_clone[(page * PAGE + 2000) as usize..][..100].fill(178);
    }
    assert_eq!(fs.stats().free_blocks, free_before - 8, "exactly one copy per page");
    assert_eq!(blocks_of(&fs, &["/src", "/clone"]).len(), VIEW_PAGES as usize + 9);
    let got = read_all(&fs, "/clone");
    for page in 0..VIEW_PAGES {
        assert!(page_of(&got, page) == page_of(&new_clone, page), "clone page {page}: a store was lost");
    }
    for (i, (kid, _)) in clones.iter_mut().enumerate() {
        assert_eq!(ask_u64(kid, "hash 65536", "hash"), fnv(&new_clone), "clone holder {i}");
    }
    assert_eq!(ask_u64(&mut source_mapper, "hash 65536", "hash"), fnv(&data), "the source changed");
    assert_eq!(fnv(&read_all(&fs, "/src")), fnv(&data));
    assert_clean(&fs, "two processes storing into the same shared pages");
    for kid in clones.iter_mut().map(|(k, _)| k).chain(std::iter::once(&mut source_mapper)) {
        kid.send("exit");
        kid.wait_code(0);
    }
    assert_clean(&fs, "every holder exited");
    drop((src, clone, fs));
    server.stop();
}

#[test]
fn two_client_processes_storing_into_the_same_holes_at_once_allocate_one_block_per_page_and_keep_both_stores()
{
    const TEST: &str =
        "two_client_processes_storing_into_the_same_holes_at_once_allocate_one_block_per_page_and_keep_both_stores";
    if role().is_some() {
        return view_holder();
    }
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let holes = fs.open("/holes", &rw()).unwrap();
    holes.set_len(VIEW_PAGES * PAGE).unwrap();
    assert!(fs.fiemap(&holes).unwrap().is_empty(), "the file is all holes");
    let (mut w1, _) = spawn_holder(&pool, TEST, "/holes", "w");
    let (mut w2, _) = spawn_holder(&pool, TEST, "/holes", "w");
    let (mut reader, _) = spawn_holder(&pool, TEST, "/holes", "r");
    reader.send("phys");
    assert!(reader.expect("phys").iter().all(|s| s == "hole"));
    let free_before = fs.stats().free_blocks;
    w1.send("storeall 0 15 0 100 161");
    w2.send("storeall 0 15 3000 100 178");
    w1.expect("stored");
    w2.expect("stored");
    let mut want = vec![0u8; (VIEW_PAGES * PAGE) as usize];
    for page in 0..VIEW_PAGES {
        want[(page * PAGE) as usize..][..100].fill(161);
        want[(page * PAGE + 3000) as usize..][..100].fill(178);
    }
    assert_eq!(fs.stats().free_blocks, free_before - VIEW_PAGES, "exactly one block per hole page");
    assert_eq!(blocks_of(&fs, &["/holes"]).len(), VIEW_PAGES as usize);
    let got = read_all(&fs, "/holes");
    for page in 0..VIEW_PAGES {
        assert!(page_of(&got, page) == page_of(&want, page), "page {page}: a store was lost");
    }
    for kid in [&mut w1, &mut w2, &mut reader] {
        assert_eq!(ask_u64(kid, "hash 65536", "hash"), fnv(&want), "{}", kid.name);
    }
    reader.send("phys");
    assert!(
        reader.expect("phys").iter().all(|s| s.starts_with('r')),
        "the read-only view maps the new blocks"
    );
    for kid in [&mut w1, &mut w2, &mut reader] {
        kid.send("exit");
        kid.wait_code(0);
    }
    assert_clean(&fs, "two processes filling the same holes");
    drop((holes, fs));
    server.stop();
}

// ----- 4. layout changes reach every process's views before the operation returns -----

#[test]
fn layout_changes_made_by_other_processes_reach_a_client_views_before_they_return_and_past_eof_raises_sigbus()
{
    const TEST: &str =
        "layout_changes_made_by_other_processes_reach_a_client_views_before_they_return_and_past_eof_raises_sigbus";
    if role().is_some() {
        return view_holder();
    }
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    let fs = server.connect();
    let fill = |path: &str, first: u8, pages: u64| {
        let f = fs.open(path, &rw()).unwrap();
        let d: Vec<u8> = (0..pages * PAGE).map(|i| first + (i / PAGE) as u8).collect();
        f.write_at(&d, 0).unwrap();
        f
    };
    let f = fill("/f", 0x30, VIEW_PAGES);
    fill("/g", 0x70, VIEW_PAGES);
    // /h holds the bytes of /f's pages 8..12 in blocks of its own.
    let h = fs.open("/h", &rw()).unwrap();
    let fdata = read_all(&fs, "/f");
    h.write_at(&fdata[(8 * PAGE) as usize..(12 * PAGE) as usize], 0).unwrap();
    let (mut holder, base) = spawn_holder(&pool, TEST, "/f", "w");

    // After each operation (another process, `ferrodax io`, which has exited): the holder's view
    // shows the file's bytes, each page maps the file's block, shared blocks read-only.
    let verify = |holder: &mut Kid, what: &str| {
        let data = read_all(&fs, "/f");
        let mut padded = data.clone();
        padded.resize((data.len() as u64).div_ceil(PAGE) as usize * PAGE as usize, 0);
        assert_eq!(
            ask_u64(holder, &format!("hash {}", padded.len()), "hash"),
            fnv(&padded),
            "after {what}: the view does not show the file's bytes"
        );
        holder.send("phys");
        let states = holder.expect("phys");
        let pages_in = padded.len() as u64 / PAGE;
        for page in 0..VIEW_PAGES {
            let want = if page < pages_in {
                let phys = phys_of(&fs, &f, page);
                let shared = fs.owners(phys, PAGE).len() > 1;
                format!("{}{}", if shared { "r" } else { "w" }, phys / PAGE)
            } else {
                "eof".to_string()
            };
            assert_eq!(states[page as usize], want, "after {what}: view page {page}");
        }
        assert_clean(&fs, what);
    };
    verify(&mut holder, "mapping");
    let io = |commands: &[&str]| {
        let mut args = vec!["io"];
        for c in commands {
            args.extend_from_slice(&["-c", c]);
        }
        args.extend_from_slice(&[&pool_path, "/f"]);
        let (status, stdout, stderr) = run_cli(&args);
        assert!(status.success(), "ferrodax {args:?}: {stdout}{stderr}");
    };
    // A pwrite into a private page lands in place: the holder's view shows it.
    let private = phys_of(&fs, &f, 0);
    io(&["pwrite -S 0x77 100 50"]);
    assert_eq!(phys_of(&fs, &f, 0), private, "a mapped private block is written in place");
    verify(&mut holder, "a pwrite into private page 0");
    let before = phys_of(&fs, &f, 4);
    io(&["reflink /g 0 16384 16384"]);
    assert_ne!(phys_of(&fs, &f, 4), before);
    verify(&mut holder, "a reflink over pages 4..8");
    io(&["pwrite -S 0x99 20480 4096"]);
    verify(&mut holder, "a pwrite of shared page 5");
    io(&["dedupe /h 0 32768 16384"]);
    assert_eq!(phys_of(&fs, &f, 9), phys_of(&fs, &h, 1), "the dedupe shared the blocks");
    verify(&mut holder, "a dedupe of pages 8..12");
    io(&["funshare 16384 16384"]);
    verify(&mut holder, "an unshare of pages 4..8");
    io(&["truncate 24676"]);
    verify(&mut holder, "a truncate to 6 pages + 100 bytes");
    // Inside the last page, past EOF reads zero; a page past EOF raises SIGBUS in the holder.
    assert_eq!(ask_u64(&mut holder, &format!("touch {}", 6 * PAGE + 200), "value"), 0);
    holder.send(&format!("touch {}", 9 * PAGE + 5));
    let (sig, code, addr, _) = parse_signal(&holder.expect("signal"));
    assert_eq!((sig, code), (libc::SIGBUS, libc::BUS_ADRERR), "past EOF is SIGBUS BUS_ADRERR");
    assert_eq!(addr, base + (9 * PAGE + 5) as usize, "si_addr is the faulting address in the holder's view");
    holder.wait_code(42);
    assert_clean(&fs, "the holder died of its SIGBUS");
    drop((f, h, fs));
    server.stop();
}

#[test]
fn a_store_fault_in_a_client_process_on_a_full_pool_raises_sigbus_adrerr_there_and_changes_nothing() {
    const TEST: &str =
        "a_store_fault_in_a_client_process_on_a_full_pool_raises_sigbus_adrerr_there_and_changes_nothing";
    if role().is_some() {
        return view_holder();
    }
    let pool = TestPool::new(8 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let src = fs.open("/src", &rw()).unwrap();
    let data = noise(5, (VIEW_PAGES * PAGE) as usize);
    src.write_at(&data, 0).unwrap();
    let clone = fs.open("/clone", &rw()).unwrap();
    fs.reflink(&src, 0, &clone, 0, 0).unwrap();
    // Fill the pool.
    let filler = fs.open("/filler", &rw()).unwrap();
    let mut at = 0;
    loop {
        match filler.write_at(&[0xf1; PAGE as usize], at) {
            Ok(_) => at += PAGE,
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC, "{e}");
                break;
            }
        }
    }
    assert!(at > 0);
    let (mut holder, base) = spawn_holder(&pool, TEST, "/clone", "w");
    let free_before = fs.stats().free_blocks;
    holder.send("store 3 10 20 238");
    let (sig, code, addr, _) = parse_signal(&holder.expect("signal"));
    assert_eq!(
        (sig, code, addr),
        (libc::SIGBUS, 2, base + (3 * PAGE + 10) as usize),
        "an unresolvable store fault is SIGBUS BUS_ADRERR, as the kernel's"
    );
    holder.wait_code(42);
    assert_eq!(fs.stats().free_blocks, free_before);
    assert_eq!(read_all(&fs, "/clone"), data, "the clone changed");
    assert_eq!(phys_of(&fs, &clone, 3), phys_of(&fs, &src, 3), "still shared");
    // The server still serves: freeing space makes the same store work in a new client.
    drop(filler);
    fs.remove_file("/filler").unwrap();
    let (mut holder, _) = spawn_holder(&pool, TEST, "/clone", "w");
    holder.send("store 3 10 20 238");
    holder.expect("stored");
    holder.send("exit");
    holder.wait_code(0);
    let mut want = data.clone();
    want[(3 * PAGE + 10) as usize..][..20].fill(238);
    assert_eq!(read_all(&fs, "/clone"), want);
    assert_clean(&fs, "a store fault on a full pool");
    drop((src, clone, fs));
    server.stop();
}

#[test]
fn a_file_unlinked_by_another_process_stays_alive_for_a_client_view_and_is_freed_when_the_view_goes() {
    const TEST: &str =
        "a_file_unlinked_by_another_process_stays_alive_for_a_client_view_and_is_freed_when_the_view_goes";
    if role().is_some() {
        return view_holder();
    }
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    let fs = server.connect();
    let data = noise(9, (VIEW_PAGES * PAGE) as usize);
    fs.open("/u", &rw()).unwrap().write_at(&data, 0).unwrap();
    let free_with_file = fs.stats().free_blocks;
    let (mut holder, _) = spawn_holder(&pool, TEST, "/u", "w");
    let (status, stdout, stderr) = run_cli(&["rm", &pool_path, "/u"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert_eq!(fs.metadata("/u").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fs.stats().free_blocks, free_with_file, "the mapped file's blocks are kept");
    assert_eq!(ask_u64(&mut holder, "hash 65536", "hash"), fnv(&data));
    holder.send("store 2 0 10 1");
    holder.expect("stored");
    assert_clean(&fs, "unlinking a file mapped in another process");
    holder.send("exit");
    holder.wait_code(0);
    // The view's open reference was the last: the blocks come back once the server dropped it.
    let deadline = std::time::Instant::now() + HANG;
    while fs.stats().free_blocks != free_with_file + VIEW_PAGES {
        assert!(std::time::Instant::now() < deadline, "the unlinked file's blocks are never freed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_clean(&fs, "the last view of an unlinked file went");
    drop(fs);
    server.stop();
}

// ----- the server's guarantees about stuck clients, other users and its pool -----

/// A client running as another user: says what each kind of access gave (`ok` or the errno).
/// The user the tests that run a client as another user run it as.
const NOBODY: u32 = 65534;

/// A pool whose file's group is [`NOBODY`]'s, in a directory anyone may search. Needs root.
fn pool_for_nobody() -> TestPool {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs a client as another user: it needs root (CI is)"
    );
    let pool = TestPool::new(64 << 20);
    std::fs::set_permissions(pool.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&pool.path, None, Some(NOBODY)).unwrap();
    pool
}

fn other_user() {
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let word = |r: ferrodax::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.errno().to_string(),
    };
    let f = fs.open("/f", &rw()).unwrap();
    let read_view = f.map(0, PAGE, MapAccess::Read).map(|v| {
        let mut b = [0u8; 1];
        v.read_at(100, &mut b).unwrap();
        assert_eq!(b[0], 0x33, "the read-only view shows the file");
    });
    let write_view = f.map(0, PAGE, MapAccess::ReadWrite).map(|_| ());
    let write = f.write_at(b"via the socket", PAGE).map(|_| ());
    let mut b = [0u8; 14];
    let read = f.read_exact_at(&mut b, PAGE);
    assert!(read.is_err() || &b == b"via the socket");
    say(&format!("access {} {} {} {}", word(read_view), word(write_view), word(write), word(read)));
    std::process::exit(0);
}

#[test]
fn a_client_of_another_user_gets_only_the_views_its_own_access_to_the_pool_file_allows() {
    const TEST: &str = "a_client_of_another_user_gets_only_the_views_its_own_access_to_the_pool_file_allows";
    if role().is_some() {
        return other_user();
    }
    let pool = pool_for_nobody();
    let want_ok = "ok".to_string();
    let eacces = libc::EACCES.to_string();
    // Group members may read the pool file (0640): read-only views; none at all with 0600.
    for (mode, read_view) in [(0o640, want_ok.clone()), (0o600, eacces.clone())] {
        std::fs::set_permissions(&pool.path, std::fs::Permissions::from_mode(mode)).unwrap();
        let server = Server::start_with(&pool, &["--group", &NOBODY.to_string()]);
        let fs = server.connect();
        fs.open("/f", &rw()).unwrap().write_at(&[0x33; PAGE as usize], 0).unwrap();
        // The file's own mode lets everyone write: what is under test is the pool file's mode.
        fs.set_permissions("/f", 0o666).unwrap();
        let env = [("FDX_SOCKET", pool.socket().to_str().unwrap().to_string())];
        let mut kid = Kid::spawn_as(pool.dir.path(), TEST, "nobody", &env, Some((NOBODY, NOBODY)));
        let got = kid.expect("access");
        assert_eq!(
            got,
            vec![read_view, eacces.clone(), want_ok.clone(), want_ok.clone()],
            "pool file mode {mode:o}: read-only view, read-write view, write_at, read_at"
        );
        kid.wait_code(0);
        assert_eq!(&read_all(&fs, "/f")[PAGE as usize..], b"via the socket");
        assert_clean(&fs, &format!("a client of another user, pool mode {mode:o}"));
        drop(fs);
        server.stop();
    }
}

/// The other user's side of the permission test: each step's errno ("ok" for success), in order.
fn permission_prober() {
    use ferrodax::fs::access::{as_caller, Credentials};
    use ferrodax::fs::namespace::{SetAttributes, TimeSet};
    let fs = ferrodax::Fs::connect(env_str("FDX_SOCKET")).unwrap();
    let word = |r: ferrodax::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => libc_name(e.errno()),
    };
    let read = || ferrodax::OpenOptions::new().read(true).clone();
    let write = || ferrodax::OpenOptions::new().write(true).clone();
    let times = |t| SetAttributes { mtime: Some(t), ..SetAttributes::default() };
    let steps = [
        word(fs.open("/f", &write()).map(drop)),
        word(fs.open("/f", &read()).map(drop)),
        word(fs.open("/newfile", &rw()).map(drop)),
        word(fs.metadata("/private/x").map(drop)),
        word(fs.read_dir("/private").map(drop)),
        word(fs.set_permissions("/f", 0o777)),
        word(fs.set_attributes("/f", &SetAttributes { uid: Some(65534), ..Default::default() }, true)),
        word(fs.set_attributes("/f", &times(TimeSet::At(5)), true)),
        word(fs.set_attributes("/f", &times(TimeSet::Now), true)),
        word(fs.set_xattr("/f", "user.x", b"v", 0)),
        word(fs.hard_link("/f", "/open/f2")),
        word(fs.remove_file("/tmp/rootfile")),
        word(fs.rename("/tmp/rootfile", "/tmp/moved")),
        word(fs.open("/open/mine", &rw()).map(drop)),
        word(fs.metadata("/open/mine").map(|s| assert_eq!((s.uid, s.gid), (65534, 65534)))),
        word(fs.set_permissions("/open/mine", 0o600)),
        word(fs.remove_file("/open/mine")),
        // Asking the server to act as root: only a root client (the FUSE mount) may.
        word(as_caller(Credentials::root(), || fs.open("/f", &write()).map(drop))),
    ];
    say(&format!("perm {}", steps.join(" ")));
    std::process::exit(0);
}

fn libc_name(errno: i32) -> String {
    match errno {
        libc::EACCES => "EACCES".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        other => other.to_string(),
    }
}

#[test]
fn a_client_of_another_user_is_refused_where_linux_refuses_and_what_it_makes_is_its_own() {
    const TEST: &str = "a_client_of_another_user_is_refused_where_linux_refuses_and_what_it_makes_is_its_own";
    if role().is_some() {
        return permission_prober();
    }
    let pool = pool_for_nobody();
    std::fs::set_permissions(&pool.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let server = Server::start_with(&pool, &["--group", &NOBODY.to_string()]);
    let fs = server.connect();
    // Root's files: /f 0644, /private 0700 holding x, /tmp sticky 1777 holding root's 0666 file,
    // /open 0777.
    fs.open("/f", &rw()).unwrap().write_at(b"root's", 0).unwrap();
    fs.create_dir_with_mode("/private", 0o700).unwrap();
    drop(fs.open("/private/x", &rw()).unwrap());
    fs.create_dir_with_mode("/tmp", 0o1777).unwrap();
    fs.set_permissions("/tmp", 0o1777).unwrap();
    drop(fs.open("/tmp/rootfile", &rw()).unwrap());
    fs.set_permissions("/tmp/rootfile", 0o666).unwrap();
    fs.create_dir_with_mode("/open", 0o777).unwrap();
    let env = [("FDX_SOCKET", pool.socket().to_str().unwrap().to_string())];
    let mut kid = Kid::spawn_as(pool.dir.path(), TEST, "nobody", &env, Some((NOBODY, NOBODY)));
    let got = kid.expect("perm");
    kid.wait_code(0);
    let want = [
        "EACCES", // open /f for writing: 0644, not the owner
        "ok",     // open /f for reading
        "EACCES", // create in / (0755 root)
        "EACCES", // stat /private/x: no search permission on /private
        "EACCES", // list /private
        "EPERM",  // chmod another's file
        "EPERM",  // chown to oneself
        "EPERM",  // set another's mtime to a given time
        "EACCES", // set another's mtime to now without write permission
        "EACCES", // setxattr without write permission
        "EPERM",  // hard link to another's file it may not write (protected_hardlinks)
        "EPERM",  // unlink another's file in a sticky directory
        "EPERM",  // rename it there
        "ok",     // create in /open (0777)
        "ok",     // ... owned by the caller
        "ok",     // chmod its own file
        "ok",     // unlink its own file
        "EPERM",  // requests for another user: only a root client may send them
    ];
    assert_eq!(got, want, "errno of each step (see permission_prober)");
    assert_eq!(read_all(&fs, "/f"), b"root's");
    assert!(fs.metadata("/tmp/rootfile").is_ok());
    assert!(fs.metadata("/open/mine").is_err());
    assert_clean(&fs, "a client of another user refused where Linux refuses");
    drop(fs);
    server.stop();
}

/// A server with a one-second recall timeout over a new pool whose `/f` fills a view
/// (`VIEW_PAGES` pages of 5s): the pool, its path, the server and a connection to it.
fn serve_f_with_a_one_second_recall_timeout() -> (TestPool, String, Server, ferrodax::Fs) {
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start_with(&pool, &["--recall-timeout", "1"]);
    let fs = server.connect();
    fs.open("/f", &rw()).unwrap().write_at(&vec![5u8; (VIEW_PAGES * PAGE) as usize], 0).unwrap();
    (pool, pool_path, server, fs)
}

/// `ferrodax io -c "truncate 8192" POOL /f`, which must succeed.
fn truncate_f_to_two_pages(pool_path: &str) {
    let (status, stdout, stderr) = run_cli(&["io", "-c", "truncate 8192", pool_path, "/f"]);
    assert!(status.success(), "the truncate must complete: {stdout}{stderr}");
}

/// Asserts that the view of a holder of `/f` shows two pages of blocks, then end of file.
fn assert_shows_two_pages_then_eof(holder: &mut Kid) {
    holder.send("phys");
    let states = holder.expect("phys");
    assert!(states[..2].iter().all(|s| s.starts_with('w') || s.starts_with('r')), "{states:?}");
    assert!(states[2..].iter().all(|s| s == "eof"), "{states:?}");
}

#[test]
fn a_client_process_that_stops_answering_recalls_is_killed_before_the_layout_change_returns() {
    const TEST: &str =
        "a_client_process_that_stops_answering_recalls_is_killed_before_the_layout_change_returns";
    if role().is_some() {
        return view_holder();
    }
    let (pool, pool_path, server, fs) = serve_f_with_a_one_second_recall_timeout();
    let (mut holder, _) = spawn_holder(&pool, TEST, "/f", "w");
    let (mut other, _) = spawn_holder(&pool, TEST, "/f", "r");
    // The holder stops: it can no longer apply a layout change to its view. (Awaited: until its
    // stop has taken effect, its reader could still answer, and rightly not be killed.)
    holder.stop();
    truncate_f_to_two_pages(&pool_path);
    // By the time it returned, the stopped holder was killed (it still showed the old layout).
    let status = holder.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the stuck holder: {status}");
    let log = server.log_text();
    assert!(
        log.contains(&format!("pid {}", holder.pid())) && log.contains("did not apply a layout change"),
        "{log}"
    );
    // The live holder followed the truncate.
    assert_shows_two_pages_then_eof(&mut other);
    other.send("exit");
    other.wait_code(0);
    assert_eq!(fs.metadata("/f").unwrap().size, 8192);
    assert_clean(&fs, "a stuck client was fenced");
    drop(fs);
    server.stop();
}

#[test]
fn a_client_process_whose_stop_takes_effect_only_after_it_applied_the_recall_is_not_killed_and_shows_the_truncate(
) {
    const TEST: &str = "a_client_process_whose_stop_takes_effect_only_after_it_applied_the_recall_is_not_killed_and_shows_the_truncate";
    if role().is_some() {
        return view_holder();
    }
    let (pool, pool_path, server, fs) = serve_f_with_a_one_second_recall_timeout();
    let (mut holder, _) = spawn_holder(&pool, TEST, "/f", "w");
    // A SIGSTOP sent now stays pending while the holder's other threads, its client reader among
    // them, run on: the window between kill(2) and the stop taking effect, held open.
    holder.send("stallmain");
    holder.expect("stalled");
    holder.signal(libc::SIGSTOP);
    assert!(!holder.stopped_now(), "the holder's stop is pending, not in effect");
    truncate_f_to_two_pages(&pool_path);
    // The holder answered the recall before its stop took effect: its view follows the truncate,
    // so the server had no reason to kill it.
    assert_shows_two_pages_then_eof(&mut holder);
    let log = server.log_text();
    assert!(!log.contains("killing it"), "{log}");
    // Its stop then takes effect (it is stopped, not dead), and it goes on after SIGCONT.
    holder.send("releasemain");
    holder.await_stopped();
    holder.signal(libc::SIGCONT);
    holder.send("exit");
    holder.wait_code(0);
    assert_eq!(fs.metadata("/f").unwrap().size, 8192);
    assert_clean(&fs, "a client stopped after it applied a recall");
    drop(fs);
    server.stop();
}

#[test]
fn while_a_server_runs_a_direct_open_of_its_pool_fails_with_ebusy_naming_the_server() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    for (how, result) in [
        ("read-write", ferrodax::Pool::open(&pool.path).map(|_| ())),
        ("read-only", ferrodax::Pool::open_read_only(&pool.path).map(|_| ())),
    ] {
        let e = result.expect_err(how);
        assert_eq!(e.errno(), libc::EBUSY, "{how}: {e}");
        let text = e.to_string();
        assert!(text.contains(&format!("pid {}", server.pid())), "{how}: the server is named: {text}");
        assert!(text.contains("ferrodax serve"), "{how}: {text}");
    }
    server.stop();
    // Once it stopped, the pool opens directly again.
    assert_clean(&pool.mount(), "the server stopped");
}

#[test]
fn two_connections_in_one_process_each_follow_the_others_store_faults_and_layout_changes() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let (one, two) = (server.connect(), server.connect());
    let data = noise(4, (VIEW_PAGES * PAGE) as usize);
    let src = one.open("/src", &rw()).unwrap();
    src.write_at(&data, 0).unwrap();
    let clone = one.open("/clone", &rw()).unwrap();
    one.reflink(&src, 0, &clone, 0, 0).unwrap();
    let clone_two = two.open("/clone", &rw()).unwrap();
    let src_two = two.open("/src", &ro()).unwrap();
    let v_one = clone.map(0, VIEW_PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    let v_two = clone_two.map(0, VIEW_PAGES * PAGE, MapAccess::ReadWrite).unwrap();
    let v_src = src_two.map(0, VIEW_PAGES * PAGE, MapAccess::Read).unwrap();
    // A plain store through the first connection's view (a fault resolved over that connection).
    v_one.store_plain((6 * PAGE + 1) as usize, b"first").unwrap();
    let mut buf = vec![0u8; 5];
    v_two.read_at((6 * PAGE + 1) as usize, &mut buf).unwrap();
    assert_eq!(&buf, b"first", "the other connection's view follows the store fault");
    v_src.read_at((6 * PAGE + 1) as usize, &mut buf).unwrap();
    assert_eq!(buf, data[(6 * PAGE + 1) as usize..][..5], "the source's view did not change");
    // And the other way round, then a reflink back over the page through the second connection.
    v_two.store_plain((9 * PAGE) as usize, b"second").unwrap();
    let mut buf6 = vec![0u8; 6];
    v_one.read_at((9 * PAGE) as usize, &mut buf6).unwrap();
    assert_eq!(&buf6, b"second");
    two.reflink(&src_two, 6 * PAGE, &clone_two, 6 * PAGE, PAGE).unwrap();
    v_one.read_at((6 * PAGE + 1) as usize, &mut buf).unwrap();
    assert_eq!(buf, data[(6 * PAGE + 1) as usize..][..5], "the reflink reached the first connection's view");
    assert_eq!(phys_of(&one, &clone, 6), phys_of(&one, &src, 6));
    assert!(matches!(v_one.page_state(6), PageState::Block { prot: PageProtection::ReadOnly, .. }));
    let mut want = data.clone();
    want[(9 * PAGE) as usize..][..6].copy_from_slice(b"second");
    assert_eq!(read_all(&two, "/clone"), want);
    assert_eq!(one.view_count(), 3);
    assert_clean(&one, "two connections in one process");
    drop((v_one, v_two, v_src, src, clone, clone_two, src_two));
    assert_eq!(two.view_count(), 0);
    drop((one, two));
    server.stop();
}

#[test]
fn appends_from_three_cli_processes_through_the_server_land_whole_and_none_is_lost() {
    let pool = TestPool::new(64 << 20);
    let pool_path = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    // Each process appends 100 records of 4 KiB (pwrite's 4 KiB buffer: one append per record).
    let writers: Vec<_> = [0x41u8, 0x42, 0x43]
        .into_iter()
        .map(|seed| {
            let pool_path = pool_path.clone();
            std::thread::spawn(move || {
                let cmd = format!("pwrite -S {seed:#x} 0 400k");
                run_cli(&["io", "-a", "-f", "-c", &cmd, &pool_path, "/log"])
            })
        })
        .collect();
    for w in writers {
        let (status, stdout, stderr) = w.join().unwrap();
        assert!(status.success(), "{stdout}{stderr}");
    }
    let fs = server.connect();
    let data = read_all(&fs, "/log");
    assert_eq!(data.len(), 3 * 400 * 1024, "every append landed");
    let mut counts = std::collections::BTreeMap::new();
    for (i, record) in data.chunks(PAGE as usize).enumerate() {
        assert!(record.iter().all(|&b| b == record[0]), "record {i} is torn");
        *counts.entry(record[0]).or_insert(0) += 1;
    }
    assert_eq!(counts, [(0x41, 100), (0x42, 100), (0x43, 100)].into_iter().collect());
    assert_clean(&fs, "concurrent appends");
    drop(fs);
    server.stop();
}

#[test]
fn reads_and_writes_larger_than_a_socket_piece_keep_every_byte_and_short_reads_stop_at_eof() {
    let pool = TestPool::new(128 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let f = fs.open("/big", &rw()).unwrap();
    let data = noise(8, 20 * 1024 * 1024 + 5);
    assert_eq!(f.write_at(&data, 3).unwrap(), data.len());
    assert_eq!(f.metadata().unwrap().size, data.len() as u64 + 3);
    let mut got = vec![0xffu8; data.len() + 3];
    f.read_exact_at(&mut got, 0).unwrap();
    assert!(got[..3] == [0, 0, 0] && got[3..] == data[..], "a large read or write lost bytes");
    // A read running past EOF returns exactly the bytes up to EOF.
    let mut tail = vec![0u8; 17 * 1024 * 1024];
    let from = data.len() as u64 + 3 - 9 * 1024 * 1024 - 1;
    assert_eq!(f.read_at(&mut tail, from).unwrap(), 9 * 1024 * 1024 + 1);
    assert!(tail[..9 * 1024 * 1024 + 1] == data[data.len() - 9 * 1024 * 1024 - 1..]);
    assert_eq!(f.read_at(&mut tail, data.len() as u64 + 3).unwrap(), 0, "at EOF");
    assert_clean(&fs, "large I/O through the server");
    drop((f, fs));
    server.stop();
}

#[test]
fn cli_processes_map_and_store_through_the_server_with_copy_on_write_and_the_source_untouched() {
    let pool = TestPool::new(64 << 20);
    let p = pool.path.to_str().unwrap().to_string();
    let server = Server::start(&pool);
    let ok = |args: &[&str]| {
        let (status, stdout, stderr) = run_cli(args);
        assert!(status.success(), "ferrodax {args:?}: {stdout}{stderr}");
        stdout
    };
    ok(&["io", "-f", "-c", "pwrite -S 0x61 0 16k", &p, "/src"]);
    ok(&["cp", "--reflink", &p, "/src", "/clone"]);
    // A store through a CLI process's view of the clone takes the copy-on-write fault path.
    ok(&[
        "io",
        "-c",
        "mmap -w 0 16k",
        "-c",
        "mwrite -S 0x7a 4096 100",
        "-c",
        "msync",
        "-c",
        "munmap",
        &p,
        "/clone",
    ]);
    let fs = server.connect();
    let mut want = vec![0x61u8; 16384];
    want[4096..4196].fill(0x7a);
    assert_eq!(read_all(&fs, "/clone"), want);
    assert_eq!(read_all(&fs, "/src"), vec![0x61u8; 16384]);
    assert_eq!(blocks_of(&fs, &["/src", "/clone"]).len(), 5, "one page copied");
    // Another CLI process reads the view's bytes back.
    let out = ok(&["io", "-r", "-c", "mmap -r 0 16k", "-c", "mread -v 4090 10", &p, "/clone"]);
    assert!(out.contains("61 61 61 61 61 61 7a 7a 7a 7a"), "{out}");
    assert_clean(&fs, "CLI views through the server");
    drop(fs);
    server.stop();
}
