//! What a driver finds on its machine: the nodes `raynode start` left
//! running (their session files, `raynode_proto::session`) and the cluster
//! key (`raynode_proto::cluster_key`).

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

/// The cluster key a driver connecting over TCP proves it holds: from
/// `path`, else the file `RAYNODE_CLUSTER_KEY` names, else
/// `~/.raynode/cluster.key`. Never creates one; raises ConnectionError
/// saying which file and why when it cannot be read.
#[pyfunction]
#[pyo3(signature = (path=None))]
pub fn load_cluster_key(
    py: Python<'_>,
    path: Option<std::path::PathBuf>,
) -> PyResult<Bound<'_, pyo3::types::PyBytes>> {
    use raynode_proto::cluster_key;
    let Some(path) = path.or_else(cluster_key::client_path) else {
        return Err(crate::errors::connection(
            "HOME is not set, so there is no ~/.raynode/cluster.key: name the cluster's key file with RAYNODE_CLUSTER_KEY",
        ));
    };
    match cluster_key::read(&path) {
        Ok(key) => Ok(pyo3::types::PyBytes::new(py, &key)),
        Err(e) => Err(crate::errors::connection(format!(
            "cannot read the cluster key ({e}); a driver connecting over TCP needs the \
             cluster's key file (copy it from a node, or name it with {})",
            cluster_key::PATH_ENV
        ))),
    }
}
