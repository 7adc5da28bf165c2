//! The raynode node: one process per machine that runs tasks and actors.
//!
//! Data flows in one direction through these parts:
//! - [`server`] accepts drivers and workers on a Unix socket (and TCP),
//!   decodes their frames and hands them to the core as [`core::Event`]s;
//! - [`engine`] holds the node's decisions as pure state machines (the
//!   workers and the resources they hold), tested without any I/O;
//! - [`core`] alone owns the node's state: the object table ([`objects`]),
//!   tasks and their dependencies, the [`scheduler`] (a pure state machine),
//!   the worker pool ([`workers`]) and the actors; it answers by sending
//!   frames back down each connection's writer;
//! - [`cluster`] is the node's place among the others: the swarm, the
//!   control store's Raft member over it, and the messages between nodes;
//! - [`store`] wraps the shared-memory object store for values too large to
//!   travel inline, [`values`] builds the values the node itself makes
//!   (errors), [`status`] is the client side of `raynode status`, and
//!   [`metrics`] keeps user metrics and serves them to Prometheus;
//! - [`cli`] is the command line: a node's options and Ray's verbs
//!   (`raynode start`, `stop`, `status`), which find the nodes started on
//!   this machine through session files ([`raynode_proto::session`]).

pub mod channel;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod dashboard;
pub mod engine;
pub mod logfile;
pub mod metrics;
pub mod objects;
pub mod output;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod store;
pub mod values;
pub mod workers;

use anyhow::Context;
use config::NodeConfig;
use tokio::sync::mpsc;

/// Runs a node until Ctrl-C, SIGTERM or (with `exit_with_parent`) its parent's exit.
pub fn run(config: NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    private_dir(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    private_dir(&config.logs_dir())
        .with_context(|| format!("creating {}", config.logs_dir().display()))?;
    logfile::open(&config.logs_dir())
        .with_context(|| format!("opening the node's log in {}", config.logs_dir().display()))?;
    if let Some(dir) = config.socket_path().parent() {
        if dir == config::short_socket_dir() {
            private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let store = store::Store::open(&config)?;
    let core_store_root = store.root().to_path_buf();
    let (events_tx, events_rx) = mpsc::channel(core::EVENT_QUEUE);
    let cluster = cluster::start(&config, events_tx.clone(), store.shared()).await?;
    let gcs = cluster.gcs.clone();
    let node_id = cluster.node_id;
    let listeners = server::Listeners::bind(&config).await?;
    let socket_path = config.socket_path();
    // Watched before "ready" is printed: a node stopped as soon as it says
    // so still stops cleanly (and removes its store directory).
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("watching SIGTERM")?;
    println!("raynode node {node_id} ready");
    println!("  socket: {}", socket_path.display());
    println!("  store: {}", core_store_root.display());
    if let Some(addr) = listeners.tcp_addr() {
        println!("  client address: {addr}");
    }
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
            println!("  metrics: http://{}/metrics", listener.local_addr()?);
            let site = dashboard::Site {
                ui: false,
                token: token_off_loopback(addr, &cluster.client_psk),
            };
            Some(tokio::spawn(dashboard::serve(
                listener,
                events_tx.clone(),
                site,
            )))
        }
        None => None,
    };
    let dashboard_listener = bind_dashboard(config.dashboard_addr).await?;
    let dashboard_addr = match &dashboard_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    if let Some(addr) = dashboard_addr {
        println!("  dashboard: http://{addr}");
    }
    for addr in &cluster.p2p_addrs {
        println!("  p2p: {addr}");
    }
    println!("  peer id: {}", cluster.peer_id);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let session = match &config.session {
        Some(session) => Some(
            record_session(
                session,
                &config,
                &node_id.to_string(),
                listeners.tcp_addr(),
                &cluster.p2p_addrs,
                &core_store_root,
            )
            .context("writing the session file")?,
        ),
        None => None,
    };
    let client_addr = listeners.tcp_addr().map(|a| a.to_string());
    let accept = tokio::spawn(listeners.run(
        events_tx.clone(),
        store.shared(),
        config.inline_limit,
        cluster.client_psk,
    ));
    let p2p = cluster.p2p.clone();
    let cluster_psk = cluster.client_psk;
    let mut core = core::Core::new(config.clone(), node_id, store, cluster, events_tx.clone());
    core.client_addr = client_addr;
    core.dashboard_addr = dashboard_addr.map(|a| a.to_string());
    let dashboard = dashboard_listener
        .zip(dashboard_addr)
        .map(|(listener, addr)| {
            let site = dashboard::Site {
                ui: true,
                token: token_off_loopback(addr, &cluster_psk),
            };
            tokio::spawn(dashboard::serve(listener, events_tx.clone(), site))
        });
    let mut core_task = tokio::spawn(core.run(events_rx));

    let core_failed = tokio::select! {
        _ = wait_for_stop(&config, term) => None,
        ended = &mut core_task => Some(match ended {
            Ok(()) => "it returned".to_string(),
            Err(e) => e.to_string(),
        }),
    };
    if let Some(why) = core_failed {
        // Nothing runs on this node without its core: rather than a node
        // that keeps voting in the control store but serves nobody, stop.
        tracing::error!("the node's core stopped unexpectedly ({why}); stopping the node");
        accept.abort();
        gcs.shutdown().await;
        p2p.shutdown().await;
        let _ = std::fs::remove_file(&socket_path);
        if let Some(path) = &session {
            let _ = std::fs::remove_file(path);
        }
        anyhow::bail!("the node's core stopped unexpectedly: {why}");
    }
    tracing::info!("stopping");
    accept.abort();
    for server in [metrics, dashboard].into_iter().flatten() {
        server.abort();
    }
    let _ = events_tx.send(core::Event::Shutdown).await;
    match tokio::time::timeout(std::time::Duration::from_secs(5), core_task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("core task ended abnormally: {e}"),
        Err(_) => tracing::warn!("core did not stop within 5 s"),
    }
    gcs.shutdown().await;
    p2p.shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    if let Some(path) = &session {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The dashboard's listener, where the configuration says.
async fn bind_dashboard(
    addr: config::DashboardAddr,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use tokio::net::TcpListener;
    Ok(match addr {
        config::DashboardAddr::Off => None,
        config::DashboardAddr::At(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the dashboard on {addr}"))?,
        ),
        config::DashboardAddr::Default => {
            let (ip, port) = config::DEFAULT_DASHBOARD_ADDR;
            let ip = std::net::IpAddr::from(ip);
            match TcpListener::bind((ip, port)).await {
                Ok(l) => Some(l),
                // Another node of this machine has it: any free port.
                Err(_) => Some(
                    TcpListener::bind((ip, 0))
                        .await
                        .context("binding the dashboard on 127.0.0.1")?,
                ),
            }
        }
    })
}

/// The token an HTTP server asks for: none on loopback.
fn token_off_loopback(addr: std::net::SocketAddr, psk: &[u8; 32]) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| raynode_proto::secure::dashboard_token(psk))
}

/// Writes the session file through which drivers and `raynode stop` find
/// this node; returns its path.
fn record_session(
    session: &config::SessionConfig,
    config: &NodeConfig,
    node_id: &str,
    client_addr: Option<std::net::SocketAddr>,
    p2p_addrs: &[String],
    store_dir: &std::path::Path,
) -> std::io::Result<std::path::PathBuf> {
    let pid = std::process::id();
    let start_time = raynode_proto::session::process_start_time(pid)
        .ok_or_else(|| std::io::Error::other("cannot read this process's start time"))?;
    raynode_proto::session::Session {
        pid,
        start_time,
        node_id: node_id.to_string(),
        socket: config.socket_path(),
        client_address: client_addr.map(|a| a.to_string()),
        p2p: p2p_addrs.to_vec(),
        data_dir: config.data_dir.clone(),
        remove_data_dir: session.remove_data_dir,
        store_dir: store_dir.to_path_buf(),
        log_file: session.log_file.clone(),
    }
    .write(&session.dir)
}

/// Creates `dir` if need be and makes it its owner's alone (0700): it holds
/// the node's identity, control state, logs and spill files.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

async fn wait_for_stop(config: &NodeConfig, mut term: tokio::signal::unix::Signal) {
    let parent = std::os::unix::process::parent_id();
    let watch_parent = config.exit_with_parent;
    let orphaned = async move {
        if !watch_parent {
            return std::future::pending::<()>().await;
        }
        // Once a second: an idle node should wake as little as it can.
        // (PR_SET_PDEATHSIG would need no polling, but it fires when the
        // parent's *thread* that started us ends, not the parent.)
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if std::os::unix::process::parent_id() != parent {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = orphaned => tracing::info!("parent process exited"),
    }
}
