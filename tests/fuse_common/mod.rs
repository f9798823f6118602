//! Shared harness of the FUSE mount tests: a pool on /dev/shm, `ferrodax mount POOL DIR` as a
//! child process (unmounted and awaited by a guard on every path), and the rule for machines
//! where FUSE cannot mount: the test prints a loud SKIPPED line and passes, unless
//! FERRODAX_REQUIRE_FUSE=1 (set by .ci/run), which makes it fail.

#![allow(dead_code)]

#[path = "../server_common/mod.rs"]
pub mod server_common;

pub use server_common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// True when the mount point is in this process's mount table.
pub fn is_mounted(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().any(|line| line.split(' ').nth(4).is_some_and(|m| Path::new(m) == dir))
}

/// Why FUSE cannot mount here, if it cannot (checked before anything is started).
pub fn cannot_mount() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (modprobe fuse)".into());
    }
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let fusermount = ["fusermount3", "fusermount"]
        .iter()
        .any(|p| Command::new(p).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok());
    if !root.unwrap_or(false) && !fusermount {
        return Some("not root and no fusermount3 (apt-get install fuse3)".into());
    }
    None
}

/// Skips the test loudly (or fails it under FERRODAX_REQUIRE_FUSE=1); returns true to skip.
pub fn skip(test: &str, why: &str) -> bool {
    assert!(
        std::env::var("FERRODAX_REQUIRE_FUSE").as_deref() != Ok("1"),
        "{test}: FUSE cannot mount here ({why}) and FERRODAX_REQUIRE_FUSE=1"
    );
    eprintln!(
        "\n*** SKIPPED {test}: FUSE cannot mount here ({why}); FERRODAX_REQUIRE_FUSE=1 makes this a failure ***\n"
    );
    true
}

/// A running `ferrodax mount POOL DIR` (foreground); unmounted lazily and awaited when dropped.
pub struct Mount {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    /// Mounts `pool` on a new directory `name` beside it, or `None` (after a loud SKIPPED line)
    /// where FUSE cannot mount.
    pub fn start(test: &str, pool: &TestPool, name: &str) -> Option<Mount> {
        Self::start_with(test, pool, name, &[])
    }

    /// [`Mount::start`] with more arguments for `ferrodax mount`.
    pub fn start_with(test: &str, pool: &TestPool, name: &str, extra: &[&str]) -> Option<Mount> {
        if let Some(why) = cannot_mount() {
            skip(test, &why);
            return None;
        }
        let dir = pool.dir.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let log = pool.dir.path().join(format!("{name}.log"));
        let child = Command::new(ferrodax())
            .arg("mount")
            .arg(&pool.path)
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut mount = Mount { child: Some(child), dir, log };
        let deadline = Instant::now() + HANG;
        // The kernel shows the mount a moment before the process logs that it mounted: wait for
        // both, so that a test may read the log at once.
        while !is_mounted(&mount.dir) || !mount.log_text().contains(" mounted on ") {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().unwrap() {
                let text = mount.log_text();
                if text.contains("not permitted") || text.contains("/dev/fuse") {
                    mount.child = None;
                    skip(test, text.trim());
                    return None;
                }
                panic!("ferrodax mount exited with {status} before mounting:\n{text}");
            }
            assert!(Instant::now() < deadline, "ferrodax mount never mounted:\n{}", mount.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(mount)
    }

    /// A path inside the mount.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name.trim_start_matches('/'))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `umount DIR` from outside; asserts the mount process then ends cleanly (exit 0, "stopped
    /// cleanly") and the directory is no longer a mount point.
    pub fn unmount(mut self) {
        let status = Command::new("umount").arg(&self.dir).status().unwrap();
        assert!(status.success(), "umount {}: {status}\n{}", self.dir.display(), self.log_text());
        self.expect_clean_exit("after umount");
    }

    /// Sends `signal` to the mount process; asserts it unmounts and ends cleanly.
    pub fn stop_with(mut self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) of our own child, which we have not awaited yet.
        unsafe { libc::kill(pid, signal) };
        self.expect_clean_exit("after the signal");
    }

    fn expect_clean_exit(&mut self, when: &str) {
        let mut child = self.child.take().unwrap();
        let status: ExitStatus = wait_deadline(&mut child, "ferrodax mount");
        let log = self.log_text();
        assert!(status.success(), "ferrodax mount {when} exited with {status}:\n{log}");
        assert!(log.contains("stopped cleanly"), "ferrodax mount {when}:\n{log}");
        assert!(!is_mounted(&self.dir), "{} is still mounted {when}", self.dir.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!("--- ferrodax mount's log ---\n{}", self.log_text());
            }
            let _ = Command::new("umount").arg("-l").arg(&self.dir).stderr(Stdio::null()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a program; returns its status, standard output and standard error.
pub fn run(program: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a program and asserts it succeeded; returns its standard output.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let (status, stdout, stderr) = run(program, args);
    assert!(status.success(), "{program} {args:?}: {status}\n{stdout}{stderr}");
    stdout
}

/// `ferrodax cat POOL PATH`'s bytes (asserting success).
pub fn cli_cat(pool: &Path, path: &str) -> Vec<u8> {
    let out = Command::new(ferrodax()).arg("cat").arg(pool).arg(path).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "ferrodax cat {path}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Whether `program` runs here (`program --version` starts).
pub fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A part of a test that needs `program` (from Debian package `package`): true when it runs;
/// else a loud SKIPPED line for that part, or a failure under FERRODAX_REQUIRE_FUSE=1 (.ci/run
/// installs the package).
pub fn need(test: &str, program: &str, package: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var("FERRODAX_REQUIRE_FUSE").as_deref() != Ok("1"),
        "{test}: {program} is missing (apt-get install {package}) and FERRODAX_REQUIRE_FUSE=1"
    );
    eprintln!("\n*** SKIPPED part of {test}: {program} is missing (apt-get install {package}) ***\n");
    false
}

/// Runs `script` with bash (`-o pipefail`, arguments $1...) and asserts it succeeded.
pub fn bash_ok(script: &str, args: &[&str]) -> String {
    let mut all = vec!["-euo", "pipefail", "-c", script, "bash"];
    all.extend_from_slice(args);
    run_ok("bash", &all)
}
