//! Client connections: accept, then one reader and one writer task per
//! connection. Readers decode bounded frames into core events; writers
//! batch whatever the core queued into few writes.
//!
//! Until its hello arrives a connection may send only that: at most
//! [`MAX_HELLO_BYTES`], within [`HELLO_DEADLINE`]. A TCP client first proves
//! it holds the cluster key in the client channel's handshake
//! ([`channel`]), and all its traffic is sealed. Local and TCP clients have
//! separate limits, so strangers on the network never lock out the node's
//! own workers and drivers.

use crate::channel;
use crate::config::NodeConfig;
use crate::core::{ConnId, Event};
use anyhow::Context;
use raynode_proto::frame::{self, HEADER_BYTES};
use raynode_proto::secure::{self, Sealer, MAX_HELLO_BYTES};
use raynode_proto::{FromNode, ToNode};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

/// Local clients (drivers and workers on the Unix socket) served at once.
/// TCP clients never count against it.
pub const MAX_LOCAL_CONNECTIONS: usize = 4096;
/// TCP clients connected but not yet authenticated; beyond it a new one is
/// closed at once.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// Authenticated TCP clients served at once.
pub const MAX_REMOTE_CONNECTIONS: usize = 1024;
/// How long a client has from connecting to its hello, handshake included.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);

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

    /// Accepts on both sockets until aborted. `store` takes large puts
    /// straight from the connections that send them inline (clients
    /// without the shared memory); `psk` keys the TCP client channel.
    pub async fn run(
        self,
        events: mpsc::Sender<Event>,
        store: objstore::Store,
        inline_limit: u64,
        psk: [u8; 32],
    ) {
        let shared = Shared {
            events,
            large: LargePuts {
                store,
                above: inline_limit as usize,
            },
        };
        let local = accept_local(self.unix, shared.clone());
        match self.tcp {
            Some(tcp) => {
                tokio::join!(local, accept_remote(tcp, shared, psk));
            }
            None => local.await,
        }
    }
}

/// What every connection's tasks need.
#[derive(Clone)]
struct Shared {
    events: mpsc::Sender<Event>,
    large: LargePuts,
}

async fn accept_local(unix: UnixListener, shared: Shared) {
    let limit = Arc::new(Semaphore::new(MAX_LOCAL_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match unix.accept().await {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    serve_local(stream, shared).await;
                    drop(permit);
                });
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn accept_remote(tcp: TcpListener, shared: Shared, psk: [u8; 32]) {
    let unauthenticated = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
    let authenticated = Arc::new(Semaphore::new(MAX_REMOTE_CONNECTIONS));
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        // Closed at once when full: strangers cannot queue up, and a slot
        // frees within the hello deadline.
        let Ok(pending) = unauthenticated.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many TCP clients still to authenticate; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, authenticated) = (shared.clone(), authenticated.clone());
        tokio::spawn(async move {
            serve_remote(stream, peer, shared, psk, pending, authenticated).await;
        });
    }
}

async fn accept_failed(e: std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn serve_local(stream: tokio::net::UnixStream, shared: Shared) {
    let (r, w) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    let hello = match tokio::time::timeout(HELLO_DEADLINE, read_hello(&mut reader)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => return tracing::debug!("a local client's hello was refused: {e}"),
        Err(_) => return tracing::debug!("a local client sent no hello in time"),
    };
    pump(reader, w, None, hello, shared).await
}

async fn serve_remote(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Shared,
    psk: [u8; 32],
    pending: OwnedSemaphorePermit,
    authenticated: Arc<Semaphore>,
) {
    let (mut r, mut w) = stream.into_split();
    let hello = async {
        let (session, frame) = channel::accept(&mut r, &mut w, &psk).await?;
        anyhow::Ok((session, hello_of(&frame)?))
    };
    let (session, hello) = match tokio::time::timeout(HELLO_DEADLINE, hello).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return tracing::debug!(%peer, "a TCP client was refused: {e}"),
        Err(_) => return tracing::debug!(%peer, "a TCP client did not authenticate in time"),
    };
    drop(pending);
    let Ok(_permit) = authenticated.try_acquire_owned() else {
        return tracing::warn!(%peer, "too many TCP clients; closing a new one");
    };
    tracing::debug!(%peer, "tcp client");
    let reader = BufReader::with_capacity(64 * 1024, channel::OpenRead::new(r, session.opener));
    pump(reader, w, Some(session.sealer), hello, shared).await
}

/// Reads a client's first frame, which must be a hello of at most
/// [`MAX_HELLO_BYTES`]; a larger length closes the connection unread.
async fn read_hello<R: AsyncRead + Unpin>(reader: &mut R) -> anyhow::Result<ToNode> {
    let mut header = [0u8; HEADER_BYTES];
    reader.read_exact(&mut header).await?;
    let len = frame::body_len(header)?;
    if HEADER_BYTES + len > MAX_HELLO_BYTES {
        anyhow::bail!("a first frame of {len} bytes; a hello is at most {MAX_HELLO_BYTES}");
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    hello_body(&body)
}

/// The hello frame a TCP client sealed in its first message.
fn hello_of(frame_bytes: &[u8]) -> anyhow::Result<ToNode> {
    let (header, body) = frame_bytes
        .split_first_chunk::<HEADER_BYTES>()
        .context("a first message too short for a frame")?;
    if frame::body_len(*header)? != body.len() {
        anyhow::bail!("the first message must hold exactly the hello frame");
    }
    hello_body(body)
}

fn hello_body(body: &[u8]) -> anyhow::Result<ToNode> {
    match frame::decode(body)? {
        hello @ ToNode::Hello { .. } => Ok(hello),
        _ => anyhow::bail!("the first frame must be a hello"),
    }
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

/// Serves one connection whose hello has arrived: registers it with the
/// core, then reads frames until it closes.
async fn pump<R, W>(reader: R, writer: W, sealer: Option<Sealer>, hello: ToNode, shared: Shared)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Shared { events, large } = shared;
    let conn = ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed));
    let span = tracing::debug_span!("conn", conn = conn.0);
    async move {
        tracing::debug!(hello = ?hello_role(&hello), "client connected");
        let (tx, rx) = mpsc::unbounded_channel();
        if events.send(Event::Connected { conn, tx }).await.is_err() {
            return;
        }
        let write = tokio::spawn(write_loop(writer, rx, sealer).in_current_span());
        let reason = match events.send(Event::Frame { conn, msg: hello }).await {
            Ok(()) => read_loop(reader, conn, &events, &large).await,
            Err(_) => Ok(()),
        };
        match &reason {
            Ok(()) => tracing::debug!("client closed the connection"),
            Err(e) => tracing::warn!("closing connection: {e}"),
        }
        let _ = events.send(Event::Disconnected { conn }).await;
        // The writer ends once the core drops this connection's sender.
        let _ = write.await;
    }
    .instrument(span)
    .await
}

/// Who a hello says the client is, for the connection's log.
fn hello_role(hello: &ToNode) -> Option<&raynode_proto::Role> {
    match hello {
        ToNode::Hello { role, .. } => Some(role),
        _ => None,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    conn: ConnId,
    events: &mpsc::Sender<Event>,
    large: &LargePuts,
) -> anyhow::Result<()> {
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; HEADER_BYTES];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            // Between frames, a client that closes or resets its end (a
            // driver that exits with replies unread) has simply left.
            Err(e) if client_left(&e) => return Ok(()),
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

/// How a connection ends when its client goes away between frames.
fn client_left(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Plaintext sealed per write to a TCP client's socket, at most.
const SEAL_CHUNK: usize = 1 << 20;

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<FromNode>,
    mut sealer: Option<Sealer>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut sealed = Vec::new();
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
        let written = match &mut sealer {
            None => writer.write_all(&buf).await,
            Some(sealer) => write_sealed(&mut writer, sealer, &buf, &mut sealed).await,
        };
        if written.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Seals `plain` and writes it, a chunk at a time.
async fn write_sealed<W: AsyncWrite + Unpin>(
    writer: &mut W,
    sealer: &mut Sealer,
    plain: &[u8],
    sealed: &mut Vec<u8>,
) -> std::io::Result<()> {
    for chunk in plain.chunks(SEAL_CHUNK) {
        let need = secure::sealed_len(chunk.len());
        if sealed.len() < need {
            sealed.resize(need, 0);
        }
        let len = sealer.seal_to(chunk, sealed)?;
        writer.write_all(&sealed[..len]).await?;
    }
    Ok(())
}
