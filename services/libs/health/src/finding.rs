//! A condition the health rules found: while it lasts it is an alert in the shared model
//! (class, key, severity); when it is no longer found the alert is cleared.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `health.temperature`, `smart.sectors`, ... (the alert class).
    pub class: &'static str,
    /// What it is about: a sensor's name, a disk's serial.
    pub key: String,
    /// 1-10, the seed's scale (10-9 P1, 8-7 P2, 6-5 P3, 4-3 notify, 2-1 record).
    pub severity: u8,
    pub summary: String,
    pub detail: String,
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
}
