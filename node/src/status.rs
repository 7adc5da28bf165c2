//! `raynode status`: connect to a node as a client and print what it knows.

use anyhow::{bail, Context};
use raynode_proto::client::{self, Stream};
use raynode_proto::frame;
use raynode_proto::{FromNode, InfoKind, Role, ToNode, PROTOCOL_VERSION};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Connects and says hello; over TCP through the client channel, keyed by
/// the cluster key in `cluster_key` (never created here).
fn connect(address: &str, cluster_key: Option<&Path>) -> anyhow::Result<Stream> {
    let key = if client::is_socket_path(address) {
        None
    } else {
        Some(p2p::load_cluster_key(cluster_key).context(
            "a client connecting over TCP needs the cluster key (copy the key file from a node)",
        )?)
    };
    let mut stream = Stream::connect(
        address,
        Duration::from_secs(5),
        key.as_ref().map(|k| k.bytes()),
    )
    .with_context(|| format!("connecting to the node at {address}"))?;
    let hello = ToNode::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Driver {
            pid: std::process::id(),
        },
    };
    stream.write_all(&frame::encode(&hello)?)?;
    Ok(stream)
}

/// Asks the node at `address` about `what`.
pub fn query(
    address: &str,
    cluster_key: Option<&Path>,
    what: InfoKind,
) -> anyhow::Result<serde_json::Value> {
    ask(address, cluster_key, &ToNode::Info { req: 1, what })
}

/// Sends `request` (numbered 1) to the node at `address`; its answer, an
/// `Info` frame's JSON.
pub fn ask(
    address: &str,
    cluster_key: Option<&Path>,
    request: &ToNode,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = connect(address, cluster_key)?;
    stream.write_all(&frame::encode(request)?)?;
    loop {
        match client::read_frame(&mut stream)? {
            FromNode::Info { json, .. } => return Ok(serde_json::from_str(&json)?),
            FromNode::Error { message, .. } => bail!("the node refused: {message}"),
            _ => continue,
        }
    }
}

/// Prints what the node at `address` knows of the cluster.
pub fn print(address: &str, cluster_key: Option<&Path>) -> anyhow::Result<()> {
    let nodes = query(address, cluster_key, InfoKind::Nodes)?;
    println!("{}", serde_json::to_string_pretty(&nodes)?);
    Ok(())
}
