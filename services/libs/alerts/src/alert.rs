//! One alert, what a service hands in to raise one, and the rules their fields follow.

use serde::{Deserialize, Serialize};

use crate::{AlertError, Priority, Severity};

/// Longest class and key, in bytes. They identify an alert, so they are short by nature; the
/// cap keeps a bug that puts a whole message in the key from bloating every rewrite.
pub const MAX_ID_LEN: usize = 256;
/// Longest summary, detail, acknowledgement comment and acknowledger, in bytes. Enough for
/// any message an operator reads; callers with longer text can [`clip`] it.
pub const MAX_TEXT_LEN: usize = 4096;

/// What a service knows when something goes wrong; the store adds the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// What kind of problem: dotted lowercase parts of `a-z 0-9 _ -`, at least two, like
    /// `job.failed` or `pool.degraded`, so that classes from all services share one namespace
    /// an MSP can filter on.
    pub class: String,
    /// Which instance of the class, e.g. the job or array name; with the class it
    /// de-duplicates. May be empty for a class that has one instance per service. No control
    /// characters.
    pub key: String,
    pub severity: Severity,
    /// One line for lists: non-empty, no control characters.
    pub summary: String,
    /// Any further text; may be empty and span lines.
    pub detail: String,
}

/// Who acknowledged an alert, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who acknowledged: non-empty, no control characters.
    pub by: String,
    /// Unix nanoseconds.
    pub at_ns: i64,
    /// May be empty.
    pub comment: String,
}

/// An alert as the store keeps it. Times are Unix nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique within the store's file, never reused, even after the alert left the history.
    pub id: u64,
    /// The service that raised it.
    pub source: String,
    pub class: String,
    pub key: String,
    /// The highest severity seen while the alert was active.
    pub severity: Severity,
    /// From the latest raise.
    pub summary: String,
    /// From the latest raise.
    pub detail: String,
    pub raised_ns: i64,
    /// The latest raise.
    pub last_seen_ns: i64,
    /// How many times it was raised while active, at least 1.
    pub count: u64,
    pub cleared_ns: Option<i64>,
    pub ack: Option<Ack>,
}

impl Alert {
    /// Not yet cleared.
    pub fn is_active(&self) -> bool {
        self.cleared_ns.is_none()
    }

    /// The priority of its severity.
    pub fn priority(&self) -> Priority {
        self.severity.priority()
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary: for a caller whose message (an error chain, say) may exceed [`MAX_TEXT_LEN`] and
/// would rather send it cut than not raise the alert at all.
pub fn clip(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> AlertError {
    AlertError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub(crate) fn check_class(class: &str) -> Result<(), AlertError> {
    const FIELD: &str = "class";
    if class.is_empty() {
        return Err(invalid(FIELD, "is empty"));
    }
    check_len(FIELD, class, MAX_ID_LEN)?;
    if let Some(c) = class
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
    {
        return Err(invalid(
            FIELD,
            format!("{class:?} contains {c:?}: only a-z 0-9 _ - and dots between parts"),
        ));
    }
    if class.split('.').any(str::is_empty) {
        return Err(invalid(
            FIELD,
            format!("{class:?} has an empty part (a leading, trailing or doubled dot)"),
        ));
    }
    if !class.contains('.') {
        return Err(invalid(
            FIELD,
            format!("{class:?} is not dotted: name the area and the problem, like job.failed"),
        ));
    }
    Ok(())
}

pub(crate) fn check_key(key: &str) -> Result<(), AlertError> {
    check_len("key", key, MAX_ID_LEN)?;
    check_one_line("key", key)
}

/// A non-empty single line of at most [`MAX_TEXT_LEN`] bytes (summary, acknowledger).
pub(crate) fn check_line(field: &'static str, text: &str) -> Result<(), AlertError> {
    if text.trim().is_empty() {
        return Err(invalid(field, "is empty"));
    }
    check_len(field, text, MAX_TEXT_LEN)?;
    check_one_line(field, text)
}

/// Free text of at most [`MAX_TEXT_LEN`] bytes (detail, comment).
pub(crate) fn check_text(field: &'static str, text: &str) -> Result<(), AlertError> {
    check_len(field, text, MAX_TEXT_LEN)
}

pub(crate) fn check_new(new: &NewAlert) -> Result<(), AlertError> {
    check_class(&new.class)?;
    check_key(&new.key)?;
    check_line("summary", &new.summary)?;
    check_text("detail", &new.detail)
}

pub(crate) fn check_ack(by: &str, comment: &str) -> Result<(), AlertError> {
    check_line("by", by)?;
    check_text("comment", comment)
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), AlertError> {
    if text.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes long, at most {max} allowed", text.len()),
        ));
    }
    Ok(())
}

// Single-line fields end up in one-line lists, logs and terminals, where a newline or an
// escape sequence would forge or garble output.
fn check_one_line(field: &'static str, text: &str) -> Result<(), AlertError> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("contains the control character {c:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_alert() -> NewAlert {
        NewAlert {
            class: "job.failed".into(),
            key: "nightly".into(),
            severity: Severity::try_from(7).expect("severity"),
            summary: "Job nightly failed".into(),
            detail: "line one\nline two".into(),
        }
    }

    fn field_of(result: Result<(), AlertError>) -> &'static str {
        match result {
            Err(AlertError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_well_formed_alert() {
        check_new(&new_alert()).expect("valid");
        let empty_key = NewAlert {
            key: String::new(),
            ..new_alert()
        };
        check_new(&empty_key).expect("an empty key is a singleton class");
        check_class("pool.array_0.degraded-2").expect("digits, _ and - are allowed");
    }

    #[test]
    fn class_rules() {
        for bad in [
            "",
            "job",
            "Job.failed",
            "job..failed",
            ".job",
            "job.",
            "job failed",
            "jöb.x",
        ] {
            assert_eq!(field_of(check_class(bad)), "class", "{bad:?}");
        }
        let long = format!("a.{}", "b".repeat(MAX_ID_LEN));
        assert_eq!(field_of(check_class(&long)), "class");
        let longest = format!("a.{}", "b".repeat(MAX_ID_LEN - 2));
        check_class(&longest).expect("exactly the limit");
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases: [(&str, NewAlert); 6] = [
            (
                "class",
                NewAlert {
                    class: "JOB".into(),
                    ..new_alert()
                },
            ),
            (
                "key",
                NewAlert {
                    key: "a\nb".into(),
                    ..new_alert()
                },
            ),
            (
                "key",
                NewAlert {
                    key: "k".repeat(MAX_ID_LEN + 1),
                    ..new_alert()
                },
            ),
            (
                "summary",
                NewAlert {
                    summary: " ".into(),
                    ..new_alert()
                },
            ),
            (
                "summary",
                NewAlert {
                    summary: "\u{1b}[2Jgone".into(),
                    ..new_alert()
                },
            ),
            (
                "detail",
                NewAlert {
                    detail: "d".repeat(MAX_TEXT_LEN + 1),
                    ..new_alert()
                },
            ),
        ];
        for (field, new) in cases {
            let err = check_new(&new).expect_err(field);
            assert!(err.to_string().contains(field), "{err}");
            assert_eq!(field_of(Err(err)), field);
        }
        assert_eq!(field_of(check_ack("", "")), "by");
        assert_eq!(field_of(check_ack("op\n", "")), "by");
        assert_eq!(
            field_of(check_ack("op", &"c".repeat(MAX_TEXT_LEN + 1))),
            "comment"
        );
        check_ack("op", "").expect("an empty comment is fine");
    }

    #[test]
    fn clip_cuts_on_a_character_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abc", 2), "ab");
        // 'é' is two bytes: cutting at 2 would split it.
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("aé", 3), "aé");
    }
}
