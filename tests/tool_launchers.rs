//! Guards `ferrodax bench` and `ferrodax difftest`, which are thin launchers since the tools became
//! programs of their own (tools/bench, tools/difftest): each runs the tool found next to the
//! running `ferrodax` with every argument unchanged and passes its exit status through, and when
//! the tool was not built it says so and names the command that builds it, instead of failing
//! obscurely. The tools here are stand-in scripts beside a copy of `ferrodax` in a temporary
//! directory, so these tests never depend on what else cargo happened to build.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises the tests of this file: each writes an executable and runs it, and a fork by a
/// concurrent test could briefly hold the executable open for writing (ETXTBSY).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A temporary directory holding a copy of the `ferrodax` binary.
fn ferrodax_alone() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ferrodax");
    std::fs::copy(env!("CARGO_BIN_EXE_ferrodax"), &copy).unwrap();
    (dir, copy)
}

/// Writes a stand-in tool: prints each argument on a line of its own and exits with `status`.
fn stand_in_tool(dir: &Path, name: &str, status: i32) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho \"{name} ran\"\nprintf '%s\\n' \"$@\"\nexit {status}\n"))
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(program: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_and_difftest_run_the_tool_next_to_ferrodax_with_every_argument_and_its_exit_status() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, ferrodax) = ferrodax_alone();
    stand_in_tool(dir.path(), "ferrodax-bench", 42);
    stand_in_tool(dir.path(), "ferrodax-difftest", 77);

    let (status, stdout, stderr) = run(&ferrodax, &["bench", "--json", "--quick", "--help", "two words"]);
    assert_eq!(status, 42, "{stdout}{stderr}");
    assert_eq!(stdout, "ferrodax-bench ran\n--json\n--quick\n--help\ntwo words\n", "{stderr}");

    let (status, stdout, stderr) = run(&ferrodax, &["difftest", "--seed", "5", "-v"]);
    assert_eq!(status, 77, "{stdout}{stderr}");
    assert_eq!(stdout, "ferrodax-difftest ran\n--seed\n5\n-v\n", "{stderr}");
}

#[test]
fn a_missing_tool_is_named_with_the_command_that_builds_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, ferrodax) = ferrodax_alone();
    for (command, tool) in [("bench", "ferrodax-bench"), ("difftest", "ferrodax-difftest")] {
        let (status, stdout, stderr) = run(&ferrodax, &[command, "--json"]);
        assert_eq!(status, 127, "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let expected_path = dir.path().join(tool);
        assert!(
            stderr.contains(&format!("{}: No such file or directory", expected_path.display())),
            "{stderr}"
        );
        assert!(stderr.contains("cargo build --release"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
