//! objstore (being written).
