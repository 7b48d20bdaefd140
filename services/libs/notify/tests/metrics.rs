//! The Prometheus endpoint scraped over real HTTP (ureq as the client, raw sockets for the
//! misbehaving ones), its exposition parsed back.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{appliance, SOURCE, T0};
use tiervault_notify::prometheus::{Labels, CONTENT_TYPE};
use tiervault_notify::{
    Dispatcher, ManualClock, Metric, MetricKind, MetricsConfig, MetricsServer, ServerLimits,
};

fn tricky_metrics(scrapes: u64) -> Vec<Metric> {
    vec![
        Metric::gauge(
            "tiervault_pool_free_bytes",
            "Free bytes per pool.\nSecond line with a \\ backslash.",
        )
        .sample([("pool", "vault \"data\" 1"), ("tier", "tier-5")], 1.5e12)
        .sample([("pool", "back\\slash\nnew line"), ("tier", "")], -0.25),
        Metric::counter("tiervault_scrapes_total", "Scrapes served.")
            .sample(Vec::<(String, String)>::new(), scrapes as f64),
        Metric::gauge("tiervault_temperature_celsius", "Odd values.")
            .sample([("sensor", "a")], f64::INFINITY)
            .sample([("sensor", "b")], f64::NEG_INFINITY),
    ]
}

fn limits() -> ServerLimits {
    ServerLimits {
        read_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_secs(2),
        max_request_bytes: 4096,
    }
}

fn start() -> (MetricsServer, Arc<AtomicU64>) {
    let scrapes = Arc::new(AtomicU64::new(0));
    let counter = scrapes.clone();
    let server =
        MetricsServer::start_on("127.0.0.1:0".parse().expect("addr"), limits(), move || {
            tricky_metrics(counter.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .expect("start");
    (server, scrapes)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut response = agent()
        .get(&format!("http://{addr}{path}"))
        .call()
        .expect("GET");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.body_mut().read_to_string().expect("body");
    (response.status().as_u16(), content_type, body)
}

/// Reads an exposition back: (name, help, type, samples) in order.
fn parse(text: &str) -> Vec<Metric> {
    let mut metrics: Vec<Metric> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("help");
            metrics.push(Metric::gauge(name, unescape(help)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            let metric = metrics.last_mut().expect("HELP before TYPE");
            assert_eq!(metric.name, name);
            metric.kind = match kind {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                other => panic!("type {other}"),
            };
        } else {
            let (name, labels, value) = parse_sample(line);
            let metric = metrics.last_mut().expect("sample after HELP");
            assert_eq!(metric.name, name);
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("value"),
            };
            metric.samples.push((labels, value));
        }
    }
    metrics
}

fn parse_sample(line: &str) -> (&str, Labels, &str) {
    let (series, value) = line.rsplit_once(' ').expect("value");
    let Some((name, rest)) = series.split_once('{') else {
        return (series, Vec::new(), value);
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                '"' => break,
                '\n' => panic!("raw newline in {line}"),
                c => value.push(c),
            }
        }
        labels.push((label, value));
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("{other:?} after a label in {line}"),
        }
    }
    assert_eq!(chars.next(), None);
    (name, labels, value)
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                other => panic!("bad escape {other:?}"),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may answer and close before it read everything: ignore a failed write.
    let _ = stream.write_all(request);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn scrape_over_http_reads_back_what_was_rendered() {
    let (server, scrapes) = start();
    let (status, content_type, body) = get(server.local_addr(), "/metrics");
    assert_eq!(status, 200);
    assert_eq!(content_type, CONTENT_TYPE);
    assert_eq!(parse(&body), tricky_metrics(1));
    assert!(body.contains(r#"pool="back\\slash\nnew line""#), "{body}");
    assert!(body.contains(r#"pool="vault \"data\" 1""#), "{body}");

    // Each scrape asks the closure afresh; a query string is fine.
    let (status, _, body) = get(server.local_addr(), "/metrics?debug=1");
    assert_eq!(status, 200);
    assert_eq!(parse(&body), tricky_metrics(2));
    assert_eq!(scrapes.load(Ordering::SeqCst), 2);
}

#[test]
fn only_get_metrics_is_served() {
    let (server, scrapes) = start();
    let addr = server.local_addr();
    assert_eq!(get(addr, "/").0, 404);
    assert_eq!(get(addr, "/metrics/../etc/passwd").0, 404);
    let post = agent()
        .post(&format!("http://{addr}/metrics"))
        .send("x")
        .expect("POST");
    assert_eq!(post.status().as_u16(), 405);
    let response = raw_request(addr, b"NONSENSE\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert_eq!(
        scrapes.load(Ordering::SeqCst),
        0,
        "nothing collected for them"
    );
}

#[test]
fn oversized_and_stalled_requests_are_cut_off() {
    let (server, _) = start();
    let addr = server.local_addr();
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let response = raw_request(addr, &huge);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");

    // A client that connects and says nothing holds the one thread only until the read
    // timeout; the next scrape is served after it.
    let mut idle = TcpStream::connect(addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (status, _, _) = get(addr, "/metrics");
    assert_eq!(status, 200);
    let mut answer = String::new();
    let _ = idle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
}

#[test]
fn listens_on_loopback_unless_allowed_and_stops_on_shutdown() {
    let open = MetricsConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        allow_remote: false,
    };
    assert!(MetricsServer::start(&open, Vec::new).is_err());
    let config = MetricsConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow_remote: false,
    };
    let server = MetricsServer::start(&config, Vec::new).expect("start");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(get(addr, "/metrics").2, "", "no metrics, empty exposition");
    server.shutdown();
    assert!(TcpStream::connect(addr).is_err(), "closed after shutdown");
}

#[test]
fn the_dispatchers_own_metrics_render_and_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let mut dispatcher =
        Dispatcher::open(dir.path(), SOURCE, appliance(), clock).expect("dispatcher");
    struct Never;
    impl tiervault_notify::Target for Never {
        fn describe(&self) -> String {
            "never".into()
        }
        fn deliver(
            &mut self,
            _: &tiervault_notify::Notification,
        ) -> Result<(), tiervault_notify::DeliveryError> {
            Err(tiervault_notify::DeliveryError::retryable("never", "down"))
        }
    }
    dispatcher
        .add_target(
            tiervault_notify::Route {
                name: "psa".into(),
                min_severity: tiervault_alerts::Severity::MIN,
                backoff: tiervault_notify::Backoff::default(),
                caps: tiervault_notify::SpoolCaps::default(),
            },
            Box::new(Never),
        )
        .expect("target");
    let metrics = dispatcher.metrics();
    let text = tiervault_notify::prometheus::render(&metrics);
    let parsed = parse(&text);
    assert_eq!(parsed, metrics);
    assert!(text.contains("tiervault_notify_pending{service=\"poold\",target=\"psa\"} 0"));
}
