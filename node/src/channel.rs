//! The node's side of the client channel over TCP (`raynode_proto::secure`):
//! the handshake on accept, and the async reader that opens what the
//! client sealed. Replies are sealed by the connection's writer.

use raynode_proto::secure::{
    self, Opener, SecureError, Session, LENGTH_BYTES, MAX_HANDSHAKE_MESSAGE, MAX_MESSAGE,
    MAX_SEALED_HELLO,
};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Reads one message of at most `max` bytes (its prefix checked first, so
/// nothing larger is allocated).
async fn read_message<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; LENGTH_BYTES];
    reader.read_exact(&mut prefix).await?;
    let len = secure::message_len(prefix, max)?;
    let mut message = vec![0u8; len];
    reader.read_exact(&mut message).await?;
    Ok(message)
}

/// Runs the node's side of the handshake and opens the client's first
/// transport message, which must hold its hello frame: returns the session
/// and that frame's bytes. Fails for a client without the cluster key and
/// for a replayed exchange.
pub async fn accept<R, W>(
    reader: &mut R,
    writer: &mut W,
    psk: &[u8; 32],
) -> io::Result<(Session, Vec<u8>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let first = read_message(reader, MAX_HANDSHAKE_MESSAGE).await?;
    let (reply, mut session) = secure::respond(psk, &first)?;
    writer.write_all(&reply).await?;
    let sealed = read_message(reader, MAX_SEALED_HELLO).await?;
    let mut hello = vec![0u8; sealed.len()];
    let n = session.opener.open(&sealed, &mut hello)?;
    hello.truncate(n);
    Ok((session, hello))
}

/// Bytes read from the socket at once, at most: a few whole messages.
const RECEIVE_BYTES: usize = 4 * (LENGTH_BYTES + MAX_MESSAGE);

/// What a client sealed, opened as a byte stream.
pub struct OpenRead<R> {
    inner: R,
    opener: Opener,
    /// Bytes from the socket; `received[opened..received_len]` are not yet
    /// opened.
    received: Box<[u8]>,
    opened: usize,
    received_len: usize,
    /// An opened message the reader had no room for;
    /// `plain[delivered..plain_len]` is still to be read.
    plain: Box<[u8]>,
    delivered: usize,
    plain_len: usize,
}

impl<R> OpenRead<R> {
    pub fn new(inner: R, opener: Opener) -> OpenRead<R> {
        OpenRead {
            inner,
            opener,
            received: vec![0u8; RECEIVE_BYTES].into_boxed_slice(),
            opened: 0,
            received_len: 0,
            plain: vec![0u8; MAX_MESSAGE].into_boxed_slice(),
            delivered: 0,
            plain_len: 0,
        }
    }

    /// A whole message waiting in `received`: its range.
    fn next_message(&self) -> Result<Option<(usize, usize)>, SecureError> {
        let waiting = &self.received[self.opened..self.received_len];
        let Some(prefix) = waiting.first_chunk::<LENGTH_BYTES>() else {
            return Ok(None);
        };
        let len = secure::message_len(*prefix, MAX_MESSAGE)?;
        let start = self.opened + LENGTH_BYTES;
        Ok((waiting.len() >= LENGTH_BYTES + len).then_some((start, start + len)))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for OpenRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.delivered < this.plain_len {
                let n = buf.remaining().min(this.plain_len - this.delivered);
                buf.put_slice(&this.plain[this.delivered..this.delivered + n]);
                this.delivered += n;
                return Poll::Ready(Ok(()));
            }
            if let Some((start, end)) = this.next_message()? {
                this.opened = end;
                let message = &this.received[start..end];
                // Opened straight into the reader's buffer when the whole
                // message fits (it is opened in place, tag included).
                if buf.remaining() >= message.len() {
                    let out = &mut buf.initialize_unfilled()[..message.len()];
                    let n = this.opener.open(message, out)?;
                    buf.advance(n);
                    if n > 0 {
                        return Poll::Ready(Ok(()));
                    }
                } else {
                    this.plain_len = this.opener.open(message, &mut this.plain)?;
                    this.delivered = 0;
                }
                continue;
            }
            // Not a whole message yet: move the part we have to the front
            // when the rest would not fit behind it, then read more.
            if this.opened == this.received_len {
                this.opened = 0;
                this.received_len = 0;
            } else if this.received.len() - this.opened < LENGTH_BYTES + MAX_MESSAGE {
                this.received.copy_within(this.opened..this.received_len, 0);
                this.received_len -= this.opened;
                this.opened = 0;
            }
            let mut free = ReadBuf::new(&mut this.received[this.received_len..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut free))?;
            let n = free.filled().len();
            if n == 0 {
                return if this.opened == this.received_len {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed its connection mid-message",
                    )))
                };
            }
            this.received_len += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raynode_proto::secure::Stream;
    use std::io::{Read, Write};

    /// A blocking client against the async node side, over a socket pair:
    /// the hello, then bytes both ways, read in odd-sized pieces.
    #[tokio::test]
    async fn a_blocking_client_and_the_node_side_understand_each_other() {
        let key = [4u8; 32];
        let (client, node) = std::os::unix::net::UnixStream::pair().expect("pair");
        node.set_nonblocking(true).expect("nonblocking");
        let node = tokio::net::UnixStream::from_std(node).expect("tokio socket");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
            let mut stream = Stream::connect(client, &key)?;
            stream.write_all(b"hello frame")?;
            stream.write_all(&sent)?;
            let mut back = [0u8; 5];
            stream.read_exact(&mut back)?;
            Ok(back.to_vec())
        });
        let (mut r, mut w) = node.into_split();
        let (session, hello) = accept(&mut r, &mut w, &secure::psk(&key))
            .await
            .expect("handshake");
        assert_eq!(hello, b"hello frame");
        let mut reader = OpenRead::new(r, session.opener);
        let mut got = vec![0u8; data.len()];
        let mut at = 0;
        for size in [3usize, 70_000, 1, 65_519, 200_000].iter().cycle() {
            if at == got.len() {
                break;
            }
            let end = (at + size).min(got.len());
            let n = reader.read(&mut got[at..end]).await.expect("read");
            assert!(n > 0, "ended early");
            at += n;
        }
        assert!(got == data, "bytes differ");
        let mut sealer = session.sealer;
        let mut reply = Vec::new();
        sealer.seal(b"reply", &mut reply).expect("seal");
        w.write_all(&reply).await.expect("write");
        let back = tokio::task::spawn_blocking(move || client.join())
            .await
            .expect("join")
            .expect("thread")
            .expect("client");
        assert_eq!(back, b"reply");
    }

    #[tokio::test]
    async fn a_client_without_the_key_gets_nowhere() {
        let (client, node) = std::os::unix::net::UnixStream::pair().expect("pair");
        node.set_nonblocking(true).expect("nonblocking");
        let node = tokio::net::UnixStream::from_std(node).expect("tokio socket");
        let client = std::thread::spawn(move || Stream::connect(client, &[1u8; 32]).map(|_| ()));
        let (mut r, mut w) = node.into_split();
        let refused = accept(&mut r, &mut w, &secure::psk(&[2u8; 32])).await;
        assert!(refused.is_err());
        drop((r, w));
        assert!(client.join().expect("thread").is_err());
    }
}
