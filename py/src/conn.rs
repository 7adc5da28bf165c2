//! A client's connection to its node: a writer shared by the caller's
//! threads, and a reader thread that files replies by request number and
//! queues work sent to a worker.
//!
//! Replies to *watched* requests (gets that asyncio code awaits) go to a
//! queue of their own, which one thread of the process drains for all of
//! them: a waiting `await` costs no thread.

pub use raynode_proto::client::{read_frame, Stream};
use raynode_proto::frame;
use raynode_proto::{FromNode, TaskId, ToNode};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::refs::RefTable;

#[derive(Default)]
struct Inbox {
    replies: HashMap<u64, FromNode>,
    /// The first values of gets whose reply comes in several frames.
    parts: HashMap<u64, Vec<raynode_proto::Value>>,
    work: VecDeque<FromNode>,
    closed: Option<String>,
    /// Requests whose replies go to `watch_done` instead of `replies`.
    watched: HashSet<u64>,
    /// Replies to watched requests, not yet taken. Bounded by `watched`:
    /// one reply per request the process made.
    watch_done: Vec<FromNode>,
    /// This worker's tasks that a `ray.cancel` reached, until they end.
    cancelled: HashSet<TaskId>,
    /// Cancellations not yet taken by `wait_cancel` (at most one per task
    /// sent to this worker).
    cancel_news: VecDeque<TaskId>,
}

pub struct Conn {
    writer: Mutex<(Stream, Vec<u8>)>,
    inbox: Mutex<Inbox>,
    replied: Condvar,
    work_ready: Condvar,
    watch_ready: Condvar,
    cancel_ready: Condvar,
    next_req: AtomicU64,
    pub refs: Arc<RefTable>,
    stopping: AtomicBool,
    /// Print the output of workers running this driver's work.
    pub log_to_driver: AtomicBool,
}

impl Conn {
    /// Wraps a connected stream whose hello is done; starts the reader thread
    /// and the reference flusher.
    pub fn start(stream: Stream, refs: Arc<RefTable>) -> std::io::Result<Arc<Conn>> {
        let reader = stream.try_clone()?;
        let conn = Arc::new(Conn {
            writer: Mutex::new((stream, Vec::with_capacity(64 * 1024))),
            inbox: Mutex::new(Inbox::default()),
            replied: Condvar::new(),
            work_ready: Condvar::new(),
            watch_ready: Condvar::new(),
            cancel_ready: Condvar::new(),
            next_req: AtomicU64::new(1),
            refs,
            stopping: AtomicBool::new(false),
            log_to_driver: AtomicBool::new(true),
        });
        let for_reader = conn.clone();
        std::thread::Builder::new()
            .name("raynode-reader".into())
            .spawn(move || for_reader.read_loop(reader))?;
        let weak = Arc::downgrade(&conn);
        std::thread::Builder::new()
            .name("raynode-refs".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(50));
                let Some(conn) = weak.upgrade() else { return };
                if conn.stopping.load(Ordering::Relaxed) {
                    return;
                }
                if conn.refs.has_changes() {
                    let _ = conn.send_all(&[]);
                }
            })?;
        Ok(conn)
    }

    fn read_loop(&self, stream: Stream) {
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let why = loop {
            match read_frame(&mut reader) {
                Ok(msg) => self.file(msg),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break "the node closed the connection".to_string()
                }
                Err(e) => break format!("connection to the node failed: {e}"),
            }
        };
        let mut inbox = self.lock_inbox();
        inbox.closed = Some(why);
        drop(inbox);
        self.replied.notify_all();
        self.work_ready.notify_all();
        self.watch_ready.notify_all();
        self.cancel_ready.notify_all();
    }

    fn lock_inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn file(&self, msg: FromNode) {
        if let FromNode::Output(output) = msg {
            if self.log_to_driver.load(Ordering::Relaxed) {
                // Prefixed with its source as Ray does: `(f pid=12, ip=10.0.0.5) hello`.
                crate::progress::print(&output.source, &output.lines, output.stderr);
            }
            return;
        }
        if let FromNode::GotPart { req, values } = msg {
            self.lock_inbox()
                .parts
                .entry(req)
                .or_default()
                .extend(values);
            return;
        }
        let req = msg.req();
        let mut inbox = self.lock_inbox();
        let msg = match (req.and_then(|r| inbox.parts.remove(&r)), msg) {
            (
                Some(mut first),
                FromNode::Got {
                    req,
                    values: Some(rest),
                },
            ) => {
                first.extend(rest);
                FromNode::Got {
                    req,
                    values: Some(first),
                }
            }
            (_, msg) => msg,
        };
        match req {
            Some(0) => {
                if let FromNode::Error { message, .. } = msg {
                    inbox.closed = Some(format!("the node closed the connection: {message}"));
                }
                drop(inbox);
                self.replied.notify_all();
            }
            Some(req) if inbox.watched.remove(&req) => {
                inbox.watch_done.push(msg);
                drop(inbox);
                self.watch_ready.notify_one();
            }
            Some(req) => {
                inbox.replies.insert(req, msg);
                drop(inbox);
                self.replied.notify_all();
            }
            None => {
                let cancel = if let FromNode::Cancel { task } = &msg {
                    inbox.cancelled.insert(*task);
                    inbox.cancel_news.push_back(*task);
                    true
                } else {
                    false
                };
                inbox.work.push_back(msg);
                drop(inbox);
                self.work_ready.notify_one();
                if cancel {
                    self.cancel_ready.notify_all();
                }
            }
        }
    }

    pub fn next_req(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes the frames, preceded by any reference changes not yet told.
    pub fn send_all(&self, msgs: &[ToNode]) -> std::io::Result<()> {
        self.with_writer(|stream, buf| {
            for msg in msgs {
                frame::encode_into(msg, buf).map_err(std::io::Error::other)?;
            }
            if buf.is_empty() {
                return Ok(());
            }
            stream.write_all(buf)
        })
    }

    /// Runs `f` with the socket and the write buffer, emptied but for the
    /// pending reference changes, under the writer's lock: for frames built
    /// in place (`f` appends them and writes the buffer).
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut Stream, &mut Vec<u8>) -> R) -> R {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (stream, buf) = &mut *guard;
        buf.clear();
        if let Some((add, remove)) = self.refs.take_changes() {
            if !add.is_empty() || !remove.is_empty() {
                // Encoding a list of ids into a Vec cannot fail.
                let _ = frame::encode_into(&ToNode::Refs { add, remove }, buf);
            }
        }
        f(stream, buf)
    }

    pub fn send(&self, msg: ToNode) -> std::io::Result<()> {
        self.send_all(std::slice::from_ref(&msg))
    }

    /// Waits up to `slice` for the reply to `req`. `Ok(None)`: not yet.
    pub fn wait_reply(&self, req: u64, slice: Duration) -> Result<Option<FromNode>, String> {
        self.wait_for(&self.replied, slice, |inbox| inbox.replies.remove(&req))
    }

    /// Files the reply to `req` with the watched ones. Call before sending
    /// the request, so the reply cannot come first.
    pub fn watch(&self, req: u64) {
        self.lock_inbox().watched.insert(req);
    }

    /// Forgets a watched request whose sending failed.
    pub fn unwatch(&self, req: u64) {
        self.lock_inbox().watched.remove(&req);
    }

    /// Waits up to `slice` for replies to watched requests; takes them all.
    /// An error once the connection is closed and no reply is left.
    pub fn wait_watched(&self, slice: Duration) -> Result<Vec<FromNode>, String> {
        let mut inbox = self.lock_inbox();
        let deadline = std::time::Instant::now() + slice;
        loop {
            if !inbox.watch_done.is_empty() {
                return Ok(std::mem::take(&mut inbox.watch_done));
            }
            if let Some(why) = &inbox.closed {
                return Err(why.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            inbox = self
                .watch_ready
                .wait_timeout(inbox, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Whether a `ray.cancel` reached `task` (a worker's running task).
    pub fn is_cancelled(&self, task: TaskId) -> bool {
        self.lock_inbox().cancelled.contains(&task)
    }

    /// Waits up to `slice` for a `ray.cancel` to reach this worker.
    pub fn wait_cancel(&self, slice: Duration) -> Result<Option<TaskId>, String> {
        let mut inbox = self.lock_inbox();
        let deadline = std::time::Instant::now() + slice;
        loop {
            if let Some(task) = inbox.cancel_news.pop_front() {
                return Ok(Some(task));
            }
            if let Some(why) = &inbox.closed {
                return Err(why.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            inbox = self
                .cancel_ready
                .wait_timeout(inbox, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub fn forget_cancelled(&self, task: TaskId) {
        self.lock_inbox().cancelled.remove(&task);
    }

    /// Waits up to `slice` for work sent to this worker.
    pub fn wait_work(&self, slice: Duration) -> Result<Option<FromNode>, String> {
        self.wait_for(&self.work_ready, slice, |inbox| inbox.work.pop_front())
    }

    /// Waits on `signal` until `take` finds something, the connection
    /// closes, or `slice` passes.
    fn wait_for(
        &self,
        signal: &Condvar,
        slice: Duration,
        mut take: impl FnMut(&mut Inbox) -> Option<FromNode>,
    ) -> Result<Option<FromNode>, String> {
        let mut inbox = self.lock_inbox();
        let deadline = std::time::Instant::now() + slice;
        loop {
            if let Some(msg) = take(&mut inbox) {
                return Ok(Some(msg));
            }
            if let Some(why) = &inbox.closed {
                return Err(why.clone());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            inbox = signal
                .wait_timeout(inbox, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    pub fn close(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.send_all(&[]);
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.shutdown();
    }
}
