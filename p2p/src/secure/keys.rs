//! The handshake's key material and crypto: the snow resolver (ring for
//! the cipher, hash and randomness, curve25519-dalek for X25519), the
//! X25519 key pair snow drives through it, and the node's noise static key.
//! The private bytes held here are wiped when their holder is dropped.

use std::io;

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::{
    params::{CipherChoice, DHChoice, HashChoice},
    resolvers::{CryptoResolver, RingResolver},
    types::{Cipher, Dh, Hash, Random},
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{noise_error, PARAMS};

/// A snow builder for [`PARAMS`] on [`Resolver`].
pub(super) fn builder() -> Result<snow::Builder<'static>, io::Error> {
    let params = PARAMS.parse().map_err(noise_error)?;
    Ok(snow::Builder::with_resolver(params, Box::new(Resolver)))
}

/// A noise static private key; its bytes are wiped when it is dropped.
#[derive(Clone)]
pub(super) struct StaticKey(Zeroizing<Vec<u8>>);

impl StaticKey {
    /// A fresh key from the resolver's randomness.
    pub(super) fn generate() -> Result<(Self, Vec<u8>), io::Error> {
        let snow::Keypair { private, public } =
            builder()?.generate_keypair().map_err(noise_error)?;
        Ok((Self(Zeroizing::new(private)), public))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

// Its one field wipes itself on drop.
impl ZeroizeOnDrop for StaticKey {}

/// ring for the cipher, hash and randomness; X25519 from curve25519-dalek
/// (ring has no static X25519 keys).
struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        RingResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

/// An X25519 key pair (static or ephemeral); the private half is wiped on
/// drop.
#[derive(Default)]
pub(super) struct X25519 {
    private: [u8; 32],
    public: [u8; 32],
}

impl X25519 {
    fn set_private(&mut self, private: &[u8; 32]) {
        self.private.copy_from_slice(private);
        self.public = MontgomeryPoint::mul_base_clamped(self.private).to_bytes();
    }
}

impl Zeroize for X25519 {
    fn zeroize(&mut self) {
        self.private.zeroize();
    }
}

impl Drop for X25519 {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for X25519 {}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, private: &[u8]) {
        let mut key = Zeroizing::new([0u8; 32]);
        let n = private.len().min(32);
        key[..n].copy_from_slice(&private[..n]);
        self.set_private(&key);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(&mut *key)?;
        self.set_private(&key);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private
    }

    fn dh(&self, public: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow hands over a slice that may be longer than the key.
        let public: [u8; 32] = *public.first_chunk().ok_or(snow::Error::Dh)?;
        let shared = Zeroizing::new(MontgomeryPoint(public).mul_clamped(self.private).to_bytes());
        // A low-order point from the peer gives all zeros: refuse it.
        if *shared == [0u8; 32] {
            return Err(snow::Error::Dh);
        }
        out[..32].copy_from_slice(&*shared);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::handshake::Identity;

    /// Compiles only for types that wipe themselves when dropped.
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn private_key_holders_wipe_on_drop() {
        wiped_on_drop::<StaticKey>();
        wiped_on_drop::<X25519>();
        wiped_on_drop::<Identity>();
    }

    #[test]
    fn zeroizing_an_x25519_pair_clears_its_private_half() {
        let mut pair = X25519::default();
        pair.set(&[7u8; 32]);
        assert_eq!(pair.privkey(), &[7u8; 32]);
        let public = pair.pubkey().to_vec();
        pair.zeroize();
        assert_eq!(pair.privkey(), &[0u8; 32]);
        assert_eq!(pair.pubkey(), &public[..], "the public half stays");
    }

    #[test]
    fn x25519_agrees_with_itself_and_refuses_low_order_points() {
        let (mut a, mut b) = (X25519::default(), X25519::default());
        a.set(&[1u8; 32]);
        b.set(&[2u8; 32]);
        let (mut ab, mut ba) = ([0u8; 32], [0u8; 32]);
        a.dh(b.pubkey(), &mut ab).expect("dh");
        b.dh(a.pubkey(), &mut ba).expect("dh");
        assert_eq!(ab, ba);
        assert!(a.dh(&[0u8; 32], &mut ab).is_err(), "the identity point");
    }

    #[test]
    fn a_static_key_is_32_random_bytes_with_its_public_half() {
        let (one, public) = StaticKey::generate().expect("key");
        let (two, _) = StaticKey::generate().expect("key");
        assert_eq!(one.as_bytes().len(), 32);
        assert_ne!(one.as_bytes(), two.as_bytes());
        let mut pair = X25519::default();
        pair.set(one.as_bytes());
        assert_eq!(pair.pubkey(), &public[..]);
    }
}
