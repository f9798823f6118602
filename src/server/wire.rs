//! Frames on a Unix stream socket, descriptors passed with them, and the peer's credentials.
//!
//! Owns the byte layout of a frame — `json_len: u32 LE`, `data_len: u32 LE`, then that many bytes
//! of JSON (a protocol message) and of raw data (a read's or a write's bytes) — its size limits,
//! and the two system calls that need `unsafe`: `sendmsg`/`recvmsg` with SCM_RIGHTS (the pool's
//! descriptor in the welcome) and `getsockopt(SO_PEERCRED)`.
//!
//! Must never: allocate from a length it has not checked against the limits (a hostile peer
//! chooses them), or read past the frame it was asked for.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// A received frame: the message's JSON and the raw data after it.
pub type Frame = (Vec<u8>, Vec<u8>);

/// Largest JSON part of a frame.
pub const MAX_JSON: usize = 16 << 20;
/// Largest data part of a frame; clients cut longer reads and writes into pieces.
pub const MAX_DATA: usize = 16 << 20;
/// The piece size clients use for reads and writes that cross the socket.
pub const DATA_PIECE: usize = 8 << 20;

fn bad_frame(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The 8-byte header of a frame.
fn header(json: &[u8], data: &[u8]) -> io::Result<[u8; 8]> {
    if json.len() > MAX_JSON || data.len() > MAX_DATA {
        return Err(bad_frame(format!("frame too large: {} + {} bytes", json.len(), data.len())));
    }
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(json.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(h)
}

/// Writes all of `bytes` with send(MSG_NOSIGNAL): a peer that is gone is EPIPE, never a SIGPIPE
/// that would end this process whatever its disposition.
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: send on a socket we own, from a live buffer of the given length.
        let n =
            unsafe { libc::send(stream.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Writes one frame. Callers serialize writers (one frame at a time per socket).
pub fn write_frame(stream: &UnixStream, json: &[u8], data: &[u8]) -> io::Result<()> {
    let h = header(json, data)?;
    if data.len() <= 64 << 10 {
        // One system call for the common small frame.
        let mut buf = Vec::with_capacity(8 + json.len() + data.len());
        buf.extend_from_slice(&h);
        buf.extend_from_slice(json);
        buf.extend_from_slice(data);
        return send_all(stream, &buf);
    }
    let mut buf = Vec::with_capacity(8 + json.len());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(json);
    send_all(stream, &buf)?;
    send_all(stream, data)
}

/// Checks a received header and returns (json_len, data_len).
fn lengths(h: &[u8; 8]) -> io::Result<(usize, usize)> {
    let json = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
    let data = u32::from_le_bytes(h[4..].try_into().expect("4 bytes")) as usize;
    if json == 0 || json > MAX_JSON || data > MAX_DATA {
        return Err(bad_frame(format!("bad frame header: {json} bytes of message, {data} of data")));
    }
    Ok((json, data))
}

/// Reads the rest of a frame after its header.
fn body(stream: &mut impl Read, h: &[u8; 8]) -> io::Result<Frame> {
    let (json_len, data_len) = lengths(h)?;
    let mut json = vec![0u8; json_len];
    stream.read_exact(&mut json)?;
    let mut data = vec![0u8; data_len];
    stream.read_exact(&mut data)?;
    Ok((json, data))
}

/// Reads one frame: `None` at a clean end of stream (between frames).
pub fn read_frame(stream: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut h = [0u8; 8];
    let mut got = 0;
    while got < h.len() {
        match stream.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    body(stream, &h).map(Some)
}

/// Writes one frame with `fd` attached (SCM_RIGHTS) to its first byte.
pub fn write_frame_with_fd(stream: &UnixStream, json: &[u8], fd: RawFd) -> io::Result<()> {
    let h = header(json, &[])?;
    let mut buf = Vec::with_capacity(8 + json.len());
    buf.extend_from_slice(&h);
    buf.extend_from_slice(json);
    // SAFETY: CMSG_SPACE is a pure computation on a constant.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: msghdr is plain data; every pointer in it refers to a live local buffer of the given
    // length; CMSG_FIRSTHDR of a control buffer of CMSG_SPACE bytes is non-null and in bounds.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let sent = sent as usize;
    if sent < buf.len() {
        send_all(stream, &buf[sent..])?;
    }
    Ok(())
}

/// Reads one frame and the descriptor attached to its first byte, if any.
pub fn read_frame_with_fd(stream: &UnixStream) -> io::Result<(Frame, Option<OwnedFd>)> {
    let mut h = [0u8; 8];
    // SAFETY: CMSG_SPACE is a pure computation on a constant.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: h.as_mut_ptr().cast(), iov_len: h.len() };
    // SAFETY: as in write_frame_with_fd, every pointer refers to a live local buffer; the kernel
    // writes at most msg_controllen bytes of control data and at most 8 bytes of payload.
    let (got, fd) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fd = None;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null() && (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            fd = Some(OwnedFd::from_raw_fd(raw));
        }
        (n as usize, fd)
    };
    if got == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut reader = stream;
    reader.read_exact(&mut h[got..])?;
    Ok((body(&mut reader, &h)?, fd))
}

/// The peer's process id, user id and group id (SO_PEERCRED), as the kernel recorded them at
/// connect time.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_with_its_data() {
        let (a, mut b) = UnixStream::pair().unwrap();
        write_frame(&a, br#"{"x":1}"#, &[7u8; 100_000]).unwrap();
        let (json, data) = read_frame(&mut b).unwrap().unwrap();
        assert_eq!(json, br#"{"x":1}"#);
        assert_eq!(data, vec![7u8; 100_000]);
        drop(a);
        assert!(read_frame(&mut b).unwrap().is_none(), "a clean end of stream is None");
    }

    #[test]
    fn a_header_announcing_too_much_is_refused_before_allocating() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::io::Write::write_all(&mut a, &h).unwrap();
        let err = read_frame(&mut b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_descriptor_rides_with_a_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile_fd();
        write_frame_with_fd(&a, b"{}", file.as_raw_fd()).unwrap();
        let ((json, _), fd) = read_frame_with_fd(&b).unwrap();
        assert_eq!(json, b"{}");
        let fd = fd.expect("a descriptor");
        // The received descriptor is a new number for the same open file.
        assert_ne!(fd.as_raw_fd(), file.as_raw_fd());
        let (pid, _, _) = peer_credentials(&b).unwrap();
        assert_eq!(pid, std::process::id());
    }

    fn tempfile_fd() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/proc/self/exe").unwrap())
    }
}
