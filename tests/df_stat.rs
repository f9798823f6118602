//! Guards `ferrodax df` and `ferrodax stat`: "Avail" is exactly the largest write that succeeds
//! (the checkpoint reserve is shown apart), the figures add up to the pool size, shared and
//! quarantined space are counted, the text and `-b` outputs carry the JSON's numbers, and `stat`
//! reports a partly reflinked file's size, blocks, links, extents and shared bytes; through a pool
//! server both report exactly what a direct mount does.

mod cli_sandbox;

use cli_sandbox::Sandbox;

fn figure(value: &serde_json::Value, name: &str) -> u64 {
    value[name].as_u64().unwrap_or_else(|| panic!("df --json has no {name}: {value}"))
}

#[test]
fn df_available_bytes_are_exactly_the_largest_write_that_succeeds() {
    for extra in [0u64, 4096] {
        let s = Sandbox::with_pool("16m");
        s.io("/f", &["truncate 0"]);
        let df = s.json(&["df", "test.pool", "--json"]);
        let avail = figure(&df, "available_bytes");
        assert!(avail > 8 << 20, "a 16 MiB pool has more than 8 MiB available: {df}");
        assert!(figure(&df, "reserved_bytes") > 0, "the checkpoint reserve is shown: {df}");
        let n = (avail + extra).to_string();
        let write = format!("pwrite -q -b {n} 0 {n}");
        let run = s.run(&["io", "-c", &write, "test.pool", "/f"]);
        if extra == 0 {
            assert_eq!(run.status, 0, "writing exactly Avail bytes failed: {}", run.stderr);
            let after = s.json(&["df", "test.pool", "--json"]);
            assert_eq!(figure(&after, "available_bytes"), 0, "{after}");
            assert_eq!(figure(&after, "use_percent"), 100, "{after}");
        } else {
            assert_eq!(run.status, 1, "one block more than Avail must not fit");
            assert_eq!(run.stderr.trim(), "pwrite: No space left on device");
        }
    }
}

#[test]
fn df_counts_shared_and_quarantined_space_and_the_figures_add_up_to_the_pool_size() {
    let s = Sandbox::with_pool("16m");
    s.io("/a", &["pwrite -q -S 0x61 0 64k"]);
    s.io("/b", &["reflink -q /a"]);
    // The middle of the pool: the log mirror and the checkpoint's second chain sit at its end.
    let middle_block = 8u64 << 20;
    let free = s.ok(&["owners", "test.pool", &middle_block.to_string()]);
    assert!(free.ends_with(": free\n"), "the block is free before the test poisons it: {free}");
    s.ok(&["poison", "test.pool", &middle_block.to_string()]);

    let df = s.json(&["df", "test.pool", "--json"]);
    assert_eq!(figure(&df, "size_bytes"), 16 << 20);
    assert_eq!(figure(&df, "shared_bytes"), 65536, "{df}");
    assert_eq!(figure(&df, "data_bytes"), 65536, "shared blocks are counted once: {df}");
    assert_eq!(figure(&df, "quarantined_bytes"), 4096, "{df}");
    assert_eq!(
        figure(&df, "used_bytes") + figure(&df, "free_bytes") + figure(&df, "quarantined_bytes"),
        16 << 20,
        "used + free + bad (unowned) = size: {df}"
    );
    assert_eq!(figure(&df, "available_bytes") + figure(&df, "reserved_bytes"), figure(&df, "free_bytes"));
    let histogram_blocks: u64 = df["free_runs"].as_array().unwrap().iter().map(|b| figure(b, "blocks")).sum();
    assert_eq!(histogram_blocks * 4096, figure(&df, "free_bytes"), "the histogram covers every free block");

    let bytes = s.ok(&["df", "-b", "test.pool"]);
    let lines: Vec<Vec<&str>> = bytes.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["Pool", "Size", "Used", "Avail", "Use%", "Shared", "Reserved", "Quarantined"]);
    let expected = [
        "test.pool".to_string(),
        figure(&df, "size_bytes").to_string(),
        figure(&df, "used_bytes").to_string(),
        figure(&df, "available_bytes").to_string(),
        format!("{}%", figure(&df, "use_percent")),
        "65536".to_string(),
        figure(&df, "reserved_bytes").to_string(),
        "4096".to_string(),
    ];
    assert_eq!(lines[1], expected);
    let human = s.ok(&["df", "test.pool"]);
    let fields: Vec<&str> = human.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((fields[1], fields[5], fields[7]), ("16M", "64K", "4.0K"), "{human}");
    let freesp = s.ok(&["df", "--freesp", "test.pool"]);
    assert!(freesp.contains("      from         to    extents     blocks    pct\n"), "{freesp}");
}

#[test]
fn stat_reports_size_blocks_links_extents_and_shared_bytes_of_a_partly_reflinked_file() {
    let s = Sandbox::with_pool("16m");
    s.io("/a", &["pwrite -q -S 0x61 0 64k"]);
    s.io("/b", &["pwrite -q -S 0x62 0 64k", "reflink -q /a 8k 8k 16k"]);
    let json = s.json(&["stat", "test.pool", "/b", "--json"]);
    assert_eq!(json["kind"], "regular file");
    assert_eq!(json["size"], 65536);
    assert_eq!(json["blocks"], 128);
    assert_eq!(json["nlink"], 1);
    assert_eq!(json["extents"], 3, "private, shared, private: {json}");
    assert_eq!(json["shared_bytes"], 16384);
    let text = s.ok(&["stat", "test.pool", "/b"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "  File: /b");
    let words = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
    assert_eq!(words(1), ["Size:", "65536", "Blocks:", "128", "IO", "Block:", "4096", "regular", "file"]);
    assert_eq!(words(2), ["Inode:", &json["ino"].to_string(), "Links:", "1"]);
    let (uid, gid) = (json["uid"].as_u64().unwrap(), json["gid"].as_u64().unwrap());
    // SAFETY: geteuid and getegid cannot fail.
    assert_eq!(
        (uid, gid),
        unsafe { (libc::geteuid() as u64, libc::getegid() as u64) },
        "the creator owns it"
    );
    assert_eq!(
        lines[3],
        format!("Access: (0600/-rw-------)  Uid: ({uid:>5})   Gid: ({gid:>5})"),
        "xfs_io -f creates files 0600"
    );
    assert!(lines[5].starts_with("Modify: ") && lines[5].ends_with(" +0000"), "{text}");
    assert_eq!(words(7), ["Extents:", "3", "Shared:", "16384", "bytes"]);

    let root = s.json(&["stat", "test.pool", "/", "--json"]);
    assert_eq!((root["kind"].as_str(), root["shared_bytes"].as_u64()), (Some("directory"), Some(0)));
    let missing = s.run(&["stat", "test.pool", "/nope"]);
    assert_eq!(
        (missing.status, missing.stderr.trim()),
        (1, "ferrodax: stat /nope: No such file or directory")
    );
}

/// `ferrodax serve test.pool` in the sandbox, stopped with SIGTERM when dropped.
struct PoolServer(std::process::Child);

impl PoolServer {
    /// Starts the server and returns once it says it is serving (it listens before saying so).
    fn start(s: &Sandbox) -> PoolServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferrodax"))
            .args(["serve", "test.pool"])
            .current_dir(s.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        log.read_line(&mut first).unwrap();
        assert!(first.contains("serving test.pool"), "the pool server did not start: {first}");
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        PoolServer(child)
    }
}

impl Drop for PoolServer {
    fn drop(&mut self) {
        // SIGTERM stops the server cleanly (kill(1): no unsafe code in tests).
        let _ = std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

#[test]
fn df_and_stat_through_a_pool_server_report_what_a_direct_mount_reports() {
    let s = Sandbox::with_pool("16m");
    s.io("/a", &["pwrite -q -S 0x61 0 64k"]);
    s.io("/b", &["reflink -q /a 0 0 16k"]);
    let direct_df = s.json(&["df", "test.pool", "--json"]);
    let direct_stat = s.json(&["stat", "test.pool", "/b", "--json"]);
    let _server = PoolServer::start(&s);
    let run = s.run(&["-v", "df", "test.pool", "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("through the pool server"), "df went through the server: {}", run.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap(), direct_df);
    assert_eq!(s.json(&["stat", "test.pool", "/b", "--json"]), direct_stat);
    assert_eq!(direct_df["shared_bytes"], 16384);
}
