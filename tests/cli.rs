//! Guards the `ferrodax` command line, run as a program: `io` prints what xfs_io 6.1 prints on
//! kernel XFS (exact text once the timing line is filtered the way fstests' _filter_xfs_io does),
//! every failed command still lets the rest run and makes the exit status non-zero, the fstests
//! generic/157 and generic/158 invalid reflink/dedupe cases print the kernel's messages and change
//! nothing, the small commands round-trip contents byte for byte, `owners --json` names every
//! owner of a shared block, `check` tells a clean pool from a damaged one, `tour` passes, `poison`
//! names every owner of a bad block (whose reads are then EIO) and `badblocks` imports and lists the
//! pmem sysfs format.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of the program did.
struct Run {
    stdout: String,
    stderr: String,
    status: i32,
}

/// A temporary directory (on /dev/shm when there is one: pool commits msync) with a 16 MiB pool.
struct Sandbox {
    dir: tempfile::TempDir,
    pool: PathBuf,
}

const TIMING_LINE: &str = "XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)";

/// True for xfs_io's timing line, with the character classes of fstests' _filter_xfs_io regex
/// (so an "-nan" rate, which fstests would not filter, is not filtered here either).
fn is_timing_line(line: &str) -> bool {
    let only = |text: &str, allowed: &str| !text.is_empty() && text.chars().all(|c| allowed.contains(c));
    let digits = "0123456789";
    let parse = || -> Option<bool> {
        let (volume, rest) = line.split_once(", ")?;
        let (ops, rest) = rest.split_once(" ops; ")?;
        let (time, rest) = rest.split_once(" (")?;
        let (rate, rest) = rest.split_once("/sec and ")?;
        let op_rate = rest.strip_suffix(" ops/sec)")?;
        let (volume_number, volume_unit) = volume.split_once(' ')?;
        let (rate_number, rate_unit) = rate.split_once(' ')?;
        Some(
            only(volume_number, "0123456789/.")
                && only(volume_unit, "GMKiBbytes")
                && only(ops, digits)
                && only(time, "0123456789/:. sec")
                && only(rate_number, "infa0123456789/.")
                && only(rate_unit, "EPGMKiBbytes")
                && only(op_rate, "infa0123456789/."),
        )
    };
    parse().unwrap_or(false)
}

/// fstests' _filter_xfs_io: the timing line becomes a fixed placeholder.
fn filter_xfs_io(text: &str) -> String {
    text.lines().map(|l| if is_timing_line(l) { TIMING_LINE } else { l }).map(|l| format!("{l}\n")).collect()
}

/// Deterministic bytes that differ from block to block.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect()
}

impl Sandbox {
    fn new() -> Sandbox {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let pool = dir.path().join("test.pool");
        let sandbox = Sandbox { dir, pool };
        let made = sandbox.run(&["mkfs", "test.pool", "--size", "16m"]);
        assert_eq!(made.status, 0, "mkfs failed: {}", made.stderr);
        sandbox
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the ferrodax binary runs");
        Run {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status.code().expect("exited, not killed"),
        }
    }

    fn run_bytes(&self, args: &[&str]) -> Vec<u8> {
        let output = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// `ferrodax io [flags] -c C1 -c C2 ... test.pool PATH`.
    fn io_with(&self, flags: &[&str], path: &str, commands: &[&str]) -> Run {
        let mut args = vec!["io"];
        args.extend_from_slice(flags);
        for c in commands {
            args.push("-c");
            args.push(c);
        }
        args.push("test.pool");
        args.push(path);
        self.run(&args)
    }

    /// `ferrodax io -f ...`.
    fn io(&self, path: &str, commands: &[&str]) -> Run {
        self.io_with(&["-f"], path, commands)
    }

    /// Runs commands that must all succeed.
    fn io_ok(&self, path: &str, commands: &[&str]) -> Run {
        let run = self.io(path, commands);
        assert_eq!(run.status, 0, "{commands:?} on {path}: {}", run.stderr);
        run
    }

    fn cat(&self, path: &str) -> Vec<u8> {
        self.run_bytes(&["cat", "test.pool", path])
    }

    /// The (sector range, flags) of every extent line of `fiemap -v`.
    fn extents(&self, path: &str) -> Vec<(String, String, String)> {
        let run = self.io_ok(path, &["fiemap -v"]);
        run.stdout
            .lines()
            .skip(2)
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = if fields[2] == "hole" { "hole".into() } else { fields[4].to_string() };
                (fields[1].to_string(), fields[2].to_string(), flags)
            })
            .collect()
    }

    /// The first pool sector of `path`'s first extent, from `fiemap -v`.
    fn first_sector(&self, path: &str) -> u64 {
        let extents = self.extents(path);
        let blocks = &extents.iter().find(|e| e.2 != "hole").expect("an extent").1;
        blocks.split("..").next().unwrap().parse().unwrap()
    }
}

#[test]
fn mkfs_makes_a_pool_and_refuses_to_overwrite_one_without_force() {
    let s = Sandbox::new();
    assert_eq!(std::fs::metadata(&s.pool).unwrap().len(), 16 << 20);
    s.io_ok("/kept", &["pwrite -S 0x61 0 4096"]);
    let again = s.run(&["mkfs", "test.pool", "--size", "16m"]);
    assert_ne!(again.status, 0);
    assert!(again.stderr.contains("File exists"), "{}", again.stderr);
    assert_eq!(s.cat("/kept"), vec![0x61; 4096], "a refused mkfs must leave the pool alone");
    let forced = s.run(&["mkfs", "test.pool", "--size", "8m", "--force"]);
    assert_eq!(forced.status, 0, "{}", forced.stderr);
    assert!(forced.stdout.contains("2048 blocks of 4096 bytes"), "{}", forced.stdout);
    let listing = s.run(&["ls", "test.pool"]);
    assert_eq!((listing.status, listing.stdout.as_str()), (0, ""), "a new pool is empty");
}

#[test]
fn pwrite_and_pread_print_exactly_what_xfs_io_prints() {
    let s = Sandbox::new();
    let run = s.io_ok(
        "/a",
        &[
            "pwrite -S 0x61 0 8192",
            "pwrite -S 0x62 -b 4096 100 5000",
            "pread -v 4090 20",
            "pread -v 90 20",
            "pread -v -b 10 0 25",
            "pread -v 8185 20",
            "pread 8192 100",
            "pread 0 8192",
        ],
    );
    let expected = "\
wrote 8192/8192 bytes at offset 0
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 5000/5000 bytes at offset 100
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
00000ffa:  62 62 62 62 62 62 62 62 62 62 62 62 62 62 62 62  bbbbbbbbbbbbbbbb
0000100a:  62 62 62 62  bbbb
read 20/20 bytes at offset 4090
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
0000005a:  61 61 61 61 61 61 61 61 61 61 62 62 62 62 62 62  aaaaaaaaaabbbbbb
0000006a:  62 62 62 62  bbbb
read 20/20 bytes at offset 90
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
00000000:  61 61 61 61 61 61 61 61 61 61  aaaaaaaaaa
0000000a:  61 61 61 61 61 61 61 61 61 61  aaaaaaaaaa
00000014:  61 61 61 61 61  aaaaa
read 25/25 bytes at offset 0
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
00001ff9:  61 61 61 61 61 61 61  aaaaaaa
read 7/20 bytes at offset 8185
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 0/100 bytes at offset 8192
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 8192/8192 bytes at offset 0
XXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
";
    assert_eq!(filter_xfs_io(&run.stdout), expected);
    // The volume and op count are deterministic: xfsprogs' cvtstr and one op per buffer.
    let volumes: Vec<&str> =
        run.stdout.lines().filter(|l| is_timing_line(l)).map(|l| l.split(" ops; ").next().unwrap()).collect();
    assert_eq!(
        volumes,
        [
            "8 KiB, 2",
            "5 KiB, 2",
            "20.000000 bytes, 1",
            "20.000000 bytes, 1",
            "25.000000 bytes, 3",
            "7.000000 bytes, 1",
            "0.000000 bytes, 0",
            "8 KiB, 2"
        ]
    );
}

#[test]
fn pread_dump_shows_only_alphanumerics_and_the_default_pattern_is_0xcd() {
    let s = Sandbox::new();
    let run = s.io_ok("/d", &["pwrite 0 20", "pwrite -S 0x41 4 2", "pwrite -S 0xff 16 2", "pread -v 0 20"]);
    let dump: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("000000")).collect();
    assert_eq!(
        dump,
        [
            "00000000:  cd cd cd cd 41 41 cd cd cd cd cd cd cd cd cd cd  ....AA..........",
            "00000010:  ff ff cd cd  ....",
        ]
    );
}

#[test]
fn reflink_cow_and_unshare_show_in_fiemap_flags_of_both_files() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 -b 16k 0 16k"]);
    let run = s.io_ok("/b", &["reflink /a", "fiemap -v"]);
    let p = s.first_sector("/a");
    let shared_line =
        format!("   0: {:<16} {:<16} {:>5} {:>5}", "[0..31]:", format!("{p}..{}", p + 31), 32, "0x2001");
    let expected = format!(
        "linked 0/0 bytes at offset 0\n{TIMING_LINE}\n/b:\n EXT: FILE-OFFSET      BLOCK-RANGE      TOTAL FLAGS\n{shared_line}\n"
    );
    assert_eq!(filter_xfs_io(&run.stdout), expected);
    let a_fiemap = s.io_ok("/a", &["fiemap -v"]).stdout;
    assert_eq!(
        a_fiemap,
        format!("/a:\n EXT: FILE-OFFSET      BLOCK-RANGE      TOTAL FLAGS\n{shared_line}\n")
    );

    // A range reflink into a new file: a hole, then a shared extent.
    let run = s.io_ok("/c", &["reflink /a 4096 8192 4096", "fiemap -v"]);
    let expected = format!(
        "linked 4096/4096 bytes at offset 8192\n{TIMING_LINE}\n/c:\n EXT: FILE-OFFSET      BLOCK-RANGE      TOTAL FLAGS\n\
         \x20  0: [0..15]:         hole                16\n\
         \x20  1: {:<16} {:<16}     8 0x2001\n",
        "[16..23]:",
        format!("{}..{}", p + 8, p + 15)
    );
    assert_eq!(filter_xfs_io(&run.stdout), expected);

    // A CoW write of 10 bytes into /b un-shares exactly that block, in both files.
    s.io_ok("/b", &["pwrite 4096 10"]);
    let flags = |path: &str| s.extents(path).into_iter().map(|e| e.2).collect::<Vec<_>>();
    assert_eq!(flags("/b"), ["0x2000", "0x0", "0x2001"]);
    assert_eq!(flags("/a"), ["0x2001"], "every block of /a still has a second owner (/b, or /c for block 1)");
    s.io_ok("/c", &["pwrite 8192 4096"]);
    assert_eq!(flags("/a"), ["0x2000", "0x0", "0x2001"], "/a's block 1 lost its last other owner");
    assert_eq!(s.cat("/a"), vec![0x61; 16384], "the source of a CoW write never changes");
    let mut b_expected = vec![0x61; 16384];
    b_expected[4096..4106].fill(0xcd);
    assert_eq!(s.cat("/b"), b_expected);

    // funshare (and its alias unshare) gives private blocks, same bytes.
    s.io_ok("/b", &["funshare 0 4096", "unshare 8192 8192"]);
    assert_eq!(flags("/b"), ["0x0", "0x0", "0x1"]);
    assert_eq!(s.cat("/b"), b_expected);
    let stat = s.io_ok("/b", &["stat"]).stdout;
    assert!(stat.contains("stat.size = 16384\n") && stat.contains("stat.type = regular file\n"), "{stat}");
}

#[test]
fn dedupe_shares_equal_ranges_and_reports_different_ones_as_not_matching() {
    let s = Sandbox::new();
    s.io_ok("/x", &["pwrite -S 0x61 -b 8k 0 8k"]);
    s.io_ok("/y", &["pwrite -S 0x61 -b 8k 0 8k"]);
    s.io_ok("/z", &["pwrite -S 0x62 -b 8k 0 8k"]);
    assert_ne!(s.first_sector("/x"), s.first_sector("/y"));

    let same = s.io("/y", &["dedupe /x 0 0 8192"]);
    assert_eq!((same.status, same.stderr.as_str()), (0, ""));
    assert_eq!(filter_xfs_io(&same.stdout), format!("deduped 8192/8192 bytes at offset 0\n{TIMING_LINE}\n"));
    assert_eq!(s.first_sector("/x"), s.first_sector("/y"));
    assert_eq!(s.extents("/y")[0].2, "0x2001");
    assert_eq!(s.cat("/y"), vec![0x61; 8192]);

    let differs = s.io("/z", &["dedupe /x 0 0 8192"]);
    assert_eq!(differs.stdout, "");
    assert_eq!(differs.stderr, "XFS_IOC_FILE_EXTENT_SAME: Extents did not match.\n");
    assert_ne!(differs.status, 0, "a mismatch counts as a failed command");
    assert_eq!(s.extents("/z")[0].2, "0x1", "nothing got shared");
    assert_eq!(s.cat("/z"), vec![0x62; 8192]);
}

#[test]
fn a_failing_command_does_not_stop_the_run_but_makes_the_exit_status_non_zero() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 0 8192"]);
    let control = s.io("/a", &["pread 0 4"]);
    assert_eq!(control.status, 0);
    let read_line = format!("read 4/4 bytes at offset 0\n{TIMING_LINE}\n");

    let run = s.io("/a", &["reflink /a 37 59 23", "pread 0 4"]);
    assert_eq!(run.stderr, "XFS_IOC_CLONE_RANGE: Invalid argument\n");
    assert_eq!(filter_xfs_io(&run.stdout), read_line);
    assert_eq!(run.status, 1);

    let run = s.io("/a", &["bogus", "pread 0 4"]);
    assert_eq!(run.stderr, "command \"bogus\" not found\n");
    assert_eq!((filter_xfs_io(&run.stdout), run.status), (read_line.clone(), 1));

    let run = s.io("/a", &["truncate abc", "pread 0 4"]);
    assert_eq!(
        (filter_xfs_io(&run.stdout), run.status),
        (format!("non-numeric truncate argument -- abc\n{read_line}"), 1)
    );

    let run = s.io("/a", &["reflink /nonexist 0 0 4096", "pread abc 4", "pread 0 4"]);
    assert_eq!(run.stderr, "/nonexist: No such file or directory\npread: Invalid argument\n");
    assert_eq!((filter_xfs_io(&run.stdout), run.status), (read_line, 1));

    let missing = s.io_with(&[], "/nope", &["pwrite 0 4", "pread 0 4"]);
    assert_eq!(
        (missing.stdout.as_str(), missing.stderr.as_str()),
        ("", "/nope: No such file or directory\n")
    );
    assert_eq!(missing.status, 1);
    let read_only = s.io_with(&["-r"], "/a", &["pwrite 0 4", "truncate 0", "funshare 0 4096"]);
    assert_eq!(
        read_only.stderr,
        "pwrite: Bad file descriptor\nftruncate: Invalid argument\nfallocate: Bad file descriptor\n"
    );
    assert_eq!(read_only.status, 1);
    assert_eq!(s.cat("/a"), vec![0x61; 8192], "no failed command changed anything");
}

#[test]
fn falloc_commands_seek_and_copy_range_print_what_xfs_io_prints() {
    // The expected text is xfs_io 6.1's on a loop-mounted XFS (reflink=1) for the same commands.
    let s = Sandbox::new();
    s.io_ok("/src", &["pwrite -q -S 0x62 0 12000"]);
    let run = s.io(
        "/f",
        &[
            "pwrite -q -S 0x61 0 40000",
            "fpunch 5000 3000",
            "fpunch 8192 8192",
            "seek -a -r 0",
            "seek -d 9000",
            "seek -h 100000",
            "seek -s -a 0",
            "fzero 20000 5000",
            "fcollapse 4096 8192",
            "fcollapse 0 100",
            "finsert 0 4096",
            "finsert 1m 4096",
            "fpunch -1 10",
            "fpunch 0 0",
            "seek",
            "copy_range -s 0 -d 60000 -l 100 /src",
            "copy_range -s -5 /src",
            "copy_range -l abc /src",
            "copy_range /nonexist",
        ],
    );
    assert_eq!(
        run.stdout,
        "Whence\tResult\nDATA\t0\nHOLE\t8192\nDATA\t16384\nHOLE\t40000\n\
         Whence\tResult\nDATA\t16384\n\
         Whence\tResult\nHOLE\tEOF\n\
         Whence\tStart\tResult\nDATA\t0\t0\nHOLE\t0\t8192\n\
         non-numeric offset argument -- -1\n\
         invalid source offset -- -5\ninvalid length -- abc\n"
    );
    assert_eq!(
        run.stderr,
        "fallocate: Invalid argument\nfallocate: Invalid argument\nfallocate: Invalid argument\n\
         bad argument count 0 to seek, expected between 2 and 5 arguments\n\
         /nonexist: No such file or directory\n"
    );
    assert_eq!(run.status, 1);
    let mut want = vec![0x61u8; 40000];
    want[5000..8000].fill(0);
    want[8192..16384].fill(0);
    want[20000..25000].fill(0);
    want.drain(4096..12288);
    want.splice(0..0, [0u8; 4096]);
    want.resize(60000, 0);
    want.extend_from_slice(&[0x62; 100]);
    assert_eq!(s.cat("/f"), want);
    // Without -l: the whole source, into this file truncated first.
    s.io_ok("/g", &["pwrite -q 0 100000", "copy_range /src"]);
    assert_eq!(s.cat("/g"), vec![0x62; 12000]);
}

/// fstests' setup for generic/157 and 158: file1 and file2 of `BLOCKS` blocks of 0x61, a
/// directory, and file3 (the destination opened append-only).
const BLOCKS: u64 = 64;
const BS: u64 = 4096;

fn fstests_setup() -> Sandbox {
    let s = Sandbox::new();
    let len = format!("{}", BLOCKS * BS);
    for f in ["/file1", "/file2", "/file3"] {
        s.io_ok(f, &[&format!("pwrite -S 0x61 -b 256k 0 {len}")]);
    }
    assert_eq!(s.run(&["mkdir", "test.pool", "/dir1"]).status, 0);
    s
}

/// Runs one fstests case: exactly `message` on stderr, nothing on stdout, a non-zero status.
fn expect_error(s: &Sandbox, flags: &[&str], dest: &str, command: &str, message: &str) {
    let run = s.io_with(flags, dest, &[command]);
    assert_eq!(run.stderr, format!("{message}\n"), "{command} -> {dest}");
    assert_eq!(run.stdout, "", "{command} -> {dest}");
    assert_eq!(run.status, 1, "{command} -> {dest}");
}

fn assert_untouched(s: &Sandbox) {
    for f in ["/file1", "/file2", "/file3"] {
        assert_eq!(s.cat(f), vec![0x61; (BLOCKS * BS) as usize], "{f} changed");
        assert!(s.extents(f).iter().all(|e| e.2 == "0x1" || e.2 == "0x0"), "{f} shares blocks");
    }
}

#[test]
fn generic_157_invalid_reflinks_print_the_kernel_messages_and_change_nothing() {
    let s = fstests_setup();
    let einval = "XFS_IOC_CLONE_RANGE: Invalid argument";
    let f = ["-f"];
    expect_error(&s, &f, "/file1", "reflink /file1 37 59 23", einval); // unaligned
    expect_error(&s, &f, "/file1", "reflink /file1 0 1 8192", einval); // overlapping
    let past_eof = format!("reflink /file1 {} 0 {BS}", (BLOCKS + 10) * BS);
    expect_error(&s, &f, "/file1", &past_eof, einval);
    expect_error(&s, &f, "/file2", "reflink /dir1 0 0 4096", "XFS_IOC_CLONE_RANGE: Is a directory");
    expect_error(&s, &f, "/dir1", "reflink /file1 0 0 4096", "/dir1: Is a directory");
    expect_error(
        &s,
        &["-a", "-f"],
        "/file3",
        "reflink /file1 0 0 4096",
        "XFS_IOC_CLONE_RANGE: Bad file descriptor",
    );
    // Beyond fstests: a negative offset reaches the file system and gets its EINVAL; the
    // whole-file form names FICLONE's old name.
    expect_error(&s, &f, "/file2", "reflink /file1 -4096 0 4096", einval);
    expect_error(&s, &f, "/file2", "reflink /file1 0 0 -4096", einval);
    expect_error(&s, &f, "/file2", "reflink /dir1", "XFS_IOC_CLONE: Is a directory");
    assert_untouched(&s);
    // "Reflink two files" works.
    let run = s.io_ok("/file2", &["reflink /file1 0 0 4096"]);
    assert_eq!(filter_xfs_io(&run.stdout), format!("linked 4096/4096 bytes at offset 0\n{TIMING_LINE}\n"));
    assert_eq!(s.first_sector("/file1"), s.first_sector("/file2"));
}

#[test]
fn generic_158_invalid_dedupes_print_the_kernel_messages_and_change_nothing() {
    let s = fstests_setup();
    let einval = "XFS_IOC_FILE_EXTENT_SAME: Invalid argument";
    let f = ["-f"];
    expect_error(&s, &f, "/file1", "dedupe /file1 37 59 23", einval); // unaligned
    expect_error(&s, &f, "/file1", "dedupe /file1 0 1 8192", einval); // overlapping
    let from_past_eof = format!("dedupe /file1 {} 0 {BS}", (BLOCKS + 10) * BS);
    expect_error(&s, &f, "/file1", &from_past_eof, einval);
    let to_past_eof = format!("dedupe /file1 0 {} {BS}", (BLOCKS + 10) * BS);
    expect_error(&s, &f, "/file1", &to_past_eof, einval);
    let over_eof = format!("dedupe /file1 0 {} {}", (BLOCKS - 1) * BS, 2 * BS);
    expect_error(&s, &f, "/file1", &over_eof, einval);
    expect_error(&s, &f, "/file2", "dedupe /dir1 0 0 4096", "XFS_IOC_FILE_EXTENT_SAME: Is a directory");
    expect_error(&s, &f, "/dir1", "dedupe /file1 0 0 4096", "/dir1: Is a directory");
    expect_error(&s, &f, "/file2", "dedupe /file1 -4096 0 4096", einval);
    assert_untouched(&s);
    // Deduping into a file opened append-only must succeed, and so must two plain files.
    let append = s.io_with(&["-a"], "/file3", &["dedupe /file1 0 0 4096"]);
    assert_eq!((append.status, append.stderr.as_str()), (0, ""));
    assert_eq!(
        filter_xfs_io(&append.stdout),
        format!("deduped 4096/4096 bytes at offset 0\n{TIMING_LINE}\n")
    );
    s.io_ok("/file2", &["dedupe /file1 0 0 4096"]);
    assert_eq!(s.first_sector("/file1"), s.first_sector("/file2"));
    assert_eq!(s.first_sector("/file1"), s.first_sector("/file3"));
}

#[test]
fn small_commands_round_trip_contents_byte_for_byte() {
    let s = Sandbox::new();
    let host = pattern(300_000);
    let host_path = s.dir.path().join("host.bin");
    std::fs::write(&host_path, &host).unwrap();
    let ok = |args: &[&str]| {
        let run = s.run(args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        run
    };
    ok(&["put", "test.pool", "host.bin", "/h"]);
    assert!(s.cat("/h") == host, "put then cat");
    ok(&["cp", "test.pool", "/h", "/h2"]);
    assert!(s.cat("/h2") == host, "cp");
    assert!(s.extents("/h2").iter().all(|e| e.2 == "0x0" || e.2 == "0x1"), "a plain cp shares nothing");
    ok(&["cp", "--reflink", "test.pool", "/h", "/h3"]);
    assert!(s.cat("/h3") == host, "cp --reflink");
    assert_eq!(s.first_sector("/h3"), s.first_sector("/h"), "cp --reflink shares the blocks");
    assert_eq!(s.extents("/h3").last().unwrap().2, "0x2001");

    ok(&["mkdir", "test.pool", "/d"]);
    ok(&["mv", "test.pool", "/h3", "/d/h3"]);
    ok(&["cp", "test.pool", "/h", "/d"]);
    assert!(s.cat("/d/h3") == host && s.cat("/d/h") == host, "mv and cp into a directory");
    assert_eq!(ok(&["ls", "test.pool", "/d"]).stdout, "file       300000 h\nfile       300000 h3\n");
    assert_eq!(
        ok(&["ls", "test.pool"]).stdout,
        "dir             0 d\nfile       300000 h\nfile       300000 h2\n"
    );

    let busy = s.run(&["rm", "test.pool", "/d"]);
    assert_eq!((busy.status, busy.stderr.as_str()), (1, "ferrodax: rm /d: Directory not empty\n"));
    ok(&["rm", "test.pool", "/d/h3"]);
    ok(&["rm", "test.pool", "/d/h"]);
    ok(&["rm", "test.pool", "/d"]);
    ok(&["rm", "test.pool", "/h2"]);
    assert_eq!(ok(&["ls", "test.pool"]).stdout, "file       300000 h\n");
    let gone = s.run(&["cat", "test.pool", "/d/h3"]);
    assert_eq!((gone.status, gone.stderr.as_str()), (1, "ferrodax: cat /d/h3: No such file or directory\n"));
    assert!(s.cat("/h") == host, "the original survives its copies' removal");
    let same = s.run(&["cp", "test.pool", "/h", "/h"]);
    assert_ne!(same.status, 0, "copying a file onto itself must fail, not truncate it");
    assert!(s.cat("/h") == host);
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
}

/// The names in the pool's root directory, hidden ones included.
fn root_names(s: &Sandbox) -> Vec<String> {
    let run = s.run(&["ls", "test.pool", "/"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run.stdout.lines().map(|l| l.rsplit(' ').next().unwrap().to_string()).collect()
}

#[test]
fn a_put_of_a_directory_fails_and_leaves_nothing_behind_nor_changes_the_target() {
    let s = Sandbox::new();
    std::fs::create_dir(s.dir.path().join("host-dir")).unwrap();
    s.io_ok("/keep", &["pwrite -q -S 0x61 0 8k"]);
    let keep_before = s.cat("/keep");
    for target in ["/new", "/keep"] {
        let run = s.run(&["put", "test.pool", "host-dir", target]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(run.stderr, "ferrodax: put host-dir: Is a directory\n");
    }
    assert_eq!(root_names(&s), ["keep"], "a failed put left something behind");
    assert!(s.cat("/keep") == keep_before, "a failed put changed the file it was to replace");
}

#[test]
fn a_put_whose_host_file_fails_mid_read_leaves_nothing_behind_nor_changes_the_target() {
    let s = Sandbox::new();
    s.io_ok("/keep", &["pwrite -q -S 0x61 0 8k"]);
    let keep_before = s.cat("/keep");
    // /proc/self/mem opens, and its first read (address 0 of the reader, never mapped) fails: EIO.
    for target in ["/new", "/keep"] {
        let run = s.run(&["put", "test.pool", "/proc/self/mem", target]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        assert_eq!(run.stderr, "ferrodax: put /proc/self/mem: Input/output error\n");
    }
    assert_eq!(root_names(&s), ["keep"], "a failed put left something behind");
    assert!(s.cat("/keep") == keep_before, "a failed put changed the file it was to replace");
}

#[test]
fn a_put_or_cp_bigger_than_the_usable_space_fails_with_the_usable_space_and_leaves_nothing_behind() {
    let s = Sandbox::new(); // 16 MiB
    std::fs::write(s.dir.path().join("big.bin"), pattern(20 << 20)).unwrap();
    s.io_ok("/keep", &["pwrite -q -S 0x61 0 8k"]);
    let keep_before = s.cat("/keep");
    for target in ["/big", "/keep"] {
        let run = s.run(&["put", "test.pool", "big.bin", target]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        let prefix =
            format!("ferrodax: put {target}: No space left on device: the copy needs 20971520 bytes");
        assert!(run.stderr.starts_with(&prefix), "{}", run.stderr);
        assert!(run.stderr.contains("kept back for checkpoints"), "{}", run.stderr);
    }
    assert_eq!(root_names(&s), ["keep"], "a failed put left something behind");
    assert!(s.cat("/keep") == keep_before, "a failed put changed the file it was to replace");

    // The usable space it reports is exact: a file of that size fits, one block more does not.
    let run = s.run(&["put", "test.pool", "big.bin", "/big"]);
    let usable: u64 = run
        .stderr
        .split("the pool can take ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no usable space in {:?}", run.stderr));
    std::fs::write(s.dir.path().join("fits.bin"), pattern(usable as usize - 4096)).unwrap();
    let fits = s.run(&["put", "test.pool", "fits.bin", "/fits"]);
    assert_eq!(
        fits.status,
        0,
        "{} usable bytes reported, but a put of {} failed: {}",
        usable,
        usable - 4096,
        fits.stderr
    );

    // A plain cp that does not fit fails the same way and leaves no partial copy.
    let run = s.run(&["cp", "test.pool", "/fits", "/fits-copy"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.starts_with("ferrodax: cp /fits /fits-copy: No space left on device: the copy needs"),
        "{}",
        run.stderr
    );
    assert_eq!(root_names(&s), ["fits", "keep"], "a failed cp left something behind");
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn an_empty_or_cut_short_pool_file_is_named_as_such_with_the_command_that_makes_a_pool() {
    let s = Sandbox::new();
    std::fs::write(s.dir.path().join("empty.pool"), b"").unwrap();
    let mut short = std::fs::read(&s.pool).unwrap();
    short.truncate(short.len() - 100);
    std::fs::write(s.dir.path().join("short.pool"), &short).unwrap();
    let cases = [
        ("empty.pool", "Invalid argument: pool file is empty: not a ferrodax pool (make one there with `ferrodax mkfs empty.pool --size 1g --force`)"),
        ("short.pool", "Invalid argument: pool file is 16777116 bytes, 100 short of a whole number of 4096-byte blocks: not a ferrodax pool, or one cut short"),
    ];
    for (pool, says) in cases {
        for args in [vec!["ls", pool, "/"], vec!["io", "-c", "pread 0 1", pool, "/a"], vec!["check", pool]] {
            let run = s.run(&args);
            assert_ne!(run.status, 0, "{args:?}");
            assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
            assert!(!run.stderr.contains("Input/output error"), "{args:?}: {}", run.stderr);
        }
    }
    // The command it names works.
    assert_eq!(s.run(&["mkfs", "empty.pool", "--size", "1g", "--force"]).status, 0);
    assert_eq!(s.run(&["ls", "empty.pool", "/"]).status, 0);
}

#[test]
fn mkfs_with_size_0_says_a_pool_cannot_be_empty_and_makes_no_file() {
    let s = Sandbox::new();
    let run = s.run(&["mkfs", "zero.pool", "--size", "0"]);
    assert_eq!(run.status, 1);
    assert_eq!(run.stderr, "ferrodax: mkfs zero.pool: Invalid argument: --size 0: a pool cannot be empty (for example --size 1g)\n");
    assert!(!s.dir.path().join("zero.pool").exists());
}

#[test]
fn a_number_too_large_for_64_bits_is_reported_out_of_range_not_non_positive() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -q -S 0x61 0 4k"]);
    let run = s.io("/b", &["reflink /a 0 0 99999999999999999999"]);
    assert_eq!(run.status, 1);
    assert_eq!(run.stdout, "length argument out of range -- 99999999999999999999\n");
    let run = s.io("/b", &["reflink /a 99999999999999999999 0 4k"]);
    assert_eq!(run.stdout, "src offset argument out of range -- 99999999999999999999\n");
    let run = s.run(&["owners", "test.pool", "99999999999999999999"]);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("size \"99999999999999999999\" is out of range"), "{}", run.stderr);
    // A word that is no number still says non-numeric, as xfs_io does.
    let run = s.io("/b", &["reflink /a 0 0 ten"]);
    assert_eq!(run.stdout, "non-positive length argument -- ten\n");
}

#[test]
fn poison_of_length_0_is_invalid_and_records_nothing() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -q -S 0x61 0 64k"]);
    let run = s.run(&["poison", "test.pool", "8192", "0"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr,
        "ferrodax: poison 8192: Invalid argument: length 0: a memory failure covers at least one byte\n"
    );
    assert_eq!(s.run(&["badblocks", "test.pool"]).stdout, "", "a zero-length poison recorded a bad block");
}

#[test]
fn owners_json_lists_both_files_of_a_reflinked_block() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 -b 16k 0 16k"]);
    assert_eq!(s.run(&["cp", "--reflink", "test.pool", "/a", "/b"]).status, 0);
    let second_block = s.first_sector("/a") * 512 + 4096;
    let offset = second_block.to_string();
    let run = s.run(&["owners", "test.pool", &offset, "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let owners: serde_json::Value = serde_json::from_str(&run.stdout).expect("owners --json is JSON");
    let owners = owners.as_array().expect("a list of owners");
    let mut paths: Vec<&str> = owners.iter().map(|o| o["owner"]["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["/a", "/b"]);
    for o in owners {
        assert_eq!(o["pool_offset"].as_u64(), Some(second_block));
        assert_eq!(o["length"].as_u64(), Some(4096));
        assert_eq!(o["owner"]["type"], "file");
        assert_eq!(o["owner"]["file_offset"].as_u64(), Some(4096));
        assert_eq!(o["owner"]["refcount"].as_u64(), Some(2));
    }
    let text = s.run(&["owners", "test.pool", &offset]).stdout;
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains("offset 4096 len 4096 shared by 2")), "{text}");
    assert!(text.contains("file /a (ino ") && text.contains("file /b (ino "), "{text}");
    let superblock = s.run(&["owners", "test.pool", "0"]).stdout;
    assert_eq!(superblock, "pool [0..4096): metadata: superblock copy 0\n");
}

/// Overwrites `len` bytes of the pool file at `offset`.
fn scribble(pool: &Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(pool).unwrap();
    file.write_all_at(&vec![0x5a; len], offset).unwrap();
}

#[test]
fn check_passes_a_clean_pool_and_names_damaged_superblocks() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 0 8192", "reflink /a 0 4096 4096"]);
    let clean = s.run(&["check", "test.pool"]);
    assert_eq!(clean.status, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.starts_with("clean: "), "{}", clean.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&s.run(&["check", "test.pool", "--json"]).stdout).unwrap();
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(0));

    // One bad copy (both its slots): a read-only check repairs nothing and says so; a read-write
    // mount repairs it.
    scribble(&s.pool, 64, 32);
    scribble(&s.pool, 2048 + 64, 32);
    let one = s.run(&["check", "test.pool"]);
    assert_eq!(one.status, 1, "{}", one.stdout);
    assert!(
        one.stdout.contains("superblock copy 0") && one.stdout.contains("NEEDS REPAIR"),
        "{}",
        one.stdout
    );
    assert_eq!(s.run(&["mkdir", "test.pool", "/repair-me"]).status, 0);
    assert_eq!(s.run(&["check", "test.pool"]).status, 0, "the read-write mount rewrote copy 0");

    // The check names the command that repairs it, and that command does: --repair mounts
    // read-write, says what it repaired, and the next read-only check is clean.
    scribble(&s.pool, 64, 32);
    scribble(&s.pool, 2048 + 64, 32);
    let named = s.run(&["check", "test.pool"]);
    assert_eq!(named.status, 1, "{}", named.stdout);
    assert!(
        named
            .stdout
            .starts_with("needs repair (`ferrodax check --repair test.pool` fixes it): superblock copy 0"),
        "{}",
        named.stdout
    );
    let repaired = s.run(&["check", "--repair", "test.pool"]);
    assert_eq!(repaired.status, 0, "{}{}", repaired.stdout, repaired.stderr);
    assert!(repaired.stdout.starts_with("repaired: superblock copy 0"), "{}", repaired.stdout);
    let after = s.run(&["check", "test.pool"]);
    assert_eq!(after.status, 0, "check --repair did not repair:\n{}", after.stdout);
    assert!(after.stdout.starts_with("clean: "), "{}", after.stdout);

    // Both copies bad: the pool cannot be mounted, and the message says why.
    scribble(&s.pool, 0, 4096);
    scribble(&s.pool, 4096, 4096);
    let broken = s.run(&["check", "test.pool"]);
    assert_eq!(broken.status, 2, "{}{}", broken.stdout, broken.stderr);
    assert!(
        broken.stderr.contains("superblock copy 0") && broken.stderr.contains("superblock copy 1"),
        "{}",
        broken.stderr
    );
    let ls = s.run(&["ls", "test.pool"]);
    assert_ne!(ls.status, 0);
    assert!(ls.stderr.starts_with("ferrodax: mount test.pool: Structure needs cleaning"), "{}", ls.stderr);
}

/// Runs `ferrodax ARGS` in the sandbox with standard output a pipe whose reader has already gone
/// (as after `| head -1` read its line): every write gets EPIPE. Returns (exit code, the signal
/// that ended it, stderr).
fn run_into_closed_pipe(s: &Sandbox, args: &[&str]) -> (Option<i32>, Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
        .args(args)
        .current_dir(s.dir.path())
        .stdout(std::process::Stdio::from(writer))
        .output()
        .expect("the ferrodax binary runs");
    (output.status.code(), output.status.signal(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn no_command_panics_when_its_output_pipe_is_closed() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -q -S 0x61 0 256k"]);
    let a = s.first_sector("/a") * 512;
    let owner_offset = a.to_string();
    let commands: [&[&str]; 9] = [
        &["tour", "--pool", "tour.pool"],
        &["ls", "test.pool", "/"],
        &["io", "-c", "pread -v 0 64k", "test.pool", "/a"],
        &["owners", "test.pool", &owner_offset],
        &["owners", "test.pool", &owner_offset, "--json"],
        &["check", "test.pool"],
        &["cat", "test.pool", "/a"],
        &["mkfs", "other.pool", "--size", "16m"],
        &["--help"],
    ];
    for args in commands {
        let (code, signal, stderr) = run_into_closed_pipe(&s, args);
        assert!(!stderr.contains("panicked"), "{args:?} panicked on a closed pipe:\n{stderr}");
        // Ended quietly: nothing on stderr, and by no signal (SIGPIPE stays ignored for sockets).
        assert_eq!(stderr, "", "{args:?}");
        assert_eq!(signal, None, "{args:?} exited with {code:?}");
    }
}

/// Runs `ferrodax ARGS` in the sandbox with standard output and error closed (as a careless
/// launcher might leave them); returns the exit status.
fn run_with_standard_descriptors_closed(s: &Sandbox, args: &[&str]) -> std::process::ExitStatus {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrodax"));
    command.args(args).current_dir(s.dir.path());
    // SAFETY: between fork and exec the child only calls close(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    command.status().expect("the ferrodax binary runs")
}

#[test]
fn a_command_started_with_its_standard_descriptors_closed_never_prints_into_the_pool() {
    // The program opens /dev/null on closed descriptors 0-2 before anything else (as Rust's runtime
    // start would): without that the pool file would be opened as descriptor 1, and `pwrite`'s
    // report ("wrote 4096/4096 bytes ...") would land in the pool's first block.
    let s = Sandbox::new();
    let status = run_with_standard_descriptors_closed(
        &s,
        &["io", "-f", "-c", "pwrite -S 0x62 0 4096", "test.pool", "/b"],
    );
    assert!(status.success(), "{status:?}");
    let pool = std::fs::read(&s.pool).unwrap();
    let report = b"wrote 4096/4096 bytes";
    assert!(
        !pool.windows(report.len()).any(|w| w == report),
        "pwrite's report was written into the pool file"
    );
    assert_eq!(s.cat("/b"), vec![0x62; 4096]);
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn the_command_loads_neither_libm_nor_libgcc_s() {
    // Each library costs a one-command process time before `main` (libgcc_s's constructor probes
    // the CPU with CPUID, which traps on a virtual machine): `pow` comes from the libm crate, and
    // build.rs links the unwinder statically where the C compiler has libgcc_eh.a. glibc's loader
    // names every library it loads under LD_DEBUG=libs.
    let output = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
        .arg("--version")
        .env("LD_DEBUG", "libs")
        .output()
        .expect("the ferrodax binary runs");
    assert!(output.status.success());
    let loader = String::from_utf8_lossy(&output.stderr);
    assert!(loader.contains("libc.so.6"), "LD_DEBUG=libs said nothing of libc (not glibc?):\n{loader}");
    assert!(!loader.contains("libm.so"), "{loader}");
    if option_env!("FERRODAX_STATIC_UNWINDER").is_some() {
        assert!(!loader.contains("libgcc_s"), "{loader}");
    } else {
        eprintln!("build.rs found no libgcc_eh.a: libgcc_s is loaded dynamically, not checked");
    }
}

#[test]
fn tour_verifies_every_claim_and_exits_zero() {
    let s = Sandbox::new();
    for round in 0..2 {
        // The second round proves an earlier tour's pool is replaced with --force.
        let run = if round == 0 {
            s.run(&["tour", "--pool", "tour.pool"])
        } else {
            s.run(&["tour", "--pool", "tour.pool", "--force"])
        };
        assert_eq!(run.status, 0, "round {round}:\n{}{}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
        assert!(run.stdout.contains("checks passed"), "{}", run.stdout);
        let lines = run.stdout.lines().count();
        assert!((12..=35).contains(&lines), "{lines} lines:\n{}", run.stdout);
        // The memory-failure step: three owners and three views (one per mapping thread).
        assert!(run.stdout.contains("9. memory failure"), "{}", run.stdout);
        for name in ["/mf-source", "/mf-clone-1", "/mf-clone-2"] {
            assert!(run.stdout.contains(&format!("file {name} (ino ")), "{}", run.stdout);
        }
        for thread in ["mapper-0", "mapper-1", "mapper-2"] {
            assert!(run.stdout.contains(thread), "{}", run.stdout);
        }
        assert!(run.stdout.contains("1 quarantined"), "{}", run.stdout);
    }
    let after = s.run(&["check", "tour.pool"]);
    assert_eq!(after.status, 0, "{}", after.stdout);
    assert_eq!(s.run(&["ls", "tour.pool"]).stdout.lines().count(), 7);
    assert_eq!(s.run(&["badblocks", "tour.pool"]).stdout.lines().count(), 1, "the poison is recorded");
}

#[test]
fn tour_never_overwrites_a_file_it_did_not_make_not_even_with_force() {
    let s = Sandbox::new();
    let keep = s.dir.path().join("keep");
    std::fs::write(&keep, "precious\n").unwrap();
    // A ferrodax pool of the tour's very size, but with a file of the user's in it.
    assert_eq!(s.run(&["mkfs", "mine.pool", "--size", "64m"]).status, 0);
    std::fs::write(s.dir.path().join("host-file"), "mine\n").unwrap();
    assert_eq!(s.run(&["put", "mine.pool", "host-file", "/mine"]).status, 0);
    let mine_before = std::fs::read(s.dir.path().join("mine.pool")).unwrap();
    for force in [false, true] {
        for (target, what) in [("keep", "not a ferrodax pool"), ("mine.pool", "files the tour did not make")]
        {
            let mut args = vec!["tour", "--pool", target];
            if force {
                args.push("--force");
            }
            let run = s.run(&args);
            assert_eq!(run.status, 1, "{args:?}:\n{}{}", run.stdout, run.stderr);
            assert!(run.stdout.is_empty(), "{args:?} started the tour:\n{}", run.stdout);
            assert!(run.stderr.contains("the tour will not overwrite it"), "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains(what), "{args:?}: {}", run.stderr);
        }
    }
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "precious\n");
    assert!(std::fs::read(s.dir.path().join("mine.pool")).unwrap() == mine_before, "mine.pool changed");
}

#[test]
fn the_default_tour_pool_of_an_earlier_tour_is_replaced_only_with_force() {
    let s = Sandbox::new();
    let first = s.run(&["tour"]);
    assert_eq!(first.status, 0, "{}{}", first.stdout, first.stderr);
    assert!(s.dir.path().join("ferrodax-tour.pool").is_file());
    let again = s.run(&["tour"]);
    assert_eq!(again.status, 1, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.is_empty(), "{}", again.stdout);
    assert!(
        again.stderr.contains("ferrodax-tour.pool: File exists: it is the pool of an earlier tour"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("`ferrodax tour --force`"), "{}", again.stderr);
    // Refused without touching it: the earlier tour's files and its recorded poison are still there.
    assert_eq!(s.run(&["ls", "ferrodax-tour.pool"]).stdout.lines().count(), 7);
    assert_eq!(s.run(&["badblocks", "ferrodax-tour.pool"]).stdout.lines().count(), 1);
    let forced = s.run(&["tour", "--force"]);
    assert_eq!(forced.status, 0, "{}{}", forced.stdout, forced.stderr);
    assert!(forced.stdout.contains("checks passed"), "{}", forced.stdout);
}

// ----- DAX views through `io`: mmap, mread, mwrite, msync, munmap -----

/// One line of xfs_io's mapping table with the two addresses replaced by "ADDR", and the
/// mapping's length as the addresses tell it.
fn masked_mapping_line(line: &str) -> (String, u64) {
    let words: Vec<&str> = line.split(' ').collect();
    let address = |word: &str| u64::from_str_radix(word.strip_prefix("0x").expect("an address"), 16).unwrap();
    // "[000] 0xSTART - 0xEND ...": the end address is two words after the start.
    let start_at = words.iter().position(|w| w.starts_with("0x")).expect("a start address");
    let end_at = start_at + 2;
    let (start, end) = (address(words[start_at]), address(words[end_at]));
    let mut masked = words.clone();
    masked[start_at] = "ADDR";
    masked[end_at] = "ADDR";
    (masked.join(" "), end - start)
}

#[test]
fn mmap_lists_mappings_and_mread_dumps_exactly_like_xfs_io() {
    let s = Sandbox::new();
    s.io_ok("/m", &["pwrite -q -S 0x61 0 16k", "pwrite -q -S 0x62 4096 3"]);
    // Lines recorded from xfs_io 6.1 on the same commands (addresses aside; xfs_io's default
    // protection is rwx, views are never executable).
    let run = s.io_ok(
        "/m",
        &[
            "mmap 4096 8k",
            "mmap",
            "mread -v 4096 20",
            "mread -f 4100 4",
            "mread -v 4096 2",
            "mread -r -v 4096 5",
            "mread -r -f 4096 5",
            "mread 4096 8192",
            "msync",
            "msync 8192 4096",
        ],
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (listing, length) = masked_mapping_line(lines[0]);
    assert_eq!(listing, "[000] ADDR - ADDR rw-              /m (4096 : 8192)");
    assert_eq!(length, 8192);
    assert_eq!(
        lines[1..],
        [
            "00000000:  62 62 62 61 61 61 61 61 61 61 61 61 61 61 61 61  bbbaaaaaaaaaaaaa",
            "00000010:  61 61 61 61  aaaa",
            "00001004:  61 61 61 61  aaaa",
            "00000000:  62 62  bb",
            "00000000:  61 61 62 62 62  aabbb",
            "00001000:  61 61 62 62 62  aabbb",
        ],
        "mread without -v or -f prints nothing, like xfs_io; msync prints nothing"
    );
    assert_eq!(run.stderr, "");

    // A dump longer than a page: xfs_io dumps len % 4096 bytes first, then whole pages.
    // Recorded from xfs_io 6.1: 257 lines, the first three and the last as below.
    let long = s.io_ok("/m", &["mmap 0 16k", "mread -v 4094 4099"]);
    let lines: Vec<&str> = long.stdout.lines().collect();
    assert_eq!(lines.len(), 257);
    assert_eq!(
        [lines[0], lines[1], lines[2], lines[256]],
        [
            "00000ffe:  61 61 62  aab",
            "00001001:  62 62 61 61 61 61 61 61 61 61 61 61 61 61 61 61  bbaaaaaaaaaaaaaa",
            "00001011:  61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61  aaaaaaaaaaaaaaaa",
            "00001ff1:  61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61  aaaaaaaaaaaaaaaa",
        ]
    );
}

#[test]
fn mapping_range_errors_print_xfs_io_messages_and_fail_without_a_signal() {
    let s = Sandbox::new();
    s.io_ok("/r", &["pwrite -q -S 0x61 0 16k"]);
    let run = s.io(
        "/r",
        &[
            "mread 0 4",
            "mmap 4096 8k",
            "mread 0 4",
            "mread 16384 4",
            "mread 8192 8193",
            "mwrite 8192 8193",
            "mread 20000 4",
            "msync 4097 10",
            "mread -1 4",
            "mwrite -S xyz 4096 1",
        ],
    );
    assert_eq!(run.status, 1, "every range error is a failed command");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "offset (0) is before start of mapping (4096)",
            "offset (12288) is beyond end of mapping (4096)",
            "range (8192:4096) is beyond mapping (4096:8192)",
            "range (8192:4096) is beyond mapping (4096:8192)",
            "offset (15904) is beyond end of mapping (4096)",
            lines[5],
        ]
    );
    assert!(
        lines[5].starts_with("offset address (0x") && lines[5].ends_with("001) is not page aligned"),
        "{}",
        lines[5]
    );
    assert_eq!(lines[6..], ["non-numeric offset argument -- -1", "non-numeric seed -- xyz"]);
    assert_eq!(run.stderr, "no mapped regions, try 'help mmap'\n");
    // Nothing reached the file.
    assert!(s.cat("/r") == vec![0x61u8; 16384]);
}

#[test]
fn mwrite_into_a_reflinked_clone_copies_only_the_stored_pages_and_leaves_the_source_unchanged() {
    let s = Sandbox::new();
    s.io_ok("/src", &["pwrite -q -S 0x61 0 16k"]);
    let run = s.io_ok(
        "/clone",
        &[
            "reflink -q /src",
            "mmap 0 16k",
            "mwrite -S 0x62 4090 10",
            "mread -v 4088 16",
            "msync",
            "munmap",
            "pread -v 4088 16",
        ],
    );
    let dump = "00000ff8:  61 61 62 62 62 62 62 62 62 62 62 62 61 61 61 61  aabbbbbbbbbbaaaa";
    let expected = format!(
        "{dump}\n{dump}\nread 16/16 bytes at offset 4088\nXXX Bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n"
    );
    assert_eq!(filter_xfs_io(&run.stdout), expected, "mread through the view and pread agree");
    assert_eq!(run.stderr, "");

    // The source, read through its own path: unchanged.
    let source = s.io_ok("/src", &["pread -v 4088 16"]);
    assert_eq!(
        source.stdout.lines().next(),
        Some("00000ff8:  61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61  aaaaaaaaaaaaaaaa")
    );
    assert!(s.cat("/src") == vec![0x61u8; 16384]);
    let mut clone = vec![0x61u8; 16384];
    clone[4090..4100].fill(0x62);
    assert!(s.cat("/clone") == clone);

    // The two stored pages (blocks 0 and 1) were copied; blocks 2 and 3 are still shared.
    let extents = s.extents("/clone");
    assert_eq!(
        extents.iter().map(|e| (e.0.as_str(), e.2.as_str())).collect::<Vec<_>>(),
        [("[0..15]:", "0x0"), ("[16..31]:", "0x2001")],
        "{extents:?}"
    );
    assert_eq!(s.extents("/src").last().unwrap().2, "0x2001");
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn mwrite_fills_a_hole_and_refuses_stores_past_eof_or_into_a_read_only_mapping() {
    let s = Sandbox::new();
    let run = s.io(
        "/h",
        &[
            "truncate 12k",
            "mmap 0 12k",
            "mwrite 8192 2",
            "mread -v 8190 4",
            "truncate 4096",
            "mread 8190 4",
            "mwrite -r 4000 200",
            "mmap -r 0 4k",
            "mwrite 0 1",
            "mread -v 0 2",
        ],
    );
    assert_eq!(run.status, 1);
    assert_eq!(run.stdout, "00001ffe:  00 00 58 58  ..XX\n00000000:  00 00  ..\n", "the default seed is 'X'");
    assert_eq!(
        run.stderr,
        "mread: offset 8190 is past the end of the file: an access there raises SIGBUS\n\
         mwrite: offset 4096 is past the end of the file: an access there raises SIGBUS\n\
         mwrite: the mapping is read-only: a store would raise SIGSEGV\n"
    );
    // The store into the hole allocated a block, which the truncate then freed.
    let stat = s.io_ok("/h", &["stat"]);
    assert!(stat.stdout.contains("stat.size = 4096\nstat.blocks = 0\n"), "{}", stat.stdout);
    assert!(s.cat("/h") == vec![0u8; 4096]);

    let grown = s.io_ok("/g", &["truncate 8k", "mmap 0 8k", "mwrite -S 0x41 4096 3", "munmap", "stat"]);
    assert!(grown.stdout.contains("stat.blocks = 8\n"), "{}", grown.stdout);
    let mut expected = vec![0u8; 8192];
    expected[4096..4099].fill(0x41);
    assert!(s.cat("/g") == expected);
}

#[test]
fn mmap_selects_and_munmap_removes_mappings_and_refuses_what_the_kernel_refuses() {
    let s = Sandbox::new();
    s.io_ok("/t", &["pwrite -q 0 8k"]);
    let run = s.io(
        "/t",
        &["mmap", "munmap", "mmap -r 0 4k", "mmap -S 4k 4", "mmap 0", "mmap 5", "munmap", "munmap", "munmap"],
    );
    assert_eq!(run.status, 1);
    let masked: Vec<(String, u64)> =
        run.stdout.lines().filter(|l| l.contains("0x")).map(masked_mapping_line).collect();
    let table = |rows: &[&str]| rows.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    assert_eq!(
        masked.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        table(&[
            "[000] ADDR - ADDR r--              /t (0 : 4096)",
            " 001  ADDR - ADDR rw- S              /t (4096 : 4)",
            "[000] ADDR - ADDR rw- S              /t (4096 : 4)",
        ])
    );
    assert_eq!(masked.iter().map(|m| m.1).collect::<Vec<_>>(), [4096, 4, 4]);
    assert!(run.stdout.contains("value 5 is out of range (0-2)\n"), "{}", run.stdout);
    assert_eq!(run.stderr, "no mapped regions, try 'help mmap'\n".repeat(3));

    let refused = s.io_with(&["-r"], "/t", &["mmap -w 0 4k", "mmap -x 0 4k", "mmap 100 4096", "mmap 0 0"]);
    assert_eq!(refused.status, 1);
    assert_eq!(
        refused.stderr,
        "mmap: Permission denied\nmmap: Operation not supported\nmmap: Invalid argument\nmmap: Invalid argument\n"
    );
    let help = s.io_ok("/t", &["help mmap", "help mw"]);
    assert_eq!(
        help.stdout,
        "mmap [N] | [-rwxS] [-s size] [off len] -- mmap a range in the current file, show mappings\n\
         mwrite [-r] [-S seed] [off len] -- writes data into a region in the current memory mapping\n"
    );
}

#[test]
fn tour_stores_through_a_dax_view_of_the_clone_and_the_source_keeps_its_checksum() {
    let s = Sandbox::new();
    let run = s.run(&["tour", "--pool", "tour.pool"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let dax: Vec<&str> =
        run.stdout.lines().skip_while(|l| !l.starts_with("6. mapped /clone")).take(2).collect();
    assert_eq!(dax.len(), 2, "{}", run.stdout);
    assert!(dax[0].contains("plain store") && dax[0].contains("faulted"), "{}", dax[0]);
    let original_crc = run.stdout.lines().find(|l| l.starts_with("1. wrote /original")).unwrap();
    let crc = original_crc.split("crc32c ").nth(1).unwrap().split(',').next().unwrap();
    assert!(dax[1].contains(&format!("/original still {crc}")), "{}\n{}", dax[1], original_crc);
    assert!(!run.stdout.contains("FAILED"), "{}", run.stdout);
}

#[test]
fn poison_reports_every_owner_and_pread_of_the_bad_block_is_eio_while_check_stays_clean() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 -b 16k 0 16k"]);
    assert_eq!(s.run(&["cp", "--reflink", "test.pool", "/a", "/b"]).status, 0);
    s.io_ok("/c", &["pwrite -S 0x63 0 4k"]);
    let shared = s.first_sector("/a") * 512 + 4096;
    let run = s.run(&["poison", "test.pool", &shared.to_string(), "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("poison --json is JSON");
    let mut owners: Vec<(String, u64, u64, bool)> = report["files"]
        .as_array()
        .expect("a list of file owners")
        .iter()
        .map(|o| {
            (
                o["path"].as_str().unwrap().to_string(),
                o["file_offset"].as_u64().unwrap(),
                o["length"].as_u64().unwrap(),
                o["shared"].as_bool().unwrap(),
            )
        })
        .collect();
    owners.sort();
    assert_eq!(owners, [("/a".to_string(), 4096, 4096, true), ("/b".to_string(), 4096, 4096, true)]);
    assert_eq!(report["recorded"]["newly_bad"].as_u64(), Some(1));
    // Text form, and a second failure of the same block is reported as already known.
    let again = s.run(&["poison", "test.pool", &shared.to_string()]);
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert!(again.stdout.contains("0 block(s) newly bad, 1 already known"), "{}", again.stdout);
    assert!(
        again.stdout.contains("file /a (ino ") && again.stdout.contains("file /b (ino "),
        "{}",
        again.stdout
    );
    // Both owners read EIO at the bad block and their other blocks still read back.
    for path in ["/a", "/b"] {
        let bad = s.io(path, &["pread -v 4096 4096"]);
        assert_ne!(bad.status, 0, "pread of the poisoned block of {path} succeeded");
        assert!(
            format!("{}{}", bad.stdout, bad.stderr).contains("Input/output error"),
            "{path}: {} {}",
            bad.stdout,
            bad.stderr
        );
        s.io_ok(path, &["pread 0 4096", "pread 8192 8192"]);
    }
    assert_eq!(s.cat("/c"), vec![0x63u8; 4096], "an unrelated file is untouched");
    // A whole-block rewrite recovers /a only; /b's block stays poisoned.
    s.io_ok("/a", &["pwrite -S 0x71 4096 4096"]);
    assert_ne!(s.io("/b", &["pread 4096 4096"]).status, 0);
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "check after poison: {}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("1 quarantined"), "{}", check.stdout);
    let listed = s.run(&["badblocks", "test.pool"]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert_eq!(listed.stdout, format!("{} 8\n", shared / 512));
}

#[test]
fn badblocks_import_records_a_sysfs_list_and_lists_it_in_the_same_format() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 -b 16k 0 16k"]);
    let first = s.first_sector("/a");
    // Block 0 of /a whole, one sector of its block 1 (the whole block goes bad), and a comment.
    let list = s.dir.path().join("badblocks");
    std::fs::write(&list, format!("# from /sys/block/pmem0/badblocks\n{first} 8\n{} 1\n", first + 9))
        .unwrap();
    let run = s.run(&["badblocks", "test.pool", "--import", list.to_str().unwrap()]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.stdout, format!("{first} 16\n"), "adjacent bad blocks list as one range");
    assert!(run.stderr.contains("file /a (ino "), "the import reports the owner: {}", run.stderr);
    // Recorded durably: a fresh process lists the same, reads are EIO, check is clean.
    assert_eq!(s.run(&["badblocks", "test.pool"]).stdout, format!("{first} 16\n"));
    let bad = s.io("/a", &["pread 0 4096"]);
    assert_ne!(bad.status, 0);
    assert!(format!("{}{}", bad.stdout, bad.stderr).contains("Input/output error"), "{}", bad.stdout);
    s.io_ok("/a", &["pread 8192 8192"]);
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("2 quarantined"), "{}", check.stdout);
    // A malformed list is refused with its file and line, and records nothing.
    std::fs::write(&list, "100 8\nnot a range\n").unwrap();
    let refused = s.run(&["badblocks", "test.pool", "--import", list.to_str().unwrap()]);
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("badblocks:2"), "{}", refused.stderr);
    assert_eq!(s.run(&["badblocks", "test.pool"]).stdout, format!("{first} 16\n"));
}

#[test]
fn hardware_poison_and_device_lists_are_refused_off_persistent_memory() {
    let s = Sandbox::new();
    s.io_ok("/a", &["pwrite -S 0x61 0 8k"]);
    // This host's pool is not on pmem: no device to poison, said so, and nothing recorded.
    let run = s.run(&["poison", "--hardware", "test.pool", "4096"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not on persistent memory"), "{}", run.stderr);
    assert!(run.stderr.contains("without --hardware"), "points at the software injection: {}", run.stderr);
    assert_eq!(s.run(&["badblocks", "test.pool"]).stdout, "");
    // A device's list (--device) needs the pool to be on that device.
    let list = s.dir.path().join("device-badblocks");
    std::fs::write(&list, "8 8\n").unwrap();
    let run = s.run(&["badblocks", "test.pool", "--import", list.to_str().unwrap(), "--device"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not on a device with a bad-block list"), "{}", run.stderr);
    assert_eq!(s.run(&["badblocks", "test.pool"]).stdout, "");
}
