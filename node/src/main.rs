//! `raynode`: run a node in the foreground, or one of Ray's cluster verbs
//! (`start`, `stop`, `status`); the command line lives in [`raynode::cli`].

use anyhow::Context;
use clap::Parser;
use raynode::cli::{Cli, Command};

/// Object transfers allocate and free buffers of a few hundred KiB at a
/// high rate (multiplexer frames, noise's). With glibc's defaults such
/// buffers are returned to the kernel when freed and come back as fresh
/// zeroed pages, which costs more than the copies they hold. Fixed
/// thresholds keep freed memory in the process for reuse instead.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters; it runs first thing
    // in `main`, before any other thread exists, with valid parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    keep_freed_buffers();
    let cli = Cli::parse();
    let log_level = match &cli.command {
        Some(Command::Start(start)) => &start.node.log_level,
        _ => &cli.node.log_level,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_level))
        .context("--log-level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(raynode::logfile::Tee)
        .init();

    match &cli.command {
        None => raynode::cli::run_node(&cli.node),
        Some(Command::Start(start)) => raynode::cli::start::run(start),
        Some(Command::Stop(stop)) => raynode::cli::stop::run(stop),
        Some(Command::Status(status)) => raynode::cli::status(status),
        Some(Command::List(list)) => raynode::cli::state::list(list),
        Some(Command::Summary(summary)) => raynode::cli::state::summary(summary),
        Some(Command::Events(events)) => raynode::cli::state::events(events),
        Some(Command::Logs(logs)) => raynode::cli::state::logs(logs),
        Some(Command::DashboardToken(token)) => raynode::cli::state::dashboard_token(token),
    }
}
