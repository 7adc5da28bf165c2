//! Write throughput and commit latency of a 3-member in-process group.
//!
//! ```text
//! cargo run --release -p raft-gcs --example bench -- [--dir /dev/shm] [--secs 3]
//! ```
//! `--dir` is where the members' data directories go (tmpfs or disk).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft_gcs::inproc::Router;
use raft_gcs::{Command, Config, FunctionId, Gcs, NodeId, ServerState};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn cluster(base: &std::path::Path) -> anyhow::Result<(Vec<Gcs>, Vec<tempfile::TempDir>)> {
    let router = Router::new();
    let mut members = Vec::new();
    let mut dirs = Vec::new();
    for id in 1..=3u64 {
        let dir = tempfile::tempdir_in(base)?;
        let cfg = Config::new(NodeId(id), dir.path())
            .with_addr(format!("mem-{id}"))
            .with_cluster("bench")
            .with_write_pipeline(4096, inflight());
        let g = Gcs::open(cfg, router.endpoint(NodeId(id))).await?;
        router.add(g.clone());
        members.push(g);
        dirs.push(dir);
    }
    members[0].bootstrap().await?;
    for id in 2..=3u64 {
        let cmd = Command::RegisterNode {
            id: NodeId(id),
            addrs: vec![format!("mem-{id}")],
            resources: Default::default(),
        };
        members[0].write(cmd).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while members[0].status().voters.len() < 3 || members[0].status().state != ServerState::Leader {
        anyhow::ensure!(Instant::now() < deadline, "group did not form");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((members, dirs))
}

fn inflight() -> usize {
    arg("--inflight")
        .and_then(|s| s.parse().ok())
        .unwrap_or(Config::default().max_inflight_entries)
}

struct Outcome {
    commands: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(leader: &Gcs, writers: usize, per_call: usize, secs: f64) -> Outcome {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..writers {
        let g = leader.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut done = 0u64;
            while Instant::now() < stop {
                let cmds: Vec<Command> = (0..per_call)
                    .map(|_| {
                        let i = NEXT.fetch_add(1, Ordering::Relaxed);
                        Command::RegisterFunction {
                            id: FunctionId(i.to_be_bytes().to_vec()),
                            body: vec![7u8; 64],
                        }
                    })
                    .collect();
                let t = Instant::now();
                if g.write_batch(cmds).await.is_ok() {
                    lat.push(t.elapsed());
                    done += per_call as u64;
                }
            }
            (done, lat)
        }));
    }
    let mut commands = 0;
    let mut lat = Vec::new();
    for t in tasks {
        if let Ok((d, l)) = t.await {
            commands += d;
            lat.extend(l);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        commands,
        secs,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = arg("--dir").unwrap_or_else(|| "/dev/shm".into());
    let secs: f64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let (members, _dirs) = cluster(std::path::Path::new(&base)).await?;
    let leader = members[0].clone();
    println!(
        "3-member in-process group, data in {base}, {secs} s per case, {} entries in flight",
        inflight()
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "case", "writes/s", "p50", "p99"
    );
    for (writers, per_call, name) in [
        (1, 1, "1 writer, 1 command/write"),
        (64, 1, "64 writers, 1 command/write"),
        (1, 64, "1 writer, write_batch of 64"),
        (64, 16, "64 writers, write_batch of 16"),
    ] {
        let o = run(&leader, writers, per_call, secs).await;
        println!(
            "{:<34} {:>12.0} {:>8.2}ms {:>8.2}ms",
            name,
            o.commands as f64 / o.secs,
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3
        );
    }
    for g in &members {
        g.shutdown().await;
    }
    Ok(())
}
