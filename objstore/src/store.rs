//! `Store`: the node's object store. One mutex guards the index, the
//! eviction policy and the recycled files; object bytes are never touched
//! under it except to check the layout and record the key at seal, and to
//! spill or restore.
//!
//! Life of an object: `create` reserves its size (making room through the
//! policy's steps), makes its file (a recycled one of the same size if
//! there is one) and returns a writer; `seal` validates the layout and makes
//! it readable; `get` pins it and returns a mapping (restoring it from the
//! spill directory first if needed); dropping the handle unpins it; `delete`
//! takes it out of the index and frees it (at once, or when the last pin
//! goes). Making and freeing the object files themselves is in `files`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Config;
use crate::error::{AbortError, CreateError, GetError, OpenError, SealError};
use crate::handle::{Created, ReadHandle, Writer};
use crate::key::ObjectKey;
use crate::layout::{self, Layout};
use crate::map::{self, try_lock_exclusive, unlock, ObjectMap};
use crate::policy::{Id, Policy, Removal, Residence, Step};
use crate::pool::Pool;
use crate::spill::SpillDir;

mod files;

use files::KeptFile;

const LOCK_FILE: &str = ".lock";
/// Object files are named this and a number, unique while the store runs.
const FILE_PREFIX: &str = "obj-";
/// Sealed objects whose file stays open, so that freeing them needs no
/// `open`: at most this many, and a quarter of the process's descriptor
/// limit (the rest are opened again when freed).
const MAX_KEPT_FILES: usize = 1024;

/// Counters and sizes of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes of objects in memory.
    pub used: u64,
    /// Bytes of freed files kept for reuse (counted in the capacity).
    pub recycled: u64,
    /// Bytes pinned by readers or being written.
    pub pinned: u64,
    /// Objects tracked (in memory or spilled).
    pub objects: usize,
    /// Objects spilled to disk.
    pub spilled_objects: usize,
    /// Bytes spilled to disk.
    pub spilled_bytes: u64,
    /// Evictions since open.
    pub evictions: u64,
    /// Spills since open.
    pub spills: u64,
    /// Restores since open.
    pub restores: u64,
}

/// One object incarnation.
struct Object {
    key: ObjectKey,
    /// Its file, named by the store (not by the key: files are reused).
    path: PathBuf,
    /// `None` while spilled.
    map: Option<Arc<ObjectMap>>,
    /// Open while unsealed (its exclusive lock keeps readers out), and
    /// after the seal as long as [`MAX_KEPT_FILES`] allows.
    file: Option<KeptFile>,
    layout: Option<Arc<Layout>>,
}

struct State {
    policy: Policy,
    index: HashMap<ObjectKey, Id>,
    objects: HashMap<Id, Object>,
    pool: Pool,
    /// Freed objects whose files a reader still held (a handle here that
    /// has just let go, or another process): offered to the pool again at
    /// each create, until no one maps them.
    retired: Vec<Object>,
    /// Sealed objects' files kept open, and how many may be.
    kept_files: Arc<AtomicUsize>,
    max_kept_files: usize,
    next_id: Id,
    /// The number in the next new file's name.
    next_file: u64,
    stats: Stats,
}

/// What the handles and the store share.
pub(crate) struct Shared {
    root: PathBuf,
    spill: SpillDir,
    state: Mutex<State>,
    _lock: File,
}

/// The node's shared-memory object store. Cheap to clone; all methods take
/// `&self` and may be called from any thread.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// Object, spill and lock files: readable by their owner only. Other users'
/// processes are kept out; the owner's own processes map the objects.
pub(crate) const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents) if need be, and makes it the owner's
/// alone (0700) even if it existed.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Removes the store directories under `parent` whose names start with
    /// `prefix` and whose owner is gone: their lock file exists and nobody
    /// holds its lock (a node killed with SIGKILL leaves such a directory).
    /// Each is removed while this call holds its lock, so a store opening
    /// the same directory at that moment fails with `Locked` rather than
    /// lose files. Returns the directories removed.
    pub fn reclaim_abandoned(parent: &Path, prefix: &str) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(parent) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let named = entry.file_name().to_string_lossy().starts_with(prefix);
            if !named || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = entry.path();
            let Ok(lock) = OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) else {
                continue;
            };
            if try_lock_exclusive(&lock).unwrap_or(false) && fs::remove_dir_all(&dir).is_ok() {
                removed.push(dir);
            }
        }
        removed
    }

    /// Opens the store: creates its directories, takes its lock (one live
    /// store per root), and removes object files left by a previous run
    /// (and the spill files).
    pub fn open(config: Config) -> Result<Store, OpenError> {
        config.validate()?;
        let root = config.root.clone();
        private_dir(&root).map_err(io_at(&root))?;
        private_dir(&config.spill_dir).map_err(io_at(&config.spill_dir))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        if !try_lock_exclusive(&lock).map_err(io_at(&lock_path))? {
            return Err(OpenError::Locked { path: root });
        }
        for entry in fs::read_dir(&root).map_err(io_at(&root))? {
            let entry = entry.map_err(io_at(&root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name
                .strip_prefix(FILE_PREFIX)
                .is_some_and(|n| n.parse::<u64>().is_ok());
            if ours {
                fs::remove_file(entry.path()).map_err(io_at(&entry.path()))?;
            }
        }
        let spill = SpillDir::new(&config.spill_dir);
        spill.clean().map_err(io_at(&config.spill_dir))?;
        let state = State {
            policy: Policy::new(config.capacity),
            index: HashMap::new(),
            objects: HashMap::new(),
            pool: Pool::new(config.recycle_bytes),
            retired: Vec::new(),
            kept_files: Arc::new(AtomicUsize::new(0)),
            max_kept_files: map::open_files_limit()
                .map_or(MAX_KEPT_FILES, |n| (n / 4) as usize)
                .min(MAX_KEPT_FILES),
            next_id: 0,
            next_file: 0,
            stats: Stats::default(),
        };
        Ok(Store {
            shared: Arc::new(Shared {
                root,
                spill,
                state: Mutex::new(state),
                _lock: lock,
            }),
        })
    }

    /// Reserves a new object of `size` bytes (its whole file, layout
    /// included), making room by evicting least recently used unpinned
    /// secondary copies and then spilling unpinned primary copies. A primary
    /// copy is never evicted, only spilled.
    pub fn create(&self, key: ObjectKey, size: u64, primary: bool) -> Result<Created, CreateError> {
        let shared = &self.shared;
        let mut st = shared.lock();
        if size == 0 {
            return Err(CreateError::Empty);
        }
        if st.index.contains_key(&key) {
            return Err(CreateError::AlreadyExists(key));
        }
        let (path, file, map) = shared.new_file(&mut st, size)?;
        let id = st.next_id;
        st.next_id += 1;
        st.policy.insert(id, size, primary);
        let guard = map
            .begin_write()
            .expect("a new or recycled map is open and unshared");
        st.index.insert(key, id);
        st.objects.insert(
            id,
            Object {
                key,
                path: path.clone(),
                map: Some(map),
                file: Some(KeptFile::new(file)),
                layout: None,
            },
        );
        Ok(Created {
            key,
            path,
            writer: Writer {
                shared: Arc::clone(shared),
                key,
                guard,
            },
        })
    }

    /// Seals an object written by another process (or by a dropped
    /// [`Writer`]): validates its layout and makes it visible to readers.
    pub fn seal(&self, key: &ObjectKey) -> Result<(), SealError> {
        self.shared.seal(key)
    }

    /// Drops an unsealed object whose writer went away.
    pub fn abort(&self, key: &ObjectKey) -> Result<(), AbortError> {
        let mut st = self.shared.lock();
        let id = *st.index.get(key).ok_or(AbortError::NotFound(*key))?;
        if st.policy.residence(id) != Some(Residence::Writing) {
            return Err(AbortError::Sealed(*key));
        }
        st.index.remove(key);
        st.policy.remove(id);
        if let Some(obj) = st.objects.remove(&id) {
            let _ = fs::remove_file(&obj.path);
        }
        Ok(())
    }

    /// A sealed object, pinned while the handle lives; restored from the
    /// spill directory first if it was spilled. `None` if there is no such
    /// sealed object.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<ReadHandle>, GetError> {
        let shared = &self.shared;
        let mut st = shared.lock();
        let Some(&id) = st.index.get(key) else {
            return Ok(None);
        };
        match st.policy.residence(id) {
            Some(Residence::Resident) => {}
            Some(Residence::Spilled) => shared.restore(&mut st, id, key)?,
            Some(Residence::Writing) | None => return Ok(None),
        }
        let obj = st.objects.get(&id).expect("indexed objects are tracked");
        let (Some(map), Some(layout)) = (obj.map.clone(), obj.layout.clone()) else {
            return Ok(None);
        };
        let path = obj.path.clone();
        st.policy.pin(id);
        Ok(Some(ReadHandle {
            shared: Arc::clone(shared),
            id,
            key: *key,
            path,
            map,
            layout,
        }))
    }

    /// Deletes an object, sealed or not. A pinned object disappears now and
    /// its memory is freed when the last handle goes. Returns whether it
    /// existed.
    pub fn delete(&self, key: &ObjectKey) -> bool {
        let shared = &self.shared;
        let mut st = shared.lock();
        let Some(id) = st.index.remove(key) else {
            return false;
        };
        match st.policy.remove(id) {
            Removal::Freed(Residence::Resident) => {
                if let Some(obj) = st.objects.remove(&id) {
                    shared.recycle(&mut st, obj);
                }
            }
            Removal::Freed(Residence::Writing) => {
                if let Some(obj) = st.objects.remove(&id) {
                    let _ = fs::remove_file(&obj.path);
                }
            }
            Removal::Freed(Residence::Spilled) => {
                st.objects.remove(&id);
                shared.spill.remove(key);
            }
            Removal::Deferred => {
                // Out of the index, so no new reader is given its path; the
                // last reader's going retires it, for the pool.
            }
            Removal::Missing => return false,
        }
        true
    }

    /// Marks or unmarks an object as a primary copy. Primary copies are
    /// spilled rather than evicted; the owner unmarks it when its last
    /// reference dies. Returns whether the object exists.
    pub fn set_primary(&self, key: &ObjectKey, primary: bool) -> bool {
        let mut st = self.shared.lock();
        let Some(&id) = st.index.get(key) else {
            return false;
        };
        st.policy.set_primary(id, primary)
    }

    /// Whether a sealed object (in memory or spilled) is here.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        let st = self.shared.lock();
        st.index.get(key).is_some_and(|&id| {
            matches!(
                st.policy.residence(id),
                Some(Residence::Resident | Residence::Spilled)
            )
        })
    }

    /// Sizes and counters.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        let (spilled_objects, spilled_bytes) = st.policy.spilled();
        Stats {
            capacity: st.policy.capacity(),
            used: st.policy.used(),
            recycled: st.policy.recycled(),
            pinned: st.policy.pinned_bytes(),
            objects: st.policy.len(),
            spilled_objects,
            spilled_bytes,
            ..st.stats.clone()
        }
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves counts that are at worst stale;
        // keep serving rather than poison every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out the policy's steps to make room.
    fn run_steps(&self, st: &mut State, steps: &[Step]) -> Result<(), CreateError> {
        for step in steps {
            match *step {
                Step::ShrinkRecycled(n) => {
                    st.pool.shrink(n);
                    st.policy.set_recycled(st.pool.bytes());
                }
                Step::Evict(id) => {
                    st.policy.evicted(id);
                    st.stats.evictions += 1;
                    // A reader in another process may still map it: its
                    // pages stay until it lets go, but the file is not reused.
                    if let Some(obj) = st.objects.remove(&id) {
                        st.index.remove(&obj.key);
                        let _ = fs::remove_file(&obj.path);
                    }
                }
                Step::Spill(id) => {
                    let obj = st.objects.get_mut(&id).expect("victims are tracked");
                    let bytes = obj
                        .map
                        .as_ref()
                        .and_then(|m| m.sealed_bytes())
                        .expect("a spill victim is resident and sealed");
                    self.spill
                        .write(&obj.key, bytes)
                        .map_err(CreateError::Spill)?;
                    obj.map = None;
                    obj.file = None;
                    let _ = fs::remove_file(&obj.path);
                    st.policy.spilled_one(id);
                    st.stats.spills += 1;
                }
            }
        }
        Ok(())
    }

    /// Brings a spilled object back into memory.
    fn restore(&self, st: &mut State, id: Id, key: &ObjectKey) -> Result<(), GetError> {
        let size = st.policy.size(id).unwrap_or(0);
        let (path, file, map) = self.new_file(st, size).map_err(|e| GetError::NoRoom {
            key: *key,
            source: Box::new(e),
        })?;
        let mut guard = map
            .begin_write()
            .expect("a new or recycled map is open and unshared");
        let read = self.spill.read_into(key, guard.as_mut_slice());
        drop(guard);
        let sealed = read
            .map_err(|source| GetError::Restore { key: *key, source })
            .and_then(|()| {
                map.seal_with(|b| seal_check(b, key)).map_err(|e| match e {
                    Some(source) => GetError::Corrupt { key: *key, source },
                    None => GetError::Restore {
                        key: *key,
                        source: io::Error::other("restored map was not open"),
                    },
                })
            });
        let layout = match sealed {
            Ok(layout) => layout,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let _ = unlock(&file);
        st.policy.restored(id);
        st.stats.restores += 1;
        self.spill.remove(key);
        let file = KeptFile::new(file).keep(&st.kept_files, st.max_kept_files);
        if let Some(obj) = st.objects.get_mut(&id) {
            obj.path = path;
            obj.map = Some(map);
            obj.file = file;
            obj.layout = Some(Arc::new(layout));
        }
        Ok(())
    }

    pub(crate) fn seal(&self, key: &ObjectKey) -> Result<(), SealError> {
        let mut st = self.lock();
        let id = *st.index.get(key).ok_or(SealError::NotFound(*key))?;
        if st.policy.residence(id) != Some(Residence::Writing) {
            return Err(SealError::AlreadySealed(*key));
        }
        let (kept_files, max_kept) = (Arc::clone(&st.kept_files), st.max_kept_files);
        let obj = st
            .objects
            .get_mut(&id)
            .expect("indexed objects are tracked");
        let map = obj.map.as_ref().expect("an unsealed object is mapped");
        let layout = map.seal_with(|b| seal_check(b, key)).map_err(|e| match e {
            Some(source) => SealError::BadLayout { key: *key, source },
            None => SealError::WriterActive(*key),
        })?;
        obj.layout = Some(Arc::new(layout));
        // Dropping the exclusive lock lets readers in other processes map it.
        // The file stays open (within bounds) for the lock attempt at delete.
        if let Some(kept) = obj.file.take() {
            let _ = unlock(&kept.file);
            obj.file = kept.keep(&kept_files, max_kept);
        }
        st.policy.seal(id);
        Ok(())
    }

    pub(crate) fn unpin(&self, id: Id) {
        let mut st = self.lock();
        if st.policy.unpin(id).is_some() {
            // The last pin of a deleted object: its file was moved out of
            // sight at delete; it goes to the pool once this handle is gone.
            if let Some(obj) = st.objects.remove(&id) {
                Self::retire(&mut st, obj);
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for obj in st.objects.values() {
            let _ = fs::remove_file(&obj.path);
            self.spill.remove(&obj.key);
        }
        for obj in &st.retired {
            let _ = fs::remove_file(&obj.path);
        }
        st.pool.clear();
    }
}

/// What a seal checks and records: the bytes follow the layout, and the
/// header names the object (for readers with a stale path).
fn seal_check(bytes: &mut [u8], key: &ObjectKey) -> Result<Layout, crate::LayoutError> {
    let layout = layout::parse(bytes)?;
    layout::stamp_key(bytes, key);
    Ok(layout)
}

#[cfg(test)]
#[path = "store_test.rs"]
mod tests;
