//! The heap of a short-lived process: a command that mounts a pool, does one thing and exits.
//!
//! Owns one setting of the C allocator (glibc's `mallopt`): blocks up to 32 MiB come from the
//! heap rather than from a mapping of their own, and the heap keeps what is freed instead of
//! giving it back to the kernel. A mount decodes a checkpoint into buffers it frees as it builds
//! the state; with the defaults each of them is a fresh mapping, unmapped when freed, so the
//! state built next faults in new pages (each fault costs microseconds on a virtual machine)
//! where it could have reused the freed ones. Must never be called by a long-running process (a
//! server, a mount): it would keep its peak memory for good.

/// Largest block the heap serves itself (glibc's ceiling for this setting on 64-bit machines).
const HEAP_BLOCK_LIMIT: i32 = 32 << 20;
/// Free memory at the top of the heap kept rather than given back.
const KEEP_FREED_TOP: i32 = 256 << 20;

/// Makes the allocator reuse freed memory for the rest of the process (see the module
/// documentation). Call it once, early, in a process that exits after one command. Does nothing
/// where the C library is not glibc.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters under the allocator's own lock; it takes
    // plain integers and touches no memory of ours. A refused value leaves the default in place
    // (it returns 0), which is only slower.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED_TOP);
    }
}
