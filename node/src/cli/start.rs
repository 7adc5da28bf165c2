//! `raynode start`: a node in the background, recorded in a session file.
//!
//! The command turns Ray's options into a node's (`--address` into a join,
//! `--node-ip-address` and `--port` into the p2p listen address,
//! `--ray-client-server-port` into the client address), makes the node's
//! data dir, starts `raynode --session ...` as a process of its own group
//! with its output in `<data-dir>/raynode.log`, and waits until the node
//! has written its session file (or has failed, whose log it then shows).
//! It ends by saying how to join the node, connect a driver and stop it.

use super::{default_data_dir, default_python, NodeArgs, StartArgs};
use anyhow::{bail, Context};
use raynode_proto::session::{self, Session};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Ray's head port, this node's p2p port when free.
pub const DEFAULT_PORT: u16 = 6379;
/// Ray's client server port, this node's client port when free.
pub const DEFAULT_CLIENT_PORT: u16 = 10001;
/// How long a node may take to become ready (a join waits on its peers).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

/// The file a started node's output goes to.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("raynode.log")
}

/// The nodes `raynode start` started on this machine that still run, oldest first.
pub fn started_nodes() -> Vec<Session> {
    session::sessions_dir()
        .map(|dir| session::live(&dir))
        .unwrap_or_default()
}

/// `port` on `ip` if nothing listens there yet, else 0 (any free port).
fn free_or_any(ip: IpAddr, port: u16) -> u16 {
    match TcpListener::bind((ip, port)) {
        Ok(_) => port,
        Err(_) => 0,
    }
}

/// The node's own options, with Ray's turned into them.
fn node_args(start: &StartArgs) -> anyhow::Result<NodeArgs> {
    let mut node = start.node.clone();
    let ip = start
        .node_ip_address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match &node.listen {
        Some(_) if start.port.is_some() || start.node_ip_address.is_some() => {
            bail!("give either --listen or --node-ip-address/--port, not both")
        }
        Some(_) => {}
        None => {
            let port = start.port.unwrap_or_else(|| free_or_any(ip, DEFAULT_PORT));
            let addr = match ip {
                IpAddr::V4(v4) => format!("/ip4/{v4}/tcp/{port}"),
                IpAddr::V6(v6) => format!("/ip6/{v6}/tcp/{port}"),
            };
            node.listen = Some(addr);
        }
    }
    match (&node.client_addr, start.ray_client_server_port) {
        (Some(_), Some(_)) => {
            bail!("give either --client-addr or --ray-client-server-port, not both")
        }
        (Some(_), None) => {}
        (None, port) => {
            let port = port.unwrap_or_else(|| free_or_any(ip, DEFAULT_CLIENT_PORT));
            node.client_addr = Some(SocketAddr::new(ip, port));
        }
    }
    node.join.extend(start.address.iter().cloned());
    if node.python.is_none() {
        // The node process is started through the resolved binary, which
        // may not sit beside the Python this command was found with.
        node.python = Some(default_python());
    }
    node.session = true;
    Ok(node)
}

/// Runs `raynode start`.
pub fn run(start: &StartArgs) -> anyhow::Result<()> {
    if start.head {
        println!(
            "note: raynode has no head node: every node is alike, so --head changes nothing \
             (a node started without --address starts a new cluster)."
        );
    }
    let mut node = node_args(start)?;
    if start.block {
        return super::run_node(&node);
    }
    if node.data_dir.is_none() {
        node.data_dir = Some(default_data_dir());
        node.remove_data_dir = true;
    }
    // Checked here, so that bad options fail before anything starts.
    let config = node.to_config()?;
    let data_dir = config.data_dir.clone();
    private_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let cleanup = |node: &NodeArgs| {
        if node.remove_data_dir {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    };
    let started = spawn_and_wait(&node, &data_dir);
    let session = match started {
        Ok(session) => session,
        Err(e) => {
            cleanup(&node);
            return Err(match &start.address {
                Some(address) => e.context(format!("no node joined the cluster through {address}")),
                None => e,
            });
        }
    };
    print_next_steps(&session);
    Ok(())
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn spawn_and_wait(node: &NodeArgs, data_dir: &Path) -> anyhow::Result<Session> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let log = log_path(data_dir);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("creating {}", log.display()))?;
    let exe = std::env::current_exe().context("finding the raynode binary")?;
    let mut child = std::process::Command::new(&exe)
        .args(node.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: Ctrl-C in this terminal is not for it, and
        // `raynode stop --force` ends its workers with it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id();
    let dir = session::sessions_dir().context("HOME is not set")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let polls = READY_TIMEOUT.as_millis() / POLL.as_millis() + 1;
    for _ in 0..polls {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the node exited at start ({status}); its log ({}):\n{}",
                log.display(),
                tail(&log, 20)
            );
        }
        let found = session::read_all(&dir)
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.pid == pid);
        if let Some(session) = found {
            return Ok(session);
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "the node was not ready within {} s; its log ({}):\n{}",
        READY_TIMEOUT.as_secs(),
        log.display(),
        tail(&log, 20)
    )
}

/// The last `lines` lines of a log file, without terminal colours.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let kept = all[all.len().saturating_sub(lines)..].join("\n");
    strip_ansi(&kept)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `host:port` of a p2p multiaddr such as /ip4/10.0.0.5/tcp/6379/p2p/12D…
fn host_port(multiaddr: &str) -> Option<(IpAddr, u16)> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => Some((ip.parse().ok()?, port.parse().ok()?)),
        _ => None,
    }
}

/// The address to tell others to join through: a routable one if any.
fn join_address(session: &Session) -> Option<String> {
    let addrs: Vec<(IpAddr, u16)> = session.p2p.iter().filter_map(|a| host_port(a)).collect();
    let best = addrs
        .iter()
        .find(|(ip, _)| !ip.is_loopback() && !ip.is_unspecified())
        .or_else(|| addrs.iter().find(|(ip, _)| !ip.is_unspecified()))
        .or(addrs.first())?;
    Some(SocketAddr::new(best.0, best.1).to_string())
}

fn print_next_steps(session: &Session) {
    let join = join_address(session).unwrap_or_else(|| "<this machine>:<port>".into());
    println!(
        "raynode node {} started in the background (pid {}).",
        session.node_id, session.pid
    );
    for addr in &session.p2p {
        println!("  p2p: {addr}");
    }
    if let Some(addr) = &session.client_address {
        println!("  client address: {addr}");
    }
    if let Some(log) = &session.log_file {
        println!("  log: {}", log.display());
    }
    println!();
    println!("Next steps");
    println!("  To add another node to this cluster, run on its machine (with this cluster's");
    println!("  key, ~/.raynode/cluster.key, copied there):");
    println!("    raynode start --address='{join}'");
    println!("  Any node of the cluster can be joined through the same way: there is no head.");
    println!();
    println!("  To connect to this cluster from Python on this machine:");
    println!("    import raynode as ray");
    println!("    ray.init()          # or ray.init(address=\"auto\")");
    if let Some(client) = &session.client_address {
        let shown = match client.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() => {
                let host = join.rsplit_once(':').map_or("<this machine>", |(h, _)| h);
                format!("{host}:{}", addr.port())
            }
            _ => client.clone(),
        };
        println!("  From another machine (with the cluster key):");
        println!("    ray.init(address=\"{shown}\")");
    }
    println!();
    println!("  To see the cluster:");
    println!("    raynode status");
    println!("  To stop the nodes started on this machine:");
    println!("    raynode stop");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routable_address_is_the_one_to_join_through() {
        let session = |p2p: &[&str]| Session {
            pid: 1,
            start_time: 1,
            node_id: "ab".into(),
            socket: "/s".into(),
            client_address: None,
            p2p: p2p.iter().map(|s| s.to_string()).collect(),
            data_dir: "/d".into(),
            remove_data_dir: true,
            store_dir: "/dev/shm/x".into(),
            log_file: None,
        };
        let both = session(&[
            "/ip4/127.0.0.1/tcp/6379/p2p/12D",
            "/ip4/10.0.0.5/tcp/6379/p2p/12D",
        ]);
        assert_eq!(join_address(&both).as_deref(), Some("10.0.0.5:6379"));
        let local = session(&["/ip4/127.0.0.1/tcp/4001/p2p/12D"]);
        assert_eq!(join_address(&local).as_deref(), Some("127.0.0.1:4001"));
        assert_eq!(join_address(&session(&[])), None);
    }

    #[test]
    fn colours_are_taken_out_of_a_log_tail() {
        assert_eq!(strip_ansi("\x1b[33m WARN\x1b[0m x"), " WARN x");
    }
}
