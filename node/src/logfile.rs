//! The node's log, on stderr and in a file of its data dir.
//!
//! The binary's tracing output goes through [`Tee`]: always to stderr, and
//! to `<data dir>/logs/node.log` once the node has opened it ([`open`],
//! when its data dir exists). The file is kept under [`MAX_BYTES`]: past
//! it, it becomes `node.log.1` (the one before that is dropped) and a new
//! one starts. `raynode logs` reads it, from any node of the cluster.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest the log file grows before it is rotated.
pub const MAX_BYTES: u64 = 64 << 20;

/// The file name of a node's own log in its logs dir.
pub const NODE_LOG: &str = "node.log";

struct Open {
    path: PathBuf,
    file: File,
    len: u64,
}

static FILE: Mutex<Option<Open>> = Mutex::new(None);

/// Starts copying the log to `logs_dir/node.log` (appending).
pub fn open(logs_dir: &Path) -> io::Result<PathBuf> {
    let path = logs_dir.join(NODE_LOG);
    let file = private_append(&path)?;
    let len = file.metadata()?.len();
    let mut slot = FILE.lock().unwrap_or_else(|e| e.into_inner());
    *slot = Some(Open {
        path: path.clone(),
        file,
        len,
    });
    Ok(path)
}

fn private_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Appends to the file, rotating it when it is full. Errors are dropped:
/// a log line never stops the node.
fn append(bytes: &[u8]) {
    let mut slot = FILE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(open) = slot.as_mut() else {
        return;
    };
    if open.len + bytes.len() as u64 > MAX_BYTES {
        let old = open.path.with_extension("log.1");
        let _ = std::fs::rename(&open.path, old);
        match private_append(&open.path) {
            Ok(file) => {
                open.file = file;
                open.len = 0;
            }
            Err(_) => {
                *slot = None;
                return;
            }
        }
    }
    let plain = without_colors(bytes);
    if open.file.write_all(&plain).is_ok() {
        open.len += plain.len() as u64;
    }
}

/// `bytes` without terminal color sequences (`ESC [ ... m`), for the file.
fn without_colors(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !bytes.contains(&0x1b) {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_escape = false;
    for &b in bytes {
        match (in_escape, b) {
            (false, 0x1b) => in_escape = true,
            (false, _) => out.push(b),
            (true, b'm') => in_escape = false,
            (true, _) => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A tracing writer: stderr, and the log file once open.
#[derive(Clone, Copy, Default)]
pub struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        append(buf);
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = Tee;

    fn make_writer(&'a self) -> Tee {
        Tee
    }
}

/// The end of a log file: from `offset` to its end (at most `max` bytes,
/// the first ones), or else its last `tail` lines. Returns the text and the
/// offset its end is at (to follow the file from).
pub fn read(path: &Path, offset: Option<u64>, tail: usize, max: u64) -> io::Result<(String, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = match offset {
        // A file rotated or truncated since: from its beginning.
        Some(o) if o > len => 0,
        Some(o) => o,
        None => len.saturating_sub(max),
    };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let end = start + bytes.len() as u64;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if offset.is_none() {
        let lines: Vec<&str> = text.lines().collect();
        let keep = lines.len().saturating_sub(tail);
        let mut kept = lines[keep..].join("\n");
        if !kept.is_empty() {
            kept.push('\n');
        }
        text = kept;
    }
    Ok((text, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_stay_on_the_terminal() {
        assert_eq!(
            &*without_colors(b"\x1b[2mtime\x1b[0m  \x1b[32m INFO\x1b[0m ready"),
            b"time   INFO ready"
        );
        assert_eq!(&*without_colors(b"plain"), b"plain");
    }

    #[test]
    fn the_tail_and_what_follows_it() {
        let dir = std::env::temp_dir().join(format!("raynode-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.log");
        std::fs::write(&path, "a\nb\nc\n").expect("write");
        let (text, end) = read(&path, None, 2, 1 << 20).expect("read");
        assert_eq!((text.as_str(), end), ("b\nc\n", 6));
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write");
        let (text, end) = read(&path, Some(end), 2, 1 << 20).expect("read");
        assert_eq!((text.as_str(), end), ("d\n", 8));
        let (text, _) = read(&path, Some(100), 2, 1 << 20).expect("read");
        assert_eq!(
            text, "a\nb\nc\nd\n",
            "a rotated file is read from its start"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
