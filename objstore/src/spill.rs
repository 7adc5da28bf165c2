//! The spill directory: primary copies written to disk under memory
//! pressure, one file per object named by its key, read back on get.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::key::ObjectKey;

const TMP_SUFFIX: &str = ".tmp";

/// A directory of spilled objects.
#[derive(Debug)]
pub(crate) struct SpillDir {
    dir: PathBuf,
}

impl SpillDir {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn path(&self, key: &ObjectKey) -> PathBuf {
        self.dir.join(key.to_string())
    }

    /// Writes a whole object; it appears under its name only when complete.
    pub(crate) fn write(&self, key: &ObjectKey, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key);
        let tmp = self.dir.join(format!("{key}{TMP_SUFFIX}"));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::store::PRIVATE_FILE)
                .open(&tmp)?;
            f.write_all(bytes)?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a spilled object into `dst`, which must be exactly its size.
    pub(crate) fn read_into(&self, key: &ObjectKey, dst: &mut [u8]) -> io::Result<()> {
        let mut f = File::open(self.path(key))?;
        let len = f.metadata()?.len();
        if len != dst.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("spill file is {len} bytes, object is {}", dst.len()),
            ));
        }
        f.read_exact(dst)
    }

    /// Removes a spilled object (missing is fine).
    pub(crate) fn remove(&self, key: &ObjectKey) {
        let _ = fs::remove_file(self.path(key));
    }

    /// Removes spill files left by a previous run of this store.
    pub(crate) fn clean(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stem = name.strip_suffix(TMP_SUFFIX).unwrap_or(&name);
            if ObjectKey::from_hex(stem).is_some() {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_read_clean() {
        let dir = std::env::temp_dir().join(format!("objstore-spill-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let s = SpillDir::new(&dir);
        let k = ObjectKey([3; 20]);
        s.write(&k, b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_into(&k, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let mut short = [0u8; 4];
        assert!(s.read_into(&k, &mut short).is_err());
        fs::write(dir.join("keep-me"), b"x").unwrap();
        fs::write(
            dir.join(format!("{}{TMP_SUFFIX}", ObjectKey([4; 20]))),
            b"x",
        )
        .unwrap();
        s.clean().unwrap();
        assert!(!s.path(&k).exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
