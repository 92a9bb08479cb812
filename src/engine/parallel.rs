//! The engine's thread pool for work that splits across cores (loading and
//! writing snapshots).
//!
//! Not rayon's global pool: its threads do not survive `fork()`, and the
//! first parallel call in a forked child would wait forever. The pool here
//! remembers the process that built it and is rebuilt in a new process.

use std::sync::Arc;

use parking_lot::Mutex;

static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The pool of this process, built on first use.
pub fn pool() -> Arc<rayon::ThreadPool> {
    let pid = std::process::id();
    let mut slot = POOL.lock();
    if let Some((owner, pool)) = slot.as_ref()
        && *owner == pid
    {
        return Arc::clone(pool);
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("metricstore-{i}"))
            .build()
            .expect("building the thread pool"),
    );
    // A pool inherited through fork() has no threads; forget it unjoined.
    if let Some(inherited) = slot.replace((pid, Arc::clone(&pool))) {
        std::mem::forget(inherited);
    }
    pool
}
