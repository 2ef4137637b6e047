//! Running runs: each scenario x path (x arm) x mode is a job; jobs run two at a time (the
//! development machine has two cores), each in its own namespace and session, and each
//! ends judged or with a harness error — never silently dropped.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pathgate::autopsy::Run;

use super::agent::{self, AgentFiles, Driver};
use super::gate::{pathgate_run, Mode, RunRequest, RunSummary};
use super::judge::{judge, Judged};
use super::scenario::{Arm, Expect, PathSpec, Scenario, Vars};
use super::{setup, HarnessError, Tools};

/// One run to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub scenario: Arc<Scenario>,
    /// `None`: the `--agent-cmd` arm.
    pub path: Option<PathSpec>,
    pub agent_cmd: Option<String>,
    pub mode: Mode,
}

impl Job {
    pub fn arm(&self) -> Arm {
        self.path.as_ref().map_or(Arm::Agent, |p| p.arm)
    }

    pub fn path_name(&self) -> &str {
        self.path.as_ref().map_or("agent-cmd", |p| p.name.as_str())
    }

    pub fn expect(&self) -> Option<Expect> {
        self.path.as_ref().map(|p| p.expect)
    }

    /// The run's id: its directory name and session id.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.arm().as_str(),
            self.scenario.name,
            self.path_name(),
            self.mode.as_str()
        )
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunResult {
    pub job: Job,
    pub session: String,
    pub namespace: String,
    pub dir: PathBuf,
    pub outcome: Result<Judgement, HarnessError>,
}

/// A judged run.
#[derive(Debug)]
pub struct Judgement {
    pub summary: RunSummary,
    pub run: Run,
    pub requests: usize,
    /// What the agent saw of refusals and warnings.
    pub agent_saw: Vec<String>,
}

impl RunResult {
    /// Whether the verdict is the one the path was written for (`None`: no expectation,
    /// or an enforce run: paths are written for what happens when nothing is blocked).
    pub fn as_expected(&self) -> Option<bool> {
        if self.job.mode != Mode::Observe {
            return None;
        }
        let judged = self.outcome.as_ref().ok()?;
        let expect = self.job.expect()?;
        Some(judged.run.triage.as_str() == expect.as_str())
    }
}

/// Every scripted path of `scenarios` in `mode`, restricted to `arms` (empty: all).
pub fn scripted_jobs(scenarios: &[Arc<Scenario>], arms: &[Arm], mode: Mode) -> Vec<Job> {
    scenarios
        .iter()
        .flat_map(|scenario| {
            scenario.paths.iter().map(move |path| Job {
                scenario: Arc::clone(scenario),
                path: Some(path.clone()),
                agent_cmd: None,
                mode,
            })
        })
        .filter(|job| arms.is_empty() || arms.contains(&job.arm()))
        .collect()
}

/// One `--agent-cmd` run per scenario.
pub fn agent_jobs(scenarios: &[Arc<Scenario>], command: &str) -> Vec<Job> {
    scenarios
        .iter()
        .map(|scenario| Job {
            scenario: Arc::clone(scenario),
            path: None,
            agent_cmd: Some(command.to_string()),
            mode: Mode::Observe,
        })
        .collect()
}

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs at once.
    pub parallel: usize,
    /// Where each run's directory is made.
    pub out: PathBuf,
    pub timeout: Duration,
}

/// Runs every job, `settings.parallel` at a time; results in job order.
pub fn run_all(tools: &Tools, jobs: Vec<Job>, settings: &Settings) -> Vec<RunResult> {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::with_capacity(total));
    std::thread::scope(|scope| {
        for _ in 0..settings.parallel.max(1) {
            scope.spawn(|| loop {
                let Some((index, job)) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                let result = run_one(tools, job, settings);
                eprintln!(
                    "scenarios: [{}/{total}] {} -> {}",
                    index + 1,
                    result.session,
                    describe(&result)
                );
                results.lock().expect("results").push((index, result));
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

fn describe(result: &RunResult) -> String {
    match &result.outcome {
        Ok(judged) => format!(
            "{}{}",
            judged.run.triage.as_str(),
            match result.as_expected() {
                Some(false) => format!(
                    " (expected {})",
                    result.job.expect().map_or("", |e| e.as_str())
                ),
                _ => String::new(),
            }
        ),
        Err(error) => format!("harness error: {error}"),
    }
}

/// A namespace name for a run: the scenario's name (shortened) and random hex.
fn namespace_for(scenario: &str) -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the system has randomness");
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = scenario.chars().take(40).collect();
    format!("{}-{suffix}", prefix.trim_end_matches('-'))
}

/// Makes one run: namespaces and setup, the rendered files, `pathgate run`, the judgment.
pub fn run_one(tools: &Tools, job: Job, settings: &Settings) -> RunResult {
    let session = job.id();
    let dir = settings.out.join(&session);
    let namespace = namespace_for(&job.scenario.name);
    let outcome = prepare_dir(&dir)
        .and_then(|()| make_run(tools, &job, &session, &dir, &namespace, settings));
    RunResult {
        job,
        session,
        namespace,
        dir,
        outcome,
    }
}

fn prepare_dir(dir: &Path) -> Result<(), HarnessError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(super::io_error(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(super::io_error(dir))
}

fn make_run(
    tools: &Tools,
    job: &Job,
    session: &str,
    dir: &Path,
    namespace: &str,
    settings: &Settings,
) -> Result<Judgement, HarnessError> {
    let scenario = &job.scenario;
    let vars = Vars::for_namespace(namespace);
    setup::create_namespaces(tools, &vars, scenario.uses_other_namespace)?;
    setup::create_objects(
        tools,
        &scenario.render(Path::new("setup.yaml"), &vars)?,
        namespace,
    )?;
    let policy = setup::write(
        dir,
        "policy.yaml",
        &scenario.render(Path::new("policy.yaml"), &vars)?,
    )?;
    let checks = setup::write(
        dir,
        "checks.yaml",
        &scenario.render(Path::new("checks.yaml"), &vars)?,
    )?;
    let task_file = setup::write(
        dir,
        "task.md",
        &scenario.render(Path::new("task.md"), &vars)?,
    )?;
    let files = AgentFiles::in_dir(dir);
    let script;
    let driver = match (&job.path, &job.agent_cmd) {
        (Some(path), _) => {
            let name = path
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            script = setup::write(
                dir,
                &format!("path-{name}"),
                &scenario.render(&path.file, &vars)?,
            )?;
            Driver::Scripted {
                arm: path.arm,
                file: &script,
            }
        }
        (None, Some(command)) => Driver::AgentCmd(command),
        (None, None) => unreachable!("a job has a path or an agent command"),
    };
    let command = agent::command(tools, &driver, &files, &vars);
    let request = RunRequest {
        session: session.to_string(),
        mode: job.mode,
        policy: policy.clone(),
        checks: checks.clone(),
        task_file,
        dir: dir.to_path_buf(),
        timeout: settings.timeout,
        env: command.env,
        command: command.command,
    };
    let summary = pathgate_run(tools, &request)?;
    let Some(verdict) = summary.verdict.clone() else {
        return Err(HarnessError::NoVerdict(summary.reason.clone()));
    };
    let expected: Vec<_> = job
        .path
        .iter()
        .flat_map(|p| p.requests.iter())
        .map(|r| {
            let mut r = r.clone();
            r.namespace = r.namespace.map(|ns| vars.render(&ns));
            r.name = r.name.map(|name| vars.render(&name));
            r
        })
        .collect();
    let Judged {
        run,
        missing,
        requests,
    } = judge(
        &summary.ledger,
        session,
        &policy,
        &checks,
        &tools.admin,
        &expected,
        namespace,
    )?;
    if !missing.is_empty() {
        return Err(HarnessError::ExpectedRequests(
            missing.iter().map(ToString::to_string).collect(),
        ));
    }
    if run.triage.as_str() != verdict {
        return Err(HarnessError::Disagreement {
            run: verdict,
            autopsy: run.triage.as_str().to_string(),
        });
    }
    let html = pathgate::report::render(
        pathgate::report::Format::Html,
        std::slice::from_ref(&run),
        None,
    );
    setup::write(dir, "report.html", &html)?;
    Ok(Judgement {
        summary,
        requests: requests.len(),
        agent_saw: agent::what_the_agent_saw(&files, 4),
        run,
    })
}
