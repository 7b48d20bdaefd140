//! Webhook delivery: one JSON POST per notification over HTTP or HTTPS.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::error::config_error;
use crate::target::sanitize_remote;
use crate::{DeliveryError, Notification, NotifyError, Secret, Target, WebhookConfig};

/// A response body is read (and discarded, so the connection can be reused) only this far.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Posts each notification's JSON to a URL.
///
/// Status codes decide: 2xx delivered; 408, 429 and 5xx retried (honouring a `Retry-After` in
/// seconds); any other 4xx refuses this notification for good; 1xx and 3xx are retried, since
/// they say the URL is wrong rather than the notification (redirects are not followed: they
/// would carry the token elsewhere). Connection, TLS and timeout errors are retried.
///
/// Besides `Content-Type: application/json` each request carries `Idempotency-Key:
/// <event_id>`, and the bearer token and custom header when configured.
pub struct WebhookTarget {
    name: String,
    url: String,
    shown: String,
    agent: ureq::Agent,
    token: Option<Secret>,
    header: Option<(String, Secret)>,
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("token", &self.token)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl WebhookTarget {
    /// Builds the target, reading its token, header and CA files now so that a wrong path
    /// shows at start-up rather than at the first alert.
    pub fn from_config(config: &WebhookConfig) -> Result<WebhookTarget, NotifyError> {
        config.validate()?;
        let context = config.context();
        let token = config
            .token_file
            .as_deref()
            .map(|path| Secret::from_file(path, &context))
            .transpose()?;
        let header = match &config.header {
            None => None,
            Some(h) => {
                let value = match (&h.value, &h.value_file) {
                    (Some(value), _) => value.clone(),
                    (None, Some(path)) => Secret::from_file(path, &context)?,
                    (None, None) => {
                        return Err(config_error(context, "header", "has no value"));
                    }
                };
                Some((h.name.clone(), value))
            }
        };
        let roots = match &config.ca_file {
            None => RootCerts::WebPki,
            Some(path) => {
                let certs = crate::trust::load_ca_file(path, &context)?;
                RootCerts::from(
                    certs
                        .iter()
                        .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
                )
            }
        };
        let timeout = Duration::from_secs(config.timeout_secs);
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            // A proxy from the environment would be a surprise on an appliance, and would
            // route loopback tests through it.
            .proxy(None)
            .timeout_global(Some(timeout))
            .user_agent(concat!("tiervault-notify/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        Ok(WebhookTarget {
            name: config.name.clone(),
            url: config.url.clone(),
            shown: shown_url(&config.url),
            agent: agent_config.into(),
            token,
            header,
        })
    }

    fn retryable(&self, reason: String, retry_after: Option<Duration>) -> DeliveryError {
        DeliveryError::Retryable {
            target: self.describe(),
            reason,
            retry_after,
        }
    }
}

impl Target for WebhookTarget {
    fn describe(&self) -> String {
        format!("webhook {} ({})", self.name, self.shown)
    }

    fn deliver(&mut self, notification: &Notification) -> Result<(), DeliveryError> {
        let body = notification
            .to_json()
            .map_err(|e| DeliveryError::permanent(self.describe(), e.to_string()))?;
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &notification.event_id);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {}", token.expose()));
        }
        if let Some((name, value)) = &self.header {
            request = request.header(name.as_str(), value.expose());
        }
        let mut response = match request.send(&body[..]) {
            Ok(response) => response,
            Err(e) => return Err(self.retryable(describe_error(&e), None)),
        };
        let status = response.status();
        let code = status.as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Drained so the connection can serve the next entry; its content is not used (it
        // could echo what we sent).
        let _ = std::io::copy(
            &mut response.body_mut().as_reader().take(MAX_RESPONSE_BYTES),
            &mut std::io::sink(),
        );
        let reason = format!(
            "HTTP {code} {}",
            sanitize_remote(status.canonical_reason().unwrap_or(""), 64)
        );
        match code {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(self.retryable(reason, retry_after)),
            400..=499 => Err(DeliveryError::permanent(self.describe(), reason)),
            _ => Err(self.retryable(
                format!("{reason}: not a final answer; check the url (redirects are not followed)"),
                None,
            )),
        }
    }
}

/// Checks a webhook URL without ever quoting it (it may hold a secret).
pub(crate) fn check_url(url: &str, context: &str) -> Result<(), NotifyError> {
    let uri = Uri::try_from(url).map_err(|_| config_error(context, "url", "is not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(config_error(
                context,
                "url",
                "must start with http:// or https://",
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(config_error(context, "url", "has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(config_error(
            context,
            "url",
            "must not hold credentials: use token-file or header",
        ));
    }
    if authority.host().is_empty() {
        return Err(config_error(context, "url", "has no host"));
    }
    Ok(())
}

/// The URL as logs show it: scheme, host and port; the path is elided since services such as
/// chat webhooks put their key there.
pub(crate) fn shown_url(url: &str) -> String {
    match Uri::try_from(url) {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("?");
            let host = uri.host().unwrap_or("?");
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if uri.path().len() > 1 || uri.query().is_some() {
                "/…"
            } else {
                "/"
            };
            format!("{scheme}://{host}{port}{path}")
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// A transport error as text, leaving out the variants that quote the URL.
fn describe_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) => "invalid URL".into(),
        ureq::Error::RequireHttpsOnly(_) => "URL is not https".into(),
        ureq::Error::Http(_) => "invalid request header".into(),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_url_keeps_host_and_port_only() {
        assert_eq!(
            shown_url("https://hooks.example/services/T0/B0/SECRETKEY?x=1"),
            "https://hooks.example/…"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(shown_url("http://[::1]:81/a"), "http://[::1]:81/…");
    }

    #[test]
    fn urls_are_checked_without_being_quoted() {
        check_url("https://psa.example/hook", "w").expect("https");
        check_url("http://127.0.0.1:1/", "w").expect("http");
        for bad in [
            "ftp://host/SECRET",
            "https://user:SECRET@host/",
            "not a url SECRET",
            "/relative/SECRET",
        ] {
            let err = check_url(bad, "webhook w").expect_err(bad).to_string();
            assert!(!err.contains("SECRET"), "{err}");
            assert!(err.contains("webhook w"), "{err}");
        }
    }
}
