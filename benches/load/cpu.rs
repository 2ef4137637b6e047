//! CPU accounting from `/proc`: how much CPU each process of a measurement used, and how
//! much went to processes outside the benchmark (other work on a shared machine makes
//! req/s noisy; CPU time per request is steadier, and the foreign share says how noisy).

use std::time::Duration;

/// Cumulative CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Busy ticks of the whole machine (everything but idle and iowait).
    machine_busy: u64,
    /// user + system ticks of each watched process.
    processes: Vec<u64>,
    /// user + system ticks of this process's reaped children (wrk) and of itself.
    own_and_reaped: u64,
}

/// CPU used between two snapshots.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Per watched process, in the order given to [`snapshot`].
    pub processes: Vec<Duration>,
    /// The load generator (reaped children) and this orchestrating process.
    pub load_generator: Duration,
    /// Every other process on the machine.
    pub foreign: Duration,
}

/// Ticks per second of `/proc` counters (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

fn machine_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal ...
    line.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .filter_map(|(_, value)| value.parse::<u64>().ok())
        .sum()
}

/// Fields after the `(comm)` of `/proc/<pid>/stat`, 1-based as in proc(5) minus 2.
fn stat_fields(pid: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after_comm) = stat.rsplit(')').next() else {
        return Vec::new();
    };
    after_comm
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect()
}

/// utime + stime (proc(5) fields 14 and 15), plus cutime + cstime (16 and 17) if asked.
fn process_ticks(pid: &str, with_reaped_children: bool) -> u64 {
    let fields = stat_fields(pid);
    // Field n of proc(5) is index n - 3 here (pid and comm are before the split).
    let get = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    let own = get(14) + get(15);
    if with_reaped_children {
        own + get(16) + get(17)
    } else {
        own
    }
}

/// The counters now, for the processes `pids`.
pub fn snapshot(pids: &[u32]) -> Snapshot {
    Snapshot {
        machine_busy: machine_busy(),
        processes: pids
            .iter()
            .map(|pid| process_ticks(&pid.to_string(), false))
            .collect(),
        own_and_reaped: process_ticks("self", true),
    }
}

/// What was used from `before` to `after`.
pub fn usage(before: &Snapshot, after: &Snapshot, ticks_per_second: u64) -> Usage {
    let to_duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64);
    let processes: Vec<u64> = before
        .processes
        .iter()
        .zip(&after.processes)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect();
    let load_generator = after.own_and_reaped.saturating_sub(before.own_and_reaped);
    let busy = after.machine_busy.saturating_sub(before.machine_busy);
    let ours: u64 = processes.iter().sum::<u64>() + load_generator;
    Usage {
        processes: processes.into_iter().map(to_duration).collect(),
        load_generator: to_duration(load_generator),
        foreign: to_duration(busy.saturating_sub(ours)),
    }
}
