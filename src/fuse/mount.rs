//! Mounting: a FUSE session of an `Fs` on a directory ([`FuseMount`]), and `ferrodax mount`'s
//! whole run beside a pool server ([`run`]).
//!
//! Owns the mount options, the session's threads, unmounting (plainly, or lazily while files are
//! still open) and the order of a clean stop: the FUSE session ends and its handles close first,
//! then the pool server (when this process runs it) tells its clients goodbye and writes the
//! final checkpoint. Must never answer a FUSE request itself (ops does) or serve a client (the
//! server does).

use super::ops::FuseFs;
use crate::server::daemon::{self, Log, ServeOptions};
use crate::{Error, Fs, Pool, Result};
use fuser::{Config, MountOption, Session, SessionUnmounter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Threads answering FUSE requests unless told otherwise. One: every request is short (at most
/// 1 MiB copied), and on a small machine each extra thread costs a wake-up per request (measured
/// on 2 vCPUs: 2 to 3 times fewer small files created per second with 2 or 4 threads).
pub const DEFAULT_FUSE_THREADS: usize = 1;

/// How often the waiting loop looks at the stop flag, the session and the server.
const POLL: Duration = Duration::from_millis(50);

/// How often a mount that is a pool server's client asks whether the server is still there.
const SERVER_CHECK: Duration = Duration::from_secs(1);

/// A FUSE mount of an `Fs`, served by threads of this process until it is unmounted — by
/// [`FuseMount::unmount`], or from outside (`umount DIR`, `fusermount3 -u DIR`).
pub struct FuseMount {
    mountpoint: PathBuf,
    unmounter: SessionUnmounter,
    session: Option<JoinHandle<std::io::Result<()>>>,
}

impl FuseMount {
    /// Mounts `fs` on the directory `mountpoint` (the mount table names `source` as the file
    /// system, subtype `ferrodax`): directly when this process may (root), else through
    /// `fusermount3`.
    /// The kernel checks every access against the owner, group and mode the pool keeps
    /// (`default_permissions`), and the pool checks again for the requesting process; mounted by
    /// root, every user may reach the files (`allow_other`), otherwise only the mounting user.
    /// `threads` threads answer requests (at least one).
    pub fn mount(fs: Fs, mountpoint: &Path, source: &str, threads: usize) -> Result<FuseMount> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(source.to_string()),
            MountOption::Subtype("ferrodax".into()),
            MountOption::RW,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::DefaultPermissions,
        ];
        if rustix::process::geteuid().is_root() {
            config.acl = fuser::SessionACL::All;
        }
        config.n_threads = Some(threads.max(1));
        let mut session = Session::new(FuseFs::new(fs), mountpoint, &config).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOENT) if !Path::new("/dev/fuse").exists() => " (no /dev/fuse: modprobe fuse)",
                _ if !mountpoint.is_dir() => " (the mount point must be a directory)",
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (not permitted: run as root, or install fuse3 for fusermount3)"
                }
                _ => "",
            };
            Error::os(format!("FUSE mount on {}{hint}", mountpoint.display()), e)
        })?;
        let unmounter = session.unmount_callable();
        let thread = std::thread::Builder::new()
            .name("ferrodax-fuse".into())
            .spawn(move || session.run())
            .map_err(|e| Error::os("starting the FUSE session thread", e))?;
        Ok(FuseMount { mountpoint: mountpoint.to_path_buf(), unmounter, session: Some(thread) })
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True once the session has ended: the file system was unmounted (from outside too).
    pub fn is_finished(&self) -> bool {
        self.session.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Unmounts and waits until every request is answered and every handle closed. While files
    /// are still open on the mount (EBUSY) it is detached instead (a lazy unmount: gone from the
    /// tree at once) and this waits until the last of them is closed; `on_busy` is told once it is
    /// detached.
    pub fn unmount(mut self, on_busy: impl FnOnce()) -> Result<()> {
        if !self.is_finished() {
            if let Err(e) = self.unmounter.unmount() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    return Err(Error::os(format!("unmounting {}", self.mountpoint.display()), e));
                }
                detach(&self.mountpoint)?;
                on_busy();
            }
        }
        self.wait()
    }

    /// Waits until the session ends (the file system is unmounted from outside).
    pub fn wait(mut self) -> Result<()> {
        let Some(thread) = self.session.take() else { return Ok(()) };
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::os("the FUSE session", e)),
            Err(_) => Err(Error::Io("the FUSE session thread panicked".into())),
        }
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if !self.is_finished() {
            if self.unmounter.unmount().is_err() {
                let _ = detach(&self.mountpoint);
            }
            if let Some(thread) = self.session.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A lazy unmount (`umount -l`, else `fusermount3 -u -z`): the mount leaves the tree now, the
/// session ends when its last open file is closed.
fn detach(mountpoint: &Path) -> Result<()> {
    let attempts: [(&str, &[&str]); 3] =
        [("umount", &["-l"]), ("fusermount3", &["-u", "-z"]), ("fusermount", &["-u", "-z"])];
    for (program, args) in attempts {
        let status = Command::new(program)
            .args(args)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            return Ok(());
        }
    }
    Err(Error::Busy(format!(
        "{} is busy and could not be detached (umount -l, fusermount3 -u -z)",
        mountpoint.display()
    )))
}

/// How `ferrodax mount` runs.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// The pool file or /dev/dax device.
    pub pool: PathBuf,
    /// The directory to mount it on.
    pub mountpoint: PathBuf,
    /// The socket of the pool server: the one to connect to, or the one to serve on when none
    /// answers ([`crate::server::default_socket`] of the pool when `None`).
    pub socket: Option<PathBuf>,
    /// Threads answering FUSE requests ([`DEFAULT_FUSE_THREADS`] is a good start).
    pub threads: usize,
}

/// Who serves the pool while it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// A pool server already ran: the mount is one of its clients.
    Connected(PathBuf),
    /// This process runs the pool server too, on this socket.
    InProcess(PathBuf),
}

/// What [`run`] tells its caller once the mount is up.
#[derive(Debug, Clone)]
pub struct MountReport {
    /// The pool.
    pub pool: PathBuf,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Who serves the pool.
    pub serving: Serving,
}

/// `ferrodax mount`: mounts `options.pool` on `options.mountpoint` and serves it until `stop`
/// becomes true (then unmounts) or the mount is unmounted from outside, then stops cleanly.
///
/// When a pool server answers on the pool's socket, the mount is its client. Otherwise this
/// process becomes the pool's server (as `ferrodax serve`, on the same socket) and the mount uses
/// the server's own direct mount, so library clients and CLI commands reach the same pool through
/// the socket while it is mounted; at the end, after the FUSE session ended and closed its files,
/// the server tells its clients goodbye and writes the final checkpoint. `ready` is called once
/// the mount is up.
pub fn run(
    options: &MountOptions,
    stop: Arc<AtomicBool>,
    log: Log,
    ready: impl FnOnce(&MountReport),
) -> Result<()> {
    match std::fs::metadata(&options.mountpoint) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(Error::NotDir(format!(
                "{} (the mount point must be a directory)",
                options.mountpoint.display()
            )))
        }
        Err(e) => return Err(Error::os(format!("mount point {}", options.mountpoint.display()), e)),
    }
    let socket = options.socket.clone().unwrap_or_else(|| crate::server::default_socket(&options.pool));
    let source = options.pool.display().to_string();
    if let Some(fs) = connect_if_serving(&socket)? {
        let mount = FuseMount::mount(fs.clone(), &options.mountpoint, &source, options.threads)?;
        ready(&MountReport {
            pool: options.pool.clone(),
            mountpoint: options.mountpoint.clone(),
            serving: Serving::Connected(socket.clone()),
        });
        // The server may stop while mounted: then every request would fail with ENOTCONN, so
        // the mount goes away too. Asked about once a second.
        let asked = std::cell::Cell::new(std::time::Instant::now());
        let server_gone = || {
            if asked.get().elapsed() < SERVER_CHECK {
                return false;
            }
            asked.set(std::time::Instant::now());
            fs.try_stats().is_err_and(|e| e.errno() == libc::ENOTCONN)
        };
        let unmounted = wait_then_unmount(mount, &stop, &log, server_gone);
        if fs.try_stats().is_err_and(|e| e.errno() == libc::ENOTCONN) {
            return unmounted.and(Err(Error::os(
                format!("the pool server at {}", socket.display()),
                std::io::Error::from_raw_os_error(libc::ENOTCONN),
            )));
        }
        return unmounted;
    }

    let pool = Pool::open(&options.pool)?;
    let fs = Fs::mount(&pool)?;
    let server_stop = Arc::new(AtomicBool::new(false));
    let (listening_tx, listening_rx) = mpsc::channel();
    let server = {
        let serve_options = ServeOptions { socket: Some(socket.clone()), ..ServeOptions::new(&options.pool) };
        let (fs, server_stop, log) = (fs.clone(), server_stop.clone(), log.clone());
        std::thread::Builder::new()
            .name("ferrodax-serve".into())
            .spawn(move || {
                daemon::serve_mounted(&serve_options, fs, server_stop, log, |_| {
                    let _ = listening_tx.send(());
                })
            })
            .map_err(|e| Error::os("starting the pool server thread", e))?
    };
    // The server listens, or has failed (its thread ends without a word).
    if listening_rx.recv().is_err() {
        return match server.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(Error::Io("the pool server stopped before it listened".into())),
        };
    }
    let stop_server = |server: JoinHandle<Result<()>>| -> Result<()> {
        server_stop.store(true, Ordering::SeqCst);
        server.join().unwrap_or_else(|_| Err(Error::Io("the pool server thread panicked".into())))
    };
    let mount = match FuseMount::mount(fs.clone(), &options.mountpoint, &source, options.threads) {
        Ok(mount) => mount,
        Err(e) => {
            let _ = stop_server(server);
            return Err(e);
        }
    };
    ready(&MountReport {
        pool: options.pool.clone(),
        mountpoint: options.mountpoint.clone(),
        serving: Serving::InProcess(socket),
    });
    let unmounted = wait_then_unmount(mount, &stop, &log, || server.is_finished());
    // Only now, with every FUSE handle closed, may the server write the final checkpoint.
    let served = stop_server(server);
    drop(fs);
    unmounted.and(served)
}

/// Connects to the pool server at `socket` if one answers there.
fn connect_if_serving(socket: &Path) -> Result<Option<Fs>> {
    if !socket.exists() {
        return Ok(None);
    }
    match Fs::connect(socket) {
        Ok(fs) => Ok(Some(fs)),
        Err(e) if matches!(e.errno(), libc::ECONNREFUSED | libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until `stop` (then unmounts), an unmount from outside, or `gone()` (the pool server has
/// ended, the one this process runs or the one it is a client of: unmounts too).
fn wait_then_unmount(mount: FuseMount, stop: &AtomicBool, log: &Log, gone: impl Fn() -> bool) -> Result<()> {
    while !mount.is_finished() && !stop.load(Ordering::Relaxed) && !gone() {
        std::thread::sleep(POLL);
    }
    if mount.is_finished() {
        log(&format!("{} was unmounted", mount.mountpoint().display()));
        return mount.wait();
    }
    if !stop.load(Ordering::Relaxed) {
        // Neither unmounted nor told to stop: the server is gone.
        log("the pool server stopped: unmounting");
    } else {
        log(&format!("unmounting {}", mount.mountpoint().display()));
    }
    let mountpoint = mount.mountpoint().display().to_string();
    mount.unmount(|| {
        log(&format!(
            "{mountpoint} is busy (files are open): detached it; stopping when the last one is closed"
        ))
    })
}
