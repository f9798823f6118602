//! Guards conformance with the kernel: `ferrodax-difftest` (`ferrodax difftest`) applies the same random operation
//! sequences (pwrite, truncate, reflink, dedupe, funshare, fallocate in every mode, copy_file_range,
//! SEEK_DATA/SEEK_HOLE, mmap stores and loads, open/create, rename, unlink, link, fsync, remount) and
//! the fstests generic/157 and generic/158 case lists to files on a real XFS (reflink=1, rmapbt=1,
//! loop-mounted from /dev/shm) and to a ferrodax pool, through the library and (`--through fuse`)
//! through a FUSE mount of the pool, and finds no divergence other than those
//! docs/CONFORMANCE.md documents. Also guards the tester itself: an injected fault is found, shrunk
//! and printed as an xfs_io and a ferrodax io script, and a machine without the oracle (or,
//! through FUSE, without FUSE) is reported as SKIPPED (exit 77), never as a pass.
//!
//! The kernel-oracle tests need root, xfsprogs (mkfs.xfs) and a loop device. Where they are
//! present the tests compare with the live kernel and each says so in one line on standard error
//! ("*** <test>: compared with the live kernel XFS"); where one is missing (a fresh machine with
//! nothing but Rust) each of them SKIPS LOUDLY: one line on standard error, past the test
//! harness's capture, names what is missing and what to install, and the test passes without
//! having compared anything. With FERRODAX_DIFFTEST_REQUIRE=1 (set by .ci/run after it installs
//! xfsprogs) a skip FAILS the test instead, so CI cannot pass without the oracle. The self-test
//! of the skip path itself needs nothing and always runs.
//! The FUSE runs also need /dev/fuse (and root or fusermount3); where FUSE cannot mount, they skip
//! loudly the same way, and FERRODAX_REQUIRE_FUSE=1 (set by .ci/run) makes that skip fail.
//! Budget: 18,000 random steps through the library and 9,200 through FUSE, plus the fixed cases,
//! about a minute in release mode.

use std::io::Write;
use std::process::Command;

/// What the tester exits with when the oracle is unavailable.
const EXIT_SKIPPED: i32 = 77;

/// One run of `ferrodax-difftest` (what `ferrodax difftest` runs).
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Set by [`a_machine_without_the_oracle_passes_the_kernel_tests_with_a_loud_skip_unless_required`]
/// when it reruns this test program: every run then behaves as on a machine without the oracle.
const PRETEND_NO_ORACLE: &str = "FERRODAX_DIFFTEST_TEST_PRETEND_NO_ORACLE";

/// Set by [`a_machine_without_fuse_passes_the_fuse_test_with_a_loud_skip_unless_required`] when
/// it reruns this test program: every run then behaves as on a machine where FUSE cannot mount.
const PRETEND_NO_FUSE: &str = "FERRODAX_DIFFTEST_TEST_PRETEND_NO_FUSE";

/// The environment variable that turns a FUSE skip into a failure (CI sets it).
const REQUIRE_FUSE: &str = "FERRODAX_REQUIRE_FUSE";

fn difftest(args: &[&str]) -> Run {
    let pretend: &[&str] =
        if std::env::var(PRETEND_NO_ORACLE).as_deref() == Ok("1") { &["--pretend-no-oracle"] } else { &[] };
    let pretend_fuse: &[&str] =
        if std::env::var(PRETEND_NO_FUSE).as_deref() == Ok("1") { &["--pretend-no-fuse"] } else { &[] };
    let out = Command::new(env!("CARGO_BIN_EXE_ferrodax-difftest"))
        .args(pretend)
        .args(pretend_fuse)
        .args(args)
        .output()
        .expect("run ferrodax-difftest");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The environment variable that turns a skip into a failure (CI sets it).
const REQUIRE_ORACLE: &str = "FERRODAX_DIFFTEST_REQUIRE";

/// True if the run happened. On a skip (the tester exited 77: no root, no mkfs.xfs, no loop device),
/// fails the test when FERRODAX_DIFFTEST_REQUIRE=1; otherwise says SKIPPED loudly, with the
/// tester's reason (what is missing and what to install), straight to the stderr descriptor past
/// the test harness's capture, and returns false so that the caller returns.
fn ran(test: &str, run: &Run) -> bool {
    if run.status != EXIT_SKIPPED {
        let _ = writeln!(std::io::stderr(), "*** {test}: compared with the live kernel XFS");
        return true;
    }
    let reason =
        run.stdout.lines().find(|l| l.starts_with("SKIPPED:")).unwrap_or("SKIPPED: (no reason printed)");
    if std::env::var(REQUIRE_ORACLE).as_deref() == Ok("1") {
        panic!(
            "{test}: {reason}\n{REQUIRE_ORACLE}=1 requires the kernel XFS oracle (root, xfsprogs, a loop \
             device); it could not run, so this test fails."
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: {reason}\n*** SKIPPED: nothing was compared with the kernel. To run it: as root, \
         apt-get install xfsprogs (and give the machine a loop device); {REQUIRE_ORACLE}=1 makes a skip fail.\n"
    );
    false
}

/// True if a `--through fuse` run happened. Where FUSE cannot mount (the tester exited 77 naming
/// "a FUSE mount"), fails the test when FERRODAX_REQUIRE_FUSE=1, otherwise says SKIPPED loudly
/// past the harness's capture and returns false; a missing XFS oracle is [`ran`]'s.
fn ran_through_fuse(test: &str, run: &Run) -> bool {
    if run.status != EXIT_SKIPPED || !run.stdout.contains("a FUSE mount is not available") {
        return ran(test, run);
    }
    let reason =
        run.stdout.lines().find(|l| l.starts_with("SKIPPED:")).unwrap_or("SKIPPED: (no reason printed)");
    if std::env::var(REQUIRE_FUSE).as_deref() == Ok("1") {
        panic!("{test}: {reason}\n{REQUIRE_FUSE}=1 requires FUSE (/dev/fuse, root or fusermount3); it could not mount, so this test fails.");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: {reason}\n*** SKIPPED: nothing was compared through FUSE. To run it: give the machine \
         /dev/fuse (modprobe fuse) and run as root or apt-get install fuse3; {REQUIRE_FUSE}=1 makes a skip fail.\n"
    );
    false
}

/// The count of successful steps of one kind in the summary ("  unlink   18  (ENOENT 8, ok 10)"),
/// 0 when none succeeded.
fn ok_steps(stdout: &str, kind: &str) -> u64 {
    let summary = stdout.split("== summary").nth(1).unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .and_then(|l| l.split("ok ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The random steps the summary says were compared ("random: 12 sequences (...), 4800 steps compared").
fn steps_compared(stdout: &str) -> u64 {
    let line =
        stdout.lines().find(|l| l.trim_start().starts_with("random:")).expect("a random: summary line");
    let before = line.split(" steps compared").next().expect("steps compared");
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step count in {line:?}"))
}

fn assert_clean_pass(run: &Run, expected_random_steps: u64) {
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status, 0, "difftest diverged or failed:\n{all}");
    assert!(run.stdout.contains("RESULT: PASS"), "{all}");
    assert!(!run.stdout.contains("DIVERGENCE"), "{all}");
    assert_eq!(steps_compared(&run.stdout), expected_random_steps, "not every step ran:\n{all}");
}

#[test]
fn random_sequences_and_fstests_cases_agree_with_kernel_xfs() {
    let run = difftest(&["--seed", "20250101", "--sequences", "10", "--steps", "1000", "--files", "3"]);
    if !ran("random_sequences_and_fstests_cases_agree_with_kernel_xfs", &run) {
        return;
    }
    assert_clean_pass(&run, 10 * 1000);
    // The fstests lists ran on both sides: 18 cases compared (the 6 device and fifo cases are
    // kernel-only), plus the fixed edge sequences.
    let fstests_same =
        run.stdout.lines().filter(|l| l.contains("generic/15") && l.ends_with(": same")).count();
    assert_eq!(fstests_same, 18, "{}", run.stdout);
    assert!(run.stdout.contains("0 diverged"), "{}", run.stdout);
    // The documented differences were met and recognised, not silently absent.
    assert!(run.stdout.contains("documented difference D1"), "{}", run.stdout);
    assert!(run.stdout.contains("documented difference D2"), "{}", run.stdout);
    // Sequences this long fill ferrodax's log or leave it costlier to replay than a checkpoint:
    // checkpoints happened (log full, or at unmount) and were remounted from.
    let checkpoints: u64 = run
        .stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("coverage: ferrodax wrote "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no coverage line:\n{}", run.stdout));
    assert!(checkpoints > 0, "no log checkpoint was exercised:\n{}", run.stdout);
}

#[test]
fn random_sequences_over_one_file_and_five_larger_files_agree_with_kernel_xfs() {
    // One file (every reflink and dedupe within it), and five larger files (many extents).
    for (seed, files, max_size, sequences, steps) in
        [("777", "1", "192k", 8, 500), ("31337", "5", "512k", 4, 1000)]
    {
        let run = difftest(&[
            "--random-only",
            "--seed",
            seed,
            "--sequences",
            &sequences.to_string(),
            "--steps",
            &steps.to_string(),
            "--files",
            files,
            "--max-file-size",
            max_size,
        ]);
        if !ran("random_sequences_over_one_file_and_five_larger_files_agree_with_kernel_xfs", &run) {
            return;
        }
        assert_clean_pass(&run, sequences * steps);
    }
}

#[test]
fn random_sequences_mmap_and_namespace_operations_through_a_fuse_mount_agree_with_kernel_xfs() {
    let test = "random_sequences_mmap_and_namespace_operations_through_a_fuse_mount_agree_with_kernel_xfs";
    // With the fixed edge sequences (reflink and dedupe there run through the library, as the
    // kernel refuses them on FUSE), then one file, and five larger files.
    let runs: [(&[&str], u64); 3] = [
        (&["--seed", "20250101", "--sequences", "6", "--steps", "700", "--files", "3"], 6 * 700),
        (&["--random-only", "--seed", "777", "--sequences", "4", "--steps", "500", "--files", "1"], 4 * 500),
        (
            &[
                "--random-only",
                "--seed",
                "31337",
                "--sequences",
                "3",
                "--steps",
                "1000",
                "--files",
                "5",
                "--max-file-size",
                "512k",
            ],
            3 * 1000,
        ),
    ];
    for (args, steps) in runs {
        let run = difftest(&[&["--through", "fuse"], args].concat());
        if !ran_through_fuse(test, &run) {
            return;
        }
        assert_clean_pass(&run, steps);
        assert!(run.stdout.contains("mounted through FUSE"), "{}", run.stdout);
        // The whole mix ran through the mount: mmap, namespace operations, fallocate, copies.
        for kind in [
            "pwrite",
            "mmap-store",
            "mmap-load",
            "rename",
            "unlink",
            "create",
            "link",
            "fpunch",
            "copy_range",
        ] {
            assert!(ok_steps(&run.stdout, kind) > 0, "no successful {kind} step:\n{}", run.stdout);
        }
        // And what the kernel refuses on FUSE went to the library, as CONFORMANCE.md says.
        assert!(
            run.stdout.contains("calls the kernel refuses on FUSE ran through the library"),
            "{}",
            run.stdout
        );
        if !args.contains(&"--random-only") {
            // The edge sequences ran, the fstests lists (all remap calls) did not.
            assert!(run.stdout.contains("not run through FUSE"), "{}", run.stdout);
            assert!(run.stdout.contains("documented difference D2"), "{}", run.stdout);
            assert!(run.stdout.contains("0 diverged"), "{}", run.stdout);
        }
    }
}

#[test]
fn injected_fault_is_found_shrunk_and_printed_as_two_replay_scripts() {
    // The fault: ferrodax writes a wrong last byte in an unaligned pwrite into a shared block, so
    // the smallest sequence that shows it is: write, share (reflink or dedupe), write.
    // Without --keep-going the run stops at the first sequence that meets the fault.
    let run =
        difftest(&["--random-only", "--inject-fault", "--seed", "7", "--sequences", "20", "--steps", "300"]);
    if !ran("injected_fault_is_found_shrunk_and_printed_as_two_replay_scripts", &run) {
        return;
    }
    let out = &run.stdout;
    assert_eq!(run.status, 1, "the injected fault was not reported:\n{out}\n{}", run.stderr);
    assert_eq!(out.matches("DIVERGENCE in sequence seed ").count(), 1, "{out}");
    assert!(out.contains("contents differ"), "{out}");
    let minimal: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("minimal sequence: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minimal sequence line:\n{out}"));
    assert!((3..=6).contains(&minimal), "shrunk to {minimal} steps:\n{out}");
    let xfs_script = out
        .split("----- xfs_io script -----\n")
        .nth(1)
        .and_then(|rest| rest.split("----- ferrodax io script -----\n").next())
        .unwrap_or_else(|| panic!("no xfs_io script:\n{out}"));
    let ferrodax_script = out
        .split("----- ferrodax io script -----\n")
        .nth(1)
        .and_then(|rest| rest.split("----- end of scripts -----").next())
        .unwrap_or_else(|| panic!("no ferrodax io script:\n{out}"));
    // Each script replays every step of the minimal sequence and marks the diverging one.
    assert_eq!(xfs_script.lines().filter(|l| l.starts_with("xfs_io -c ")).count(), minimal, "{xfs_script}");
    assert_eq!(
        ferrodax_script.lines().filter(|l| l.starts_with("\"$FERRODAX\" io -c ")).count(),
        minimal,
        "{ferrodax_script}"
    );
    assert!(xfs_script.contains("mkfs.xfs -q -f -m reflink=1,rmapbt=1"), "{xfs_script}");
    assert!(xfs_script.contains(&format!("# step {minimal}: DIVERGES here")), "{xfs_script}");
    assert!(ferrodax_script.contains(&format!("# step {minimal}: DIVERGES here")), "{ferrodax_script}");
}

#[test]
fn a_machine_without_the_oracle_is_reported_as_skipped_never_as_a_pass() {
    let run = difftest(&["--pretend-no-oracle", "--seed", "1", "--sequences", "1", "--steps", "10"]);
    assert_eq!(run.status, EXIT_SKIPPED, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.lines().any(|l| l.starts_with("SKIPPED: ")), "{}", run.stdout);
    assert!(run.stderr.lines().any(|l| l.starts_with("SKIPPED: ")), "{}", run.stderr);
    assert!(!run.stdout.contains("RESULT: PASS"), "{}", run.stdout);
}

#[test]
fn a_machine_without_the_oracle_passes_the_kernel_tests_with_a_loud_skip_unless_required() {
    // Reruns one kernel-oracle test of this very program as on a machine without xfsprogs.
    let oracle_test = "random_sequences_over_one_file_and_five_larger_files_agree_with_kernel_xfs";
    let rerun = |require: Option<&str>| {
        let mut command = Command::new(std::env::current_exe().expect("the test program"));
        command.args([oracle_test, "--exact", "--test-threads", "1"]).env(PRETEND_NO_ORACLE, "1");
        match require {
            Some(value) => command.env(REQUIRE_ORACLE, value),
            None => command.env_remove(REQUIRE_ORACLE),
        };
        let out = command.output().expect("rerun the test program");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (passed, stdout, stderr) = rerun(None);
    assert!(passed, "a fresh machine fails the kernel-oracle test:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the oracle test did not run at all:\n{stdout}");
    let loud = stderr.lines().find(|l| l.contains(oracle_test) && l.contains("SKIPPED: "));
    assert!(loud.is_some(), "no SKIPPED line on stderr:\n{stderr}");
    assert!(stderr.contains("apt-get install xfsprogs"), "the skip does not say what to install:\n{stderr}");

    let (passed, stdout, stderr) = rerun(Some("1"));
    assert!(!passed, "with {REQUIRE_ORACLE}=1 a skip passed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 failed"), "{stdout}\n{stderr}");
}

#[test]
fn a_machine_without_fuse_is_reported_as_skipped_never_as_a_pass() {
    let run = difftest(&[
        "--through",
        "fuse",
        "--pretend-no-fuse",
        "--seed",
        "1",
        "--sequences",
        "1",
        "--steps",
        "10",
    ]);
    assert_eq!(run.status, EXIT_SKIPPED, "{}\n{}", run.stdout, run.stderr);
    let skip =
        run.stdout.lines().find(|l| l.starts_with("SKIPPED: ")).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(skip.contains("a FUSE mount is not available"), "{skip}");
    assert!(run.stderr.lines().any(|l| l.starts_with("SKIPPED: ")), "{}", run.stderr);
    assert!(!run.stdout.contains("RESULT: PASS"), "{}", run.stdout);
}

#[test]
fn a_machine_without_fuse_passes_the_fuse_test_with_a_loud_skip_unless_required() {
    // Reruns the FUSE test of this very program as on a machine where FUSE cannot mount.
    let fuse_test =
        "random_sequences_mmap_and_namespace_operations_through_a_fuse_mount_agree_with_kernel_xfs";
    let rerun = |require: Option<&str>| {
        let mut command = Command::new(std::env::current_exe().expect("the test program"));
        command.args([fuse_test, "--exact", "--test-threads", "1"]).env(PRETEND_NO_FUSE, "1");
        match require {
            Some(value) => command.env(REQUIRE_FUSE, value),
            None => command.env_remove(REQUIRE_FUSE),
        };
        let out = command.output().expect("rerun the test program");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (passed, stdout, stderr) = rerun(None);
    assert!(passed, "a machine without FUSE fails the FUSE test:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the FUSE test did not run at all:\n{stdout}");
    let loud = stderr.lines().find(|l| l.contains(fuse_test) && l.contains("SKIPPED: "));
    assert!(loud.is_some(), "no SKIPPED line on stderr:\n{stderr}");
    assert!(stderr.contains("apt-get install fuse3"), "the skip does not say what to install:\n{stderr}");

    let (passed, stdout, stderr) = rerun(Some("1"));
    assert!(!passed, "with {REQUIRE_FUSE}=1 a skip passed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 failed"), "{stdout}\n{stderr}");
}

#[test]
fn a_closed_output_pipe_ends_the_tester_without_a_panic_message() {
    // Standard output is a pipe whose reader is already gone, as after `| head -1` read its line.
    let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrodax-difftest"))
        .args(["--pretend-no-oracle", "--seed", "1", "--sequences", "1", "--steps", "10"])
        .stdout(std::process::Stdio::from(writer))
        .output()
        .expect("run ferrodax-difftest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert!(!out.status.success(), "a run whose output was lost cannot pass");
}
