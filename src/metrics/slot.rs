//! The process-wide pool of thread slots: a thread leases the lowest free
//! slot the first time it records and returns it when it exits, so slots
//! stay dense under thread churn and a slot below the number of owned
//! stripes names the one stripe its thread alone writes.

use std::sync::{Mutex, PoisonError};

struct Pool {
    next: usize,
    free: Vec<usize>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    next: 0,
    free: Vec::new(),
});

/// A slot held by one live thread; returned to the pool when the thread
/// exits.
struct Lease(usize);

impl Lease {
    fn take() -> Lease {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        // Lowest free slot first: keeps the numbers dense, so threads
        // that come and go keep landing on owned stripes.
        let lowest = pool
            .free
            .iter()
            .enumerate()
            .min_by_key(|&(_, &slot)| slot)
            .map(|(at, _)| at);
        match lowest {
            Some(at) => Lease(pool.free.swap_remove(at)),
            None => {
                pool.next += 1;
                Lease(pool.next - 1)
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The mutex orders everything this thread wrote to its owned
        // stripes before the next holder's first plain load.
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        pool.free.push(self.0);
    }
}

thread_local! {
    static SLOT: Lease = Lease::take();
}

/// This thread's slot; `None` while the thread is being torn down.
#[inline(always)]
pub(super) fn current() -> Option<usize> {
    SLOT.try_with(|lease| lease.0).ok()
}
