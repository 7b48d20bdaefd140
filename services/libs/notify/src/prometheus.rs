//! Prometheus text exposition format 0.0.4: the types services fill in and the renderer.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The `Content-Type` of a rendered exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label name/value pairs of one sample.
pub type Labels = Vec<(String, String)>;

/// The metric types this crate renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (resets on restart); conventionally named `..._total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One metric family: a name, its help text, its type and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub samples: Vec<(Labels, f64)>,
}

/// Why a metric is not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("metric name {0:?} is invalid: [a-zA-Z_:][a-zA-Z0-9_:]*")]
    Name(String),
    #[error("metric {metric}: label name {label:?} is invalid: [a-zA-Z_][a-zA-Z0-9_]*, not starting with __")]
    LabelName { metric: String, label: String },
    #[error("metric {metric}: label {label} appears twice in one sample")]
    DuplicateLabel { metric: String, label: String },
    #[error("metric {0} appears twice")]
    Duplicate(String),
}

impl Metric {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Metric {
        Metric {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Metric {
        Metric::new(name, help, MetricKind::Gauge)
    }

    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Metric {
        Metric::new(name, help, MetricKind::Counter)
    }

    /// Adds a sample; `labels` as `(name, value)` pairs.
    pub fn sample<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
        value: f64,
    ) -> Metric {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.samples.push((labels, value));
        self
    }

    /// Checks the metric and label names. Label values and help text may hold anything:
    /// they are escaped.
    pub fn validate(&self) -> Result<(), MetricError> {
        if !valid_metric_name(&self.name) {
            return Err(MetricError::Name(self.name.clone()));
        }
        for (labels, _) in &self.samples {
            let mut seen = BTreeSet::new();
            for (label, _) in labels {
                if !valid_label_name(label) {
                    return Err(MetricError::LabelName {
                        metric: self.name.clone(),
                        label: label.clone(),
                    });
                }
                if !seen.insert(label.as_str()) {
                    return Err(MetricError::DuplicateLabel {
                        metric: self.name.clone(),
                        label: label.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Renders `metrics` in the text format. An invalid or repeated metric is left out and logged
/// rather than failing the scrape: one service's mistake must not blind monitoring of the
/// rest of the appliance.
pub fn render(metrics: &[Metric]) -> String {
    let mut out = String::new();
    let mut names = BTreeSet::new();
    for metric in metrics {
        let checked = metric.validate().and_then(|()| {
            if names.insert(metric.name.as_str()) {
                Ok(())
            } else {
                Err(MetricError::Duplicate(metric.name.clone()))
            }
        });
        if let Err(e) = checked {
            tracing::warn!(error = %e, "metric left out of the exposition");
            continue;
        }
        render_one(&mut out, metric);
    }
    out
}

fn render_one(out: &mut String, metric: &Metric) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(&metric.help));
    let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind.as_str());
    for (labels, value) in &metric.samples {
        out.push_str(&metric.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", format_value(*value));
    }
}

/// HELP text: backslash and newline escaped.
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and newline escaped.
pub fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust prints the shortest text that reads back to the same f64.
        format!("{value}")
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let metrics = [
            Metric::gauge("tiervault_pool_free_bytes", "Free bytes.\nPer \\ pool.")
                .sample([("pool", "vault \"data\"\n1\\")], 1.5e12)
                .sample(Vec::<(String, String)>::new(), f64::NAN),
            Metric::counter("tiervault_jobs_total", "Jobs run.")
                .sample([("state", "ok"), ("kind", "full")], 3.0)
                .sample([("state", "failed"), ("kind", "full")], f64::INFINITY),
        ];
        assert_eq!(
            render(&metrics),
            "# HELP tiervault_pool_free_bytes Free bytes.\\nPer \\\\ pool.\n\
             # TYPE tiervault_pool_free_bytes gauge\n\
             tiervault_pool_free_bytes{pool=\"vault \\\"data\\\"\\n1\\\\\"} 1500000000000\n\
             tiervault_pool_free_bytes NaN\n\
             # HELP tiervault_jobs_total Jobs run.\n\
             # TYPE tiervault_jobs_total counter\n\
             tiervault_jobs_total{state=\"ok\",kind=\"full\"} 3\n\
             tiervault_jobs_total{state=\"failed\",kind=\"full\"} +Inf\n"
        );
    }

    #[test]
    fn invalid_and_duplicate_metrics_are_left_out() {
        let metrics = [
            Metric::gauge("ok_metric", "x").sample([("a", "1")], 1.0),
            Metric::gauge("1bad", "x"),
            Metric::gauge("bad-name", "x"),
            Metric::gauge("bad_label", "x").sample([("__reserved", "1")], 1.0),
            Metric::gauge("dup_label", "x").sample([("a", "1"), ("a", "2")], 1.0),
            Metric::gauge("ok_metric", "again"),
        ];
        let text = render(&metrics);
        assert_eq!(
            text,
            "# HELP ok_metric x\n# TYPE ok_metric gauge\nok_metric{a=\"1\"} 1\n"
        );
        assert!(matches!(
            metrics[3].validate(),
            Err(MetricError::LabelName { .. })
        ));
        assert!(matches!(
            metrics[4].validate(),
            Err(MetricError::DuplicateLabel { .. })
        ));
    }

    #[test]
    fn values_read_back_exactly() {
        for v in [0.0, -1.0, 0.1, 1e-300, 123_456_789_012_345_680.0, -0.5] {
            let text = format_value(v);
            assert_eq!(text.parse::<f64>().expect("parse"), v, "{text}");
        }
    }
}
