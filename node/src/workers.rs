//! Worker processes: start `python -m raynode._worker`, pass its output on
//! (`output`), watch for its exit, and stop it on request. Which worker
//! runs what is the core's business.

use crate::config::NodeConfig;
use crate::core::Event;
use raynode_proto::WorkerId;
use std::process::Stdio;
use tokio::sync::{mpsc, oneshot};

/// A started worker process; dropping it stops the process.
pub struct WorkerProcess {
    pub pid: u32,
    kill: Option<oneshot::Sender<()>>,
}

impl WorkerProcess {
    /// Ends the process (SIGKILL); its exit is reported as an event as usual.
    pub fn kill(&mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
    }
}

pub fn spawn(
    config: &NodeConfig,
    worker: WorkerId,
    events: mpsc::Sender<Event>,
) -> std::io::Result<WorkerProcess> {
    let mut cmd = tokio::process::Command::new(&config.python);
    cmd.arg("-m")
        .arg("raynode._worker")
        .env("RAYNODE_SOCKET", config.socket_path())
        .env("RAYNODE_WORKER_ID", worker.0.to_string())
        // Where runtime environments are unpacked, under the node's own dir.
        .env("RAYNODE_DATA_DIR", &config.data_dir)
        // Each line reaches the node (and the driver) when it is printed.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let logs = config.logs_dir();
    if let Some(out) = child.stdout.take() {
        let log = crate::output::log_path(&logs, worker, false);
        tokio::spawn(crate::output::pump(out, worker, false, log, events.clone()));
    }
    if let Some(err) = child.stderr.take() {
        let log = crate::output::log_path(&logs, worker, true);
        tokio::spawn(crate::output::pump(err, worker, true, log, events.clone()));
    }
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = kill_rx => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let _ = events.send(Event::WorkerExited { worker, status }).await;
    });
    tracing::debug!(%worker, pid, "worker started");
    Ok(WorkerProcess {
        pid,
        kill: Some(kill_tx),
    })
}
