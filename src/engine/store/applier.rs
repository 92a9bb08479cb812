//! `always` mode's apply thread: it applies a writer's data op to memory
//! while the writer itself runs the fdatasync that makes the op's record
//! durable.
//!
//! Why the writer syncs and this thread applies, not the other way round:
//! the sync is on the critical path of every durable write, and the apply
//! is shorter than it (about 0.4 ms for a 10,000-series tick applied
//! directly, tens of µs for one staged: `memory/stage.rs`). With
//! the sync on a thread of its own, each write waited for two thread
//! wake-ups in series with the sync: one to start it, one to learn it had
//! ended, together about 0.1 ms on this project's VM. With the apply on a
//! thread of its own, the wake-up that starts it runs beside the sync, and
//! the writer, back from the sync, usually finds its op applied.
//!
//! Tried and dropped, on this project's 2-core VM:
//! - two apply threads, each taking half the series: ticks got slower
//!   (about 1.0 against 0.7 ms), the two threads taking the CPU time the
//!   kernel needs to finish the sync;
//! - the writer spinning up to 300 µs for its op before sleeping: runs
//!   became bimodal, 0.6 or 1.05 ms per tick. When the writer and the
//!   apply thread share a core, the spin takes the apply's time.
//!
//! Order: jobs are queued under the store's sequencer, in log order, and run
//! one at a time in queue order, so memory sees ops in the order replay
//! will. Whoever needs memory to hold every logged op (an op applied on the
//! writer's own thread, a checkpoint noting the log position, close) takes
//! the sequencer and calls [`Applier::drain`].
//!
//! Lifetimes: a job borrows the caller's op (slices of the caller's arrays).
//! [`Applier::submit`] erases that lifetime and returns a [`Ticket`] whose
//! drop waits for the job, so the borrow outlives the job on every path out
//! of the caller, errors and unwinding included.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Jobs queued so far (a job's number is its position, from 1), and
    /// jobs run to their end.
    submitted: u64,
    finished: u64,
    /// A job panicked; later waits report it.
    panicked: bool,
    stop: bool,
}

pub(crate) struct Applier {
    state: Mutex<State>,
    /// Wakes the thread: a job, or stop.
    work: Condvar,
    /// Wakes sleeping waiters: a job finished.
    done: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A queued job; dropping it waits until the job has run.
pub(crate) struct Ticket<'a> {
    applier: &'a Applier,
    number: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.applier.wait_for(self.number);
    }
}

impl Applier {
    /// Starts the thread.
    pub(crate) fn start() -> std::io::Result<Arc<Applier>> {
        let applier = Arc::new(Applier {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            thread: Mutex::new(None),
        });
        let worker = Arc::clone(&applier);
        let thread = std::thread::Builder::new()
            .name("metricstore-apply".to_owned())
            .spawn(move || worker.run())?;
        *applier.thread.lock() = Some(thread);
        Ok(applier)
    }

    fn run(&self) {
        let mut state = self.state.lock();
        loop {
            let Some(job) = state.queue.pop_front() else {
                if state.stop {
                    return;
                }
                self.work.wait(&mut state);
                continue;
            };
            drop(state);
            // Applying cannot fail; should it panic all the same, waiters
            // are told rather than left waiting forever.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = self.state.lock();
            state.panicked |= outcome.is_err();
            state.finished += 1;
            self.done.notify_all();
        }
    }

    /// Queues `job` to run after every job queued before it.
    ///
    /// # Safety
    /// The returned ticket must be dropped (which waits for the job) before
    /// anything `job` borrows goes away; leaking it is undefined behaviour.
    pub(crate) unsafe fn submit<'a>(&'a self, job: Box<dyn FnOnce() + Send + 'a>) -> Ticket<'a> {
        // SAFETY: only the lifetime changes; the caller keeps the borrows
        // alive until the ticket's drop has seen the job finish.
        let job: Job = unsafe {
            std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Box<dyn FnOnce() + Send + 'static>>(
                job,
            )
        };
        let mut state = self.state.lock();
        state.queue.push_back(job);
        state.submitted += 1;
        let number = state.submitted;
        self.work.notify_one();
        Ticket {
            applier: self,
            number,
        }
    }

    fn wait_for(&self, number: u64) {
        let mut state = self.state.lock();
        while state.finished < number {
            self.done.wait(&mut state);
        }
        if state.panicked {
            drop(state);
            panic!("applying an op to memory panicked on the apply thread");
        }
    }

    /// Returns once every job queued so far has run.
    pub(crate) fn drain(&self) {
        let submitted = self.state.lock().submitted;
        self.wait_for(submitted);
    }

    /// Runs what is queued, then ends the thread and joins it.
    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.work.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn jobs_run_in_queue_order_and_a_ticket_waits_for_its_job() {
        let applier = Applier::start().unwrap();
        let log = Mutex::new(Vec::new());
        for i in 0..100 {
            let log = &log;
            // SAFETY: the ticket is dropped at the end of this statement,
            // before `log`.
            drop(unsafe {
                applier.submit(Box::new(move || {
                    if i % 10 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    log.lock().push(i);
                }))
            });
            assert_eq!(log.lock().len(), i + 1, "ticket {i} returned early");
        }
        assert_eq!(*log.lock(), (0..100).collect::<Vec<_>>());
        applier.stop();
    }

    #[test]
    fn drain_waits_for_every_queued_job_and_stop_ends_the_thread() {
        let applier = Applier::start().unwrap();
        let count = AtomicU64::new(0);
        let slow = || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            count.fetch_add(1, Ordering::SeqCst);
        };
        // SAFETY: the tickets are dropped below, before `count`.
        let tickets = unsafe {
            [
                applier.submit(Box::new(slow)),
                applier.submit(Box::new(slow)),
            ]
        };
        applier.drain();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        drop(tickets);
        applier.stop();
        assert!(applier.thread.lock().is_none());
    }

    #[test]
    fn a_panicking_job_is_reported_to_its_waiter_instead_of_hanging_it() {
        let applier = Applier::start().unwrap();
        // SAFETY: the job borrows nothing.
        let ticket = unsafe { applier.submit(Box::new(|| panic!("injected"))) };
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ticket)));
        assert!(waited.is_err(), "the waiter saw no panic");
        applier.stop();
    }
}
