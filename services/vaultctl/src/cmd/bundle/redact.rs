//! The rules applied to every text put into the bundle, and the same rules as the check of
//! what was written: a text is clean when [`spans`] finds nothing in it.
//!
//! - known secret values (from key, token and password files and inline config values), in
//!   every form [`super::secrets`] derives;
//! - PEM private key blocks;
//! - the user name and password of URLs (`https://user:pw@host`);
//! - `Authorization: Bearer …` / `Basic …` credentials;
//! - the value of an assignment whose name says it is secret (`password = "…"`,
//!   `"api_key": "…"`, `token=…`), except names of files, paths, directories and
//!   environment variables (`token-file = "/etc/…"` stays readable).
//!
//! Each match becomes `<redacted>`; the rest of the line is kept.

use std::ops::Range;
use std::sync::OnceLock;

use super::secrets::{Needles, Secrets, REDACTED};

/// Words that make an assignment's value secret anywhere (logs, state files, configs).
const SECRET_WORDS: [&str; 12] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api-key",
    "api_key",
    "apikey",
    "private-key",
    "private_key",
    "privatekey",
    "credential",
];

/// Names ending like this hold where a secret is, not the secret.
const REFERENCE_SUFFIXES: [&str; 4] = ["file", "path", "dir", "env"];

/// Why a span is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A known value, from the source with this index in [`Secrets`].
    Known(usize),
    PemKey,
    UrlUserinfo,
    AuthHeader,
    Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub range: Range<usize>,
    pub rule: Rule,
}

/// Everything in `text` that must not leave the machine.
pub fn spans(text: &[u8], secrets: &Secrets) -> Vec<Span> {
    let mut out: Vec<Span> = secrets
        .find(text)
        .into_iter()
        .map(|h| Span {
            range: h.range,
            rule: Rule::Known(h.source),
        })
        .collect();
    let lower = text.to_ascii_lowercase();
    pem_spans(&lower, &mut out);
    userinfo_spans(&lower, &mut out);
    auth_header_spans(&lower, &mut out);
    assignment_spans(&lower, &mut out);
    out
}

/// A redacted text and what was done to it.
pub struct Redaction {
    pub text: Vec<u8>,
    /// Spans redacted by the pattern rules.
    pub by_rule: usize,
    /// Known values redacted: (source index, occurrences).
    pub known: Vec<(usize, usize)>,
}

pub fn redact(text: &[u8], secrets: &Secrets) -> Redaction {
    let mut found = spans(text, secrets);
    let mut known: Vec<(usize, usize)> = Vec::new();
    let mut by_rule = 0;
    for s in &found {
        match s.rule {
            Rule::Known(src) => match known.iter_mut().find(|(k, _)| *k == src) {
                Some((_, n)) => *n += 1,
                None => known.push((src, 1)),
            },
            _ => by_rule += 1,
        }
    }
    found.sort_by_key(|s| (s.range.start, s.range.end));
    // Overlapping spans are merged so that no piece of a secret survives between them.
    let mut merged: Vec<Range<usize>> = Vec::new();
    for s in found {
        match merged.last_mut() {
            Some(last) if s.range.start < last.end => last.end = last.end.max(s.range.end),
            _ => merged.push(s.range),
        }
    }
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for r in merged {
        out.extend_from_slice(&text[at..r.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&text[at..]);
    Redaction {
        text: out,
        by_rule,
        known,
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn is_redacted(lower: &[u8], at: usize) -> bool {
    lower[at..].starts_with(REDACTED.as_bytes())
}

/// `-----BEGIN … PRIVATE KEY-----` through its END line (to the end of the text when the
/// END is missing); a stray marker line on its own.
fn pem_spans(lower: &[u8], out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(p) = find(lower, b"private key", from) {
        let tail = &lower[p + 11..];
        let marker_end = if tail.starts_with(b"-----") {
            p + 16
        } else if tail.starts_with(b" block-----") {
            p + 22
        } else {
            from = p + 11;
            continue;
        };
        let line_start = lower[..p]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let Some(dashes) = find(&lower[..p], b"-----", line_start) else {
            from = marker_end;
            continue;
        };
        let end = if lower[dashes..].starts_with(b"-----begin") {
            match find(lower, b"-----end", marker_end) {
                Some(e) => find(lower, b"-----", e + 8).map_or(lower.len(), |d| d + 5),
                None => lower.len(),
            }
        } else {
            marker_end
        };
        out.push(Span {
            range: dashes..end,
            rule: Rule::PemKey,
        });
        from = end;
    }
}

fn authority_end(b: u8) -> bool {
    b.is_ascii_whitespace() || b"/?#\"'<>\\)]},`".contains(&b)
}

/// The user name and password of a URL: everything between `://` and the last `@` of the
/// authority.
fn userinfo_spans(lower: &[u8], out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(p) = find(lower, b"://", from) {
        let start = p + 3;
        let end = lower[start..]
            .iter()
            .position(|&b| authority_end(b))
            .map_or(lower.len(), |i| start + i);
        if let Some(at) = lower[start..end].iter().rposition(|&b| b == b'@') {
            if at > 0 && !is_redacted(lower, start) {
                out.push(Span {
                    range: start..start + at,
                    rule: Rule::UrlUserinfo,
                });
            }
        }
        from = start;
    }
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._~+/=-".contains(&b)
}

/// `Bearer <token>` anywhere; `Basic <credentials>` on a line that mentions Authorization.
fn auth_header_spans(lower: &[u8], out: &mut Vec<Span>) {
    for (word, needs_header) in [(&b"bearer "[..], false), (&b"basic "[..], true)] {
        let mut from = 0;
        while let Some(p) = find(lower, word, from) {
            from = p + word.len();
            let mut start = from;
            while lower.get(start) == Some(&b' ') {
                start += 1;
            }
            let len = lower[start..]
                .iter()
                .take_while(|&&b| token_char(b))
                .count();
            if len == 0 {
                continue;
            }
            if needs_header {
                let line_start = lower[..p]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                if find(&lower[line_start..p], b"authorization", 0).is_none() {
                    continue;
                }
            }
            out.push(Span {
                range: start..start + len,
                rule: Rule::AuthHeader,
            });
        }
    }
}

fn words() -> &'static Needles {
    static WORDS: OnceLock<Needles> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut n = Needles::default();
        for (i, w) in SECRET_WORDS.iter().enumerate() {
            n.add(w.as_bytes(), i);
        }
        n
    })
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The value of `<name with a secret word> = value` or `: value`, quoted or bare.
fn assignment_spans(lower: &[u8], out: &mut Vec<Span>) {
    for hit in words().find(lower) {
        if let Some(range) = assignment_value(lower, hit.range) {
            out.push(Span {
                range,
                rule: Rule::Assignment,
            });
        }
    }
}

fn skip_blanks(lower: &[u8], mut i: usize) -> usize {
    while matches!(lower.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn assignment_value(lower: &[u8], word: Range<usize>) -> Option<Range<usize>> {
    let mut start = word.start;
    while start > 0 && name_char(lower[start - 1]) {
        start -= 1;
    }
    let mut i = word.end;
    while i < lower.len() && name_char(lower[i]) {
        i += 1;
    }
    let name = &lower[start..i];
    if REFERENCE_SUFFIXES
        .iter()
        .any(|s| name.ends_with(s.as_bytes()))
    {
        return None;
    }
    if matches!(lower.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    i = skip_blanks(lower, i);
    match lower.get(i) {
        Some(b'=') if lower.get(i + 1) != Some(&b'=') => {}
        Some(b':') if !lower[i..].starts_with(b"://") => {}
        _ => return None,
    }
    i = skip_blanks(lower, i + 1);
    let &c = lower.get(i)?;
    if is_redacted(lower, i) {
        return None;
    }
    if c == b'"' || c == b'\'' {
        let begin = i + 1;
        let mut j = begin;
        while j < lower.len() && lower[j] != c && lower[j] != b'\n' {
            j += if lower[j] == b'\\' && c == b'"' { 2 } else { 1 };
        }
        let end = j.min(lower.len());
        return (end > begin && !is_redacted(lower, begin)).then_some(begin..end);
    }
    let len = lower[i..]
        .iter()
        .take_while(|&&b| !b.is_ascii_whitespace() && !b",;&)}]\"'<>[{".contains(&b))
        .count();
    let token = &lower[i..i + len];
    let plain = token.iter().all(u8::is_ascii_digit)
        || matches!(token, b"true" | b"false" | b"null" | b"none");
    (len > 0 && !plain).then_some(i..i + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(text: &str) -> String {
        String::from_utf8(redact(text.as_bytes(), &Secrets::default()).text).expect("utf8")
    }

    #[test]
    fn assignments_in_many_syntaxes() {
        assert_eq!(red("password = \"hunter22\""), "password = \"<redacted>\"");
        assert_eq!(
            red("{\"api_key\": \"abc123x\", \"summary\": \"ok\"}"),
            "{\"api_key\": \"<redacted>\", \"summary\": \"ok\"}"
        );
        assert_eq!(
            red("GET /x?token=abc123&y=1"),
            "GET /x?token=<redacted>&y=1"
        );
        assert_eq!(
            red("  DB_PASSWORD=s3cr3t-value"),
            "  DB_PASSWORD=<redacted>"
        );
        assert_eq!(red("# secret: old-one\nnext"), "# secret: <redacted>\nnext");
        // References and plain values stay readable.
        for kept in [
            "token-file = \"/etc/tiervault/secrets/psa-token\"",
            "password_file = \"/etc/tiervault/bmc.password\"",
            "password_env = \"TIERVAULT_BMC_PASSWORD\"",
            "\"token_count\": 12",
            "the token expired",
            "\"secret_list\": [1, 2]",
            "url = \"tiervault://vault:7443\"",
        ] {
            assert_eq!(red(kept), kept);
        }
    }

    #[test]
    fn urls_headers_and_pem_blocks() {
        assert_eq!(
            red("url = \"https://user:pw@psa.example/hooks\""),
            "url = \"https://<redacted>@psa.example/hooks\""
        );
        assert_eq!(
            red("Authorization: Bearer eyJhbGc.x-y_z\n"),
            "Authorization: Bearer <redacted>\n"
        );
        assert_eq!(
            red("Authorization: Basic dXNlcjpwdw=="),
            "Authorization: Basic <redacted>"
        );
        assert_eq!(red("a basic setup"), "a basic setup");
        let pem =
            "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIabc\n-----END RSA PRIVATE KEY-----\nafter";
        assert_eq!(red(pem), "before\n<redacted>\nafter");
        assert_eq!(
            red("x -----BEGIN PRIVATE KEY-----\nMIIabc"),
            "x <redacted>",
            "a block cut short is redacted to the end"
        );
    }

    #[test]
    fn known_values_are_counted_and_merged() {
        let mut s = Secrets::default();
        s.add_value("pass", b"correct-horse");
        s.add_value("tok", b"horse-battery");
        let r = redact(b"x correct-horse-battery y", &s);
        assert_eq!(r.text, b"x <redacted> y");
        assert_eq!(r.known.len(), 2);
    }

    #[test]
    fn redacted_text_has_nothing_left_to_find() {
        let mut s = Secrets::default();
        s.add_value("p", b"P4ssw0rd-long");
        let samples = [
            "password = \"P4ssw0rd-long\" # and secret=abc\"def",
            "token: 'x' token: \"y\" https://a:b@c/ https://d@e",
            "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n-----END PRIVATE KEY-----",
            "Bearer   tok.en Authorization: Basic Zm9v passphrase=P4ssw0rd-long<x>",
            "apikey=\"unterminated\npassword=\"\"",
        ];
        for t in samples {
            let r = redact(t.as_bytes(), &s);
            let left = spans(&r.text, &s);
            assert!(
                left.is_empty(),
                "{t:?} -> {:?} still has {left:?}",
                String::from_utf8_lossy(&r.text)
            );
        }
    }
}
