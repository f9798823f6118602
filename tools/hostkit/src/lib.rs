//! ferrodax-hostkit: the host-side helpers that ferrodax's tools (`ferrodax-bench`,
//! `ferrodax-difftest`) and its command line share, written once.
//!
//! Owns: finding and running system programs and who we run as ([`programs`]), the scratch XFS
//! (reflink=1, rmapbt=1) loop-mounted from an image in /dev/shm ([`xfs`]), the kernel's remap calls
//! that std does not wrap ([`remap`]: FICLONERANGE, FIDEDUPERANGE, fallocate unshare), stores and
//! loads through `mmap(MAP_SHARED)` and a forced attribute refresh ([`mapping`]), xfs_io's size
//! syntax ([`size`]), ending quietly on a closed pipe ([`closed_pipe`]), the allocator setting
//! of a one-command process ([`heap`]), and the start of a `#![no_main]` program ([`entry`]).
//!
//! Must never: touch a ferrodax pool (this crate does not depend on ferrodax), install anything,
//! or leave a mount, a loop device or an image behind. The only `unsafe` is the kernel calls of
//! [`remap`], [`mapping`] and [`entry`] and the C library call of [`heap`], each with its SAFETY
//! argument.

#![warn(missing_docs)]

pub mod closed_pipe;
pub mod entry;
pub mod heap;
pub mod mapping;
pub mod programs;
pub mod remap;
pub mod size;
pub mod xfs;

pub use programs::{effective_uid, find_program, run_command};
pub use size::{parse_size, SizeError};
