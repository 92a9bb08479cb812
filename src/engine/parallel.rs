//! The engine's thread pools for work that splits across cores (loading and
//! writing snapshots, seal passes), and how background work shares the
//! cores with writers.
//!
//! Work is done at one of two [`Urgency`]s. Work a caller waits for
//! (opening a store, an explicit checkpoint, the checkpoint of a close) runs
//! on a thread per core, flat out. Work the store starts on its own while
//! writers go on (background checkpoints and seal passes) runs on half the
//! cores, and each of its threads rests as long as it works (a [`Pacer`]):
//! it then takes at most half a core per thread from the writers, and
//! writes answered beside a checkpoint do not queue behind it. Lowering the
//! threads' nice value instead was measured and did worse: a thread of low
//! priority that is preempted while it holds a series' lock makes that
//! series' writers wait for it (see docs/benchmarks.md, serve).
//!
//! Not rayon's global pool: its threads do not survive `fork()`, and the
//! first parallel call in a forked child would wait forever. The pools here
//! remember the process that built them and are rebuilt in a new process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

type Slot = Mutex<Option<(u32, Arc<rayon::ThreadPool>)>>;

static POOL: Slot = Mutex::new(None);
static BACKGROUND: Slot = Mutex::new(None);

/// Who waits for a piece of work, and so how it may use the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// A caller waits for it: every core, without rest.
    Now,
    /// Nobody waits for it and writers go on beside it: half the cores
    /// (at least one thread), each resting as long as it works.
    Background,
}

impl Urgency {
    /// The pool to run the work on.
    pub fn pool(self) -> Arc<rayon::ThreadPool> {
        match self {
            Urgency::Now => pool(),
            Urgency::Background => in_process(&BACKGROUND, "metricstore-bg", || {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / 2).max(1)
            }),
        }
    }

    /// A pacer for one thread's share of the work.
    pub fn pacer(self) -> Pacer {
        Pacer {
            since: (self == Urgency::Background).then(Instant::now),
        }
    }
}

/// Spreads one thread's background work over time: once a slice of work
/// has taken [`Pacer::SLICE`], the thread sleeps as long as the slice took
/// (measured by the clock, so a thread that waited for a core meanwhile
/// rests longer). Does nothing for work done [`Urgency::Now`].
pub struct Pacer {
    since: Option<Instant>,
}

impl Pacer {
    /// Work between rests: short enough that writers never wait long for
    /// the core, long enough that sleeping costs little (about 50 us of
    /// wake-up per slice).
    pub const SLICE: Duration = Duration::from_millis(2);

    /// Call between units of work, holding no lock.
    pub fn pace(&mut self) {
        if let Some(since) = self.since {
            let worked = since.elapsed();
            if worked >= Self::SLICE {
                std::thread::sleep(worked);
                self.since = Some(Instant::now());
            }
        }
    }
}

/// The pool of this process with a thread per core, built on first use.
pub fn pool() -> Arc<rayon::ThreadPool> {
    in_process(&POOL, "metricstore", || 0)
}

/// The pool in `slot` if this process built it, else a new one of
/// `threads()` threads (0: one per core) named `prefix-N`.
fn in_process(
    slot: &Slot,
    prefix: &'static str,
    threads: impl FnOnce() -> usize,
) -> Arc<rayon::ThreadPool> {
    let pid = std::process::id();
    let mut slot = slot.lock();
    if let Some((owner, pool)) = slot.as_ref()
        && *owner == pid
    {
        return Arc::clone(pool);
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(move |i| format!("{prefix}-{i}"))
            .build()
            .expect("building the thread pool"),
    );
    // A pool inherited through fork() has no threads; forget it unjoined.
    if let Some(inherited) = slot.replace((pid, Arc::clone(&pool))) {
        std::mem::forget(inherited);
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_work_gets_half_the_cores_and_rests_as_long_as_it_worked() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Urgency::Now.pool().current_num_threads(), cores);
        assert_eq!(
            Urgency::Background.pool().current_num_threads(),
            (cores / 2).max(1)
        );
        assert!(Urgency::Now.pacer().since.is_none());

        let mut pacer = Urgency::Background.pacer();
        let began = pacer.since.expect("a background pacer");
        while began.elapsed() < Pacer::SLICE {
            std::hint::spin_loop();
        }
        pacer.pace(); // worked at least a slice: sleeps at least as long
        assert!(began.elapsed() >= 2 * Pacer::SLICE, "{:?}", began.elapsed());
        // The next slice is counted from the end of the rest.
        assert!(pacer.since.expect("a background pacer") >= began + 2 * Pacer::SLICE);
    }
}
