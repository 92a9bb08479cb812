//! The file operations durability needs, behind a trait.
//!
//! The write-ahead log and snapshots touch files only through [`Storage`],
//! so tests can swap the real file system for a simulated one that keeps
//! what was synced apart from what was only written, and loses the latter
//! in a simulated power cut.
//!
//! Contract (what the simulated storage must model): `append` and `create`
//! make data visible to readers at once but not durable; `sync_data` makes a
//! file's contents durable; a new, renamed or removed directory entry is
//! durable only after `sync_dir` of its directory.
//!
//! Also here: named crash points for tests (`crash_points`), and the
//! progress and cancellation of reading a store directory
//! (`progress.rs`).
//!
//! Uses: the leaves only.

pub(crate) mod progress;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A file opened for appending.
pub trait StorageFile: Send + Sync {
    /// Appends all of `data` at the end of the file.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks for everything appended so far to be written back now, without
    /// waiting and without making it durable: a hint that spreads the work
    /// of a later `sync_data` over the time the file is written.
    fn start_writeback(&self) -> io::Result<()> {
        Ok(())
    }
}

pub trait Storage: Send + Sync {
    /// Creates `dir` and its missing parents, durably: each new directory's
    /// entry in its parent is synced.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the files in `dir` (not paths), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` empty for appending; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// The whole contents of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The length of `path` in bytes.
    fn size(&self, path: &Path) -> io::Result<u64>;
    /// The contents of a file that is never modified once written (a
    /// snapshot), without copying where the storage can map it.
    fn read_immutable(&self, path: &Path) -> io::Result<Box<dyn ImmutableBytes>> {
        Ok(Box::new(self.read(path)?))
    }
    /// Makes the contents of an existing file durable (fdatasync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Cuts `path` to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Called at each named moment of a multi-step update (see
    /// [`crash_points`]), where crash tests stop the store. Only test builds
    /// and builds with the `crash-points` cargo feature contain the calls.
    #[cfg(any(test, feature = "crash-points"))]
    fn crash_point(&self, _name: &'static str) {}
}

/// The named crash points: moments between the steps of updates that must
/// survive a crash at any step. Each is passed to [`Storage::crash_point`].
pub mod crash_points {
    /// A checkpoint fixed its LSN and let writers go on; it is copying the
    /// catalog (once per range of series). Nothing of it is on disk but
    /// the new log segment.
    pub const CHECKPOINT_CATALOG: &str = "checkpoint-catalog";
    /// A snapshot block was appended to the temporary file (once per block).
    pub const SNAPSHOT_BLOCK: &str = "snapshot-block";
    /// The temporary snapshot is complete and synced; not yet renamed.
    pub const SNAPSHOT_SYNCED: &str = "snapshot-synced";
    /// The snapshot was renamed into place; the directory is not synced.
    pub const SNAPSHOT_RENAMED: &str = "snapshot-renamed";
    /// The snapshot is durable; nothing it makes unneeded is deleted yet.
    pub const SNAPSHOT_PUBLISHED: &str = "snapshot-published";
    /// About to delete an old snapshot or log segment (once per file).
    pub const LOG_TRUNCATING: &str = "log-truncating";
    /// Old files were deleted; the directory is not synced.
    pub const LOG_TRUNCATED: &str = "log-truncated";
    /// A new log segment was created empty; its header is not written.
    pub const SEGMENT_CREATED: &str = "segment-created";
    /// The new segment's header is synced; the directory is not.
    pub const SEGMENT_HEADER_SYNCED: &str = "segment-header-synced";
    /// Recovery loaded its snapshot (or none) and has not replayed the log.
    pub const RECOVERY_LOADED: &str = "recovery-loaded";
    /// Recovery replayed the log (cutting a torn tail, setting segments
    /// aside), removed temporary files, and has not synced the replayed
    /// segments.
    pub const RECOVERY_REPLAYED: &str = "recovery-replayed";
    /// Recovery synced the replayed segments; no new segment exists yet.
    pub const RECOVERY_SYNCED: &str = "recovery-synced";

    /// Every point, for tests and tools that iterate over them.
    pub const ALL: [&str; 12] = [
        CHECKPOINT_CATALOG,
        SNAPSHOT_BLOCK,
        SNAPSHOT_SYNCED,
        SNAPSHOT_RENAMED,
        SNAPSHOT_PUBLISHED,
        LOG_TRUNCATING,
        LOG_TRUNCATED,
        SEGMENT_CREATED,
        SEGMENT_HEADER_SYNCED,
        RECOVERY_LOADED,
        RECOVERY_REPLAYED,
        RECOVERY_SYNCED,
    ];
}

/// Calls [`Storage::crash_point`] in test builds and with the
/// `crash-points` feature; compiles to nothing otherwise.
macro_rules! crash_point {
    ($storage:expr, $name:ident) => {{
        #[cfg(any(test, feature = "crash-points"))]
        $crate::engine::storage::Storage::crash_point(
            $storage,
            $crate::engine::storage::crash_points::$name,
        );
    }};
}
pub(crate) use crash_point;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl StorageFile for FsFile {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        (&self.0).write_all(data)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range(2) on an open descriptor; offset 0 and
        // length 0 mean the whole file, and the flag only starts writeback.
        let result =
            unsafe { libc::sync_file_range(self.0.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// The directories to sync after creating `dir` and its missing
/// ancestors, so that every new directory's entry is durable: the parent of
/// each missing one, deepest first.
fn parents_to_sync(dir: &Path, exists: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !exists(p))
        .map(|p| match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect()
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // A power cut soon after creating a store must not lose it: a new
        // directory is durable only once its parent is synced (ext4 happens
        // to order this; stricter file systems do not).
        let parents = parents_to_sync(dir, |p| p.exists());
        fs::create_dir_all(dir)?;
        parents.iter().try_for_each(|parent| self.sync_dir(parent))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(FsFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn size(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn read_immutable(&self, path: &Path) -> io::Result<Box<dyn ImmutableBytes>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Ok(Box::new(Vec::new()));
        }
        Ok(Box::new(Mapped::new(file, len)?))
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_data()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// With the `crash-points` feature, kills the process with SIGKILL at
    /// the point named by the environment variable
    /// `METRICSTORE_CRASH_POINT` (`name` or `name:n` for its nth passage),
    /// so a test can crash a real process at an exact moment.
    #[cfg(feature = "crash-points")]
    fn crash_point(&self, name: &'static str) {
        fs_crash_point::passed(name);
    }
}

#[cfg(feature = "crash-points")]
mod fs_crash_point {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The armed point and its passage count, read once per process.
    fn armed() -> &'static Option<(String, u64)> {
        static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
        ARMED.get_or_init(|| {
            let text = std::env::var("METRICSTORE_CRASH_POINT").ok()?;
            match text.split_once(':') {
                Some((name, n)) => Some((name.to_owned(), n.parse().ok()?)),
                None => Some((text, 1)),
            }
        })
    }

    pub(super) fn passed(name: &str) {
        static SEEN: AtomicU64 = AtomicU64::new(0);
        if let Some((armed, nth)) = armed()
            && armed == name
            && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *nth
        {
            // SAFETY: kill(2) with our own pid and a valid signal number.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// The bytes of an immutable file (see [`Storage::read_immutable`]).
pub trait ImmutableBytes: Deref<Target = [u8]> + Send + Sync {
    /// Says `range` will not be read again. A memory map gives back the
    /// whole pages inside it, which then stop counting in the process's
    /// resident set (they stay in the page cache, so nothing is lost, and a
    /// later read would map them again); a copy in memory ignores it.
    fn release(&self, _range: std::ops::Range<usize>) {}

    /// A copy of `range` (within the file). A memory map reads it with
    /// `pread`: a first touch of a page of a mapping reads a whole window
    /// around it (milliseconds on a cold file), a `pread` only the range.
    fn copy(&self, range: std::ops::Range<usize>) -> io::Result<Vec<u8>> {
        Ok(self[range].to_vec())
    }

    /// Says `range` will be read soon: a memory map starts reading it in,
    /// in one go, instead of window by window as a read touches it.
    fn will_need(&self, _range: std::ops::Range<usize>) {}
}

impl ImmutableBytes for Vec<u8> {}

/// A read-only, private memory map of a whole file (kept open, to read
/// small ranges of it with `pread`).
struct Mapped {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    file: File,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    fn new(file: File, len: usize) -> io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only private mapping of `len` bytes of an
        // open file; the kernel picks the address. Only immutable files
        // (snapshots, never truncated after they are renamed into place)
        // are mapped, so the pages stay valid while mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapped { ptr, len, file })
    }
}

impl Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl ImmutableBytes for Mapped {
    fn copy(&self, range: std::ops::Range<usize>) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if range.end > self.len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let mut out = vec![0; range.len()];
        self.file.read_exact_at(&mut out, range.start as u64)?;
        Ok(out)
    }

    fn will_need(&self, range: std::ops::Range<usize>) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let first = range.start / page * page;
        let last = range.end.min(self.len);
        if first < last {
            // SAFETY: advice on pages inside the live mapping (`first` is
            // page-aligned and at most `last`, which is within it); it
            // changes no data.
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(first).cast(),
                    last - first,
                    libc::MADV_WILLNEED,
                );
            }
        }
    }

    fn release(&self, range: std::ops::Range<usize>) {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let first = range.start.div_ceil(page) * page;
        let last = range.end.min(self.len) / page * page;
        if first >= last {
            return;
        }
        // SAFETY: [first, last) lies inside this read-only, never-written
        // private file mapping: MADV_DONTNEED only unmaps its pages, and a
        // later access faults the file's unchanged bytes back in. Advice
        // only: a failure changes nothing and is ignored.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(first).cast(),
                last - first,
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_a_store_syncs_the_parent_of_every_directory_it_creates() {
        let exists = |p: &Path| p == Path::new("/data") || p == Path::new("/");
        assert_eq!(
            parents_to_sync(Path::new("/data/a/b/store"), exists),
            ["/data/a/b", "/data/a", "/data"].map(PathBuf::from)
        );
        assert_eq!(
            parents_to_sync(Path::new("rel/store"), |_| false),
            ["rel", "."].map(PathBuf::from)
        );
        assert!(parents_to_sync(Path::new("/data"), exists).is_empty());
    }
    use crate::engine::durable::tests::TempDir;

    #[test]
    fn released_pages_of_a_mapped_file_read_back_unchanged() {
        let temp = TempDir::new();
        fs::create_dir_all(temp.path()).unwrap();
        let path = temp.path().join("immutable");
        let contents: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &contents).unwrap();
        let mapped = FsStorage.read_immutable(&path).unwrap();
        assert_eq!(&mapped[..], &contents[..]);
        // Ranges that start and end inside pages, the whole file, and an
        // empty one: the bytes seen afterwards are the file's.
        for range in [10..70_000, 65_536..200_001, 0..contents.len(), 5..5] {
            mapped.release(range);
            assert_eq!(&mapped[..], &contents[..]);
        }
        let copy: Box<dyn ImmutableBytes> = Box::new(contents.clone());
        copy.release(0..contents.len());
        assert_eq!(&copy[..], &contents[..], "a copy in memory ignores release");
    }
}
