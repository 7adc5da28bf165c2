//! User metrics (`raynode.util.metrics`): defined and recorded on this
//! process's node, pipelined with the rest of its traffic.

use crate::client::Client;
use pyo3::prelude::*;
use raynode_proto::{MetricKind, ToNode};

#[pymethods]
impl Client {
    /// Defines a user metric on this process's node (`kind`: "counter",
    /// "gauge" or "histogram"); pipelined.
    fn define_metric(
        &self,
        py: Python<'_>,
        name: String,
        kind: &str,
        description: String,
        boundaries: Vec<f64>,
    ) -> PyResult<()> {
        let kind = match kind {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown metric kind {other:?}"
                )))
            }
        };
        let msg = ToNode::DefineMetric {
            name,
            kind,
            description,
            boundaries,
        };
        self.send(py, msg)
    }

    /// Records a value of a user metric under (key, value) tags; pipelined.
    fn record_metric(
        &self,
        py: Python<'_>,
        name: String,
        tags: Vec<(String, String)>,
        value: f64,
    ) -> PyResult<()> {
        self.send(py, ToNode::RecordMetric { name, tags, value })
    }
}
