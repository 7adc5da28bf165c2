//! Kademlia, told of the node's listen addresses only once it has a peer.
//!
//! libp2p's Kademlia starts a bootstrap query whenever a listen address
//! appears while no peer is connected (its interfaces may just have come
//! up), and warns when the query finds nobody to ask. The first node of a
//! cluster, and every private node a driver starts, always has a listen
//! address before any peer, so each one would warn at start although
//! nothing is wrong. [`Discovery`] holds listen addresses back until the
//! first connection is established, then hands them over in order: by then
//! there is a peer, and Kademlia has it to ask. Everything else passes
//! through unchanged; the event loop runs later discovery rounds itself
//! (see `EventLoop::rediscover`).

use std::task::{Context, Poll};

use libp2p::{
    core::{
        transport::{ListenerId, PortUse},
        Endpoint,
    },
    kad,
    swarm::{
        behaviour::NewListenAddr, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
        THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

type Kad = kad::Behaviour<kad::store::MemoryStore>;

pub(crate) struct Discovery {
    kad: Kad,
    /// Listen addresses not yet handed to Kademlia; `None` once a peer connected.
    held: Option<Vec<(ListenerId, Multiaddr)>>,
}

impl Discovery {
    pub fn new(kad: Kad) -> Self {
        Discovery {
            kad,
            held: Some(Vec::new()),
        }
    }
}

impl std::ops::Deref for Discovery {
    type Target = Kad;
    fn deref(&self) -> &Kad {
        &self.kad
    }
}

impl std::ops::DerefMut for Discovery {
    fn deref_mut(&mut self) -> &mut Kad {
        &mut self.kad
    }
}

impl NetworkBehaviour for Discovery {
    type ConnectionHandler = THandler<Kad>;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.kad
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kad
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.kad.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.kad.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match (&mut self.held, event) {
            (Some(held), FromSwarm::NewListenAddr(e)) => {
                held.push((e.listener_id, e.addr.clone()));
            }
            (Some(held), FromSwarm::ExpiredListenAddr(e)) => {
                held.retain(|(id, addr)| !(*id == e.listener_id && addr == e.addr));
            }
            (_, event @ FromSwarm::ConnectionEstablished(_)) => {
                self.kad.on_swarm_event(event);
                for (listener_id, addr) in self.held.take().unwrap_or_default() {
                    self.kad
                        .on_swarm_event(FromSwarm::NewListenAddr(NewListenAddr {
                            listener_id,
                            addr: &addr,
                        }));
                }
            }
            (_, event) => self.kad.on_swarm_event(event),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.kad
            .on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<kad::Event, THandlerInEvent<Self>>> {
        self.kad.poll(cx)
    }
}
