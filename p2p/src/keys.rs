//! Key files: the node identity (in its data dir) and the cluster key.
//!
//! Both are created on first use with mode 0600 and read on every later
//! start, so a restarted node keeps its peer id and the nodes of one machine
//! share a cluster key with no flag, as Erlang nodes share a cookie.
//!
//! Creation is race-free: the key is written to a private temporary file
//! and hard-linked to its final name, which fails if another process got
//! there first; the loser then reads the winner's key.
//!
//! - identity: `<data_dir>/identity.key`, libp2p's protobuf key encoding
//!   (an Ed25519 key).
//! - cluster key: `~/.raynode/cluster.key` unless a path is given, in the
//!   format `raynode_proto::cluster_key` defines (shared with the clients,
//!   which read it).

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;
use sha2::{Digest, Sha256};

use crate::error::KeyError;

/// Identity file name inside a node's data dir.
pub const IDENTITY_FILE: &str = "identity.key";
/// Default cluster key location, relative to `$HOME`.
pub use raynode_proto::cluster_key::DEFAULT_PATH as DEFAULT_CLUSTER_KEY;
use raynode_proto::cluster_key::MAX_FILE_BYTES as MAX_KEY_FILE_BYTES;

/// The cluster key: 32 secret bytes every member of a cluster holds. Other
/// secrets are derived from it ([`ClusterKey::derive`]); the bytes
/// themselves never leave the node, and `Debug` shows only the fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        ClusterKey(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        ClusterKey(rand::random())
    }

    /// The raw bytes, for deriving other secrets from them (e.g. the token
    /// remote drivers present). Never log them.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SHA-256 of `label`, a zero byte, the key and then `parts`: a secret
    /// for one purpose, named by `label`, that reveals nothing of the key.
    pub fn derive(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(label);
        hash.update([0u8]);
        hash.update(self.0);
        for part in parts {
            hash.update(part);
        }
        hash.finalize().into()
    }

    /// 16 hex digits that tell keys apart in logs without revealing them.
    pub fn fingerprint(&self) -> String {
        raynode_proto::hex(&self.derive(b"raynode/cluster-key-fingerprint/1", &[])[..8])
    }

    /// The key file's text (libp2p's pre-shared key format).
    pub fn to_key_file(&self) -> String {
        raynode_proto::cluster_key::file_text(&self.0)
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

/// Loads `<data_dir>/identity.key`, or creates it (0600) with a fresh
/// Ed25519 key. The data dir is created if missing.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Keypair, KeyError> {
    let path = data_dir.join(IDENTITY_FILE);
    let create = || {
        Keypair::generate_ed25519()
            .to_protobuf_encoding()
            .map_err(|e| KeyError::Malformed {
                path: path.clone(),
                reason: format!("cannot encode a new key: {e}"),
            })
    };
    let bytes = load_or_create(&path, create)?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyError::Malformed {
        path: path.clone(),
        reason: format!("not a libp2p private key: {e}"),
    })
}

/// `$HOME/.raynode/cluster.key`.
pub fn default_cluster_key_path() -> Result<PathBuf, KeyError> {
    raynode_proto::cluster_key::default_path().ok_or(KeyError::NoHome)
}

/// Loads the cluster key from `path` (default [`default_cluster_key_path`]),
/// creating the file (0600, parent dirs 0700) with a random key if it does
/// not exist.
pub fn load_or_create_cluster_key(path: Option<&Path>) -> Result<ClusterKey, KeyError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => default_cluster_key_path()?,
    };
    let bytes = load_or_create(&path, || {
        Ok(ClusterKey::generate().to_key_file().into_bytes())
    })?;
    parse_cluster_key(&bytes).map_err(|reason| KeyError::Malformed {
        path: path.clone(),
        reason,
    })
}

/// Loads the cluster key from `path` (default [`default_cluster_key_path`]);
/// never creates one: for clients, which only a node's key lets in.
pub fn load_cluster_key(path: Option<&Path>) -> Result<ClusterKey, KeyError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => default_cluster_key_path()?,
    };
    let bytes = read_key_file(&path)?;
    parse_cluster_key(&bytes).map_err(|reason| KeyError::Malformed {
        path: path.clone(),
        reason,
    })
}

/// Parses a cluster key file's contents.
pub fn parse_cluster_key(bytes: &[u8]) -> Result<ClusterKey, String> {
    raynode_proto::cluster_key::parse(bytes).map(ClusterKey)
}

/// Reads `path`, or creates it with `create()`'s bytes if it is missing.
fn load_or_create(
    path: &Path,
    create: impl FnOnce() -> Result<Vec<u8>, KeyError>,
) -> Result<Vec<u8>, KeyError> {
    let io_err = |source: io::Error| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match read_key_file(path) {
        Ok(bytes) => return Ok(bytes),
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err)?;
        }
    }
    let bytes = create()?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created key file");
            Ok(bytes)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(io_err(e)),
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let io_err = |source: io::Error| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
            reason: format!("not a key file (a regular file under {MAX_KEY_FILE_BYTES} bytes)"),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "key file is readable by other users; it should be mode 0600"
        );
    }
    fs::read(path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_across_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_identity(dir.path()).expect("create");
        let again = load_or_create_identity(dir.path()).expect("load");
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn identity_in_a_missing_dir_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        load_or_create_identity(&nested).expect("create");
        assert!(nested.join(IDENTITY_FILE).exists());
    }

    #[test]
    fn cluster_key_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cluster.key");
        let key = load_or_create_cluster_key(Some(&path)).expect("create");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("/key/swarm/psk/1.0.0/"), "{text}");
        let again = load_or_create_cluster_key(Some(&path)).expect("load");
        assert!(key == again);
    }

    #[test]
    fn cluster_key_accepts_bare_hex() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.key");
        fs::write(&path, format!("{}\n", "ab".repeat(32))).expect("write");
        let key = load_or_create_cluster_key(Some(&path)).expect("load");
        assert_eq!(key, ClusterKey::new([0xab; 32]));
        assert_eq!(key.bytes(), &[0xab; 32]);
        let file = key.to_key_file();
        assert_eq!(parse_cluster_key(file.as_bytes()).expect("own format"), key);
        assert!(
            !format!("{key:?}").contains("abab"),
            "Debug must not show the key"
        );
    }

    #[test]
    fn malformed_cluster_key_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "not a key",
            "/key/swarm/psk/1.0.0/\n/base16/\nzz\n",
            &"g".repeat(64),
        ] {
            let path = dir.path().join("bad.key");
            fs::write(&path, bad).expect("write");
            let err = load_or_create_cluster_key(Some(&path)).expect_err("must fail");
            assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("malformed key file"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
    }

    #[test]
    fn malformed_identity_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(IDENTITY_FILE), b"garbage").expect("write");
        let err = load_or_create_identity(dir.path()).expect_err("must fail");
        assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
    }
}
