//! A scratch directory with a pool, and the `ferrodax` program run in it, for the tests of the
//! first-contact commands (df, stat, dedupe-scan, poison --html, report). Each test binary uses
//! only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of the program did.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// A temporary directory (on /dev/shm when there is one: pool commits msync) holding `test.pool`.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub pool: PathBuf,
}

impl Sandbox {
    /// A sandbox with a new pool of `size` (k/m/g suffixes).
    pub fn with_pool(size: &str) -> Sandbox {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let pool = dir.path().join("test.pool");
        let sandbox = Sandbox { dir, pool };
        sandbox.ok(&["mkfs", "test.pool", "--size", size]);
        sandbox
    }

    /// Runs the program in the sandbox directory, standard error a pipe (so never a terminal).
    pub fn run(&self, args: &[&str]) -> Run {
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

    /// Runs a command that must succeed and print nothing on standard error; returns its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.status, 0, "{args:?} failed: {}", run.stderr);
        assert_eq!(run.stderr, "", "{args:?} wrote to standard error");
        run.stdout
    }

    /// Runs a command that prints JSON and must succeed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// A path in the sandbox directory.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `data` to a host file and `put`s it into the pool at `path`.
    pub fn put(&self, path: &str, data: &[u8]) {
        let name = format!("host-{}", path.replace('/', "_"));
        std::fs::write(self.host_path(&name), data).unwrap();
        self.ok(&["put", "test.pool", &name, path]);
    }

    /// The bytes of a pool file.
    pub fn cat(&self, path: &str) -> Vec<u8> {
        let output = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
            .args(["cat", "test.pool", path])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "cat {path}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// `ferrodax io -f -c C1 -c C2 ... test.pool PATH`, which must succeed.
    pub fn io(&self, path: &str, commands: &[&str]) -> String {
        let mut args = vec!["io", "-f"];
        for c in commands {
            args.push("-c");
            args.push(c);
        }
        args.push("test.pool");
        args.push(path);
        self.ok(&args)
    }
}

/// Deterministic bytes that differ from block to block (splitmix64 from `seed`): no two 4 KiB
/// blocks of different seeds or offsets are equal.
pub fn unique_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A checksum of contents (FNV-1a 64), so assertions compare contents without printing them.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Says loudly that `test` did not check what it is for, and why: straight to the standard error
/// descriptor, past the test harness's capture, so the skip shows in a passing run.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** {test}: SKIPPED: {reason}\n");
}
