//! A volatile pool that records every store, flush and fence, for crash tests.
//!
//! Owns two images of the pool: what the CPU sees now, and what has provably reached persistence.
//! A cache line stored to is *dirty*; `flush` marks it *flushed*; `drain` makes flushed lines durable.
//! At every drain it can sample *crash images*: the durable image plus a random subset of the lines
//! not yet durable, exactly what power loss at that instant could leave behind.
//!
//! Must never: be used for real data, or make a line durable that was not flushed and drained
//! (except inside a sampled crash image).

use super::{assert_in_bounds, Backend, BackendKind, CACHE_LINE};
use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// One pool image that a crash at a given fence could leave.
#[derive(Clone)]
pub struct CrashImage {
    /// How many fences had completed when the crash hit (the crash is just before fence `fence`).
    pub fence: u64,
    /// Which of the sampled variants this is (0 = only durable lines, 1 = every dirty line, then random).
    pub variant: u32,
    /// The pool bytes after the crash.
    pub bytes: Vec<u8>,
}

struct RecordState {
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
    flushed: BTreeSet<u64>,
    fences: u64,
    /// Number of random subsets to sample at each fence; `None` disables sampling.
    random_subsets: Option<u32>,
    rng: u64,
    images: Vec<CrashImage>,
}

/// A recording backend; see the module documentation.
pub struct RecordingBackend {
    volatile: Box<[UnsafeCell<u8>]>,
    state: Mutex<RecordState>,
}

// SAFETY: the volatile image is plain bytes; stores go through `&self` methods that the layers
// above serialise per block, and bookkeeping is behind a mutex.
unsafe impl Send for RecordingBackend {}
// SAFETY: see `Send`.
unsafe impl Sync for RecordingBackend {}

impl RecordingBackend {
    /// A zeroed pool of `len` bytes, all durable.
    pub fn new(len: u64) -> Self {
        Self::from_image(vec![0; len as usize])
    }

    /// A pool whose volatile and durable images both start as `bytes` (for reopening a crash image).
    pub fn from_image(bytes: Vec<u8>) -> Self {
        assert!(bytes.len() as u64 % super::PAGE_SIZE == 0 && !bytes.is_empty());
        let volatile: Box<[UnsafeCell<u8>]> = bytes.iter().map(|&b| UnsafeCell::new(b)).collect();
        Self {
            volatile,
            state: Mutex::new(RecordState {
                durable: bytes,
                dirty: BTreeSet::new(),
                flushed: BTreeSet::new(),
                fences: 0,
                random_subsets: None,
                rng: 0x9E37_79B9_7F4A_7C15,
                images: Vec::new(),
            }),
        }
    }

    /// From now on, sample crash images at every fence: the durable-only image, the all-dirty image,
    /// and `random_subsets` random mixes, seeded by `seed`.
    pub fn start_sampling(&self, random_subsets: u32, seed: u64) {
        let mut st = self.lock();
        st.random_subsets = Some(random_subsets);
        st.rng = seed | 1;
        st.images.clear();
    }

    /// Stops sampling and returns every image sampled so far.
    pub fn take_images(&self) -> Vec<CrashImage> {
        let mut st = self.lock();
        st.random_subsets = None;
        std::mem::take(&mut st.images)
    }

    /// How many fences have completed.
    pub fn fences(&self) -> u64 {
        self.lock().fences
    }

    /// The image a crash right now would leave if no unflushed line happened to persist.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The image as the CPU sees it now.
    pub fn volatile_image(&self) -> Vec<u8> {
        // SAFETY: reading plain bytes; concurrent stores could tear, callers snapshot when quiescent.
        unsafe { std::slice::from_raw_parts(self.base() as *const u8, self.volatile.len()) }.to_vec()
    }

    /// Number of lines stored to but not yet durable.
    pub fn unpersisted_lines(&self) -> usize {
        self.lock().dirty.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_dirty(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut st = self.lock();
        for line in offset / CACHE_LINE..=(offset + len - 1) / CACHE_LINE {
            st.dirty.insert(line);
            st.flushed.remove(&line);
        }
    }

    fn line_bytes(&self, line: u64) -> &[u8] {
        let start = (line * CACHE_LINE) as usize;
        // SAFETY: the line lies inside the buffer (lines come from in-bounds stores).
        unsafe { std::slice::from_raw_parts(self.base().add(start) as *const u8, CACHE_LINE as usize) }
    }

    fn sample(&self, st: &mut RecordState) {
        let fence = st.fences;
        let dirty: Vec<u64> = st.dirty.iter().copied().collect();
        let mut variants: Vec<Vec<bool>> = vec![vec![false; dirty.len()], vec![true; dirty.len()]];
        for _ in 0..st.random_subsets.unwrap_or(0) {
            let mask = dirty
                .iter()
                .map(|_| {
                    st.rng ^= st.rng << 13;
                    st.rng ^= st.rng >> 7;
                    st.rng ^= st.rng << 17;
                    st.rng & 1 == 1
                })
                .collect();
            variants.push(mask);
        }
        for (variant, mask) in variants.into_iter().enumerate() {
            let mut bytes = st.durable.clone();
            for (line, keep) in dirty.iter().zip(mask) {
                if keep {
                    let start = (*line * CACHE_LINE) as usize;
                    bytes[start..start + CACHE_LINE as usize].copy_from_slice(self.line_bytes(*line));
                }
            }
            st.images.push(CrashImage { fence, variant: variant as u32, bytes });
        }
    }
}

impl Backend for RecordingBackend {
    fn len(&self) -> u64 {
        self.volatile.len() as u64
    }

    fn base(&self) -> *mut u8 {
        UnsafeCell::raw_get(self.volatile.as_ptr())
    }

    fn write(&self, offset: u64, data: &[u8]) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), offset, data.len() as u64);
        // SAFETY: in bounds; the source is a distinct Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base().add(offset as usize), data.len()) };
        self.mark_dirty(offset, data.len() as u64);
        Ok(())
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), offset, len);
        // SAFETY: in bounds.
        unsafe { std::ptr::write_bytes(self.base().add(offset as usize), byte, len as usize) };
        self.mark_dirty(offset, len);
        Ok(())
    }

    fn copy_within(&self, src: u64, dst: u64, len: u64) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), src, len);
        assert_in_bounds(self.len(), dst, len);
        assert!(src + len <= dst || dst + len <= src, "copy_within ranges overlap");
        // SAFETY: both in bounds and disjoint.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(src as usize),
                self.base().add(dst as usize),
                len as usize,
            )
        };
        self.mark_dirty(dst, len);
        Ok(())
    }

    fn flush(&self, offset: u64, len: u64) {
        assert_in_bounds(self.len(), offset, len);
        if len == 0 {
            return;
        }
        let mut st = self.lock();
        for line in offset / CACHE_LINE..=(offset + len - 1) / CACHE_LINE {
            if st.dirty.contains(&line) {
                st.flushed.insert(line);
            }
        }
    }

    fn drain(&self) {
        let mut st = self.lock();
        if st.random_subsets.is_some() {
            self.sample(&mut st);
        }
        let flushed = std::mem::take(&mut st.flushed);
        for line in flushed {
            let start = (line * CACHE_LINE) as usize;
            let bytes = self.line_bytes(line).to_vec();
            st.durable[start..start + CACHE_LINE as usize].copy_from_slice(&bytes);
            st.dirty.remove(&line);
        }
        st.fences += 1;
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Recording
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}
