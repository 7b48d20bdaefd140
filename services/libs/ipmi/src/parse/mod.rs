//! Pure parsers of ipmitool's output, tested on what it printed against OpenIPMI's
//! `ipmi_sim` (`testdata/`, see its README) and on hand-made garbage.
//!
//! | module | input |
//! |---|---|
//! | [`sensor`] | `sensor list` (readings, status, thresholds) merged with `sdr elist` (discrete state names, entity) |
//! | [`sel`] | `sel elist` (or `sel list`) |
//! | [`fru`] | `fru print` |
//! | [`chassis`] | `chassis status` |
//!
//! None runs a command, and none panics on any input. What they refuse: a line with the wrong
//! number of columns, a token that is no number where one must be, output that does not end
//! in a newline (a run cut short). What they keep but flag: a number that parses but cannot be
//! a reading (NaN, infinities, magnitudes no sensor reaches), in [`crate::Sensor::anomaly`].

pub mod chassis;
pub mod fru;
pub mod sel;
pub mod sensor;

/// A line the parser cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_no}: {reason}: {line:?}")]
pub struct ParseError {
    /// 1-based; 0 when the problem is the output as a whole.
    pub line_no: usize,
    pub line: String,
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(line_no: usize, line: &str, reason: impl Into<String>) -> Self {
        // Bound what is carried into logs and alerts: a garbage line may be megabytes.
        let line: String = line.chars().take(200).collect();
        ParseError {
            line_no,
            line,
            reason: reason.into(),
        }
    }
}

/// The lines of a complete output with their 1-based numbers, blank ones skipped. Output that
/// does not end in a newline was cut short (ipmitool ends every line), and its last line
/// cannot be trusted.
pub(crate) fn complete_lines(text: &str) -> Result<Vec<(usize, &str)>, ParseError> {
    if !text.is_empty() && !text.ends_with('\n') {
        let last = text.lines().last().unwrap_or_default();
        return Err(ParseError::new(
            text.lines().count(),
            last,
            "output ends mid-line (truncated)",
        ));
    }
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect())
}

/// Splits a `|`-separated line into trimmed columns.
pub(crate) fn columns(line: &str) -> Vec<&str> {
    line.split('|').map(str::trim).collect()
}

/// The largest magnitude accepted as a reading or threshold. IPMI's conversion formula can
/// produce far more, but no temperature, fan, voltage, current or power sensor of a server
/// reads beyond this; a value past it is a BMC or parser fault, not a measurement.
pub const PLAUSIBLE_LIMIT: f64 = 1.0e7;

/// A token where ipmitool prints a reading or threshold.
pub(crate) enum Number {
    /// `na` or nothing.
    Absent,
    Value(f64),
    /// A number that cannot be a reading (NaN, infinite, absurd): for the caller to flag.
    Implausible(String),
    /// Not a number at all: the caller decides whether that is garbage.
    Unreadable,
}

pub(crate) fn number(token: &str) -> Number {
    if token.eq_ignore_ascii_case("na") || token.is_empty() {
        return Number::Absent;
    }
    // Only plain decimal forms: Rust's parser also takes "inf" and "NaN", which are then
    // flagged below rather than mistaken for garbage.
    let Ok(value) = token.parse::<f64>() else {
        return Number::Unreadable;
    };
    if !value.is_finite() {
        Number::Implausible(format!("{token} is not a number"))
    } else if value.abs() > PLAUSIBLE_LIMIT {
        Number::Implausible(format!("{token} is beyond any sensor's range"))
    } else {
        Number::Value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_refuses_a_cut_last_line() {
        assert!(complete_lines("").expect("empty is complete").is_empty());
        let lines = complete_lines("a\n\n  \nb\r\n").expect("complete");
        assert_eq!(lines, vec![(1, "a"), (4, "b")]);
        let err = complete_lines("a\nb").expect_err("cut");
        assert_eq!((err.line_no, err.line.as_str()), (2, "b"));
    }

    #[test]
    fn numbers() {
        assert!(matches!(number("na"), Number::Absent));
        assert!(matches!(number("45.000"), Number::Value(v) if v == 45.0));
        assert!(matches!(number("-1.5"), Number::Value(v) if v == -1.5));
        assert!(matches!(number("NaN"), Number::Implausible(_)));
        assert!(matches!(number("nan"), Number::Implausible(_)));
        assert!(matches!(number("inf"), Number::Implausible(_)));
        assert!(matches!(number("1e308"), Number::Implausible(_)));
        assert!(matches!(number("12abc"), Number::Unreadable));
    }
}
