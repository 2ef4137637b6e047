//! `pathgate kubeconfig`: flags and their translation into
//! [`crate::agent_kubeconfig::AgentKubeconfig`].

use std::path::PathBuf;

use clap::Args;

use crate::agent_kubeconfig::{AgentKubeconfig, KubeconfigError};

/// `pathgate kubeconfig` flags.
#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    /// pathgate's URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    server: String,
    /// Session id, carried as the /s/<id> server path prefix.
    #[arg(long)]
    session: Option<String>,
    /// pathgate's CA certificate, embedded in the kubeconfig.
    #[arg(long, default_value = "certs/ca.crt")]
    ca: PathBuf,
    /// Bearer token (passthrough mode: the agent's own cluster token). Without a token,
    /// token file or client certificate, the kubeconfig carries the placeholder token
    /// `pathgate-sidecar-placeholder`, which sidecar mode drops (kubectl never prompts).
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Token file the client re-reads (passthrough mode).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Client certificate (impersonate mode, or sidecar with --client-ca).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client key.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Default namespace of the context.
    #[arg(long)]
    namespace: Option<String>,
    /// Where to write the kubeconfig (mode 0600).
    #[arg(long)]
    out: PathBuf,
}

/// `pathgate kubeconfig`: writes the file and says where.
pub fn run(args: KubeconfigArgs) -> Result<(), KubeconfigError> {
    let config = AgentKubeconfig {
        server: args.server,
        session: args.session,
        ca: args.ca,
        token: args.token,
        token_file: args.token_file,
        client_cert: args.client_cert,
        client_key: args.client_key,
        namespace: args.namespace,
    };
    config.write(&args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
