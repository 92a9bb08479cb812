//! Progress and cancellation of opening a store directory.
//!
//! Recovering a big store loads a snapshot and replays a long log, which
//! can take seconds. An [`OpenProgress`] handle, passed to the opener in
//! [`OpenOptions::progress`](crate::engine::OpenOptions), lets another thread watch
//! the bytes read and cancel the open.
//!
//! Cancelling never changes the directory. Opening is split in two phases:
//! reading (taking the lock, loading the snapshot, replaying the log),
//! which changes no file, and changing (cutting a torn tail, setting
//! damaged segments aside, removing temporary files, syncing the log,
//! starting a new segment). The cancel flag is honoured at every snapshot
//! block and every batch of log records while reading, and once more just
//! before the first change; from then on the open runs to the end and the
//! flag is ignored. A cancelled open returns [`EngineError::Cancelled`],
//! drops what it loaded and releases the lock: the directory is exactly as
//! before, so a later open recovers the same data.
//!
//! The counters are relaxed atomics updated once per snapshot block (about
//! 4 MiB) or per [`PROGRESS_STEP`] bytes of log, so watching costs nothing
//! measurable.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::engine::error::EngineError;
use crate::engine::storage::Storage;

/// Log replay reports progress (and looks at the cancel flag) after about
/// this many bytes of records.
pub const PROGRESS_STEP: usize = 1 << 20;

/// What an open is doing. Phases only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpenPhase {
    /// Taking the lock, reading the STORE file, listing files.
    Starting,
    /// Loading the newest usable snapshot.
    Snapshot,
    /// Replaying the log written after the snapshot.
    Log,
    /// Changing the directory (torn tail, sync, new segment): no longer
    /// cancellable.
    Finishing,
    /// The store is open.
    Done,
}

impl OpenPhase {
    const ALL: [OpenPhase; 5] = [
        OpenPhase::Starting,
        OpenPhase::Snapshot,
        OpenPhase::Log,
        OpenPhase::Finishing,
        OpenPhase::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpenPhase::Starting => "starting",
            OpenPhase::Snapshot => "snapshot",
            OpenPhase::Log => "log",
            OpenPhase::Finishing => "finishing",
            OpenPhase::Done => "done",
        }
    }
}

/// Progress of an open, shared (through `Arc`) with whoever watches it.
///
/// `total` is the bytes recovery will read: the snapshot it loads and the
/// log segments it replays (set before either starts, raised if a damaged
/// snapshot makes it fall back to an older one or a segment grew since it
/// was measured); `done` counts them as they are read. After a successful
/// open `done == total`. A handle describes the last open it was passed to.
#[derive(Debug)]
pub struct OpenProgress {
    total: AtomicU64,
    done: AtomicU64,
    cancelled: AtomicBool,
    phase: AtomicU8,
    /// Tests: cancel once `done` reaches this (`u64::MAX`: never).
    #[cfg(test)]
    cancel_at: AtomicU64,
}

impl Default for OpenProgress {
    fn default() -> Self {
        OpenProgress {
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            phase: AtomicU8::new(OpenPhase::Starting as u8),
            #[cfg(test)]
            cancel_at: AtomicU64::new(u64::MAX),
        }
    }
}

impl OpenProgress {
    pub fn new() -> OpenProgress {
        OpenProgress::default()
    }

    /// Bytes recovery reads in all (0 until the open has measured them).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes read so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn phase(&self) -> OpenPhase {
        OpenPhase::ALL[usize::from(self.phase.load(Ordering::Relaxed))]
    }

    /// Asks the open to stop. It does so at its next check if it has not
    /// started changing the directory (then it returns
    /// [`EngineError::Cancelled`]); otherwise it finishes normally.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Tests: cancels the open once `done` reaches `bytes`.
    #[cfg(test)]
    pub(crate) fn cancel_when_done_reaches(&self, bytes: u64) {
        self.cancel_at.store(bytes, Ordering::Relaxed);
    }
}

/// A cancelled open, before it changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cancelled;

impl From<Cancelled> for EngineError {
    fn from(_: Cancelled) -> EngineError {
        EngineError::Cancelled
    }
}

/// What recovery reports to: an [`OpenProgress`] if the caller gave one.
/// Without one every call is a no-op, and nothing is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracker<'a>(Option<&'a OpenProgress>);

impl<'a> Tracker<'a> {
    pub(crate) fn new(progress: Option<&'a OpenProgress>) -> Tracker<'a> {
        Tracker(progress)
    }

    /// Whether anyone watches (else totals need not be measured).
    pub(crate) fn watched(self) -> bool {
        self.0.is_some()
    }

    /// Starts describing a new open.
    pub(crate) fn start(self) {
        if let Some(p) = self.0 {
            p.total.store(0, Ordering::Relaxed);
            p.done.store(0, Ordering::Relaxed);
            p.phase.store(OpenPhase::Starting as u8, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_total(self, total: u64) {
        if let Some(p) = self.0 {
            p.total.store(total, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_done(self, done: u64) {
        if let Some(p) = self.0 {
            p.done.store(done, Ordering::Relaxed);
        }
    }

    /// Moves to `phase` (never back).
    pub(crate) fn enter(self, phase: OpenPhase) {
        if let Some(p) = self.0 {
            p.phase.fetch_max(phase as u8, Ordering::Relaxed);
        }
    }

    /// `Err` if the open was cancelled and has not started changing files.
    pub(crate) fn check(self) -> Result<(), Cancelled> {
        match self.0 {
            Some(p) if p.is_cancelled() && p.phase() < OpenPhase::Finishing => Err(Cancelled),
            _ => Ok(()),
        }
    }

    /// Counts `bytes` read, then checks for a cancel.
    pub(crate) fn advance(self, bytes: u64) -> Result<(), Cancelled> {
        let Some(p) = self.0 else {
            return Ok(());
        };
        let done = p.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        // A segment a live writer appended to since it was measured.
        p.total.fetch_max(done, Ordering::Relaxed);
        #[cfg(test)]
        if done >= p.cancel_at.load(Ordering::Relaxed) {
            p.cancel();
        }
        self.check()
    }

    /// Counts whole files that recovery passes over without reading them
    /// (segments set aside by point-in-time recovery).
    pub(crate) fn skip_files<'n>(
        self,
        storage: &dyn Storage,
        dir: &Path,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<(), Cancelled> {
        if !self.watched() {
            return Ok(());
        }
        let bytes = names
            .into_iter()
            .map(|name| storage.size(&dir.join(name)).unwrap_or(0))
            .sum();
        self.advance(bytes)
    }

    /// The last check before the open changes the directory; after it,
    /// cancelling has no effect and the open runs to the end.
    pub(crate) fn begin_changes(self) -> Result<(), Cancelled> {
        self.check()?;
        self.enter(OpenPhase::Finishing);
        Ok(())
    }
}

#[cfg(test)]
#[path = "open_progress_tests.rs"]
mod tests;
