//! Support-contract and warranty expiry: reminders at 90, 60 and 30 days (each one a step up in
//! severity, so each reaches the MSP as an escalation), then a daily reminder once expired.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::finding::Finding;

pub const CLASS: &str = "contract.expiry";

/// One `[[contract]]` of the health configuration (from provisioning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Contract {
    /// What it covers: `support`, `warranty`, `warranty-disks` (the alert's key).
    pub name: String,
    /// The last day it covers: `expires = 2028-01-15` (a TOML date) or `"2028-01-15"`.
    #[serde(with = "day")]
    pub expires: Date,
    /// The contract or RMA reference, for the renewal quote.
    #[serde(default)]
    pub reference: String,
}

/// A calendar day in configuration: TOML's own date or an ISO 8601 string.
mod day {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::macros::format_description;
    use time::Date;

    const FORMAT: &[time::format_description::FormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Native(toml::value::Datetime),
        Quoted(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = match Text::deserialize(d)? {
            Text::Native(dt) => dt.to_string(),
            Text::Quoted(s) => s,
        };
        Date::parse(&text, FORMAT).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a date like 2028-01-15: {e}"))
        })
    }

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        let text = d.format(FORMAT).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

/// The reminder due on `today`, if any. Once expired the summary names the days since, so the
/// service's daily re-raise carries news.
pub fn reminder(c: &Contract, today: Date) -> Option<Finding> {
    let left = (c.expires - today).whole_days();
    let (severity, when) = match left {
        61..=90 => (3, format!("expires in {left} days")),
        31..=60 => (4, format!("expires in {left} days")),
        1..=30 => (5, format!("expires in {left} days")),
        0 => (5, "expires today".to_owned()),
        i64::MIN..=-1 => (7, format!("expired {} days ago", -left)),
        _ => return None,
    };
    let reference = if c.reference.is_empty() {
        String::new()
    } else {
        format!(" (reference {})", c.reference)
    };
    Some(Finding {
        class: CLASS,
        key: c.name.clone(),
        severity,
        summary: format!("{} contract{reference} {when}, on {}", c.name, c.expires),
        detail: if left < 0 {
            "The appliance is no longer covered: hardware replacements and support escalations \
             are not guaranteed. Renew it or record the decision not to."
                .into()
        } else {
            "Renew it before it lapses: parts and support are covered only while it runs.".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn c() -> Contract {
        Contract {
            name: "support".into(),
            expires: date!(2027 - 03 - 31),
            reference: "MSP-4411".into(),
        }
    }

    #[test]
    fn steps_at_90_60_30_days_then_daily_after_expiry() {
        let sev = |d: Date| reminder(&c(), d).map(|f| f.severity);
        assert_eq!(sev(date!(2026 - 12 - 30)), None, "91 days left");
        assert_eq!(sev(date!(2026 - 12 - 31)), Some(3), "90 days left");
        assert_eq!(sev(date!(2027 - 01 - 30)), Some(4), "60 days left");
        assert_eq!(sev(date!(2027 - 03 - 01)), Some(5), "30 days left");
        assert_eq!(sev(date!(2027 - 03 - 31)), Some(5), "last day");
        let f = reminder(&c(), date!(2027 - 04 - 03)).expect("expired");
        assert_eq!(f.severity, 7);
        assert!(f.summary.contains("expired 3 days ago"), "{}", f.summary);
        assert!(f.summary.contains("MSP-4411"), "{}", f.summary);
        assert_eq!((f.class, f.key.as_str()), (CLASS, "support"));
    }

    #[test]
    fn parses_from_toml() {
        for text in ["expires = 2028-01-15", "expires = \"2028-01-15\""] {
            let c: Contract = toml::from_str(&format!("name = \"warranty\"\n{text}\n"))
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.expires, date!(2028 - 01 - 15));
        }
        let e = toml::from_str::<Contract>("name = \"w\"\nexpires = \"next year\"\n")
            .expect_err("not a date");
        assert!(e.to_string().contains("next year"), "{e}");
    }
}
