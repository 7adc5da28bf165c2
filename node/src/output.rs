//! Worker output: every byte a worker writes to stdout or stderr goes to
//! its log file under `<data-dir>/logs/`, and whole lines go to the core,
//! each with the task the worker last marked ([`OUTPUT_MARK`]) in the same
//! stream, so that late lines still find their task's driver
//! (which passes them to the driver whose work the worker runs), at most
//! [`FORWARD_BYTES_PER_SEC`] per stream. Lines over that are dropped from
//! forwarding with a note naming the log file; the pipe is always read at
//! once, so a worker that prints without end never waits on the node, and
//! the core is never sent more than its queue takes.

use crate::core::Event;
use raynode_proto::{TaskId, WorkerId, OUTPUT_MARK};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes of lines forwarded per stream and second, at most.
pub const FORWARD_BYTES_PER_SEC: usize = 1 << 20;
/// A longer line is forwarded in pieces of this many bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Lines sent to the core in one event, at most.
const BATCH_LINES: usize = 256;

/// The log file of one stream of a worker.
pub fn log_path(logs: &Path, worker: WorkerId, stderr: bool) -> PathBuf {
    logs.join(format!(
        "worker-{}.{}",
        worker.0,
        if stderr { "err" } else { "out" }
    ))
}

/// How much may still be forwarded this second.
struct Budget {
    left: usize,
    since: Instant,
}

impl Budget {
    fn take(&mut self, bytes: usize) -> bool {
        if self.since.elapsed() >= Duration::from_secs(1) {
            self.left = FORWARD_BYTES_PER_SEC;
            self.since = Instant::now();
        }
        if bytes > self.left {
            return false;
        }
        self.left -= bytes;
        true
    }
}

/// Reads one stream of a worker until it closes.
pub async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    worker: WorkerId,
    stderr: bool,
    log: PathBuf,
    events: mpsc::Sender<Event>,
) {
    let mut file = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(%worker, "cannot open the worker log {}: {e}", log.display());
            None
        }
    };
    let mut budget = Budget {
        left: FORWARD_BYTES_PER_SEC,
        since: Instant::now(),
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut dropped = 0u64;
    let mut noted = Instant::now();
    let mut task: Option<TaskId> = None;
    loop {
        // A quiet second still lets a note about dropped lines out.
        let n = match tokio::time::timeout(Duration::from_secs(1), pipe.read(&mut buf)).await {
            Err(_) => 0,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let chunk = &buf[..n];
        if let Some(f) = &mut file {
            if f.write_all(chunk).await.is_err() {
                file = None;
            }
        }
        // Runs of lines, each run with the task it belongs to.
        let mut runs: Vec<(Option<TaskId>, Vec<String>)> = Vec::new();
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            partial.extend_from_slice(piece);
            let ended = partial.last() == Some(&b'\n');
            if !ended && partial.len() < MAX_LINE_BYTES {
                continue;
            }
            let line = std::mem::take(&mut partial);
            if let Some(marked) = marked_task(&line) {
                task = Some(marked);
                continue;
            }
            if budget.take(line.len()) {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                match runs.last_mut() {
                    Some((t, lines)) if *t == task => lines.push(text),
                    _ => runs.push((task, vec![text])),
                }
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 && noted.elapsed() >= Duration::from_secs(1) {
            let note = format!(
                "[raynode: {dropped} lines of output were not forwarded (over {} KiB/s); \
                 all of it is in {}]",
                FORWARD_BYTES_PER_SEC / 1024,
                log.display()
            );
            runs.push((task, vec![note]));
            dropped = 0;
            noted = Instant::now();
        }
        let batches = runs
            .iter()
            .flat_map(|(task, lines)| lines.chunks(BATCH_LINES).map(move |b| (*task, b)));
        for (task, batch) in batches {
            let Some(task) = task else {
                continue; // printed before any work: the log file has it
            };
            let event = Event::WorkerOutput {
                worker,
                task,
                stderr,
                lines: batch.to_vec(),
            };
            // Never wait on the core: a full queue drops the lines.
            if let Err(e) = events.try_send(event) {
                if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                    return;
                }
                dropped += batch.len() as u64;
            }
        }
    }
    if let Some(f) = &mut file {
        let _ = f.flush().await;
    }
}

/// The task a marker line names, if `line` is one.
fn marked_task(line: &[u8]) -> Option<TaskId> {
    let rest = line.strip_prefix(OUTPUT_MARK.as_bytes())?;
    TaskId::from_hex(std::str::from_utf8(rest).ok()?.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_name_their_task_and_others_do_not() {
        let id = TaskId([0xab; 16]);
        let line = format!("{OUTPUT_MARK}{}\n", "ab".repeat(16));
        assert_eq!(marked_task(line.as_bytes()), Some(id));
        assert_eq!(marked_task(b"hello\n"), None);
        let short = format!("{OUTPUT_MARK}abcd\n");
        assert_eq!(marked_task(short.as_bytes()), None);
    }
}
