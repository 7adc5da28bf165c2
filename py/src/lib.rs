//! `raynode._core`: the native half of the `raynode` package.
//!
//! - [`conn`]: the connection to a node (writer, reader thread, inbox);
//! - [`refs`]: `ObjectRef` and the reference counts the node is told of;
//! - [`client`]: the `Client` class the Python layer drives (submit, get,
//!   put, wait, actors, placement groups), with its worker side in
//!   [`worker`] (the task loop), generators in [`streams`] and user
//!   metrics in [`metrics`];
//! - [`convert`]: ids, values, strategies and task kinds to and from Python;
//! - [`codec`]: the object layout, for values built and read in Python;
//! - [`errors`]: the mapping of failures to Python exceptions;
//! - [`progress`]: progress bars of tasks, drawn by the driver;
//! - [`sessions`]: the nodes `raynode start` left running on this machine.

mod client;
mod codec;
mod conn;
mod convert;
mod errors;
mod mapped;
mod metrics;
mod progress;
mod refs;
mod sessions;
mod streams;
mod worker;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<refs::ObjectRef>()?;
    m.add_function(wrap_pyfunction!(refs::begin_capture, m)?)?;
    m.add_function(wrap_pyfunction!(refs::end_capture, m)?)?;
    m.add_function(wrap_pyfunction!(refs::set_ref_rebuilder, m)?)?;
    m.add_function(wrap_pyfunction!(refs::set_ref_hooks, m)?)?;
    m.add_function(wrap_pyfunction!(sessions::started_nodes, m)?)?;
    m.add_function(wrap_pyfunction!(sessions::sessions_dir, m)?)?;
    m.add_function(wrap_pyfunction!(sessions::load_cluster_key, m)?)?;
    codec::register(m)?;
    mapped::register(m)?;
    m.add("NodeError", m.py().get_type::<errors::NodeError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PROTOCOL_VERSION", raynode_proto::PROTOCOL_VERSION)?;
    m.add("SOCKET_FILE", raynode_proto::SOCKET_FILE)?;
    m.add("OUTPUT_MARK", raynode_proto::OUTPUT_MARK)?;
    m.add("PROGRESS_MARK", raynode_proto::PROGRESS_MARK)?;
    m.add_function(wrap_pyfunction!(show_progress, m)?)?;
    m.add("MAX_FRAME_BYTES", raynode_proto::MAX_FRAME_BYTES)?;
    Ok(())
}

/// Draws progress bar updates made in this process (a driver's own
/// `tqdm_ray` bars): `lines` as a worker would print them.
#[pyfunction]
fn show_progress(source: &str, lines: Vec<String>) {
    progress::print(source, &lines, false);
}
