//! Guards `ferrodax dedupe-scan`: on a pool with known duplicate ranges it finds exactly those
//! ranges (a whole copied file, one 64 KiB range at another offset, nothing in unique data),
//! `--dry-run` changes nothing, the real run makes the blocks shared (the reverse map names both
//! files), frees exactly the duplicate bytes, keeps every file's contents and a clean fsck, and a
//! second run finds nothing; a file of one repeated block collapses to one pool block; the scan
//! stays inside the paths it is given, following a symlink it is given but none it meets inside a
//! directory (dangling or pointing at an ancestor); no progress output reaches a non-terminal
//! standard error.

mod cli_sandbox;

use cli_sandbox::{checksum, unique_bytes, Sandbox};

/// (source, source offset, destination, destination offset, length, outcome) of every range.
fn ranges(report: &serde_json::Value) -> Vec<(String, u64, String, u64, u64, String)> {
    report["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source"].as_str().unwrap().to_string(),
                r["source_offset"].as_u64().unwrap(),
                r["destination"].as_str().unwrap().to_string(),
                r["destination_offset"].as_u64().unwrap(),
                r["length"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The pool byte offset of `path`'s first block, from `io fiemap -v` (512-byte sectors).
fn first_pool_offset(s: &Sandbox, path: &str) -> u64 {
    let out = s.ok(&["io", "-c", "fiemap -v", "test.pool", path]);
    let line = out.lines().nth(2).unwrap_or_else(|| panic!("no extent for {path}: {out}"));
    let sectors = line.split_whitespace().nth(2).unwrap();
    sectors.split("..").next().unwrap().parse::<u64>().unwrap() * 512
}

/// The distinct paths of the files that own the pool block at `pool_offset`.
fn owner_paths(s: &Sandbox, pool_offset: u64) -> Vec<String> {
    let owners = s.json(&["owners", "test.pool", &pool_offset.to_string(), "--json"]);
    let mut paths: Vec<String> = owners
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["owner"]["path"].as_str().map(String::from))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

fn checksums(s: &Sandbox, paths: &[&str]) -> Vec<u64> {
    paths.iter().map(|p| checksum(&s.cat(p))).collect()
}

#[test]
fn dedupe_scan_finds_exactly_the_duplicate_ranges_and_a_second_run_finds_none() {
    let s = Sandbox::with_pool("32m");
    let x = unique_bytes(1, 1 << 20);
    let mut z = unique_bytes(2, 256 << 10);
    z[65536..131072].copy_from_slice(&x[131072..196608]);
    s.put("/x", &x);
    s.put("/y", &x);
    s.put("/z", &z);
    s.put("/u", &unique_bytes(3, 200_000));
    s.ok(&["mkdir", "test.pool", "/d"]);
    s.put("/d/w", &unique_bytes(4, 65536));
    let all = ["/x", "/y", "/z", "/u", "/d/w"];
    let before = checksums(&s, &all);
    let data_before = s.json(&["df", "test.pool", "--json"])["data_bytes"].as_u64().unwrap();

    let expected = |outcome: &str| {
        vec![
            ("/x".to_string(), 0, "/y".to_string(), 0, 1 << 20, outcome.to_string()),
            ("/x".to_string(), 131072, "/z".to_string(), 65536, 65536, outcome.to_string()),
        ]
    };
    let dry = s.json(&["dedupe-scan", "test.pool", "--dry-run", "--json"]);
    assert_eq!(ranges(&dry), expected("would dedupe"));
    assert_eq!(dry["bytes_deduped"], (1 << 20) + 65536);
    assert_eq!(dry["bytes_saved"], serde_json::Value::Null);
    assert_eq!(dry["files_scanned"], 5);
    let dry_text = s.ok(&["dedupe-scan", "test.pool", "--dry-run"]);
    assert_eq!(dry_text.lines().next(), Some("/y [0, +1048576) = /x [0, +1048576): would dedupe"));
    assert_eq!(
        s.json(&["df", "test.pool", "--json"])["data_bytes"],
        data_before,
        "--dry-run changed nothing"
    );
    assert_eq!(s.json(&["stat", "test.pool", "/y", "--json"])["shared_bytes"], 0);

    let done = s.json(&["dedupe-scan", "test.pool", "--json"]);
    assert_eq!(ranges(&done), expected("deduped"));
    assert_eq!(done["bytes_deduped"], (1 << 20) + 65536);
    assert_eq!(done["bytes_saved"], (1 << 20) + 65536, "every deduped block was a second copy");
    assert_eq!(done["files_deduped"], 2);

    let x_first = first_pool_offset(&s, "/x");
    assert_eq!(owner_paths(&s, x_first), ["/x", "/y"], "a block of /x is now /y's too");
    assert_eq!(owner_paths(&s, x_first + 131072 + 4096), ["/x", "/y", "/z"]);
    assert_eq!(s.json(&["stat", "test.pool", "/z", "--json"])["shared_bytes"], 65536);
    assert_eq!(s.json(&["stat", "test.pool", "/u", "--json"])["shared_bytes"], 0);
    assert_eq!(checksums(&s, &all), before, "contents unchanged");
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}", check.stdout);

    let again = s.json(&["dedupe-scan", "test.pool", "--json"]);
    assert_eq!((again["bytes_deduped"].as_u64(), again["ranges"].as_array().unwrap().len()), (Some(0), 0));
    assert_eq!(again["bytes_saved"], 0);
}

#[test]
fn dedupe_scan_with_same_file_collapses_files_of_one_repeated_block_into_one_pool_block_inside_the_given_path_only(
) {
    let s = Sandbox::with_pool("32m");
    s.ok(&["mkdir", "test.pool", "/d"]);
    s.ok(&["mkdir", "test.pool", "/e"]);
    for path in ["/d/a", "/d/b", "/e/c"] {
        s.io(path, &["pwrite -q -S 0x61 0 1m"]);
    }
    let before = checksums(&s, &["/d/a", "/d/b", "/e/c"]);
    let done = s.json(&["dedupe-scan", "test.pool", "/d", "--same-file", "--json"]);
    assert_eq!(done["files_scanned"], 2);
    assert_eq!(done["bytes_saved"], (2 << 20) - 4096, "2 MiB of one block value need one block");
    let a = s.json(&["stat", "test.pool", "/d/a", "--json"]);
    assert_eq!(a["shared_bytes"], 1 << 20);
    assert_eq!(s.json(&["stat", "test.pool", "/e/c", "--json"])["shared_bytes"], 0, "/e was not scanned");
    assert_eq!(owner_paths(&s, first_pool_offset(&s, "/d/b")), ["/d/a", "/d/b"]);
    assert_eq!(checksums(&s, &["/d/a", "/d/b", "/e/c"]), before);
    assert_eq!(s.run(&["check", "test.pool"]).status, 0);
    let again = s.json(&["dedupe-scan", "test.pool", "/d", "--same-file", "--json"]);
    assert_eq!(again["bytes_deduped"], 0);
}

#[test]
fn dedupe_scan_shares_a_copy_block_for_block_with_its_original_and_keeps_the_original_unfragmented() {
    let s = Sandbox::with_pool("32m");
    for path in ["/x", "/y"] {
        s.io(path, &["pwrite -q -S 0x61 0 1m"]);
    }
    let before = checksums(&s, &["/x", "/y"]);
    let done = s.json(&["dedupe-scan", "test.pool", "--json"]);
    assert_eq!(done["bytes_saved"], 1 << 20, "the copy's megabyte is saved, the original's blocks stay");
    let x = first_pool_offset(&s, "/x");
    for block in [0u64, 2, 255] {
        assert_eq!(owner_paths(&s, x + block * 4096), ["/x", "/y"], "block {block} of /x is shared with /y");
    }
    assert_eq!(checksums(&s, &["/x", "/y"]), before);
    assert_eq!(s.run(&["check", "test.pool"]).status, 0);
}

#[test]
fn dedupe_scan_skips_symlinks_inside_the_tree_dangling_or_looping_and_follows_one_it_is_given() {
    let s = Sandbox::with_pool("32m");
    s.ok(&["mkdir", "test.pool", "/d"]);
    s.ok(&["mkdir", "test.pool", "/e"]);
    for path in ["/d/a", "/d/b", "/e/c"] {
        s.io(path, &["pwrite -q -S 0x61 0 64k"]);
    }
    s.ok(&["ln", "-s", "test.pool", "nowhere", "/d/dangling"]);
    s.ok(&["ln", "-s", "test.pool", "/", "/d/up"]);
    s.ok(&["ln", "-s", "test.pool", "/e/c", "/d/to-c"]);
    s.ok(&["ln", "-s", "test.pool", "/e", "/elink"]);
    let dry = s.json(&["dedupe-scan", "test.pool", "/d", "--dry-run", "--json"]);
    assert_eq!(dry["files_scanned"], 2, "only /d/a and /d/b: {dry}");
    let given = s.json(&["dedupe-scan", "test.pool", "/d", "/elink", "--json"]);
    assert_eq!(given["files_scanned"], 3, "a symlink on the command line is followed: {given}");
    assert_eq!(owner_paths(&s, first_pool_offset(&s, "/e/c")), ["/d/a", "/d/b", "/e/c"]);
    assert_eq!(s.run(&["check", "test.pool"]).status, 0);
}
