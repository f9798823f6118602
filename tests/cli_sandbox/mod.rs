//! A scratch directory with a pool, and the `ferrodax` program run in it (as root or as another
//! user, directly or through a pool server), for the tests of the first-contact commands (df,
//! stat, dedupe-scan, poison --html, report) and the namespace commands (ln, chmod, chown, touch,
//! xattr, ls). Each test binary uses only some of these helpers.
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
        Self::finish(Command::new(env!("CARGO_BIN_EXE_ferrodax")).args(args).current_dir(self.dir.path()))
    }

    /// Runs the program in the sandbox directory as user `uid` and group `gid` (no supplementary
    /// groups). Needs root.
    pub fn run_as(&self, uid: u32, gid: u32, args: &[&str]) -> Run {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrodax"));
        command.args(args).current_dir(self.dir.path()).uid(uid).gid(gid);
        Self::finish(&mut command)
    }

    fn finish(command: &mut Command) -> Run {
        let output = command.output().expect("the ferrodax binary runs");
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

/// `ferrodax serve test.pool [EXTRA...]` in a sandbox, stopped with SIGTERM when dropped.
pub struct PoolServer(std::process::Child);

impl PoolServer {
    /// Starts the server and returns once it says it is serving (it listens before saying so).
    pub fn start(s: &Sandbox, extra: &[&str]) -> PoolServer {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
            .args(["serve", "test.pool"])
            .args(extra)
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
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
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
