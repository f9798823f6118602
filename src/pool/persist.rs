//! CPU persistence primitives: write back cache lines and fence.
//!
//! Owns the choice between `clwb`, `clflushopt` and `clflush`, made once from CPUID. Must never be
//! called on memory that is not mapped (the instructions fault like a load would).

use super::CACHE_LINE;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlushInstruction {
    Clwb,
    Clflushopt,
    Clflush,
    /// Not x86_64: fall back to a full fence only (the mapping must be msync'ed instead).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    None,
}

fn flush_instruction() -> FlushInstruction {
    static CHOICE: OnceLock<FlushInstruction> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID leaf 7 sub-leaf 0 is valid whenever the maximum leaf (leaf 0's EAX) is >= 7.
            let max_leaf = std::arch::x86_64::__cpuid(0).eax;
            if max_leaf >= 7 {
                let ebx = std::arch::x86_64::__cpuid_count(7, 0).ebx;
                if ebx & (1 << 24) != 0 {
                    return FlushInstruction::Clwb;
                }
                if ebx & (1 << 23) != 0 {
                    return FlushInstruction::Clflushopt;
                }
            }
            FlushInstruction::Clflush
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushInstruction::None
        }
    })
}

/// Writes back every cache line touching `[addr, addr + len)` toward memory.
///
/// # Safety
/// The whole range must be mapped in this process for the duration of the call.
pub(crate) unsafe fn flush_cache_lines(addr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let start = addr as usize & !(CACHE_LINE as usize - 1);
    let end = addr as usize + len;
    let choice = flush_instruction();
    let mut line = start;
    while line < end {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `line` lies within a cache line of the mapped range (caller's contract); these
        // instructions only write back or evict the line and never change memory contents.
        unsafe {
            match choice {
                FlushInstruction::Clwb => {
                    std::arch::asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags))
                }
                FlushInstruction::Clflushopt => std::arch::asm!(
                    "clflushopt [{0}]",
                    in(reg) line,
                    options(nostack, preserves_flags)
                ),
                FlushInstruction::Clflush => std::arch::x86_64::_mm_clflush(line as *const u8),
                FlushInstruction::None => {}
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = choice;
        line += CACHE_LINE as usize;
    }
}

/// Orders every preceding flush before any later store (sfence on x86_64).
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no memory operands and no preconditions.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// The name of the flush instruction in use, for reports and benchmarks.
pub fn flush_instruction_name() -> &'static str {
    match flush_instruction() {
        FlushInstruction::Clwb => "clwb",
        FlushInstruction::Clflushopt => "clflushopt",
        FlushInstruction::Clflush => "clflush",
        FlushInstruction::None => "none",
    }
}
