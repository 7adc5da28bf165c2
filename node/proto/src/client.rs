//! A client's blocking connection to its node, for the Python package and
//! the CLI alike: a Unix socket on the node's machine, or TCP sealed by the
//! client channel ([`crate::secure`]), keyed by the cluster key.
//!
//! The caller says hello itself ([`crate::ToNode::Hello`]); this module
//! only connects and moves frames.

use crate::frame::{self, HEADER_BYTES};
use crate::secure;
use crate::FromNode;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Whether `address` names a Unix socket (a path) rather than `host:port`.
pub fn is_socket_path(address: &str) -> bool {
    address.contains('/')
}

pub enum Stream {
    Unix(UnixStream),
    /// The client channel: sealed with keys from the cluster key.
    Tcp(secure::Stream<TcpStream>),
}

impl Stream {
    /// Connects; over TCP the channel's handshake proves the cluster key
    /// (required there), and waits for the node at most `timeout`.
    pub fn connect(
        address: &str,
        timeout: Duration,
        cluster_key: Option<&[u8; 32]>,
    ) -> io::Result<Stream> {
        if is_socket_path(address) {
            let s = UnixStream::connect(address)?;
            s.set_read_timeout(Some(timeout))?;
            return Ok(Stream::Unix(s));
        }
        let key = cluster_key.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a client connecting over TCP needs the cluster key",
            )
        })?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(timeout))?;
                    return secure::Stream::connect(s, key).map(Stream::Tcp);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Waits for replies as long as they take, once connected.
    pub fn clear_read_timeout(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(None),
            Stream::Tcp(s) => s.get_ref().set_read_timeout(None),
        }
    }

    /// A second handle on the same connection (one thread reads, others
    /// write).
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s
                .get_ref()
                .try_clone()
                .map(|t| Stream::Tcp(s.with_inner(t))),
        }
    }

    /// Ends the connection both ways, waking a blocked reader.
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.get_ref().shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one frame from the node.
pub fn read_frame(r: &mut impl Read) -> io::Result<FromNode> {
    let mut header = [0u8; HEADER_BYTES];
    r.read_exact(&mut header)?;
    let len = frame::body_len(header).map_err(io::Error::other)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    frame::decode(&body).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_client_without_the_key_is_refused_before_connecting() {
        let err = Stream::connect("127.0.0.1:9", Duration::from_secs(1), None)
            .err()
            .map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::PermissionDenied));
    }

    #[test]
    fn frames_are_read_whole_and_in_order() {
        let a = FromNode::Error {
            req: 1,
            message: "first".into(),
        };
        let b = FromNode::Error {
            req: 2,
            message: "second".into(),
        };
        let mut bytes = frame::encode(&a).unwrap_or_default();
        bytes.extend(frame::encode(&b).unwrap_or_default());
        let mut r = &bytes[..];
        for want in [1, 2] {
            match read_frame(&mut r) {
                Ok(FromNode::Error { req, .. }) => assert_eq!(req, want),
                other => panic!("not the frame written: {other:?}"),
            }
        }
        assert_eq!(
            read_frame(&mut r).err().map(|e| e.kind()),
            Some(io::ErrorKind::UnexpectedEof)
        );
    }
}
