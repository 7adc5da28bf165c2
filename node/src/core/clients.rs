//! Clients: hello, the references they hold, the objects they put.

use super::{Client, ConnId, Core};
use crate::objects::ObjState;
use crate::server::ConnTx;
use raynode_proto::{FromNode, JobId, ObjectId, Role, PROTOCOL_VERSION};
use std::collections::HashSet;
use std::sync::Arc;

impl Core {
    pub(super) fn on_connected(&mut self, conn: ConnId, tx: ConnTx) {
        let client = Client {
            tx,
            role: None,
            job: JobId(0),
            held: HashSet::new(),
            unsealed: HashSet::new(),
            inline_only: false,
        };
        self.clients.insert(conn, client);
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, version: u32, role: Role) {
        if version != PROTOCOL_VERSION {
            let why = format!(
                "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
            );
            return self.refuse(conn, &why);
        }
        let job = match &role {
            Role::Driver { pid } => {
                let job = JobId(self.next_job);
                self.next_job += 1;
                tracing::info!(%job, pid, "driver connected");
                self.record_job(job, *pid, false);
                job
            }
            Role::Worker { worker } => match self.workers.get_mut(worker) {
                Some(w) if w.conn.is_none() => {
                    w.conn = Some(conn);
                    w.idle_since = std::time::Instant::now();
                    self.ledger.worker_ready(*worker);
                    JobId(0)
                }
                _ => return self.refuse(conn, &format!("no worker {worker} is expected")),
            },
        };
        if let Some(client) = self.clients.get_mut(&conn) {
            client.role = Some(role);
            client.job = job;
        }
        let welcome = FromNode::Welcome {
            node: self.node_id,
            job,
            store_root: self.store.root().display().to_string(),
            inline_limit: self.config.inline_limit,
        };
        self.send(conn, welcome);
        self.dispatch();
    }

    pub(super) fn on_disconnected(&mut self, conn: ConnId) {
        let Some(client) = self.clients.remove(&conn) else {
            return;
        };
        for id in client.unsealed {
            self.store.abort(id);
        }
        let gone: Vec<_> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for waiter in gone {
            self.forget_waiter(waiter);
        }
        for id in client.held {
            self.release(id);
        }
        match client.role {
            Some(Role::Driver { pid }) => {
                tracing::info!(job = %client.job, "driver disconnected");
                self.record_job(client.job, pid, true);
                self.end_job(client.job);
            }
            Some(Role::Worker { worker }) => self.on_worker_gone(worker, "its connection closed"),
            None => {}
        }
    }

    /// Takes a reference for `conn` (once per client and object).
    pub(super) fn hold(&mut self, conn: ConnId, id: ObjectId) {
        if let Some(client) = self.clients.get_mut(&conn) {
            if client.held.insert(id) {
                self.objects.add_ref(id);
            }
        }
    }

    /// Drops one reference, deleting whatever that frees.
    pub(super) fn release(&mut self, id: ObjectId) {
        // A loop, not recursion: a long chain of lineage frees link by link.
        let mut next = vec![id];
        while let Some(id) = next.pop() {
            let freed = self.objects.remove_ref(id);
            if !freed.is_empty() {
                next.extend(self.discard_freed(freed));
            }
        }
    }

    /// Objects nothing holds any more: their copies here go, results kept
    /// on other nodes are freed there, and owners elsewhere are told.
    /// Returns the references the lineage of freed results held, to drop.
    pub(super) fn discard_freed(&mut self, freed: Vec<(ObjectId, ObjState)>) -> Vec<ObjectId> {
        let mut ids = Vec::with_capacity(freed.len());
        let mut held = Vec::new();
        for (freed, state) in freed {
            if let ObjState::Stored { .. } = state {
                self.store.delete(freed);
            }
            held.extend(self.free_borrowed(freed));
            ids.push(freed);
        }
        if !self.streams.is_empty() {
            for id in &ids {
                self.stream_freed(*id);
            }
        }
        if !self.remote.peers.is_empty() {
            self.freed_here(&ids);
        }
        held
    }

    pub(super) fn on_refs(&mut self, conn: ConnId, add: Vec<ObjectId>, remove: Vec<ObjectId>) {
        for id in add {
            self.hold(conn, id);
        }
        for id in remove {
            let held = self
                .clients
                .get_mut(&conn)
                .is_some_and(|c| c.held.remove(&id));
            if held {
                self.release(id);
            }
        }
    }

    pub(super) fn on_put(
        &mut self,
        conn: ConnId,
        id: ObjectId,
        bytes: Vec<u8>,
        nested: Vec<ObjectId>,
    ) {
        self.hold(conn, id);
        if bytes.len() as u64 > self.config.inline_limit {
            // A large put from a client without the shared memory: into the store.
            match self.store.put_bytes(id, &bytes) {
                Ok(size) => return self.set_value(id, ObjState::Stored { size }, nested),
                Err(e) => tracing::warn!(object = %id, "keeping a large put in memory: {e}"),
            }
        }
        let error = crate::values::is_error(&bytes);
        self.set_value(
            id,
            ObjState::Inline {
                bytes: Arc::new(bytes),
                error,
            },
            nested,
        );
    }

    pub(super) fn on_put_stored(
        &mut self,
        conn: ConnId,
        id: ObjectId,
        size: u64,
        nested: Vec<ObjectId>,
    ) {
        // Written before the core saw it: undone unless its client said hello.
        if self.clients.get(&conn).is_none_or(|c| c.role.is_none()) {
            self.store.delete(id);
            if self.clients.contains_key(&conn) {
                self.refuse(conn, "expected hello, got Put");
            }
            return;
        }
        self.hold(conn, id);
        self.store.record(id, size);
        self.set_value(id, ObjState::Stored { size }, nested);
    }

    pub(super) fn on_create(&mut self, conn: ConnId, req: u64, id: ObjectId, size: u64) {
        let mut result = self.store.create(id, size);
        let exists = matches!(result, Err(objstore::CreateError::AlreadyExists(_)));
        if exists && self.rerunning(id) && self.remote.pulls.defer_create(id, (conn, req, size)) {
            // A copy an earlier run made is being pulled here: this run
            // writes its own once that pull has ended.
            return;
        }
        if exists && self.rerunning(id) {
            // A copy made by an earlier run of this task (kept for its
            // owner, which gave up on it and ran the task again) is replaced.
            tracing::debug!(object = %id, "replacing a result an earlier run made");
            self.forget_stale_result(id);
            if self.store.contains(id) {
                // A copy pulled here for another reader: the new run's
                // value takes its place (readers keep what they mapped).
                self.store.delete(id);
            }
            result = self.store.create(id, size);
        }
        let result = result.map_err(|e| match e {
            objstore::CreateError::StoreFull { .. } | objstore::CreateError::TooLarge { .. } => {
                raynode_proto::StoreError::Full(e.to_string())
            }
            other => raynode_proto::StoreError::Failed(other.to_string()),
        });
        if result.is_ok() {
            if let Some(client) = self.clients.get_mut(&conn) {
                client.unsealed.insert(id);
            }
            // A put's creator holds it from now on; a task result is held by its caller.
            if !self.tasks.contains_key(&id.task()) {
                self.hold(conn, id);
            }
        }
        let result = result.map(|path| path.display().to_string());
        self.send(conn, FromNode::Created { req, result });
    }

    /// Whether `id` is a result of a task running here now.
    fn rerunning(&self, id: ObjectId) -> bool {
        self.tasks
            .get(&id.task())
            .is_some_and(|t| matches!(t.state, super::TaskState::Running { .. }))
    }

    pub(super) fn on_seal(&mut self, conn: ConnId, id: ObjectId, nested: Vec<ObjectId>) {
        if let Some(state) = self.seal_created(conn, id) {
            self.set_value(id, state, nested);
        }
    }

    /// Seals a store object `conn` created, returning its new state.
    pub(super) fn seal_created(&mut self, conn: ConnId, id: ObjectId) -> Option<ObjState> {
        let created = self
            .clients
            .get_mut(&conn)
            .is_some_and(|c| c.unsealed.remove(&id));
        if !created {
            tracing::warn!(object = %id, "seal of an object this client did not create");
            return None;
        }
        match self.store.seal(id) {
            Ok(size) => Some(ObjState::Stored { size }),
            Err(e) => {
                tracing::warn!(object = %id, "seal failed: {e}");
                None
            }
        }
    }
}
