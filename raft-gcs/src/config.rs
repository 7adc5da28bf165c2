//! Configuration of one store member.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;
use crate::types::NodeId;

/// Settings of one member of the control store. Build with
/// `Config::new(id, dir)` and the builder methods, then pass to
/// [`crate::Gcs::open`], which calls [`Config::validate`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// This member's id; must match the id recorded in `data_dir`.
    pub node_id: NodeId,
    /// Address other members reach this one at (passed to the transport).
    pub addr: String,
    /// Directory of the sled database (log, vote, snapshot).
    pub data_dir: PathBuf,
    /// Cluster name; a data directory of another cluster is refused.
    pub cluster: String,
    /// Voter count the membership policy aims for (odd).
    pub voters: usize,
    /// A voter unreachable from the leader this long is replaced.
    pub voter_down_after: Duration,
    /// How often the leader re-evaluates the membership policy.
    pub policy_interval: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// Log entries kept behind the snapshot for lagging followers.
    pub logs_kept_after_snapshot: u64,
    /// Entries kept in the event log; older ones are dropped.
    pub event_log_capacity: u32,
    /// Raft heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Longest a learner goes without a heartbeat while nothing changes
    /// (voters get one every `heartbeat_interval`; see `network`). At most
    /// half of `voter_down_after` is used, so a quiet learner never looks
    /// down to the membership policy.
    pub learner_heartbeat_interval: Duration,
    /// Raft election timeout (lower bound; the upper bound is twice this).
    pub election_timeout: Duration,
    /// Most commands packed into one log entry by the write batcher.
    pub max_batch_commands: usize,
    /// Most log entries in flight from the write batcher.
    pub max_inflight_entries: usize,
    /// Change notifications buffered per subscriber before it lags.
    pub subscriber_buffer: usize,
    /// Longest wait for a write, linearizable read or membership change.
    pub op_timeout: Duration,
    /// A leader that no quorum of voters answered for this long counts as
    /// cut off: it refuses writes at once and reports no quorum.
    pub quorum_lease: Duration,
}

impl Config {
    /// Defaults for member `node_id` storing into `data_dir`.
    pub fn new(node_id: NodeId, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            node_id,
            data_dir: data_dir.into(),
            ..Config::default()
        }
    }

    /// Set the address peers reach this member at.
    pub fn with_addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// Set the cluster name.
    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// Set the target voter count (odd).
    pub fn with_voters(mut self, voters: usize) -> Self {
        self.voters = voters;
        self
    }

    /// Set how long a voter may be unreachable before it is replaced.
    pub fn with_voter_down_after(mut self, d: Duration) -> Self {
        self.voter_down_after = d;
        self
    }

    /// Set the snapshot threshold and the log kept behind a snapshot.
    pub fn with_snapshots(mut self, after_logs: u64, kept_after: u64) -> Self {
        self.snapshot_after_logs = after_logs;
        self.logs_kept_after_snapshot = kept_after;
        self
    }

    /// Set the write batcher's limits: commands per entry, entries in flight.
    pub fn with_write_pipeline(mut self, max_batch_commands: usize, max_inflight: usize) -> Self {
        self.max_batch_commands = max_batch_commands;
        self.max_inflight_entries = max_inflight;
        self
    }

    /// Set the event log capacity.
    pub fn with_event_log_capacity(mut self, n: u32) -> Self {
        self.event_log_capacity = n;
        self
    }

    /// Set Raft heartbeat and election timing.
    pub fn with_timing(mut self, heartbeat: Duration, election_timeout: Duration) -> Self {
        self.heartbeat_interval = heartbeat;
        self.election_timeout = election_timeout;
        self
    }

    /// Set the timeout of writes, linearizable reads and membership changes.
    pub fn with_op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }

    /// Set how often the leader applies the membership policy.
    pub fn with_policy_interval(mut self, d: Duration) -> Self {
        self.policy_interval = d;
        self
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        if self.voters == 0 || self.voters.is_multiple_of(2) {
            return bad("voters must be odd");
        }
        if self.cluster.is_empty() {
            return bad("cluster name must not be empty");
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must be set");
        }
        if self.snapshot_after_logs == 0 {
            return bad("snapshot_after_logs must be positive");
        }
        if self.event_log_capacity == 0 {
            return bad("event_log_capacity must be positive");
        }
        if self.heartbeat_interval.is_zero() || self.election_timeout <= self.heartbeat_interval {
            return bad("election_timeout must exceed a non-zero heartbeat_interval");
        }
        if self.learner_heartbeat_interval < self.heartbeat_interval {
            return bad("learner_heartbeat_interval must not be below heartbeat_interval");
        }
        if self.max_batch_commands == 0 || self.max_inflight_entries == 0 {
            return bad("max_batch_commands and max_inflight_entries must be positive");
        }
        if self.op_timeout.is_zero() || self.policy_interval.is_zero() {
            return bad("op_timeout and policy_interval must be positive");
        }
        if self.subscriber_buffer == 0 {
            return bad("subscriber_buffer must be positive");
        }
        Ok(())
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let ms = |d: Duration| d.as_millis().max(1) as u64;
        let election = ms(self.election_timeout);
        let cfg = openraft::Config {
            cluster_name: self.cluster.clone(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            install_snapshot_timeout: election.max(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            max_payload_entries: 1000,
            ..openraft::Config::default()
        };
        cfg.validate()
            .map_err(|e| ConfigError::Invalid(format!("raft settings: {e}")))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: NodeId(0),
            addr: String::new(),
            data_dir: PathBuf::new(),
            cluster: "raynode".to_string(),
            voters: 5,
            voter_down_after: Duration::from_secs(10),
            policy_interval: Duration::from_millis(500),
            snapshot_after_logs: 10_000,
            logs_kept_after_snapshot: 1_000,
            event_log_capacity: 10_000,
            heartbeat_interval: Duration::from_millis(100),
            learner_heartbeat_interval: Duration::from_secs(2),
            election_timeout: Duration::from_millis(500),
            max_batch_commands: 4096,
            max_inflight_entries: 2,
            subscriber_buffer: 4096,
            op_timeout: Duration::from_secs(5),
            quorum_lease: Duration::from_millis(1500),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_even_voters() {
        let c = Config::new(NodeId(1), "/tmp/x");
        assert!(c.validate().is_ok());
        assert!(c.clone().with_voters(4).validate().is_err());
        assert!(c.clone().with_voters(0).validate().is_err());
        assert!(c.raft_config().is_ok());
    }
}
