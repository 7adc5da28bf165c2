//! `raynode status`: connect to a node as a client and print what it knows.

use anyhow::{bail, Context};
use raynode_proto::frame::{self, HEADER_BYTES};
use raynode_proto::{FromNode, InfoKind, Role, ToNode, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Connects and says hello; over TCP through the client channel, keyed by
/// the cluster key in `cluster_key` (never created here).
fn connect(address: &str, cluster_key: Option<&Path>) -> anyhow::Result<Box<dyn Stream>> {
    let timeout = Some(Duration::from_secs(5));
    let mut stream: Box<dyn Stream> = if address.contains('/') {
        let s = std::os::unix::net::UnixStream::connect(address)
            .with_context(|| format!("connecting to {address}"))?;
        s.set_read_timeout(timeout)?;
        Box::new(s)
    } else {
        let addr: std::net::SocketAddr = address
            .parse()
            .with_context(|| format!("{address:?} is not host:port or a socket path"))?;
        let key = p2p::load_cluster_key(cluster_key).context(
            "a client connecting over TCP needs the cluster key (copy the key file from a node)",
        )?;
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {address}"))?;
        s.set_read_timeout(timeout)?;
        let secure = raynode_proto::secure::Stream::connect(s, key.bytes())
            .with_context(|| format!("the node at {address} refused the cluster key"))?;
        Box::new(secure)
    };
    let hello = ToNode::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Driver {
            pid: std::process::id(),
        },
    };
    stream.write_all(&frame::encode(&hello)?)?;
    Ok(stream)
}

fn read_frame(stream: &mut dyn Stream) -> anyhow::Result<FromNode> {
    let mut header = [0u8; HEADER_BYTES];
    stream.read_exact(&mut header)?;
    let mut body = vec![0; frame::body_len(header)?];
    stream.read_exact(&mut body)?;
    Ok(frame::decode(&body)?)
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
        match read_frame(stream.as_mut())? {
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
