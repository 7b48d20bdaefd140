//! The mail a notification becomes: subject, plain-text body, and an RFC 5322 message that any
//! relay accepts (7-bit headers, base64 when the text is not plain ASCII).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::notification::format_rfc3339;
use crate::{Notification, Transition};

/// Longest header line we write unencoded; RFC 5322 allows 998 bytes.
const MAX_PLAIN_HEADER: usize = 900;
/// Body lines longer than this (RFC 5321's 998 less room) force base64.
const MAX_PLAIN_LINE: usize = 990;

/// `[P1] site-appliance-7: array vault-data1 has failed`: priority first so that mail rules
/// and people sort by it, then the appliance, then what happened (with the transition when it
/// is not a new alert: `cleared: `, `escalated: `, ...).
pub fn subject(notification: &Notification) -> String {
    let tag = match notification.transition {
        Transition::Raised => "",
        Transition::Escalated => "escalated: ",
        Transition::ReRaised => "re-raised: ",
        Transition::Cleared => "cleared: ",
        Transition::Acknowledged => "acknowledged: ",
    };
    one_line(&format!(
        "[{}] {}: {tag}{}",
        notification.priority(),
        notification.appliance.name(),
        notification.alert.summary
    ))
}

/// The plain-text body: what an engineer reading the mail on a phone needs, most important
/// first.
pub fn body(notification: &Notification) -> String {
    let a = &notification.alert;
    let appliance = &notification.appliance;
    let mut lines = vec![
        format!(
            "{} alert {} on {}",
            notification.priority(),
            notification.transition.as_str(),
            appliance.name()
        ),
        String::new(),
        format!("Alert:      {}", a.summary),
        format!("Severity:   {} ({})", a.severity, a.severity.priority()),
        format!("Class:      {}", a.class),
    ];
    if !a.key.is_empty() {
        lines.push(format!("Key:        {}", a.key));
    }
    lines.push(format!("Service:    {}", a.source));
    lines.push(format!("Raised:     {}", format_rfc3339(a.raised_ns)));
    lines.push(format!(
        "Last seen:  {} ({} time{})",
        format_rfc3339(a.last_seen_ns),
        a.count,
        if a.count == 1 { "" } else { "s" }
    ));
    if let Some(cleared) = a.cleared_ns {
        lines.push(format!("Cleared:    {}", format_rfc3339(cleared)));
    }
    if let Some(ack) = &a.ack {
        let comment = if ack.comment.is_empty() {
            String::new()
        } else {
            format!(": {}", ack.comment)
        };
        lines.push(format!(
            "Acknowledged by {} at {}{comment}",
            ack.by,
            format_rfc3339(ack.at_ns)
        ));
    }
    if !a.detail.is_empty() {
        lines.push(String::new());
        lines.push("Detail:".into());
        lines.extend(a.detail.lines().map(str::to_owned));
    }
    lines.push(String::new());
    lines.push(format!(
        "Appliance:  {} (id {})",
        appliance.name(),
        appliance.id
    ));
    if !appliance.site.is_empty() {
        lines.push(format!("Site:       {}", appliance.site));
    }
    if !appliance.customer.is_empty() {
        lines.push(format!("Customer:   {}", appliance.customer));
    }
    lines.push(format!("Event:      {}", notification.event_id));
    lines.push(format!(
        "At:         {}",
        format_rfc3339(notification.at_ns)
    ));
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// The whole message, CRLF line ends, before SMTP dot-stuffing.
pub(crate) fn message(notification: &Notification, from: &str, to: &[String]) -> Vec<u8> {
    let domain = from
        .rsplit_once('@')
        .map_or("tiervault.invalid", |(_, d)| d);
    let body = body(notification);
    let plain = body.is_ascii() && body.split("\r\n").all(|l| l.len() <= MAX_PLAIN_LINE);
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    header("From", &format!("<{from}>"));
    header(
        "To",
        &to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    header("Subject", &encode_header_text(&subject(notification)));
    header("Date", &rfc2822(notification.at_ns));
    header(
        "Message-ID",
        &format!("<{}@{domain}>", message_id_local(&notification.event_id)),
    );
    header("MIME-Version", "1.0");
    header("Content-Type", "text/plain; charset=utf-8");
    header(
        "Content-Transfer-Encoding",
        if plain { "7bit" } else { "base64" },
    );
    // Out-of-office and ticket systems must not answer an appliance (RFC 3834).
    header("Auto-Submitted", "auto-generated");
    header("X-Tiervault-Event-Id", &notification.event_id);
    header("X-Tiervault-Priority", notification.priority().as_str());
    out.push_str("\r\n");
    if plain {
        out.push_str(&body);
    } else {
        let encoded = BASE64.encode(body.as_bytes());
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push_str("\r\n");
        }
    }
    out.into_bytes()
}

/// A mailbox as the configuration gives it: `local@domain`, ASCII (no SMTPUTF8), no
/// characters that would need quoting or could end a command.
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    let bad = address.len() > 254
        || !address.is_ascii()
        || address
            .chars()
            .any(|c| c.is_ascii_control() || " <>,;:\"()[]\\".contains(c));
    match address.split_once('@') {
        Some((local, domain))
            if !bad && !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(format!("{address:?} is not a plain local@domain address")),
    }
}

/// Control characters would end a header early (header injection) or garble a subject.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The text as is when it is printable ASCII and short, else RFC 2047 encoded words (UTF-8,
/// base64) of at most 75 characters, folded onto continuation lines.
fn encode_header_text(text: &str) -> String {
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if printable && text.len() <= MAX_PLAIN_HEADER {
        return text.to_owned();
    }
    // 39 bytes of input are 52 of base64; with `=?utf-8?B?` and `?=` a word is 64 long, so
    // even the first line, after `Subject: `, stays within 78.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(format!("=?utf-8?B?{}?=", BASE64.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", BASE64.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

fn rfc2822(ns: i64) -> String {
    use time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

/// The event id as a Message-ID's left part (a dot-atom): the same event mailed twice after a
/// retry carries the same Message-ID, so mail systems can drop the copy.
fn message_id_local(event_id: &str) -> String {
    let mapped: String = event_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    let parts: Vec<&str> = mapped.split('.').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "event".into()
    } else {
        parts.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::tests::{alert, appliance};

    fn note(transition: Transition) -> Notification {
        Notification::new(&alert(42, 10), transition, &appliance(), 9, 0)
    }

    #[test]
    fn subject_starts_with_priority_and_appliance() {
        assert_eq!(
            subject(&note(Transition::Raised)),
            "[P1] site-appliance-7: array vault-data1 has failed"
        );
        assert_eq!(
            subject(&note(Transition::Cleared)),
            "[P1] site-appliance-7: cleared: array vault-data1 has failed"
        );
        let mut n = note(Transition::Raised);
        n.appliance.hostname = "evil\r\nBcc: x@y".into();
        assert!(!subject(&n).contains('\n'));
    }

    #[test]
    fn message_is_seven_bit_with_crlf_lines() {
        let to = vec!["noc@msp.example".to_owned()];
        let bytes = message(&note(Transition::Raised), "vault@msp.example", &to);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.is_ascii());
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(text.contains("Subject: [P1] site-appliance-7: array vault-data1 has failed\r\n"));
        assert!(text.contains("Message-ID: <tv-0007.poold.42.9@msp.example>\r\n"));
        assert!(text.contains("Content-Transfer-Encoding: 7bit\r\n"));
        assert!(text.contains("\r\nDetail:\r\n2 of 6 members missing\r\nsdc, sdf\r\n"));
    }

    #[test]
    fn non_ascii_is_encoded() {
        let mut n = note(Transition::Raised);
        n.alert.summary = "Prüfsumme falsch — ".repeat(5);
        let text = String::from_utf8(message(&n, "a@b.c", &["d@e.f".to_owned()])).expect("utf-8");
        assert!(text.is_ascii());
        assert!(text.contains("Subject: =?utf-8?B?"));
        assert!(text.contains("Content-Transfer-Encoding: base64"));
        for line in text.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
        }
    }

    #[test]
    fn addresses() {
        check_address("noc@msp.example").expect("plain");
        for bad in [
            "",
            "noc",
            "@x",
            "x@",
            "a b@c",
            "a@b>",
            "a@b\r\nRCPT",
            "ü@x.y",
            "a@b@c",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
