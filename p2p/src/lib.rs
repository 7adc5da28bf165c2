//! p2p (being written).
