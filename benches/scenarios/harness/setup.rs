//! A run's namespaces and setup objects, created directly on the apiserver with the
//! admin kubeconfig (never through pathgate: the setup is not the agent's path).
//!
//! The cluster runs no controllers, so what a controller would create is in the setup:
//! a ReplicaSet, and its Pods with a controller ownerReference to it. A Pod names its
//! owner's uid as `${uid:replicasets/NAME}`, resolved in `${NS}` once the documents before
//! it exist (docs/scenarios.md).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::scenario::Vars;
use super::{HarnessError, Tools};

/// Runs the admin kubectl with `args` and optional stdin; returns stdout.
pub fn admin_kubectl(
    tools: &Tools,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, HarnessError> {
    let command = format!("kubectl {}", args.join(" "));
    let failed = |reason: String| HarnessError::Command {
        command: command.clone(),
        reason,
    };
    let mut child = Command::new(&tools.kubectl)
        .arg("--kubeconfig")
        .arg(&tools.admin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Creates the run's namespace (and the second one when the scenario uses it).
pub fn create_namespaces(tools: &Tools, vars: &Vars, other: bool) -> Result<(), HarnessError> {
    admin_kubectl(tools, &["create", "namespace", vars.get("NS")], None)?;
    if other {
        admin_kubectl(tools, &["create", "namespace", vars.get("OTHER_NS")], None)?;
    }
    Ok(())
}

/// Creates the rendered setup documents in order, in as few kubectl calls as the
/// `${uid:...}` references allow.
pub fn create_objects(tools: &Tools, rendered: &str, ns: &str) -> Result<(), HarnessError> {
    let mut batch = String::new();
    for document in split_documents(rendered) {
        if document.contains("${uid:") {
            flush(tools, &mut batch)?;
            batch = resolve_uids(tools, &document, ns)?;
            flush(tools, &mut batch)?;
        } else {
            batch.push_str("---\n");
            batch.push_str(&document);
        }
    }
    flush(tools, &mut batch)
}

fn flush(tools: &Tools, batch: &mut String) -> Result<(), HarnessError> {
    if !batch.trim().trim_start_matches("---").trim().is_empty() {
        admin_kubectl(tools, &["create", "-f", "-"], Some(batch))?;
    }
    batch.clear();
    Ok(())
}

/// The documents of a multi-document YAML text (split on `---` lines), empty ones dropped.
pub fn split_documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else {
            let current = documents.last_mut().expect("one document at least");
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Replaces each `${uid:RESOURCE/NAME}` with that object's uid in `ns`.
fn resolve_uids(tools: &Tools, document: &str, ns: &str) -> Result<String, HarnessError> {
    let mut text = document.to_string();
    while let Some(start) = text.find("${uid:") {
        let end =
            text[start..]
                .find('}')
                .map(|e| start + e)
                .ok_or_else(|| HarnessError::Command {
                    command: "setup".into(),
                    reason: format!("unterminated ${{uid:...}} in {document}"),
                })?;
        let reference = text[start + 6..end].to_string();
        let (resource, name) = reference.split_once('/').unwrap_or((&reference, ""));
        let uid = admin_kubectl(
            tools,
            &[
                "-n",
                ns,
                "get",
                resource,
                name,
                "-o",
                "jsonpath={.metadata.uid}",
            ],
            None,
        )?;
        text.replace_range(start..=end, uid.trim());
    }
    Ok(text)
}

/// Writes `text` to `dir/name`, returning the path.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf, HarnessError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(super::io_error(&path))?;
    Ok(path)
}
