//! `ferrodax serve POOL [--socket PATH] [--group GROUP]`: the pool server in the foreground.
//!
//! Owns the command's arguments, its log lines on standard error (one per client connect and
//! disconnect, per memory failure, at start and stop) and turning SIGTERM/SIGINT into a clean
//! shutdown. Must never serve anything itself: `ferrodax::server::daemon` does.

use ferrodax::server::daemon::{self, ServeOptions};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Serve a pool to many processes at once (foreground; SIGTERM or Ctrl-C stops it cleanly).
/// Every ferrodax command, and Fs::connect, then goes through the server.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The pool (a pool file or a /dev/dax device).
    pub pool: PathBuf,
    /// The Unix socket to listen on (default: the pool's path with ".sock" appended).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Let members of this group (name or number) connect too: the socket becomes mode 0660.
    #[arg(long)]
    pub group: Option<String>,
    /// Seconds a client may take to apply a layout change to its views before it is killed.
    #[arg(long, default_value_t = 10)]
    pub recall_timeout: u64,
}

/// Runs the server until SIGTERM or SIGINT; exit status 0 after a clean shutdown, 1 otherwise.
pub fn run(args: ServeArgs) -> i32 {
    let group = match args.group.as_deref().map(|g| (g, super::accounts::group_id(g))) {
        None => None,
        Some((_, Some(gid))) => Some(gid),
        Some((g, None)) => {
            eprintln!("ferrodax serve: no group {g:?}");
            return 1;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("ferrodax serve: cannot handle signal {signal}: {e}");
            return 1;
        }
    }
    let options = ServeOptions {
        pool: args.pool.clone(),
        socket: args.socket,
        group,
        recall_timeout: Duration::from_secs(args.recall_timeout.max(1)),
    };
    let log: daemon::Log = Arc::new(|line: &str| eprintln!("ferrodax serve: {line}"));
    match daemon::serve(&options, stop, log, |_| {}) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrodax serve {}: {}", args.pool.display(), super::commands::describe(&e));
            1
        }
    }
}
