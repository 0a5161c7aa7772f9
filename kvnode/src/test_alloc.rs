//! A counting global allocator for tests, so "refused before allocating" is measured
//! rather than asserted by reading the code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Per thread, because the test harness runs tests in parallel threads.
    static ALLOCATED_BYTES: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: delegates every call to `System` unchanged; only adds a thread-local counter,
// which uses const initialisation and so never allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED_BYTES.try_with(|count| count.set(count.get() + layout.size())); // thread teardown: uncounted
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED_BYTES.try_with(|count| count.set(count.get() + new_size)); // thread teardown: uncounted
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `work` and returns its result with the bytes this thread allocated meanwhile.
pub fn bytes_allocated_during<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED_BYTES.with(Cell::get);
    let result = work();
    let after = ALLOCATED_BYTES.with(Cell::get);
    (result, after - before)
}
