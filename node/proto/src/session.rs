//! Session files: how drivers (`init(address="auto")`), `raynode status`
//! and `raynode stop` find the nodes that `raynode start` left running on
//! this machine.
//!
//! Each node started by `raynode start` writes one small JSON file,
//! `~/.raynode/sessions/node-<pid>.json` (the directory 0700, the file
//! 0600, written whole by a rename), once it is ready, and removes it when
//! it stops. A file whose process is gone, or whose pid now names another
//! process (its start time differs), is stale: readers skip it and
//! `raynode stop` removes it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a started node records of itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/<pid>/stat`),
    /// telling this node apart from a later process given the same pid.
    pub start_time: u64,
    /// The node's id, as `raynode status` and `ray.nodes()` show it.
    pub node_id: String,
    /// The Unix socket local drivers connect to.
    pub socket: PathBuf,
    /// The TCP address remote drivers connect to, if the node serves one.
    pub client_address: Option<String>,
    /// The node's p2p addresses; other nodes join through any of them.
    pub p2p: Vec<String>,
    pub data_dir: PathBuf,
    /// Whether the data dir is this node's alone, removed when it stops.
    pub remove_data_dir: bool,
    /// The shared-memory store directory.
    pub store_dir: PathBuf,
    /// Where the node's output goes.
    pub log_file: Option<PathBuf>,
}

/// The user's raynode dir, `~/.raynode` (the cluster key's default home too).
pub fn user_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".raynode"))
}

/// `~/.raynode/sessions`, where started nodes record themselves.
pub fn sessions_dir() -> Option<PathBuf> {
    user_dir().map(|d| d.join("sessions"))
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), if it
/// runs (a zombie does not).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // A zombie has ended; only its parent has not collected it yet.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl Session {
    /// This session's file in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("node-{}.json", self.pid))
    }

    /// Whether the process that wrote this record still runs.
    pub fn is_live(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }

    /// Writes the record into `dir` (created 0700), readable by its owner only.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let path = self.path_in(dir);
        let tmp = dir.join(format!(".node-{}.json.tmp", self.pid));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Every session recorded in `dir`, live or stale, oldest process first,
/// with the file it was read from. Files that cannot be read are skipped.
pub fn read_all(dir: &Path) -> Vec<(PathBuf, Session)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Session)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("node-") && name.ends_with(".json")
        })
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let session = serde_json::from_slice(&bytes).ok()?;
            Some((p, session))
        })
        .collect();
    found.sort_by_key(|(_, s)| (s.start_time, s.pid));
    found
}

/// The sessions in `dir` whose node still runs, oldest first.
pub fn live(dir: &Path) -> Vec<Session> {
    read_all(dir)
        .into_iter()
        .map(|(_, s)| s)
        .filter(Session::is_live)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn session(pid: u32, start_time: u64) -> Session {
        Session {
            pid,
            start_time,
            node_id: "ab".into(),
            socket: "/tmp/node.sock".into(),
            client_address: None,
            p2p: vec!["/ip4/127.0.0.1/tcp/1".into()],
            data_dir: "/tmp/d".into(),
            remove_data_dir: true,
            store_dir: "/dev/shm/x".into(),
            log_file: None,
        }
    }

    #[test]
    fn a_written_session_reads_back_private_and_live() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let me = std::process::id();
        let mine = session(me, process_start_time(me).unwrap());
        let path = mine.write(&dir).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(live(&dir), vec![mine]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_session_of_another_process_is_stale() {
        let dir = tempfile_dir();
        let me = std::process::id();
        // Same pid, another start time: the pid was reused.
        session(me, process_start_time(me).unwrap() + 1)
            .write(&dir)
            .unwrap();
        assert_eq!(read_all(&dir).len(), 1);
        assert!(live(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "raynode-session-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
