//! `Client`: what the Python layer calls to reach its node. Every call that
//! waits releases the GIL, in slices so Ctrl-C still interrupts it.

use crate::conn::{read_frame, Conn, Stream};
use crate::convert::{
    id16, id20, id_prefix, ids20, owned_bytes, parse_kind, parse_strategy, unexpected, value_to_py,
};
use crate::errors;
use crate::refs::{ObjectRef, RefTable};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use raynode_proto::frame;
use raynode_proto::{
    AckError, ActorId, Arg, FromNode, FunctionId, Generator, GroupStrategy, InfoKind, LogQuery,
    LogTarget, NodeId, ObjectId, PlacementGroupId, PlacementGroupSpec, Resources, Role,
    SchedulingStrategy, TaskId, TaskKind, TaskSpec, ToNode, WorkerId, PROTOCOL_VERSION,
};
use std::io::Write;

/// Refs split in two: (ready, not ready).
type Split<'py> = (Vec<Bound<'py, ObjectRef>>, Vec<Bound<'py, ObjectRef>>);
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SLICE: Duration = Duration::from_millis(100);

#[pyclass(frozen, module = "raynode._core")]
pub struct Client {
    pub(crate) conn: Arc<Conn>,
    prefix: [u8; 8],
    counter: AtomicU64,
    #[pyo3(get)]
    node_id: String,
    #[pyo3(get)]
    job_id: String,
    #[pyo3(get)]
    store_root: String,
    #[pyo3(get)]
    pub(crate) inline_limit: u64,
    /// Whether this process maps the node's shared-memory store; a driver on
    /// another machine (or with `RAYNODE_NO_SHM=1`) gets values over its connection.
    #[pyo3(get)]
    shares_memory: bool,
}

/// Values up to this size are put through an ordinary frame; larger ones
/// are written straight into the frame.
const SMALL_PUT_BYTES: usize = 64 * 1024;

#[pymethods]
impl Client {
    /// Connects to a node (a Unix socket path or host:port) and says hello.
    #[staticmethod]
    #[pyo3(signature = (address, worker_id=None, timeout=5.0, cluster_key=None))]
    fn connect(
        py: Python<'_>,
        address: String,
        worker_id: Option<u64>,
        timeout: f64,
        cluster_key: Option<&[u8]>,
    ) -> PyResult<Client> {
        let cluster_key = match cluster_key {
            Some(k) => Some(
                <[u8; 32]>::try_from(k).map_err(|_| errors::value("a cluster key is 32 bytes"))?,
            ),
            None => None,
        };
        let role = match worker_id {
            Some(id) => Role::Worker {
                worker: WorkerId(id),
            },
            None => Role::Driver {
                pid: std::process::id(),
            },
        };
        if !timeout.is_finite() {
            return Err(errors::value(
                "the connect timeout must be a finite number of seconds",
            ));
        }
        let timeout = Duration::from_secs_f64(timeout.max(0.01));
        let (stream, welcome) = py
            .detach(|| -> std::io::Result<(Stream, FromNode)> {
                let mut stream = Stream::connect(&address, timeout, cluster_key.as_ref())?;
                let hello = frame::encode(&ToNode::Hello {
                    version: PROTOCOL_VERSION,
                    role,
                })
                .map_err(std::io::Error::other)?;
                stream.write_all(&hello)?;
                let welcome = read_frame(&mut stream)?;
                stream.clear_read_timeout()?;
                Ok((stream, welcome))
            })
            .map_err(|e| {
                errors::connection(format!(
                    "could not connect to a raynode node at {address}: {e}"
                ))
            })?;
        let (node, job, store_root, inline_limit) = match welcome {
            FromNode::Welcome {
                node,
                job,
                store_root,
                inline_limit,
            } => (node, job, store_root, inline_limit),
            FromNode::Error { message, .. } => {
                return Err(errors::connection(format!(
                    "the node at {address} refused: {message}"
                )))
            }
            _ => {
                return Err(errors::connection(format!(
                    "the node at {address} sent no welcome"
                )))
            }
        };
        let no_shm = std::env::var("RAYNODE_NO_SHM").is_ok_and(|v| v == "1" || v == "true");
        let shares_memory = worker_id.is_some() || (!no_shm && Path::new(&store_root).is_dir());
        let mut stream = stream;
        if !shares_memory {
            let frame = frame::encode(&ToNode::NoSharedMemory).map_err(errors::connection)?;
            py.detach(|| stream.write_all(&frame))
                .map_err(|e| errors::connection(format!("lost the connection to the node: {e}")))?;
        }
        let conn =
            Conn::start(stream, Arc::new(RefTable::default())).map_err(errors::connection)?;
        Ok(Client {
            conn,
            prefix: id_prefix(&node),
            counter: AtomicU64::new(1),
            node_id: node.to_string(),
            job_id: job.to_string(),
            store_root,
            inline_limit,
            shares_memory,
        })
    }

    /// A fresh 16-byte id (tasks, puts, actors).
    fn new_id<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.fresh_id())
    }

    fn register_function(&self, py: Python<'_>, function_id: &[u8], body: &[u8]) -> PyResult<()> {
        let id = id16(function_id, FunctionId)?;
        self.send(
            py,
            ToNode::RegisterFunction {
                id,
                body: body.to_vec(),
            },
        )
    }

    /// Submits a task; returns its result refs. `args` holds `bytes`
    /// (inline values) and `ObjectRef`s. `kind` is `None`, `("method",
    /// actor_id, name)` or `("create", actor_id, name, namespace, detached,
    /// max_restarts, max_task_retries, max_concurrency, is_async, meta)`.
    /// `strategy` is `None` (the default), `("spread",)`, `("affinity",
    /// node_id_hex, soft)` or `("group", group_id, bundle_index, capture)`
    /// (index -1: any bundle). `generator` is `None`, `"streaming"` or
    /// `"dynamic"`; a generator task has one return, its end.
    #[pyo3(signature = (function_id, name, args, kwargs, num_returns, resources, max_retries, retry_exceptions, nested, kind=None, strategy=None, generator=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        function_id: &[u8],
        name: String,
        args: &Bound<'py, PyList>,
        kwargs: Vec<String>,
        num_returns: u32,
        resources: Vec<(String, f64)>,
        max_retries: i32,
        retry_exceptions: bool,
        nested: Vec<Vec<u8>>,
        kind: Option<&Bound<'py, PyTuple>>,
        strategy: Option<&Bound<'py, PyTuple>>,
        generator: Option<&str>,
    ) -> PyResult<Vec<ObjectRef>> {
        let (generator, num_returns) = match generator {
            None => (Generator::No, num_returns),
            Some("streaming") => (Generator::Streaming, 1),
            Some("dynamic") => (Generator::Dynamic, 1),
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "generator must be 'streaming' or 'dynamic', got {other:?}"
                )))
            }
        };
        let mut spec_args = Vec::with_capacity(args.len());
        for a in args.iter() {
            if let Ok(r) = a.cast::<ObjectRef>() {
                spec_args.push(Arg::Ref(r.get().id));
            } else {
                spec_args.push(Arg::Value(owned_bytes(&a)?));
            }
        }
        let nested_refs = ids20(&nested)?;
        let (kind, acked) = match kind {
            None => (TaskKind::Normal, false),
            Some(t) => parse_kind(t)?,
        };
        let strategy = match strategy {
            None => SchedulingStrategy::Default,
            Some(t) => parse_strategy(t)?,
        };
        let spec = TaskSpec {
            strategy,
            task_id: TaskId(self.fresh_id()),
            function: id16(function_id, FunctionId)?,
            name,
            args: spec_args,
            kwargs,
            num_returns,
            resources: Resources(resources),
            max_retries,
            retry_exceptions,
            nested_refs,
            kind,
            generator,
        };
        let ids: Vec<ObjectId> = spec.return_ids().collect();
        if acked {
            let req = self.conn.next_req();
            self.send(py, ToNode::SubmitAcked { req, spec })?;
            if let FromNode::Acked { error: Some(e), .. } = self.reply(py, req)? {
                return Err(errors::ack(py, e));
            }
        } else {
            self.send(py, ToNode::Submit(spec))?;
        }
        Ok(ids
            .into_iter()
            .map(|id| ObjectRef::new(id, self.conn.refs.clone(), true))
            .collect())
    }

    /// Puts a small value (layout bytes) held by the node's memory.
    /// Puts a serialized value inline, built straight from its sections.
    fn put_parts<'py>(
        &self,
        py: Python<'py>,
        meta: &[u8],
        data: &Bound<'py, PyAny>,
        buffers: &Bound<'py, PyList>,
        nested: Vec<Vec<u8>>,
    ) -> PyResult<ObjectRef> {
        let sections = crate::codec::Sections::new(meta, data, buffers)?;
        let id = ObjectId::for_return(TaskId(self.fresh_id()), 0);
        let nested = ids20(&nested)?;
        let total = sections.layout.total;
        if total <= SMALL_PUT_BYTES {
            let mut bytes = vec![0u8; total];
            sections.write(py, &mut bytes)?;
            self.send(py, ToNode::Put { id, bytes, nested })?;
            return Ok(ObjectRef::new(id, self.conn.refs.clone(), true));
        }
        self.conn.with_writer(|stream, buf| -> PyResult<()> {
            let built =
                frame::encode_put_into(buf, id, total, &nested, |dst| sections.write(py, dst));
            // A put that could not be framed leaves the buffer as it was:
            // the reference changes ahead of it still go out.
            if !buf.is_empty() {
                py.detach(|| stream.write_all(buf)).map_err(|e| {
                    errors::connection(format!("lost the connection to the node: {e}"))
                })?;
            }
            built.map_err(|e| errors::value(format!("cannot put this value: {e}")))?
        })?;
        Ok(ObjectRef::new(id, self.conn.refs.clone(), true))
    }

    /// Reserves a store object for a put: returns `(ref, path)` to write then `seal`.
    fn create_put(&self, py: Python<'_>, size: u64) -> PyResult<(ObjectRef, String)> {
        let id = ObjectId::for_return(TaskId(self.fresh_id()), 0);
        let path = self.create_object(py, id, size)?;
        Ok((ObjectRef::new(id, self.conn.refs.clone(), true), path))
    }

    fn seal(&self, py: Python<'_>, object_id: &[u8], nested: Vec<Vec<u8>>) -> PyResult<()> {
        let nested = ids20(&nested)?;
        self.send(
            py,
            ToNode::Seal {
                id: id20(object_id)?,
                nested,
            },
        )
    }

    /// Values of `refs` in order (`bytes` inline, `(path, size)` stored), or
    /// `None` if `timeout` (seconds) passed first.
    #[pyo3(signature = (refs, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        refs: Vec<Bound<'py, ObjectRef>>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        let ids: Vec<ObjectId> = refs.iter().map(|r| r.get().id).collect();
        let req = self.conn.next_req();
        let timeout_ms = timeout.map(|t| (t.max(0.0) * 1000.0) as u64);
        self.send(
            py,
            ToNode::Get {
                req,
                ids: ids.clone(),
                timeout_ms,
            },
        )?;
        match self.reply(py, req)? {
            FromNode::Got {
                values: Some(values),
                ..
            } => {
                self.conn.refs.mark_ready(ids);
                Ok(Some(
                    values
                        .into_iter()
                        .map(|v| value_to_py(py, v))
                        .collect::<PyResult<_>>()?,
                ))
            }
            FromNode::Got { values: None, .. } => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Asks for the values of `refs` without waiting: the reply comes out
    /// of `next_watched` under the request number returned.
    fn watch(&self, py: Python<'_>, refs: Vec<Bound<'_, ObjectRef>>) -> PyResult<u64> {
        let ids = refs.iter().map(|r| r.get().id).collect();
        let req = self.conn.next_req();
        self.conn.watch(req);
        let sent = self.send(
            py,
            ToNode::Get {
                req,
                ids,
                timeout_ms: None,
            },
        );
        if sent.is_err() {
            self.conn.unwatch(req);
        }
        sent.map(|()| req)
    }

    /// Replies to watched requests, waiting up to `timeout` seconds for the
    /// first: `(req, values, None)` or `(req, None, the node's error)`.
    /// Raises `ConnectionError` once the connection is gone.
    fn next_watched<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let conn = self.conn.clone();
        let slice = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let got = py
            .detach(|| conn.wait_watched(slice))
            .map_err(errors::connection)?;
        let mut out = Vec::with_capacity(got.len());
        for msg in got {
            let item = match msg {
                FromNode::Got {
                    req,
                    values: Some(values),
                } => {
                    let values = values
                        .into_iter()
                        .map(|v| value_to_py(py, v))
                        .collect::<PyResult<Vec<_>>>()?;
                    (req, Some(values), None)
                }
                FromNode::Error { req, message } => (req, None, Some(message)),
                FromNode::Item { req, item } => {
                    let item = vec![self.item_to_py(py, item)?];
                    (req, Some(item), None)
                }
                other => match other.req() {
                    Some(req) => (req, None, Some(format!("unexpected reply: {other:?}"))),
                    None => continue,
                },
            };
            out.push(item.into_pyobject(py)?);
        }
        Ok(out)
    }

    /// Indexes of the ready refs (at most `num_returns`).
    #[pyo3(signature = (refs, num_returns, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        refs: Vec<Bound<'_, ObjectRef>>,
        num_returns: u32,
        timeout: Option<f64>,
    ) -> PyResult<Vec<u32>> {
        let ids: Vec<ObjectId> = refs.iter().map(|r| r.get().id).collect();
        // Refs known to be ready answer without a round trip.
        let mut known = self.conn.refs.known_ready(&ids);
        if known.len() >= num_returns as usize {
            known.truncate(num_returns as usize);
            return Ok(known);
        }
        let req = self.conn.next_req();
        let timeout_ms = timeout.map(|t| (t.max(0.0) * 1000.0) as u64);
        self.send(
            py,
            ToNode::Wait {
                req,
                ids: ids.clone(),
                num_returns,
                timeout_ms,
            },
        )?;
        match self.reply(py, req)? {
            // The node lists every ready id it found; the caller gets the
            // first `num_returns`, and the rest are remembered.
            FromNode::Waited { mut ready, .. } => {
                self.conn
                    .refs
                    .mark_ready(ready.iter().filter_map(|i| ids.get(*i as usize).copied()));
                ready.truncate(num_returns as usize);
                Ok(ready)
            }
            other => Err(unexpected(other)),
        }
    }

    /// `ray.wait` over plain refs: (ready, not ready), each in the order
    /// given. Raises TypeError for anything but an ObjectRef (the caller
    /// then takes its general path) and ValueError for a repeated ref.
    fn wait_split<'py>(
        &self,
        py: Python<'py>,
        refs: Vec<Bound<'py, ObjectRef>>,
        num_returns: u32,
        timeout: Option<f64>,
    ) -> PyResult<Split<'py>> {
        let mut seen = std::collections::HashSet::with_capacity(refs.len());
        if !refs.iter().all(|r| seen.insert(r.get().id)) {
            return Err(errors::value("Wait requires a list of unique object refs."));
        }
        let ready = self.wait(py, refs.clone(), num_returns, timeout)?;
        let mut is_ready = vec![false; refs.len()];
        for i in ready {
            if let Some(flag) = is_ready.get_mut(i as usize) {
                *flag = true;
            }
        }
        let (mut yes, mut no) = (Vec::with_capacity(num_returns as usize), Vec::new());
        for (r, ready) in refs.into_iter().zip(is_ready) {
            if ready {
                yes.push(r);
            } else {
                no.push(r);
            }
        }
        Ok((yes, no))
    }

    /// A new ref to an id (a ref unpickled from a value).
    fn make_ref(&self, object_id: &[u8]) -> PyResult<ObjectRef> {
        Ok(ObjectRef::new(
            id20(object_id)?,
            self.conn.refs.clone(),
            false,
        ))
    }

    fn cancel(&self, py: Python<'_>, r: &Bound<'_, ObjectRef>, force: bool) -> PyResult<()> {
        self.send(
            py,
            ToNode::Cancel {
                id: r.get().id,
                force,
            },
        )
    }

    fn kill_actor(&self, py: Python<'_>, actor_id: &[u8], no_restart: bool) -> PyResult<()> {
        self.send(
            py,
            ToNode::KillActor {
                actor: id16(actor_id, ActorId)?,
                no_restart,
            },
        )
    }

    /// `(actor_id, meta)` of the live actor of that name, or `None`.
    fn get_actor<'py>(
        &self,
        py: Python<'py>,
        name: String,
        namespace: String,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let req = self.conn.next_req();
        self.send(
            py,
            ToNode::GetActor {
                req,
                name,
                namespace,
            },
        )?;
        match self.reply(py, req)? {
            FromNode::ActorFound { found, .. } => {
                Ok(found.map(|(id, meta)| (PyBytes::new(py, &id.0), PyBytes::new(py, &meta))))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Records a placement group: `bundles` a list of `[(name, amount)]`,
    /// `strategy` its name. A name already taken raises `RaySystemError`
    /// (as Ray), an invalid group `ValueError`.
    #[pyo3(signature = (group_id, bundles, strategy, name, namespace, detached))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one by one
    fn create_placement_group(
        &self,
        py: Python<'_>,
        group_id: &[u8],
        bundles: Vec<Vec<(String, f64)>>,
        strategy: &str,
        name: Option<String>,
        namespace: String,
        detached: bool,
    ) -> PyResult<()> {
        let strategy = GroupStrategy::from_name(strategy).ok_or_else(|| {
            errors::value(format!("Invalid placement group strategy {strategy}."))
        })?;
        let group = PlacementGroupSpec {
            id: id16(group_id, PlacementGroupId)?,
            name,
            namespace,
            bundles: bundles.into_iter().map(Resources).collect(),
            strategy,
            detached,
        };
        group.validate().map_err(errors::value)?;
        let req = self.conn.next_req();
        self.send(py, ToNode::CreatePlacementGroup { req, group })?;
        match self.reply(py, req)? {
            FromNode::Acked { error: None, .. } => Ok(()),
            FromNode::Acked {
                error: Some(AckError::NameTaken(m)),
                ..
            } => Err(errors::system(py, m)),
            FromNode::Acked { error: Some(e), .. } => Err(errors::ack(py, e)),
            other => Err(unexpected(other)),
        }
    }

    fn remove_placement_group(&self, py: Python<'_>, group_id: &[u8]) -> PyResult<()> {
        let id = id16(group_id, PlacementGroupId)?;
        let req = self.conn.next_req();
        self.send(py, ToNode::RemovePlacementGroup { req, id })?;
        match self.reply(py, req)? {
            FromNode::Acked { error: None, .. } => Ok(()),
            FromNode::Acked { error: Some(e), .. } => Err(errors::ack(py, e)),
            other => Err(unexpected(other)),
        }
    }

    /// Cluster information as JSON, by one of `InfoKind::ALL`'s names
    /// (`nodes`, `jobs`, `tasks`, ...).
    fn info(&self, py: Python<'_>, what: &str) -> PyResult<String> {
        let Some(what) = InfoKind::from_name(what) else {
            return Err(errors::value(format!("unknown info {what:?}")));
        };
        let req = self.conn.next_req();
        self.send(py, ToNode::Info { req, what })?;
        match self.reply(py, req)? {
            FromNode::Info { json, .. } => Ok(json),
            other => Err(unexpected(other)),
        }
    }

    /// Part of a log as JSON `{"path", "text", "end"}`: the node's own
    /// (`target` "node"), or a worker's output by "pid", "worker" (its
    /// number) or "actor" (hex id) `value`, on `node` (hex id; the node
    /// connected to if None); the last `tail` lines, or all from `offset`.
    #[pyo3(signature = (target, value=None, node=None, stderr=false, tail=1000, offset=None))]
    #[allow(clippy::too_many_arguments)]
    fn logs(
        &self,
        py: Python<'_>,
        target: &str,
        value: Option<&str>,
        node: Option<&str>,
        stderr: bool,
        tail: u32,
        offset: Option<u64>,
    ) -> PyResult<String> {
        let bad = |what: &str| errors::value(format!("{what} {value:?} is not valid"));
        let value_of =
            || value.ok_or_else(|| errors::value(format!("a {target} log needs its {target}")));
        let target = match target {
            "node" => LogTarget::Node,
            "pid" => LogTarget::Pid(value_of()?.parse().map_err(|_| bad("pid"))?),
            "worker" => LogTarget::Worker(value_of()?.parse().map_err(|_| bad("worker"))?),
            "actor" => {
                LogTarget::Actor(ActorId::from_hex(value_of()?).ok_or_else(|| bad("actor id"))?)
            }
            other => return Err(errors::value(format!("unknown log target {other:?}"))),
        };
        let node = match node {
            Some(hex) => Some(
                NodeId::from_hex(hex)
                    .ok_or_else(|| errors::value(format!("{hex:?} is not a node id")))?,
            ),
            None => None,
        };
        let query = LogQuery {
            target,
            stderr,
            tail,
            offset,
        };
        let req = self.conn.next_req();
        self.send(py, ToNode::Logs { req, node, query })?;
        match self.reply(py, req)? {
            FromNode::Info { json, .. } => Ok(json),
            other => Err(unexpected(other)),
        }
    }

    /// Tells the node of dropped refs now rather than at the next frame.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let conn = self.conn.clone();
        py.detach(|| conn.send_all(&[])).map_err(errors::connection)
    }

    fn close(&self, py: Python<'_>) {
        let conn = self.conn.clone();
        py.detach(|| conn.close());
    }

    /// Whether the output of workers running this driver's work is
    /// printed here (`ray.init(log_to_driver=...)`).
    fn set_log_to_driver(&self, on: bool) {
        self.conn
            .log_to_driver
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Client {
    pub(crate) fn fresh_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.prefix);
        id[8..].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        id
    }

    pub(crate) fn send(&self, py: Python<'_>, msg: ToNode) -> PyResult<()> {
        let conn = self.conn.clone();
        py.detach(|| conn.send(msg))
            .map_err(|e| errors::connection(format!("lost the connection to the node: {e}")))
    }

    /// Waits for the reply to `req`, checking for Ctrl-C between slices.
    pub(crate) fn reply(&self, py: Python<'_>, req: u64) -> PyResult<FromNode> {
        loop {
            let conn = self.conn.clone();
            let got = py.detach(|| conn.wait_reply(req, SLICE));
            match got.map_err(errors::connection)? {
                Some(FromNode::Error { message, .. }) => return Err(errors::node(message)),
                Some(msg) => return Ok(msg),
                None => py.check_signals()?,
            }
        }
    }

    pub(crate) fn create_object(
        &self,
        py: Python<'_>,
        id: ObjectId,
        size: u64,
    ) -> PyResult<String> {
        let req = self.conn.next_req();
        self.send(py, ToNode::Create { req, id, size })?;
        match self.reply(py, req)? {
            FromNode::Created {
                result: Ok(path), ..
            } => Ok(path),
            FromNode::Created { result: Err(e), .. } => Err(errors::store(py, e)),
            other => Err(unexpected(other)),
        }
    }
}
