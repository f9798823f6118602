//! Guards `ferrodax mkfs` against a full host file system: the pool file is allocated whole at
//! mkfs (so a pool larger than the free host space fails there with ENOSPC and leaves no file,
//! instead of a store raising SIGBUS later), and `--sparse` keeps the old sparse file.

mod cli_sandbox;

use cli_sandbox::Sandbox;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes the host file system allocated for `path`.
fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn mkfs_allocates_every_byte_of_the_pool_file_unless_sparse() {
    let s = Sandbox::with_pool("8m");
    assert_eq!(allocated_bytes(&s.pool), 8 << 20, "mkfs allocated the whole pool file");
    s.ok(&["mkfs", "sparse.pool", "--size", "8m", "--sparse"]);
    let sparse = allocated_bytes(&s.host_path("sparse.pool"));
    assert!(sparse < 1 << 20, "--sparse allocates only what formatting wrote: {sparse} bytes");
    assert_eq!(s.run(&["check", "sparse.pool"]).status, 0);
}

/// The test that needs the small tmpfs, for its skip message.
const ENOSPC_TEST: &str =
    "mkfs_of_a_pool_larger_than_the_host_file_system_fails_with_enospc_and_leaves_no_file";

/// A 16 MiB tmpfs mounted for one test, unmounted when dropped.
struct SmallTmpfs {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts it, or says loudly why not (not root, or no right to mount here) and returns None.
    fn mount() -> Option<SmallTmpfs> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
        if euid != Some("0") {
            cli_sandbox::skipped(
                ENOSPC_TEST,
                "not root, cannot mount a small tmpfs to fill; mkfs ENOSPC not checked",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mountpoint = dir.path().to_path_buf();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "ferrodax-test", mountpoint.to_str().unwrap()])
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(SmallTmpfs { mountpoint, _dir: dir }),
            Ok(out) => {
                cli_sandbox::skipped(
                    ENOSPC_TEST,
                    &format!(
                        "mount -t tmpfs failed ({}); mkfs ENOSPC not checked",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                );
                None
            }
            Err(e) => {
                cli_sandbox::skipped(
                    ENOSPC_TEST,
                    &format!("cannot run mount ({e}); mkfs ENOSPC not checked"),
                );
                None
            }
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}

#[test]
fn mkfs_of_a_pool_larger_than_the_host_file_system_fails_with_enospc_and_leaves_no_file() {
    let Some(tmpfs) = SmallTmpfs::mount() else { return };
    let pool = tmpfs.mountpoint.join("big.pool");
    let run = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
        .args(["mkfs", pool.to_str().unwrap(), "--size", "64m"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim(), format!("ferrodax: mkfs {}: No space left on device", pool.display()));
    assert!(!pool.exists(), "no half-made pool file is left behind");

    let fits = tmpfs.mountpoint.join("fits.pool");
    let made = Command::new(env!("CARGO_BIN_EXE_ferrodax"))
        .args(["mkfs", fits.to_str().unwrap(), "--size", "8m"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(allocated_bytes(&fits), 8 << 20);
}

#[test]
fn writes_into_a_sparse_pool_whose_host_file_system_fills_up_fail_with_enospc_instead_of_dying() {
    let Some(tmpfs) = SmallTmpfs::mount() else { return };
    let pool = tmpfs.mountpoint.join("sparse.pool");
    let pool_arg = pool.to_str().unwrap();
    let ferrodax = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_ferrodax")).args(args).output().unwrap();
    let made = ferrodax(&["mkfs", pool_arg, "--size", "64m", "--sparse"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // 32 MiB do not fit on the 16 MiB host file system: the write that meets the end is ENOSPC.
    let run = ferrodax(&["io", "-f", "-c", "pwrite -q -b 1m 0 32m", pool_arg, "/big"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "an error exit, not a signal: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // The pool is whole: it mounts and checks clean, and the file holds what was written.
    let check = ferrodax(&["check", pool_arg]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
