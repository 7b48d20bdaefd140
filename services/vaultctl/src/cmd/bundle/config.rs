//! The appliance's TOML configs, redacted line by line so that an engineer reads them as
//! written: every line stays, only secret values become `<redacted>`.
//!
//! A value is secret when its key's name (the last dotted segment, `_` read as `-`)
//! contains password, passwd, passphrase, secret, token, api-key, apikey, private or
//! credential; is `key` or ends in `-key`; or is the `value` of a header table
//! (`header = { name = "X-Api-Key", value = "…" }`). Such a key ending in `-file` or
//! `-path` (and `key`/`*-key` given a path) names a file holding a secret: the path stays,
//! and the file is never put in the bundle. `*-env` names an environment variable: kept.
//! http(s) URLs keep scheme, host and port only (a webhook's path is often its key).
//!
//! What is found is returned too: inline secret values (searched for everywhere else in the
//! bundle), the secret files and environment variables named, and the other settings
//! (state directories, the vault) that tell where the services keep their state.

use std::ops::Range;

use super::secrets::REDACTED;

const SECRET_WORDS: [&str; 9] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api-key",
    "apikey",
    "private",
    "credential",
];

#[derive(Debug, Default)]
pub struct ConfigScan {
    pub text: String,
    pub redacted: usize,
    /// Inline secret values: (key, value).
    pub values: Vec<(String, String)>,
    /// Files named as holding a secret: (key, path as written).
    pub secret_files: Vec<(String, String)>,
    /// Environment variables named as holding a secret.
    pub secret_envs: Vec<String>,
    /// The other string settings: (table, key, value).
    pub settings: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Keep,
    Redact,
    FileRef,
    EnvRef,
}

fn norm(name: &str) -> String {
    name.trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn path_like(v: &str) -> bool {
    v.starts_with('/')
        || v.starts_with("./")
        || v.starts_with("../")
        || [".key", ".pem", ".der"].iter().any(|e| v.ends_with(e))
}

fn classify(name: &str, table: &str, value: Option<&str>) -> Class {
    let secret = |n: &str| SECRET_WORDS.iter().any(|w| n.contains(w));
    let keyish =
        |n: &str| n == "key" || n.ends_with("-key") || (n == "value" && table.contains("header"));
    for suffix in ["-file", "-path"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return if secret(stem) || keyish(stem) {
                Class::FileRef
            } else {
                Class::Keep
            };
        }
    }
    if name.ends_with("-env") && secret(name) {
        return Class::EnvRef;
    }
    if name.ends_with("-dir") {
        return Class::Keep;
    }
    if keyish(name) && value.is_some_and(path_like) {
        return Class::FileRef;
    }
    if secret(name) || keyish(name) {
        return Class::Redact;
    }
    Class::Keep
}

/// The index of the quote closing the string opened at `open`, on this line.
fn string_end(b: &[u8], open: usize) -> Option<usize> {
    let q = b[open];
    let mut i = open + 1;
    while i < b.len() {
        if b[i] == q {
            return Some(i);
        }
        i += if q == b'"' && b[i] == b'\\' { 2 } else { 1 };
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// `a.b."c" =` at `from`: the last segment, normalised, and the index after `=`.
fn parse_key(line: &str, from: usize) -> Option<(String, usize)> {
    let b = line.as_bytes();
    let mut i = from;
    loop {
        i = skip_ws(b, i);
        let seg = match b.get(i)? {
            b'"' | b'\'' => {
                let end = string_end(b, i)?;
                let s = &line[i + 1..end];
                i = end + 1;
                s
            }
            c if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-' => {
                let n = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'-')
                    .count();
                let s = &line[i..i + n];
                i += n;
                s
            }
            _ => return None,
        };
        i = skip_ws(b, i);
        match b.get(i)? {
            b'.' => i += 1,
            b'=' => return Some((norm(seg), i + 1)),
            _ => return None,
        }
    }
}

/// What a line left open: a multi-line string or a compound value spanning lines.
#[derive(Debug, Clone)]
enum Open {
    Nothing,
    Text { delim: &'static str, secret: bool },
    Compound { depth: i32, secret: bool },
}

struct Line<'a> {
    text: &'a str,
    edits: Vec<(Range<usize>, String)>,
}

impl Line<'_> {
    fn redact(&mut self, r: Range<usize>, scan: &mut ConfigScan, key: &str) {
        let v = &self.text[r.clone()];
        if v.trim().is_empty() || v.starts_with(REDACTED) {
            return;
        }
        scan.values.push((key.to_owned(), unescape(v)));
        scan.redacted += 1;
        self.edits.push((r, REDACTED.to_owned()));
    }

    fn finish(mut self) -> String {
        self.edits.sort_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for (r, with) in self.edits {
            if r.start < at {
                continue;
            }
            out.push_str(&self.text[at..r.start]);
            out.push_str(&with);
            at = r.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// Walks `[`/`{` compounds from `from`, tracking depth across strings; with `secret`,
/// every string in them is redacted. Returns the index after the compound closed (or the
/// line's end, or a comment's start).
fn compound(
    line: &mut Line<'_>,
    from: usize,
    depth: &mut i32,
    secret: bool,
    key: &str,
    scan: &mut ConfigScan,
) -> usize {
    let b = line.text.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'[' | b'{' => *depth += 1,
            b']' | b'}' => {
                *depth -= 1;
                if *depth <= 0 {
                    return i + 1;
                }
            }
            b'#' => return b.len(),
            b'"' | b'\'' => {
                let Some(end) = string_end(b, i) else {
                    if secret {
                        line.redact(i + 1..b.len(), scan, key);
                    }
                    return b.len();
                };
                if secret {
                    line.redact(i + 1..end, scan, key);
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// http(s) URLs: scheme, host and port; user information and path become `<redacted>`.
fn shorten_url(v: &str) -> Option<(String, Vec<String>)> {
    let lower = v.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    let (scheme, rest) = v.split_once("://")?;
    let auth_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(auth_len);
    let mut parts = Vec::new();
    let host = match authority.rsplit_once('@') {
        Some((user, host)) => {
            parts.push(user.to_owned());
            if let Some((_, pw)) = user.split_once(':') {
                parts.push(pw.to_owned());
            }
            format!("{REDACTED}@{host}")
        }
        None => authority.to_owned(),
    };
    let path = if after.is_empty() || after == "/" {
        after.to_owned()
    } else {
        parts.push(after.trim_start_matches('/').to_owned());
        format!("/{REDACTED}")
    };
    let short = format!("{scheme}://{host}{path}");
    (short != v).then_some((short, parts))
}

/// Redacts one TOML file. Never fails: a line it cannot parse is kept for the generic rules
/// (`super::redact`), which run on every config afterwards.
pub fn redact_toml(text: &str) -> ConfigScan {
    let mut scan = ConfigScan::default();
    let mut table = String::new();
    let mut open = Open::Nothing;
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let mut line = Line {
            text: raw,
            edits: Vec::new(),
        };
        open = match open {
            Open::Text { delim, secret } => match raw.find(delim) {
                Some(end) => {
                    if secret {
                        line.redact(0..end, &mut scan, "(multi-line value)");
                    }
                    Open::Nothing
                }
                None => {
                    if secret {
                        line.redact(0..raw.len(), &mut scan, "(multi-line value)");
                    }
                    Open::Text { delim, secret }
                }
            },
            Open::Compound { mut depth, secret } => {
                compound(&mut line, 0, &mut depth, secret, "(array)", &mut scan);
                if depth > 0 {
                    Open::Compound { depth, secret }
                } else {
                    Open::Nothing
                }
            }
            Open::Nothing => {
                let t = raw.trim_start();
                if t.starts_with('[') {
                    let inner = t.trim_start_matches('[');
                    let inner = inner.split(']').next().unwrap_or_default();
                    table = inner.rsplit('.').next().map(norm).unwrap_or_default();
                    Open::Nothing
                } else if let Some((key, eq)) = parse_key(raw, 0) {
                    pair(&mut line, &key, eq, &table, &mut scan)
                } else {
                    Open::Nothing
                }
            }
        };
        lines.push(line.finish());
    }
    scan.text = lines.join("\n");
    scan
}

/// One `key = value`; returns what it leaves open.
fn pair(line: &mut Line<'_>, key: &str, eq: usize, table: &str, scan: &mut ConfigScan) -> Open {
    let b = line.text.as_bytes();
    let v = skip_ws(b, eq);
    let rest = &line.text[v..];
    for delim in ["\"\"\"", "'''"] {
        if let Some(body) = rest.strip_prefix(delim) {
            let secret = classify(key, table, None) == Class::Redact;
            return match body.find(delim) {
                Some(end) => {
                    if secret {
                        line.redact(v + 3..v + 3 + end, scan, key);
                    }
                    Open::Nothing
                }
                None => {
                    if secret {
                        line.redact(v + 3..line.text.len(), scan, key);
                    }
                    Open::Text { delim, secret }
                }
            };
        }
    }
    match b.get(v) {
        Some(b'"' | b'\'') => {
            let end = string_end(b, v).unwrap_or(b.len());
            let value = unescape(&line.text[v + 1..end]);
            match classify(key, table, Some(&value)) {
                Class::Redact => line.redact(v + 1..end, scan, key),
                Class::FileRef => scan.secret_files.push((key.to_owned(), value)),
                Class::EnvRef => scan.secret_envs.push(value),
                Class::Keep => {
                    if let Some((short, parts)) = shorten_url(&value) {
                        scan.values
                            .extend(parts.into_iter().map(|p| (key.to_owned(), p)));
                        scan.redacted += 1;
                        line.edits.push((v + 1..end, short));
                    }
                    scan.settings
                        .push((table.to_owned(), key.to_owned(), value));
                }
            }
            Open::Nothing
        }
        Some(b'{') if classify(key, table, None) != Class::Redact => {
            inline_table(line, v + 1, key, scan);
            Open::Nothing
        }
        Some(b'[' | b'{') => {
            let secret = classify(key, table, None) == Class::Redact;
            let mut depth = 0;
            compound(line, v, &mut depth, secret, key, scan);
            if depth > 0 {
                Open::Compound { depth, secret }
            } else {
                Open::Nothing
            }
        }
        Some(_) => {
            if classify(key, table, None) == Class::Redact {
                let len = line.text[v..].find('#').unwrap_or(line.text.len() - v);
                let token = line.text[v..v + len].trim_end().len();
                line.redact(v..v + token, scan, key);
            }
            Open::Nothing
        }
        None => Open::Nothing,
    }
}

/// The pairs of `{ a = "x", b = "y" }`, classified with the outer key as their table (so
/// `header = { name = …, value = … }` redacts `value`).
fn inline_table(line: &mut Line<'_>, mut i: usize, table: &str, scan: &mut ConfigScan) {
    let b = line.text.as_bytes();
    loop {
        while matches!(b.get(i), Some(b' ' | b'\t' | b',')) {
            i += 1;
        }
        if matches!(b.get(i), None | Some(b'}' | b'#')) {
            return;
        }
        let Some((key, eq)) = parse_key(line.text, i) else {
            return;
        };
        let v = skip_ws(b, eq);
        match b.get(v) {
            Some(b'"' | b'\'') => {
                let end = string_end(b, v).unwrap_or(b.len());
                let value = unescape(&line.text[v + 1..end]);
                match classify(&key, table, Some(&value)) {
                    Class::Redact => line.redact(v + 1..end, scan, &key),
                    Class::FileRef => scan.secret_files.push((key.clone(), value)),
                    Class::EnvRef => scan.secret_envs.push(value),
                    Class::Keep => scan.settings.push((table.to_owned(), key.clone(), value)),
                }
                i = end + 1;
            }
            Some(b'[' | b'{') => {
                let secret = classify(&key, table, None) == Class::Redact;
                let mut depth = 0;
                i = compound(line, v, &mut depth, secret, &key, scan);
            }
            Some(_) => {
                let len = b[v..]
                    .iter()
                    .take_while(|c| !matches!(c, b',' | b'}'))
                    .count();
                if classify(&key, table, None) == Class::Redact {
                    let token = line.text[v..v + len].trim_end().len();
                    line.redact(v..v + token, scan, &key);
                }
                i = v + len;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# /etc/tiervault/poold.toml
state-dir = "/var/lib/tiervault/poold"
vault = "/srv/tiervault/vault"
key = "/etc/tiervault/appliance.key"
key-file = "/etc/tiervault/vault.key"
api_token = "tok_live_123456"
encryption-key = "00112233445566778899"
password = 'literal-pass' # the BMC's
max_secret_age = 30

[[notify.webhook]]
url = "https://hook:HookPw-7Q2x@psa.msp.example:8443/hooks/T1/XyZsecretpath?x=1"
token-file = "/etc/tiervault/secrets/psa-token"
header = { name = "X-Api-Key", value = "inline-header-secret" }

[bmc.transport]
password_file = "/etc/tiervault/bmc.password"
password_env = "TIERVAULT_BMC_PASSWORD"

[smtp.header]
value = "another-header-secret"

[extra]
tokens = [
  "first-token-value",
  "second-token-value",
]
passphrase = """
line-one-secret
line-two-secret
"""
after = "kept"
"#;

    #[test]
    fn redacts_values_and_keeps_every_line() {
        let s = redact_toml(SAMPLE);
        assert_eq!(s.text.lines().count(), SAMPLE.lines().count());
        for secret in [
            "tok_live_123456",
            "00112233445566778899",
            "literal-pass",
            "HookPw-7Q2x",
            "XyZsecretpath",
            "inline-header-secret",
            "another-header-secret",
            "first-token-value",
            "second-token-value",
            "line-one-secret",
            "line-two-secret",
        ] {
            assert!(!s.text.contains(secret), "{secret} left in:\n{}", s.text);
            assert!(
                s.values.iter().any(|(_, v)| v.contains(secret)),
                "{secret} not returned"
            );
        }
        for kept in [
            "state-dir = \"/var/lib/tiervault/poold\"",
            "key = \"/etc/tiervault/appliance.key\"",
            "key-file = \"/etc/tiervault/vault.key\"",
            "password = '<redacted>' # the BMC's",
            "max_secret_age = <redacted>",
            "url = \"https://<redacted>@psa.msp.example:8443/<redacted>\"",
            "header = { name = \"X-Api-Key\", value = \"<redacted>\" }",
            "password_env = \"TIERVAULT_BMC_PASSWORD\"",
            "after = \"kept\"",
        ] {
            assert!(s.text.contains(kept), "{kept} missing from:\n{}", s.text);
        }
        let files: Vec<&str> = s.secret_files.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(
            files,
            [
                "/etc/tiervault/appliance.key",
                "/etc/tiervault/vault.key",
                "/etc/tiervault/secrets/psa-token",
                "/etc/tiervault/bmc.password"
            ]
        );
        assert_eq!(s.secret_envs, ["TIERVAULT_BMC_PASSWORD"]);
        assert!(s
            .settings
            .iter()
            .any(|(_, k, v)| k == "state-dir" && v == "/var/lib/tiervault/poold"));
    }

    #[test]
    fn odd_lines_do_not_panic() {
        for t in [
            "=",
            "a =",
            "a = \"",
            "[",
            "[[",
            "a.\"b",
            "x = {",
            "x = { y = ",
            "k = '''",
            "password = [\"a\"",
            "a = { password = [",
            "\u{e9} = 1",
            "key = \"\\\"",
        ] {
            let _ = redact_toml(t);
        }
    }
}
