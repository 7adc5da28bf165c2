//! `raynode`: start a node in the foreground, or ask a running one for its status.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use raynode::config::NodeConfig;
use raynode_proto::Resources;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A node of a raynode cluster: runs tasks, actors and an object store.
#[derive(Parser, Debug)]
#[command(name = "raynode", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Directory for this node's socket, logs, spill files and control state
    /// [default: a new directory under $XDG_RUNTIME_DIR/raynode or
    /// ~/.raynode, removed when the node stops].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Unix socket for local drivers and workers [default: <data-dir>/node.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TCP address serving remote drivers, e.g. 127.0.0.1:7001 (port 0 picks one).
    #[arg(long)]
    client_addr: Option<SocketAddr>,
    /// Serve Prometheus metrics (`GET /metrics`) on this port of 127.0.0.1,
    /// as Ray's option of the same name (`--metrics-addr` for another address).
    #[arg(long)]
    metrics_export_port: Option<u16>,
    /// Serve Prometheus metrics on this address, e.g. 0.0.0.0:8080.
    #[arg(long, conflicts_with = "metrics_export_port")]
    metrics_addr: Option<SocketAddr>,
    /// CPUs this node offers to tasks [default: the machine's core count].
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs this node offers to tasks.
    #[arg(long, default_value_t = 0.0)]
    num_gpus: f64,
    /// Custom resources as JSON, e.g. '{"special": 1}'.
    #[arg(long)]
    resources: Option<String>,
    /// Bytes of shared memory for the object store [default: as Ray, 30% of the
    /// machine's memory].
    #[arg(long)]
    object_store_memory: Option<u64>,
    /// Directory of the shared-memory object store [default: under /dev/shm].
    #[arg(long)]
    store_dir: Option<PathBuf>,
    /// Python interpreter for workers [default: $RAYNODE_PYTHON, else python3 beside this binary, else python3].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Workers kept started while idle [default: the CPU count].
    #[arg(long)]
    min_workers: Option<usize>,
    /// Stop when the parent process exits (used by `raynode.init()`).
    #[arg(long)]
    exit_with_parent: bool,
    /// p2p listen address: host:port or a multiaddr such as /ip4/0.0.0.0/tcp/4001 (port 0 picks one).
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: String,
    /// Join the cluster through this node's p2p address (host:port or multiaddr); repeatable.
    /// Without it the node starts a new cluster.
    #[arg(long)]
    join: Vec<String>,
    /// Cluster key file shared by every node of the cluster (created 0600 on first use)
    /// [default: $RAYNODE_CLUSTER_KEY, else ~/.raynode/cluster.key].
    #[arg(long)]
    cluster_key: Option<PathBuf>,
    /// Most voters of the control store's Raft group, chosen among live nodes (odd).
    /// By default 5: the group has 1, 3, then 5 voters as nodes join, so a cluster
    /// of five nodes or more survives losing any two at once.
    #[arg(long, default_value_t = 5)]
    gcs_voters: usize,
    /// Seconds a control-state write (e.g. naming an actor) may wait for a quorum
    /// before it fails with an error saying the control store has no quorum.
    #[arg(long, default_value_t = 5.0)]
    gcs_write_timeout: f64,
    /// Log filter, e.g. info or raynode=debug (RUST_LOG overrides it).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the cluster as a node sees it.
    Status {
        /// The node's client address (host:port) or Unix socket path.
        #[arg(long)]
        address: String,
        /// Cluster key file, for a TCP address [default: $RAYNODE_CLUSTER_KEY, else ~/.raynode/cluster.key].
        #[arg(long)]
        cluster_key: Option<PathBuf>,
    },
}

/// `RAYNODE_CLUSTER_KEY`, the default of `--cluster-key` (for drivers too).
fn key_from_env() -> Option<PathBuf> {
    std::env::var_os("RAYNODE_CLUSTER_KEY").map(PathBuf::from)
}

/// Ray's default: 30% of the machine's memory (/dev/shm is half of it on a
/// default Linux); 2 GiB where /proc/meminfo cannot be read.
fn default_object_store_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    total.map_or(2 << 30, |t| t / 10 * 3)
}

/// Object transfers allocate and free buffers of a few hundred KiB at a
/// high rate (multiplexer frames, noise's). With glibc's defaults such
/// buffers are returned to the kernel when freed and come back as fresh
/// zeroed pages, which costs more than the copies they hold. Fixed
/// thresholds keep freed memory in the process for reuse instead.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; it runs first thing
    // in `main`, before any other thread exists, with valid parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// A fresh, unguessable directory of the user's own: under
/// `$XDG_RUNTIME_DIR` when set (per user, memory-backed), else under
/// `~/.raynode/`, else the temp dir. The node makes it 0700.
fn default_data_dir() -> PathBuf {
    let name = format!("node-{:016x}", rand::random::<u64>());
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("raynode"))
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".raynode"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join(name)
}

fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("RAYNODE_PYTHON") {
        return PathBuf::from(p);
    }
    // Beside the binary as invoked (a venv's bin holds a link to it), then
    // beside the file it resolves to.
    let invoked = std::env::args_os().next().map(PathBuf::from);
    let candidates = [invoked, std::env::current_exe().ok()];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|exe| exe.parent().map(|dir| dir.join("python3")))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn parse_resources(json: &str) -> anyhow::Result<Resources> {
    let map: std::collections::BTreeMap<String, f64> = serde_json::from_str(json)
        .with_context(|| format!("--resources must be a JSON object of numbers, got {json:?}"))?;
    for name in ["CPU", "GPU"] {
        if map.contains_key(name) {
            bail!("--resources must not set {name}; use --num-cpus / --num-gpus");
        }
    }
    Ok(Resources(map.into_iter().collect()))
}

fn main() -> anyhow::Result<()> {
    keep_freed_buffers();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level))
        .context("--log-level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    if let Some(Command::Status {
        address,
        cluster_key,
    }) = &cli.command
    {
        let key = cluster_key.clone().or_else(key_from_env);
        return raynode::status::print(address, key.as_deref());
    }

    let num_cpus = cli.num_cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0)
    });
    let fresh_data_dir = cli.data_dir.is_none();
    let config = NodeConfig {
        data_dir: cli.data_dir.unwrap_or_else(default_data_dir),
        socket: cli.socket,
        client_addr: cli.client_addr,
        metrics_addr: cli.metrics_addr.or_else(|| {
            cli.metrics_export_port
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        }),
        num_cpus,
        num_gpus: cli.num_gpus,
        resources: match &cli.resources {
            Some(json) => parse_resources(json)?,
            None => Resources::default(),
        },
        object_store_memory: cli
            .object_store_memory
            .unwrap_or_else(default_object_store_memory),
        store_dir: cli.store_dir,
        python: cli.python.unwrap_or_else(default_python),
        min_workers: cli.min_workers.unwrap_or(num_cpus.ceil().max(1.0) as usize),
        exit_with_parent: cli.exit_with_parent,
        listen: cli.listen,
        join: cli.join,
        cluster_key: cli.cluster_key.or_else(key_from_env),
        gcs_voters: cli.gcs_voters,
        gcs_write_timeout: std::time::Duration::try_from_secs_f64(cli.gcs_write_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--gcs-write-timeout must be a number of seconds > 0")?,
        ..NodeConfig::default()
    };
    config.validate()?;
    let data_dir = config.data_dir.clone();
    let ran = raynode::run(config);
    if fresh_data_dir {
        // Nobody can start a node from it again: its name was random.
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    ran
}
