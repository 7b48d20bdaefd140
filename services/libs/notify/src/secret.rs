//! Tokens and passwords: read from files named in the configuration, kept out of every log,
//! error and `Debug` output.

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::NotifyError;

/// A secret file larger than this is a wrong path (a certificate bundle, a log), not a token.
const MAX_SECRET_BYTES: u64 = 16 * 1024;

/// A token, password or secret header value. It has no `Display`, and its `Debug` shows
/// `<redacted>`, so it cannot end up in a log line or an error by accident; only
/// [`Secret::expose`] gives the text, at the one place it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret given inline (a configuration value, a test).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret from `path`: one line, the trailing newline that editors add removed.
    /// `context` names the target for the error. A file readable by everyone is used but
    /// warned about: the appliance keeps working, and the MSP sees what to fix.
    pub fn from_file(path: &Path, context: &str) -> Result<Secret, NotifyError> {
        let fail = |reason: String| NotifyError::Secret {
            context: context.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let file = fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("is not a regular file".into()));
        }
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                target_name = context,
                path = %path.display(),
                "secret file is readable by every user; chmod o-r it"
            );
        }
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > MAX_SECRET_BYTES {
            return Err(fail(format!("is larger than {MAX_SECRET_BYTES} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".into()))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(fail("is empty".into()));
        }
        // A control character would end a header or an SMTP line early: header injection.
        if value.chars().any(char::is_control) {
            return Err(fail(
                "contains a control character (more than one line?)".into(),
            ));
        }
        Ok(Secret(value.to_owned()))
    }

    /// The secret itself, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_and_never_shows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        fs::write(&path, "tok-123\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let secret = Secret::from_file(&path, "webhook t").expect("read");
        assert_eq!(secret.expose(), "tok-123");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn rejects_empty_multiline_and_missing_files_without_quoting_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").expect("write");
        let two = dir.path().join("two");
        fs::write(&two, "line-one-secret\nline-two\n").expect("write");
        for path in [&empty, &two, &dir.path().join("absent")] {
            let err = Secret::from_file(path, "smtp mail").expect_err("must fail");
            let text = err.to_string();
            assert!(text.contains("smtp mail"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(!text.contains("line-one-secret"), "{text}");
        }
    }
}
