//! From the configuration file's `ledger:` section to [`LedgerSettings`].
//!
//! Owns: the mapping of every validated `ledger.*` key (file units: milliseconds, `u32`
//! counts) onto the ledger's own settings (durations, `usize` counts), and the rule that
//! no `ledger.dir` means no ledger.
//!
//! Does not own: parsing, bounds and error messages (`crate::config` validates before
//! anything reaches here, so the mapping cannot fail), or the command-line override of
//! `dir` (`crate::config::Overrides`).

use std::time::Duration;

use super::{LedgerSettings, OnFailure, OtlpSettings, RetrySettings, WebhookSettings};
use crate::config;

impl LedgerSettings {
    /// The ledger the configuration asks for, or `None` when `ledger.dir` is unset: the
    /// spool in `dir` is the ledger, so without it there is none (requests are then only
    /// logged). Sinks and body capture configured without a `dir` are ignored here with a
    /// warning; `config::LedgerSettings::check` refuses them up front.
    pub fn from_config(c: &config::LedgerSettings) -> Option<LedgerSettings> {
        let Some(dir) = &c.dir else {
            if c.stdout
                || c.webhook.is_some()
                || c.otlp.is_some()
                || c.capture_bodies_max_bytes.is_some()
                || c.on_failure == config::OnFailure::FailClosedMutations
            {
                tracing::warn!(
                    "ledger settings given but ledger.dir is not set: the ledger is off and \
                     its sinks, body capture and on_failure are ignored"
                );
            }
            return None;
        };
        Some(LedgerSettings {
            dir: dir.clone(),
            queue_capacity: c.queue_capacity as usize,
            flush_interval: Duration::from_millis(c.flush_interval_ms),
            segment_max_bytes: c.max_segment_bytes,
            spool_max_bytes: c.max_spool_bytes,
            durable_timeout: Duration::from_millis(c.durable_timeout_ms),
            on_failure: match c.on_failure {
                config::OnFailure::FailOpen => OnFailure::FailOpen,
                config::OnFailure::FailClosedMutations => OnFailure::FailClosedMutations,
            },
            // Validation caps the size far below `usize::MAX` on any target.
            body_capture_max_bytes: c
                .capture_bodies_max_bytes
                .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX)),
            stdout: c.stdout,
            webhook: c.webhook.as_ref().map(|w| WebhookSettings {
                url: w.url.clone(),
                ca_file: w.ca_file.clone(),
                batch_max_entries: w.batch_size as usize,
                timeout: Duration::from_millis(w.timeout_ms),
                retry: RetrySettings::default(),
            }),
            otlp: c.otlp.as_ref().map(|o| OtlpSettings {
                endpoint: o.endpoint.clone(),
                ca_file: o.ca_file.clone(),
                spans: o.spans,
                logs: o.logs,
                service_name: o.service_name.clone(),
                batch_max_entries: o.batch_size as usize,
                timeout: Duration::from_millis(o.timeout_ms),
                retry: RetrySettings::default(),
            }),
            pre_images: c.pre_images.enabled.then(|| super::images::ImageSettings {
                limits: super::images::ImageLimits {
                    max_bytes: c.pre_images.max_bytes,
                    max_object_bytes: c.pre_images.max_object_bytes,
                    max_list_items: c.pre_images.max_list_items as usize,
                },
                secret_key_file: c.pre_images.secret_key_file.clone(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn load(yaml: &str) -> Config {
        Config::from_yaml(yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_dir_means_no_ledger() {
        assert!(LedgerSettings::from_config(&load("").ledger).is_none());
        assert!(
            LedgerSettings::from_config(&load("ledger: {queue_capacity: 10}").ledger).is_none()
        );
    }

    #[test]
    fn the_defaults_are_the_ledgers_own() {
        let mapped = LedgerSettings::from_config(&load("ledger: {dir: /spool}").ledger)
            .expect("dir set: ledger on");
        let own = LedgerSettings::new("/spool");
        assert_eq!(mapped.dir, own.dir);
        assert_eq!(mapped.queue_capacity, own.queue_capacity);
        assert_eq!(mapped.flush_interval, own.flush_interval);
        assert_eq!(mapped.segment_max_bytes, own.segment_max_bytes);
        assert_eq!(mapped.spool_max_bytes, own.spool_max_bytes);
        assert_eq!(mapped.durable_timeout, own.durable_timeout);
        assert_eq!(mapped.on_failure, own.on_failure);
        assert_eq!(mapped.body_capture_max_bytes, own.body_capture_max_bytes);
        assert_eq!(mapped.stdout, own.stdout);
        assert!(mapped.webhook.is_none() && own.webhook.is_none());
        assert!(mapped.otlp.is_none() && own.otlp.is_none());
        assert_eq!(mapped.pre_images, own.pre_images);
        assert_eq!(
            mapped.pre_images.map(|p| p.limits),
            Some(super::super::images::ImageLimits::default()),
            "config::defaults and the store's own defaults agree"
        );
    }

    #[test]
    fn pre_images_are_kept_unless_disabled_and_their_keys_are_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("images.key");
        std::fs::write(&key, "0f".repeat(32)).unwrap();
        let yaml = format!(
            "ledger:\n  dir: /spool\n  pre_images:\n    max_bytes: 2097152\n    \
             max_object_bytes: 4096\n    max_list_items: 7\n    secret_key_file: {}\n",
            key.display()
        );
        let images = LedgerSettings::from_config(&load(&yaml).ledger)
            .unwrap()
            .pre_images
            .expect("on by default");
        assert_eq!(images.limits.max_bytes, 2 << 20);
        assert_eq!(images.limits.max_object_bytes, 4096);
        assert_eq!(images.limits.max_list_items, 7);
        assert_eq!(images.secret_key_file, Some(key));
        let off = load("ledger: {dir: /spool, pre_images: {enabled: false}}");
        assert!(LedgerSettings::from_config(&off.ledger)
            .unwrap()
            .pre_images
            .is_none());
    }

    #[test]
    fn sink_defaults_are_the_sinks_own() {
        let config = load(
            "ledger:\n  dir: /spool\n  webhook: {url: 'http://127.0.0.1:9000/hook'}\n  \
             otlp: {endpoint: 'http://127.0.0.1:4318'}\n",
        );
        let mapped = LedgerSettings::from_config(&config.ledger).unwrap();

        let webhook = mapped.webhook.expect("webhook configured");
        let own = WebhookSettings::new(webhook.url.clone());
        assert_eq!(webhook.url, "http://127.0.0.1:9000/hook");
        assert_eq!(webhook.ca_file, own.ca_file);
        assert_eq!(webhook.batch_max_entries, own.batch_max_entries);
        assert_eq!(webhook.timeout, own.timeout);
        assert_eq!(webhook.retry, own.retry);

        let otlp = mapped.otlp.expect("otlp configured");
        let own = OtlpSettings::new(otlp.endpoint.clone());
        assert_eq!(otlp.endpoint.host(), Some("127.0.0.1"));
        assert_eq!(otlp.endpoint.port_u16(), Some(4318));
        assert_eq!(otlp.ca_file, own.ca_file);
        assert_eq!((otlp.spans, otlp.logs), (own.spans, own.logs));
        assert_eq!(otlp.service_name, own.service_name);
        assert_eq!(otlp.batch_max_entries, own.batch_max_entries);
        assert_eq!(otlp.timeout, own.timeout);
        assert_eq!(otlp.retry, own.retry);
    }

    #[test]
    fn every_key_is_mapped() {
        let config = load(
            r#"
ledger:
  dir: /var/lib/pathgate/ledger
  on_failure: fail-closed-mutations
  queue_capacity: 100
  flush_interval_ms: 20
  max_segment_bytes: 1048576
  max_spool_bytes: 8388608
  durable_timeout_ms: 750
  capture_bodies_max_bytes: 4096
  stdout: true
  webhook:
    url: https://hooks.internal:9443/ledger
    ca_file: /etc/pathgate/hooks-ca.pem
    batch_size: 50
    timeout_ms: 2500
  otlp:
    endpoint: https://collector.internal:4318
    ca_file: /etc/pathgate/otel-ca.pem
    batch_size: 64
    timeout_ms: 3000
    spans: false
    logs: true
    service_name: pathgate-prod
"#,
        );
        let s = LedgerSettings::from_config(&config.ledger).unwrap();
        assert_eq!(s.dir, PathBuf::from("/var/lib/pathgate/ledger"));
        assert_eq!(s.on_failure, OnFailure::FailClosedMutations);
        assert_eq!(s.queue_capacity, 100);
        assert_eq!(s.flush_interval, Duration::from_millis(20));
        assert_eq!(s.segment_max_bytes, 1 << 20);
        assert_eq!(s.spool_max_bytes, 8 << 20);
        assert_eq!(s.durable_timeout, Duration::from_millis(750));
        assert_eq!(s.body_capture_max_bytes, Some(4096));
        assert!(s.stdout);

        let webhook = s.webhook.unwrap();
        assert_eq!(webhook.url, "https://hooks.internal:9443/ledger");
        assert_eq!(
            webhook.ca_file,
            Some(PathBuf::from("/etc/pathgate/hooks-ca.pem"))
        );
        assert_eq!(webhook.batch_max_entries, 50);
        assert_eq!(webhook.timeout, Duration::from_millis(2500));

        let otlp = s.otlp.unwrap();
        assert_eq!(otlp.endpoint.scheme_str(), Some("https"));
        assert_eq!(otlp.endpoint.host(), Some("collector.internal"));
        assert_eq!(
            otlp.ca_file,
            Some(PathBuf::from("/etc/pathgate/otel-ca.pem"))
        );
        assert_eq!(otlp.batch_max_entries, 64);
        assert_eq!(otlp.timeout, Duration::from_millis(3000));
        assert!(!otlp.spans);
        assert!(otlp.logs);
        assert_eq!(otlp.service_name, "pathgate-prod");
    }

    #[test]
    fn fail_open_maps_to_fail_open() {
        let s =
            LedgerSettings::from_config(&load("ledger: {dir: /d, on_failure: fail-open}").ledger)
                .unwrap();
        assert_eq!(s.on_failure, OnFailure::FailOpen);
    }

    #[test]
    fn the_command_line_dir_turns_the_ledger_on_and_wins() {
        let flag = crate::config::Overrides {
            ledger_dir: Some("/flag/spool".into()),
            ..Default::default()
        };
        let with_flag = |yaml: &str| {
            Config::from_yaml_with(yaml, Path::new("test.yaml"), &flag)
                .unwrap()
                .effective
        };
        let on = with_flag("ledger: {stdout: true}");
        let s = LedgerSettings::from_config(&on.ledger).expect("--ledger-dir turns it on");
        assert_eq!(s.dir, PathBuf::from("/flag/spool"));
        assert!(s.stdout, "the file's other keys still apply");

        let file_dir = with_flag("ledger: {dir: /file/spool}");
        assert_eq!(
            LedgerSettings::from_config(&file_dir.ledger).unwrap().dir,
            PathBuf::from("/flag/spool")
        );
    }

    #[test]
    fn the_secret_key_file_is_checked_at_start_with_file_key_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("images.key");
        let start = |yaml: &str| {
            Config::from_yaml_with(yaml, Path::new("pathgate.yaml"), &Default::default())
        };
        let yaml = format!(
            "ledger: {{dir: /spool, pre_images: {{secret_key_file: {}}}}}",
            key.display()
        );
        for (contents, expected) in [
            (None, "cannot be read"),
            (Some("not a key"), "holds 9 characters"),
            (Some(&*"g".repeat(64)), "not hexadecimal"),
        ] {
            if let Some(contents) = contents {
                std::fs::write(&key, contents).unwrap();
            }
            let error = start(&yaml).unwrap_err();
            let ConfigError::Invalid {
                file,
                key: name,
                reason,
                ..
            } = &error
            else {
                panic!("{error}");
            };
            assert_eq!(file, Path::new("pathgate.yaml"));
            assert_eq!(name, "ledger.pre_images.secret_key_file");
            assert!(reason.contains(expected), "{reason}");
            assert!(reason.contains(&key.display().to_string()), "{reason}");
        }
        std::fs::write(&key, format!("{}\n", "a0".repeat(32))).unwrap();
        start(&yaml).expect("a good key loads");
        let disabled = format!(
            "ledger: {{dir: /spool, pre_images: {{enabled: false, secret_key_file: {}}}}}",
            dir.path().join("absent").display()
        );
        start(&disabled).expect("no store, no key read");
        let no_dir = format!(
            "ledger: {{pre_images: {{secret_key_file: {}}}}}",
            key.display()
        );
        let error = start(&no_dir).unwrap_err();
        assert_eq!(error.key(), Some("ledger.pre_images.secret_key_file"));
        assert!(error.to_string().contains("needs a ledger"), "{error}");
    }

    #[test]
    fn an_object_bound_past_the_store_bound_is_refused() {
        let error = Config::from_yaml(
            "ledger: {pre_images: {max_bytes: 1048576, max_object_bytes: 2097152}}",
            Path::new("test.yaml"),
        )
        .unwrap_err();
        assert_eq!(error.key(), Some("ledger.pre_images.max_object_bytes"));
        assert!(error.to_string().contains("larger than the whole store"));
    }

    #[test]
    fn removed_keys_are_refused_with_the_valid_ones() {
        for removed in ["fsync: true", "jsonl: /var/log/ledger.jsonl"] {
            let yaml = format!("ledger:\n  dir: /d\n  {removed}\n");
            let error = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap_err();
            let ConfigError::Invalid { key, reason, .. } = &error else {
                panic!("{error}");
            };
            let name = removed.split(':').next().unwrap();
            assert_eq!(key, &format!("ledger.{name}"));
            assert!(
                reason.contains(
                    "valid keys are: dir, on_failure, queue_capacity, flush_interval_ms, \
                     max_segment_bytes, max_spool_bytes, durable_timeout_ms, \
                     capture_bodies_max_bytes, stdout, webhook, otlp, pre_images"
                ),
                "{reason}"
            );
        }
    }
}
