//! The node's configuration, built by the binary from its command line.

use raynode_proto::Resources;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Results up to this size travel inline (as in Ray: 100 KiB).
pub const DEFAULT_INLINE_LIMIT: u64 = 100 * 1024;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where the node keeps its socket, logs, spill files and control state.
    pub data_dir: PathBuf,
    /// The Unix socket for local clients; default `<data_dir>/`[`raynode_proto::SOCKET_FILE`].
    pub socket: Option<PathBuf>,
    /// TCP address for remote drivers; `None` serves the Unix socket only.
    pub client_addr: Option<SocketAddr>,
    /// Where the Prometheus endpoint (`GET /metrics`) listens; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the dashboard listens.
    pub dashboard_addr: DashboardAddr,
    /// Task attempts the task table keeps (the oldest dropped); 0: none.
    pub task_table_size: usize,
    /// Bytes of task specs kept to make lost results again (lineage).
    pub max_lineage_bytes: usize,
    pub num_cpus: f64,
    pub num_gpus: f64,
    /// Custom resources, besides CPU and GPU.
    pub resources: Resources,
    pub object_store_memory: u64,
    /// Directory of the shared-memory store; default under `/dev/shm`.
    pub store_dir: Option<PathBuf>,
    /// The Python interpreter that runs workers.
    pub python: PathBuf,
    /// Workers to keep started even when idle; default: the CPU count.
    pub min_workers: usize,
    /// Stop when the process that started this node exits.
    pub exit_with_parent: bool,
    pub inline_limit: u64,
    /// p2p listen address (multiaddr); port 0 picks one.
    pub listen: String,
    /// Peers to join the cluster through (`--join`); empty starts a new cluster.
    pub join: Vec<String>,
    /// The cluster key file; `None` is `~/.raynode/cluster.key`.
    pub cluster_key: Option<PathBuf>,
    /// Most voters of the control store's Raft group (odd).
    pub gcs_voters: usize,
    /// How long a control-state write waits for a quorum before it fails.
    pub gcs_write_timeout: std::time::Duration,
    /// Set for nodes started by `raynode start`: record the node in a
    /// session file once it is ready (see [`raynode_proto::session`]).
    pub session: Option<SessionConfig>,
}

/// Where a node serves its dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashboardAddr {
    /// [`DEFAULT_DASHBOARD_ADDR`], or a free port of 127.0.0.1 when that
    /// one is taken (by another node on this machine).
    Default,
    At(SocketAddr),
    Off,
}

/// Longest Unix socket path: `sun_path` holds 108 bytes with its NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Where sockets of data dirs too deep for one go: `/tmp/raynode-<uid>`
/// (made 0700 by the node).
pub fn short_socket_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to this process's user.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    std::env::temp_dir().join(format!("raynode-{uid}"))
}

/// Ray's dashboard address.
pub const DEFAULT_DASHBOARD_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8265);

/// Where and what a started node records of itself.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The directory of session files, `~/.raynode/sessions`.
    pub dir: PathBuf,
    /// Whether the data dir is the node's alone (removed when it stops).
    pub remove_data_dir: bool,
    /// Where the node's output goes, if to a file.
    pub log_file: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: std::env::temp_dir().join("raynode"),
            socket: None,
            client_addr: None,
            metrics_addr: None,
            dashboard_addr: DashboardAddr::Default,
            task_table_size: crate::engine::task_table::DEFAULT_CAPACITY,
            max_lineage_bytes: crate::engine::lineage::DEFAULT_MAX_BYTES,
            num_cpus: 1.0,
            num_gpus: 0.0,
            resources: Resources::default(),
            object_store_memory: 2 << 30,
            store_dir: None,
            python: PathBuf::from("python3"),
            min_workers: 1,
            exit_with_parent: false,
            inline_limit: DEFAULT_INLINE_LIMIT,
            listen: "/ip4/0.0.0.0/tcp/0".into(),
            join: Vec::new(),
            cluster_key: None,
            gcs_voters: 5,
            gcs_write_timeout: std::time::Duration::from_secs(5),
            session: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("--num-cpus must be a finite number >= 0, got {0}")]
    NumCpus(f64),
    #[error("--num-gpus must be a finite number >= 0, got {0}")]
    NumGpus(f64),
    #[error("resource {name:?} must be a finite number >= 0, got {value}")]
    Resource { name: String, value: f64 },
    #[error("--object-store-memory must be at least 1 MiB, got {0} bytes")]
    StoreMemory(u64),
    #[error("--gcs-voters must be an odd number >= 1, got {0}")]
    GcsVoters(usize),
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.num_cpus) {
            return Err(ConfigError::NumCpus(self.num_cpus));
        }
        if !ok(self.num_gpus) {
            return Err(ConfigError::NumGpus(self.num_gpus));
        }
        if let Some((name, value)) = self.resources.0.iter().find(|(_, v)| !ok(*v)) {
            return Err(ConfigError::Resource {
                name: name.clone(),
                value: *value,
            });
        }
        if self.object_store_memory < (1 << 20) {
            return Err(ConfigError::StoreMemory(self.object_store_memory));
        }
        if self.gcs_voters.is_multiple_of(2) {
            return Err(ConfigError::GcsVoters(self.gcs_voters));
        }
        Ok(())
    }

    /// Where worker output is kept, one file per worker and stream.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The object store's directory: `--store-dir`, else one in `/dev/shm`
    /// named after the data dir (the same across restarts of one node).
    pub fn store_root(&self) -> PathBuf {
        if let Some(dir) = &self.store_dir {
            return dir.clone();
        }
        use sha2::Digest;
        let data_dir =
            std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        let name = raynode_proto::hex(&digest[..8]);
        PathBuf::from("/dev/shm").join(format!("{}{name}", crate::store::STORE_DIR_PREFIX))
    }

    /// `--socket`, else `<data dir>/node.sock`; for a data dir too deep
    /// for a Unix socket path ([`MAX_SOCKET_PATH`] bytes), a short path of
    /// this user's named after the data dir ([`short_socket_dir`]).
    pub fn socket_path(&self) -> PathBuf {
        if let Some(socket) = &self.socket {
            return socket.clone();
        }
        let path = self.data_dir.join(raynode_proto::SOCKET_FILE);
        if path.as_os_str().len() <= MAX_SOCKET_PATH {
            return path;
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.data_dir.as_os_str().as_encoded_bytes());
        short_socket_dir().join(format!("{}.sock", raynode_proto::hex(&digest[..8])))
    }

    /// Everything this node offers: CPU, GPU and the custom resources.
    pub fn total_resources(&self) -> Resources {
        let mut total = Resources(vec![("CPU".into(), self.num_cpus)]);
        if self.num_gpus > 0.0 {
            total.set("GPU", self.num_gpus);
        }
        for (name, value) in &self.resources.0 {
            total.set(name, *value);
        }
        total
    }
}

/// This machine's memory in bytes: (total, available), from /proc/meminfo.
pub fn machine_memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_store_directory_follows_the_data_dir() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let config = |dir: &std::path::Path| NodeConfig {
            data_dir: dir.to_path_buf(),
            ..NodeConfig::default()
        };
        let root = config(a.path()).store_root();
        assert_eq!(
            root,
            config(a.path()).store_root(),
            "stable across restarts"
        );
        assert_ne!(
            root,
            config(b.path()).store_root(),
            "one directory per data dir"
        );
        assert!(root.starts_with("/dev/shm"));
        let chosen = NodeConfig {
            store_dir: Some("/tmp/mine".into()),
            ..config(a.path())
        };
        assert_eq!(chosen.store_root(), std::path::PathBuf::from("/tmp/mine"));
    }
}
