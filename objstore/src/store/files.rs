//! The store's object files, made and freed under the store's lock: a
//! new object's file (a recycled one from the pool if there is one, else a
//! new one), and a freed object's file, which goes back to the pool, waits
//! in the retired list while a reader in another process still maps it,
//! or is unlinked. Also the open file a sealed object may keep, within the
//! store's bound on such files.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::CreateError;
use crate::map::{try_lock_exclusive, ObjectMap};
use crate::policy::NoRoom;
use crate::pool::Offered;

use super::{Object, Shared, State, FILE_PREFIX, PRIVATE_FILE};

/// Freed files kept while a reader in another process still maps them.
const MAX_RETIRED: usize = 64;

/// An object's open file, counted while a sealed object keeps it.
pub(super) struct KeptFile {
    pub(super) file: File,
    _counted: Option<Counted>,
}

/// One of the store's kept files; uncounted when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl KeptFile {
    pub(super) fn new(file: File) -> Self {
        Self {
            file,
            _counted: None,
        }
    }

    /// Keeps the file past the seal if fewer than `max` are kept; else
    /// closes it.
    pub(super) fn keep(self, kept: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        kept.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()?;
        Some(Self {
            file: self.file,
            _counted: Some(Counted(Arc::clone(kept))),
        })
    }
}

impl Shared {
    /// Makes room for `size` bytes and a file of that size: a recycled one
    /// if there is one, else a new one; exclusively locked, mapped and open.
    pub(super) fn new_file(
        &self,
        st: &mut State,
        size: u64,
    ) -> Result<(PathBuf, File, Arc<ObjectMap>), CreateError> {
        let len = usize::try_from(size).map_err(|_| CreateError::TooLarge {
            requested: size,
            capacity: st.policy.capacity(),
        })?;
        self.recycle_retired(st);
        let recycled = st.pool.take(size);
        st.policy.set_recycled(st.pool.bytes());
        let steps = match st.policy.make_room(size) {
            Ok(steps) => steps,
            Err(no_room) => {
                if let Some(r) = recycled {
                    st.pool.put_back(r);
                    st.policy.set_recycled(st.pool.bytes());
                }
                return Err(match no_room {
                    NoRoom::TooLarge {
                        requested,
                        capacity,
                    } => CreateError::TooLarge {
                        requested,
                        capacity,
                    },
                    NoRoom::Full {
                        requested,
                        capacity,
                        used,
                        pinned,
                    } => CreateError::StoreFull {
                        requested,
                        capacity,
                        used,
                        pinned,
                    },
                });
            }
        };
        self.run_steps(st, &steps)?;
        if let Some(r) = recycled {
            return Ok((r.path, r.file, Arc::new(r.map)));
        }
        st.next_file += 1;
        let path = self.root.join(format!("{FILE_PREFIX}{}", st.next_file));
        let io_err = |source| CreateError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(io_err)?;
        let made = (|| {
            file.set_len(size)?;
            try_lock_exclusive(&file)?;
            ObjectMap::new(&file, len, false)
        })();
        match made {
            Ok(map) => Ok((path, file, Arc::new(map))),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(io_err(e))
            }
        }
    }

    /// Offers the retired objects nobody here maps any more to the pool.
    pub(super) fn recycle_retired(&self, st: &mut State) {
        for obj in std::mem::take(&mut st.retired) {
            if obj.map.as_ref().is_some_and(|m| Arc::strong_count(m) > 1) {
                st.retired.push(obj);
            } else {
                self.recycle(st, obj);
            }
        }
    }

    /// Frees a resident object's file: recycled if possible; retired if a
    /// reader in another process still maps it (offered again at a later
    /// create); else unlinked.
    pub(super) fn recycle(&self, st: &mut State, mut obj: Object) {
        match obj.map.take() {
            Some(map) => {
                let file = obj.file.take().map(|f| f.file);
                match st.pool.offer(&obj.path, map, file) {
                    Offered::Kept | Offered::Dropped => {}
                    Offered::Busy(map, file) => {
                        obj.map = Some(map);
                        obj.file = KeptFile::new(file).keep(&st.kept_files, st.max_kept_files);
                        Self::retire(st, obj);
                    }
                }
            }
            None => {
                let _ = fs::remove_file(&obj.path);
            }
        }
        st.policy.set_recycled(st.pool.bytes());
    }

    /// Keeps a freed object's file until it can be recycled (until then it
    /// holds the freed object, unchanged; no new reader is given its path).
    /// At most [`MAX_RETIRED`] files and the pool's budget in bytes are
    /// kept; beyond that the oldest are unlinked.
    pub(super) fn retire(st: &mut State, obj: Object) {
        let len = obj.map.as_ref().map_or(0, |m| m.len() as u64);
        if !st.pool.fits(len) {
            let _ = fs::remove_file(&obj.path);
            return;
        }
        st.retired.push(obj);
        let bytes = |st: &State| -> u64 {
            st.retired
                .iter()
                .filter_map(|o| o.map.as_ref())
                .map(|m| m.len() as u64)
                .sum()
        };
        while st.retired.len() > MAX_RETIRED || (st.retired.len() > 1 && !st.pool.fits(bytes(st))) {
            let oldest = st.retired.remove(0);
            let _ = fs::remove_file(&oldest.path);
        }
    }
}
