//! `raynode stop`: stops the nodes this user started with `raynode start`
//! on this machine, as found in the session files, and nothing else.
//!
//! Each node gets SIGTERM (it stops its workers and removes its socket,
//! store and session file itself); a node still running after the grace
//! period, or every node with `--force`, gets SIGKILL with its process
//! group (its workers), and this command removes what it left: the store
//! directory in shared memory, the socket, the session file and a data dir
//! that was the node's alone. Session files of nodes already gone are
//! cleaned up the same way.

use super::StopArgs;
use anyhow::Context;
use raynode_proto::session::{self, Session};
use std::path::Path;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);
/// How long to wait for the kernel to end processes sent SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a node
    // recorded with its start time, checked live just before.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGKILL to the node's process group (the node and its workers): `raynode
/// start` makes each node the leader of a group of its own.
fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: as in `signal`; a negative pid names the process group.
    unsafe {
        if libc::kill(-pid, libc::SIGKILL) != 0 {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Whether any process of the group `raynode start` made for the node runs
/// (its workers may outlive the node by a moment).
fn group_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the group exists.
    unsafe { libc::kill(-pid, 0) == 0 }
}

/// Waits until no process of the nodes' groups runs, at most `limit`;
/// returns the nodes whose group still has some.
fn wait_groups_gone(nodes: Vec<Session>, limit: Duration) -> Vec<Session> {
    let deadline = Instant::now() + limit;
    let polls = limit.as_millis() / POLL.as_millis() + 1;
    let mut running = nodes;
    for _ in 0..polls {
        running.retain(|s| group_alive(s.pid));
        if running.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    running
}

/// Waits until none of `nodes` runs, at most `limit`; returns those still running.
fn wait_gone(nodes: Vec<Session>, limit: Duration) -> Vec<Session> {
    let deadline = Instant::now() + limit;
    let polls = limit.as_millis() / POLL.as_millis() + 1;
    let mut running = nodes;
    for _ in 0..polls {
        running.retain(Session::is_live);
        if running.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    running
}

/// Removes what a node that did not stop by itself left behind.
fn clean_up(session: &Session, file: &Path) {
    let _ = std::fs::remove_dir_all(&session.store_dir);
    let _ = std::fs::remove_file(&session.socket);
    if session.remove_data_dir {
        let _ = std::fs::remove_dir_all(&session.data_dir);
    }
    let _ = std::fs::remove_file(file);
}

/// Runs `raynode stop`.
pub fn run(args: &StopArgs) -> anyhow::Result<()> {
    let grace = Duration::try_from_secs_f64(args.grace_period)
        .ok()
        .context("--grace-period must be a number of seconds >= 0")?;
    let Some(dir) = session::sessions_dir() else {
        println!(
            "No raynode node started by this user is running on this machine (HOME is not set)."
        );
        return Ok(());
    };
    let recorded = session::read_all(&dir);
    let (live, stale): (Vec<_>, Vec<_>) = recorded.into_iter().partition(|(_, s)| s.is_live());
    for (file, session) in &stale {
        clean_up(session, file);
    }
    if live.is_empty() {
        println!("No raynode node started by this user is running on this machine.");
        return Ok(());
    }
    let nodes: Vec<Session> = live.iter().map(|(_, s)| s.clone()).collect();
    let mut forced = Vec::new();
    if args.force {
        for node in &nodes {
            kill_group(node.pid);
        }
        forced = nodes.clone();
    } else {
        for node in &nodes {
            signal(node.pid, libc::SIGTERM);
        }
        for node in wait_gone(nodes.clone(), grace) {
            println!(
                "node {} (pid {}) did not stop within {} s: killing it",
                node.node_id,
                node.pid,
                grace.as_secs_f64()
            );
            kill_group(node.pid);
            forced.push(node);
        }
    }
    // Workers end with their node; any that lingers goes with its group.
    let stopped_nodes: Vec<Session> = nodes
        .iter()
        .filter(|n| !forced.iter().any(|f| f.pid == n.pid))
        .cloned()
        .collect();
    for node in wait_groups_gone(stopped_nodes, KILL_WAIT) {
        kill_group(node.pid);
    }
    let still = wait_gone(forced.clone(), KILL_WAIT);
    wait_groups_gone(nodes.clone(), KILL_WAIT);
    for (file, session) in &live {
        let stopped_by_itself = !forced.iter().any(|f| f.pid == session.pid);
        if stopped_by_itself {
            // It removed its store and socket; the file too, unless it was
            // still writing its end.
            let _ = std::fs::remove_file(file);
        } else if !still.iter().any(|s| s.pid == session.pid) {
            clean_up(session, file);
        }
    }
    let stopped = nodes.len() - still.len();
    let noun = if stopped == 1 { "node" } else { "nodes" };
    println!("Stopped {stopped} raynode {noun}.");
    if !still.is_empty() {
        let pids: Vec<String> = still.iter().map(|s| s.pid.to_string()).collect();
        anyhow::bail!("could not stop the node(s) with pid {}", pids.join(", "));
    }
    Ok(())
}
