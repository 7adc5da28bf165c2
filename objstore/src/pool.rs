//! Recycled object files: freed files kept with their pages and their
//! mapping, so a new object of the same size is written at memcpy speed
//! instead of paying the kernel for fresh zeroed pages.
//!
//! A file is recycled only if the store can lock it exclusively, which
//! proves no reader in any process maps it (readers hold a shared lock, see
//! [`crate::map`]); otherwise it is handed back, for the store to offer
//! again once that reader is gone. A recycled file keeps its name, its open
//! descriptor and that exclusive lock until its next object is sealed.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::map::{try_lock_exclusive, ObjectMap};

/// At most this many files are kept, whatever their size.
const MAX_FILES: usize = 64;

/// A freed file ready for a new object of exactly its length.
pub(crate) struct Recycled {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) map: ObjectMap,
}

impl Recycled {
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }
}

/// What became of an offered file.
pub(crate) enum Offered {
    Kept,
    /// A reader in another process still maps it; here are its map and
    /// descriptor back.
    Busy(Arc<ObjectMap>, File),
    /// Unlinked (too large, or not reusable).
    Dropped,
}

/// The recycled files, oldest first.
pub(crate) struct Pool {
    files: VecDeque<Recycled>,
    bytes: u64,
    max_bytes: u64,
}

impl Pool {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            files: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Bytes held by recycled files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes a freed object's file (at `path`, mapped by `map`, open as
    /// `file` if the store kept it): keeps it if it fits the budget and no
    /// one else maps it, hands it back if a reader in another process still
    /// maps it, else unlinks it.
    pub(crate) fn offer(
        &mut self,
        path: &Path,
        map: Arc<ObjectMap>,
        file: Option<File>,
    ) -> Offered {
        let len = map.len() as u64;
        if !self.fits(len) || Arc::strong_count(&map) > 1 {
            let _ = fs::remove_file(path);
            return Offered::Dropped;
        }
        let file = match file {
            Some(file) => file,
            None => match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => file,
                Err(_) => {
                    let _ = fs::remove_file(path);
                    return Offered::Dropped;
                }
            },
        };
        match try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => return Offered::Busy(map, file),
            Err(_) => {
                let _ = fs::remove_file(path);
                return Offered::Dropped;
            }
        }
        let Some(map) = map.into_reusable() else {
            let _ = fs::remove_file(path);
            return Offered::Dropped;
        };
        let r = Recycled {
            file,
            path: path.to_path_buf(),
            map,
        };
        self.bytes += r.len();
        self.files.push_back(r);
        while self.bytes > self.max_bytes || self.files.len() > MAX_FILES {
            self.drop_oldest();
        }
        Offered::Kept
    }

    /// Whether a file of `len` bytes could be kept at all.
    pub(crate) fn fits(&self, len: u64) -> bool {
        len <= self.max_bytes
    }

    /// A file of exactly `len` bytes, newest first (warmest in cache).
    pub(crate) fn take(&mut self, len: u64) -> Option<Recycled> {
        let at = self.files.iter().rposition(|r| r.len() == len)?;
        let r = self.files.remove(at)?;
        self.bytes -= r.len();
        Some(r)
    }

    /// Puts back a file taken but not used.
    pub(crate) fn put_back(&mut self, r: Recycled) {
        self.bytes += r.len();
        self.files.push_back(r);
    }

    /// Drops files, oldest first, until at least `n` bytes are freed.
    pub(crate) fn shrink(&mut self, n: u64) {
        let target = self.bytes.saturating_sub(n);
        while self.bytes > target && !self.files.is_empty() {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(r) = self.files.pop_front() {
            self.bytes -= r.len();
            let _ = fs::remove_file(&r.path);
        }
    }

    /// Drops every file.
    pub(crate) fn clear(&mut self) {
        while !self.files.is_empty() {
            self.drop_oldest();
        }
    }
}
