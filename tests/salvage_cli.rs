//! Guards the user's way out of a damaged pool, through the CLI: `ferrodax salvage POOL DIR` copies
//! every readable file out (byte-exact, with modes) of a healthy pool and of one that no longer
//! mounts; a pool whose committed log record is damaged in both copies refuses to mount naming the
//! record and the commands that help; `check --repair` rebuilds it, says what was lost, and leaves a
//! pool that checks clean; salvage never writes into a non-empty directory; a format version 1
//! pool (made by an earlier ferrodax) is read as it is and converted by `check --repair`.

mod cli_sandbox;

use cli_sandbox::{unique_bytes, Sandbox};
use std::os::unix::fs::PermissionsExt;

const BLOCK: u64 = 4096;

/// (log start, log blocks, log mirror start) from the newest slot of superblock copy 0 (slots at
/// bytes 0 and 2048; the generation at byte 48) of the sandbox's pool.
fn log_geometry(s: &Sandbox) -> (u64, u64, u64) {
    let image = std::fs::read(&s.pool).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let slot = if u64_at(2048 + 48) > u64_at(48) { 2048 } else { 0 };
    (u64_at(slot + 56), u64_at(slot + 64), u64_at(slot + 116))
}

/// Byte offsets, inside the log, of the records present (walking the headers from byte 0).
fn record_offsets(s: &Sandbox) -> Vec<u64> {
    let (start, blocks, _) = log_geometry(s);
    let image = std::fs::read(&s.pool).unwrap();
    let log = &image[(start * BLOCK) as usize..((start + blocks) * BLOCK) as usize];
    let mut at = 0usize;
    let mut out = Vec::new();
    while at + 24 <= log.len() && &log[at..at + 4] == b"FDXR" {
        out.push(at as u64);
        let payload = u32::from_le_bytes(log[at + 4..at + 8].try_into().unwrap()) as usize;
        at += (24 + payload).next_multiple_of(8);
    }
    out
}

/// Overwrites 8 bytes in the middle of record `index`'s payload, in the log and in its mirror.
fn damage_record_in_both_copies(s: &Sandbox, index: usize) {
    let (start, _, mirror) = log_geometry(s);
    let at = record_offsets(s)[index] + 30;
    let mut image = std::fs::read(&s.pool).unwrap();
    for base in [start, mirror] {
        let p = (base * BLOCK + at) as usize;
        for b in &mut image[p..p + 8] {
            *b ^= 0xa5;
        }
    }
    std::fs::write(&s.pool, image).unwrap();
}

fn populated() -> (Sandbox, Vec<(String, Vec<u8>)>) {
    let s = Sandbox::with_pool("32m");
    s.ok(&["mkdir", "test.pool", "/docs"]);
    let mut files = Vec::new();
    for (i, path) in ["/a", "/b", "/docs/c", "/docs/d"].iter().enumerate() {
        let data = unique_bytes(i as u64 + 1, 20_000 + i * 4096);
        s.put(path, &data);
        files.push((path.to_string(), data));
    }
    (s, files)
}

#[test]
fn salvage_of_a_healthy_pool_copies_every_file_byte_exact_with_its_mode() {
    let (s, files) = populated();
    let out = s.ok(&["salvage", "test.pool", "rescued"]);
    assert!(out.contains("salvaged 4 file(s)") && out.contains("0 file(s) not whole"), "{out}");
    for (path, data) in &files {
        let got = std::fs::read(s.host_path(&format!("rescued{path}"))).unwrap();
        assert_eq!(&got, data, "{path}");
    }
    let want = s.json(&["stat", "test.pool", "/docs/c", "--json"])["mode"].as_u64().unwrap() as u32 & 0o7777;
    let mode = std::fs::metadata(s.host_path("rescued/docs/c")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, want, "the file's permission bits come along");
}

#[test]
fn a_committed_record_lost_in_both_copies_refuses_mount_then_salvage_and_repair_recover_the_rest() {
    let (s, files) = populated();
    // The first record after mkfs creates /docs; damaging it loses that operation only.
    damage_record_in_both_copies(&s, 0);
    let ls = s.run(&["ls", "test.pool", "/"]);
    assert_eq!(ls.status, 1);
    assert!(
        ls.stderr.contains("Structure needs cleaning")
            && ls.stderr.contains("log record")
            && ls.stderr.contains("damaged in both copies")
            && ls.stderr.contains("check --repair")
            && ls.stderr.contains("salvage"),
        "{}",
        ls.stderr
    );
    let salvage = s.run(&["salvage", "test.pool", "rescued"]);
    assert_eq!(salvage.status, 1, "something was lost: {}", salvage.stdout);
    assert!(salvage.stdout.contains("lost: log record"), "{}", salvage.stdout);
    // /a and /b do not depend on the lost record; they come out whole.
    for (path, data) in files.iter().filter(|(p, _)| !p.starts_with("/docs")) {
        assert_eq!(&std::fs::read(s.host_path(&format!("rescued{path}"))).unwrap(), data, "{path}");
    }
    let repair = s.run(&["check", "--repair", "test.pool"]);
    assert_eq!(repair.status, 1, "a repair that lost something exits 1: {}", repair.stdout);
    assert!(repair.stdout.contains("lost in repair: log record"), "{}", repair.stdout);
    let check = s.ok(&["check", "test.pool"]);
    assert!(check.starts_with("clean"), "{check}");
    for (path, data) in files.iter().filter(|(p, _)| !p.starts_with("/docs")) {
        assert_eq!(&s.cat(path), data, "{path} after repair");
    }
    // What /docs held is not lost with it: its files are in the tree (under /lost+found when the
    // directory itself was the lost operation).
    let rescued: Vec<String> = walk(&s.host_path("rescued"));
    for (path, data) in files.iter().filter(|(p, _)| p.starts_with("/docs")) {
        let found = rescued.iter().any(|r| std::fs::read(r).is_ok_and(|got| &got == data));
        assert!(found, "{path}'s bytes are somewhere in the salvage: {rescued:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn salvage_never_writes_into_a_directory_that_holds_something() {
    let (s, _) = populated();
    std::fs::create_dir(s.host_path("busy")).unwrap();
    std::fs::write(s.host_path("busy/keep"), b"mine").unwrap();
    let run = s.run(&["salvage", "test.pool", "busy"]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("Directory not empty"), "{}", run.stderr);
    assert_eq!(std::fs::read(s.host_path("busy/keep")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(s.host_path("busy")).unwrap().count(), 1);
}

#[test]
fn a_format_version_1_pool_is_read_as_it_is_and_converted_by_a_read_write_mount() {
    // tests/fixtures/format-v1.pool was made by ferrodax 0.1 before format version 2: /a.txt (5000
    // bytes of 'a'), /dir/b (8192 bytes of 'b'), /dir/c (a reflink of /a.txt).
    let s = Sandbox::with_pool("1m");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1.pool"), &s.pool).unwrap();
    let version = newest_version;
    assert_eq!(version(&s), 1);
    assert_eq!(s.cat("/dir/c"), vec![b'a'; 5000]);
    assert_eq!(version(&s), 1, "a read-only command changes nothing");
    let repair = s.ok(&["check", "--repair", "test.pool"]);
    assert!(repair.contains("converted to format version 6"), "{repair}");
    assert_eq!(version(&s), 6);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean"));
    assert_eq!(s.cat("/a.txt"), vec![b'a'; 5000]);
    assert_eq!(s.cat("/dir/b"), vec![b'b'; 8192]);
    assert_eq!(s.cat("/dir/c"), vec![b'a'; 5000]);
}

/// The format version of the newest superblock slot of copy 0 (slots at bytes 0 and 2048,
/// generation at byte 48, version at byte 8).
fn newest_version(s: &Sandbox) -> u32 {
    let image = std::fs::read(&s.pool).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let slot = if u64_at(2048 + 48) > u64_at(48) { 2048 } else { 0 };
    u32::from_le_bytes(image[slot + 8..slot + 12].try_into().unwrap())
}

#[test]
fn a_format_version_2_pool_replays_its_old_log_and_is_converted_with_names_as_entries() {
    // tests/fixtures/format-v2.pool was made by ferrodax before format version 3, every change
    // still in the log (no checkpoint since mkfs): /a.txt (5000 bytes of 'a'), /dir/b (8192 of
    // 'b'), /dir/c (a reflink of /a.txt), /dir/sub/renamed (8192 of 'b', made as /dir/old and
    // renamed), and /gone, put and removed again.
    let s = Sandbox::with_pool("1m");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2.pool"), &s.pool).unwrap();
    assert_eq!(newest_version(&s), 2);
    assert_eq!(s.cat("/dir/sub/renamed"), vec![b'b'; 8192]);
    assert_eq!(newest_version(&s), 2, "a read-only command changes nothing");
    let repair = s.ok(&["check", "--repair", "test.pool"]);
    assert!(repair.contains("converted to format version 6"), "{repair}");
    assert_eq!(newest_version(&s), 6);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean"));
    assert_eq!(s.ok(&["ls", "test.pool", "/dir"]).lines().count(), 3);
    assert_eq!(s.cat("/a.txt"), vec![b'a'; 5000]);
    assert_eq!(s.cat("/dir/c"), vec![b'a'; 5000]);
    let gone = s.run(&["cat", "test.pool", "/gone"]);
    assert!(gone.status != 0 && gone.stderr.contains("No such file"), "{}", gone.stderr);
    // The converted pool takes what format 3 adds: a second name for a file.
    s.ok(&["io", "-c", "link /twice", "test.pool", "/dir/sub/renamed"]);
    assert_eq!(s.cat("/twice"), vec![b'b'; 8192]);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean"));
}

#[test]
fn a_format_version_3_pool_is_read_as_it_is_and_converted_by_its_first_writer() {
    // tests/fixtures/format-v3.pool was made by ferrodax before format version 4 (reflinks as
    // `Map` mutations), changes still in its log: /docs/a (12288 bytes of 'a'), /docs/b2 (4096 of
    // 'b', a hole, 100 of 'c'; made as /docs/b, user.note = "hello"), /docs/clone (a reflink of
    // /docs/a's last 8192 bytes), /hard (a hard link of /docs/a), /sym -> /docs/b, /gone removed.
    let s = Sandbox::with_pool("1m");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v3.pool"), &s.pool).unwrap();
    assert_eq!(newest_version(&s), 3);
    assert_eq!(s.cat("/docs/clone"), vec![b'a'; 8192]);
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/docs/b2", "user.note"]).trim_end(), "hello");
    assert_eq!(newest_version(&s), 3, "a read-only command changes nothing");
    // The first writer converts the pool (a checkpoint) before its reflink becomes a `Clone`.
    s.ok(&["io", "-f", "-c", "reflink /docs/b2 0 0 8292", "test.pool", "/docs/b3"]);
    assert_eq!(newest_version(&s), 6);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean"));
    let mut b2 = vec![b'b'; 4096];
    b2.resize(8192, 0);
    b2.extend_from_slice(&[b'c'; 100]);
    assert_eq!(s.cat("/docs/b2"), b2);
    assert_eq!(s.cat("/docs/b3"), b2);
    assert_eq!(s.cat("/hard"), vec![b'a'; 12288]);
    assert_eq!(s.ok(&["readlink", "test.pool", "/sym"]).trim_end(), "/docs/b");
    let gone = s.run(&["cat", "test.pool", "/gone"]);
    assert!(gone.status != 0 && gone.stderr.contains("No such file"), "{}", gone.stderr);
}

#[test]
fn a_format_version_4_pool_is_read_as_it_is_and_converted_by_its_first_writer() {
    // tests/fixtures/format-v4.pool was made by ferrodax before format version 5 (no deltas),
    // changes still in its log: /a (10000 bytes of 'A', user.k = "v"), /d/b2 (5000 of 'B', made as
    // /d/b), /d/c (a reflink of /a's first 8192 bytes, a `Clone` mutation), /lnk -> /a.
    let s = Sandbox::with_pool("1m");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v4.pool"), &s.pool).unwrap();
    assert_eq!(newest_version(&s), 4);
    assert_eq!(s.cat("/d/c"), vec![b'A'; 8192]);
    assert_eq!(newest_version(&s), 4, "a read-only command changes nothing");
    let repair = s.ok(&["check", "--repair", "test.pool"]);
    assert!(repair.contains("converted to format version 6"), "{repair}");
    assert!(!repair.contains("one log mutation"), "version 4 had Clone already: {repair}");
    assert_eq!(newest_version(&s), 6);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean"));
    assert_eq!(s.cat("/a"), vec![b'A'; 10000]);
    assert_eq!(s.cat("/d/b2"), vec![b'B'; 5000]);
    assert_eq!(s.cat("/d/c"), vec![b'A'; 8192]);
    assert_eq!(s.ok(&["readlink", "test.pool", "/lnk"]).trim_end(), "/a");
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/a", "user.k"]).trim_end(), "v");
}

#[test]
fn a_format_version_5_pool_is_read_as_it_is_and_converted_by_a_read_write_mount() {
    // tests/fixtures/format-v5.pool was made by ferrodax before format version 6 (no run map, no
    // inode index): a base checkpoint of 160 files in /d, a delta over it (user.k of
    // /d/file-with-a-longer-name-1 set 320 times), then in the log: /d/c a reflink of /a (10000
    // bytes of 'A'), /lnk -> /a, user.k = "v" on /a, /d/b renamed /d/b2 (5000 of 'B'),
    // /d/file-with-a-longer-name-160 removed, and /e (3000 of 'E') from a writer killed with SIGKILL.
    let s = Sandbox::with_pool("1m");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v5.pool"), &s.pool).unwrap();
    assert_eq!(newest_version(&s), 5);
    assert_eq!(s.cat("/d/c"), vec![b'A'; 10000]);
    assert_eq!(s.cat("/e"), vec![b'E'; 3000]);
    assert_eq!(newest_version(&s), 5, "a read-only command changes nothing");
    let repair = s.ok(&["check", "--repair", "test.pool"]);
    assert!(repair.contains("converted to format version 6"), "{repair}");
    assert_eq!(newest_version(&s), 6);
    assert!(s.ok(&["check", "test.pool"]).starts_with("clean: 166 inodes"));
    assert_eq!(s.ok(&["ls", "test.pool", "/d"]).lines().count(), 161);
    assert_eq!(s.cat("/d/b2"), vec![b'B'; 5000]);
    assert_eq!(s.ok(&["readlink", "test.pool", "/lnk"]).trim_end(), "/a");
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/a", "user.k"]).trim_end(), "v");
    let note = s.ok(&["xattr", "test.pool", "get", "/d/file-with-a-longer-name-1", "user.k"]);
    assert_eq!(note.trim_end(), format!("{}320", "x".repeat(200)));
    let gone = s.run(&["cat", "test.pool", "/d/file-with-a-longer-name-160"]);
    assert!(gone.status != 0 && gone.stderr.contains("No such file"), "{}", gone.stderr);
}
