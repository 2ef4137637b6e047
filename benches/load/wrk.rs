//! The load generator: Debian's `wrk` (HTTP/1.1 over TLS, keep-alive), the same settings
//! for every path, with a Lua `done` hook that prints the numbers in a line we parse
//! instead of scraping its human-readable report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cpu;

/// The marker of the line the Lua hook prints.
const RESULT_MARKER: &str = "PATHGATE-BENCH";

/// The Lua hook: totals and latency percentiles in microseconds.
const SCRIPT: &str = r#"-- Written by the pathgate load benchmark: print the totals in one parseable line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PATHGATE-BENCH requests=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// How every path is loaded.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub threads: u32,
    pub connections: u32,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub requests: u64,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Socket errors, timeouts and non-2xx/3xx answers.
    pub errors: u64,
    /// CPU used during the measured run (the watched processes are the upstream, then
    /// the proxy if any).
    pub cpu: cpu::Usage,
}

impl LoadResult {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU time of watched process `index` per request.
    pub fn cpu_per_request(&self, index: usize) -> Option<Duration> {
        let used = self.cpu.processes.get(index)?;
        Some(used.div_f64(self.requests.max(1) as f64))
    }
}

/// Runs wrk against URLs; holds the Lua script.
pub struct Wrk {
    script: PathBuf,
    pub version: String,
    ticks_per_second: u64,
}

impl Wrk {
    /// Checks that wrk is installed and writes the script into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let output = Command::new("wrk").arg("--version").output().context(
            "wrk is not installed: `apt-get install -y wrk` (Debian) provides the load generator",
        )?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let version = text.lines().next().unwrap_or("wrk").trim().to_string();
        let script = dir.join("report.lua");
        std::fs::write(&script, SCRIPT)?;
        Ok(Self {
            script,
            version,
            ticks_per_second: cpu::ticks_per_second(),
        })
    }

    /// A warm-up run (discarded; none when the warm-up is zero), then the measured run,
    /// accounting the CPU of the processes `watched` (by pid) during it.
    pub fn measure(
        &self,
        url: &str,
        settings: &LoadSettings,
        watched: &[u32],
    ) -> anyhow::Result<LoadResult> {
        if !settings.warmup.is_zero() {
            self.run(url, settings, settings.warmup)?;
        }
        let before = cpu::snapshot(watched);
        let (requests, elapsed, p50, p99, errors) = self.run(url, settings, settings.duration)?;
        let after = cpu::snapshot(watched);
        if requests == 0 {
            bail!("wrk completed no request against {url}");
        }
        Ok(LoadResult {
            requests,
            elapsed,
            p50,
            p99,
            errors,
            cpu: cpu::usage(&before, &after, self.ticks_per_second),
        })
    }

    fn run(
        &self,
        url: &str,
        settings: &LoadSettings,
        duration: Duration,
    ) -> anyhow::Result<Counts> {
        let seconds = duration.as_secs().max(1);
        let mut child = Command::new("wrk")
            .args([
                "--threads",
                &settings.threads.to_string(),
                "--connections",
                &settings.connections.to_string(),
                "--duration",
                &format!("{seconds}s"),
                "--timeout",
                "5s",
                "--script",
            ])
            .arg(&self.script)
            .args([
                "--header",
                "Authorization: Bearer pathgate-bench-token",
                "--header",
                "Accept: application/json",
                "--header",
                "User-Agent: kubectl/v1.37.2 (linux/amd64) pathgate-bench",
                url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wrk")?;
        // Bounded: wrk stops itself after `seconds`; a wrk that hangs is killed.
        let deadline = Instant::now() + Duration::from_secs(seconds + 30);
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("wrk against {url} did not finish within {}s", seconds + 30);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk against {url} failed ({}):\n{stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout).with_context(|| format!("wrk output against {url}:\n{stdout}"))
    }
}

/// requests, elapsed, p50, p99, errors.
type Counts = (u64, Duration, Duration, Duration, u64);

fn parse(stdout: &str) -> anyhow::Result<Counts> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(RESULT_MARKER))
        .context("no result line from the Lua hook")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(&prefix))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse::<u64>()
            .with_context(|| format!("{name} in {line:?} is not a number"))
    };
    Ok((
        field("requests")?,
        Duration::from_micros(field("duration_us")?),
        Duration::from_micros(field("p50_us")?),
        Duration::from_micros(field("p99_us")?),
        field("connect")? + field("read")? + field("write")? + field("status")? + field("timeout")?,
    ))
}
