//! A second process maps the store's objects by path: reads what this
//! process sealed, writes what this process then seals, keeps reading an
//! object this process deletes, and is refused (never shown another
//! object's bytes) when its path is stale because the file was reused. The child is this test binary re-run with
//! `OBJSTORE_CHILD` set, running only `child_entry`.
#![allow(clippy::unwrap_used)]

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use objstore::layout;
use objstore::map::{ReadMap, WriteMap};
use objstore::{Config, ObjectKey, Store};

const CHILD_ENV: &str = "OBJSTORE_CHILD";

static SEQ: AtomicU32 = AtomicU32::new(0);

struct Dirs {
    root: PathBuf,
    spill: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("objstore-mp-{}-{name}-{n}", std::process::id());
        Self {
            root: PathBuf::from("/dev/shm").join(&base),
            spill: std::env::temp_dir().join(format!("{base}-spill")),
        }
    }

    fn store(&self, capacity: u64) -> Store {
        Store::open(
            Config::default()
                .with_root(&self.root)
                .with_spill_dir(&self.spill)
                .with_capacity(capacity)
                .with_recycle_bytes(capacity / 2),
        )
        .unwrap()
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.spill);
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

fn buffers(seed: u8) -> Vec<Vec<u8>> {
    vec![pattern(seed ^ 1, 4096 + 3), pattern(seed ^ 2, 100_000)]
}

/// Checks a whole object's bytes against the pattern of `seed`.
fn verify(obj: &[u8], seed: u8) -> Result<(), String> {
    let l = layout::parse(obj).map_err(|e| e.to_string())?;
    if &obj[l.meta.clone()] != b"pickle5" {
        return Err("metadata differs".into());
    }
    if obj[l.data.clone()] != pattern(seed, 300_000)[..] {
        return Err("data differs".into());
    }
    for (r, b) in l.buffers.iter().zip(buffers(seed)) {
        if r.start % layout::ALIGN != 0 || obj[r.clone()] != b[..] {
            return Err("buffer differs or is misaligned".into());
        }
    }
    Ok(())
}

fn object_layout() -> layout::Layout {
    let b = buffers(0);
    layout::plan(7, 300_000, &[b[0].len(), b[1].len()])
}

fn fill(dst: &mut [u8], seed: u8) {
    let l = object_layout();
    let b = buffers(seed);
    layout::fill(
        dst,
        &l,
        b"pickle5",
        &pattern(seed, 300_000),
        &[&b[0], &b[1]],
    )
    .unwrap();
}

fn put(store: &Store, key: ObjectKey, seed: u8) {
    let l = object_layout();
    let mut c = store.create(key, l.total as u64, true).unwrap();
    fill(c.writer().as_mut_slice(), seed);
    c.into_writer().seal().unwrap();
}

fn child(command: &str, path: &Path, key: &ObjectKey, seed: u8) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{command}:{seed}:{key}:{}", path.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Runs in the child process only.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, ':');
    let command = parts.next().unwrap();
    let seed: u8 = parts.next().unwrap().parse().unwrap();
    let key = ObjectKey::from_hex(parts.next().unwrap()).unwrap();
    let path = PathBuf::from(parts.next().unwrap());
    let mut out = std::io::stdout();
    match command {
        "read" => {
            let m = ReadMap::open(&path, &key).unwrap();
            verify(m.as_slice(), seed).unwrap();
            writeln!(out, "CHILD verified {}", m.len()).unwrap();
        }
        "write" => {
            let mut m = WriteMap::open(&path).unwrap();
            fill(m.as_mut_slice(), seed);
            writeln!(out, "CHILD wrote {}", m.len()).unwrap();
        }
        "read-gone" => match ReadMap::open(&path, &key) {
            Err(e @ objstore::MapError::NotSealed { .. }) => {
                writeln!(out, "CHILD refused: {e}").unwrap();
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("mapped an object that is gone"),
        },
        "race" => {
            // Lines of "key seed path" until "end": each object is either
            // read whole and right, or refused; never another's bytes.
            let (mut read, mut refused) = (0, 0);
            for line in std::io::stdin().lines() {
                let line = line.unwrap();
                if line == "end" {
                    break;
                }
                let mut f = line.splitn(3, ' ');
                let key = ObjectKey::from_hex(f.next().unwrap()).unwrap();
                let seed: u8 = f.next().unwrap().parse().unwrap();
                let path = PathBuf::from(f.next().unwrap());
                match ReadMap::open(&path, &key) {
                    Ok(m) => {
                        verify(m.as_slice(), seed).unwrap();
                        read += 1;
                    }
                    Err(objstore::MapError::NotSealed { .. } | objstore::MapError::Io { .. }) => {
                        refused += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            writeln!(out, "CHILD race read={read} refused={refused}").unwrap();
        }
        "hold" => {
            let m = ReadMap::open(&path, &key).unwrap();
            verify(m.as_slice(), seed).unwrap();
            writeln!(out, "CHILD mapped").unwrap();
            out.flush().unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            verify(m.as_slice(), seed).unwrap();
            writeln!(out, "CHILD still verified").unwrap();
        }
        other => panic!("unknown child command {other}"),
    }
    out.flush().unwrap();
}

fn finish(c: std::process::Child) -> String {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed: {text}");
    text
}

#[test]
fn another_process_reads_a_sealed_object() {
    let d = Dirs::new("read");
    let s = d.store(64 << 20);
    let k = ObjectKey([1; 20]);
    put(&s, k, 42);
    let h = s.get(&k).unwrap().unwrap();
    let text = finish(child("read", h.path(), &k, 42));
    assert!(
        text.contains(&format!("CHILD verified {}", h.len())),
        "{text}"
    );
    // The child checks the bytes: a wrong seed must make it fail.
    let out = child("read", h.path(), &k, 43).wait_with_output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_stale_path_is_refused_once_its_file_holds_another_object() {
    let d = Dirs::new("stale");
    let s = d.store(64 << 20);
    let (old, new) = (ObjectKey([4; 20]), ObjectKey([5; 20]));
    put(&s, old, 11);
    let path = s.get(&old).unwrap().unwrap().path().to_path_buf();
    assert!(s.delete(&old));
    // Same size: the freed file is reused, under the same name.
    put(&s, new, 12);
    let h = s.get(&new).unwrap().unwrap();
    assert_eq!(h.path(), path);
    let text = finish(child("read-gone", &path, &old, 11));
    assert!(text.contains("CHILD refused"), "{text}");
    let text = finish(child("read", &path, &new, 12));
    assert!(text.contains("CHILD verified"), "{text}");
}

#[test]
fn another_process_writes_then_the_store_seals() {
    let d = Dirs::new("write");
    let s = d.store(64 << 20);
    let k = ObjectKey([2; 20]);
    let created = s.create(k, object_layout().total as u64, true).unwrap();
    let path = created.path().to_path_buf();
    drop(created);
    let text = finish(child("write", &path, &k, 7));
    assert!(text.contains("CHILD wrote"), "{text}");
    s.seal(&k).unwrap();
    verify(s.get(&k).unwrap().unwrap().as_slice(), 7).unwrap();
}

#[test]
fn a_reader_in_another_process_survives_delete_and_reuse() {
    let d = Dirs::new("hold");
    let s = d.store(64 << 20);
    let k = ObjectKey([3; 20]);
    put(&s, k, 9);
    let path = s.get(&k).unwrap().unwrap().path().to_path_buf();
    let mut c = child("hold", &path, &k, 9);
    let mut lines = BufReader::new(c.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .filter_map(|l| l.find("CHILD").map(|at| l[at..].to_string()));
    assert_eq!(lines.next().as_deref(), Some("CHILD mapped"));
    // Free it and create objects of the same size, which would reuse its
    // file if the child's lock did not forbid it.
    assert!(s.delete(&k));
    for n in 0..3u8 {
        put(&s, ObjectKey([10 + n; 20]), 100 + n);
    }
    c.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let rest: Vec<String> = lines.collect();
    assert!(c.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l == "CHILD still verified"), "{rest:?}");
}

#[test]
fn a_reader_racing_reuse_gets_its_object_or_an_error() {
    let d = Dirs::new("race");
    let s = d.store(64 << 20);
    let mut c = child("race", Path::new("-"), &ObjectKey([0; 20]), 0);
    let mut to_child = c.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut live = VecDeque::new();
    let mut paths = HashSet::new();
    let mut lines = Vec::new();
    for i in 0..400u32 {
        if Instant::now() > deadline {
            break;
        }
        let mut k = [0u8; 20];
        k[..4].copy_from_slice(&i.to_le_bytes());
        let (k, seed) = (ObjectKey(k), (i % 250) as u8);
        put(&s, k, seed);
        let path = s.get(&k).unwrap().unwrap().path().to_path_buf();
        let line = format!("{k} {seed} {}", path.display());
        writeln!(to_child, "{line}").unwrap();
        lines.push(line);
        paths.insert(path);
        // Free each object as soon as the reader hears of it (and every
        // other one at once): the next put reuses its file while the reader
        // may be opening it.
        live.push_back(k);
        if live.len() > (i % 2) as usize {
            assert!(s.delete(&live.pop_front().unwrap()));
        }
    }
    // Then every object again, now that most of their files hold others.
    for line in &lines {
        writeln!(to_child, "{line}").unwrap();
    }
    writeln!(to_child, "end").unwrap();
    drop(to_child);
    let sent = 2 * lines.len() as u32;
    let text = finish(c);
    assert!(
        paths.len() < lines.len() / 2,
        "files were not reused: {}",
        paths.len()
    );
    let counts = text.lines().find_map(|l| l.split("CHILD race ").nth(1));
    let counts = counts.unwrap_or_else(|| panic!("no counts: {text}"));
    let sum: u32 = counts
        .split(' ')
        .map(|kv| kv.split('=').nth(1).unwrap().parse::<u32>().unwrap())
        .sum();
    eprintln!("race: sent {sent}, {counts}");
    assert_eq!(sum, sent, "{counts}");
}

#[test]
fn a_truncated_or_foreign_file_is_an_error() {
    let d = Dirs::new("foreign");
    std::fs::create_dir_all(&d.root).unwrap();
    let p = d.root.join("foreign");
    std::fs::write(
        &p,
        b"this is not an object at all, but it is long enough........",
    )
    .unwrap();
    let k = ObjectKey([6; 20]);
    assert!(matches!(
        ReadMap::open(&p, &k),
        Err(objstore::MapError::NotSealed { .. })
    ));
    std::fs::write(&p, b"short").unwrap();
    assert!(ReadMap::open(&p, &k).is_err());
    let mut obj = vec![0u8; object_layout().total];
    fill(&mut obj, 1);
    layout::stamp_key(&mut obj, &k);
    std::fs::write(&p, &obj[..obj.len() / 2]).unwrap();
    let m = ReadMap::open(&p, &k).unwrap();
    assert!(matches!(
        layout::parse(m.as_slice()),
        Err(objstore::LayoutError::Truncated { .. })
    ));
}
