//! Appending records to the log: segments, rotation, group commit, poison.
//!
//! Every append hands its bytes to the operating system before it returns
//! (so a killed process loses nothing acknowledged); `sync_through` makes
//! them durable. Concurrent callers of `sync_through` share one fdatasync:
//! whoever takes the sync lock first syncs everything written so far, and
//! the others find their LSN already covered (group commit).
//!
//! A failed write or sync poisons the log: the file's state is unknown (a
//! failed fsync may have dropped dirty pages, so retrying it proves
//! nothing), and every later append or sync fails until the store is opened
//! again and recovers from what is really on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::record::{self, Fragment, MAX_FRAGMENT, RECORD_HEADER, SEGMENT_HEADER};
use super::segment_name;
use crate::engine::error::EngineError;
use crate::engine::storage::{Storage, StorageFile, crash_point};

struct Current {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    /// Bytes in the current segment, header included.
    len: u64,
    next_lsn: u64,
    /// Reused for framing, so appends do not allocate.
    buf: Vec<u8>,
}

pub struct WalWriter {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    segment_bytes: u64,
    current: Mutex<Current>,
    sync_lock: Mutex<()>,
    /// Highest LSN handed to the operating system.
    written: AtomicU64,
    /// Highest LSN known to be durable.
    synced: AtomicU64,
    /// Bytes appended since this writer was created.
    appended_bytes: AtomicU64,
    poison: Mutex<Option<String>>,
}

fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    first_lsn: u64,
) -> Result<(Arc<dyn StorageFile>, PathBuf), EngineError> {
    let path = dir.join(segment_name(first_lsn));
    let file: Arc<dyn StorageFile> = storage
        .create(&path)
        .map_err(|e| EngineError::io("creating log segment", &path, &e))?
        .into();
    crash_point!(storage, SEGMENT_CREATED);
    file.append(&record::segment_header(first_lsn))
        .and_then(|()| file.sync_data())
        .map_err(|e| EngineError::io("writing log segment header", &path, &e))?;
    crash_point!(storage, SEGMENT_HEADER_SYNCED);
    // The new name must be durable before records in it are acknowledged.
    storage
        .sync_dir(dir)
        .map_err(|e| EngineError::io("syncing directory", dir, &e))?;
    Ok((file, path))
}

impl WalWriter {
    /// Starts a new segment in `dir` whose first record will be `next_lsn`.
    pub fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        next_lsn: u64,
        segment_bytes: u64,
    ) -> Result<WalWriter, EngineError> {
        let (file, path) = create_segment(storage.as_ref(), dir, next_lsn)?;
        Ok(WalWriter {
            storage,
            dir: dir.to_owned(),
            segment_bytes,
            current: Mutex::new(Current {
                file,
                path,
                len: SEGMENT_HEADER as u64,
                next_lsn,
                buf: Vec::new(),
            }),
            sync_lock: Mutex::new(()),
            written: AtomicU64::new(next_lsn - 1),
            synced: AtomicU64::new(next_lsn - 1),
            appended_bytes: AtomicU64::new(0),
            poison: Mutex::new(None),
        })
    }

    fn check_poison(&self) -> Result<(), EngineError> {
        match self.poison.lock().as_ref() {
            Some(reason) => Err(EngineError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison_with(&self, error: EngineError) -> EngineError {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            *poison = Some(error.to_string());
        }
        error
    }

    /// The reason the log is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.poison.lock().clone()
    }

    pub fn written_lsn(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Bytes appended since this writer was created.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Relaxed)
    }

    pub fn synced_lsn(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Appends one op as a record: `encode` appends the payload to the
    /// buffer it is given and returns the record kind. Returns the LSN.
    pub fn append(&self, encode: impl FnOnce(&mut Vec<u8>) -> u8) -> Result<u64, EngineError> {
        self.check_poison()?;
        let mut current = self.current.lock();
        let current = &mut *current;
        let lsn = current.next_lsn;
        let mut buf = std::mem::take(&mut current.buf);
        buf.clear();
        buf.resize(RECORD_HEADER, 0);
        let kind = encode(&mut buf);
        if buf.len() - RECORD_HEADER <= MAX_FRAGMENT {
            record::seal(&mut buf, 0, lsn, kind, Fragment::Full);
        } else {
            buf = fragment(&buf[RECORD_HEADER..], lsn, kind);
        }
        let result = self.write(current, &buf, lsn);
        current.buf = buf;
        result.map(|()| lsn)
    }

    fn write(&self, current: &mut Current, bytes: &[u8], lsn: u64) -> Result<(), EngineError> {
        let len = bytes.len() as u64;
        // A record never straddles segments; one larger than a whole
        // segment gets a segment of its own.
        if current.len + len > self.segment_bytes && current.len > SEGMENT_HEADER as u64 {
            self.rotate(current, lsn)?;
        }
        if let Err(e) = current.file.append(bytes) {
            let error = EngineError::io("appending to log segment", &current.path, &e);
            return Err(self.poison_with(error));
        }
        current.len += len;
        self.appended_bytes.fetch_add(len, Ordering::Relaxed);
        current.next_lsn = lsn + 1;
        self.written.store(lsn, Ordering::Release);
        Ok(())
    }

    fn rotate(&self, current: &mut Current, next_lsn: u64) -> Result<(), EngineError> {
        // Every mode syncs a segment when it is finished.
        if let Err(e) = current.file.sync_data() {
            let error = EngineError::io("syncing log segment", &current.path, &e);
            return Err(self.poison_with(error));
        }
        self.synced.fetch_max(next_lsn - 1, Ordering::AcqRel);
        let (file, path) = create_segment(self.storage.as_ref(), &self.dir, next_lsn)
            .map_err(|e| self.poison_with(e))?;
        current.file = file;
        current.path = path;
        current.len = SEGMENT_HEADER as u64;
        Ok(())
    }

    /// Finishes the current segment (if it holds any record) so the next
    /// record starts a new one; returns the LSN that record will get. A
    /// checkpoint calls this so older segments hold only what it covers.
    pub fn start_segment(&self) -> Result<u64, EngineError> {
        self.check_poison()?;
        let mut current = self.current.lock();
        let next = current.next_lsn;
        if current.len > SEGMENT_HEADER as u64 {
            self.rotate(&mut current, next)?;
        }
        Ok(next)
    }

    /// Returns once every record up to `lsn` is durable.
    pub fn sync_through(&self, lsn: u64) -> Result<(), EngineError> {
        if self.synced.load(Ordering::Acquire) >= lsn {
            return self.check_poison();
        }
        let _leader = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= lsn {
            return self.check_poison();
        }
        self.check_poison()?;
        let (file, path, target) = {
            let current = self.current.lock();
            (
                Arc::clone(&current.file),
                current.path.clone(),
                self.written.load(Ordering::Acquire),
            )
        };
        if let Err(e) = file.sync_data() {
            return Err(self.poison_with(EngineError::io("syncing log segment", &path, &e)));
        }
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<(), EngineError> {
        self.sync_through(self.written_lsn())
    }
}

/// Splits a payload larger than one record into FIRST, MIDDLE..., LAST
/// records sharing `lsn`.
fn fragment(payload: &[u8], lsn: u64, kind: u8) -> Vec<u8> {
    let parts: Vec<&[u8]> = payload.chunks(MAX_FRAGMENT).collect();
    let mut out = Vec::with_capacity(payload.len() + parts.len() * RECORD_HEADER);
    for (i, part) in parts.iter().enumerate() {
        let position = match i {
            0 => Fragment::First,
            i if i + 1 == parts.len() => Fragment::Last,
            _ => Fragment::Middle,
        };
        record::frame(&mut out, lsn, kind, position, part);
    }
    out
}
