//! The nodes `raynode start` left running on this machine, as drivers see
//! them: read from the session files (`raynode_proto::session`).

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The live nodes started with `raynode start` on this machine, oldest
/// first, each a dict: `pid`, `node_id`, `socket`, `client_address`, `p2p`.
#[pyfunction]
pub fn started_nodes(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let Some(dir) = raynode_proto::session::sessions_dir() else {
        return Ok(Vec::new());
    };
    let live = py.detach(|| raynode_proto::session::live(&dir));
    live.into_iter()
        .map(|s| {
            let d = PyDict::new(py);
            d.set_item("pid", s.pid)?;
            d.set_item("node_id", s.node_id)?;
            d.set_item("socket", s.socket.to_string_lossy().into_owned())?;
            d.set_item("client_address", s.client_address)?;
            d.set_item("p2p", s.p2p)?;
            Ok(d)
        })
        .collect()
}

/// Where the session files are: `~/.raynode/sessions` (None without HOME).
#[pyfunction]
pub fn sessions_dir() -> Option<String> {
    raynode_proto::session::sessions_dir().map(|d| d.to_string_lossy().into_owned())
}
