//! The results of one run, rendered as the Markdown that BENCHMARKS.md quotes: every number
//! is also given as a ratio to the direct path measured in the same run.

use std::fmt::Write;
use std::time::Duration;

use crate::watch::WatchDelays;
use crate::wrk::{LoadResult, LoadSettings};

/// Above this share of the machine used by other processes, a measurement is flagged.
const NOISY_FOREIGN_SHARE: f64 = 0.10;

/// A path between the load generator and the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Haproxy,
    Pathgate,
    PathgateAllowAll,
    PathgateSpool,
    PathgateLedger,
    /// Another build of pathgate (`--baseline BINARY`, e.g. the previous commit's) with
    /// the same policy as [`Route::Pathgate`]: a change measured against what it changes.
    Baseline,
    /// `kubectl proxy`, the kubectl the test cluster builds: plain HTTP on the client side
    /// (it serves nothing else), TLS to the upstream with the kubeconfig's credentials.
    KubectlProxy,
    /// kube-rbac-proxy (pinned in controlplane/kube-rbac-proxy): TLS, the client's token
    /// checked by a TokenReview and the request by a SubjectAccessReview (both cached),
    /// then proxied.
    KubeRbacProxy,
}

impl Route {
    pub const ALL: [Route; 9] = [
        Route::Direct,
        Route::Haproxy,
        Route::Pathgate,
        Route::PathgateAllowAll,
        Route::PathgateSpool,
        Route::PathgateLedger,
        Route::Baseline,
        Route::KubectlProxy,
        Route::KubeRbacProxy,
    ];

    /// The Kubernetes-native peers: measured only when `--routes` names them (the
    /// kube-rbac-proxy build is the benchmark's alone, no other command needs it).
    pub const PEERS: [Route; 2] = [Route::KubectlProxy, Route::KubeRbacProxy];

    /// Every route `--routes` names.
    pub fn names() -> String {
        Route::ALL
            .iter()
            .filter(|route| **route != Route::Direct)
            .map(|route| route.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `http` for the one route that serves no TLS.
    pub fn scheme(self) -> &'static str {
        match self {
            Route::KubectlProxy => "http",
            _ => "https",
        }
    }

    /// The name `--routes` takes.
    pub fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Haproxy => "haproxy",
            Route::Pathgate => "pathgate",
            Route::PathgateAllowAll => "allow-all",
            Route::PathgateSpool => "spool",
            Route::PathgateLedger => "ledger",
            Route::Baseline => "baseline",
            Route::KubectlProxy => "kubectl-proxy",
            Route::KubeRbacProxy => "kube-rbac-proxy",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Haproxy => "HAProxy (nbthread 2, httplog)",
            Route::Pathgate => "pathgate binary (1 worker), policy, --mode observe",
            Route::PathgateAllowAll => "pathgate in-process, allow_all",
            Route::PathgateSpool => "pathgate binary, policy, observe, ledger (spool only)",
            Route::PathgateLedger => {
                "pathgate binary, policy, observe, ledger (spool + webhook sink)"
            }
            Route::Baseline => "baseline pathgate binary (--baseline), policy, --mode observe",
            Route::KubectlProxy => "kubectl proxy (plain HTTP to the client)",
            Route::KubeRbacProxy => "kube-rbac-proxy (TokenReview + SubjectAccessReview, cached)",
        }
    }
}

/// A request shape.
#[derive(Debug, Clone)]
pub struct Case {
    pub title: &'static str,
    /// Path and query as the load generator requests it.
    pub path_and_query: &'static str,
    /// The body the upstream answers.
    pub body_bytes: usize,
}

/// One measured (case, route).
#[derive(Debug, Clone)]
pub struct Measurement {
    pub case: usize,
    /// Which pass over the routes (see `--rounds`).
    pub round: usize,
    pub route: Route,
    pub result: LoadResult,
}

/// Everything a run measured and the context needed to read it.
pub struct Report {
    pub started: String,
    pub cores: usize,
    pub machine: String,
    pub tools: String,
    pub settings: LoadSettings,
    pub rounds: usize,
    pub cases: Vec<Case>,
    pub measurements: Vec<Measurement>,
    pub watch: Option<(WatchDelays, usize)>,
}

fn throughput_ratio(a: &LoadResult, b: &LoadResult) -> Option<f64> {
    Some(a.requests_per_second() / b.requests_per_second())
}

/// One ratio per round, sorted; shown as the median and the range, and from five rounds
/// on as the geometric mean with its 95% confidence interval.
#[derive(Debug, Clone)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    pub fn median(&self) -> f64 {
        let values = &self.0;
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    /// The geometric mean and its 95% confidence interval: the mean of the logarithms
    /// plus or minus Student's t times their standard error, taken back by `exp`. Ratios
    /// of throughputs multiply, so their logarithms are what averages; the interval
    /// says how far the run's host noise leaves the mean uncertain.
    pub fn geometric_mean_interval(&self) -> Option<(f64, f64, f64)> {
        let n = self.0.len();
        if n < 2 || !self.0.iter().all(|ratio| ratio.is_finite() && *ratio > 0.0) {
            return None;
        }
        let logs: Vec<f64> = self.0.iter().map(|ratio| ratio.ln()).collect();
        let mean = logs.iter().sum::<f64>() / n as f64;
        let variance = logs.iter().map(|log| (log - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half_width = student_t_95(n - 1) * (variance / n as f64).sqrt();
        Some((
            mean.exp(),
            (mean - half_width).exp(),
            (mean + half_width).exp(),
        ))
    }
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom (from the
/// table up to 30; above, the value at the bracket's lower end, which errs wide).
fn student_t_95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        31..=40 => 2.042,
        41..=60 => 2.021,
        61..=120 => 2.000,
        _ => 1.980,
    }
}

impl std::fmt::Display for Ratios {
    /// `0.97` for one round; `0.97 (0.95–0.99 over 3 rounds)` for several; from five
    /// rounds on also `; geometric mean 0.98, 95% CI 0.96–1.00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}", self.median())?;
        if let (Some(low), Some(high)) = (self.0.first(), self.0.last()) {
            if self.0.len() > 1 {
                write!(f, " ({low:.2}–{high:.2} over {} rounds", self.0.len())?;
                match self.geometric_mean_interval() {
                    Some((mean, low, high)) if self.0.len() >= 5 => {
                        write!(f, "; geometric mean {mean:.3}, 95% CI {low:.3}–{high:.3})")?
                    }
                    _ => write!(f, ")")?,
                }
            }
        }
        Ok(())
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

fn micros(duration: Option<Duration>) -> String {
    match duration {
        Some(duration) => format!("{:.1} µs", duration.as_secs_f64() * 1e6),
        None => "—".into(),
    }
}

/// Nearest-rank percentile of signed microseconds.
pub fn percentile(values: &[i64], p: f64) -> i64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    fn in_round(&self, case: usize, round: usize, route: Route) -> Option<&LoadResult> {
        self.measurements
            .iter()
            .find(|m| m.case == case && m.round == round && m.route == route)
            .map(|m| &m.result)
    }

    /// The run of its round with the median throughput: the one the tables show.
    fn find(&self, case: usize, route: Route) -> Option<&LoadResult> {
        let mut runs: Vec<&LoadResult> = (0..self.rounds)
            .filter_map(|round| self.in_round(case, round, route))
            .collect();
        runs.sort_by(|a, b| a.requests_per_second().total_cmp(&b.requests_per_second()));
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    /// Per case, `ratio` of two routes' runs taken in the same round (minutes apart at
    /// most, under the same machine conditions): every round's value, sorted.
    fn per_round(
        &self,
        case: usize,
        numerator: Route,
        denominator: Route,
        ratio: impl Fn(&LoadResult, &LoadResult) -> Option<f64>,
    ) -> Ratios {
        let mut values: Vec<f64> = (0..self.rounds)
            .filter_map(|round| {
                ratio(
                    self.in_round(case, round, numerator)?,
                    self.in_round(case, round, denominator)?,
                )
            })
            .collect();
        values.sort_by(f64::total_cmp);
        Ratios(values)
    }

    /// Per case: pathgate's throughput divided by `peer`'s (HAProxy's target: at least
    /// 1), and pathgate's CPU per request divided by the peer's.
    pub fn pathgate_vs(&self, peer: Route) -> Vec<(&'static str, Ratios, Ratios)> {
        (0..self.cases.len())
            .map(|case| {
                (
                    self.cases[case].title,
                    self.per_round(case, Route::Pathgate, peer, throughput_ratio),
                    self.per_round(case, Route::Pathgate, peer, |p, h| {
                        Some(
                            p.cpu_per_request(1)?.as_secs_f64()
                                / h.cpu_per_request(1)?.as_secs_f64(),
                        )
                    }),
                )
            })
            .filter(|(_, throughput, _)| !throughput.0.is_empty())
            .collect()
    }

    /// Per case: throughput with the ledger on (`on`: the spool alone, or spool and
    /// webhook) divided by throughput with it off (the same binary and policy; issue
    /// target for spool and webhook: a loss of at most 5 %, i.e. at least 0.95).
    pub fn ledger_cost(&self, on: Route) -> Vec<(&'static str, Ratios)> {
        (0..self.cases.len())
            .map(|case| {
                (
                    self.cases[case].title,
                    self.per_round(case, on, Route::Pathgate, throughput_ratio),
                )
            })
            .filter(|(_, ratios)| !ratios.0.is_empty())
            .collect()
    }

    /// Each case and path where other processes used more than [`NOISY_FOREIGN_SHARE`] of
    /// the machine, with how many of its runs did: one entry per path, not one per round.
    fn noisy_runs(&self) -> Vec<String> {
        let mut counts: Vec<(String, usize, usize)> = Vec::new();
        for m in &self.measurements {
            let label = format!("{} via {}", self.cases[m.case].title, m.route.label());
            let machine = m.result.elapsed.as_secs_f64() * self.cores as f64;
            let noisy = m.result.cpu.foreign.as_secs_f64() / machine > NOISY_FOREIGN_SHARE;
            match counts.iter_mut().find(|(known, ..)| *known == label) {
                Some((_, hits, runs)) => {
                    *hits += usize::from(noisy);
                    *runs += 1;
                }
                None => counts.push((label, usize::from(noisy), 1)),
            }
        }
        counts
            .into_iter()
            .filter(|(_, hits, _)| *hits > 0)
            .map(|(label, hits, runs)| format!("{label} ({hits} of {runs} runs)"))
            .collect()
    }

    /// Per case: this checkout's pathgate over the baseline build, throughput (1 = no
    /// change; below 1 a regression).
    pub fn against_baseline(&self) -> Vec<(&'static str, Ratios)> {
        (0..self.cases.len())
            .map(|case| {
                (
                    self.cases[case].title,
                    self.per_round(case, Route::Pathgate, Route::Baseline, throughput_ratio),
                )
            })
            .filter(|(_, ratios)| !ratios.0.is_empty())
            .collect()
    }

    /// `pathgate's throughput ratio over <name>: ...; pathgate's CPU per request over
    /// <name>: ...`, when `peer` was measured.
    fn comparison_line(&self, out: &mut String, peer: Route, name: &str) {
        let comparison = self.pathgate_vs(peer);
        if comparison.is_empty() {
            return;
        }
        let joined = |pick: &dyn Fn(&Ratios, &Ratios) -> String| {
            comparison
                .iter()
                .map(|(title, throughput, cpu)| format!("{title} {}", pick(throughput, cpu)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "pathgate's throughput ratio over {name}: {}; pathgate's CPU per request over {}: {}\n",
            joined(&|throughput, _| throughput.to_string()),
            name.split(" (").next().unwrap_or(name),
            joined(&|_, cpu| cpu.to_string()),
        );
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(out, "### Run of {}\n", self.started);
        let _ = writeln!(out, "- machine: {}", self.machine);
        let _ = writeln!(out, "- tools: {}", self.tools);
        let _ = writeln!(
            out,
            "- load: wrk, {} threads, {} connections, HTTP/1.1 keep-alive over TLS, {} s warm-up then {} s measured per path, paths one after another, {} round(s) per case (A B C, then C B A, alternating); tables show each path's median-throughput run, ratios are the median over rounds of ratios taken within a round; wrk, the upstream and the proxy share the cores (nothing pinned)\n",
            s.threads,
            s.connections,
            s.warmup.as_secs(),
            s.duration.as_secs(),
            self.rounds
        );
        for (index, case) in self.cases.iter().enumerate() {
            let _ = writeln!(
                out,
                "#### {} (`GET {}`, {} B body)\n",
                case.title, case.path_and_query, case.body_bytes
            );
            let _ = writeln!(
                out,
                "| path | req/s | p50 | p99 | throughput / direct | p99 / direct | proxy CPU / req | upstream CPU / req | wrk CPU / req | foreign CPU | errors |"
            );
            let _ = writeln!(
                out,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let Some(direct) = self.find(index, Route::Direct) else {
                continue;
            };
            for route in Route::ALL {
                let Some(result) = self.find(index, route) else {
                    continue;
                };
                let machine = result.elapsed.as_secs_f64() * self.cores as f64;
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {:.3} | {:.2} | {} | {} | {} | {:.0}% | {} |",
                    route.label(),
                    result.requests_per_second(),
                    millis(result.p50),
                    millis(result.p99),
                    result.requests_per_second() / direct.requests_per_second(),
                    result.p99.as_secs_f64() / direct.p99.as_secs_f64(),
                    micros(result.cpu_per_request(1)),
                    micros(result.cpu_per_request(0)),
                    micros(Some(
                        result
                            .cpu
                            .load_generator
                            .div_f64(result.requests.max(1) as f64)
                    )),
                    100.0 * result.cpu.foreign.as_secs_f64() / machine,
                    result.errors
                );
            }
            let _ = writeln!(out);
        }
        let noisy = self.noisy_runs();
        if !noisy.is_empty() {
            let _ = writeln!(
                out,
                "**Noisy**: other processes used more than {:.0}% of the machine during {}; rerun before comparing.\n",
                NOISY_FOREIGN_SHARE * 100.0,
                noisy.join("; ")
            );
        }
        let baseline = self.against_baseline();
        if !baseline.is_empty() {
            let _ = writeln!(
                out,
                "pathgate over the baseline build, throughput (1 = unchanged): {}\n",
                baseline
                    .iter()
                    .map(|(title, ratio)| format!("{title} {ratio}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        for (route, text) in [
            (
                Route::PathgateSpool,
                "Ledger spool only over ledger off, throughput (the writer's share)",
            ),
            (
                Route::PathgateLedger,
                "Ledger on (spool + webhook sink) over ledger off, throughput (target ≥ 0.95)",
            ),
        ] {
            let ledger = self.ledger_cost(route);
            if !ledger.is_empty() {
                let _ = writeln!(
                    out,
                    "{text}: {}\n",
                    ledger
                        .iter()
                        .map(|(title, ratio)| format!("{title} {ratio}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for (peer, name) in [
            (Route::Haproxy, "HAProxy's (target ≥ 1.00)"),
            (Route::KubectlProxy, "kubectl proxy's"),
            (Route::KubeRbacProxy, "kube-rbac-proxy's"),
        ] {
            self.comparison_line(&mut out, peer, name);
        }
        if let Some((delays, warmup)) = &self.watch {
            let _ = writeln!(
                out,
                "#### Watch-event latency (real kube-apiserver, {} ConfigMaps created one by one after {} warm-up)\n",
                delays.direct.after_send.len(),
                warmup
            );
            let _ = writeln!(
                out,
                "| watch | p50 from create sent | p99 from create sent | p50 from create answered | p99 from create answered |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|");
            for (label, watch) in [
                ("direct", &delays.direct),
                ("through pathgate", &delays.through_pathgate),
            ] {
                let _ = writeln!(
                    out,
                    "| {label} | {} µs | {} µs | {} µs | {} µs |",
                    percentile(&watch.after_send, 50.0),
                    percentile(&watch.after_send, 99.0),
                    percentile(&watch.after_answer, 50.0),
                    percentile(&watch.after_answer, 99.0)
                );
            }
            let compare = |direct: &[i64], proxied: &[i64], p: f64| {
                let direct = percentile(direct, p);
                let proxied = percentile(proxied, p);
                let added = proxied - direct;
                if direct > 0 {
                    format!("{:.2} ({added:+} µs)", proxied as f64 / direct as f64)
                } else {
                    format!("{added:+} µs (no ratio: direct ≤ 0)")
                }
            };
            let (d, g) = (&delays.direct, &delays.through_pathgate);
            let _ = writeln!(
                out,
                "\nthrough pathgate / direct, from create sent: p50 {}, p99 {}; from create answered: p50 {}, p99 {}\n",
                compare(&d.after_send, &g.after_send, 50.0),
                compare(&d.after_send, &g.after_send, 99.0),
                compare(&d.after_answer, &g.after_answer, 50.0),
                compare(&d.after_answer, &g.after_answer, 99.0),
            );
        }
        out
    }
}
