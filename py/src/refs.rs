//! `ObjectRef` and the client's reference table.
//!
//! Each `ObjectRef` counts in its client's table; when an id's count moves
//! between zero and non-zero, the node is told (batched: the next frame the
//! client sends, or the flusher, carries the change). Refs nested in a value
//! being serialized are captured so the node can keep them alive.
//!
//! Awaiting a ref (`await ref`, `ref.future()`) and making one from its id
//! bytes (`ObjectRef(bytes)`) go through hooks the Python layer sets
//! (`raynode._futures`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use raynode_proto::ObjectId;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct RefCounts {
    local: HashMap<ObjectId, u32>,
    /// Ids the node counts this client as holding.
    at_node: HashSet<ObjectId>,
    /// Ids whose count crossed zero since the last flush.
    touched: Vec<ObjectId>,
    /// Held ids known to be ready (a value exists): `wait` answers for
    /// them without asking the node. Forgotten with the last reference.
    ready: HashSet<ObjectId>,
}

#[derive(Default)]
pub struct RefTable {
    counts: Mutex<RefCounts>,
}

impl RefTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefCounts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new local reference. `node_holds` is true when the node has
    /// already counted this client (it submitted or put the object).
    pub fn incr(&self, id: ObjectId, node_holds: bool) {
        let mut c = self.lock();
        if node_holds {
            c.at_node.insert(id);
        }
        let n = c.local.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 && !node_holds {
            c.touched.push(id);
        }
    }

    pub fn decr(&self, id: ObjectId) {
        let mut c = self.lock();
        let zero = match c.local.get_mut(&id) {
            Some(n) => {
                *n -= 1;
                *n == 0
            }
            None => false,
        };
        if zero {
            c.local.remove(&id);
            c.ready.remove(&id);
            c.touched.push(id);
        }
    }

    /// Records that these held ids are ready.
    pub fn mark_ready(&self, ids: impl IntoIterator<Item = ObjectId>) {
        let mut c = self.lock();
        for id in ids {
            if c.local.contains_key(&id) {
                c.ready.insert(id);
            }
        }
    }

    /// The positions of the ids known to be ready, in order.
    pub fn known_ready(&self, ids: &[ObjectId]) -> Vec<u32> {
        let c = self.lock();
        if c.ready.is_empty() {
            return Vec::new();
        }
        (0..ids.len() as u32)
            .filter(|i| c.ready.contains(&ids[*i as usize]))
            .collect()
    }

    /// The changes the node has not been told of: (gained, lost).
    pub fn take_changes(&self) -> Option<(Vec<ObjectId>, Vec<ObjectId>)> {
        let mut c = self.lock();
        if c.touched.is_empty() {
            return None;
        }
        let touched = std::mem::take(&mut c.touched);
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for id in touched {
            let held = c.local.contains_key(&id);
            if held && c.at_node.insert(id) {
                add.push(id);
            } else if !held && c.at_node.remove(&id) {
                remove.push(id);
            }
        }
        Some((add, remove))
    }

    pub fn has_changes(&self) -> bool {
        !self.lock().touched.is_empty()
    }
}

thread_local! {
    static CAPTURE: RefCell<Vec<Vec<ObjectId>>> = const { RefCell::new(Vec::new()) };
}

/// Starts recording the refs pickled on this thread.
#[pyfunction]
pub fn begin_capture() {
    CAPTURE.with(|c| c.borrow_mut().push(Vec::new()));
}

/// Stops recording; returns the ids of the refs pickled since `begin_capture`.
#[pyfunction]
pub fn end_capture(py: Python<'_>) -> Vec<Bound<'_, PyBytes>> {
    let ids = CAPTURE.with(|c| c.borrow_mut().pop()).unwrap_or_default();
    ids.iter().map(|id| PyBytes::new(py, &id.0)).collect()
}

/// Hook set by the Python layer: rebuilds a ref when one is unpickled.
static REBUILD: std::sync::OnceLock<Py<PyAny>> = std::sync::OnceLock::new();

/// Hooks set by the Python layer: `counted(id)` is a ref counted by this
/// process's connection, or `None` when it has none; `future(ref)` a
/// `concurrent.futures.Future` of its value; `awaiter(ref)` the iterator
/// `await ref` runs.
struct Hooks {
    counted: Py<PyAny>,
    future: Py<PyAny>,
    awaiter: Py<PyAny>,
}

static HOOKS: std::sync::OnceLock<Hooks> = std::sync::OnceLock::new();

#[pyfunction]
pub fn set_ref_rebuilder(f: Py<PyAny>) {
    let _ = REBUILD.set(f);
}

#[pyfunction]
pub fn set_ref_hooks(counted: Py<PyAny>, future: Py<PyAny>, awaiter: Py<PyAny>) {
    let _ = HOOKS.set(Hooks {
        counted,
        future,
        awaiter,
    });
}

fn hooks() -> PyResult<&'static Hooks> {
    HOOKS
        .get()
        .ok_or_else(|| crate::errors::value("raynode is not imported"))
}

/// A reference to an object of the cluster: the future of a task's result
/// or a value `put` in the store.
#[pyclass(frozen, module = "raynode", name = "ObjectRef")]
pub struct ObjectRef {
    pub id: ObjectId,
    table: Option<Arc<RefTable>>,
}

impl ObjectRef {
    pub fn new(id: ObjectId, table: Arc<RefTable>, node_holds: bool) -> ObjectRef {
        table.incr(id, node_holds);
        ObjectRef {
            id,
            table: Some(table),
        }
    }
}

impl Drop for ObjectRef {
    fn drop(&mut self) {
        if let Some(t) = &self.table {
            t.decr(self.id);
        }
    }
}

impl ObjectRef {
    /// A ref to `id` made from its bytes: counted by this process's
    /// connection when it has one (as any ref it holds), else uncounted.
    fn from_id(py: Python<'_>, id: ObjectId) -> PyResult<ObjectRef> {
        let counted = hooks()?.counted.call1(py, (PyBytes::new(py, &id.0),))?;
        let table = match counted.bind(py).cast::<ObjectRef>() {
            Ok(r) => r.get().table.clone(),
            Err(_) => None,
        };
        if let Some(t) = &table {
            t.incr(id, false);
        }
        Ok(ObjectRef { id, table })
    }
}

fn id_from_bytes(b: &Bound<'_, PyAny>) -> PyResult<ObjectId> {
    let bytes = b.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "Unsupported type: {}, expected bytes",
            b.get_type()
        ))
    })?;
    let bytes = bytes.as_bytes();
    ObjectId::from_slice(bytes).ok_or_else(|| {
        crate::errors::value(format!(
            "ID string needs to have length {}, got {}",
            std::mem::size_of::<ObjectId>(),
            bytes.len()
        ))
    })
}

#[pymethods]
impl ObjectRef {
    /// `ObjectRef(id_bytes)`: a ref to the object of that id (the bytes of
    /// `ref.binary()`, or `bytes.fromhex(ref.hex())`). As in Ray, a ref made
    /// from bytes keeps the object alive only if it is made while another
    /// ref to it still does: the id alone carries no reference.
    #[new]
    #[pyo3(signature = (id, owner_addr=None, call_site_data=None, skip_adding_local_ref=false))]
    fn py_new(
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        owner_addr: Option<&Bound<'_, PyAny>>,
        call_site_data: Option<&Bound<'_, PyAny>>,
        skip_adding_local_ref: bool,
    ) -> PyResult<ObjectRef> {
        let _ = (owner_addr, call_site_data);
        let id = id_from_bytes(id)?;
        if skip_adding_local_ref {
            return Ok(ObjectRef { id, table: None });
        }
        ObjectRef::from_id(py, id)
    }

    #[staticmethod]
    fn from_binary(py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<ObjectRef> {
        ObjectRef::from_id(py, id_from_bytes(id)?)
    }

    #[staticmethod]
    fn from_hex(py: Python<'_>, hex: &str) -> PyResult<ObjectRef> {
        let id = ObjectId::from_hex(hex)
            .ok_or_else(|| crate::errors::value(format!("not the hex of an object id: {hex:?}")))?;
        ObjectRef::from_id(py, id)
    }

    /// The ref of no object (all zero bytes).
    #[staticmethod]
    fn nil() -> ObjectRef {
        ObjectRef {
            id: ObjectId([0; 20]),
            table: None,
        }
    }

    fn is_nil(&self) -> bool {
        self.id.0 == [0; 20]
    }

    /// A `concurrent.futures.Future` of the value (or the error it holds).
    /// Cancelling the future does not cancel the task.
    fn future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        hooks()?.future.bind(slf.py()).call1((slf,))
    }

    /// An `asyncio.Future` of the value, on the running event loop.
    #[pyo3(signature = (_internal=false))]
    fn as_future<'py>(slf: &Bound<'py, Self>, _internal: bool) -> PyResult<Bound<'py, PyAny>> {
        let fut = hooks()?.future.bind(slf.py()).call1((slf,))?;
        slf.py()
            .import("asyncio")?
            .getattr("wrap_future")?
            .call1((fut,))
    }

    /// `await ref`: waits for the value without blocking the event loop.
    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        hooks()?.awaiter.bind(slf.py()).call1((slf,))
    }

    fn binary<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.id.0)
    }

    fn hex(&self) -> String {
        self.id.to_string()
    }

    fn task_id(&self) -> String {
        self.id.task().to_string()
    }

    fn __hash__(&self) -> u64 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&self.id.0[12..20]);
        u64::from_le_bytes(h)
            ^ u64::from_le_bytes([
                self.id.0[0],
                self.id.0[1],
                self.id.0[2],
                self.id.0[3],
                self.id.0[4],
                self.id.0[5],
                self.id.0[6],
                self.id.0[7],
            ])
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<ObjectRef>()
            .is_ok_and(|o| o.get().id == self.id)
    }

    fn __repr__(&self) -> String {
        format!("ObjectRef({})", self.id)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        CAPTURE.with(|c| {
            if let Some(top) = c.borrow_mut().last_mut() {
                top.push(self.id);
            }
        });
        let rebuild = REBUILD
            .get()
            .ok_or_else(|| crate::errors::value("raynode is not imported"))?
            .bind(py)
            .clone();
        let args = PyTuple::new(py, [PyBytes::new(py, &self.id.0)])?;
        PyTuple::new(py, [rebuild.into_any(), args.into_any()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_hears_only_of_crossings() {
        let t = RefTable::default();
        let id = ObjectId([1; 20]);
        t.incr(id, false);
        t.incr(id, false);
        assert_eq!(t.take_changes(), Some((vec![id], vec![])));
        t.decr(id);
        assert_eq!(t.take_changes(), None);
        t.decr(id);
        t.incr(id, false);
        // Dropped and regained before a flush: nothing to say.
        assert_eq!(t.take_changes(), Some((vec![], vec![])));
        t.decr(id);
        assert_eq!(t.take_changes(), Some((vec![], vec![id])));
    }
}
