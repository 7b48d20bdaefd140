//! Reading a service's TOML config file.
//!
//! The service owns its config type (a `serde` struct, usually with `deny_unknown_fields` so
//! that a misspelt key is an error rather than a silently ignored setting); this module owns
//! reading the file and reporting what is wrong with it. A parse error reads like a compiler's:
//! `/etc/tiervault/replicad.toml:3:16: poll-seconds: invalid type: string "5", expected u64`,
//! one line, because it ends up in `systemctl status` and in the journal.
//!
//! Checks beyond the shape of the file (a version number, a minimum) stay with the service;
//! [`ConfigError::invalid`] gives their failures the same form.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config is a few kilobytes; this bounds what a wrong `--config /dev/zero` can cost.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A config file that cannot be used, named in every message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: reading", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_CONFIG_BYTES} bytes, which no config is", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{}:{line}: not UTF-8 text", .path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// Not TOML, or not the shape the service expects. `line` and `column` (1-based) are where
    /// toml put the problem; `key` is the dotted key whose value is wrong, when the message
    /// does not already name it.
    #[error("{}: {message}", location(.path, *.line, *.column, .key.as_deref()))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        key: Option<String>,
        message: String,
    },
    /// Well-formed, but refused by the service's own checks.
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

impl ConfigError {
    /// For the service's own checks after [`load`]: `invalid(path, "poll-seconds must be at
    /// least 1")`.
    pub fn invalid(path: &Path, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// The config file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::TooLarge { path }
            | ConfigError::NotUtf8 { path, .. }
            | ConfigError::Parse { path, .. }
            | ConfigError::Invalid { path, .. } => path,
        }
    }
}

fn location(path: &Path, line: Option<usize>, column: Option<usize>, key: Option<&str>) -> String {
    let mut s = path.display().to_string();
    if let Some(l) = line {
        s += &format!(":{l}");
        if let Some(c) = column {
            s += &format!(":{c}");
        }
    }
    if let Some(k) = key {
        s += &format!(": {k}");
    }
    s
}

/// Reads and parses a TOML config; errors name the file and, for parse errors, line:column and
/// the field/key.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = read(path)?;
    parse(path, &text)
}

/// The text of a config file: UTF-8, at most [`MAX_CONFIG_BYTES`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count();
        ConfigError::NotUtf8 {
            path: path.to_path_buf(),
            line,
        }
    })
}

/// Parses `text`, the contents of `path` (named in errors only; nothing is read).
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column, key) = match e.span() {
            Some(span) => {
                let (l, c) = line_column(text, span.start);
                let key = key_at(text, span).filter(|k| !e.message().contains(&format!("`{k}`")));
                (Some(l), Some(c), key)
            }
            None => (None, None, None),
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            key,
            // toml's messages end in a newline and sometimes span lines; the journal wants one.
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })
}

/// Resolves a relative path in a config against the config file's directory, so that a
/// config and the files it names can be moved together (and tests can use a temporary
/// directory). Absolute paths are returned as they are.
pub fn resolve(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config_path.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = floor_char_boundary(text, at);
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.matches('\n').count();
    (line, 1 + before[line_start..].chars().count())
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The dotted key whose value `span` points into, when the error's line is a plain
/// `key = value` (prefixed with the table header above it). toml's own messages for a wrong
/// value ("invalid type: string, expected u64") do not say which setting it was.
///
/// A guess from the text, so it stays quiet rather than guessing wrong: nothing when the span
/// is not to the right of an `=` on its line.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    let at = floor_char_boundary(text, span.start);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..at];
    let (key, _) = before.split_once('=')?;
    let key = bare(key)?;
    let table = text[..line_start]
        .lines()
        .rev()
        .find_map(header)
        .map(|h| format!("{h}."))
        .unwrap_or_default();
    Some(format!("{table}{key}"))
}

/// A key as written, quotes removed; None when it does not look like one.
fn bare(key: &str) -> Option<String> {
    let key = key.trim();
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.\"' ".contains(c));
    ok.then(|| key.replace(['"', '\''], ""))
}

/// The name in a `[table]` or `[[array.of.tables]]` header line.
fn header(line: &str) -> Option<String> {
    let line = line.split('#').next()?.trim();
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(inner);
    bare(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Conf {
        version: u32,
        vault: PathBuf,
        #[serde(default)]
        poll_seconds: Option<u64>,
        #[serde(default)]
        bandwidth: Option<Bandwidth>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Bandwidth {
        default: String,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("writing the config");
        p
    }

    #[test]
    fn loads_a_good_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "good.toml",
            "version = 1\nvault = \"/srv/v\"\n[bandwidth]\ndefault = \"unlimited\"\n",
        );
        let c: Conf = load(&p).expect("loads");
        assert_eq!(
            c,
            Conf {
                version: 1,
                vault: "/srv/v".into(),
                poll_seconds: None,
                bandwidth: Some(Bandwidth {
                    default: "unlimited".into()
                }),
            }
        );
    }

    #[test]
    fn bad_toml_names_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "broken.toml",
            "version = 1\nvault = \"/srv/v\"\npoll-seconds = = 3\n",
        );
        let e = load::<Conf>(&p).expect_err("not TOML");
        let s = e.to_string();
        assert!(s.starts_with(&format!("{}:3:", p.display())), "{s}");
        assert!(
            matches!(e, ConfigError::Parse { line: Some(3), .. }),
            "{e:?}"
        );
        assert!(!s.contains('\n'), "one line: {s:?}");
        assert_eq!(e.path(), p);
    }

    #[test]
    fn unknown_field_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "extra.toml",
            "version = 1\nvault = \"v\"\npol-seconds = 3\n",
        );
        let s = load::<Conf>(&p).expect_err("unknown field").to_string();
        assert!(s.contains("extra.toml:3:1"), "{s}");
        assert!(s.contains("`pol-seconds`"), "{s}");
        // The message names it already: no second copy in front.
        assert!(!s.contains(": pol-seconds:"), "{s}");
    }

    #[test]
    fn wrong_type_names_the_key_with_its_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "types.toml",
            "version = 1\nvault = \"v\"\npoll-seconds = \"5\"\n",
        );
        let s = load::<Conf>(&p).expect_err("string for u64").to_string();
        assert!(s.contains("types.toml:3:16: poll-seconds: "), "{s}");
        let p = write(
            dir.path(),
            "nested.toml",
            "version = 1\nvault = \"v\"\n\n[bandwidth] # the link\ndefault = 5\n",
        );
        let s = load::<Conf>(&p).expect_err("number for string").to_string();
        assert!(s.contains("nested.toml:5:11: bandwidth.default: "), "{s}");
    }

    #[test]
    fn missing_field_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "short.toml", "version = 1\n");
        let s = load::<Conf>(&p).expect_err("no vault").to_string();
        assert!(s.contains("short.toml"), "{s}");
        assert!(s.contains("`vault`"), "{s}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("absent.toml");
        let e = load::<Conf>(&p).expect_err("no file");
        assert!(e.to_string().contains("absent.toml"), "{e}");
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert!(chain.contains("No such file"), "{chain}");
    }

    #[test]
    fn binary_and_huge_files_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("binary.toml");
        std::fs::write(&p, b"version = 1\n\xff\xfe\n").expect("write");
        let e = load::<Conf>(&p).expect_err("not UTF-8");
        assert_eq!(e.to_string(), format!("{}:2: not UTF-8 text", p.display()));
        let p = dir.path().join("huge.toml");
        let f = std::fs::File::create(&p).expect("create");
        f.set_len(MAX_CONFIG_BYTES + 1).expect("set_len");
        let e = load::<Conf>(&p).expect_err("too large");
        assert!(matches!(e, ConfigError::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains("huge.toml"), "{e}");
    }

    #[test]
    fn service_checks_read_the_same() {
        let e = ConfigError::invalid(Path::new("/etc/x.toml"), "version 2 is not supported");
        assert_eq!(e.to_string(), "/etc/x.toml: version 2 is not supported");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let cfg = Path::new("/etc/tiervault/replicad.toml");
        assert_eq!(
            resolve(cfg, Path::new("certs/ca.pem")),
            Path::new("/etc/tiervault/certs/ca.pem")
        );
        assert_eq!(
            resolve(cfg, Path::new("/srv/vault")),
            Path::new("/srv/vault")
        );
        // A config named relative to the working directory keeps its files there too.
        assert_eq!(
            resolve(Path::new("replicad.toml"), Path::new("ca.pem")),
            Path::new("ca.pem")
        );
        assert_eq!(
            resolve(Path::new("conf/replicad.toml"), Path::new("../ca.pem")),
            Path::new("conf/../ca.pem")
        );
    }

    #[test]
    fn key_guess_stays_quiet_when_unsure() {
        assert_eq!(key_at("a = 1\n", 0..1), None);
        assert_eq!(key_at("x = [\n  \"a\", 3,\n]\n", 14..15), None);
        assert_eq!(key_at("[t]\n\"q k\" = 1\n", 12..13), Some("t.q k".into()));
        assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
        assert_eq!(line_column("ab\ncdé f", 6), (2, 3));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
