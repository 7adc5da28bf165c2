//! User metrics (`raynode.util.metrics`): what this node's drivers and
//! workers record, kept here and served in the Prometheus text format on
//! `GET /metrics` of the dashboard and of `--metrics-export-port`.
//!
//! [`Registry`] is plain data: a client defines a metric once
//! ([`raynode_proto::ToNode::DefineMetric`]) and records values against tag
//! sets; counters add, gauges keep the last value, histograms count values
//! into buckets. Names are exported with Ray's `ray_` prefix. It is bounded
//! ([`MAX_METRICS`], [`MAX_SERIES`]): past that, new names and tag sets are
//! dropped (with a warning), never the node's memory.
//! The dashboard's HTTP server (`crate::dashboard`) serves the text.

use raynode_proto::MetricKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Most metric names one node keeps.
pub const MAX_METRICS: usize = 1024;
/// Most tag sets (series) one node keeps over all metrics.
pub const MAX_SERIES: usize = 10_000;
/// Most bucket boundaries of one histogram.
pub const MAX_BOUNDARIES: usize = 256;

/// Why a definition or a record was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    #[error(
        "metric name {0:?} must be letters, digits and underscores, not starting with a digit"
    )]
    Name(String),
    #[error("metric {0:?} is defined already as another kind")]
    Redefined(String),
    #[error("metric {0:?} is not defined")]
    Unknown(String),
    #[error("too many metrics or tag sets on this node")]
    Full,
    #[error("histogram boundaries must be positive, increasing and at most {MAX_BOUNDARIES}")]
    Boundaries,
    #[error("value {0} is not finite")]
    Value(f64),
}

struct Metric {
    kind: MetricKind,
    description: String,
    boundaries: Vec<f64>,
    /// By sorted tags.
    series: BTreeMap<Vec<(String, String)>, Series>,
}

#[derive(Default)]
struct Series {
    /// Counter total or gauge value; histogram sum.
    value: f64,
    /// Histogram: count per bucket (last: above every boundary).
    buckets: Vec<u64>,
    count: u64,
}

#[derive(Default)]
pub struct Registry {
    metrics: BTreeMap<String, Metric>,
    series: usize,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 200
}

impl Registry {
    pub fn define(
        &mut self,
        name: &str,
        kind: MetricKind,
        description: &str,
        boundaries: &[f64],
    ) -> Result<(), MetricError> {
        if !valid_name(name) {
            return Err(MetricError::Name(name.to_string()));
        }
        if kind == MetricKind::Histogram {
            let increasing = boundaries.windows(2).all(|w| w[0] < w[1]);
            let positive = boundaries.iter().all(|b| b.is_finite() && *b > 0.0);
            if boundaries.len() > MAX_BOUNDARIES || !increasing || !positive {
                return Err(MetricError::Boundaries);
            }
        }
        if let Some(m) = self.metrics.get(name) {
            return if m.kind == kind {
                Ok(())
            } else {
                Err(MetricError::Redefined(name.to_string()))
            };
        }
        if self.metrics.len() >= MAX_METRICS {
            return Err(MetricError::Full);
        }
        self.metrics.insert(
            name.to_string(),
            Metric {
                kind,
                description: description.chars().take(1000).collect(),
                boundaries: boundaries.to_vec(),
                series: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn record(
        &mut self,
        name: &str,
        mut tags: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), MetricError> {
        if !value.is_finite() {
            return Err(MetricError::Value(value));
        }
        if tags.iter().any(|(k, _)| !valid_name(k)) {
            return Err(MetricError::Name(format!("{tags:?}")));
        }
        let metric = self
            .metrics
            .get_mut(name)
            .ok_or_else(|| MetricError::Unknown(name.to_string()))?;
        tags.sort();
        if !metric.series.contains_key(&tags) {
            if self.series >= MAX_SERIES {
                return Err(MetricError::Full);
            }
            self.series += 1;
            let buckets = vec![0; metric.boundaries.len() + 1];
            metric.series.insert(
                tags.clone(),
                Series {
                    buckets,
                    ..Series::default()
                },
            );
        }
        let series = metric
            .series
            .get_mut(&tags)
            .expect("the series was just made if it was missing");
        match metric.kind {
            MetricKind::Counter => series.value += value,
            MetricKind::Gauge => series.value = value,
            MetricKind::Histogram => {
                let bucket = metric
                    .boundaries
                    .iter()
                    .position(|b| value <= *b)
                    .unwrap_or(metric.boundaries.len());
                series.buckets[bucket] += 1;
                series.count += 1;
                series.value += value;
            }
        }
        Ok(())
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, m) in &self.metrics {
            let full = format!("ray_{name}");
            let kind = match m.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            let help = m.description.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {full} {help}");
            let _ = writeln!(out, "# TYPE {full} {kind}");
            for (tags, s) in &m.series {
                match m.kind {
                    MetricKind::Counter | MetricKind::Gauge => {
                        let _ = writeln!(out, "{full}{} {}", labels(tags, None), s.value);
                    }
                    MetricKind::Histogram => {
                        let mut cumulative = 0;
                        for (i, b) in m.boundaries.iter().enumerate() {
                            cumulative += s.buckets[i];
                            let le = Some(b.to_string());
                            let _ = writeln!(out, "{full}_bucket{} {cumulative}", labels(tags, le));
                        }
                        let inf = Some("+Inf".to_string());
                        let _ = writeln!(out, "{full}_bucket{} {}", labels(tags, inf), s.count);
                        let _ = writeln!(out, "{full}_sum{} {}", labels(tags, None), s.value);
                        let _ = writeln!(out, "{full}_count{} {}", labels(tags, None), s.count);
                    }
                }
            }
        }
        out
    }
}

fn labels(tags: &[(String, String)], le: Option<String>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counters_add_gauges_keep_the_last_and_histograms_bucket() {
        let mut r = Registry::default();
        r.define("requests", MetricKind::Counter, "Requests served", &[])
            .expect("ok");
        r.define("depth", MetricKind::Gauge, "Queue depth", &[])
            .expect("ok");
        r.define("latency", MetricKind::Histogram, "Latency", &[0.1, 1.0])
            .expect("ok");
        for _ in 0..3 {
            r.record("requests", tags(&[("route", "/a")]), 1.0)
                .expect("ok");
        }
        r.record("depth", vec![], 5.0).expect("ok");
        r.record("depth", vec![], 2.0).expect("ok");
        for v in [0.05, 0.5, 5.0] {
            r.record("latency", vec![], v).expect("ok");
        }
        let text = r.render();
        assert!(text.contains("# TYPE ray_requests counter"), "{text}");
        assert!(text.contains("ray_requests{route=\"/a\"} 3"), "{text}");
        assert!(text.contains("ray_depth 2"), "{text}");
        assert!(text.contains("ray_latency_bucket{le=\"0.1\"} 1"), "{text}");
        assert!(text.contains("ray_latency_bucket{le=\"1\"} 2"), "{text}");
        assert!(text.contains("ray_latency_bucket{le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("ray_latency_count 3"), "{text}");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut r = Registry::default();
        assert!(matches!(
            r.define("1x", MetricKind::Gauge, "", &[]),
            Err(MetricError::Name(_))
        ));
        assert!(r
            .define("h", MetricKind::Histogram, "", &[2.0, 1.0])
            .is_err());
        r.define("g", MetricKind::Gauge, "", &[]).expect("ok");
        assert!(r.define("g", MetricKind::Counter, "", &[]).is_err());
        assert!(r.record("g", vec![], f64::NAN).is_err());
        assert!(r.record("nope", vec![], 1.0).is_err());
        assert!(r.record("g", tags(&[("bad key", "v")]), 1.0).is_err());
    }

    #[test]
    fn series_are_bounded() {
        let mut r = Registry::default();
        r.define("g", MetricKind::Gauge, "", &[]).expect("ok");
        for i in 0..MAX_SERIES {
            r.record("g", tags(&[("i", &i.to_string())]), 1.0)
                .expect("room");
        }
        assert_eq!(
            r.record("g", tags(&[("i", "one more")]), 1.0),
            Err(MetricError::Full)
        );
        assert_eq!(
            r.record("g", tags(&[("i", "0")]), 2.0),
            Ok(()),
            "known series still record"
        );
    }
}
