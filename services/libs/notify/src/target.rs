//! A place notifications are delivered to, and how a delivery fails.

use std::time::Duration;

use crate::Notification;

/// A receiver of notifications: a webhook, a mail relay, or a test's recorder.
///
/// `deliver` blocks until the receiver took the notification or failed; implementations bound
/// that time with their own timeouts, since the dispatcher's pump runs in a service's loop.
pub trait Target: Send {
    /// How logs and errors name the target, without secrets: `webhook msp (https://host/…)`.
    fn describe(&self) -> String;

    /// Hands `notification` to the receiver. `Ok` only once the receiver confirmed it.
    fn deliver(&mut self, notification: &Notification) -> Result<(), DeliveryError>;
}

/// Why a delivery did not happen. The variant decides what the dispatcher does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver may take it later (down, overloaded, a timeout, a 5xx, a 4xx SMTP reply):
    /// the entry stays at the head of its spool and is tried again after a backoff.
    #[error("{target}: {reason} (will retry)")]
    Retryable {
        target: String,
        reason: String,
        /// How long the receiver asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// The receiver refused this notification and would refuse it again (a 4xx, a 5xx SMTP
    /// reply): the entry is set aside so that the ones behind it are not blocked forever.
    #[error("{target}: {reason} (set aside, not retried)")]
    Permanent { target: String, reason: String },
}

impl DeliveryError {
    pub fn retryable(target: impl Into<String>, reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Retryable {
            target: target.into(),
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(target: impl Into<String>, reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            target: target.into(),
            reason: reason.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable { .. })
    }
}

/// Replaces control characters in text that came from a remote server (a reply line, a
/// reason phrase) before it enters an error or a log line, where it could forge lines.
pub(crate) fn sanitize_remote(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
