//! The engine's thread pools for work that splits across cores: one for
//! work a caller waits on (loading snapshots), one at lower priority for
//! background work (writing snapshots).
//!
//! Not rayon's global pool: its threads do not survive `fork()`, and the
//! first parallel call in a forked child would wait forever. The pools here
//! remember the process that built them and are rebuilt in a new process.

use std::sync::Arc;

use parking_lot::Mutex;

type Slot = Mutex<Option<(u32, Arc<rayon::ThreadPool>)>>;

static POOL: Slot = Mutex::new(None);
static BACKGROUND: Slot = Mutex::new(None);

/// How much lower than their process the background threads run (a nice
/// value: 10 gives them about a tenth of the CPU time of a busy thread of
/// normal priority on the same core, and all of an idle one).
pub const BACKGROUND_NICENESS: i32 = 10;

/// The pool of this process, built on first use.
pub fn pool() -> Arc<rayon::ThreadPool> {
    cached(&POOL, || {
        rayon::ThreadPoolBuilder::new().thread_name(|i| format!("metricstore-{i}"))
    })
}

/// The pool for background work of this process (checkpoints), whose
/// threads yield the cores to the rest of the process when it is busy: a
/// checkpoint encoding on every core at normal priority took the cores
/// from the writers it runs beside (see `lower_priority`).
pub fn background_pool() -> Arc<rayon::ThreadPool> {
    cached(&BACKGROUND, || {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("metricstore-bg{i}"))
            .start_handler(|_| lower_priority())
    })
}

fn cached(
    slot: &Slot,
    builder: impl FnOnce() -> rayon::ThreadPoolBuilder,
) -> Arc<rayon::ThreadPool> {
    let pid = std::process::id();
    let mut slot = slot.lock();
    if let Some((owner, pool)) = slot.as_ref()
        && *owner == pid
    {
        return Arc::clone(pool);
    }
    let pool = Arc::new(builder().build().expect("building the thread pool"));
    // A pool inherited through fork() has no threads; forget it unjoined.
    if let Some(inherited) = slot.replace((pid, Arc::clone(&pool))) {
        std::mem::forget(inherited);
    }
    pool
}

/// Sets the calling thread's nice value to the process's (its main
/// thread's) plus `BACKGROUND_NICENESS`, unless it is that low already
/// (a thread inherits its creator's: the checkpoint thread starts the
/// background pool). On Linux, where the nice value belongs to each
/// thread; elsewhere it does nothing. It cannot be raised back without
/// privileges, so only threads that do background work for good call it.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and setpriority take plain integers; who = 0 is
    // the calling thread, who = the process id its main thread. A failure
    // leaves the priority as it was, which is harmless.
    unsafe {
        let process = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        let target = process + BACKGROUND_NICENESS;
        if libc::getpriority(libc::PRIO_PROCESS, 0) < target {
            libc::setpriority(libc::PRIO_PROCESS, 0, target);
        }
    }
}
