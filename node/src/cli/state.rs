//! Ray's state commands: `raynode list`, `raynode summary`, `raynode
//! events`, and `raynode dashboard-token`. Each asks one node (any node:
//! it answers for the whole cluster) as a client.

use super::{key_from_env, StatusArgs};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use raynode_proto::InfoKind;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    Nodes,
    Actors,
    Tasks,
    Objects,
    Jobs,
    PlacementGroups,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Summarized {
    Tasks,
    Actors,
    Objects,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// What to list.
    pub resource: Resource,
    /// Keep the rows whose KEY is (`=`) or is not (`!=`) VALUE, as
    /// `--filter state=RUNNING` or `--filter "state!=FINISHED"`; repeatable.
    #[arg(long = "filter", short = 'f', value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Rows shown at most (the oldest first).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Every field of each row (the table shows the main ones otherwise).
    #[arg(long)]
    pub detail: bool,
    #[command(flatten)]
    pub node: StatusArgs,
}

#[derive(Args, Debug)]
pub struct SummaryArgs {
    pub resource: Summarized,
    #[command(flatten)]
    pub node: StatusArgs,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Keep printing events as they come (until interrupted).
    #[arg(long)]
    pub follow: bool,
    /// The newest events shown at first.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(flatten)]
    pub node: StatusArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The node whose logs to read [default: the node asked].
    #[arg(long)]
    pub node_id: Option<String>,
    /// A worker's output, by its process id [default: the node's own log].
    #[arg(long, conflicts_with_all = ["actor_id", "worker_id"])]
    pub pid: Option<u32>,
    /// The output of the worker an actor lives in (on the node given).
    #[arg(long, conflicts_with = "worker_id")]
    pub actor_id: Option<String>,
    /// A worker's output, by its number on its node.
    #[arg(long)]
    pub worker_id: Option<u64>,
    /// A worker's stderr rather than its stdout.
    #[arg(long)]
    pub err: bool,
    /// Lines from the end shown first.
    #[arg(long, default_value_t = 100)]
    pub tail: u32,
    /// Keep printing what is written (until interrupted).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub node: StatusArgs,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Cluster key file [default: $RAYNODE_CLUSTER_KEY, else ~/.raynode/cluster.key].
    #[arg(long)]
    pub cluster_key: Option<PathBuf>,
}

/// One node's answer about `what`, as rows (with a warning on stderr for
/// the nodes that did not answer).
fn rows(node: &StatusArgs, what: InfoKind) -> anyhow::Result<Vec<Value>> {
    let key = node.cluster_key.clone().or_else(key_from_env);
    let address = super::node_address(node.address.as_deref())?;
    let answer = crate::status::query(&address, key.as_deref(), what)?;
    Ok(match answer {
        Value::Array(rows) => rows,
        Value::Object(mut map) if map.contains_key("rows") => {
            if let Some(Value::Array(missing)) = map.get("missing") {
                for m in missing {
                    eprintln!(
                        "warning: node {} did not answer: {}",
                        m["node_id"].as_str().unwrap_or("?"),
                        m["error"].as_str().unwrap_or("?")
                    );
                }
            }
            match map.remove("rows") {
                Some(Value::Array(rows)) => rows,
                _ => Vec::new(),
            }
        }
        // Placement groups come by id.
        Value::Object(map) => map
            .into_iter()
            .map(|(id, mut row)| {
                if let Value::Object(fields) = &mut row {
                    fields
                        .entry("placement_group_id")
                        .or_insert(Value::String(id));
                }
                row
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// A filter `KEY=VALUE` or `KEY!=VALUE`.
fn parse_filter(text: &str) -> anyhow::Result<(String, bool, String)> {
    if let Some((k, v)) = text.split_once("!=") {
        return Ok((k.trim().to_string(), false, v.trim().to_string()));
    }
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok((k.trim().to_string(), true, v.trim().to_string()))
        }
        _ => bail!("a filter is KEY=VALUE or KEY!=VALUE, got {text:?}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The columns a table shows of each kind (all fields with `--detail`).
fn columns(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::Nodes => &[
            "node_id",
            "state",
            "raft_role",
            "resources_total",
            "busy_workers",
            "workers",
            "store_used_bytes",
            "dashboard_address",
        ],
        Resource::Actors => &[
            "actor_id",
            "class_name",
            "name",
            "state",
            "node_id",
            "pid",
            "num_restarts",
        ],
        Resource::Tasks => &[
            "task_id",
            "attempt_number",
            "name",
            "state",
            "type",
            "node_id",
            "worker_pid",
            "error_type",
        ],
        Resource::Objects => &[
            "object_id",
            "object_size",
            "state",
            "location",
            "ref_count",
            "node_id",
        ],
        Resource::Jobs => &[
            "job_id",
            "status",
            "driver_node_id",
            "driver_pid",
            "start_time",
            "end_time",
        ],
        Resource::PlacementGroups => &["placement_group_id", "name", "state", "strategy"],
    }
}

/// Prints rows as an aligned table of `columns`.
fn print_table(rows: &[Value], columns: &[String]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| text(&r[c.as_str()])).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        line(row);
    }
}

pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let what = match args.resource {
        Resource::Nodes => InfoKind::NodeStats,
        Resource::Actors => InfoKind::Actors,
        Resource::Tasks => InfoKind::Tasks,
        Resource::Objects => InfoKind::Objects,
        Resource::Jobs => InfoKind::Jobs,
        Resource::PlacementGroups => InfoKind::PlacementGroups,
    };
    let filters = args
        .filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rows = rows(&args.node, what)?;
    if args.resource == Resource::Nodes {
        for row in &mut rows {
            let alive = row["alive"].as_bool().unwrap_or(false);
            row["state"] = Value::from(if alive { "ALIVE" } else { "DEAD" });
        }
    }
    rows.retain(|row| {
        filters
            .iter()
            .all(|(key, equal, value)| (text(&row[key.as_str()]) == *value) == *equal)
    });
    rows.truncate(args.limit);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            let columns: Vec<String> = if args.detail {
                let mut all: Vec<String> = Vec::new();
                for row in &rows {
                    for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !all.contains(key) {
                            all.push(key.clone());
                        }
                    }
                }
                all
            } else {
                columns(args.resource)
                    .iter()
                    .map(|c| c.to_string())
                    .collect()
            };
            print_table(&rows, &columns);
            println!("({} rows)", rows.len());
        }
    }
    Ok(())
}

pub fn summary(args: &SummaryArgs) -> anyhow::Result<()> {
    let (what, key) = match args.resource {
        Summarized::Tasks => (InfoKind::Tasks, "func_or_class_name"),
        Summarized::Actors => (InfoKind::Actors, "class_name"),
        Summarized::Objects => (InfoKind::Objects, "location"),
    };
    let rows = rows(&args.node, what)?;
    // Name -> state -> count, in name order.
    let mut counts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        Default::default();
    let mut states: Vec<String> = Vec::new();
    for row in &rows {
        let state = text(&row["state"]);
        if !states.contains(&state) {
            states.push(state.clone());
        }
        *counts
            .entry(text(&row[key]))
            .or_default()
            .entry(state)
            .or_default() += 1;
    }
    states.sort();
    let mut columns = vec![key.to_string()];
    columns.extend(states.iter().cloned());
    let table: Vec<Value> = counts
        .into_iter()
        .map(|(name, by_state)| {
            let mut row = serde_json::Map::new();
            row.insert(key.to_string(), Value::String(name));
            for (state, n) in by_state {
                row.insert(state, Value::from(n));
            }
            Value::Object(row)
        })
        .collect();
    print_table(&table, &columns);
    println!("(total: {})", rows.len());
    Ok(())
}

fn print_event(e: &Value) {
    let time = e["time"].as_u64().unwrap_or(0);
    println!(
        "{}  {:<24} {}  {}",
        crate::dashboard::iso_time_ms(time),
        text(&e["kind"]),
        text(&e["source_node"]),
        text(&e["message"])
    );
}

pub fn events(args: &EventsArgs) -> anyhow::Result<()> {
    let first = rows(&args.node, InfoKind::Events)?;
    let skip = first.len().saturating_sub(args.limit);
    let mut last = None;
    for e in &first[skip..] {
        print_event(e);
        last = e["event_id"].as_u64().or(last);
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        for e in rows(&args.node, InfoKind::Events)? {
            let id = e["event_id"].as_u64();
            if id > last {
                print_event(&e);
                last = id;
            }
        }
    }
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<()> {
    use raynode_proto::{ActorId, LogQuery, LogTarget, NodeId, ToNode};
    let node = match &args.node_id {
        Some(hex) => Some(NodeId::from_hex(hex).with_context(|| {
            format!(
                "--node-id {hex:?} is not a node id (32 hex digits, as `raynode list nodes` shows)"
            )
        })?),
        None => None,
    };
    let target = match (args.pid, &args.actor_id, args.worker_id) {
        (Some(pid), _, _) => LogTarget::Pid(pid),
        (None, Some(hex), _) => {
            LogTarget::Actor(ActorId::from_hex(hex).with_context(|| {
                format!("--actor-id {hex:?} is not an actor id (32 hex digits)")
            })?)
        }
        (None, None, Some(n)) => LogTarget::Worker(n),
        (None, None, None) => LogTarget::Node,
    };
    let key = args.node.cluster_key.clone().or_else(key_from_env);
    let address = super::node_address(args.node.address.as_deref())?;
    let mut offset = None;
    loop {
        let query = LogQuery {
            target: target.clone(),
            stderr: args.err,
            tail: args.tail,
            offset,
        };
        let request = ToNode::Logs {
            req: 1,
            node,
            query,
        };
        let answer = crate::status::ask(&address, key.as_deref(), &request)?;
        print!("{}", answer["text"].as_str().unwrap_or_default());
        use std::io::Write as _;
        std::io::stdout().flush()?;
        if !args.follow {
            return Ok(());
        }
        offset = answer["end"].as_u64();
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn dashboard_token(args: &TokenArgs) -> anyhow::Result<()> {
    let path = args.cluster_key.clone().or_else(key_from_env);
    let key = p2p::load_cluster_key(path.as_deref()).context(
        "the dashboard token is made from the cluster key: copy the key file from a node",
    )?;
    let psk = raynode_proto::secure::psk(key.bytes());
    println!("{}", raynode_proto::secure::dashboard_token(&psk));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_key_value_pairs() {
        assert_eq!(
            parse_filter("state=RUNNING").ok(),
            Some(("state".into(), true, "RUNNING".into()))
        );
        assert_eq!(
            parse_filter("state != FINISHED").ok(),
            Some(("state".into(), false, "FINISHED".into()))
        );
        assert!(parse_filter("state").is_err());
        assert!(parse_filter("=x").is_err());
    }
}
