//! The store-fault handler: turns a store into a read-only page of a view into copy-on-write.
//!
//! Owns the process-wide SIGSEGV handler, the address-range registry it consults, and the
//! thread-local count of ferrodax locks held. Faults at addresses that are not ours go to the
//! handler that was installed before (or the default action).
//!
//! The rule that keeps it from deadlocking: a thread that holds a ferrodax lock never touches view
//! memory. The library reads into, and writes from, caller buffers that lie inside views through a
//! bounce buffer outside its locks, and calls no user code while locked. The handler checks the
//! rule: a fault on a thread that holds a lock is not resolved (it is forwarded, which ends the
//! process with SIGSEGV and a message) instead of waiting forever for its own lock.
//!
//! It also owns the process-wide SIGBUS handler of memory failure (SPEC section 5): an access to a
//! poisoned view page tells the view's subscriber (action-required, in signal context on the
//! accessing thread) and becomes SIGBUS BUS_MCEERR_AR; a machine check the kernel delivers
//! (BUS_MCEERR_AR/AO at a view page that shows a good pool block) becomes a memory failure of that
//! block first. Both run file-system code in signal context, so both are skipped (the signal is
//! forwarded) on a thread that holds a ferrodax lock.
//!
//! Must never: allocate or lock while the faulting thread holds a ferrodax lock, or swallow a fault
//! it cannot resolve (an action-optional machine check that was handled is not a fault).

use crate::pool::mcsafe::{forward as forward_to, install_over, Previous};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock, RwLock, Weak};

/// What resolving a store fault did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is now writable; the store can be retried.
    Resolved,
    /// Not a store this view allows (a read-only view): the SIGSEGV goes on, as the kernel's would.
    Refused,
    /// The copy-on-write could not be done (no block for the copy: ENOSPC; the old block is bad:
    /// EIO): the target has printed one line naming the file and offset, and the faulting thread
    /// gets SIGBUS with BUS_ADRERR at the address, as the kernel does when a fault cannot be served.
    Failed,
}

/// Something that owns a range of addresses and can resolve store faults in it.
pub trait FaultTarget: Send + Sync {
    /// Makes the page holding `addr` writable for this view (copying it if shared).
    fn resolve_store_fault(&self, addr: usize) -> FaultOutcome;

    /// True if `addr` lies on a page taken out of the view because its block is poisoned.
    fn poisoned(&self, _addr: usize) -> bool {
        false
    }

    /// Tells the view's subscriber, if any, that the access at `addr` consumed poison
    /// (action-required). Runs in signal context on the accessing thread.
    fn poisoned_access(&self, _addr: usize) {}

    /// A machine check from the kernel at `addr`, a page that shows a good pool block: handles the
    /// memory failure of that block (with the accessor named when `action_required`). Returns
    /// whether it was handled. Runs in signal context on the thread that received it.
    fn machine_check(&self, _addr: usize, _action_required: bool) -> bool {
        false
    }
}

struct RangeEntry {
    end: usize,
    target: Weak<dyn FaultTarget>,
}

fn registry() -> &'static RwLock<BTreeMap<usize, RangeEntry>> {
    static REGISTRY: OnceLock<RwLock<BTreeMap<usize, RangeEntry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(BTreeMap::new()))
}

thread_local! {
    static LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
}

/// Marks this thread as holding a ferrodax lock for as long as it lives.
pub struct LockMark(());

impl LockMark {
    /// Counts one more lock held by this thread.
    pub fn new() -> Self {
        LOCKS_HELD.with(|c| c.set(c.get() + 1));
        LockMark(())
    }
}

impl Default for LockMark {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LockMark {
    fn drop(&mut self) {
        LOCKS_HELD.with(|c| c.set(c.get() - 1));
    }
}

/// True when this thread holds a ferrodax lock.
pub fn holds_lock() -> bool {
    LOCKS_HELD.with(|c| c.get() > 0)
}

/// The lowest start and the highest end of all registered views (`usize::MAX` and 0 when there
/// are none), kept by `register`/`unregister` under the registry's write lock: `overlaps_view`
/// answers "no" for a buffer outside this span without taking the registry's lock, whose shared
/// counter every writing thread would otherwise bounce between CPUs on every write.
static VIEW_SPAN: [AtomicUsize; 2] = [AtomicUsize::new(usize::MAX), AtomicUsize::new(0)];

/// Publishes the span of the views in `reg` (called with the registry's write lock held).
fn publish_span(reg: &BTreeMap<usize, RangeEntry>) {
    let low = reg.keys().next().copied().unwrap_or(usize::MAX);
    let high = reg.values().map(|e| e.end).max().unwrap_or(0);
    VIEW_SPAN[0].store(low, Ordering::Release);
    VIEW_SPAN[1].store(high, Ordering::Release);
}

/// Registers `[start, start + len)` as a view whose store faults `target` resolves.
pub fn register(start: usize, len: usize, target: Weak<dyn FaultTarget>) {
    install_handler();
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    reg.insert(start, RangeEntry { end: start + len, target });
    publish_span(&reg);
}

/// Forgets the view starting at `start`.
pub fn unregister(start: usize) {
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    reg.remove(&start);
    publish_span(&reg);
}

/// True if any byte of `[addr, addr + len)` lies in a registered view.
pub fn overlaps_view(addr: usize, len: usize) -> bool {
    if len == 0 {
        return false;
    }
    let end = addr.saturating_add(len);
    if end <= VIEW_SPAN[0].load(Ordering::Acquire) || addr >= VIEW_SPAN[1].load(Ordering::Acquire) {
        return false;
    }
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    reg.range(..end).next_back().is_some_and(|(_, e)| e.end > addr)
}

fn target_at(addr: usize) -> Option<Arc<dyn FaultTarget>> {
    let reg = registry().read().unwrap_or_else(|e| e.into_inner());
    let (_, entry) = reg.range(..=addr).next_back()?;
    if addr >= entry.end {
        return None;
    }
    entry.target.upgrade()
}

static PREVIOUS_SEGV: OnceLock<Previous> = OnceLock::new();
static PREVIOUS_BUS: OnceLock<Previous> = OnceLock::new();

/// Installs the handlers once per process: SIGSEGV (store faults) and SIGBUS (poisoned pages).
pub fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // The pool's landing-pad handler goes first, so ours chains to it.
        crate::pool::mcsafe::install();
        install_over(libc::SIGSEGV, on_sigsegv, &PREVIOUS_SEGV);
        install_over(libc::SIGBUS, on_sigbus, &PREVIOUS_BUS);
    });
}

/// SIGBUS: an access to a page taken out of a view because its block is poisoned tells the view's
/// subscriber (action-required) and becomes a machine-check SIGBUS (BUS_MCEERR_AR, si_addr the
/// faulting address, si_addr_lsb 12) queued to the accessing thread, as the kernel's memory-failure
/// code delivers it. A machine check at a view page that still shows a good block (the kernel's
/// own, on real hardware) first becomes a memory failure of that block: an action-required one
/// then goes on to the application like any other; an action-optional one has been handled (the
/// early subscribers were told, the page now raises BUS_MCEERR_AR) and is not forwarded. Every
/// other SIGBUS goes to the handler installed before ours, or takes the default action.
extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    use super::mce::{queue_to_self, BUS_MCEERR_AO, BUS_MCEERR_AR};
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let machine_check = code == BUS_MCEERR_AR || code == BUS_MCEERR_AO;
    if !holds_lock() {
        if let Some(target) = target_at(addr) {
            let poisoned = target.poisoned(addr);
            if !machine_check && poisoned {
                target.poisoned_access(addr);
                if queue_to_self(BUS_MCEERR_AR, addr).is_ok() {
                    // Returning unblocks SIGBUS: the queued machine-check signal is delivered at once.
                    return;
                }
            }
            if machine_check
                && !poisoned
                && target.machine_check(addr, code == BUS_MCEERR_AR)
                && code == BUS_MCEERR_AO
            {
                return;
            }
            if code == BUS_MCEERR_AO && poisoned {
                // Already known and handled: the page raises BUS_MCEERR_AR when touched.
                return;
            }
        }
    }
    forward(signal, info, context);
}

extern "C" fn on_sigsegv(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if holds_lock() {
        // Breaking the rule would deadlock; forward instead (see the module documentation).
        if target_at_no_lock_check(addr) {
            const MSG: &[u8] = b"ferrodax: store into a view while holding a ferrodax lock\n";
            // SAFETY: write(2) on stderr with a static buffer is async-signal-safe.
            unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
        }
        forward(signal, info, context);
        return;
    }
    if let Some(target) = target_at(addr) {
        match target.resolve_store_fault(addr) {
            FaultOutcome::Resolved => return,
            FaultOutcome::Failed => {
                // The kernel's answer to a fault it cannot serve: SIGBUS BUS_ADRERR at the address.
                if super::mce::queue_to_self_signal(libc::SIGBUS, BUS_ADRERR, addr).is_ok() {
                    return;
                }
            }
            FaultOutcome::Refused => {}
        }
    }
    forward(signal, info, context);
}

/// `si_code` of a SIGBUS for an address that cannot be served.
pub const BUS_ADRERR: i32 = 2;

/// Whether `addr` is in a view, without taking the registry lock when it is contended.
fn target_at_no_lock_check(addr: usize) -> bool {
    match registry().try_read() {
        Ok(reg) => reg.range(..=addr).next_back().is_some_and(|(_, e)| addr < e.end),
        Err(_) => false,
    }
}

/// Hands a signal to the disposition installed before ours (see `pool::mcsafe::forward`).
fn forward(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let slot = if signal == libc::SIGBUS { &PREVIOUS_BUS } else { &PREVIOUS_SEGV };
    // SAFETY: every caller passes the arguments the kernel gave its signal handler.
    unsafe { forward_to(signal, info, context, slot) };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoTarget;

    impl FaultTarget for NoTarget {
        fn resolve_store_fault(&self, _addr: usize) -> FaultOutcome {
            FaultOutcome::Refused
        }
    }

    #[test]
    fn overlaps_view_is_true_exactly_for_buffers_sharing_a_byte_with_a_view_and_the_span_empties_with_the_last_view(
    ) {
        // Two views far above anything this process maps (never touched: only their addresses
        // are registered), with a gap between them.
        let (a, b) = (0x7ff0_0000_0000usize, 0x7ff0_0010_0000usize);
        let nobody = || std::sync::Weak::<NoTarget>::new() as Weak<dyn FaultTarget>;
        register(a, 0x4000, nobody());
        register(b, 0x2000, nobody());
        assert!(overlaps_view(a, 1) && overlaps_view(a + 0x3fff, 1) && overlaps_view(b + 0x1000, 64));
        assert!(overlaps_view(a - 8, 9), "a buffer ending on the view's first byte");
        assert!(!overlaps_view(a - 8, 8), "a buffer ending right before the view");
        assert!(!overlaps_view(a + 0x4000, 0x1000), "inside the span, between the views");
        assert!(!overlaps_view(b + 0x2000, 1) && !overlaps_view(0x1000, 4096), "past or below the span");
        assert!(!overlaps_view(a, 0), "an empty buffer");
        unregister(a);
        assert!(!overlaps_view(a, 0x4000) && overlaps_view(b, 1));
        unregister(b);
        assert!(!overlaps_view(b, 0x2000));
        assert_eq!(
            [VIEW_SPAN[0].load(Ordering::Acquire), VIEW_SPAN[1].load(Ordering::Acquire)],
            [usize::MAX, 0],
            "no views: an empty span"
        );
    }
}
