//! raft-gcs (being written).
