//! The command line: each subcommand's clap arguments and the code that turns them into
//! the library's options and runs it. `main.rs` only declares the subcommands and
//! dispatches to [`serve::run`], [`certs::run`], ...
//!
//! Owns: flag names, help texts, and how flags combine with the configuration file
//! ([`ServeArgs::gateway`]). Does not own: what a configuration key accepts
//! ([`crate::config`]), nor what a subcommand does once its options are known (each
//! command's own module).

pub mod autopsy;
pub mod certs;
pub mod kubeconfig;
pub mod serve;
pub mod tail;
pub mod undo;

pub use autopsy::AutopsyArgs;
pub use certs::CertsCommand;
pub use kubeconfig::KubeconfigArgs;
pub use serve::{ConnectionArgs, Gateway, GatewayError, ServeArgs};
pub use tail::TailArgs;
pub use undo::UndoArgs;

/// Logs go to stderr through a background writer: a slow terminal or pipe never blocks
/// a request (lines beyond its buffer are dropped, not waited for). Keep the guard alive:
/// dropping it flushes what is buffered.
pub fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .init();
    guard
}

/// `pathgate check-config FILE`: prints the effective configuration.
pub fn check_config(file: &std::path::Path) -> Result<(), crate::config::ConfigError> {
    let effective = crate::config::check_config(file)?;
    println!("# {}: valid. Effective configuration:", file.display());
    print!("{effective}");
    Ok(())
}

/// `pathgate rules`: the catalog, one rule a line.
pub fn rules() {
    println!("{:<6} {:<28} {:<8} summary", "id", "name", "enforce");
    for rule in crate::policy::catalog() {
        println!(
            "{:<6} {:<28} {:<8} {}",
            rule.id, rule.name, rule.default_action, rule.summary
        );
    }
}
