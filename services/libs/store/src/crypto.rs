//! Keys and blob sealing (docs/format.md sections 3 and 4).
//!
//! AES-256-GCM comes from ring: on this hardware class its VAES/AVX-512 code runs several times
//! faster than RustCrypto's `aes-gcm` (measured by `vaultctl bench`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;

use crate::blob::{BlobHeader, Kind, HEADER_LEN};
use crate::error::{Error, Result};
use crate::id::Id;

pub const TAG_LEN: usize = 16;
/// A writer takes a fresh key id before its counter reaches this (format.md 4.2).
const COUNTER_LIMIT: u64 = 1 << 32;

pub fn fill_random(buf: &mut [u8]) {
    // The OS CSPRNG failing is not recoverable and not caused by input: abort loudly.
    getrandom::getrandom(buf).expect("the operating system's random number generator failed");
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut out = [0u8; 32];
    prk.expand(info, Len(32))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 expand of 32 bytes cannot fail");
    out
}

/// The vault's key material, derived from the master key.
pub struct Keys {
    master: [u8; 32],
    vault_id: [u8; 32],
    id_key: [u8; 32],
    cache: Mutex<HashMap<[u8; 16], Arc<LessSafeKey>>>,
}

impl Keys {
    pub fn new(master: [u8; 32], vault_id: [u8; 32]) -> Keys {
        let id_key = hkdf32(&vault_id, &master, &[b"tiervault v1 chunk-id"]);
        Keys {
            master,
            vault_id,
            id_key,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn master(&self) -> &[u8; 32] {
        &self.master
    }

    /// The vault these keys belong to (bound into every wrapped master key).
    pub fn vault_id(&self) -> &[u8; 32] {
        &self.vault_id
    }

    /// Keyed BLAKE3 id of a data or meta blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    fn derive_blob_key(&self, key_id: &[u8; 16]) -> LessSafeKey {
        let k = hkdf32(
            &self.vault_id,
            &self.master,
            &[b"tiervault v1 blob", key_id],
        );
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).expect("32-byte AES-256 key"))
    }

    fn blob_key(&self, key_id: &[u8; 16]) -> Arc<LessSafeKey> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = cache.get(key_id) {
            return k.clone();
        }
        if cache.len() > 4096 {
            cache.clear();
        }
        let k = Arc::new(self.derive_blob_key(key_id));
        cache.insert(*key_id, k.clone());
        k
    }

    /// A sealer for one writer: its own key id and nonce counter.
    pub fn sealer(self: &Arc<Self>) -> Sealer {
        Sealer::new(self.clone())
    }

    /// Authenticate and decrypt a stored data/meta blob; returns the (possibly compressed)
    /// payload and the header. `aad_prefix` is the id (or, for a snapshot body, its file prefix).
    pub fn open<'a>(
        &self,
        aad_prefix: &[u8],
        stored: &'a mut [u8],
    ) -> std::result::Result<(BlobHeader, &'a mut [u8]), &'static str> {
        let hdr = BlobHeader::decode(stored)?;
        if hdr.kind == Kind::Refs {
            return Err("refs blobs are not encrypted");
        }
        let (h, payload) = stored.split_at_mut(HEADER_LEN);
        if payload.len() < TAG_LEN {
            return Err("shorter than an authentication tag");
        }
        let key = self.blob_key(&hdr.key_id);
        let aad = aad_bytes(aad_prefix, h);
        let plain = key
            .open_in_place(nonce(hdr.counter), Aad::from(&aad[..]), payload)
            .map_err(|_| "authentication failed (AEAD tag mismatch)")?;
        Ok((hdr, plain))
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad_bytes(prefix: &[u8], header: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + header.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(header);
    v
}

/// Encrypts blobs for one writer (format.md 4.2: one key id, counter 0, 1, 2, …).
pub struct Sealer {
    keys: Arc<Keys>,
    key_id: [u8; 16],
    key: Arc<LessSafeKey>,
    counter: u64,
}

impl Sealer {
    fn new(keys: Arc<Keys>) -> Sealer {
        let mut key_id = [0u8; 16];
        fill_random(&mut key_id);
        let key = Arc::new(keys.derive_blob_key(&key_id));
        Sealer {
            keys,
            key_id,
            key,
            counter: 0,
        }
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Append the stored form of a blob to `out`: header, then `payload` encrypted in place.
    /// `payload` is the (possibly compressed) plaintext.
    pub fn seal_into(
        &mut self,
        aad_prefix: &[u8],
        kind: Kind,
        compressed: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if self.counter >= COUNTER_LIMIT {
            *self = Sealer::new(self.keys.clone());
        }
        let hdr = BlobHeader {
            compressed,
            kind,
            key_id: self.key_id,
            counter: self.counter,
        };
        self.counter += 1;
        let start = out.len();
        out.extend_from_slice(&hdr.encode());
        out.extend_from_slice(payload);
        let aad = aad_bytes(aad_prefix, &out[start..start + HEADER_LEN]);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(hdr.counter),
                Aad::from(&aad[..]),
                &mut out[start + HEADER_LEN..],
            )
            .map_err(|_| Error::Crypto("AES-256-GCM seal failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// Wrap (encrypt) the master key under a key-encryption key.
pub fn wrap(kek: &[u8; 32], nonce_bytes: [u8; 12], aad: &[u8], master: &[u8; 32]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
    let mut buf = master.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce_bytes),
        Aad::from(aad),
        &mut buf,
    )
    .expect("sealing 32 bytes cannot fail");
    buf
}

/// Unwrap the master key; `None` when the KEK is wrong or the data was altered.
pub fn unwrap(
    kek: &[u8; 32],
    nonce_bytes: [u8; 12],
    aad: &[u8],
    wrapped: &[u8],
) -> Option<[u8; 32]> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).ok()?);
    let mut buf = wrapped.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
    plain.try_into().ok()
}
