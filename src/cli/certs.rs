//! `pathgate certs init|client`: flags and the files they write ([`crate::tls`] makes them).

use std::path::PathBuf;

use clap::Subcommand;

use crate::tls::TlsError;

/// `pathgate certs` subcommands.
#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a CA and a serving certificate for localhost, 127.0.0.1, ::1 and --san names.
    Init {
        /// Directory for ca.crt, ca.key, server.crt, server.key.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// An extra subject alternative name (DNS name or IP); repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate signed by the CA in --dir (for impersonate mode or mTLS).
    Client {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The user (certificate CN).
        #[arg(long)]
        user: String,
        /// The group (certificate O); at most one.
        #[arg(long)]
        group: Option<String>,
        /// Output path without extension: writes OUT.crt and OUT.key.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

/// `pathgate certs ...`: writes the files and says which.
pub fn run(command: CertsCommand) -> Result<(), TlsError> {
    match command {
        CertsCommand::Init { dir, sans, force } => {
            let files = crate::tls::init_certs(&dir, &sans, force)?;
            println!(
                "wrote {}, {}, {}, {} (keys mode 0600; never commit them)",
                files.ca_cert.display(),
                files.ca_key.display(),
                files.server_cert.display(),
                files.server_key.display()
            );
        }
        CertsCommand::Client {
            dir,
            user,
            group,
            out,
            force,
        } => {
            let groups: Vec<String> = group.into_iter().collect();
            let (cert, key) = crate::tls::issue_client_cert(&dir, &user, &groups, &out, force)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
}
