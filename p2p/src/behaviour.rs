//! The composed libp2p behaviour: identify, Kademlia, gossipsub, the RPC
//! request/response protocol and plain streams (object chunks).

use libp2p::{
    gossipsub, identify, identity::Keypair, kad, request_response, swarm::NetworkBehaviour,
};

use crate::{
    codec::FrameCodec,
    config::{Config, Protocol, GOSSIP_PROTOCOL_PREFIX, IDENTIFY_PROTOCOL, KAD_PROTOCOL},
    discovery::Discovery,
    error::StartError,
};

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub identify: identify::Behaviour,
    pub kad: Discovery,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<FrameCodec>,
    pub stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub fn new(keypair: &Keypair, config: &Config) -> Result<Self, StartError> {
        let peer_id = keypair.public().to_peer_id();

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
                .with_agent_version(format!("raynode/{}", env!("CARGO_PKG_VERSION"))),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // The event loop re-runs discovery itself, and only when the
        // routing table holds a peer to ask: Kademlia's own timer would run
        // it on a node alone too, and warn that it knows no peers.
        kad_config.set_periodic_bootstrap_interval(None);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Every member serves the DHT, loopback and private addresses
        // included (auto mode would wait for a confirmed external address).
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            .protocol_id_prefix(GOSSIP_PROTOCOL_PREFIX)
            .heartbeat_interval(config.gossip_interval)
            // A message goes to the mesh only, not to every peer at once:
            // in a cluster of n nodes, flooding would make every report n
            // sends, and every node receive each one several times.
            .flood_publish(false)
            // A small mesh. Every node receives each message about once per
            // mesh peer, and checks its signature each time: that, not the
            // message count, is gossip's cost in a large cluster. Four
            // peers still reach 1,000 nodes in about five hops.
            .mesh_n(4)
            .mesh_n_low(3)
            .mesh_n_high(6)
            .mesh_outbound_min(2)
            .gossip_lazy(3)
            .max_transmit_size(config.max_gossip_bytes)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .build()
            .map_err(|e| StartError::Build(format!("gossipsub config: {e}")))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            gossip_config,
        )
        .map_err(|e| StartError::Build(format!("gossipsub: {e}")))?;

        Ok(Behaviour {
            identify,
            kad: Discovery::new(kad),
            gossipsub,
            rpc: request_response_for(config, Protocol::Rpc),
            stream: libp2p_stream::Behaviour::new(),
        })
    }

    pub fn request_response(
        &mut self,
        protocol: Protocol,
    ) -> &mut request_response::Behaviour<FrameCodec> {
        match protocol {
            Protocol::Rpc => &mut self.rpc,
        }
    }
}

fn request_response_for(
    config: &Config,
    protocol: Protocol,
) -> request_response::Behaviour<FrameCodec> {
    let (max_request_bytes, max_response_bytes) = config.limits(protocol);
    request_response::Behaviour::with_codec(
        FrameCodec {
            max_request_bytes,
            max_response_bytes,
        },
        [(protocol.name(), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_streams),
    )
}
