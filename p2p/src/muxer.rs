//! Yamux as the connection's stream multiplexer, with our own settings.
//!
//! libp2p's yamux adapter fixes the size of the data frames a stream sends
//! at 16 KiB. A 4 MiB object chunk then costs 256 frames, each a separate
//! allocation, hand-off to the connection task and wake-up on both sides.
//! Here a frame carries up to [`FRAME_BYTES`] (one default stream window),
//! which a peer accepts as long as it stays under yamux's 1 MiB frame limit.
//! The protocol on the wire is unchanged (`/yamux/1.0.0`).

use std::{
    collections::VecDeque,
    iter,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{future, AsyncRead, AsyncWrite};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};

/// Largest data frame a stream sends.
pub const FRAME_BYTES: usize = 256 * 1024;

/// Inbound streams kept while no one takes them; beyond this, new ones are
/// dropped (the peer sees them reset). Yamux peers stop opening streams at
/// the same backlog, so this is reached only by a misbehaving peer.
const MAX_WAITING_INBOUND: usize = 256;

/// The upgrade that turns an authenticated connection into a multiplexer.
#[derive(Debug, Clone)]
pub(crate) struct Yamux(yamux::Config);

impl Default for Yamux {
    fn default() -> Self {
        let mut config = yamux::Config::default();
        config.set_split_send_size(FRAME_BYTES);
        Self(config)
    }
}

impl UpgradeInfo for Yamux {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = future::Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = std::io::Error;
    type Future = future::Ready<Result<Muxer<C>, std::io::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(io, self.0, yamux::Mode::Client)))
    }
}

/// One multiplexed connection.
///
/// Yamux makes progress only in `poll_next_inbound`, which libp2p drives
/// through [`StreamMuxer::poll`]; the inbound streams that call yields are
/// queued for [`StreamMuxer::poll_inbound`].
pub(crate) struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: C, config: yamux::Config, mode: yamux::Mode) -> Self {
        Self {
            connection: yamux::Connection::new(io, config, mode),
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }

    /// Drives the connection until it yields an inbound stream.
    fn next_inbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            Poll::Ready(None) => Poll::Ready(Err(yamux::ConnectionError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.inbound.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        if let Poll::Ready(result) = this.next_inbound(cx) {
            return Poll::Ready(result);
        }
        this.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = match this.next_inbound(cx) {
            Poll::Ready(Ok(stream)) => stream,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if this.inbound.len() < MAX_WAITING_INBOUND {
            this.inbound.push_back(stream);
            if let Some(waker) = this.inbound_waker.take() {
                waker.wake();
            }
        } else {
            tracing::warn!("dropping an inbound stream: {MAX_WAITING_INBOUND} are already waiting");
        }
        // Come back at once: the connection may have more to do, and other
        // work of this task gets its turn first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
