//! `Config`: where the store lives, how large it may grow, where it spills.

use std::path::PathBuf;

use crate::error::ConfigError;

/// Store configuration, passed to [`crate::Store::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Directory of the object files; should be on tmpfs (`/dev/shm`).
    pub root: PathBuf,
    /// Upper bound on bytes held in `root`: live objects plus recycled files.
    pub capacity: u64,
    /// Directory where primary copies are spilled under memory pressure.
    pub spill_dir: PathBuf,
    /// At most this many bytes of freed object files are kept mapped for
    /// reuse, which makes writing a new object of the same size as fast as a
    /// memcpy instead of paying for fresh zeroed pages. Counted in
    /// `capacity`, and given back first when room is needed.
    pub recycle_bytes: u64,
}

/// Default store capacity: 2 GiB.
pub const DEFAULT_CAPACITY: u64 = 2 << 30;

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/dev/shm/raynode-objstore"),
            capacity: DEFAULT_CAPACITY,
            spill_dir: std::env::temp_dir().join("raynode-spill"),
            recycle_bytes: DEFAULT_CAPACITY / 4,
        }
    }
}

impl Config {
    /// Sets the object directory.
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Sets the capacity in bytes; the recycle budget stays at most a quarter.
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self.recycle_bytes = self.recycle_bytes.min(capacity / 4);
        self
    }

    /// Sets the spill directory.
    pub fn with_spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = dir.into();
        self
    }

    /// Sets how many bytes of freed files may be kept for reuse.
    pub fn with_recycle_bytes(mut self, bytes: u64) -> Self {
        self.recycle_bytes = bytes;
        self
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.root.as_os_str().is_empty() || self.spill_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyPath);
        }
        if self.root == self.spill_dir {
            return Err(ConfigError::SpillIsRoot(self.root.clone()));
        }
        if self.recycle_bytes > self.capacity {
            return Err(ConfigError::RecycleOverCapacity {
                recycle: self.recycle_bytes,
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_builders_apply() {
        assert!(Config::default().validate().is_ok());
        assert!(Config::default().root.starts_with("/dev/shm"));
        let c = Config::default()
            .with_root("/dev/shm/x")
            .with_capacity(1000)
            .with_spill_dir("/tmp/y");
        assert_eq!(c.capacity, 1000);
        assert_eq!(c.recycle_bytes, 250);
        assert!(c.validate().is_ok());
        assert!(c.clone().with_capacity(0).validate().is_err());
        assert!(c.clone().with_spill_dir("/dev/shm/x").validate().is_err());
        assert!(c.with_recycle_bytes(2000).validate().is_err());
    }
}
