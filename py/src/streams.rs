//! Generators on the caller's side: taking the next items of a generator
//! task from the node, blocking (`next`) or watched (`async for`).

use crate::client::Client;
use crate::convert::unexpected;
use crate::refs::ObjectRef;
use pyo3::prelude::*;
use pyo3::types::PyList;
use raynode_proto::{FromNode, StreamItem, ToNode};

#[pymethods]
impl Client {
    /// Item `index` of the generator whose end is `end`, with up to `max -
    /// 1` more that are ready after it, waiting up to `timeout` seconds
    /// (`None`: for ever) for the first: a list of `ObjectRef`s, `None`
    /// once the generator has no more items, or `False` if the time passed.
    #[pyo3(signature = (end, index, max, timeout=None))]
    fn next_item<'py>(
        &self,
        py: Python<'py>,
        end: &Bound<'py, ObjectRef>,
        index: u32,
        max: u32,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let req = self.conn.next_req();
        let msg = ToNode::NextItem {
            req,
            task: end.get().id.task(),
            index,
            max,
            timeout_ms: timeout.map(|t| (t.max(0.0) * 1000.0) as u64),
        };
        self.send(py, msg)?;
        match self.reply(py, req)? {
            FromNode::Item { item, .. } => self.item_to_py(py, item),
            other => Err(unexpected(other)),
        }
    }

    /// Like `next_item` with no timeout, but the reply comes out of
    /// `next_watched` under the request number returned.
    fn watch_item(
        &self,
        py: Python<'_>,
        end: &Bound<'_, ObjectRef>,
        index: u32,
        max: u32,
    ) -> PyResult<u64> {
        let req = self.conn.next_req();
        self.conn.watch(req);
        let msg = ToNode::NextItem {
            req,
            task: end.get().id.task(),
            index,
            max,
            timeout_ms: None,
        };
        let sent = self.send(py, msg);
        if sent.is_err() {
            self.conn.unwatch(req);
        }
        sent.map(|()| req)
    }
}

impl Client {
    /// A stream item as `next_item` returns it.
    pub(crate) fn item_to_py<'py>(
        &self,
        py: Python<'py>,
        item: StreamItem,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(match item {
            StreamItem::Ready(ids) => {
                let refs = ids
                    .into_iter()
                    .map(|id| ObjectRef::new(id, self.conn.refs.clone(), true));
                PyList::new(py, refs)?.into_any()
            }
            StreamItem::End => py.None().into_bound(py),
            StreamItem::Pending => false.into_pyobject(py)?.to_owned().into_any(),
        })
    }
}
