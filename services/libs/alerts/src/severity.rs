//! Severities 1..=10 and the priorities they map to.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::AlertError;

/// How bad an alert is, 1 (worth recording) to 10 (page someone now).
///
/// The scale and its mapping to priorities come from the seed's service definition, so that
/// an MSP reads the appliance's alerts the way its contract describes them. On the wire and
/// on disk it is a plain number, checked when read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Severity(u8);

impl Severity {
    /// The lowest severity: recorded, nobody told.
    pub const MIN: Severity = Severity(1);
    /// The highest severity: P1.
    pub const MAX: Severity = Severity(10);

    /// The number, 1..=10.
    pub fn get(self) -> u8 {
        self.0
    }

    /// What this severity asks of the MSP: 10–9 P1, 8–7 P2, 6–5 P3, 4–3 notify only,
    /// 2–1 record only.
    pub fn priority(self) -> Priority {
        match self.0 {
            9.. => Priority::P1,
            7..=8 => Priority::P2,
            5..=6 => Priority::P3,
            3..=4 => Priority::Notify,
            _ => Priority::Record,
        }
    }
}

impl TryFrom<u8> for Severity {
    type Error = AlertError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        if (1..=10).contains(&value) {
            Ok(Severity(value))
        } else {
            Err(AlertError::Severity(value))
        }
    }
}

impl From<Severity> for u8 {
    fn from(severity: Severity) -> u8 {
        severity.0
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a severity asks of the MSP's support desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Severity 10–9.
    P1,
    /// Severity 8–7.
    P2,
    /// Severity 6–5.
    P3,
    /// Severity 4–3: tell the MSP, but nobody is paged.
    Notify,
    /// Severity 2–1: kept for the record only.
    Record,
}

impl Priority {
    /// Whether this priority opens an incident with the support desk (P1 to P3), as opposed to
    /// only notifying or recording.
    pub fn pages(self) -> bool {
        matches!(self, Priority::P1 | Priority::P2 | Priority::P3)
    }

    /// The name shown to operators: `P1`, `P2`, `P3`, `notify`, `record`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::Notify => "notify",
            Priority::Record => "record",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_severity_as_the_seed_does() {
        let expected = [
            (1, Priority::Record),
            (2, Priority::Record),
            (3, Priority::Notify),
            (4, Priority::Notify),
            (5, Priority::P3),
            (6, Priority::P3),
            (7, Priority::P2),
            (8, Priority::P2),
            (9, Priority::P1),
            (10, Priority::P1),
        ];
        for (value, priority) in expected {
            let severity = Severity::try_from(value).expect("in range");
            assert_eq!(severity.get(), value);
            assert_eq!(severity.priority(), priority, "severity {value}");
            assert_eq!(priority.pages(), value >= 5, "severity {value}");
        }
    }

    #[test]
    fn rejects_zero_and_above_ten() {
        for value in [0u8, 11, 255] {
            match Severity::try_from(value) {
                Err(AlertError::Severity(v)) => assert_eq!(v, value),
                other => panic!("severity {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn priorities_display_as_operators_read_them() {
        let shown: Vec<String> = [
            Priority::P1,
            Priority::P2,
            Priority::P3,
            Priority::Notify,
            Priority::Record,
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        assert_eq!(shown, ["P1", "P2", "P3", "notify", "record"]);
    }

    #[test]
    fn serde_is_a_number_checked_when_read() {
        let severity = Severity::try_from(7).expect("in range");
        assert_eq!(serde_json::to_string(&severity).expect("encode"), "7");
        assert_eq!(
            serde_json::from_str::<Severity>("7").expect("decode"),
            severity
        );
        assert!(serde_json::from_str::<Severity>("0").is_err());
        assert!(serde_json::from_str::<Severity>("11").is_err());
        assert!(serde_json::from_str::<Severity>("\"7\"").is_err());
    }
}
