//! Memory mappings of object files, and the file locks that guard them.
//! This module holds all of the crate's `unsafe`.
//!
//! Three kinds of mapping:
//! - [`ObjectMap`] (crate-internal): the store's own shared writable
//!   mapping of an object, with a state machine (open, writing, sealing,
//!   sealed) that lets at most one in-process writer at a time hand out
//!   `&mut [u8]`, and hands out `&[u8]` only once sealed. A sealed map goes
//!   back to open (for reuse of the file) only when it is uniquely owned, so
//!   no reader can still hold a slice of it.
//! - [`ReadMap`]: a read-only mapping of a sealed object by path, for any
//!   process on the machine. It takes a shared `flock` on the file for as
//!   long as it lives, which is how the store knows not to reuse the file.
//! - [`WriteMap`]: a writable mapping by path, for a writer in another
//!   process that fills an object the store created, then asks for the seal.
//!
//! # The protocol between processes
//! Object files have names of their own (`obj-<n>`, never reused while the
//! store runs), not their keys: a freed file is reused in place for a new
//! object, with no rename, so the store hands out paths (with
//! [`crate::ReadHandle::path`]) and a reader checks the key in the mapped
//! header ([`crate::layout::KEY_AT`]), which the store writes at seal.
//! While an object is being written the store holds an exclusive `flock` on
//! its file, so a reader's shared lock fails: readers never see an unsealed
//! object. At seal the store drops its lock. When the object is later
//! deleted or evicted, the store tries to take the exclusive lock again: if
//! it gets it, no reader in any process holds the file, which may be reused;
//! if not, the file is kept (or unlinked) until they let go, and Linux keeps
//! the pages of an unlinked file for the readers that still map it. A reader
//! whose path is stale (the object was deleted and the file reused) finds
//! another key in the header and reports the object gone; until the file is
//! reused it still holds the deleted object, unchanged, which such a reader
//! may map and read.
//! Readers in other languages (the Python client) follow the same steps:
//! `open(O_RDONLY)`, `flock(LOCK_SH | LOCK_NB)`, `mmap`, compare the key in
//! the header, keep the descriptor (or a dup of it) open while mapped.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use memmap2::{Mmap, MmapMut, MmapOptions, MmapRaw};

use crate::error::MapError;
use crate::key::ObjectKey;
use crate::layout;

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const SEALING: u8 = 2;
const SEALED: u8 = 3;

/// The store's shared writable mapping of one object file.
pub(crate) struct ObjectMap {
    raw: MmapRaw,
    len: usize,
    state: AtomicU8,
}

impl std::fmt::Debug for ObjectMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectMap")
            .field("len", &self.len)
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl ObjectMap {
    /// Maps the first `len` bytes of `file` (which must be at least that
    /// long), shared and writable, in the open state.
    pub(crate) fn new(file: &File, len: usize, populate: bool) -> io::Result<Self> {
        let mut opts = MmapOptions::new();
        opts.len(len);
        if populate {
            opts.populate();
        }
        let raw = opts.map_raw(file)?;
        Ok(Self {
            raw,
            len,
            state: AtomicU8::new(OPEN),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Starts the only in-process write; `None` if sealed or already writing.
    pub(crate) fn begin_write(self: &Arc<Self>) -> Option<WriteGuard> {
        self.state
            .compare_exchange(OPEN, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(WriteGuard {
            map: Arc::clone(self),
        })
    }

    /// Seals the object if `check` accepts its bytes; `check` may still
    /// write them (the store records the key). Fails with `Err(None)` if a
    /// writer is active or it is already sealed, `Err(Some(e))` if the check
    /// rejected it (the object stays open).
    pub(crate) fn seal_with<T, E>(
        &self,
        check: impl FnOnce(&mut [u8]) -> Result<T, E>,
    ) -> Result<T, Option<E>> {
        if self
            .state
            .compare_exchange(OPEN, SEALING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(None);
        }
        // SAFETY: the state is SEALING, which only this call can leave, so no
        // `WriteGuard` exists or can be made (begin_write needs OPEN), and no
        // slice from `sealed_bytes` is alive (the map was OPEN, which it only
        // becomes when new or uniquely owned, see `into_reusable`): this
        // slice is the only one into the mapping in this process. The mapping
        // is `len` bytes of a file at least that long (see `new`), and the
        // store never shrinks a file while it is mapped. Writers in other
        // processes have finished, since they asked for this seal, and
        // readers are kept out by the exclusive lock the store holds until
        // the seal is done.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr(), self.len) };
        match check(bytes) {
            Ok(v) => {
                self.state.store(SEALED, Ordering::Release);
                Ok(v)
            }
            Err(e) => {
                self.state.store(OPEN, Ordering::Release);
                Err(Some(e))
            }
        }
    }

    /// The object's bytes, once sealed.
    pub(crate) fn sealed_bytes(&self) -> Option<&[u8]> {
        if self.state.load(Ordering::Acquire) != SEALED {
            return None;
        }
        // SAFETY: sealed is final while the map is shared: `begin_write`
        // needs OPEN, and only `into_reusable`, which takes the map by value
        // when no other `Arc` exists (so no slice borrowed from it lives),
        // reopens it. Objects are immutable once sealed: the store no longer
        // writes them and holds no writer, and other processes' writers are
        // done before they ask for the seal. The mapping covers `len` bytes
        // of a file the store keeps at least that long.
        Some(unsafe { std::slice::from_raw_parts(self.raw.as_ptr(), self.len) })
    }

    /// Reopens a sealed map for a new object in the same file, if no one
    /// else holds it.
    pub(crate) fn into_reusable(self: Arc<Self>) -> Option<ObjectMap> {
        let map = Arc::into_inner(self)?;
        map.state.store(OPEN, Ordering::Relaxed);
        Some(map)
    }
}

/// The one in-process writer of an unsealed object.
pub(crate) struct WriteGuard {
    map: Arc<ObjectMap>,
}

impl WriteGuard {
    pub(crate) fn len(&self) -> usize {
        self.map.len
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: this guard exists only while the state is WRITING, set by
        // the compare-exchange in `begin_write`, so it is the only guard and
        // no `&[u8]` is handed out (those need SEALED or SEALING, which
        // cannot be entered while WRITING). The `&mut self` receiver keeps
        // this slice unique within the guard. The mapping covers `len` bytes
        // of a file the store keeps at least that long.
        unsafe { std::slice::from_raw_parts_mut(self.map.raw.as_mut_ptr(), self.map.len) }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.map.state.store(OPEN, Ordering::Release);
    }
}

/// A read-only mapping of a sealed object file, for any process on the
/// machine. Holds a shared lock on the file while it lives.
pub struct ReadMap {
    mmap: Mmap,
    _file: File,
}

impl ReadMap {
    /// Maps the sealed object `key` at `path` (see the module docs for the
    /// protocol). Fails if it is unsealed, or if the file no longer holds
    /// that object (deleted, or reused for another).
    pub fn open(path: &Path, key: &ObjectKey) -> Result<ReadMap, MapError> {
        let io_err = |source| MapError::Io {
            path: path.to_path_buf(),
            source,
        };
        let gone = || MapError::NotSealed {
            path: path.to_path_buf(),
        };
        let file = File::open(path).map_err(io_err)?;
        if !try_lock(&file, libc::LOCK_SH).map_err(io_err)? {
            return Err(gone());
        }
        let len = usize::try_from(file.metadata().map_err(io_err)?.len()).map_err(|_| {
            MapError::TooLarge {
                path: path.to_path_buf(),
            }
        })?;
        if len < layout::FIXED_HEADER {
            return Err(gone());
        }
        // SAFETY: the file is sealed (we hold a shared lock, which the store
        // keeps out while an object is written) and so immutable: the store
        // reuses a file only once it can lock it exclusively, which our lock
        // prevents, and otherwise only unlinks it, after which the pages stay
        // valid while mapped. The store's directory is private to the node's
        // user, whose processes are trusted not to truncate or write sealed
        // objects.
        let mmap = unsafe { MmapOptions::new().len(len).map(&file) }.map_err(io_err)?;
        if !layout::has_key(&mmap, key) {
            return Err(gone());
        }
        Ok(ReadMap { mmap, _file: file })
    }

    /// The object's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.mmap
    }

    /// The object's length in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A writable mapping of an unsealed object file by path, for a writer in
/// another process. Writes are visible to the store through the shared
/// pages; drop it before asking the store to seal.
pub struct WriteMap {
    mmap: MmapMut,
    path: PathBuf,
}

impl WriteMap {
    /// Maps the whole file at `path` for writing.
    pub fn open(path: &Path) -> Result<WriteMap, MapError> {
        let io_err = |source| MapError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err)?;
        let len = usize::try_from(file.metadata().map_err(io_err)?.len()).map_err(|_| {
            MapError::TooLarge {
                path: path.to_path_buf(),
            }
        })?;
        // SAFETY: the file was created by the store for this writer and is
        // unsealed: nothing reads it until the seal this writer asks for, and
        // the store does not resize or reuse it while it is unsealed (an
        // abort only unlinks it, and unlinked pages stay mapped).
        let mmap = unsafe { MmapOptions::new().len(len).map_mut(&file) }.map_err(io_err)?;
        Ok(WriteMap {
            mmap,
            path: path.to_path_buf(),
        })
    }

    /// The object's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.mmap
    }

    /// The object's length in bytes.
    pub fn len(&self) -> usize {
        self.mmap.len()
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.mmap.is_empty()
    }

    /// The path this maps.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies `src` into `dst`, which must be as long, at close to the speed
/// of the caches and memory. Objects are written through this.
///
/// Why not `copy_from_slice`: glibc copies blocks from 2 KiB to about
/// 240 MiB with `rep movsb`, which on the CPUs we measured loses a quarter of
/// its speed when the destination sits a little ahead of the source modulo
/// 4 KiB, the usual case for a 64-byte aligned section filled from a heap
/// buffer (1 MiB: 30 GB/s against 40 for a plain vector loop). From
/// [`STREAM_COPY_MIN`] up, where the copy runs at memory speed, stores that
/// bypass the caches save reading the destination first (256 MiB: 17 GB/s
/// against 13). Without AVX2, or for small copies, this is `copy_from_slice`.
///
/// # Panics
/// If the lengths differ.
pub fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy between slices of unequal length"
    );
    #[cfg(target_arch = "x86_64")]
    if dst.len() >= VECTOR_COPY_MIN && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked just above). Both slices are
        // valid for `len` bytes, `len` is at least `VECTOR_COPY_MIN`, and they
        // cannot overlap since one of them is borrowed mutably.
        unsafe { vector::copy(dst.as_mut_ptr(), src.as_ptr(), dst.len()) };
        return;
    }
    dst.copy_from_slice(src);
}

/// Copies shorter than this go to `copy_from_slice` (glibc's vector loops
/// for small blocks are fine; the setup here would not pay).
pub const VECTOR_COPY_MIN: usize = 4 << 10;
/// Copies from this size up use stores that bypass the caches: the data
/// would not stay cached anyway (a few times the L2, on its way to the
/// 32 MiB L3 shared by every core).
pub const STREAM_COPY_MIN: usize = 12 << 20;

#[cfg(target_arch = "x86_64")]
mod vector {
    use std::arch::x86_64::{
        __m256i, _mm256_loadu_si256, _mm256_store_si256, _mm256_storeu_si256, _mm256_stream_si256,
        _mm_sfence,
    };

    const LANE: usize = 32;
    const BLOCK: usize = 4 * LANE;

    /// Copies `len` bytes from `src` to `dst`: the first and last 32 bytes
    /// with unaligned stores, everything between in 128-byte blocks of
    /// aligned stores (cache-bypassing ones from `STREAM_COPY_MIN` up).
    ///
    /// # Safety
    /// The CPU has AVX2; `src` is readable and `dst` writable for `len`
    /// bytes; they do not overlap; `len >= 2 * BLOCK`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
        debug_assert!(len >= 2 * BLOCK);
        let stream = len >= super::STREAM_COPY_MIN;
        // SAFETY: offsets stay below `len`, for which
        // the caller vouches both pointers; loads are unaligned; aligned
        // stores go to `dst + at` with `at` chosen so that address is a
        // multiple of 32; the regions do not overlap, so stores never change
        // bytes still to be loaded.
        unsafe {
            let head = _mm256_loadu_si256(src.cast::<__m256i>());
            let tail = _mm256_loadu_si256(src.add(len - LANE).cast::<__m256i>());
            _mm256_storeu_si256(dst.cast::<__m256i>(), head);
            // From the first 32-byte boundary of `dst` after its start (the
            // bytes before it are written by the head store).
            let mut at = LANE - (dst as usize % LANE);
            while at + BLOCK <= len - LANE {
                let s = src.add(at);
                let d = dst.add(at);
                let a = _mm256_loadu_si256(s.cast::<__m256i>());
                let b = _mm256_loadu_si256(s.add(LANE).cast::<__m256i>());
                let c = _mm256_loadu_si256(s.add(2 * LANE).cast::<__m256i>());
                let e = _mm256_loadu_si256(s.add(3 * LANE).cast::<__m256i>());
                if stream {
                    _mm256_stream_si256(d.cast::<__m256i>(), a);
                    _mm256_stream_si256(d.add(LANE).cast::<__m256i>(), b);
                    _mm256_stream_si256(d.add(2 * LANE).cast::<__m256i>(), c);
                    _mm256_stream_si256(d.add(3 * LANE).cast::<__m256i>(), e);
                } else {
                    _mm256_store_si256(d.cast::<__m256i>(), a);
                    _mm256_store_si256(d.add(LANE).cast::<__m256i>(), b);
                    _mm256_store_si256(d.add(2 * LANE).cast::<__m256i>(), c);
                    _mm256_store_si256(d.add(3 * LANE).cast::<__m256i>(), e);
                }
                at += BLOCK;
            }
            if stream {
                // Cache-bypassing stores are weakly ordered: make them
                // visible before anything this thread stores next (the seal).
                _mm_sfence();
            }
            while at < len - LANE {
                let v = _mm256_loadu_si256(src.add(at).cast::<__m256i>());
                _mm256_storeu_si256(dst.add(at).cast::<__m256i>(), v);
                at += LANE;
            }
            _mm256_storeu_si256(dst.add(len - LANE).cast::<__m256i>(), tail);
        }
    }
}

/// Tries to take a `flock` of `kind` (`LOCK_SH` or `LOCK_EX`) without
/// blocking; `Ok(false)` if another open file holds a conflicting lock.
pub(crate) fn try_lock(file: &File, kind: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps
    // open for the duration of the call; it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// This process's soft limit on open descriptors, if it has one.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which
    // points to a live, properly aligned local of that type.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Takes an exclusive lock, `Ok(false)` if anyone else holds one.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    try_lock(file, libc::LOCK_EX)
}

/// Drops this open file's lock. Needed even when the descriptor is closed:
/// a mapping keeps the open file, and so its lock, alive.
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    // SAFETY: as in `try_lock`: a call on a descriptor `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmpfile(name: &str, len: u64) -> (PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("objstore-map-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(len).unwrap();
        (path, f)
    }

    /// `copy` against `copy_from_slice`, over lengths around its thresholds
    /// and every relative alignment of the two buffers within 32 bytes.
    #[test]
    fn copy_matches_copy_from_slice() {
        let max = STREAM_COPY_MIN + 4096;
        let src: Vec<u8> = (0..max + 64).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut dst = vec![0u8; max + 64];
        let mut lens = vec![0, 1, 31, 255, VECTOR_COPY_MIN - 1, VECTOR_COPY_MIN];
        lens.extend([VECTOR_COPY_MIN + 1, 65_536 + 17, (1 << 20) - 3]);
        lens.extend([STREAM_COPY_MIN - 1, STREAM_COPY_MIN, STREAM_COPY_MIN + 4095]);
        for len in lens {
            for (s_off, d_off) in [(0, 0), (16, 0), (0, 16), (1, 63), (33, 7), (31, 32)] {
                dst.fill(0xee);
                copy(&mut dst[d_off..d_off + len], &src[s_off..s_off + len]);
                assert!(
                    dst[..d_off].iter().all(|&b| b == 0xee),
                    "{len} {s_off} {d_off}"
                );
                assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len]);
                assert!(
                    dst[d_off + len..].iter().all(|&b| b == 0xee),
                    "{len} {s_off} {d_off}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "unequal length")]
    fn copy_refuses_unequal_lengths() {
        copy(&mut [0u8; 8192], &[1u8; 8191]);
    }

    #[test]
    fn object_map_states() {
        let (path, f) = tmpfile("states", 100);
        let m = Arc::new(ObjectMap::new(&f, 100, false).unwrap());
        assert!(m.sealed_bytes().is_none());
        let mut w = m.begin_write().unwrap();
        assert!(m.begin_write().is_none());
        w.as_mut_slice()[..3].copy_from_slice(b"abc");
        assert!(matches!(m.seal_with(|_| Ok::<_, ()>(())), Err(None)));
        drop(w);
        assert!(matches!(m.seal_with(|_| Err::<(), _>(7)), Err(Some(7))));
        assert!(m.sealed_bytes().is_none());
        m.seal_with(|b| if &b[..3] == b"abc" { Ok(()) } else { Err(()) })
            .unwrap();
        assert_eq!(&m.sealed_bytes().unwrap()[..3], b"abc");
        assert!(m.begin_write().is_none());
        let other = Arc::clone(&m);
        let m = match m.into_reusable() {
            None => other,
            Some(_) => panic!("reused while shared"),
        };
        let reopened = Arc::new(m.into_reusable().unwrap());
        assert!(reopened.begin_write().is_some());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn read_map_refused_while_exclusively_locked_or_for_another_key() {
        let key = ObjectKey([3; 20]);
        let mut obj = layout::encode(b"", b"data", &[]);
        layout::stamp_key(&mut obj, &key);
        let (path, f) = tmpfile("lock", 0);
        std::fs::write(&path, &obj).unwrap();
        assert!(try_lock_exclusive(&f).unwrap());
        assert!(matches!(
            ReadMap::open(&path, &key),
            Err(MapError::NotSealed { .. })
        ));
        drop(f);
        assert!(matches!(
            ReadMap::open(&path, &ObjectKey([4; 20])),
            Err(MapError::NotSealed { .. })
        ));
        let r = ReadMap::open(&path, &key).unwrap();
        assert_eq!(r.as_slice(), &obj[..]);
        let f2 = File::open(&path).unwrap();
        assert!(!try_lock_exclusive(&f2).unwrap());
        drop(r);
        assert!(try_lock_exclusive(&f2).unwrap());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn write_map_writes_are_shared() {
        let (path, f) = tmpfile("write", 8);
        let mut w = WriteMap::open(&path).unwrap();
        w.as_mut_slice().copy_from_slice(b"12345678");
        drop(w);
        let m = Arc::new(ObjectMap::new(&f, 8, true).unwrap());
        m.seal_with(|_| Ok::<_, ()>(())).unwrap();
        assert_eq!(m.sealed_bytes().unwrap(), b"12345678");
        let missing = path.with_file_name("missing");
        assert!(ReadMap::open(&missing, &ObjectKey([0; 20])).is_err());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
