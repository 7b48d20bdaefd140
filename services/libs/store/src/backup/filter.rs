//! Include/exclude filters for tree backups: which entries below the backup roots are left out.

use std::path::Path;
use std::sync::Arc;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, IoContext, Result};

/// Which entries of a tree backup ([`super::Source::Paths`]) are backed up.
///
/// Patterns are shell globs (the `globset` crate's syntax: `*`, `?`, `[abc]`, `[!a-z]`, `{a,b}`,
/// `\` escapes) matched against each entry's absolute path, as bytes (names need not be
/// UTF-8; a non-UTF-8 byte is matched by `*`, `?` and `[!…]` like any other):
///
/// - `*`, `?` and `[…]` never match a `/`; `**` as a whole path component matches any number
///   of components (`/srv/**/cache`, `/srv/share/**`).
/// - A pattern starting with `/` is anchored at the file system root: `/srv/share/cache`
///   matches exactly that path.
/// - A pattern not starting with `/` matches at any depth, as if it began with `**/`: without
///   a `/` it matches an entry's file name anywhere (`*.tmp`, `node_modules`); with one it
///   matches trailing components of the path (`.cache/thumbnails`).
/// - A trailing `/` is ignored: a pattern matches files and directories alike. `.` and `..`
///   components and `//` are refused (paths are normalised, so they could never match), as is
///   an empty pattern.
///
/// Decisions, for every entry below a backup root:
///
/// - An entry matching an exclude pattern is left out. An excluded directory is not descended
///   into: nothing below it is listed, stat'ed or read.
/// - With no include pattern, everything not excluded is backed up. With at least one, a
///   non-directory entry (file, symlink, device, ...) is backed up only if its path or the
///   path of one of its ancestors matches an include pattern. Directories are always descended
///   (unless excluded) and kept in the snapshot so paths stay intact; a directory holding
///   nothing included is stored as an empty directory.
/// - Exclude wins over include.
/// - The backup roots themselves are never filtered out (only what lies below them).
///
/// Left-out entries are not errors and are not listed in the snapshot; the backup counts them
/// in [`super::Progress::excluded`] (an excluded directory counts once). The default filter
/// keeps everything.
#[derive(Clone, Default)]
pub struct Filter {
    inner: Option<Arc<Compiled>>,
}

struct Compiled {
    include_patterns: Vec<String>,
    exclude_patterns: Vec<String>,
    include: GlobSet,
    exclude: GlobSet,
}

impl Filter {
    /// Compile the patterns. A bad pattern is [`Error::BadPattern`] naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter> {
        if include.is_empty() && exclude.is_empty() {
            return Ok(Filter::default());
        }
        Ok(Filter {
            inner: Some(Arc::new(Compiled {
                include_patterns: include.to_vec(),
                exclude_patterns: exclude.to_vec(),
                include: compile_set(include)?,
                exclude: compile_set(exclude)?,
            })),
        })
    }

    /// Check one pattern (for a command line that validates its arguments early).
    pub fn check_pattern(pattern: &str) -> Result<()> {
        compile(pattern).map(|_| ())
    }

    /// The patterns of a pattern file, each checked: one per line, surrounding whitespace
    /// ignored, blank lines and lines starting with `#` skipped. A bad pattern is
    /// [`Error::BadPattern`] naming it, the file and the line.
    pub fn patterns_from_file(path: &Path) -> Result<Vec<String>> {
        let bytes = std::fs::read(path).ctx("reading pattern file", path)?;
        let mut out = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let at = || format!("{} line {}", path.display(), i + 1);
            let line = std::str::from_utf8(line).map_err(|_| Error::BadPattern {
                pattern: String::from_utf8_lossy(line).trim().to_owned(),
                reason: format!("not UTF-8 ({})", at()),
            })?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            compile(line).map_err(|e| match e {
                Error::BadPattern { pattern, reason } => Error::BadPattern {
                    pattern,
                    reason: format!("{reason} ({})", at()),
                },
                other => other,
            })?;
            out.push(line.to_owned());
        }
        Ok(out)
    }

    /// True when the filter keeps everything.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    pub fn include_patterns(&self) -> &[String] {
        self.inner.as_ref().map_or(&[], |c| &c.include_patterns)
    }

    pub fn exclude_patterns(&self) -> &[String] {
        self.inner.as_ref().map_or(&[], |c| &c.exclude_patterns)
    }

    /// True when `path` matches an exclude pattern.
    pub fn excludes(&self, path: &Path) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|c| !c.exclude.is_empty() && c.exclude.is_match(path))
    }

    /// True when there is at least one include pattern.
    pub fn has_includes(&self) -> bool {
        self.inner.as_ref().is_some_and(|c| !c.include.is_empty())
    }

    /// True when `path` itself matches an include pattern.
    pub fn includes(&self, path: &Path) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|c| !c.include.is_empty() && c.include.is_match(path))
    }

    /// True when everything below directory `dir` passes the include rule: there is no include
    /// pattern, or `dir` or one of its ancestors matches one.
    pub fn covers(&self, dir: &Path) -> bool {
        let Some(c) = &self.inner else { return true };
        if c.include.is_empty() {
            return true;
        }
        dir.ancestors()
            .any(|a| c.include.is_match_candidate(&Candidate::new(a)))
    }

    /// Whether the entry at `path` (not a backup root) is backed up, given its type and
    /// whether its directory is covered ([`Filter::covers`]).
    pub fn keeps(&self, path: &Path, is_dir: bool, covered: bool) -> bool {
        if self.excludes(path) {
            return false;
        }
        is_dir || covered || self.includes(path)
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.include_patterns() == other.include_patterns()
            && self.exclude_patterns() == other.exclude_patterns()
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("include", &self.include_patterns())
            .field("exclude", &self.exclude_patterns())
            .finish()
    }
}

fn compile_set(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(compile(p)?);
    }
    b.build().map_err(|e| Error::BadPattern {
        pattern: e.glob().unwrap_or_default().to_owned(),
        reason: e.kind().to_string(),
    })
}

fn compile(pattern: &str) -> Result<globset::Glob> {
    let bad = |reason: &str| Error::BadPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = pattern.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad(if pattern.is_empty() {
            "empty pattern"
        } else {
            "it names the file system root, which is never filtered"
        }));
    }
    let body = trimmed.strip_prefix('/').unwrap_or(trimmed);
    for c in body.split('/') {
        if c.is_empty() {
            return Err(bad("empty path component (`//`): it could never match"));
        }
        if c == "." || c == ".." {
            return Err(bad(
                "`.` and `..` could never match (paths are normalised): write an absolute \
                 path or a name",
            ));
        }
    }
    let full = if trimmed.starts_with('/') || trimmed == "**" || trimmed.starts_with("**/") {
        trimmed.to_owned()
    } else {
        format!("**/{trimmed}")
    };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| bad(&e.kind().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    fn f(include: &[&str], exclude: &[&str]) -> Filter {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Filter::new(&s(include), &s(exclude)).expect("valid patterns")
    }

    /// `keeps` for a file in a directory, computing the directory's cover as the walk does.
    fn keeps_file(filter: &Filter, path: &str) -> bool {
        let p = Path::new(path);
        filter.keeps(p, false, filter.covers(p.parent().expect("a parent")))
    }

    #[test]
    fn exclude_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Name patterns match the file name at any depth, never a directory part.
            ("*.tmp", "/srv/a.tmp", true),
            ("*.tmp", "/srv/deep/er/x.tmp", true),
            ("*.tmp", "/srv/a.tmp.keep", false),
            ("*.tmp", "/srv/x.tmp/inner", false),
            ("node_modules", "/srv/app/node_modules", true),
            ("node_modules", "/srv/app/node_modules2", false),
            ("?.log", "/a/b.log", true),
            ("?.log", "/a/bb.log", false),
            ("[ab].txt", "/x/a.txt", true),
            ("[!ab].txt", "/x/a.txt", false),
            ("{x,y}.c", "/x/y.c", true),
            // Anchored patterns match the absolute path only.
            ("/srv/cache", "/srv/cache", true),
            ("/srv/cache", "/other/srv/cache", false),
            ("/srv/cache/", "/srv/cache", true),
            ("/srv/*", "/srv/a", true),
            ("/srv/*", "/srv/a/b", false),
            // `**` crosses directories.
            ("/srv/**/cache", "/srv/cache", true),
            ("/srv/**/cache", "/srv/a/b/cache", true),
            ("/srv/**/cache", "/opt/a/cache", false),
            ("/srv/share/**", "/srv/share/a/b", true),
            ("/srv/share/**", "/srv/other/a", false),
            ("**/*.o", "/a/b/c.o", true),
            // Relative patterns with a `/` match trailing components.
            (".cache/thumbnails", "/home/u/.cache/thumbnails", true),
            (".cache/thumbnails", "/home/u/.cache/thumbnails/x", false),
            ("src/*.rs", "/p/src/lib.rs", true),
            ("src/*.rs", "/p/src/a/lib.rs", false),
            // `\` escapes a metacharacter.
            ("a\\*", "/x/a*", true),
            ("a\\*", "/x/ab", false),
        ];
        for (pattern, path, want) in cases {
            let filter = f(&[], &[pattern]);
            assert_eq!(
                filter.excludes(Path::new(path)),
                *want,
                "exclude {pattern:?} on {path:?}"
            );
            assert_eq!(
                keeps_file(&filter, path),
                !*want,
                "keeps with exclude {pattern:?} on {path:?}"
            );
        }
    }

    #[test]
    fn include_keeps_matches_and_descendants_of_matching_directories() {
        let filter = f(&["*.docx", "/srv/share/projects"], &[]);
        assert!(filter.has_includes());
        assert!(keeps_file(&filter, "/srv/share/a/report.docx"));
        assert!(!keeps_file(&filter, "/srv/share/a/report.pdf"));
        // Everything below an included directory, at any depth.
        assert!(keeps_file(&filter, "/srv/share/projects/x.pdf"));
        assert!(keeps_file(&filter, "/srv/share/projects/a/b/x.pdf"));
        // Directories are always descended and kept.
        assert!(filter.keeps(Path::new("/srv/share/other"), true, false));
        // A symlink or device is a non-directory: it needs a match too.
        assert!(!filter.keeps(Path::new("/srv/share/link"), false, false));
        // No include pattern: everything is covered.
        assert!(f(&[], &["x"]).covers(Path::new("/a")));
        assert!(Filter::default().covers(Path::new("/a")));
        assert!(Filter::default().keeps(Path::new("/a/b"), false, true));
    }

    #[test]
    fn exclude_wins_over_include() {
        let filter = f(&["/srv/share/projects", "*.docx"], &["*.tmp", "old"]);
        assert!(!keeps_file(&filter, "/srv/share/projects/a.tmp"));
        assert!(!keeps_file(&filter, "/srv/share/x/draft.docx.tmp"));
        assert!(keeps_file(&filter, "/srv/share/x/draft.docx"));
        // An excluded directory is left out even when covered by an include.
        assert!(!filter.keeps(Path::new("/srv/share/projects/old"), true, true));
        // An excluded file matching an include pattern itself.
        let both = f(&["*.docx"], &["secret.docx"]);
        assert!(!keeps_file(&both, "/a/secret.docx"));
        assert!(keeps_file(&both, "/a/public.docx"));
    }

    #[test]
    fn non_utf8_names_match_as_bytes() {
        let bad = |prefix: &[u8], name: &[u8]| {
            let mut v = prefix.to_vec();
            v.extend_from_slice(name);
            PathBuf::from(OsStr::from_bytes(&v))
        };
        let tmp = bad(b"/srv/d\xffir/", b"caf\xe9.tmp");
        let keep = bad(b"/srv/", b"caf\xe9.txt");
        let filter = f(&[], &["*.tmp"]);
        assert!(filter.excludes(&tmp));
        assert!(!filter.excludes(&keep));
        // `?` and `*` match a non-UTF-8 byte; `[!…]` too.
        assert!(f(&[], &["caf?.txt"]).excludes(&keep));
        assert!(f(&[], &["caf[!e].txt"]).excludes(&keep));
        assert!(f(&[], &["/srv/*/caf*"]).excludes(&tmp));
        // An include pattern on a directory with a non-UTF-8 name covers what is below it.
        let inc = f(&["/srv/d*ir"], &[]);
        assert!(inc.covers(tmp.parent().expect("parent")));
        assert!(!inc.covers(Path::new("/srv/other")));
        // Names that are not UTF-8 in both pattern-free and pattern-heavy filters never panic.
        let all = f(&["**"], &["{a,b}*", "[x-z]?", "/srv/**"]);
        let _ = all.keeps(&bad(b"/", b"\x80\x81\xfe"), false, false);
    }

    #[test]
    fn bad_patterns_are_named() {
        for pattern in ["[abc", "{a,b", "a/../b", "./cache", "a//b", "", "/"] {
            let err = Filter::new(&[], &[pattern.to_string()])
                .expect_err(&format!("{pattern:?} must be refused"));
            assert!(
                matches!(&err, Error::BadPattern { pattern: p, .. } if p == pattern),
                "{pattern:?}: {err:?}"
            );
            assert!(
                err.to_string().contains(&format!("{pattern:?}")),
                "the message names the pattern: {err}"
            );
            // Include patterns are checked the same way.
            assert!(Filter::new(&[pattern.to_string()], &[]).is_err());
            assert!(Filter::check_pattern(pattern).is_err());
        }
        let e = Filter::new(&[], &["ok".into(), "[bad".into()]).expect_err("refused");
        assert!(e.to_string().contains("\"[bad\""), "{e}");
    }

    #[test]
    fn pattern_files_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("excludes");
        std::fs::write(
            &p,
            "# temp files\n*.tmp\n\n   \n  /srv/cache/  \r\n#x\nnode_modules",
        )
        .expect("w");
        assert_eq!(
            Filter::patterns_from_file(&p).expect("read"),
            ["*.tmp", "/srv/cache/", "node_modules"]
        );
        std::fs::write(&p, "ok\n\n[bad\n").expect("w");
        let e = Filter::patterns_from_file(&p).expect_err("refused");
        assert!(
            matches!(&e, Error::BadPattern { pattern, reason }
                if pattern == "[bad" && reason.contains("line 3")),
            "{e:?}"
        );
        assert!(Filter::patterns_from_file(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn equality_and_emptiness() {
        assert!(Filter::default().is_empty());
        assert!(Filter::new(&[], &[]).expect("empty").is_empty());
        assert_eq!(f(&["a"], &["b"]), f(&["a"], &["b"]));
        assert_ne!(f(&["a"], &["b"]), f(&[], &["b"]));
        assert_ne!(f(&[], &["b"]), Filter::default());
        assert_eq!(f(&[], &["*.tmp"]).exclude_patterns(), ["*.tmp".to_string()]);
    }
}
