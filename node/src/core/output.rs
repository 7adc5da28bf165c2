//! Worker output to drivers: lines a worker wrote for a task (the worker
//! marks each in its pipes, and lines can arrive after the task ended) go
//! to that task's driver, prefixed as Ray does (`(f pid=12, ip=10.0.0.5)`);
//! for work a peer owns, to that peer, which passes them to its driver.

use super::{Core, Worker};
use crate::cluster::wire::PeerMsg;
use raynode_proto::{FromNode, JobId, NodeId, Output, Role, TaskId, WorkerId};

/// The pieces of work a worker remembers the route of.
const ROUTES_KEPT: usize = 16;

impl Worker {
    pub(super) fn remember_output_route(&mut self, task: TaskId, route: Route) {
        if self.output_to.len() == ROUTES_KEPT {
            self.output_to.pop_front();
        }
        self.output_to.push_back((task, route));
    }
}

/// Where a worker's output goes while it runs one piece of work.
#[derive(Clone, Debug)]
pub(super) struct Route {
    /// The function's name, or the actor's class.
    name: String,
    to: Destination,
}

#[derive(Clone, Debug)]
enum Destination {
    /// A driver of this node.
    Local(JobId),
    /// The owning node, in its job numbering.
    Peer(NodeId, JobId),
}

impl Core {
    /// Where the output of a worker running `task` goes.
    pub(super) fn output_route(&self, task: TaskId) -> Option<Route> {
        let t = self.tasks.get(&task)?;
        // An actor's calls are named `Class.method`: Ray shows the class.
        let name = match t.spec.kind {
            raynode_proto::TaskKind::Normal => t.spec.name.clone(),
            _ => t
                .spec
                .name
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        let to = match t.origin {
            Some(owner) => Destination::Peer(owner, t.origin_job),
            None => Destination::Local(t.job),
        };
        Some(Route { name, to })
    }

    pub(super) fn on_worker_output(
        &mut self,
        worker: WorkerId,
        task: TaskId,
        stderr: bool,
        lines: Vec<String>,
    ) {
        let Some(w) = self.workers.get(&worker) else {
            return;
        };
        // Lines of work long gone stay in the worker's log file only.
        let Some(route) = w.output_to.iter().rev().find(|(t, _)| *t == task) else {
            return;
        };
        let route = route.1.clone();
        let source = format!(
            "{} pid={}, ip={}",
            route.name,
            w.process.pid,
            self.node_ip()
        );
        let output = Output {
            source,
            stderr,
            lines,
        };
        match route.to {
            Destination::Local(job) => self.output_to_drivers(job, output),
            Destination::Peer(owner, job) => {
                self.send_peer(owner, PeerMsg::Output { job, output });
            }
        }
    }

    /// Sends `output` to this node's drivers of `job`.
    pub(super) fn output_to_drivers(&mut self, job: JobId, output: Output) {
        for client in self.clients.values() {
            if matches!(client.role, Some(Role::Driver { .. })) && client.job == job {
                let _ = client.tx.send(FromNode::Output(output.clone()));
            }
        }
    }

    /// This node's address as drivers see it in output prefixes.
    fn node_ip(&self) -> &str {
        self.cluster
            .p2p_addrs
            .first()
            .and_then(|a| a.split('/').nth(2))
            .unwrap_or("127.0.0.1")
    }
}
