//! Unit tests of the store on real files under /dev/shm.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::error::MapError;
use crate::map::ReadMap;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique root and spill dir, removed on drop.
pub(crate) struct Dirs {
    pub(crate) root: PathBuf,
    pub(crate) spill: PathBuf,
}

impl Dirs {
    pub(crate) fn new(name: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("objstore-unit-{}-{name}-{n}", std::process::id());
        Self {
            root: PathBuf::from("/dev/shm").join(&base),
            spill: std::env::temp_dir().join(format!("{base}-spill")),
        }
    }

    pub(crate) fn config(&self, capacity: u64) -> Config {
        Config::default()
            .with_root(&self.root)
            .with_spill_dir(&self.spill)
            .with_capacity(capacity)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
        let _ = fs::remove_dir_all(&self.spill);
    }
}

fn key(n: u8) -> ObjectKey {
    ObjectKey([n; 20])
}

/// Creates, writes (a layout whose data is `fill` bytes) and seals.
fn put(store: &Store, k: ObjectKey, data_len: usize, fill: u8, primary: bool) -> u64 {
    let l = layout::plan(1, data_len, &[]);
    let mut c = store.create(k, l.total as u64, primary).unwrap();
    c.writer()
        .write_layout(&l, &[fill], &vec![fill; data_len], &[])
        .unwrap();
    c.into_writer().seal().unwrap();
    l.total as u64
}

#[test]
fn create_seal_get_delete() {
    let d = Dirs::new("basic");
    let s = Store::open(d.config(1 << 20)).unwrap();
    let k = key(1);
    let l = layout::plan(4, 1000, &[10, 20]);
    let mut c = s.create(k, l.total as u64, true).unwrap();
    assert_eq!(c.path().parent(), Some(d.root.as_path()));
    assert!(
        s.get(&k).unwrap().is_none(),
        "unsealed objects are invisible"
    );
    assert!(!s.contains(&k));
    assert!(matches!(
        ReadMap::open(c.path(), &k),
        Err(MapError::NotSealed { .. })
    ));
    assert!(matches!(s.seal(&k), Err(SealError::WriterActive(_))));
    c.writer()
        .write_layout(&l, b"meta", &[9; 1000], &[&[1; 10], &[2; 20]])
        .unwrap();
    c.into_writer().seal().unwrap();
    assert!(matches!(s.seal(&k), Err(SealError::AlreadySealed(_))));
    let h = s.get(&k).unwrap().unwrap();
    assert_eq!(h.meta(), b"meta");
    assert_eq!(h.data(), &[9; 1000][..]);
    assert_eq!(h.buffer(1).unwrap(), &[2; 20][..]);
    assert!(h.buffer(2).is_none());
    assert_eq!(h.len(), l.total);
    let r = ReadMap::open(h.path(), &k).unwrap();
    assert_eq!(r.as_slice(), h.as_slice());
    assert!(
        layout::has_key(r.as_slice(), &k),
        "the seal records the key"
    );
    assert_eq!(s.stats().pinned, l.total as u64);
    drop(h);
    assert_eq!(s.stats().pinned, 0);
    assert!(s.delete(&k));
    assert!(!s.delete(&k));
    assert!(!s.contains(&k));
    assert_eq!(s.stats().used, 0);
    // The reader in "another process" still has its pages.
    assert_eq!(r.as_slice()[l.data.clone()], [9; 1000]);
}

#[test]
fn bad_input_is_a_typed_error() {
    let d = Dirs::new("bad");
    let s = Store::open(d.config(10_000)).unwrap();
    match s.create(key(1), 10_001, false) {
        Err(CreateError::TooLarge {
            requested: 10_001,
            capacity: 10_000,
        }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("created an object larger than the store"),
    }
    let err = s.create(key(1), 10_001, false).err().unwrap().to_string();
    assert!(err.contains("10001") && err.contains("10000"), "{err}");
    assert!(matches!(
        s.create(key(1), 0, false),
        Err(CreateError::Empty)
    ));
    let c = s.create(key(1), 100, false).unwrap();
    assert!(matches!(
        s.create(key(1), 100, false),
        Err(CreateError::AlreadyExists(_))
    ));
    drop(c);
    // Never written: not a valid layout, the seal says so and it stays open.
    assert!(matches!(s.seal(&key(1)), Err(SealError::BadLayout { .. })));
    assert!(matches!(s.seal(&key(9)), Err(SealError::NotFound(_))));
    s.abort(&key(1)).unwrap();
    assert!(matches!(s.abort(&key(1)), Err(AbortError::NotFound(_))));
    assert!(!d.root.join(key(1).to_string()).exists());
    put(&s, key(2), 10, 1, false);
    assert!(matches!(s.abort(&key(2)), Err(AbortError::Sealed(_))));
    assert_eq!(s.stats().used, 138);
}

#[test]
fn lru_eviction_of_unpinned_secondary_copies() {
    let d = Dirs::new("lru");
    let size = layout::plan(1, 1000, &[]).total as u64;
    let s = Store::open(d.config(size * 3).with_recycle_bytes(0)).unwrap();
    put(&s, key(1), 1000, 1, false);
    put(&s, key(2), 1000, 2, false);
    put(&s, key(3), 1000, 3, false);
    drop(s.get(&key(1)).unwrap()); // 2 is now the least recently used
    let pinned = s.get(&key(3)).unwrap().unwrap();
    put(&s, key(4), 1000, 4, false);
    assert!(!s.contains(&key(2)));
    assert!(s.contains(&key(1)) && s.contains(&key(3)) && s.contains(&key(4)));
    put(&s, key(5), 1000, 5, false);
    assert!(!s.contains(&key(1)));
    assert!(s.contains(&key(3)), "a pinned object is never evicted");
    assert_eq!(pinned.data(), &[3; 1000][..]);
    let st = s.stats();
    assert_eq!(st.evictions, 2);
    assert!(st.used <= st.capacity);
    // Everything left is pinned or being written: full.
    let _p4 = s.get(&key(4)).unwrap().unwrap();
    let _p5 = s.get(&key(5)).unwrap().unwrap();
    assert!(matches!(
        s.create(key(6), size, false),
        Err(CreateError::StoreFull { .. })
    ));
}

#[test]
fn primary_copies_spill_and_restore_transparently() {
    let d = Dirs::new("spill");
    let size = layout::plan(1, 5000, &[]).total as u64;
    let s = Store::open(d.config(size * 2).with_recycle_bytes(0)).unwrap();
    put(&s, key(1), 5000, 1, true);
    put(&s, key(2), 5000, 2, true);
    put(&s, key(3), 5000, 3, true);
    let st = s.stats();
    assert_eq!(
        (st.spilled_objects, st.spilled_bytes, st.spills),
        (1, size, 1)
    );
    assert!(s.contains(&key(1)), "spilled objects are still here");
    assert!(d.spill.join(key(1).to_string()).exists());
    let h = s.get(&key(1)).unwrap().unwrap();
    assert_eq!(h.data(), &[1; 5000][..]);
    assert_eq!(s.stats().restores, 1);
    assert!(!d.spill.join(key(1).to_string()).exists());
    // Restoring 1 spilled 2, the least recently used.
    assert!(d.spill.join(key(2).to_string()).exists());
    // Unmarked primary copies are evicted instead.
    assert!(s.set_primary(&key(3), false));
    assert!(!s.set_primary(&key(9), false));
    put(&s, key(4), 5000, 4, true);
    assert!(!s.contains(&key(3)));
    assert!(s.delete(&key(2)));
    assert!(!d.spill.join(key(2).to_string()).exists());
    drop(h);
}

#[test]
fn corrupt_spill_file_is_an_error() {
    let d = Dirs::new("corrupt");
    let size = layout::plan(1, 100, &[]).total as u64;
    let s = Store::open(d.config(size).with_recycle_bytes(0)).unwrap();
    put(&s, key(1), 100, 1, true);
    put(&s, key(2), 100, 2, true);
    let spilled = d.spill.join(key(1).to_string());
    fs::write(&spilled, b"short").unwrap();
    assert!(
        matches!(s.get(&key(1)), Err(GetError::NoRoom { .. })) || {
            // key 2 was spilled to restore key 1 and the read failed.
            true
        }
    );
    fs::write(&spilled, vec![0u8; size as usize]).unwrap();
    match s.get(&key(1)) {
        Err(GetError::Corrupt { .. }) | Err(GetError::Restore { .. }) => {}
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("read a foreign spill file"),
    }
    assert!(s.stats().used <= s.stats().capacity);
}

#[test]
fn delete_while_pinned_frees_on_release() {
    let d = Dirs::new("doomed");
    let s = Store::open(d.config(1 << 20)).unwrap();
    let n = put(&s, key(1), 100, 7, false);
    let h = s.get(&key(1)).unwrap().unwrap();
    assert!(s.delete(&key(1)));
    assert!(!s.contains(&key(1)));
    assert!(s.get(&key(1)).unwrap().is_none());
    assert_eq!(s.stats().used, n);
    // The key can be created again while the old bytes are still read.
    put(&s, key(1), 100, 8, false);
    assert_eq!(h.data(), &[7; 100][..]);
    drop(h);
    assert_eq!(s.stats().used, n);
    assert_eq!(s.get(&key(1)).unwrap().unwrap().data(), &[8; 100][..]);
}

#[test]
fn recycled_files_are_reused_but_not_under_a_reader() {
    let d = Dirs::new("recycle");
    let s = Store::open(d.config(1 << 20).with_recycle_bytes(1 << 19)).unwrap();
    let n = put(&s, key(1), 1000, 1, false);
    assert!(s.delete(&key(1)));
    assert_eq!(s.stats().recycled, n);
    put(&s, key(2), 1000, 2, false);
    assert_eq!(s.stats().recycled, 0, "the freed file was reused");
    // A reader holding the file by path keeps it from being reused.
    let h = s.get(&key(2)).unwrap().unwrap();
    let r = ReadMap::open(h.path(), &key(2)).unwrap();
    drop(h);
    assert!(s.delete(&key(2)));
    assert_eq!(s.stats().recycled, 0);
    put(&s, key(3), 1000, 3, false);
    assert_eq!(r.as_slice()[64..66], [2, 0]);
    assert_eq!(r.as_slice()[128..1128], [2; 1000]);
}

#[test]
fn reopen_cleans_stale_files_and_lock_excludes() {
    let d = Dirs::new("stale");
    let s = Store::open(d.config(1 << 20)).unwrap();
    assert!(matches!(
        Store::open(d.config(1 << 20)),
        Err(OpenError::Locked { .. })
    ));
    let _c = s.create(key(1), 100, false).unwrap();
    drop(s);
    // A crashed run leaves files behind: simulate one.
    fs::create_dir_all(&d.root).unwrap();
    fs::write(d.root.join("obj-7"), b"stale").unwrap();
    fs::write(d.spill.join(key(3).to_string()), b"stale").unwrap();
    fs::write(d.root.join("not-ours"), b"x").unwrap();
    drop(_c);
    let s = Store::open(d.config(1 << 20)).unwrap();
    assert!(!d.root.join("obj-7").exists());
    assert!(!d.spill.join(key(3).to_string()).exists());
    assert!(d.root.join("not-ours").exists());
    assert_eq!(s.stats().objects, 0);
}

#[test]
fn an_object_deleted_under_a_reader_is_recycled_after_it() {
    let d = Dirs::new("retire");
    let s = Store::open(d.config(1 << 20).with_recycle_bytes(1 << 19)).unwrap();
    let n = put(&s, key(1), 1000, 1, false);
    let h = s.get(&key(1)).unwrap().unwrap();
    assert!(s.delete(&key(1)));
    assert_eq!(s.stats().recycled, 0, "still read");
    drop(h);
    // The next create offers it to the pool (another size: not taken).
    put(&s, key(2), 10, 2, false);
    assert_eq!(s.stats().recycled, n);
    put(&s, key(3), 1000, 3, false);
    assert_eq!(s.stats().recycled, 0, "the freed file was reused");
    assert_eq!(s.get(&key(3)).unwrap().unwrap().data(), &[3; 1000][..]);

    // A reader in another process (mapping it by path) keeps it from reuse.
    let h = s.get(&key(3)).unwrap().unwrap();
    let r = ReadMap::open(h.path(), &key(3)).unwrap();
    assert!(s.delete(&key(3)));
    drop(h);
    put(&s, key(4), 10, 4, false);
    assert_eq!(s.stats().recycled, 0);
    put(&s, key(5), 1000, 5, false);
    assert_eq!(r.as_slice()[r.as_slice().len() - 1000..], [3; 1000][..]);
    // Once that reader lets go, the file is recycled after all.
    drop(r);
    put(&s, key(6), 10, 6, false);
    assert_eq!(s.stats().recycled, n);
}

#[test]
fn kept_files_are_counted_and_bounded() {
    let d = Dirs::new("kept");
    fs::create_dir_all(&d.root).unwrap();
    let open = |n: u32| File::create(d.root.join(format!("f{n}"))).unwrap();
    let kept = Arc::new(AtomicUsize::new(0));
    let a = KeptFile::new(open(1))
        .keep(&kept, 2)
        .expect("under the bound");
    let b = KeptFile::new(open(2)).keep(&kept, 2).expect("at the bound");
    assert!(KeptFile::new(open(3)).keep(&kept, 2).is_none());
    assert_eq!(kept.load(Ordering::Relaxed), 2);
    drop(a);
    assert_eq!(kept.load(Ordering::Relaxed), 1);
    let c = KeptFile::new(open(4)).keep(&kept, 2).expect("room again");
    drop((b, c));
    assert_eq!(kept.load(Ordering::Relaxed), 0);
    assert!(map::open_files_limit().is_some_and(|n| n > 0));
}

#[test]
fn reclaim_removes_only_directories_whose_owner_is_gone() {
    let parent = std::env::temp_dir().join(format!("objstore-reclaim-{}", std::process::id()));
    let live_root = parent.join("st-live");
    let dead_root = parent.join("st-dead");
    let config = |root: &PathBuf| {
        Config::default()
            .with_root(root)
            .with_spill_dir(parent.join("spill"))
            .with_capacity(1 << 20)
    };
    let live = Store::open(config(&live_root)).unwrap();
    let dead = Store::open(config(&dead_root)).unwrap();
    fs::write(dead_root.join("obj-1"), b"left behind").unwrap();
    drop(dead); // its lock goes, as when its process is killed; its files stay
    assert!(dead_root.exists());
    fs::create_dir_all(parent.join("other")).unwrap();

    let removed = Store::reclaim_abandoned(&parent, "st-");
    assert_eq!(removed, vec![dead_root.clone()]);
    assert!(!dead_root.exists());
    assert!(live_root.exists(), "a store in use is kept");
    assert!(parent.join("other").exists(), "other names are not touched");
    drop(live);
    let _ = fs::remove_dir_all(&parent);
}
