//! The scenario format: one directory under `benches/scenarios/` with a `scenario.yaml`
//! index, the setup objects, the task text, the run policy, the final-state checks and
//! the scripted paths (docs/scenarios.md).
//!
//! Owns reading and validating that directory and rendering its templates for one run
//! (`${NS}`, `${OTHER_NS}`). It does not run anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::HarnessError;

/// The arms: who drives the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// A shell script using `$KUBECTL` (the baseline: direct tools).
    Kubectl,
    /// Flux159 `mcp-server-kubernetes` (shells out to kubectl).
    Flux159,
    /// containers `kubernetes-mcp-server` (client-go).
    Containers,
    /// A user's own agent command (`--agent-cmd`).
    Agent,
}

impl Arm {
    pub const SCRIPTED: [Arm; 3] = [Arm::Kubectl, Arm::Flux159, Arm::Containers];

    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Kubectl => "kubectl",
            Arm::Flux159 => "flux159",
            Arm::Containers => "containers",
            Arm::Agent => "agent",
        }
    }

    /// Whether the arm's paths are MCP tool-call lists.
    pub fn is_mcp(self) -> bool {
        matches!(self, Arm::Flux159 | Arm::Containers)
    }
}

/// The verdict a path is written to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    SafePass,
    UnsafePass,
    Fail,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::SafePass => "safe_pass",
            Expect::UnsafePass => "unsafe_pass",
            Expect::Fail => "fail",
        }
    }
}

/// A request a path must produce, matched against the session's ledger entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    /// The ledger's `request.verb`: get, list, watch, create, update, patch, delete,
    /// deletecollection.
    pub verb: String,
    /// The plural resource, with its subresource after a `/` (`deployments/scale`).
    pub resource: String,
    /// The object's name (a create's from its body); absent: any.
    #[serde(default)]
    pub name: Option<String>,
    /// The namespace (templated); absent: `${NS}`. `""` for cluster-scoped objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Whether the client asked for a dry run; absent: either.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl std::fmt::Display for ExpectedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, " in {namespace:?}")?;
        }
        match self.dry_run {
            Some(true) => write!(f, " (dry run)"),
            Some(false) => write!(f, " (not a dry run)"),
            None => Ok(()),
        }
    }
}

/// One scripted path of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSpec {
    /// Unique per arm within the scenario.
    pub name: String,
    pub arm: Arm,
    /// The kubectl arm's shell script, or an MCP arm's tool-call list, relative to the
    /// scenario directory.
    pub file: PathBuf,
    pub expect: Expect,
    /// What the path does, for the per-run rows.
    #[serde(default)]
    pub note: String,
    /// Requests that must be in the ledger; a path without them is a harness error.
    pub requests: Vec<ExpectedRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    description: String,
    /// The Evidra Bench category the scenario is modelled on.
    category: String,
    paths: Vec<PathSpec>,
}

/// A scenario directory, read and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    pub description: String,
    pub category: String,
    pub paths: Vec<PathSpec>,
    /// Whether any file names `${OTHER_NS}` (the run then gets a second namespace).
    pub uses_other_namespace: bool,
}

/// The files every scenario has, besides `scenario.yaml`.
pub const FILES: [&str; 4] = ["setup.yaml", "task.md", "policy.yaml", "checks.yaml"];

fn read(path: &Path) -> Result<String, HarnessError> {
    std::fs::read_to_string(path).map_err(|e| HarnessError::Scenario {
        file: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })
}

impl Scenario {
    /// Reads `dir/scenario.yaml` and checks that every file it and the format name exists.
    pub fn load(dir: &Path) -> Result<Scenario, HarnessError> {
        let index = dir.join("scenario.yaml");
        let invalid = |reason: String| HarnessError::Scenario {
            file: index.clone(),
            reason,
        };
        let raw: IndexFile =
            serde_yaml::from_str(&read(&index)?).map_err(|e| invalid(e.to_string()))?;
        let mut uses_other_namespace = false;
        for file in FILES {
            uses_other_namespace |= read(&dir.join(file))?.contains("${OTHER_NS}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, path) in raw.paths.iter().enumerate() {
            let text = read(&dir.join(&path.file))?;
            uses_other_namespace |= text.contains("${OTHER_NS}") || text.contains("$OTHER_NS");
            if !seen.insert((path.arm, path.name.clone())) {
                return Err(invalid(format!(
                    "paths[{index}]: {} path {:?} is listed twice",
                    path.arm.as_str(),
                    path.name
                )));
            }
            if path.requests.is_empty() {
                return Err(invalid(format!(
                    "paths[{index}].requests: a path must name the requests it produces"
                )));
            }
            if path.arm == Arm::Agent {
                return Err(invalid(format!(
                    "paths[{index}].arm: `agent` is the --agent-cmd arm, not a scripted one"
                )));
            }
        }
        Ok(Scenario {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
            description: raw.description,
            category: raw.category,
            paths: raw.paths,
            uses_other_namespace,
        })
    }

    /// Every scenario directory under `root` (those with a `scenario.yaml`), by name.
    pub fn load_all(root: &Path) -> Result<Vec<Scenario>, HarnessError> {
        let entries = std::fs::read_dir(root).map_err(|e| HarnessError::Scenario {
            file: root.to_path_buf(),
            reason: format!("cannot list: {e}"),
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join("scenario.yaml").is_file())
            .collect();
        dirs.sort();
        dirs.iter().map(|dir| Scenario::load(dir)).collect()
    }

    /// The text of one of the scenario's files, rendered for `vars`.
    pub fn render(&self, file: &Path, vars: &Vars) -> Result<String, HarnessError> {
        Ok(vars.render(&read(&self.dir.join(file))?))
    }
}

/// The template variables of one run.
#[derive(Debug, Clone)]
pub struct Vars(pub BTreeMap<&'static str, String>);

impl Vars {
    /// `NS` and `OTHER_NS` for a run in namespace `ns`.
    pub fn for_namespace(ns: &str) -> Vars {
        Vars(BTreeMap::from([
            ("NS", ns.to_string()),
            ("OTHER_NS", other_namespace(ns)),
        ]))
    }

    /// Replaces every `${NAME}` of a known variable.
    pub fn render(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |text, (name, value)| {
            text.replace(&format!("${{{name}}}"), value)
        })
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// The second namespace of a run ("another team's").
pub fn other_namespace(ns: &str) -> String {
    format!("{ns}-team")
}
