//! One alert transition to deliver, and its JSON form (the schema is in the crate docs).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tiervault_alerts::{Alert, Priority, Severity};

use crate::error::config_error;
use crate::NotifyError;

/// The value of the `schema` field of every notification this crate writes. A receiver that
/// finds another value should not guess at the fields.
pub const SCHEMA: &str = "tiervault-notification/1";

/// What happened to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    /// A new alert.
    Raised,
    /// An active alert raised again with a higher severity.
    Escalated,
    /// An active alert raised again without a higher severity (its `count` grew). Services
    /// choose whether this is worth a notification (a reminder) or not.
    ReRaised,
    /// The condition went away.
    Cleared,
    /// An operator acknowledged the alert.
    Acknowledged,
}

impl Transition {
    /// The JSON name: `raised`, `escalated`, `re-raised`, `cleared`, `acknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::Escalated => "escalated",
            Transition::ReRaised => "re-raised",
            Transition::Cleared => "cleared",
            Transition::Acknowledged => "acknowledged",
        }
    }

    /// The transition a raise made: `before` is the alert with the same id before the raise,
    /// if the raise folded into an active alert.
    pub fn of_raise(before: Option<&Alert>, after: &Alert) -> Transition {
        match before {
            None => Transition::Raised,
            Some(before) if after.severity > before.severity => Transition::Escalated,
            Some(_) => Transition::ReRaised,
        }
    }
}

/// Who is speaking: the appliance's identity from its configuration, in every notification so
/// that an MSP's receiver serving many sites knows which box and customer an alert is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Appliance {
    /// Unique across the MSP's appliances and stable for the appliance's life (it is part of
    /// every event id): 1–64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Its host name, as operators call it; the subject line of mails shows it.
    pub hostname: String,
    /// The customer site, free text; may be empty.
    #[serde(default)]
    pub site: String,
    /// The customer, free text; may be empty.
    #[serde(default)]
    pub customer: String,
}

impl Appliance {
    /// Checks the rules of the fields: a bad id would make event ids ambiguous, and control
    /// characters would garble mail headers and logs.
    pub fn validate(&self) -> Result<(), NotifyError> {
        const CONTEXT: &str = "appliance";
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(config_error(CONTEXT, "id", "must be 1 to 64 characters"));
        }
        if let Some(c) = self
            .id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(config_error(
                CONTEXT,
                "id",
                format!("{:?} contains {c:?}: only A-Z a-z 0-9 . _ -", self.id),
            ));
        }
        for (field, value) in [
            ("hostname", &self.hostname),
            ("site", &self.site),
            ("customer", &self.customer),
        ] {
            if value.len() > 256 || value.chars().any(char::is_control) {
                return Err(config_error(
                    CONTEXT,
                    field,
                    "must be one line of at most 256 bytes",
                ));
            }
        }
        Ok(())
    }

    /// The name people know the appliance by: its host name, or its id when that is empty.
    pub fn name(&self) -> &str {
        if self.hostname.is_empty() {
            &self.id
        } else {
            &self.hostname
        }
    }
}

/// Who acknowledged the alert, in a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckSnapshot {
    pub by: String,
    /// Unix nanoseconds; `at` in JSON.
    #[serde(rename = "at", with = "rfc3339")]
    pub at_ns: i64,
    pub comment: String,
}

/// The alert as it was at the transition. Times are Unix nanoseconds in Rust and RFC 3339
/// strings in JSON: nanosecond counts exceed the integers a JavaScript receiver reads exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "AlertWire", try_from = "AlertWire")]
pub struct AlertSnapshot {
    pub id: u64,
    pub source: String,
    pub class: String,
    pub key: String,
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub raised_ns: i64,
    pub last_seen_ns: i64,
    pub count: u64,
    pub cleared_ns: Option<i64>,
    pub ack: Option<AckSnapshot>,
}

impl From<&Alert> for AlertSnapshot {
    fn from(alert: &Alert) -> Self {
        AlertSnapshot {
            id: alert.id,
            source: alert.source.clone(),
            class: alert.class.clone(),
            key: alert.key.clone(),
            severity: alert.severity,
            summary: alert.summary.clone(),
            detail: alert.detail.clone(),
            raised_ns: alert.raised_ns,
            last_seen_ns: alert.last_seen_ns,
            count: alert.count,
            cleared_ns: alert.cleared_ns,
            ack: alert.ack.as_ref().map(|ack| AckSnapshot {
                by: ack.by.clone(),
                at_ns: ack.at_ns,
                comment: ack.comment.clone(),
            }),
        }
    }
}

/// The JSON shape of [`AlertSnapshot`]: adds the priority name, which receivers filter on
/// without knowing the severity scale.
#[derive(Clone, Serialize, Deserialize)]
struct AlertWire {
    id: u64,
    source: String,
    class: String,
    key: String,
    severity: Severity,
    priority: String,
    summary: String,
    detail: String,
    #[serde(with = "rfc3339")]
    raised_at: i64,
    #[serde(with = "rfc3339")]
    last_seen_at: i64,
    count: u64,
    #[serde(with = "rfc3339_opt")]
    cleared_at: Option<i64>,
    ack: Option<AckSnapshot>,
}

impl From<AlertSnapshot> for AlertWire {
    fn from(a: AlertSnapshot) -> Self {
        AlertWire {
            id: a.id,
            priority: a.severity.priority().as_str().to_owned(),
            source: a.source,
            class: a.class,
            key: a.key,
            severity: a.severity,
            summary: a.summary,
            detail: a.detail,
            raised_at: a.raised_ns,
            last_seen_at: a.last_seen_ns,
            count: a.count,
            cleared_at: a.cleared_ns,
            ack: a.ack,
        }
    }
}

impl TryFrom<AlertWire> for AlertSnapshot {
    type Error = String;

    fn try_from(w: AlertWire) -> Result<Self, String> {
        let expected = w.severity.priority().as_str();
        if w.priority != expected {
            return Err(format!(
                "priority {:?} does not match severity {} ({expected})",
                w.priority, w.severity
            ));
        }
        Ok(AlertSnapshot {
            id: w.id,
            source: w.source,
            class: w.class,
            key: w.key,
            severity: w.severity,
            summary: w.summary,
            detail: w.detail,
            raised_ns: w.raised_at,
            last_seen_ns: w.last_seen_at,
            count: w.count,
            cleared_ns: w.cleared_at,
            ack: w.ack,
        })
    }
}

/// One alert transition to deliver, as the crate docs describe its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Always [`SCHEMA`]; checked when read back.
    pub schema: Schema,
    /// `<appliance id>:<source>:<alert id>:<sequence>`: unique for the appliance's life, the
    /// same on every retry and every target, so a receiver de-duplicates on it. Opaque to
    /// receivers: compare it, do not parse it.
    pub event_id: String,
    /// The dispatcher's per-source sequence number: grows with every notification of the
    /// source, with gaps (a crash, a notification filtered out for this target).
    pub sequence: u64,
    pub transition: Transition,
    /// When the transition was noticed, Unix nanoseconds; `at` in JSON.
    #[serde(rename = "at", with = "rfc3339")]
    pub at_ns: i64,
    pub appliance: Appliance,
    pub alert: AlertSnapshot,
}

impl Notification {
    /// The notification of `transition` of `alert`, numbered `sequence` by its source.
    pub fn new(
        alert: &Alert,
        transition: Transition,
        appliance: &Appliance,
        sequence: u64,
        at_ns: i64,
    ) -> Notification {
        Notification {
            schema: Schema,
            event_id: event_id(&appliance.id, &alert.source, alert.id, sequence),
            sequence,
            transition,
            at_ns,
            appliance: appliance.clone(),
            alert: AlertSnapshot::from(alert),
        }
    }

    pub fn severity(&self) -> Severity {
        self.alert.severity
    }

    pub fn priority(&self) -> Priority {
        self.alert.severity.priority()
    }

    /// The JSON a webhook receives and a spool file holds.
    pub fn to_json(&self) -> Result<Vec<u8>, NotifyError> {
        serde_json::to_vec(self).map_err(|source| NotifyError::Encode {
            event_id: self.event_id.clone(),
            source,
        })
    }

    /// Reads a notification back, checking its schema and that its priority matches its
    /// severity.
    pub fn from_json(bytes: &[u8]) -> Result<Notification, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The event id of the `sequence`-th notification of `source` about alert `alert_id`.
pub fn event_id(appliance_id: &str, source: &str, alert_id: u64, sequence: u64) -> String {
    format!("{appliance_id}:{source}:{alert_id}:{sequence}")
}

/// The `schema` field: serialises as [`SCHEMA`] and refuses any other value when read, so a
/// file of another format is never mistaken for a notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schema;

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(SCHEMA)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let found = String::deserialize(deserializer)?;
        if found == SCHEMA {
            Ok(Schema)
        } else {
            Err(serde::de::Error::custom(format!(
                "schema {found:?} is not {SCHEMA:?}"
            )))
        }
    }
}

/// Unix nanoseconds as RFC 3339 text in UTC, e.g. `2025-03-01T12:00:00.5Z`.
pub(crate) fn format_rfc3339(ns: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    // Every i64 of nanoseconds is between 1677 and 2262, inside what RFC 3339 can show, so
    // the fallback is only there to keep this total.
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{ns}ns"))
}

fn parse_rfc3339(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{text:?} is out of range"))
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ns: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_rfc3339(*ns))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ns: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
        match ns {
            Some(ns) => serializer.serialize_str(&super::format_rfc3339(*ns)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tiervault_alerts::Ack;

    pub(crate) fn appliance() -> Appliance {
        Appliance {
            id: "tv-0007".into(),
            hostname: "site-appliance-7".into(),
            site: "Leeds DC".into(),
            customer: "Acme Ltd".into(),
        }
    }

    pub(crate) fn alert(id: u64, severity: u8) -> Alert {
        Alert {
            id,
            source: "poold".into(),
            class: "pool.failed".into(),
            key: "vault-data1".into(),
            severity: Severity::try_from(severity).expect("severity"),
            summary: "array vault-data1 has failed".into(),
            detail: "2 of 6 members missing\nsdc, sdf".into(),
            raised_ns: 1_740_830_400_123_456_789,
            last_seen_ns: 1_740_830_460_000_000_000,
            count: 2,
            cleared_ns: None,
            ack: None,
        }
    }

    #[test]
    fn json_has_the_documented_fields_and_reads_back() {
        let mut a = alert(42, 10);
        a.ack = Some(Ack {
            by: "ops@msp".into(),
            at_ns: 1_740_830_500_000_000_000,
            comment: "on it".into(),
        });
        let n = Notification::new(
            &a,
            Transition::Acknowledged,
            &appliance(),
            1007,
            1_740_830_500_000_000_001,
        );
        let bytes = n.to_json().expect("encode");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["event_id"], "tv-0007:poold:42:1007");
        assert_eq!(value["sequence"], 1007);
        assert_eq!(value["transition"], "acknowledged");
        assert_eq!(value["at"], "2025-03-01T12:01:40.000000001Z");
        assert_eq!(value["appliance"]["hostname"], "site-appliance-7");
        assert_eq!(value["appliance"]["customer"], "Acme Ltd");
        let alert = &value["alert"];
        assert_eq!(alert["id"], 42);
        assert_eq!(alert["severity"], 10);
        assert_eq!(alert["priority"], "P1");
        assert_eq!(alert["raised_at"], "2025-03-01T12:00:00.123456789Z");
        assert_eq!(alert["cleared_at"], serde_json::Value::Null);
        assert_eq!(alert["ack"]["by"], "ops@msp");
        assert_eq!(alert["ack"]["at"], "2025-03-01T12:01:40Z");
        let fields: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "alert",
                "appliance",
                "at",
                "event_id",
                "schema",
                "sequence",
                "transition"
            ]
        );
        assert_eq!(Notification::from_json(&bytes).expect("decode"), n);
    }

    #[test]
    fn reading_back_checks_schema_and_priority() {
        let n = Notification::new(&alert(1, 7), Transition::Raised, &appliance(), 1, 0);
        let mut value: serde_json::Value =
            serde_json::from_slice(&n.to_json().expect("encode")).expect("json");
        value["alert"]["priority"] = "P1".into();
        let err = Notification::from_json(value.to_string().as_bytes()).expect_err("mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
        value["alert"]["priority"] = "P2".into();
        value["schema"] = "something-else/1".into();
        let err = Notification::from_json(value.to_string().as_bytes()).expect_err("schema");
        assert!(err.to_string().contains("something-else"), "{err}");
    }

    #[test]
    fn transition_of_a_raise() {
        let first = alert(1, 5);
        assert_eq!(Transition::of_raise(None, &first), Transition::Raised);
        let mut again = first.clone();
        again.count += 1;
        assert_eq!(
            Transition::of_raise(Some(&first), &again),
            Transition::ReRaised
        );
        again.severity = Severity::try_from(8).expect("severity");
        assert_eq!(
            Transition::of_raise(Some(&first), &again),
            Transition::Escalated
        );
        let names: Vec<String> = [Transition::ReRaised, Transition::Cleared]
            .iter()
            .map(|t| serde_json::to_string(t).expect("encode"))
            .collect();
        assert_eq!(names, ["\"re-raised\"", "\"cleared\""]);
        assert_eq!(Transition::ReRaised.as_str(), "re-raised");
    }

    #[test]
    fn appliance_rules() {
        appliance().validate().expect("valid");
        for bad in ["", "a:b", "a b", &"x".repeat(65)] {
            let a = Appliance {
                id: bad.into(),
                ..appliance()
            };
            assert!(a.validate().is_err(), "{bad:?}");
        }
        let a = Appliance {
            site: "two\nlines".into(),
            ..appliance()
        };
        assert!(a.validate().expect_err("site").to_string().contains("site"));
        let a = Appliance {
            hostname: String::new(),
            ..appliance()
        };
        assert_eq!(a.name(), "tv-0007");
    }
}
