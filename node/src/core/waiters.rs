//! `get` and `wait`: answered at once when they can be, else when the
//! objects they name become ready, or at their timeout.
//!
//! A worker that waits inside a task lends its task's resources out while
//! it waits, so the tasks it waits for can run (nested tasks never deadlock).

use super::{ConnId, Core, Event};
use crate::objects::WaiterId;
use raynode_proto::meta::SystemErrorKind;
use raynode_proto::{FromNode, ObjectId, Role, Value, WorkerId};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct Waiter {
    pub conn: ConnId,
    req: u64,
    ids: Vec<ObjectId>,
    /// `None` for a get; for a wait, how many ready objects answer it.
    num_returns: Option<usize>,
    /// Objects still pending.
    pending: usize,
    blocked_worker: Option<WorkerId>,
}

impl Core {
    pub(super) fn on_get(
        &mut self,
        conn: ConnId,
        req: u64,
        ids: Vec<ObjectId>,
        timeout_ms: Option<u64>,
    ) {
        self.add_waiter(conn, req, ids, None, timeout_ms);
    }

    pub(super) fn on_wait(
        &mut self,
        conn: ConnId,
        req: u64,
        ids: Vec<ObjectId>,
        num_returns: u32,
        timeout_ms: Option<u64>,
    ) {
        let num_returns = (num_returns as usize).min(ids.len());
        self.add_waiter(conn, req, ids, Some(num_returns), timeout_ms);
    }

    fn add_waiter(
        &mut self,
        conn: ConnId,
        req: u64,
        ids: Vec<ObjectId>,
        num_returns: Option<usize>,
        timeout_ms: Option<u64>,
    ) {
        let waiter_id = self.next_waiter;
        self.next_waiter += 1;
        let mut pending = 0;
        let mut wanted = Vec::new();
        let mut pull = Vec::new();
        for id in &ids {
            let elsewhere = self.owned_elsewhere(*id);
            // A get reads the value here: one made elsewhere is pulled first.
            let remote = num_returns.is_none() && self.needs_pull(*id);
            match self.objects.get_mut(id) {
                Some(entry) if remote => {
                    if !entry.waiters.contains(&waiter_id) {
                        entry.waiters.push(waiter_id);
                        pending += 1;
                        pull.push(*id);
                    }
                }
                Some(entry) if !entry.is_ready() => {
                    if !entry.waiters.contains(&waiter_id) {
                        entry.waiters.push(waiter_id);
                        pending += 1;
                        wanted.push(*id);
                    }
                }
                Some(_) => {}
                None if elsewhere => {
                    // Its owner is another node: ask it; the waiter keeps the entry.
                    self.objects.add_ref(*id).waiters.push(waiter_id);
                    self.objects.remove_ref(*id);
                    pending += 1;
                    wanted.push(*id);
                }
                None => {
                    // Nobody holds it and it is not being made: it can never be had.
                    let lost = crate::values::system_error(
                        SystemErrorKind::ObjectLostError,
                        &format!("object {id} is not known to this node: all references to it were dropped"),
                    );
                    let state = crate::objects::ObjState::Inline {
                        bytes: Arc::new(lost),
                        error: true,
                    };
                    self.objects.add_ref(*id);
                    self.objects.set_value(*id, state, Vec::new());
                    // The waiter keeps the error alive until it is answered.
                    if let Some(entry) = self.objects.get_mut(id) {
                        entry.waiters.push(waiter_id);
                    }
                    self.release(*id);
                }
            }
        }
        let waiter = Waiter {
            conn,
            req,
            ids,
            num_returns,
            pending,
            blocked_worker: None,
        };
        self.waiters.insert(waiter_id, waiter);
        for id in wanted {
            self.want(id);
        }
        for id in pull {
            self.localize(id);
        }
        if self.try_answer(waiter_id) {
            return;
        }
        if timeout_ms == Some(0) {
            return self.on_timeout(waiter_id);
        }
        self.block_worker(waiter_id);
        if let Some(ms) = timeout_ms {
            let events = self.events.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = events.send(Event::Timeout { waiter: waiter_id }).await;
            });
        }
    }

    /// A worker whose task waits lends its resources out meanwhile.
    fn block_worker(&mut self, waiter_id: WaiterId) {
        let Some(conn) = self.waiters.get(&waiter_id).map(|w| w.conn) else {
            return;
        };
        let Some(Role::Worker { worker }) = self.clients.get(&conn).and_then(|c| c.role.clone())
        else {
            return;
        };
        if !self.ledger.block(worker) {
            return;
        }
        if let Some(waiter) = self.waiters.get_mut(&waiter_id) {
            waiter.blocked_worker = Some(worker);
        }
        self.dispatch();
    }

    fn unblock_worker(&mut self, worker: WorkerId) {
        self.ledger.unblock(worker);
    }

    /// Object `id`, which the waiter waits for, is ready.
    pub(super) fn on_waiter_progress(&mut self, waiter_id: WaiterId, id: ObjectId) {
        let get = self
            .waiters
            .get(&waiter_id)
            .is_some_and(|w| w.num_returns.is_none());
        if get && self.needs_pull(id) {
            // Made elsewhere: the get waits on for the copy pulled here.
            if let Some(entry) = self.objects.get_mut(&id) {
                entry.waiters.push(waiter_id);
            }
            return self.localize(id);
        }
        if let Some(w) = self.waiters.get_mut(&waiter_id) {
            w.pending = w.pending.saturating_sub(1);
        }
        self.try_answer(waiter_id);
    }

    /// Answers the waiter if it can be answered now. Returns whether it was.
    fn try_answer(&mut self, waiter_id: WaiterId) -> bool {
        let Some(w) = self.waiters.get(&waiter_id) else {
            return true;
        };
        let done = match w.num_returns {
            None => w.pending == 0,
            Some(n) => w.ids.len() - w.pending >= n,
        };
        if done {
            self.answer(waiter_id, false);
        }
        done
    }

    pub(super) fn on_timeout(&mut self, waiter_id: WaiterId) {
        if self.waiters.contains_key(&waiter_id) {
            self.answer(waiter_id, true);
        } else if !self.streams.is_empty() {
            self.stream_timeout(waiter_id);
        }
    }

    fn answer(&mut self, waiter_id: WaiterId, timed_out: bool) {
        let Some(w) = self.waiters.remove(&waiter_id) else {
            return;
        };
        let reply = match w.num_returns {
            None if timed_out => FromNode::Got {
                req: w.req,
                values: None,
            },
            None => {
                let inline_only = self.clients.get(&w.conn).is_some_and(|c| c.inline_only);
                let values: Option<Vec<Value>> = w
                    .ids
                    .iter()
                    .map(|id| {
                        let value = self.value_of(*id)?;
                        if !inline_only {
                            return Some(value);
                        }
                        self.inline_value(*id, value)
                    })
                    .collect();
                match values {
                    Some(values) if inline_only => {
                        let mut parts = split_for_frames(values);
                        let last = parts.pop().unwrap_or_default();
                        for part in parts {
                            self.send(
                                w.conn,
                                FromNode::GotPart {
                                    req: w.req,
                                    values: part,
                                },
                            );
                        }
                        FromNode::Got {
                            req: w.req,
                            values: Some(last),
                        }
                    }
                    Some(values) => FromNode::Got {
                        req: w.req,
                        values: Some(values),
                    },
                    None => FromNode::Error {
                        req: w.req,
                        message: "an object vanished from the store".into(),
                    },
                }
            }
            // Every ready id, though `n` were asked for: the client keeps
            // the rest, and answers its next waits on them itself.
            Some(_) => {
                let ready = (0..w.ids.len() as u32)
                    .filter(|i| {
                        self.objects
                            .get(&w.ids[*i as usize])
                            .is_some_and(|e| e.is_ready())
                    })
                    .collect();
                FromNode::Waited { req: w.req, ready }
            }
        };
        self.send(w.conn, reply);
        if let Some(worker) = w.blocked_worker {
            self.unblock_worker(worker);
        }
        self.drop_waiter_refs(&w.ids, waiter_id);
    }

    /// Drops a waiter whose client went away.
    pub(super) fn forget_waiter(&mut self, waiter_id: WaiterId) {
        if let Some(w) = self.waiters.remove(&waiter_id) {
            self.drop_waiter_refs(&w.ids, waiter_id);
        }
    }

    fn drop_waiter_refs(&mut self, ids: &[ObjectId], waiter_id: WaiterId) {
        let freed = self.objects.drop_waiter(ids, waiter_id);
        if freed.is_empty() {
            return;
        }
        for held in self.discard_freed(freed) {
            self.release(held);
        }
    }
}

impl Core {
    /// A value as bytes in the reply, for a client that cannot map the store.
    /// Objects too large for one frame become an error value saying so.
    fn inline_value(&self, id: ObjectId, value: Value) -> Option<Value> {
        match value {
            Value::Inline(_) => Some(value),
            Value::Store { size, .. } => {
                let limit = raynode_proto::frame::MAX_FRAME_BYTES as u64 - (1 << 20);
                if size > limit {
                    let why = format!(
                        "object {id} has {size} bytes, more than a client without the node's \
                         shared memory can receive in one frame ({limit} bytes)"
                    );
                    let bytes = crate::values::system_error(SystemErrorKind::RaySystemError, &why);
                    return Some(Value::Inline(bytes));
                }
                self.store.read_bytes(id).map(Value::Inline)
            }
        }
    }
}

/// Bytes of values one reply frame carries, leaving room for the rest of it.
const REPLY_VALUE_BYTES: usize = raynode_proto::frame::MAX_FRAME_BYTES - (1 << 20);

/// Splits a get's values, in order, into runs that each fit one frame.
fn split_for_frames(values: Vec<Value>) -> Vec<Vec<Value>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0;
    for value in values {
        let size = match &value {
            Value::Inline(b) => b.len(),
            Value::Store { path, .. } => path.len() + 64,
        };
        let current = parts.last().map_or(0, Vec::len);
        if current > 0 && bytes + size > REPLY_VALUE_BYTES {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(part) = parts.last_mut() {
            part.push(value);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_one_frame_are_split_in_order() {
        let big = REPLY_VALUE_BYTES / 2 + 1;
        let values: Vec<Value> = (0..5u8).map(|i| Value::Inline(vec![i; big])).collect();
        let parts = split_for_frames(values);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 1, 1, 1, 1]
        );
        let firsts: Vec<u8> = parts
            .iter()
            .flatten()
            .map(|v| match v {
                Value::Inline(b) => b[0],
                Value::Store { .. } => 255,
            })
            .collect();
        assert_eq!(firsts, vec![0, 1, 2, 3, 4]);
        let small: Vec<Value> = (0..3u8).map(|i| Value::Inline(vec![i; 10])).collect();
        assert_eq!(split_for_frames(small).len(), 1);
        assert_eq!(split_for_frames(Vec::new()), vec![Vec::<Value>::new()]);
    }
}
