//! The one error type of ferrodax, with its errno mapping.
//!
//! Owns the translation from what went wrong to the errno a kernel file system would return and to a
//! message that names the file, offset or structure involved. Must never lose the errno: every
//! variant maps to exactly one.

use std::fmt;

/// Every failure ferrodax reports. `errno()` gives the value the kernel would return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ENOENT: a path or inode does not exist.
    #[error("{0}: No such file or directory")]
    NotFound(String),
    /// EEXIST: the name is already taken.
    #[error("{0}: File exists")]
    Exists(String),
    /// ENOTDIR: a path component or the target is not a directory.
    #[error("{0}: Not a directory")]
    NotDir(String),
    /// EISDIR: a directory where a regular file is needed.
    #[error("{0}: Is a directory")]
    IsDir(String),
    /// ENOTEMPTY: rmdir or rename over a non-empty directory.
    #[error("{0}: Directory not empty")]
    NotEmpty(String),
    /// EINVAL: an argument breaks a rule (alignment, overlap, range past EOF, ...).
    #[error("Invalid argument: {0}")]
    Invalid(String),
    /// EBADF: the handle was not opened for this kind of access.
    #[error("Bad file descriptor: {0}")]
    BadHandle(String),
    /// EPERM: the operation is not permitted on this file.
    #[error("Operation not permitted: {0}")]
    NotPermitted(String),

    /// The caller lacks a permission the mode bits would have to grant (EACCES).
    #[error("{0}: Permission denied")]
    AccessDenied(String),

    /// A file would get more names than a link count holds (EMLINK).
    #[error("Too many links: {0}")]
    TooManyLinks(String),

    /// A path goes through too many symlinks, or a final symlink that must not be followed (ELOOP).
    #[error("{0}: Too many levels of symbolic links")]
    Loop(String),

    /// No extended attribute of that name (ENODATA).
    #[error("No data available: {0}")]
    NoAttribute(String),

    /// A caller's buffer is too small for the answer (ERANGE).
    #[error("Numerical result out of range: {0}")]
    TooSmall(String),
    /// EXDEV: the files belong to different pools.
    #[error("Invalid cross-device link: {0}")]
    CrossPool(String),
    /// ENOSPC: the pool has no room left.
    #[error("No space left on device: {0}")]
    NoSpace(String),
    /// EFBIG: a file would grow past the maximum file size.
    #[error("File too large: {0}")]
    TooBig(String),
    /// ENAMETOOLONG: a name longer than 255 bytes.
    #[error("File name too long: {0}")]
    NameTooLong(String),
    /// EIO: the media could not be read (poison) or a write could not complete.
    #[error("Input/output error: {0}")]
    Io(String),
    /// EIO: a read of pool memory met bad memory (a machine check, or a SIGBUS of the pool's
    /// mapping) at this pool offset. The front end records it as a memory failure, so every owner
    /// and every view is handled, and reports EIO.
    #[error("Input/output error: memory error reading pool offset {pool_offset:#x}")]
    MediaError {
        /// The first byte that could not be read.
        pool_offset: u64,
    },
    /// EUCLEAN: on-media metadata is damaged; the message names the structure.
    #[error("Structure needs cleaning: {0}")]
    Corrupt(String),
    /// EROFS: the pool is mounted read-only.
    #[error("Read-only file system: {0}")]
    ReadOnly(String),
    /// EOPNOTSUPP: the pool or object cannot do this (a view of a pool without a file descriptor).
    #[error("Operation not supported: {0}")]
    NotSupported(String),
    /// ENXIO: SEEK_DATA or SEEK_HOLE from an offset at or past EOF, or SEEK_DATA with no data
    /// after the offset.
    #[error("No such device or address: {0}")]
    NoSuchOffset(String),
    /// EBUSY: the target is in use.
    #[error("Device or resource busy: {0}")]
    Busy(String),
    /// An error from the host operating system (opening the pool file, mapping it).
    #[error("{context}: {source}")]
    Os {
        /// What was being done.
        context: String,
        /// The host error.
        source: std::io::Error,
    },
}

/// Shorthand for results of ferrodax operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errno a kernel file system returns for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::NotDir(_) => libc::ENOTDIR,
            Error::IsDir(_) => libc::EISDIR,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::Invalid(_) => libc::EINVAL,
            Error::BadHandle(_) => libc::EBADF,
            Error::NotPermitted(_) => libc::EPERM,
            Error::AccessDenied(_) => libc::EACCES,
            Error::TooManyLinks(_) => libc::EMLINK,
            Error::Loop(_) => libc::ELOOP,
            Error::NoAttribute(_) => libc::ENODATA,
            Error::TooSmall(_) => libc::ERANGE,
            Error::CrossPool(_) => libc::EXDEV,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::TooBig(_) => libc::EFBIG,
            Error::NameTooLong(_) => libc::ENAMETOOLONG,
            Error::Io(_) | Error::MediaError { .. } => libc::EIO,
            Error::Corrupt(_) => libc::EUCLEAN,
            Error::ReadOnly(_) => libc::EROFS,
            Error::Busy(_) => libc::EBUSY,
            Error::NoSuchOffset(_) => libc::ENXIO,
            Error::NotSupported(_) => libc::EOPNOTSUPP,
            Error::Os { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The C library's text for this error's errno ("Invalid argument"), as xfs_io prints it.
    pub fn strerror(&self) -> String {
        strerror(self.errno())
    }

    /// The variant for `errno`, carrying `message` (an error that crossed a process boundary, such
    /// as a pool server's answer). An errno without a variant of its own becomes [`Error::Os`].
    pub fn from_errno(errno: i32, message: String) -> Self {
        // The message already starts with the strerror text of its variant: keep only the detail.
        let detail = match message.split_once(": ") {
            Some((head, rest)) if head == strerror(errno) => rest.to_string(),
            _ => message.clone(),
        };
        let path_detail = || message.rsplit_once(": ").map(|(p, _)| p.to_string()).unwrap_or(message.clone());
        match errno {
            libc::ENOENT => Error::NotFound(path_detail()),
            libc::EEXIST => Error::Exists(path_detail()),
            libc::ENOTDIR => Error::NotDir(path_detail()),
            libc::EISDIR => Error::IsDir(path_detail()),
            libc::ENOTEMPTY => Error::NotEmpty(path_detail()),
            libc::EINVAL => Error::Invalid(detail),
            libc::EBADF => Error::BadHandle(detail),
            libc::EPERM => Error::NotPermitted(detail),
            libc::EACCES => Error::AccessDenied(path_detail()),
            libc::EMLINK => Error::TooManyLinks(detail),
            libc::ELOOP => Error::Loop(path_detail()),
            libc::ENODATA => Error::NoAttribute(detail),
            libc::ERANGE => Error::TooSmall(detail),
            libc::EXDEV => Error::CrossPool(detail),
            libc::ENOSPC => Error::NoSpace(detail),
            libc::EFBIG => Error::TooBig(detail),
            libc::ENAMETOOLONG => Error::NameTooLong(detail),
            libc::EIO => Error::Io(detail),
            libc::EUCLEAN => Error::Corrupt(detail),
            libc::EROFS => Error::ReadOnly(detail),
            libc::EOPNOTSUPP => Error::NotSupported(detail),
            libc::EBUSY => Error::Busy(detail),
            libc::ENXIO => Error::NoSuchOffset(detail),
            _ => {
                let context = match message.rsplit_once(": ") {
                    Some((context, tail)) if tail.starts_with(&strerror(errno)) => context.to_string(),
                    _ => message,
                };
                Error::Os { context, source: std::io::Error::from_raw_os_error(errno) }
            }
        }
    }

    /// Wraps a host I/O error with what was being done.
    pub fn os(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Os { context: context.to_string(), source }
    }
}

/// The C library's message for `errno`.
pub fn strerror(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Os { source, .. } => source,
            other => std::io::Error::from_raw_os_error(other.errno()),
        }
    }
}
