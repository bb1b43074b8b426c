//! glibc's allocator, tuned for a server whose memory should follow the work in flight.
//!
//! With its defaults, glibc gives each thread that allocates its own arena (up to eight per core)
//! and keeps freed memory in them, so a 100,000-target delivery left the server at 236 MiB where
//! the live data needs about 140 (docs/BENCHMARKS.md, round four). Two arenas and lower mmap and
//! trim thresholds bring the peak to 147 MiB at the same speed.
//!
//! glibc reads these settings only when the process starts, from `GLIBC_TUNABLES`, and the
//! workspace forbids `unsafe` (so no `mallopt`). The long-running commands therefore start
//! themselves once more with the variable set (`exec`: same process id, nothing else runs in
//! between) unless the operator's environment already has it, in which case the operator's value
//! wins, including an empty one, which turns the tuning off. See ADR 13 in docs/ARCHITECTURE.md.

/// The value the server runs with when the operator's environment does not set `GLIBC_TUNABLES`.
pub const TUNABLES: &str =
    "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=262144";

const VARIABLE: &str = "GLIBC_TUNABLES";

/// Replaces this process with itself under the tuned allocator, once. Returns only when there is
/// nothing to do (already set, not glibc) or when the restart failed, which is reported and
/// otherwise harmless: the server runs with glibc's defaults.
pub fn start_tuned() {
    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    if let Err(err) = restart_with_tunables() {
        eprintln!("edgefleet: running with glibc's default allocator settings: {err:#}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_tunables() -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;

    let program = std::env::current_exe().context("finding this program to start it tuned")?;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(&program);
    if let Some(name) = args.next() {
        // Keep the name the process was started as, for `ps` and the service manager.
        command.arg0(name);
    }
    // `exec` returns only on failure.
    let err = command.args(args).env(VARIABLE, TUNABLES).exec();
    Err(err).with_context(|| format!("restarting {} with {VARIABLE}", program.display()))
}

/// Other C libraries do not read `GLIBC_TUNABLES`; there is nothing to restart for.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with_tunables() -> anyhow::Result<()> {
    Ok(())
}
