//! Put and get throughput of the object store, beside memcpy bandwidth
//! measured in the same run. Run: `cargo bench -p objstore`.
//!
//! - memcpy: `copy_from_slice` between two already-touched buffers of the
//!   object's size (the physical limit of a put).
//! - put: create + write header and data through the writer's mapping +
//!   seal, then delete (so the next put reuses the freed file, the steady
//!   state of a busy node). The first put into fresh pages is shown apart.
//! - get: `Store::get` of a sealed object and dropping the handle (no copy);
//!   map by path: what another process does (`ReadMap::open`: open, lock,
//!   stat, mmap, check the key in the header). Neither should grow with the
//!   size.
//!
//! memcpy and put run in alternating rounds, so both meet the same machine
//! (this VM's speed drifts from second to second), and each reports its
//! best round: the rate the machine allows.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use objstore::map::ReadMap;
use objstore::{layout, Config, ObjectKey, Store};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;
/// Rounds of memcpy and put, alternating; the best of each is reported.
const ROUNDS: usize = 5;

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn human(n: usize) -> String {
    match n {
        n if n >= GIB => format!("{} GiB", n / GIB),
        n if n >= MIB => format!("{} MiB", n / MIB),
        n => format!("{} KiB", n / KIB),
    }
}

fn key(n: u64) -> ObjectKey {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&n.to_le_bytes());
    ObjectKey(k)
}

fn main() {
    let pid = std::process::id();
    let root = format!("/dev/shm/objstore-bench-{pid}");
    let spill = std::env::temp_dir().join(format!("objstore-bench-{pid}-spill"));
    let store = Store::open(
        Config::default()
            .with_root(&root)
            .with_spill_dir(&spill)
            .with_capacity(3 * GIB as u64)
            .with_recycle_bytes(3 * GIB as u64 / 2),
    )
    .unwrap();
    println!(
        "| size | memcpy GB/s | put GB/s | put/memcpy | put µs | first put GB/s | get µs | map by path µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut next = 0u64;
    for &size in &[KIB, 64 * KIB, MIB, 16 * MIB, 256 * MIB, GIB] {
        let reps = (2 * GIB / size / ROUNDS).clamp(1, 400);
        let data_len = size - layout::FIXED_HEADER;
        let l = layout::plan(0, data_len, &[]);
        assert_eq!(l.total, size);
        let src = vec![0x5au8; data_len];
        let mut dst = vec![0u8; data_len];
        dst.copy_from_slice(&src);

        let put = |next: &mut u64| {
            *next += 1;
            let k = key(*next);
            let mut c = store.create(k, size as u64, true).unwrap();
            c.writer().write_layout(&l, &[], &src, &[]).unwrap();
            c.into_writer().seal().unwrap();
            k
        };
        let t = Instant::now();
        let k = put(&mut next);
        let first = gbps(size, t.elapsed());
        store.delete(&k);
        let (mut memcpy, mut put_bw) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..reps {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            }
            memcpy = memcpy.max(gbps(reps * data_len, t.elapsed()));
            let t = Instant::now();
            for _ in 0..reps {
                let k = put(&mut next);
                store.delete(&k);
            }
            put_bw = put_bw.max(gbps(reps * size, t.elapsed()));
        }
        drop(dst);
        let put_us = size as f64 / put_bw / 1e3;

        let k = put(&mut next);
        let get_reps = 1000;
        let t = Instant::now();
        for _ in 0..get_reps {
            let h = store.get(&k).unwrap().unwrap();
            black_box(h.as_slice().len());
        }
        let get_us = t.elapsed().as_secs_f64() * 1e6 / get_reps as f64;
        let path = store.get(&k).unwrap().unwrap().path().to_path_buf();
        let map_reps = 200;
        let t = Instant::now();
        for _ in 0..map_reps {
            let m = ReadMap::open(&path, &k).unwrap();
            black_box(m.as_slice().len());
        }
        let map_us = t.elapsed().as_secs_f64() * 1e6 / map_reps as f64;
        store.delete(&k);
        println!(
            "| {} | {memcpy:.1} | {put_bw:.2} | {:.0}% | {put_us:.1} | {first:.2} | {get_us:.2} | {map_us:.1} |",
            human(size),
            100.0 * put_bw / memcpy
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&spill);
}
