//! Generator tasks: items made while the task runs, held for its caller.
//!
//! A generator task's worker reports each item (`Yield`) as it is made,
//! before the `TaskDone` that sets the task's one return, its *end*. Items
//! travel to the task's owner like any result. There the stream holds each
//! one (one reference) until the caller takes it with `NextItem`, which
//! hands that reference to the caller's connection, or until the caller
//! drops the generator: when the end object is freed, so is every item
//! not taken. Items come in order from one worker, so "ended and no item
//! `i`" means there will never be one.

use super::{ConnId, Core, Event};
use crate::engine::stream::{StreamBook, Take};
use crate::objects::{ObjState, WaiterId};
use raynode_proto::{FromNode, ObjectId, ReturnValue, StreamItem, TaskId};
use std::time::Duration;

/// What the owner's node knows of one generator task it owns.
#[derive(Default)]
pub(super) struct Stream {
    /// Which items it holds and what `next()` gets (the decisions).
    book: StreamBook,
    /// `NextItem` requests not answered yet.
    asking: Vec<Asking>,
}

struct Asking {
    conn: ConnId,
    req: u64,
    index: u32,
    max: u32,
    /// Numbered like a waiter, for its timeout.
    timer: Option<WaiterId>,
}

impl Core {
    /// A generator task was submitted here: its items will be held here.
    pub(super) fn open_stream(&mut self, task: TaskId) {
        self.streams.entry(task).or_default();
    }

    /// A worker here made item `index` of a generator task.
    pub(super) fn on_yield(&mut self, conn: ConnId, task: TaskId, index: u32, value: ReturnValue) {
        let id = ObjectId::for_return(task, index);
        let (state, nested) = match value {
            ReturnValue::Inline { bytes, nested } => {
                let error = crate::values::is_error(&bytes);
                let state = ObjState::Inline {
                    bytes: std::sync::Arc::new(bytes),
                    error,
                };
                (state, nested)
            }
            ReturnValue::Stored { nested } => match self.seal_created(conn, id) {
                Some(state) => (state, nested),
                None => return,
            },
        };
        if index == 0 {
            tracing::warn!(%task, "a worker reported item 0 of a generator; items count from 1");
            return self.discard(id, &state);
        }
        match self.tasks.get(&task).map(|t| t.origin) {
            Some(Some(owner)) => {
                if let Some((value, nested)) = self.lend_result(id, state, nested) {
                    let msg = crate::cluster::wire::PeerMsg::Item {
                        task,
                        index,
                        value,
                        nested,
                    };
                    self.send_peer(owner, msg);
                }
            }
            Some(None) if self.streams.contains_key(&task) => {
                self.hold_item(task, index);
                self.set_value(id, state, nested);
            }
            // The task is gone, or its generator was dropped.
            _ => self.discard(id, &state),
        }
    }

    /// Item `index` of a stream of ours reached this node (a value or a
    /// place to pull it from): the stream takes a reference to it first.
    /// Returns false if nobody wants it any more.
    pub(super) fn hold_item(&mut self, task: TaskId, index: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&task) else {
            return false;
        };
        let id = ObjectId::for_return(task, index);
        if stream.book.arrive(index) {
            self.objects.add_ref(id);
            return true;
        }
        // Made again by a retry of its task: wanted if it is still around.
        self.objects.get(&id).is_some()
    }

    fn discard(&mut self, id: ObjectId, state: &ObjState) {
        if matches!(state, ObjState::Stored { .. }) && self.objects.get(&id).is_none() {
            self.store.delete(id);
        }
    }

    /// `next(generator)`: answers at once if it can, else when the item is
    /// made, the task ends, or `timeout_ms` passes. Up to `max` items
    /// ready from `index` on are taken at once.
    pub(super) fn on_next_item(
        &mut self,
        conn: ConnId,
        req: u64,
        task: TaskId,
        (index, max): (u32, u32),
        timeout_ms: Option<u64>,
    ) {
        if !self.streams.contains_key(&task) {
            let message = format!(
                "the generator of task {task} is not known to this node: it is owned by \
                 another node, or every reference to it was dropped"
            );
            return self.send(conn, FromNode::Error { req, message });
        }
        if let Some(item) = self.next_items(conn, task, index, max) {
            return self.send(conn, FromNode::Item { req, item });
        }
        if timeout_ms == Some(0) {
            let item = StreamItem::Pending;
            return self.send(conn, FromNode::Item { req, item });
        }
        let timer = timeout_ms.map(|ms| {
            let timer = self.next_waiter;
            self.next_waiter += 1;
            let events = self.events.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = events.send(Event::Timeout { waiter: timer }).await;
            });
            timer
        });
        if let Some(stream) = self.streams.get_mut(&task) {
            stream.asking.push(Asking {
                conn,
                req,
                index,
                max,
                timer,
            });
        }
    }

    /// Items from `index` on (at most `max`) if one can be given now: each
    /// made item's reference moves from the stream to `conn`.
    fn next_items(
        &mut self,
        conn: ConnId,
        task: TaskId,
        index: u32,
        max: u32,
    ) -> Option<StreamItem> {
        let mut ready = Vec::new();
        for i in index..index.saturating_add(max.max(1)) {
            let id = ObjectId::for_return(task, i);
            let is_ready = self.objects.get(&id).is_some_and(|e| e.is_ready());
            let take = self.streams.get_mut(&task)?.book.take(i, is_ready);
            match take {
                Take::Item { held } => {
                    self.hand_over(conn, id, held);
                    ready.push(id);
                }
                Take::Error if ready.is_empty() => {
                    let end = ObjectId::for_return(task, 0);
                    self.hold(conn, end);
                    return Some(StreamItem::Ready(vec![end]));
                }
                Take::End if ready.is_empty() => return Some(StreamItem::End),
                Take::Wait if ready.is_empty() => return None,
                // Given next time, after the items before it.
                Take::Error | Take::End | Take::Wait => break,
            }
        }
        Some(StreamItem::Ready(ready))
    }

    /// Gives `conn` a reference to item `id`: the stream's (`held`), or a
    /// new one.
    fn hand_over(&mut self, conn: ConnId, id: ObjectId, held: bool) {
        let taken = self
            .clients
            .get_mut(&conn)
            .is_some_and(|c| c.held.insert(id));
        match (held, taken) {
            (true, true) | (false, false) => {}
            (true, false) => self.release(id),
            (false, true) => {
                self.objects.add_ref(id);
            }
        }
    }

    /// An object was set: if it belongs to a stream, answer what waited for it.
    pub(super) fn stream_progress(&mut self, id: ObjectId) {
        let task = id.task();
        let Some(stream) = self.streams.get_mut(&task) else {
            return;
        };
        if id.index() == 0 {
            let failed = self
                .objects
                .get(&id)
                .is_some_and(|e| matches!(e.state, ObjState::Inline { error: true, .. }));
            stream.book.end(failed);
        }
        let Some(stream) = self.streams.get_mut(&task) else {
            return;
        };
        let asking = std::mem::take(&mut stream.asking);
        let mut still = Vec::new();
        for ask in asking {
            match self.next_items(ask.conn, task, ask.index, ask.max) {
                Some(item) => self.send(ask.conn, FromNode::Item { req: ask.req, item }),
                None => still.push(ask),
            }
        }
        if let Some(stream) = self.streams.get_mut(&task) {
            stream.asking.extend(still);
        }
    }

    /// A `NextItem` request's timeout passed: answer `Pending` if it still waits.
    pub(super) fn stream_timeout(&mut self, timer: WaiterId) {
        for (_, stream) in self.streams.iter_mut() {
            if let Some(i) = stream.asking.iter().position(|a| a.timer == Some(timer)) {
                let ask = stream.asking.swap_remove(i);
                let item = StreamItem::Pending;
                return self.send(ask.conn, FromNode::Item { req: ask.req, item });
            }
        }
    }

    /// An object was freed: if it was a stream's end, the generator is
    /// dropped, and so is every item it did not take.
    pub(super) fn stream_freed(&mut self, id: ObjectId) {
        if id.index() != 0 {
            return;
        }
        let Some(stream) = self.streams.remove(&id.task()) else {
            return;
        };
        for ask in stream.asking {
            self.send(
                ask.conn,
                FromNode::Item {
                    req: ask.req,
                    item: StreamItem::End,
                },
            );
        }
        for index in stream.book.drop_held() {
            self.release(ObjectId::for_return(id.task(), index));
        }
    }
}
