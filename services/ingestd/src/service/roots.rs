//! Which paths a caller may name: backups only under the backup roots, restores only under
//! the restore roots.

use std::path::{Path, PathBuf};

use tiervault_bus::BusError;

/// `path` must lie under one of `roots` (after resolving symlinks and `..` in the part that
/// exists), so a caller cannot reach outside them with `/mnt/../etc` or a planted symlink.
/// A restore target may not exist yet (`may_be_new`): its nearest existing ancestor is checked.
pub fn within_roots(
    path: &Path,
    roots: &[PathBuf],
    field: &str,
    may_be_new: bool,
) -> Result<(), BusError> {
    if roots.is_empty() {
        return Err(BusError::NotConfigured(format!(
            "{field} is empty in the ingest service's config, so no path is allowed"
        )));
    }
    if !path.is_absolute() {
        return Err(BusError::InvalidArgument(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(BusError::PathNotAllowed(format!(
            "{} contains \"..\"",
            path.display()
        )));
    }
    let mut existing = path.to_path_buf();
    while may_be_new && !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| BusError::InvalidArgument(format!("{}: {e}", path.display())))?;
    let allowed = roots
        .iter()
        .any(|r| r.canonicalize().is_ok_and(|root| real.starts_with(&root)));
    if allowed {
        Ok(())
    } else {
        Err(BusError::PathNotAllowed(format!(
            "{} is outside {field} ({})",
            path.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_admit_only_what_lies_beneath_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("nas");
        let other = dir.path().join("etc");
        std::fs::create_dir_all(root.join("share")).expect("mkdir");
        std::fs::create_dir_all(&other).expect("mkdir");
        std::os::unix::fs::symlink(&other, root.join("escape")).expect("symlink");
        let roots = vec![root.clone()];
        assert!(within_roots(&root.join("share"), &roots, "backup-roots", false).is_ok());
        for (p, want) in [
            (other.clone(), "PathNotAllowed"),
            (root.join("escape"), "PathNotAllowed"),
            (root.join("share/../../etc"), "PathNotAllowed"),
            (PathBuf::from("share"), "InvalidArgument"),
            (root.join("absent"), "InvalidArgument"),
        ] {
            let e = within_roots(&p, &roots, "backup-roots", false).expect_err("refused");
            assert!(format!("{e:?}").starts_with(want), "{}: {e:?}", p.display());
        }
        // A restore target may be new, but its existing part must be inside.
        assert!(within_roots(&root.join("new/dir"), &roots, "restore-roots", true).is_ok());
        assert!(within_roots(&root.join("escape/new"), &roots, "restore-roots", true).is_err());
        let e = within_roots(&root, &[], "restore-roots", true).expect_err("none");
        assert!(matches!(e, BusError::NotConfigured(_)), "{e:?}");
    }
}
