//! Conversions between what Python hands the client and the wire types:
//! ids from bytes, values to Python, scheduling strategies and task kinds
//! from the tuples the Python layer builds, and replies that make no sense.

use crate::errors;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use raynode_proto::{
    ActorId, ActorOptions, FromNode, NodeId, ObjectId, PlacementGroupId, SchedulingStrategy,
    TaskKind, Value,
};

pub(crate) fn id20(b: &[u8]) -> PyResult<ObjectId> {
    ObjectId::from_slice(b).ok_or_else(|| errors::value("an object id is 20 bytes"))
}

pub(crate) fn ids20(ids: &[Vec<u8>]) -> PyResult<Vec<ObjectId>> {
    ids.iter().map(|b| id20(b)).collect()
}

pub(crate) fn id16<T>(b: &[u8], make: fn([u8; 16]) -> T) -> PyResult<T> {
    <[u8; 16]>::try_from(b)
        .map(make)
        .map_err(|_| errors::value("an id is 16 bytes"))
}

pub(crate) fn value_to_py<'py>(py: Python<'py>, v: Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Inline(bytes) => PyBytes::new(py, &bytes).into_any(),
        Value::Store { path, size, id } => (path, size, PyBytes::new(py, &id.0))
            .into_pyobject(py)?
            .into_any(),
    })
}

pub(crate) fn parse_strategy(t: &Bound<'_, PyTuple>) -> PyResult<SchedulingStrategy> {
    let tag: String = t.get_item(0)?.extract()?;
    match tag.as_str() {
        "default" => Ok(SchedulingStrategy::Default),
        "spread" => Ok(SchedulingStrategy::Spread),
        "affinity" => {
            let hex: String = t.get_item(1)?.extract()?;
            let node = NodeId::from_hex(&hex).ok_or_else(|| {
                errors::value(format!(
                    "NodeAffinitySchedulingStrategy: {hex:?} is not a node id"
                ))
            })?;
            Ok(SchedulingStrategy::NodeAffinity {
                node,
                soft: t.get_item(2)?.extract()?,
            })
        }
        "group" => {
            let group = id16(&t.get_item(1)?.extract::<Vec<u8>>()?, PlacementGroupId)?;
            let index: i64 = t.get_item(2)?.extract()?;
            let bundle = if index < 0 {
                None
            } else {
                Some(u32::try_from(index).map_err(errors::value)?)
            };
            Ok(SchedulingStrategy::PlacementGroup {
                group,
                bundle,
                capture_child_tasks: t.get_item(3)?.extract()?,
            })
        }
        other => Err(errors::value(format!(
            "unknown scheduling strategy {other:?}"
        ))),
    }
}

pub(crate) fn parse_kind(t: &Bound<'_, PyTuple>) -> PyResult<(TaskKind, bool)> {
    let tag: String = t.get_item(0)?.extract()?;
    let actor = id16(&t.get_item(1)?.extract::<Vec<u8>>()?, ActorId)?;
    match tag.as_str() {
        "method" => Ok((
            TaskKind::ActorMethod {
                actor,
                method: t.get_item(2)?.extract()?,
            },
            false,
        )),
        "create" => {
            let name: Option<String> = t.get_item(2)?.extract()?;
            let acked = name.is_some();
            let opts = ActorOptions {
                actor,
                name,
                namespace: t.get_item(3)?.extract()?,
                detached: t.get_item(4)?.extract()?,
                max_restarts: t.get_item(5)?.extract()?,
                max_task_retries: t.get_item(6)?.extract()?,
                max_concurrency: t.get_item(7)?.extract()?,
                is_async: t.get_item(8)?.extract()?,
                handle_meta: t.get_item(9)?.extract()?,
            };
            Ok((TaskKind::ActorCreate(opts), acked))
        }
        other => Err(errors::value(format!("unknown task kind {other:?}"))),
    }
}

/// Copies a `bytes` object (or any contiguous buffer) in one go: pyo3's
/// `Vec<u8>` extraction goes item by item.
pub(crate) fn owned_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    pyo3::buffer::PyBuffer::<u8>::get(obj)?.to_vec(obj.py())
}

pub(crate) fn unexpected(msg: FromNode) -> PyErr {
    errors::connection(format!("unexpected reply from the node: {msg:?}"))
}

/// The first bytes of every id this client makes: its node's tag (the
/// first four bytes of the node id), so any node can tell who owns an
/// object, then four random bytes that tell this client from the others.
pub(crate) fn id_prefix(node: &raynode_proto::NodeId) -> [u8; 8] {
    use raynode_proto::ids::OWNER_TAG_LEN;
    let mut prefix: [u8; 8] = rand::random();
    prefix[..OWNER_TAG_LEN].copy_from_slice(&raynode_proto::owner_tag(&node.0));
    prefix
}
