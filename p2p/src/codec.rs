//! The request/response codec: one length-prefixed frame of opaque bytes per
//! request and per response.
//!
//! Frame: a 4-byte big-endian length, then that many bytes. The length is
//! checked against the protocol's limit *before* anything is read, and the
//! body is read through `take(len)`, so a peer can never make us buffer more
//! than the limit. An oversized frame fails that one stream with an
//! `InvalidData` error (logged by the event loop); the connection and the
//! swarm keep running.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// Bytes read up front for a frame body; the rest grows as data arrives, so
/// a peer that announces a large frame and sends little costs little.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Codec for one request/response protocol, with its two size limits.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
}

/// Reads one frame of at most `limit` bytes.
pub async fn read_frame<T>(io: &mut T, limit: usize, what: &str) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} of {len} bytes exceeds the {limit}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity(len.min(INITIAL_BUFFER));
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{what} truncated: {} of {len} bytes", buf.len()),
        ));
    }
    Ok(buf)
}

/// Writes one frame, refusing one over `limit` bytes.
pub async fn write_frame<T>(io: &mut T, data: &[u8], limit: usize, what: &str) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    if data.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} of {} bytes exceeds the {limit}-byte limit",
                data.len()
            ),
        ));
    }
    let len = u32::try_from(data.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} too large for a frame"),
        )
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.flush().await?;
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request_bytes, "request").await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response_bytes, "response").await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_request_bytes, "request").await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_response_bytes, "response").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn round_trip() {
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frame(&mut buf, b"hello", 16, "request")).expect("write");
        buf.set_position(0);
        let back = block_on(read_frame(&mut buf, 16, "request")).expect("read");
        assert_eq!(back, b"hello");
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_the_body() {
        let mut wire = (1_000_000u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[0u8; 8]);
        let err =
            block_on(read_frame(&mut Cursor::new(wire), 1024, "request")).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut wire = (10u32).to_be_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        let err =
            block_on(read_frame(&mut Cursor::new(wire), 1024, "response")).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_write_is_refused() {
        let mut buf = Cursor::new(Vec::new());
        let err =
            block_on(write_frame(&mut buf, &[0u8; 32], 16, "response")).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(buf.get_ref().is_empty());
    }
}
