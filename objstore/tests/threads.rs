//! Concurrent writers and readers from several threads on one store small
//! enough that eviction, spilling and file reuse happen under them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use objstore::{layout, Config, CreateError, ObjectKey, Store};

fn key(thread: u8, n: u32) -> ObjectKey {
    let mut k = [0u8; 20];
    k[0] = thread;
    k[1..5].copy_from_slice(&n.to_le_bytes());
    ObjectKey(k)
}

fn seed_of(k: &ObjectKey) -> u8 {
    k.0.iter()
        .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(*b))
}

fn body(k: &ObjectKey, len: usize) -> Vec<u8> {
    let s = seed_of(k);
    (0..len).map(|i| s.wrapping_add(i as u8)).collect()
}

#[test]
fn concurrent_writers_and_readers_see_whole_objects() {
    let base = format!("objstore-threads-{}", std::process::id());
    let root = PathBuf::from("/dev/shm").join(&base);
    let spill = std::env::temp_dir().join(format!("{base}-spill"));
    let data_len = 20_000;
    let size = layout::plan(0, data_len, &[]).total as u64;
    let store = Store::open(
        Config::default()
            .with_root(&root)
            .with_spill_dir(&spill)
            .with_capacity(size * 12)
            .with_recycle_bytes(size * 3),
    )
    .unwrap();
    let shared_key = ObjectKey([0xff; 20]);
    {
        let l = layout::plan(0, data_len, &[]);
        let mut c = store.create(shared_key, size, true).unwrap();
        c.writer()
            .write_layout(&l, &[], &body(&shared_key, data_len), &[])
            .unwrap();
        c.into_writer().seal().unwrap();
    }
    let store = Arc::new(store);
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let store = Arc::clone(&store);
        threads.push(std::thread::spawn(move || {
            let l = layout::plan(0, data_len, &[]);
            let mut mine = Vec::new();
            for n in 0..150u32 {
                let k = key(t, n);
                // Half the objects are primary copies (spilled, never lost),
                // half secondary (may be evicted).
                let primary = n % 2 == 0;
                match store.create(k, size, primary) {
                    Ok(mut c) => {
                        c.writer()
                            .write_layout(&l, &[], &body(&k, data_len), &[])
                            .unwrap();
                        c.into_writer().seal().unwrap();
                        mine.push((k, primary));
                    }
                    Err(CreateError::StoreFull { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                if let Some(h) = store.get(&shared_key).unwrap() {
                    assert_eq!(h.data(), &body(&shared_key, data_len)[..]);
                }
                // Read back an older object of ours, if it is still here.
                let (old, old_primary) = mine[(n as usize * 7) % mine.len()];
                match store.get(&old).unwrap() {
                    Some(h) => assert_eq!(h.data(), &body(&old, data_len)[..]),
                    None => assert!(!old_primary, "a primary copy was lost"),
                }
                if n % 5 == 0 {
                    store.delete(&mine[0].0);
                    mine.remove(0);
                    if mine.is_empty() {
                        let k = key(t, 10_000 + n);
                        let mut c = store.create(k, size, true).unwrap();
                        c.writer()
                            .write_layout(&l, &[], &body(&k, data_len), &[])
                            .unwrap();
                        c.into_writer().seal().unwrap();
                        mine.push((k, true));
                    }
                }
                let st = store.stats();
                assert!(st.used + st.recycled <= st.capacity, "{st:?}");
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let st = store.stats();
    assert!(
        st.evictions + st.spills > 0,
        "the test did not press the store: {st:?}"
    );
    assert!(store.contains(&shared_key));
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&spill);
}
