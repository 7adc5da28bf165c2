//! Address helpers: parsing `--join` arguments and peer-id suffixes.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// A `--join` argument that is neither a multiaddr nor `host:port`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    #[error("invalid join address {input:?}: {reason} (expected a multiaddr such as /ip4/10.0.0.2/tcp/7001 or host:port)")]
    Invalid { input: String, reason: String },
}

/// Parses a `--join` argument: a multiaddr (`/ip4/…/tcp/…`, optionally
/// ending in `/p2p/<peer id>`) or `host:port`. A host name is resolved here
/// (this may block on DNS), preferring IPv4.
pub fn parse_join_addr(input: &str) -> Result<Multiaddr, AddrError> {
    let invalid = |reason: String| AddrError::Invalid {
        input: input.to_string(),
        reason,
    };
    let input = input.trim();
    if input.starts_with('/') {
        return input
            .parse::<Multiaddr>()
            .map_err(|e| invalid(e.to_string()));
    }
    if let Ok(socket) = input.parse::<SocketAddr>() {
        return Ok(socket_multiaddr(socket));
    }
    let (host, port) = input
        .rsplit_once(':')
        .ok_or_else(|| invalid("no port".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(format!("bad port {port:?}")))?;
    if host.is_empty() {
        return Err(invalid("no host".into()));
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve {host:?}: {e}")))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .map(|a| socket_multiaddr(*a))
        .ok_or_else(|| invalid(format!("{host:?} resolves to no address")))
}

/// `/ip4/a.b.c.d/tcp/port` or `/ip6/…/tcp/port`.
pub fn socket_multiaddr(socket: SocketAddr) -> Multiaddr {
    let ip = match socket.ip() {
        IpAddr::V4(v4) => Protocol::Ip4(v4),
        IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Tcp(socket.port()))
}

/// Splits a trailing `/p2p/<peer id>` off an address.
pub fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// `addr` with `/p2p/<peer>` appended (the form to print and to `--join`).
pub fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    let (base, _) = split_peer_id(addr);
    base.with(Protocol::P2p(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiaddr_and_host_port() {
        let m = parse_join_addr("/ip4/127.0.0.1/tcp/7001").expect("multiaddr");
        assert_eq!(m.to_string(), "/ip4/127.0.0.1/tcp/7001");
        let h = parse_join_addr("127.0.0.1:7002").expect("host:port");
        assert_eq!(h.to_string(), "/ip4/127.0.0.1/tcp/7002");
        let v6 = parse_join_addr("[::1]:7003").expect("v6");
        assert_eq!(v6.to_string(), "/ip6/::1/tcp/7003");
        let named = parse_join_addr("localhost:7004").expect("resolved");
        assert!(named.to_string().ends_with("/tcp/7004"), "{named}");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "nonsense", "127.0.0.1:notaport", ":7001", "/ip4/1.2.3"] {
            let err = parse_join_addr(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid join address"), "{err}");
        }
    }

    #[test]
    fn peer_id_suffix_round_trips() {
        let peer = PeerId::random();
        let base: Multiaddr = "/ip4/127.0.0.1/tcp/7001".parse().expect("addr");
        let full = with_peer_id(&base, peer);
        let (split, id) = split_peer_id(&full);
        assert_eq!(split, base);
        assert_eq!(id, Some(peer));
        assert_eq!(split_peer_id(&base), (base.clone(), None));
    }
}
