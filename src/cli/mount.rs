//! `ferrodax mount POOL MOUNTPOINT [--background] [--socket PATH] [--log FILE] [--threads N]`: the pool as an
//! ordinary directory tree, through FUSE.
//!
//! Owns the command's arguments, its messages, turning SIGTERM/SIGINT into an unmount and a clean
//! stop, and `--background` (this program started again in the foreground with `--ready-line`, in
//! a process group of its own; the first one waits until the mount is up, prints the new
//! process's pid and exits). Must never mount or serve anything itself: `ferrodax::fuse::run`
//! does.

use ferrodax::fuse::{self, MountOptions, MountReport, Serving};
use ferrodax::server::daemon::Log;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Mount a pool on a directory through FUSE (foreground; Ctrl-C, SIGTERM or `umount DIR`
/// stops it cleanly). Serves the pool to ferrodax commands and Fs::connect at the same time,
/// or goes through the pool server when one runs.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// The pool (a pool file or a /dev/dax device).
    pub pool: PathBuf,
    /// The directory to mount it on.
    pub mountpoint: PathBuf,
    /// The pool server's socket: the one to connect to when a server runs, else the one this
    /// process serves on (default: the pool's path with ".sock" appended).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Threads answering FUSE requests (more let programs' requests run side by side, at the cost
    /// of a wake-up per request).
    #[arg(long, default_value_t = fuse::DEFAULT_FUSE_THREADS)]
    pub threads: usize,
    /// Go to the background once the mount is up; prints the pid of the process that serves it.
    #[arg(long)]
    pub background: bool,
    /// With --background: append the log lines to this file (default: none are kept).
    #[arg(long, requires = "background")]
    pub log: Option<PathBuf>,
    /// (internal, for --background) print one line on standard output once the mount is up
    /// ("ready") or has failed ("error: ..."), and nothing on it afterwards.
    #[arg(long, hide = true)]
    pub ready_line: bool,
}

/// Runs the command; exit status 0 after a clean unmount and stop, 1 otherwise.
pub fn run(args: MountArgs) -> i32 {
    if args.background {
        return start_in_background(&args);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = vec![signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];
    if args.ready_line {
        // In the background the terminal's hang-up is none of this process's business.
        signals.push(signal_hook::consts::SIGHUP);
    }
    for signal in signals {
        let flag = if signal == signal_hook::consts::SIGHUP {
            Arc::new(AtomicBool::new(false))
        } else {
            stop.clone()
        };
        if let Err(e) = signal_hook::flag::register(signal, flag) {
            eprintln!("ferrodax mount: cannot handle signal {signal}: {e}");
            return 1;
        }
    }
    let options = MountOptions {
        pool: args.pool.clone(),
        mountpoint: args.mountpoint.clone(),
        socket: args.socket,
        threads: args.threads,
    };
    let log: Log = Arc::new(|line: &str| eprintln!("ferrodax mount: {line}"));
    let ready_line = args.ready_line;
    let mut was_ready = false;
    let outcome = fuse::run(&options, stop, log, |report: &MountReport| {
        was_ready = true;
        eprintln!("ferrodax mount: {}", describe(report));
        if ready_line {
            println!("ready");
            let _ = std::io::stdout().flush();
        }
    });
    match outcome {
        Ok(()) => {
            eprintln!("ferrodax mount: stopped cleanly");
            0
        }
        Err(e) => {
            // The pool file's problems said plainly where `describe` knows them; otherwise the
            // whole error, which names what failed.
            let described = super::commands::describe(&e);
            let text = if described == e.strerror() { e.to_string() } else { described };
            let message = format!("{} on {}: {text}", args.pool.display(), args.mountpoint.display());
            if ready_line && !was_ready {
                println!("error: {message}");
            }
            eprintln!("ferrodax mount {message}");
            1
        }
    }
}

fn describe(report: &MountReport) -> String {
    let how = match &report.serving {
        Serving::InProcess(socket) => format!(
            "serving the pool on {} too (ferrodax commands and Fs::connect share it)",
            socket.display()
        ),
        Serving::Connected(socket) => format!("through the pool server at {}", socket.display()),
    };
    format!(
        "{} mounted on {}, {how}; unmount with `umount {}` (or fusermount3 -u), Ctrl-C or SIGTERM",
        report.pool.display(),
        report.mountpoint.display(),
        report.mountpoint.display()
    )
}

/// `--background`: this program again, in the foreground with `--ready-line`, in a process group
/// of its own, its log going to `--log` or nowhere; waits for its line and prints its pid.
fn start_in_background(args: &MountArgs) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("ferrodax mount: cannot find this program to start it in the background: {e}");
            return 1;
        }
    };
    let stderr = match &args.log {
        None => Stdio::null(),
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Stdio::from(file),
            Err(e) => {
                eprintln!("ferrodax mount: --log {}: {e}", path.display());
                return 1;
            }
        },
    };
    let mut command = Command::new(exe);
    command.arg("mount").arg(&args.pool).arg(&args.mountpoint).arg("--ready-line");
    command.arg("--threads").arg(args.threads.to_string());
    if let Some(socket) = &args.socket {
        command.arg("--socket").arg(socket);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr).process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("ferrodax mount: cannot start the background process: {e}");
            return 1;
        }
    };
    let pid = child.id();
    let mut line = String::new();
    let read = child.stdout.take().map(|out| BufReader::new(out).read_line(&mut line));
    match line.trim_end() {
        "ready" => {
            println!("{pid}");
            eprintln!(
                "ferrodax mount: {} mounted on {} by process {pid} in the background; unmount with `umount {}` \
                 or kill {pid}",
                args.pool.display(),
                args.mountpoint.display(),
                args.mountpoint.display()
            );
            0
        }
        text => {
            let status = child.wait();
            match text.strip_prefix("error: ") {
                Some(message) => eprintln!("ferrodax mount {message}"),
                None => eprintln!(
                    "ferrodax mount: the background process ended before the mount was up ({})",
                    match (read, status) {
                        (Some(Err(e)), _) => format!("reading its answer: {e}"),
                        (_, Ok(status)) => status.to_string(),
                        (_, Err(e)) => e.to_string(),
                    }
                ),
            }
            1
        }
    }
}
