//! The configuration of notification targets, spools and the metrics listener, as a service's
//! TOML file spells it (kebab-case keys). Secrets are never inline except a custom header's
//! `value`: tokens and passwords are named by file, so the configuration itself can be shown
//! in a support bundle.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use tiervault_alerts::Severity;

use crate::error::config_error;
use crate::{Backoff, NotifyError, Secret, SpoolCaps};

/// Where notifications go, and where they wait until they went.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotifyConfig {
    /// The service's notification state: the sequence file and one spool directory per
    /// target, named after it. One service per directory.
    pub spool_dir: PathBuf,
    /// Caps of each target's spool.
    #[serde(default)]
    pub spool: SpoolCaps,
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    #[serde(default)]
    pub smtp: Vec<SmtpConfig>,
}

impl NotifyConfig {
    /// Checks every target and that target names are unique.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.spool.validate("notify.spool")?;
        let mut names = BTreeSet::new();
        let all = self
            .webhook
            .iter()
            .map(|w| &w.name)
            .chain(self.smtp.iter().map(|s| &s.name));
        for name in all {
            check_target_name(name)?;
            if !names.insert(name.as_str()) {
                return Err(config_error(
                    format!("target {name:?}"),
                    "name",
                    "is used by two targets: each needs its own spool",
                ));
            }
        }
        for webhook in &self.webhook {
            webhook.validate()?;
        }
        for smtp in &self.smtp {
            smtp.validate()?;
        }
        Ok(())
    }
}

/// Names that are files of the spool directory itself.
const RESERVED_NAMES: [&str; 2] = ["sequence", crate::spool::SET_ASIDE_DIR];

/// A target's name is its spool directory's name: 1–64 of `a-z 0-9 _ -`, starting with a
/// letter or digit.
pub(crate) fn check_target_name(name: &str) -> Result<(), NotifyError> {
    let context = format!("target {name:?}");
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        return Err(config_error(
            context,
            "name",
            "must be 1 to 64 of a-z 0-9 _ -, starting with a letter or digit",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(config_error(context, "name", "is reserved"));
    }
    Ok(())
}

/// A JSON POST per notification. Its `Debug` shows the URL as logs do (scheme, host, port).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    /// `http://` or `https://`. Its path may hold a secret (many services put their key
    /// there), so logs and errors show only the scheme, host and port.
    pub url: String,
    /// A file holding a bearer token, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// One custom header, for receivers that authenticate by an API-key header.
    #[serde(default)]
    pub header: Option<HeaderConfig>,
    /// Alerts below this severity are not sent here. Default 3: everything but record-only.
    #[serde(default = "default_webhook_min_severity")]
    pub min_severity: Severity,
    /// Bound on one delivery (connect, send, response), seconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub backoff: Backoff,
    /// Trust only the CAs in this PEM file instead of Mozilla's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_webhook_min_severity() -> Severity {
    Severity::try_from(3).unwrap_or(Severity::MIN)
}

fn default_webhook_timeout() -> u64 {
    10
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &crate::webhook::shown_url(&self.url))
            .field("token_file", &self.token_file)
            .field("header", &self.header)
            .field("min_severity", &self.min_severity)
            .field("timeout_secs", &self.timeout_secs)
            .field("backoff", &self.backoff)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl WebhookConfig {
    pub(crate) fn context(&self) -> String {
        format!("webhook {}", self.name)
    }

    pub fn validate(&self) -> Result<(), NotifyError> {
        let context = self.context();
        check_target_name(&self.name)?;
        crate::webhook::check_url(&self.url, &context)?;
        check_timeout(self.timeout_secs, &context)?;
        self.backoff.validate(&context)?;
        if let Some(header) = &self.header {
            header.validate(&context)?;
        }
        Ok(())
    }
}

/// A custom header whose value is a secret: given inline or, better, by file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeaderConfig {
    pub name: String,
    #[serde(default)]
    pub value: Option<Secret>,
    #[serde(default)]
    pub value_file: Option<PathBuf>,
}

impl HeaderConfig {
    fn validate(&self, context: &str) -> Result<(), NotifyError> {
        let token = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(config_error(
                context,
                "header.name",
                format!("{:?} is not an HTTP header name", self.name),
            ));
        }
        let reserved = ["authorization", "content-type", "content-length", "host"];
        if reserved.contains(&self.name.to_ascii_lowercase().as_str()) {
            return Err(config_error(
                context,
                "header.name",
                format!("{} is set by the webhook itself", self.name),
            ));
        }
        match (&self.value, &self.value_file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(config_error(
                context,
                "header",
                "needs exactly one of value and value-file",
            )),
        }
    }
}

/// Mail through an SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SmtpConfig {
    pub name: String,
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Upgrade to TLS before anything else is sent, and fail rather than continue in clear
    /// when the server does not offer it.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// The envelope and header sender.
    pub from: String,
    /// At least one recipient.
    pub to: Vec<String>,
    /// Log in as this user (AUTH PLAIN or LOGIN, over TLS only).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Alerts below this severity are not mailed. Default 5: P1 to P3.
    #[serde(default = "default_smtp_min_severity")]
    pub min_severity: Severity,
    /// Bound on each network step, seconds.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub backoff: Backoff,
    /// Trust only the CAs in this PEM file for STARTTLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name given in EHLO; defaults to the appliance's host name.
    #[serde(default)]
    pub helo: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_true() -> bool {
    true
}

fn default_smtp_min_severity() -> Severity {
    Severity::try_from(5).unwrap_or(Severity::MIN)
}

fn default_smtp_timeout() -> u64 {
    30
}

impl SmtpConfig {
    pub(crate) fn context(&self) -> String {
        format!("smtp {}", self.name)
    }

    pub fn validate(&self) -> Result<(), NotifyError> {
        let context = self.context();
        check_target_name(&self.name)?;
        if self.host.is_empty() || self.host.chars().any(|c| c.is_control() || c == ' ') {
            return Err(config_error(
                context,
                "host",
                "must be a host name or address",
            ));
        }
        if self.port == 0 {
            return Err(config_error(context, "port", "must not be 0"));
        }
        crate::mail::check_address(&self.from).map_err(|r| config_error(&context, "from", r))?;
        if self.to.is_empty() {
            return Err(config_error(context, "to", "needs at least one recipient"));
        }
        for to in &self.to {
            crate::mail::check_address(to).map_err(|r| config_error(&context, "to", r))?;
        }
        match (&self.user, &self.password_file) {
            (Some(_), None) => {
                return Err(config_error(
                    context,
                    "password-file",
                    "is needed with user",
                ))
            }
            (None, Some(_)) => {
                return Err(config_error(
                    context,
                    "user",
                    "is needed with password-file",
                ))
            }
            (Some(user), Some(_)) => {
                if user.is_empty() || user.chars().any(char::is_control) {
                    return Err(config_error(context, "user", "must be one non-empty line"));
                }
                if !self.starttls {
                    return Err(config_error(
                        context,
                        "starttls",
                        "must be true when logging in: the password would cross the network in clear",
                    ));
                }
            }
            (None, None) => {}
        }
        if let Some(helo) = &self.helo {
            if helo.is_empty() || helo.chars().any(|c| c.is_control() || c == ' ') {
                return Err(config_error(context, "helo", "must be one word"));
            }
        }
        check_timeout(self.timeout_secs, &context)?;
        self.backoff.validate(&context)
    }
}

fn check_timeout(secs: u64, context: &str) -> Result<(), NotifyError> {
    if !(1..=600).contains(&secs) {
        return Err(config_error(
            context,
            "timeout-secs",
            "must be 1 to 600: a hung receiver must not stall the service",
        ));
    }
    Ok(())
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Default 127.0.0.1:9465: the MSP scrapes it through the management tunnel, which ends on
    /// the appliance, so nothing on the customer's LAN needs to reach it.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Must be set to listen on anything but loopback: a deliberate act, since the metrics
    /// show the customer's infrastructure to whoever can reach the port.
    #[serde(default)]
    pub allow_remote: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9465))
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_listen(),
            allow_remote: false,
        }
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), NotifyError> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(config_error(
                "metrics",
                "listen",
                format!(
                    "{} is not a loopback address; set allow-remote = true to expose metrics beyond the appliance",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        if value.is_empty() || value.chars().any(char::is_control) {
            // The message must not quote the value.
            return Err(serde::de::Error::custom(
                "a secret must be one non-empty line",
            ));
        }
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
spool-dir = "/var/lib/tiervault/poold/notify"

[spool]
max-entries = 5000

[[webhook]]
name = "psa"
url = "https://psa.msp.example/hooks/tiervault"
token-file = "/etc/tiervault/secrets/psa-token"
header = { name = "X-Api-Key", value = "inline-header-secret" }
min-severity = 5
backoff = { initial-secs = 5, max-secs = 600 }

[[smtp]]
name = "noc-mail"
host = "smtp.msp.example"
from = "vault-7@msp.example"
to = ["noc@msp.example", "oncall@msp.example"]
user = "vault-7"
password-file = "/etc/tiervault/secrets/smtp-password"
"#;

    #[test]
    fn parses_the_documented_example_with_defaults() {
        let config: NotifyConfig = toml::from_str(EXAMPLE).expect("parse");
        config.validate().expect("valid");
        assert_eq!(config.spool.max_entries, 5000);
        assert_eq!(config.spool.max_bytes, 64 << 20);
        let webhook = &config.webhook[0];
        assert_eq!(webhook.min_severity.get(), 5);
        assert_eq!(webhook.timeout_secs, 10);
        assert_eq!(webhook.backoff.initial_secs, 5);
        let smtp = &config.smtp[0];
        assert_eq!(smtp.port, 587);
        assert!(smtp.starttls);
        assert_eq!(smtp.min_severity.get(), 5);
        assert_eq!(smtp.backoff, Backoff::default());
        let shown = format!("{config:?}");
        assert!(!shown.contains("inline-header-secret"), "{shown}");
    }

    #[test]
    fn rejects_what_would_break_or_leak() {
        let base: NotifyConfig = toml::from_str(EXAMPLE).expect("parse");
        let mut dup = base.clone();
        dup.smtp[0].name = "psa".into();
        assert!(dup
            .validate()
            .expect_err("dup")
            .to_string()
            .contains("two targets"));
        let mut clear = base.clone();
        clear.smtp[0].starttls = false;
        let err = clear.validate().expect_err("clear").to_string();
        assert!(err.contains("starttls"), "{err}");
        for bad in ["sequence", "Has-Caps", "", "-x", "a/b"] {
            let mut named = base.clone();
            named.webhook[0].name = bad.into();
            assert!(named.validate().is_err(), "{bad:?}");
        }
        let mut url = base.clone();
        url.webhook[0].url = "ftp://x/".into();
        assert!(url.validate().is_err());
        let mut header = base.clone();
        if let Some(h) = header.webhook[0].header.as_mut() {
            h.name = "Authorization".into();
        }
        assert!(header.validate().is_err());
        let unknown = format!("{EXAMPLE}\n[extra]\n");
        assert!(toml::from_str::<NotifyConfig>(&unknown).is_err());
        let err = toml::from_str::<NotifyConfig>(
            &EXAMPLE.replace("min-severity = 5", "min-severity = 11"),
        )
        .expect_err("severity 11");
        assert!(err.to_string().contains("11"), "{err}");
    }

    #[test]
    fn metrics_listen_on_loopback_unless_told_otherwise() {
        let config: MetricsConfig = toml::from_str("").expect("parse");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9465");
        config.validate().expect("loopback");
        let open: MetricsConfig = toml::from_str("listen = \"0.0.0.0:9465\"").expect("parse");
        assert!(open.validate().is_err());
        let allowed: MetricsConfig =
            toml::from_str("listen = \"0.0.0.0:9465\"\nallow-remote = true").expect("parse");
        allowed.validate().expect("allowed");
        let v6: MetricsConfig = toml::from_str("listen = \"[::1]:9465\"").expect("parse");
        v6.validate().expect("v6 loopback");
    }
}
