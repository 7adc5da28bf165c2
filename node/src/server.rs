//! Client connections: accept, then one reader and one writer task per
//! connection. Readers decode bounded frames into core events; writers
//! batch whatever the core queued into few writes.

use crate::config::NodeConfig;
use crate::core::{ConnId, Event};
use anyhow::Context;
use raynode_proto::frame::{self, HEADER_BYTES};
use raynode_proto::{FromNode, ToNode};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

/// At most this many client connections are served at once.
pub const MAX_CONNECTIONS: usize = 4096;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The core's way to talk to one connection. Unbounded: what a connection is
/// sent is bounded by what its client asked for (replies to its requests,
/// tasks assigned to its worker), all of which the core already holds.
pub type ConnTx = mpsc::UnboundedSender<FromNode>;

pub struct Listeners {
    unix: UnixListener,
    tcp: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &NodeConfig) -> anyhow::Result<Listeners> {
        let path = config.socket_path();
        if path.exists() {
            // A live node answers on it; a stale file from a dead one is replaced.
            if tokio::net::UnixStream::connect(&path).await.is_ok() {
                anyhow::bail!("another node is serving {}", path.display());
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        let unix =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        let tcp = match config.client_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners { unix, tcp })
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Accepts until aborted, spawning one reader and one writer per connection.
    /// `store` takes large puts straight from the connections that send
    /// them inline (clients without the shared memory).
    pub async fn run(self, events: mpsc::Sender<Event>, store: objstore::Store, inline_limit: u64) {
        let large = LargePuts {
            store,
            above: inline_limit as usize,
        };
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let permit = match limit.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let accepted = match &self.tcp {
                Some(tcp) => tokio::select! {
                    r = self.unix.accept() => r.map(|(s, _)| Conn::Unix(s)),
                    r = tcp.accept() => r.map(|(s, peer)| {
                        let _ = s.set_nodelay(true);
                        tracing::debug!(%peer, "tcp client");
                        Conn::Tcp(s)
                    }),
                },
                None => self.unix.accept().await.map(|(s, _)| Conn::Unix(s)),
            };
            match accepted {
                Ok(conn) => {
                    let (events, large) = (events.clone(), large.clone());
                    tokio::spawn(async move {
                        serve_conn(conn, events, large).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

/// Where a connection's reader writes large inline puts.
#[derive(Clone)]
struct LargePuts {
    store: objstore::Store,
    above: usize,
}

impl LargePuts {
    /// Writes a large put into the store; `None` leaves it to the core.
    fn take(
        &self,
        body: &[u8],
    ) -> Option<(raynode_proto::ObjectId, u64, Vec<raynode_proto::ObjectId>)> {
        if body.len() <= self.above {
            return None;
        }
        let put = raynode_proto::PutView::of(body)?;
        let key = objstore::ObjectKey(put.id.0);
        let mut created = self.store.create(key, put.bytes.len() as u64, true).ok()?;
        objstore::map::copy(created.writer().as_mut_slice(), put.bytes);
        if let Err(e) = created.into_writer().seal() {
            tracing::debug!(object = %put.id, "a large put did not seal: {e}");
            let _ = self.store.abort(&key);
            return None;
        }
        Some((put.id, put.bytes.len() as u64, put.nested))
    }
}

async fn serve_conn(conn: Conn, events: mpsc::Sender<Event>, large: LargePuts) {
    match conn {
        Conn::Unix(s) => {
            let (r, w) = s.into_split();
            pump(r, w, events, false, large).await
        }
        Conn::Tcp(s) => {
            let (r, w) = s.into_split();
            pump(r, w, events, true, large).await
        }
    }
}

async fn pump<R, W>(reader: R, writer: W, events: mpsc::Sender<Event>, tcp: bool, large: LargePuts)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    let span = tracing::debug_span!("conn", conn = conn.0);
    let (tx, rx) = mpsc::unbounded_channel();
    if events
        .send(Event::Connected { conn, tx, tcp })
        .await
        .is_err()
    {
        return;
    }
    let write = tokio::spawn(write_loop(writer, rx));
    let reason = read_loop(reader, conn, &events, &large).await;
    let _span = span.enter();
    match &reason {
        Ok(()) => tracing::debug!("client closed the connection"),
        Err(e) => tracing::warn!(conn = conn.0, "closing connection: {e}"),
    }
    let _ = events.send(Event::Disconnected { conn }).await;
    // The writer ends once the core drops this connection's sender.
    let _ = write.await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    conn: ConnId,
    events: &mpsc::Sender<Event>,
    large: &LargePuts,
) -> anyhow::Result<()> {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, &mut reader);
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER_BYTES];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = frame::body_len(header)?;
        body.resize(len, 0);
        reader
            .read_exact(&mut body)
            .await
            .context("truncated frame")?;
        if let Some((id, size, nested)) = large.take(&body) {
            let event = Event::PutStored {
                conn,
                id,
                size,
                nested,
            };
            if events.send(event).await.is_err() {
                return Ok(());
            }
            continue;
        }
        let msg: ToNode = frame::decode(&body)?;
        if events.send(Event::Frame { conn, msg }).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<FromNode>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(msg) = next {
            if let Err(e) = frame::encode_into(&msg, &mut buf) {
                // The caller still gets an answer: an error in place of the reply.
                tracing::error!("a reply cannot be encoded: {e}");
                if let Some(req) = msg.req() {
                    let message = format!("the node could not send its reply: {e}");
                    let _ = frame::encode_into(&FromNode::Error { req, message }, &mut buf);
                }
            }
            next = if buf.len() < (1 << 20) {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
