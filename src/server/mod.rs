//! The pool server and its clients: one owner of a pool, any number of processes using it.
//!
//! A front end, beside the library API: the server (`daemon`) holds the pool's lock and a direct
//! mount, and runs every client's requests on it; a client (`client`) is what [`crate::Fs::connect`]
//! returns under the same API. Views live in the clients' address spaces (they get the pool's
//! descriptor) while their bookkeeping stays in the server's DAX layer, which sends every page
//! change to the client that holds the view and waits for its answer before the operation that
//! caused it returns. The protocol is data (`protocol`), moved in frames (`wire`), independent of
//! the transport: a Unix socket today.
//!
//! Must never: let a client reach the file system except through a request the server checks, or
//! let an operation return while a view in any process still shows the old layout.

pub mod client;
pub mod daemon;
pub mod protocol;
pub mod wire;

use std::path::{Path, PathBuf};

/// The socket a server for `pool` listens on unless told otherwise: the pool's path with `.sock`
/// appended (`/data/p.pool` → `/data/p.pool.sock`). `FERRODAX_SOCKET` in the environment
/// overrides it for every command.
pub fn default_socket(pool: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("FERRODAX_SOCKET") {
        return PathBuf::from(path);
    }
    let mut name = pool.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// Connects to the server of `pool` if one is listening on its socket ([`default_socket`]):
/// `Ok(None)` when there is no server (no socket, or a stale one nobody listens on).
pub fn connect_if_serving(pool: &Path) -> crate::Result<Option<crate::Fs>> {
    let socket = default_socket(pool);
    if !socket.exists() {
        return Ok(None);
    }
    match crate::Fs::connect(&socket) {
        Ok(fs) => Ok(Some(fs)),
        Err(e) if matches!(e.errno(), libc::ECONNREFUSED | libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}
