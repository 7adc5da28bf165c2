//! The byte stream after the handshake: [`Encrypted`] seals what is written
//! into noise transport messages of at most [`MAX_MESSAGE`] bytes, each
//! behind a 2-byte big-endian length, and opens them again on the reading
//! side, gathering small writes and sealing and opening large ones in the
//! caller's own buffer.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};
use snow::TransportState;

use super::{noise_error, MAX_FRAME, MAX_MESSAGE, MAX_PLAIN, RECEIVE_BYTES, SEND_BYTES, TAG};

/// A byte stream sealed in noise transport messages.
pub struct Encrypted<S> {
    socket: S,
    session: TransportState,
    /// Plaintext not yet making a whole message.
    gathered: Box<[u8]>,
    gathered_len: usize,
    /// Sealed frames; `sealed[sent..sealed_len]` is still to be written.
    sealed: Box<[u8]>,
    sent: usize,
    sealed_len: usize,
    /// Bytes read from the socket; `received[opened..received_len]` are not
    /// yet opened.
    received: Box<[u8]>,
    opened: usize,
    received_len: usize,
    /// An opened message the reader did not have room for;
    /// `plain[delivered..plain_len]` is still to be read.
    plain: Box<[u8]>,
    delivered: usize,
    plain_len: usize,
}

impl<S> Encrypted<S> {
    pub(super) fn new(socket: S, session: TransportState) -> Self {
        Self {
            socket,
            session,
            gathered: vec![0; MAX_PLAIN].into_boxed_slice(),
            gathered_len: 0,
            sealed: vec![0; SEND_BYTES].into_boxed_slice(),
            sent: 0,
            sealed_len: 0,
            received: vec![0; RECEIVE_BYTES].into_boxed_slice(),
            opened: 0,
            received_len: 0,
            plain: vec![0; MAX_MESSAGE].into_boxed_slice(),
            delivered: 0,
            plain_len: 0,
        }
    }

    fn has_room_to_seal(&self) -> bool {
        self.sealed_len + MAX_FRAME <= self.sealed.len()
    }

    /// Seals `plain` (at most [`MAX_PLAIN`] bytes) as the next frame.
    fn seal(
        session: &mut TransportState,
        sealed: &mut [u8],
        sealed_len: &mut usize,
        plain: &[u8],
    ) -> io::Result<()> {
        let frame = &mut sealed[*sealed_len..];
        let n = session
            .write_message(plain, &mut frame[2..])
            .map_err(noise_error)?;
        frame[..2].copy_from_slice(&(n as u16).to_be_bytes());
        *sealed_len += 2 + n;
        Ok(())
    }

    fn seal_gathered(&mut self) -> io::Result<()> {
        if self.gathered_len > 0 {
            let plain = &self.gathered[..self.gathered_len];
            Self::seal(
                &mut self.session,
                &mut self.sealed,
                &mut self.sealed_len,
                plain,
            )?;
            self.gathered_len = 0;
        }
        Ok(())
    }

    /// A whole frame waiting in `received`: its message's range.
    fn next_message(&self) -> io::Result<Option<(usize, usize)>> {
        let waiting = &self.received[self.opened..self.received_len];
        let Some(len) = waiting.first_chunk::<2>() else {
            return Ok(None);
        };
        let len = u16::from_be_bytes(*len) as usize;
        if len < TAG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "noise: short message",
            ));
        }
        let start = self.opened + 2;
        Ok((waiting.len() >= 2 + len).then_some((start, start + len)))
    }
}

impl<S: AsyncWrite + Unpin> Encrypted<S> {
    /// Writes every sealed byte to the socket.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.sealed_len {
            let n =
                ready!(Pin::new(&mut self.socket)
                    .poll_write(cx, &self.sealed[self.sent..self.sealed_len]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.sealed_len = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Encrypted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !this.has_room_to_seal() {
            ready!(this.poll_send(cx))?;
        }
        let mut taken = 0;
        while taken < buf.len() && this.has_room_to_seal() {
            let rest = &buf[taken..];
            if this.gathered_len == 0 && rest.len() >= MAX_PLAIN {
                // A whole message: sealed from the caller's buffer.
                Self::seal(
                    &mut this.session,
                    &mut this.sealed,
                    &mut this.sealed_len,
                    &rest[..MAX_PLAIN],
                )?;
                taken += MAX_PLAIN;
                continue;
            }
            let n = rest.len().min(MAX_PLAIN - this.gathered_len);
            this.gathered[this.gathered_len..this.gathered_len + n].copy_from_slice(&rest[..n]);
            this.gathered_len += n;
            taken += n;
            if this.gathered_len < MAX_PLAIN {
                break;
            }
            this.seal_gathered()?;
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gathered_len > 0 {
            if !this.has_room_to_seal() {
                ready!(this.poll_send(cx))?;
            }
            this.seal_gathered()?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().socket).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Encrypted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.delivered < this.plain_len {
                let n = buf.len().min(this.plain_len - this.delivered);
                buf[..n].copy_from_slice(&this.plain[this.delivered..this.delivered + n]);
                this.delivered += n;
                return Poll::Ready(Ok(n));
            }
            if let Some((start, end)) = this.next_message()? {
                let message = &this.received[start..end];
                this.opened = end;
                // Opened where the reader wants it if it has room for the
                // whole message (snow opens in place, tag included).
                if buf.len() >= message.len() {
                    let n = this
                        .session
                        .read_message(message, buf)
                        .map_err(noise_error)?;
                    if n > 0 {
                        return Poll::Ready(Ok(n));
                    }
                } else {
                    let n = this
                        .session
                        .read_message(message, &mut this.plain)
                        .map_err(noise_error)?;
                    this.delivered = 0;
                    this.plain_len = n;
                }
                continue;
            }
            // Not a whole frame yet: keep the part we have at the front
            // when the rest would not fit behind it, then read more.
            if this.opened == this.received_len {
                this.opened = 0;
                this.received_len = 0;
            } else if this.received.len() - this.opened < MAX_FRAME {
                this.received.copy_within(this.opened..this.received_len, 0);
                this.received_len -= this.opened;
                this.opened = 0;
            }
            let free = &mut this.received[this.received_len..];
            let n = ready!(Pin::new(&mut this.socket).poll_read(cx, free))?;
            if n == 0 {
                return if this.opened == this.received_len {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "noise: connection closed mid-message",
                    )))
                };
            }
            this.received_len += n;
        }
    }
}
