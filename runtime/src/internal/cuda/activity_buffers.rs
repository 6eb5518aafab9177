//! The memory behind CUPTI's activity buffers: a small pool of buffers already mapped and
//! touched, so that CUPTI's request for a new buffer, made on the program's own launching
//! thread, takes one from a list instead of calling the allocator and faulting pages in.
//!
//! A buffer the reader has finished with goes back to the pool rather than to the allocator:
//! freeing a buffer the program's thread allocated, from the reader thread, takes the lock of
//! that thread's allocator arena, which the program may then wait on.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Alignment CUPTI requires of activity buffers.
const ALIGN: usize = 8;
/// Page size assumed when touching a new buffer's pages (smaller than any real page size
/// only costs a few extra writes).
const TOUCH_STRIDE_BYTES: usize = 4096;
/// Smallest buffer size accepted, bytes.
pub const MIN_BUFFER_BYTES: usize = 64 << 10;
/// Most memory the pool keeps for reuse, bytes (it keeps at least two buffers of any size).
pub const KEEP_BYTES: usize = 16 << 20;

/// A buffer held by the pool.
struct Free(NonNull<u8>);

// SAFETY: a pooled buffer is owned by the pool alone; nothing else reads or writes it until
// it is handed out again.
unsafe impl Send for Free {}

/// A bounded pool of equal-sized activity buffers.
pub struct BufferPool {
    /// Size of the buffers handed out from now on, bytes.
    bytes: AtomicUsize,
    /// Most buffers kept for reuse, whatever their size; more are freed.
    keep: usize,
    /// Buffers ready to hand out, all of the current size.
    free: Mutex<Vec<Free>>,
}

/// A buffer handed out: its start and size, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handed {
    /// Start of the buffer; null when memory ran out.
    pub ptr: *mut u8,
    /// Its size, bytes (0 when `ptr` is null).
    pub bytes: usize,
}

impl BufferPool {
    /// A pool handing out `bytes`-byte buffers and keeping at most `keep` of them for reuse,
    /// and no more than [`KEEP_BYTES`] (but at least two).
    pub const fn new(bytes: usize, keep: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(bytes),
            keep,
            free: Mutex::new(Vec::new()),
        }
    }

    /// Size of the buffers handed out, bytes.
    pub fn buffer_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Hand out `bytes`-byte buffers from now on (at least [`MIN_BUFFER_BYTES`]); pooled
    /// buffers of another size are freed.
    pub fn set_buffer_bytes(&self, bytes: usize) {
        let bytes = bytes.max(MIN_BUFFER_BYTES);
        let old = self.bytes.swap(bytes, Ordering::Relaxed);
        if old != bytes {
            let stale = std::mem::take(&mut *self.lock());
            for f in stale {
                free_buffer(f.0.as_ptr(), old);
            }
        }
    }

    /// Allocate and touch `count` buffers ahead of need (up to the pool's bound); returns how
    /// many the pool now holds.
    pub fn prefill(&self, count: usize) -> usize {
        let bytes = self.buffer_bytes();
        let mut fresh = Vec::new();
        for _ in 0..count.min(self.kept(bytes)) {
            let Some(p) = NonNull::new(new_buffer(bytes)) else {
                break;
            };
            touch(p.as_ptr(), bytes);
            fresh.push(Free(p));
        }
        let mut free = self.lock();
        for f in fresh {
            if free.len() < self.kept(bytes) {
                free.push(f);
            } else {
                free_buffer(f.0.as_ptr(), bytes);
            }
        }
        free.len()
    }

    /// A buffer for CUPTI: a pooled one when the pool has one and is not busy (this runs on
    /// the program's thread, which must never wait on the reader), else a new allocation.
    pub fn take(&self) -> Handed {
        let bytes = self.buffer_bytes();
        let pooled = self.free.try_lock().ok().and_then(|mut f| f.pop());
        let ptr = match pooled {
            Some(f) => f.0.as_ptr(),
            None => new_buffer(bytes),
        };
        Handed {
            ptr,
            bytes: if ptr.is_null() { 0 } else { bytes },
        }
    }

    /// Take back a buffer [`BufferPool::take`] handed out, `bytes` long: kept for reuse when
    /// it has the current size and the pool has room, freed otherwise.
    ///
    /// # Safety
    /// `ptr` must be null or a buffer this pool handed out with size `bytes`, not used
    /// afterwards.
    pub unsafe fn give_back(&self, ptr: *mut u8, bytes: usize) {
        let Some(p) = NonNull::new(ptr) else {
            return;
        };
        if bytes == self.buffer_bytes() {
            let mut free = self.lock();
            if free.len() < self.kept(bytes) {
                free.push(Free(p));
                return;
            }
        }
        free_buffer(p.as_ptr(), bytes);
    }

    /// How many buffers the pool holds now.
    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.lock().len()
    }

    /// How many `bytes`-byte buffers the pool keeps.
    fn kept(&self, bytes: usize) -> usize {
        self.keep.min((KEEP_BYTES / bytes.max(1)).max(2))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Free>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new `bytes`-byte buffer; null when memory ran out.
fn new_buffer(bytes: usize) -> *mut u8 {
    match Layout::from_size_align(bytes, ALIGN) {
        // SAFETY: the layout has a non-zero size (at least MIN_BUFFER_BYTES).
        Ok(layout) if bytes > 0 => unsafe { alloc(layout) },
        _ => std::ptr::null_mut(),
    }
}

/// Free a buffer [`new_buffer`] made with `bytes` bytes.
fn free_buffer(ptr: *mut u8, bytes: usize) {
    if let Ok(layout) = Layout::from_size_align(bytes, ALIGN) {
        // SAFETY: `ptr` came from `alloc` with this layout and is no longer used.
        unsafe { dealloc(ptr, layout) };
    }
}

/// Write one byte per page of a new buffer, so its pages are mapped before CUPTI writes.
fn touch(ptr: *mut u8, bytes: usize) {
    for offset in (0..bytes).step_by(TOUCH_STRIDE_BYTES) {
        // SAFETY: `offset < bytes`, inside the buffer just allocated; a volatile write keeps
        // the compiler from dropping the store.
        unsafe { ptr.add(offset).write_volatile(0) };
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        let bytes = self.buffer_bytes();
        for f in std::mem::take(&mut *self.lock()) {
            free_buffer(f.0.as_ptr(), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reuses_the_buffers_it_gets_back_and_keeps_no_more_than_its_bound() {
        let pool = BufferPool::new(MIN_BUFFER_BYTES, 2);
        assert_eq!(pool.prefill(5), 2, "prefill stops at the bound");
        let a = pool.take();
        let b = pool.take();
        assert_eq!(pool.pooled(), 0);
        assert!(!a.ptr.is_null() && a.bytes == MIN_BUFFER_BYTES);
        let c = pool.take();
        assert!(!c.ptr.is_null(), "an empty pool allocates");
        // SAFETY: each was handed out by this pool with this size.
        unsafe {
            pool.give_back(a.ptr, a.bytes);
            pool.give_back(b.ptr, b.bytes);
            pool.give_back(c.ptr, c.bytes);
        }
        assert_eq!(pool.pooled(), 2, "the third is freed, not kept");
        let again = pool.take();
        assert!(
            again.ptr == b.ptr || again.ptr == a.ptr,
            "a kept buffer is handed out again"
        );
        // SAFETY: handed out by this pool.
        unsafe { pool.give_back(again.ptr, again.bytes) };
    }

    #[test]
    fn a_size_change_frees_the_old_buffers_and_refuses_old_sized_returns() {
        let pool = BufferPool::new(MIN_BUFFER_BYTES, 4);
        pool.prefill(2);
        let old = pool.take();
        pool.set_buffer_bytes(2 * MIN_BUFFER_BYTES);
        assert_eq!(pool.pooled(), 0, "buffers of the old size are freed");
        // SAFETY: handed out by this pool, with the size it had then.
        unsafe { pool.give_back(old.ptr, old.bytes) };
        assert_eq!(pool.pooled(), 0, "an old-sized buffer is not pooled");
        let new = pool.take();
        assert_eq!(new.bytes, 2 * MIN_BUFFER_BYTES);
        pool.set_buffer_bytes(1);
        assert_eq!(
            pool.buffer_bytes(),
            MIN_BUFFER_BYTES,
            "sizes below the floor are raised"
        );
        // SAFETY: handed out by this pool with this size.
        unsafe { pool.give_back(new.ptr, new.bytes) };
    }

    #[test]
    fn big_buffers_are_kept_up_to_the_byte_bound_but_two_always() {
        let pool = BufferPool::new(8 << 20, 8);
        assert_eq!(pool.prefill(8), 2, "16 MiB of 8 MiB buffers");
        pool.set_buffer_bytes(1 << 20);
        assert_eq!(pool.prefill(20), 8, "the count bound, below 16 MiB");
        pool.set_buffer_bytes(64 << 20);
        assert_eq!(pool.prefill(3), 2, "two, even above the byte bound");
    }

    #[test]
    fn a_busy_pool_never_makes_the_taker_wait() {
        let pool = BufferPool::new(MIN_BUFFER_BYTES, 2);
        pool.prefill(2);
        let held = pool.lock();
        let t = pool.take();
        assert!(!t.ptr.is_null(), "allocates instead of waiting");
        assert_eq!(held.len(), 2, "the pool was not touched");
        drop(held);
        // SAFETY: handed out by this pool.
        unsafe { pool.give_back(t.ptr, t.bytes) };
        assert_eq!(pool.pooled(), 2, "the pool was full");
    }
}
