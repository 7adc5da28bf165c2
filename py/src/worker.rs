//! The worker side of `Client`: the next piece of work (or cancel), and
//! what a task or actor reports back: results, generator items, the end of
//! an actor's constructor.

use crate::client::Client;
use crate::convert::{id16, id20, ids20, owned_bytes, unexpected, value_to_py};
use crate::errors;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use raynode_proto::{
    ActorId, FromNode, Generator, ReturnValue, SchedulingStrategy, TaskId, TaskKind, ToNode,
};
use std::time::Duration;

/// A task's results as the worker reports them: each `(bytes, nested)`,
/// bytes `None` when written to the store.
type Returned<'py> = Vec<(Option<Bound<'py, PyAny>>, Vec<Vec<u8>>)>;

#[pymethods]
impl Client {
    /// Worker: the id of a task a `ray.cancel` reached, waiting up to
    /// `timeout` seconds; `None` if none did. Raises `ConnectionError` once
    /// the node is gone.
    fn next_cancel<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let conn = self.conn.clone();
        let slice = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let got = py
            .detach(|| conn.wait_cancel(slice))
            .map_err(errors::connection)?;
        Ok(got.map(|task| PyBytes::new(py, &task.0)))
    }

    /// Worker: whether a `ray.cancel` reached the running task `task_id`.
    fn is_cancelled(&self, task_id: &[u8]) -> PyResult<bool> {
        Ok(self.conn.is_cancelled(id16(task_id, TaskId)?))
    }

    /// Reserves the store object of a task's return (worker side).
    fn create_return(&self, py: Python<'_>, object_id: &[u8], size: u64) -> PyResult<String> {
        self.create_object(py, id20(object_id)?, size)
    }

    /// Worker: the next thing to do, waiting up to `timeout` seconds.
    /// `None` if nothing came; raises `ConnectionError` once the node is gone.
    /// Returns `("cancel", task_id)` or `("run", task_id, function_id,
    /// body|None, name, args, kwargs, num_returns, kind, job, attempt,
    /// gpu_ids, resources, group)`; `group` is `(group_id, bundle_index,
    /// capture_child_tasks)` for a task in a placement group, else `None`.
    fn next_work<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let conn = self.conn.clone();
        let got = py.detach(|| conn.wait_work(Duration::from_secs_f64(timeout.max(0.0))));
        let msg = match got.map_err(errors::connection)? {
            None => return Ok(None),
            Some(m) => m,
        };
        match msg {
            FromNode::Cancel { task } => Ok(Some(PyTuple::new(
                py,
                [
                    PyBytes::new(py, b"cancel").into_any(),
                    PyBytes::new(py, &task.0).into_any(),
                ],
            )?)),
            FromNode::Execute(ex) => {
                let spec = ex.spec;
                let args = PyList::empty(py);
                for v in ex.args {
                    args.append(value_to_py(py, v)?)?;
                }
                let kind: Bound<'py, PyAny> = match spec.kind {
                    TaskKind::Normal => py.None().into_bound(py),
                    TaskKind::ActorMethod { actor, method } => {
                        ("method", PyBytes::new(py, &actor.0), method)
                            .into_pyobject(py)?
                            .into_any()
                    }
                    TaskKind::ActorCreate(o) => (
                        "create",
                        PyBytes::new(py, &o.actor.0),
                        o.max_concurrency,
                        o.is_async,
                        o.name.unwrap_or_default(),
                    )
                        .into_pyobject(py)?
                        .into_any(),
                };
                let body = ex.function_body.map(|b| PyBytes::new(py, &b));
                let resources = PyDict::new(py);
                for (name, amount) in &spec.resources.0 {
                    if *amount > 0.0 {
                        resources.set_item(name, amount)?;
                    }
                }
                let group: Bound<'py, PyAny> = match &spec.strategy {
                    SchedulingStrategy::PlacementGroup {
                        group,
                        bundle,
                        capture_child_tasks,
                    } => (
                        PyBytes::new(py, &group.0),
                        bundle.map_or(-1, i64::from),
                        *capture_child_tasks,
                    )
                        .into_pyobject(py)?
                        .into_any(),
                    _ => py.None().into_bound(py),
                };
                let items: Vec<Bound<'py, PyAny>> = vec![
                    PyBytes::new(py, b"run").into_any(),
                    PyBytes::new(py, &spec.task_id.0).into_any(),
                    PyBytes::new(py, &spec.function.0).into_any(),
                    body.into_pyobject(py)?.into_any(),
                    spec.name.into_pyobject(py)?.into_any(),
                    args.into_any(),
                    spec.kwargs.into_pyobject(py)?.into_any(),
                    match spec.generator {
                        Generator::No => spec.num_returns.into_pyobject(py)?.into_any(),
                        Generator::Streaming => "streaming".into_pyobject(py)?.into_any(),
                        Generator::Dynamic => "dynamic".into_pyobject(py)?.into_any(),
                    },
                    kind,
                    ex.job.to_string().into_pyobject(py)?.into_any(),
                    ex.attempt.into_pyobject(py)?.into_any(),
                    ex.gpu_ids.into_pyobject(py)?.into_any(),
                    resources.into_any(),
                    group,
                ];
                Ok(Some(PyTuple::new(py, items)?))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Worker: reports a task's results: each `(bytes, nested)` inline or
    /// `(None, nested)` when written to the store object made by `create_return`.
    /// `error`: when it raised, the exception's type and message.
    #[pyo3(signature = (task_id, results, app_error, error=None))]
    fn task_done(
        &self,
        py: Python<'_>,
        task_id: &[u8],
        results: Returned<'_>,
        app_error: bool,
        error: Option<String>,
    ) -> PyResult<()> {
        let mut out = Vec::with_capacity(results.len());
        for (bytes, nested) in results {
            let nested = ids20(&nested)?;
            out.push(match bytes {
                Some(bytes) => ReturnValue::Inline {
                    bytes: owned_bytes(&bytes)?,
                    nested,
                },
                None => ReturnValue::Stored { nested },
            });
        }
        let task = id16(task_id, TaskId)?;
        self.conn.forget_cancelled(task);
        self.send(
            py,
            ToNode::TaskDone {
                task,
                results: out,
                app_error,
                error,
            },
        )
    }

    /// Worker: item `index` (from 1) of the running generator task, inline
    /// `bytes` or `None` when written to the store object made by
    /// `create_return`.
    fn yield_item(
        &self,
        py: Python<'_>,
        task_id: &[u8],
        index: u32,
        bytes: Option<Bound<'_, PyAny>>,
        nested: Vec<Vec<u8>>,
    ) -> PyResult<()> {
        let nested = ids20(&nested)?;
        let value = match bytes {
            Some(bytes) => ReturnValue::Inline {
                bytes: owned_bytes(&bytes)?,
                nested,
            },
            None => ReturnValue::Stored { nested },
        };
        let task = id16(task_id, TaskId)?;
        self.send(py, ToNode::Yield { task, index, value })
    }

    #[pyo3(signature = (actor_id, error=None))]
    fn actor_ready(&self, py: Python<'_>, actor_id: &[u8], error: Option<String>) -> PyResult<()> {
        self.send(
            py,
            ToNode::ActorReady {
                actor: id16(actor_id, ActorId)?,
                error,
            },
        )
    }
}
