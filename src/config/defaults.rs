//! Every default of a `server:` or `ledger:` key, in one place: validation, `pathgate serve`
//! and the ledger read them from here, and `docs/config.md`'s tables are checked against
//! them (`config::tests::the_documented_bounds_and_defaults_are_the_codes`). The client
//! connection defaults sit with their bounds ([`super::CONNECTION_BOUNDS`]); the policy's
//! with the policy ([`crate::policy::Policy::default`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::AuthMode;

/// `server.listen`: loopback, so a laptop's pathgate is not reachable from the network.
pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// `server.admin_listen`.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);
/// `server.auth`: pathgate holds no cluster credentials unless told to.
pub const AUTH: AuthMode = AuthMode::Passthrough;
/// `server.tls_cert` (relative to the working directory, where `pathgate certs init`
/// writes it).
pub const TLS_CERT: &str = "certs/server.crt";
/// `server.tls_key`.
pub const TLS_KEY: &str = "certs/server.key";
/// `server.max_body_bytes`: the apiserver's own request body limit (3 MiB).
pub const MAX_BODY_BYTES: u64 = 3 * 1024 * 1024;
/// `server.drain_timeout_seconds`.
pub const DRAIN_TIMEOUT_SECONDS: u64 = 15;
/// `server.workers`: one, as sidecar proxies default to (one agent's traffic; no
/// cross-thread hand-offs). A gateway shared by many agents raises it up to the cores it
/// may use.
pub const WORKERS: usize = 1;
/// Connecting to the apiserver (not configurable).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `ledger.*`: equal to `crate::ledger::LedgerSettings::new`'s (tested there).
pub const QUEUE_CAPACITY: u32 = 8192;
pub const FLUSH_INTERVAL_MS: u64 = 50;
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;
pub const MAX_SPOOL_BYTES: u64 = 1 << 30;
pub const DURABLE_TIMEOUT_MS: u64 = 5_000;
/// `ledger.webhook.*` and `ledger.otlp.*`: equal to `WebhookSettings::new` and
/// `OtlpSettings::new`.
pub const BATCH_SIZE: u32 = 256;
pub const SINK_TIMEOUT_MS: u64 = 10_000;
pub const SERVICE_NAME: &str = "pathgate";
/// `ledger.pre_images.*`: equal to `crate::ledger::images::ImageLimits::default`'s
/// (tested there).
pub const PRE_IMAGES_MAX_BYTES: u64 = 256 << 20;
pub const PRE_IMAGES_MAX_OBJECT_BYTES: u64 = 1 << 20;
pub const PRE_IMAGES_MAX_LIST_ITEMS: u32 = 500;
