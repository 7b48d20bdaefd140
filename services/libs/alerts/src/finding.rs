//! A condition a service's rules found: while it lasts it is an alert in the shared model
//! (class, key, severity); when it is no longer found the alert is cleared. Rules return
//! findings (pure, testable); the service turns them into alerts with [`Finding::to_new`].

use serde::Serialize;

use crate::{clip, AlertError, NewAlert, Severity, MAX_TEXT_LEN};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `health.temperature`, `replication.lag`, ... (the alert class).
    pub class: &'static str,
    /// What it is about: a sensor's name, a disk's serial, a target.
    pub key: String,
    /// 1-10, the seed's scale (10-9 P1, 8-7 P2, 6-5 P3, 4-3 notify, 2-1 record).
    pub severity: u8,
    pub summary: String,
    pub detail: String,
}

impl Finding {
    /// The alert to raise, its texts clipped to what the store accepts.
    pub fn to_new(&self) -> Result<NewAlert, AlertError> {
        Ok(NewAlert {
            class: self.class.into(),
            key: self.key.clone(),
            severity: Severity::try_from(self.severity)?,
            summary: clip(&self.summary, MAX_TEXT_LEN).into(),
            detail: clip(&self.detail, MAX_TEXT_LEN).into(),
        })
    }
}

/// What changed from one assessment to the next: findings to raise (all current ones: the
/// alert store de-duplicates and escalates) and (class, key) pairs no longer found.
pub fn changes<'a>(
    before: &'a [Finding],
    now: &'a [Finding],
) -> (Vec<&'a Finding>, Vec<(&'static str, &'a str)>) {
    let gone = before
        .iter()
        .filter(|b| !now.iter().any(|n| n.class == b.class && n.key == b.key))
        .map(|b| (b.class, b.key.as_str()))
        .collect();
    (now.iter().collect(), gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(class: &'static str, key: &str) -> Finding {
        Finding {
            class,
            key: key.into(),
            severity: 5,
            summary: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn what_is_no_longer_found_is_cleared() {
        let before = [f("a", "1"), f("a", "2"), f("b", "1")];
        let now = [f("a", "2"), f("c", "9")];
        let (raise, clear) = changes(&before, &now);
        assert_eq!(raise.len(), 2);
        assert_eq!(clear, vec![("a", "1"), ("b", "1")]);
    }

    #[test]
    fn a_finding_becomes_an_alert_with_clipped_texts() {
        let mut long = f("disk.failed", "VD1");
        long.summary = "x".repeat(MAX_TEXT_LEN + 10);
        let new = long.to_new().expect("valid");
        assert_eq!(new.summary.len(), MAX_TEXT_LEN);
        assert_eq!(new.severity.get(), 5);
        long.severity = 11;
        assert!(long.to_new().is_err());
    }
}
