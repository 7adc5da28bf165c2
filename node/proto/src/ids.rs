//! Identifiers. Every id is a fixed-size byte array with a hex `Display`.
//!
//! An [`ObjectId`] is the id of the task that made it (16 bytes) followed by
//! the index of the return value (4 bytes, big-endian), so a caller derives
//! the ids of a task's results without asking anyone. `ray.put` objects get a
//! fresh task id of their own and index 0.

use serde::{Deserialize, Serialize};
use std::fmt;

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str(&hex(bytes))
}

/// Bytes of an owner tag: every id a node's clients make (tasks, objects,
/// actors) begins with the first bytes of that node's id, so any node can
/// tell whose an object is without asking.
pub const OWNER_TAG_LEN: usize = 4;

/// The owner tag an id begins with (or a node's own, from its id).
pub fn owner_tag(id: &[u8]) -> [u8; OWNER_TAG_LEN] {
    let mut tag = [0u8; OWNER_TAG_LEN];
    let n = id.len().min(OWNER_TAG_LEN);
    tag[..n].copy_from_slice(&id[..n]);
    tag
}

/// Bytes as lowercase hex: ids, keys, digests.
pub fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Parses lowercase or uppercase hex into a fixed array.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    ::hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn from_hex(s: &str) -> Option<Self> {
                parse_hex::<$len>(s).map(Self)
            }

            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }
    };
}

byte_id!(
    /// A task, and the prefix of its return objects' ids.
    TaskId,
    16
);
byte_id!(
    /// An object: task id plus return index.
    ObjectId,
    20
);
byte_id!(
    /// A registered function or actor class: a hash of its pickled bytes.
    FunctionId,
    16
);
byte_id!(
    /// An actor, fixed at creation for its whole life (restarts included).
    ActorId,
    16
);
byte_id!(
    /// A node of the cluster.
    NodeId,
    16
);
byte_id!(
    /// A placement group, fixed at creation.
    PlacementGroupId,
    16
);

impl ObjectId {
    pub fn for_return(task: TaskId, index: u32) -> ObjectId {
        let mut bytes = [0u8; 20];
        bytes[..16].copy_from_slice(&task.0);
        bytes[16..].copy_from_slice(&index.to_be_bytes());
        ObjectId(bytes)
    }

    pub fn task(&self) -> TaskId {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.0[..16]);
        TaskId(bytes)
    }

    pub fn index(&self) -> u32 {
        u32::from_be_bytes([self.0[16], self.0[17], self.0[18], self.0[19]])
    }
}

/// A worker process of a node, numbered by the node that started it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// A job: one driver's session with the cluster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct JobId(pub u32);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_carries_task_and_index() {
        let task = TaskId([7; 16]);
        let id = ObjectId::for_return(task, 3);
        assert_eq!(id.task(), task);
        assert_eq!(id.index(), 3);
    }

    #[test]
    fn hex_round_trip() {
        let id = ActorId([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(ActorId::from_hex(&text), Some(id));
        assert_eq!(ActorId::from_hex("zz"), None);
    }
}
