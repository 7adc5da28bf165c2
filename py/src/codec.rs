//! The object layout for Python: build inline values, plan store objects,
//! and find the sections of a value without copying it.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use raynode_proto::meta;

/// A value's sections as Python buffers, with the layout they make.
pub struct Sections<'a> {
    meta: &'a [u8],
    data: PyBuffer<u8>,
    buffers: Vec<PyBuffer<u8>>,
    pub layout: objstore::layout::Layout,
}

impl<'a> Sections<'a> {
    pub fn new(
        meta: &'a [u8],
        data: &Bound<'_, PyAny>,
        buffers: &Bound<'_, PyList>,
    ) -> PyResult<Self> {
        let data = PyBuffer::<u8>::get(data)?;
        let buffers = buffers
            .iter()
            .map(|b| PyBuffer::<u8>::get(&b))
            .collect::<PyResult<Vec<_>>>()?;
        let lens: Vec<usize> = buffers.iter().map(|b| b.item_count()).collect();
        let layout = objstore::layout::try_plan(meta.len(), data.item_count(), &lens)
            .map_err(crate::errors::value)?;
        Ok(Sections {
            meta,
            data,
            buffers,
            layout,
        })
    }

    /// Writes the whole value (`layout.total` bytes, zeroed) into `out`,
    /// copying each section once.
    pub fn write(&self, py: Python<'_>, out: &mut [u8]) -> PyResult<()> {
        let layout = &self.layout;
        objstore::layout::write_header(out, layout).map_err(crate::errors::value)?;
        out[layout.meta.clone()].copy_from_slice(self.meta);
        self.data.copy_to_slice(py, &mut out[layout.data.clone()])?;
        for (buffer, range) in self.buffers.iter().zip(&layout.buffers) {
            buffer.copy_to_slice(py, &mut out[range.clone()])?;
        }
        Ok(())
    }
}

/// Builds a whole value from Python buffers in one `Vec`.
fn encode_vec(
    py: Python<'_>,
    meta: &[u8],
    data: &Bound<'_, PyAny>,
    buffers: &Bound<'_, PyList>,
) -> PyResult<Vec<u8>> {
    let sections = Sections::new(meta, data, buffers)?;
    let mut out = vec![0u8; sections.layout.total];
    sections.write(py, &mut out)?;
    Ok(out)
}

/// Builds a whole value: `encode(meta, data, buffers) -> bytes`.
#[pyfunction]
fn encode<'py>(
    py: Python<'py>,
    meta: &[u8],
    data: &Bound<'py, PyAny>,
    buffers: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &encode_vec(py, meta, data, buffers)?))
}

/// Plans a store object: `(header, meta_offset, data_offset, [buffer offsets], total)`.
#[pyfunction]
fn plan<'py>(
    py: Python<'py>,
    meta_len: usize,
    data_len: usize,
    buffer_lens: Vec<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let layout = objstore::layout::try_plan(meta_len, data_len, &buffer_lens)
        .map_err(crate::errors::value)?;
    let mut header = vec![0u8; layout.header_len];
    objstore::layout::write_header(&mut header, &layout).map_err(crate::errors::value)?;
    let offsets: Vec<usize> = layout.buffers.iter().map(|r| r.start).collect();
    (
        PyBytes::new(py, &header),
        layout.meta.start,
        layout.data.start,
        offsets,
        layout.total,
    )
        .into_pyobject(py)
}

/// (start, end) of a section.
type Span = (usize, usize);

/// The metadata's, the data's and each buffer's span.
type SectionSpans = (Span, Span, Vec<Span>);

fn ranges(layout: &objstore::layout::Layout) -> SectionSpans {
    (
        (layout.meta.start, layout.meta.end),
        (layout.data.start, layout.data.end),
        layout.buffers.iter().map(|r| (r.start, r.end)).collect(),
    )
}

/// Sections of an inline value: `((meta), (data), [(buffer)])` as (start, end).
#[pyfunction]
fn parse(value: &[u8]) -> PyResult<SectionSpans> {
    let layout = objstore::layout::parse(value).map_err(crate::errors::value)?;
    Ok(ranges(&layout))
}

/// Sections of a stored value from its header bytes and the object's length.
#[pyfunction]
fn parse_header(header: &[u8], object_len: usize) -> PyResult<SectionSpans> {
    let layout =
        objstore::layout::parse_header(header, object_len).map_err(crate::errors::value)?;
    Ok(ranges(&layout))
}

/// How many first bytes of a stored value `parse_header` needs, from its
/// fixed header (the first `HEADER_PREFIX` bytes).
#[pyfunction]
fn header_bytes(fixed: &[u8]) -> PyResult<usize> {
    objstore::layout::header_bytes(fixed).map_err(crate::errors::value)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(plan, m)?)?;
    m.add_function(wrap_pyfunction!(parse, m)?)?;
    m.add_function(wrap_pyfunction!(parse_header, m)?)?;
    m.add_function(wrap_pyfunction!(header_bytes, m)?)?;
    m.add("HEADER_PREFIX", objstore::layout::FIXED_HEADER)?;
    let key_at = objstore::layout::KEY_AT;
    m.add("KEY_AT", (key_at.start, key_at.end))?;
    m.add("META_PICKLE", PyBytes::new(m.py(), meta::PICKLE))?;
    m.add("META_TASK_ERROR", PyBytes::new(m.py(), meta::TASK_ERROR))?;
    m.add(
        "META_SYSTEM_ERROR",
        PyBytes::new(m.py(), meta::SYSTEM_ERROR),
    )?;
    Ok(())
}
