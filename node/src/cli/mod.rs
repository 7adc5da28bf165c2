//! The `raynode` command line: the node's options, and Ray's cluster verbs.
//!
//! - `raynode [OPTIONS]` runs a node in the foreground ([`NodeArgs`]);
//! - `raynode start` runs one in the background and records it in a
//!   session file ([`start`]); `raynode start --block` in the foreground;
//! - `raynode stop` stops the nodes this user started on this machine
//!   ([`stop`]);
//! - `raynode status` prints the cluster as a node sees it
//!   ([`crate::status`]).
//!
//! Options keep Ray's spelling where Ray has one; each help text says where
//! raynode's meaning differs from Ray's.

pub mod start;
pub mod state;
pub mod stop;

use crate::config::{DashboardAddr, NodeConfig, SessionConfig};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use raynode_proto::Resources;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A node of a raynode cluster: runs tasks, actors and an object store.
///
/// Without a command, runs a node in the foreground (`--join` to join a
/// cluster). Ray's verbs `start`, `stop` and `status` manage nodes in the
/// background. There is no head node: every node is alike, and any node
/// lets others join and drivers connect.
#[derive(Parser, Debug)]
#[command(
    name = "raynode",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node in the background (as Ray's `ray start`), recorded so that
    /// `ray.init()` on this machine connects to it and `raynode stop` stops it.
    ///
    /// Without --address the node is the first of a new cluster; with it, the
    /// node joins the cluster of that node. Unlike Ray, the first node is no
    /// head: once others have joined, any of them can be the one to join
    /// through or to connect a driver to, and the first may go away.
    Start(Box<StartArgs>),
    /// Stop every node this user started with `raynode start` on this
    /// machine: SIGTERM, then SIGKILL after --grace-period (as Ray's `ray stop`).
    Stop(StopArgs),
    /// Print the cluster as a node sees it.
    Status(StatusArgs),
    /// List the cluster's nodes, actors, tasks, objects, jobs or placement
    /// groups (as Ray's `ray list`); any node answers for the whole cluster.
    List(state::ListArgs),
    /// Count the cluster's tasks, actors or objects by name and state (as
    /// Ray's `ray summary`).
    Summary(state::SummaryArgs),
    /// Print the cluster's event log: nodes joined and lost, actors
    /// restarted and dead, failed tasks, placement groups.
    Events(state::EventsArgs),
    /// Print a node's log, or a worker's output (by pid, actor or worker
    /// number), from any node of the cluster.
    Logs(state::LogsArgs),
    /// Print the token a dashboard served off loopback asks for (made from
    /// the cluster key).
    DashboardToken(state::TokenArgs),
}

/// The options of a node, for the foreground form and for `raynode start`.
#[derive(Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// Directory for this node's socket, logs, spill files and control state
    /// [default: a new directory under $XDG_RUNTIME_DIR/raynode or
    /// ~/.raynode, removed when the node stops].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Unix socket for local drivers and workers [default: <data-dir>/node.sock,
    /// or /tmp/raynode-<uid>/<hash>.sock for a data dir too deep for a socket path].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// TCP address serving remote drivers, e.g. 127.0.0.1:7001 (port 0 picks one).
    #[arg(long)]
    pub client_addr: Option<SocketAddr>,
    /// Serve Prometheus metrics (`GET /metrics`) on this port of 127.0.0.1,
    /// as Ray's option of the same name (`--metrics-addr` for another address).
    #[arg(long)]
    pub metrics_export_port: Option<u16>,
    /// Serve Prometheus metrics on this address, e.g. 0.0.0.0:8080.
    #[arg(long, conflicts_with = "metrics_export_port")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the dashboard (a web page, its JSON API and /metrics) on this
    /// address, or `off`. Port 0 picks one. Off loopback it asks for the
    /// token `raynode dashboard-token` prints [default: 127.0.0.1:8265,
    /// or a free port of 127.0.0.1 if another node has that one].
    #[arg(long, value_parser = parse_dashboard_addr)]
    pub dashboard_addr: Option<DashboardAddr>,
    /// Task attempts this node's task table keeps for the state API and
    /// the dashboard (the oldest dropped; a few hundred bytes each); 0
    /// keeps none.
    #[arg(long, default_value_t = crate::engine::task_table::DEFAULT_CAPACITY)]
    pub task_table_size: usize,
    /// Bytes of task specs this node keeps to make lost results again
    /// (lineage): a task whose stored results live on another node is kept
    /// until they are freed, with holds on its arguments. Past this the
    /// oldest are dropped, and their results, if lost, raise
    /// ObjectReconstructionFailedLineageEvictedError.
    #[arg(long, default_value_t = crate::engine::lineage::DEFAULT_MAX_BYTES)]
    pub max_lineage_bytes: usize,
    /// CPUs this node offers to tasks [default: the machine's core count].
    #[arg(long)]
    pub num_cpus: Option<f64>,
    /// GPUs this node offers to tasks [default: 0; unlike Ray, GPUs are not detected].
    #[arg(long)]
    pub num_gpus: Option<f64>,
    /// Custom resources as JSON, e.g. '{"special": 1}'.
    #[arg(long)]
    pub resources: Option<String>,
    /// Bytes of shared memory for the object store [default: as Ray, 30% of the
    /// machine's memory].
    #[arg(long)]
    pub object_store_memory: Option<u64>,
    /// Directory of the shared-memory object store [default: under /dev/shm].
    #[arg(long)]
    pub store_dir: Option<PathBuf>,
    /// Python interpreter for workers [default: $RAYNODE_PYTHON, else python3 beside this binary, else python3].
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Workers kept started while idle [default: the CPU count].
    #[arg(long)]
    pub min_workers: Option<usize>,
    /// Stop when the parent process exits (used by `raynode.init()`).
    #[arg(long)]
    pub exit_with_parent: bool,
    /// p2p listen address: host:port or a multiaddr such as /ip4/0.0.0.0/tcp/4001
    /// (port 0 picks one) [default: /ip4/0.0.0.0/tcp/0; for `raynode start`,
    /// --node-ip-address and --port].
    #[arg(long)]
    pub listen: Option<String>,
    /// Join the cluster through this node's p2p address (host:port or multiaddr); repeatable.
    /// Without it the node starts a new cluster.
    #[arg(long)]
    pub join: Vec<String>,
    /// Cluster key file shared by every node of the cluster (created 0600 on first use)
    /// [default: $RAYNODE_CLUSTER_KEY, else ~/.raynode/cluster.key].
    #[arg(long)]
    pub cluster_key: Option<PathBuf>,
    /// Most voters of the control store's Raft group, chosen among live nodes (odd).
    /// By default 5: the group has 1, 3, then 5 voters as nodes join, so a cluster
    /// of five nodes or more survives losing any two at once.
    #[arg(long, default_value_t = 5)]
    pub gcs_voters: usize,
    /// Seconds a control-state write (e.g. naming an actor) may wait for a quorum
    /// before it fails with an error saying the control store has no quorum.
    #[arg(long, default_value_t = 5.0)]
    pub gcs_write_timeout: f64,
    /// Log filter, e.g. info or raynode=debug (RUST_LOG overrides it).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Record this node in a session file once ready (set by `raynode start`).
    #[arg(long, hide = true)]
    pub session: bool,
    /// Remove the data dir when the node stops (set by `raynode start`).
    #[arg(long, hide = true)]
    pub remove_data_dir: bool,
}

/// `raynode start`: Ray's options, and every option of a node.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Join the cluster through this node: host:port of its p2p address, or
    /// the multiaddr it printed. As Ray's --address, but any node of the
    /// cluster will do, not only the first. Without it, a new cluster starts.
    #[arg(long)]
    pub address: Option<String>,
    /// Accepted for Ray's sake, and changes nothing: raynode has no head
    /// node. A node started without --address starts a new cluster.
    #[arg(long)]
    pub head: bool,
    /// This node's p2p port, which other nodes join through [default: 6379 as
    /// Ray's head, or any free port if 6379 is taken]. In Ray only the
    /// head's GCS has this port; here every node has one.
    #[arg(long)]
    pub port: Option<u16>,
    /// The IP address this node listens on and gives others [default: every
    /// interface, 0.0.0.0].
    #[arg(long)]
    pub node_ip_address: Option<std::net::IpAddr>,
    /// The TCP port serving remote drivers (`ray.init(address="host:port")`)
    /// [default: 10001 as Ray's client server, or any free port if taken;
    /// 0 picks one]. Same as --client-addr <node-ip-address>:<port>. Unlike
    /// Ray Client, a remote driver must hold the cluster key.
    #[arg(long)]
    pub ray_client_server_port: Option<u16>,
    /// Run the node in the foreground until Ctrl-C or SIGTERM instead of in
    /// the background (as Ray's --block); it is recorded all the same.
    #[arg(long)]
    pub block: bool,
    /// Accepted for Ray's sake: raynode collects no usage statistics.
    #[arg(long)]
    pub disable_usage_stats: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Stop at once with SIGKILL (workers too) instead of SIGTERM first.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Seconds to wait for nodes to stop after SIGTERM before SIGKILL (as Ray's).
    #[arg(long, default_value_t = 16.0)]
    pub grace_period: f64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node's client address (host:port) or Unix socket path [default:
    /// the first node `raynode start` started on this machine].
    #[arg(long)]
    pub address: Option<String>,
    /// Cluster key file, for a TCP address [default: $RAYNODE_CLUSTER_KEY, else ~/.raynode/cluster.key].
    #[arg(long)]
    pub cluster_key: Option<PathBuf>,
}

/// `RAYNODE_CLUSTER_KEY`, the default of `--cluster-key` (for drivers too).
pub fn key_from_env() -> Option<PathBuf> {
    std::env::var_os("RAYNODE_CLUSTER_KEY").map(PathBuf::from)
}

/// Ray's default: 30% of the machine's memory (/dev/shm is half of it on a
/// default Linux); 2 GiB where /proc/meminfo cannot be read.
fn default_object_store_memory() -> u64 {
    match crate::config::machine_memory().0 {
        0 => 2 << 30,
        total => total / 10 * 3,
    }
}

/// A fresh, unguessable directory of the user's own: under
/// `$XDG_RUNTIME_DIR` when set (per user, memory-backed), else under
/// `~/.raynode/`, else the temp dir. The node makes it 0700.
pub fn default_data_dir() -> PathBuf {
    let name = format!("node-{:016x}", rand::random::<u64>());
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("raynode"))
        .or_else(raynode_proto::session::user_dir)
        .unwrap_or_else(std::env::temp_dir);
    base.join(name)
}

/// $RAYNODE_PYTHON, else python3 beside this binary (as invoked: a venv's
/// bin may hold a link to it; then the file it resolves to), else python3.
pub fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("RAYNODE_PYTHON") {
        return PathBuf::from(p);
    }
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

impl NodeArgs {
    /// The node's configuration, checked; a fresh data dir when none is given.
    pub fn to_config(&self) -> anyhow::Result<NodeConfig> {
        let num_cpus = self.num_cpus.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as f64)
                .unwrap_or(1.0)
        });
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let session = match self.session {
            true => Some(SessionConfig {
                dir: raynode_proto::session::sessions_dir()
                    .context("HOME is not set, so there is no ~/.raynode for the session file")?,
                remove_data_dir: self.removes_data_dir(),
                log_file: Some(start::log_path(&data_dir)).filter(|p| p.exists()),
            }),
            false => None,
        };
        let config = NodeConfig {
            data_dir,
            socket: self.socket.clone(),
            client_addr: self.client_addr,
            dashboard_addr: self.dashboard_addr.unwrap_or(DashboardAddr::Default),
            task_table_size: self.task_table_size,
            max_lineage_bytes: self.max_lineage_bytes,
            metrics_addr: self.metrics_addr.or_else(|| {
                self.metrics_export_port
                    .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            }),
            num_cpus,
            num_gpus: self.num_gpus.unwrap_or(0.0),
            resources: match &self.resources {
                Some(json) => parse_resources(json)?,
                None => Resources::default(),
            },
            object_store_memory: self
                .object_store_memory
                .unwrap_or_else(default_object_store_memory),
            store_dir: self.store_dir.clone(),
            python: self.python.clone().unwrap_or_else(default_python),
            min_workers: self
                .min_workers
                .unwrap_or(num_cpus.ceil().max(1.0) as usize),
            exit_with_parent: self.exit_with_parent,
            listen: self
                .listen
                .clone()
                .unwrap_or_else(|| "/ip4/0.0.0.0/tcp/0".into()),
            join: self.join.clone(),
            cluster_key: self.cluster_key.clone().or_else(key_from_env),
            gcs_voters: self.gcs_voters,
            gcs_write_timeout: std::time::Duration::try_from_secs_f64(self.gcs_write_timeout)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--gcs-write-timeout must be a number of seconds > 0")?,
            session,
            ..NodeConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Whether the node's data dir goes when it stops: one it made itself.
    pub fn removes_data_dir(&self) -> bool {
        self.data_dir.is_none() || self.remove_data_dir
    }

    /// The command line that gives a node these options.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |name: &str, value: OsString| {
            args.push(name.into());
            args.push(value);
        };
        if let Some(v) = &self.data_dir {
            push("--data-dir", v.into());
        }
        if let Some(v) = &self.socket {
            push("--socket", v.into());
        }
        if let Some(v) = &self.client_addr {
            push("--client-addr", v.to_string().into());
        }
        if let Some(v) = self.metrics_export_port {
            push("--metrics-export-port", v.to_string().into());
        }
        if let Some(v) = &self.metrics_addr {
            push("--metrics-addr", v.to_string().into());
        }
        if self.task_table_size != crate::engine::task_table::DEFAULT_CAPACITY {
            push("--task-table-size", self.task_table_size.to_string().into());
        }
        if self.max_lineage_bytes != crate::engine::lineage::DEFAULT_MAX_BYTES {
            push(
                "--max-lineage-bytes",
                self.max_lineage_bytes.to_string().into(),
            );
        }
        match &self.dashboard_addr {
            Some(DashboardAddr::At(v)) => push("--dashboard-addr", v.to_string().into()),
            Some(DashboardAddr::Off) => push("--dashboard-addr", "off".into()),
            Some(DashboardAddr::Default) | None => {}
        }
        if let Some(v) = self.num_cpus {
            push("--num-cpus", v.to_string().into());
        }
        if let Some(v) = self.num_gpus {
            push("--num-gpus", v.to_string().into());
        }
        if let Some(v) = &self.resources {
            push("--resources", v.into());
        }
        if let Some(v) = self.object_store_memory {
            push("--object-store-memory", v.to_string().into());
        }
        if let Some(v) = &self.store_dir {
            push("--store-dir", v.into());
        }
        if let Some(v) = &self.python {
            push("--python", v.into());
        }
        if let Some(v) = self.min_workers {
            push("--min-workers", v.to_string().into());
        }
        if let Some(v) = &self.listen {
            push("--listen", v.into());
        }
        for v in &self.join {
            push("--join", v.into());
        }
        if let Some(v) = &self.cluster_key {
            push("--cluster-key", v.into());
        }
        push("--gcs-voters", self.gcs_voters.to_string().into());
        push(
            "--gcs-write-timeout",
            self.gcs_write_timeout.to_string().into(),
        );
        push("--log-level", self.log_level.clone().into());
        for (flag, on) in [
            ("--exit-with-parent", self.exit_with_parent),
            ("--session", self.session),
            ("--remove-data-dir", self.remove_data_dir),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args
    }
}

/// Runs a node in this process until it is told to stop; removes a data
/// dir it made itself.
pub fn run_node(args: &NodeArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let data_dir = config.data_dir.clone();
    let ran = crate::run(config);
    // A node started by `raynode start` that failed keeps its data dir and
    // the log in it, which says why; `raynode start` or `stop` removes it.
    let keep_log = ran.is_err() && args.session;
    if args.removes_data_dir() && !keep_log {
        // Nobody can start a node from it again: its name was random.
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    ran
}

/// `raynode status`: the node named, else the first started on this machine.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let key = args.cluster_key.clone().or_else(key_from_env);
    let address = node_address(args.address.as_deref())?;
    crate::status::print(&address, key.as_deref())
}

/// The node a command asks: `address`, else the first node `raynode
/// start` started on this machine.
pub fn node_address(address: Option<&str>) -> anyhow::Result<String> {
    if let Some(address) = address {
        return Ok(address.to_string());
    }
    match start::started_nodes().into_iter().next() {
        Some(session) => Ok(session.socket.to_string_lossy().into_owned()),
        None => bail!(
            "no node started with `raynode start` is running on this machine: \
             start one with `raynode start`, or name a node with --address"
        ),
    }
}

fn parse_dashboard_addr(value: &str) -> Result<DashboardAddr, String> {
    if value == "off" {
        return Ok(DashboardAddr::Off);
    }
    value
        .parse()
        .map(DashboardAddr::At)
        .map_err(|e| format!("{e}: give HOST:PORT (e.g. 127.0.0.1:8265) or off"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_options_survive_the_trip_through_a_command_line() {
        let cli = Cli::parse_from([
            "raynode",
            "start",
            "--address",
            "10.0.0.5:6379",
            "--num-cpus",
            "2.5",
            "--resources",
            r#"{"special": 1}"#,
            "--object-store-memory",
            "100000000",
            "--join",
            "10.0.0.6:6379",
        ]);
        let Some(Command::Start(start)) = cli.command else {
            panic!("not a start command");
        };
        let mut argv: Vec<OsString> = vec!["raynode".into()];
        argv.extend(start.node.to_args());
        let again = Cli::parse_from(argv);
        assert!(again.command.is_none());
        assert_eq!(again.node.num_cpus, Some(2.5));
        assert_eq!(again.node.resources.as_deref(), Some(r#"{"special": 1}"#));
        assert_eq!(again.node.object_store_memory, Some(100_000_000));
        assert_eq!(again.node.join, vec!["10.0.0.6:6379".to_string()]);
        assert_eq!(start.address.as_deref(), Some("10.0.0.5:6379"));
    }

    #[test]
    fn bad_resources_are_refused_by_name() {
        let args = NodeArgs {
            resources: Some("not json".into()),
            gcs_voters: 5,
            gcs_write_timeout: 5.0,
            ..NodeArgs::default()
        };
        let err = args.to_config().unwrap_err();
        assert!(format!("{err:#}").contains("--resources must be a JSON object"));
    }
}
