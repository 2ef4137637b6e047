//! The path file: the tool calls a scripted agent makes, in order.
//!
//! ```yaml
//! steps:
//! - tool: kubectl_patch
//!   arguments: {resourceType: deployment, name: web, namespace: shop, dryRun: true}
//! ```
//!
//! Templating (the run's namespace) is the harness's: this file is read as it is.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The path: tool calls in order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub steps: Vec<Step>,
}

/// One `tools/call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub tool: String,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// A path file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StepsError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", file.display())]
    Invalid { file: PathBuf, reason: String },
}

impl Steps {
    /// Reads a path file (YAML or JSON); a path without steps is refused.
    pub fn load(file: &Path) -> Result<Steps, StepsError> {
        let text = std::fs::read_to_string(file).map_err(|source| StepsError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| StepsError::Invalid {
            file: file.to_path_buf(),
            reason,
        };
        let steps: Steps = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if steps.steps.is_empty() {
            return Err(invalid("steps: the path calls no tool".into()));
        }
        Ok(steps)
    }

    /// The distinct tools the path calls, in first-call order.
    pub fn tools(&self) -> Vec<&str> {
        let mut tools: Vec<&str> = Vec::new();
        for step in &self.steps {
            if !tools.contains(&step.tool.as_str()) {
                tools.push(&step.tool);
            }
        }
        tools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_lists_its_tools_once_and_refuses_unknown_keys_and_no_steps() {
        let dir = std::env::temp_dir().join(format!("mcpdrive-steps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(
            &good,
            "steps:\n- {tool: a, arguments: {x: 1}}\n- {tool: b}\n- {tool: a}\n",
        )
        .unwrap();
        let steps = Steps::load(&good).unwrap();
        assert_eq!(steps.tools(), ["a", "b"]);
        assert_eq!(steps.steps[0].arguments["x"], 1);
        let typo = dir.join("typo.yaml");
        std::fs::write(&typo, "steps:\n- {tool: a, argument: {}}\n").unwrap();
        let error = Steps::load(&typo).unwrap_err().to_string();
        assert!(
            error.contains("typo.yaml") && error.contains("argument"),
            "{error}"
        );
        let empty = dir.join("empty.yaml");
        std::fs::write(&empty, "steps: []\n").unwrap();
        assert!(Steps::load(&empty)
            .unwrap_err()
            .to_string()
            .contains("calls no tool"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
