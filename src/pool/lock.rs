//! One owner per pool: the advisory lock that a mount holds on the pool file or /dev/dax node.
//!
//! Owns taking the lock (`flock`, exclusive for a read-write mount, shared for a read-only one,
//! never waiting) and naming the process that holds it when the lock is refused, from
//! `/proc/locks` and `/proc/PID/cmdline`. The lock belongs to the open file description, so it
//! lives exactly as long as the backend's file and is released by the kernel when the holder dies.
//!
//! Must never: wait for a lock (a second owner is refused at once), or take a lock on anything but
//! the descriptor the pool is mapped from.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How a pool is opened, and so which lock it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A read-write mount: the one owner of the pool's metadata.
    Exclusive,
    /// A read-only look (ls, cat, check): any number at once, none beside a read-write owner.
    Shared,
}

/// Takes the pool lock on `file` without waiting. A refusal is an error of kind
/// [`io::ErrorKind::WouldBlock`] whose message names the holder and how to share the pool.
pub fn lock_pool(file: &File, path: &Path, mode: LockMode) -> io::Result<()> {
    let operation = match mode {
        LockMode::Exclusive => libc::LOCK_EX,
        LockMode::Shared => libc::LOCK_SH,
    } | libc::LOCK_NB;
    let mut vanished = 0;
    loop {
        // SAFETY: flock on a descriptor we own; it only changes the lock state of that descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => {
                // A holder that is gone by the time we look for it has let go: try again (a few
                // times), instead of refusing without a name.
                let holders = file.metadata().map(|m| holders_of(m.dev(), m.ino())).unwrap_or_default();
                if holders.is_empty() && vanished < 3 {
                    vanished += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                }
                return Err(refusal(&holders, path, mode));
            }
            _ => return Err(err),
        }
    }
}

/// The error for a refused lock: who holds the pool and what to do instead.
fn refusal(holders: &[(u32, String)], path: &Path, mode: LockMode) -> io::Error {
    let who = if holders.is_empty() {
        "another process".to_string()
    } else {
        holders.iter().map(|(pid, cmd)| format!("pid {pid} ({cmd})")).collect::<Vec<_>>().join(", ")
    };
    let what = match mode {
        LockMode::Exclusive => "is in use by",
        LockMode::Shared => "is mounted read-write by",
    };
    let served = holders.iter().any(|(_, cmd)| cmd.split_whitespace().any(|w| w == "serve"));
    let hint = if served {
        "a pool server owns it: ferrodax commands and Fs::connect go through its socket; to mount \
         or reformat the pool directly, stop the server first (SIGTERM)"
            .to_string()
    } else {
        format!(
            "a pool has one read-write owner at a time. To use it from many processes at once, run \
             `ferrodax serve {}`: every ferrodax command (and Fs::connect) then goes through that server",
            path.display()
        )
    };
    io::Error::new(io::ErrorKind::WouldBlock, format!("{} {what} {who}: {hint}", path.display()))
}

/// Every process that holds a lock on the file (device `dev`, inode `ino`), with its command line,
/// read from /proc/locks. Empty when /proc is not available.
pub fn holders_of(dev: u64, ino: u64) -> Vec<(u32, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else { return Vec::new() };
    let wanted = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let mut out: Vec<(u32, String)> = Vec::new();
    for line in text.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters carry "->" and are skipped.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields.get(1) == Some(&"->") {
            continue;
        }
        if fields[5] != wanted {
            continue;
        }
        let Ok(pid) = fields[4].parse::<u32>() else { continue };
        if out.iter().any(|(p, _)| *p == pid) {
            continue;
        }
        out.push((pid, command_line(pid)));
    }
    out
}

/// The command line of `pid`, arguments joined by spaces ("?" when it cannot be read).
pub fn command_line(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) if !bytes.is_empty() => bytes
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        _ => "?".to_string(),
    }
}
