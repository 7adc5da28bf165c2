//! Stored objects mapped into this process, read in place: the store's own
//! read protocol ([`objstore::map::ReadMap`]), offered to Python as a
//! read-only buffer.
//!
//! A `memoryview` of a [`MappedObject`] keeps it alive, and so does every
//! value (a numpy array, say) built on such a view: the last one to go
//! unmaps the object and drops the shared lock that kept the store from
//! reusing its file.

use objstore::map::ReadMap;
use objstore::{MapError, ObjectKey};
use pyo3::exceptions::{PyBufferError, PyOSError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::{c_int, c_void};
use std::path::Path;

/// One sealed object of the node's store, mapped read-only.
#[pyclass(frozen, weakref, module = "raynode._core")]
pub struct MappedObject {
    map: ReadMap,
}

#[pymethods]
impl MappedObject {
    fn __len__(&self) -> usize {
        self.map.len()
    }

    /// # Safety
    /// Called by Python with a `view` to fill; the bytes stay valid while
    /// the view holds a reference to this object, which the fill takes.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE != 0 {
            return Err(PyBufferError::new_err("a stored object is read-only"));
        }
        let bytes = slf.get().map.as_slice();
        // SAFETY: `view` is Python's to fill; the buffer is read-only (1),
        // and the fill keeps `slf`, which owns the mapping, alive with it.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut c_void,
                bytes.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

/// Maps the stored object `key` (20 bytes) at `path`; None if the file no
/// longer holds it (gone, being written, or reused for another object).
#[pyfunction]
fn map_object(path: &str, key: &[u8]) -> PyResult<Option<MappedObject>> {
    let key = <[u8; 20]>::try_from(key).map(ObjectKey).map_err(|_| {
        crate::errors::value(format!("an object key is 20 bytes, not {}", key.len()))
    })?;
    match ReadMap::open(Path::new(path), &key) {
        Ok(map) => Ok(Some(MappedObject { map })),
        Err(MapError::NotSealed { .. }) => Ok(None),
        Err(MapError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(PyOSError::new_err(e.to_string())),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MappedObject>()?;
    m.add_function(wrap_pyfunction!(map_object, m)?)?;
    Ok(())
}
