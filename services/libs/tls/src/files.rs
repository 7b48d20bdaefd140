//! Durable writes and labelled PEM reads.

use std::fs;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Mode for private keys: readable by the service account only.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Mode for certificates, which are public.
pub(crate) const CERT_MODE: u32 = 0o644;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one,
/// never a torn key (see [`tiervault_sys::durable::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    tiervault_sys::durable::write_atomic(path, bytes, mode).map_err(|source| TlsError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in `pem`, in order (leaf first for a chain).
pub(crate) fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem {
            what: what.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey {
            what: what.to_owned(),
        }),
        Err(source) => Err(TlsError::BadPem {
            what: what.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        write_atomic(&path, b"one", KEY_MODE).expect("first write");
        write_atomic(&path, b"two", KEY_MODE).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn missing_directory_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent").join("k.pem");
        let err = write_atomic(&path, b"x", KEY_MODE).expect_err("no directory");
        assert!(matches!(err, TlsError::WriteFile { .. }), "{err:?}");
        assert!(err.to_string().contains("k.pem"), "{err}");
    }

    #[test]
    fn pem_without_items_is_reported_as_such() {
        assert!(matches!(
            certs(b"nothing here", "x.pem"),
            Err(TlsError::NoCertificate { what }) if what == "x.pem"
        ));
        assert!(matches!(
            private_key(b"nothing here", "x.key"),
            Err(TlsError::NoPrivateKey { what }) if what == "x.key"
        ));
    }
}
