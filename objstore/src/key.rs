//! `ObjectKey`: the 20-byte name of an object, and its file name (hex).

use std::fmt;

/// The store's name for an object: the node converts its own 20-byte
/// object id to this. Its lowercase hex is the object's file name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(pub [u8; 20]);

impl ObjectKey {
    /// Parses the 40-character lowercase or uppercase hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({self})")
    }
}

impl From<[u8; 20]> for ObjectKey {
    fn from(b: [u8; 20]) -> Self {
        Self(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let mut b = [0u8; 20];
        b[0] = 0xab;
        b[19] = 0x01;
        let k = ObjectKey(b);
        let s = k.to_string();
        assert_eq!(s.len(), 40);
        assert!(s.starts_with("ab00"));
        assert!(s.ends_with("01"));
        assert_eq!(ObjectKey::from_hex(&s), Some(k));
        assert_eq!(ObjectKey::from_hex(&s.to_uppercase()), Some(k));
        assert_eq!(ObjectKey::from_hex("xyz"), None);
        assert_eq!(ObjectKey::from_hex(&"g".repeat(40)), None);
    }
}
