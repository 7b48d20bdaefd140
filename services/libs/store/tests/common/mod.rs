//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use std::time::Duration;

use tiervault_store::{InitOptions, Secret};

/// A key-file secret: no KDF time in tests.
pub fn secret() -> Secret {
    Secret::KeyFile(b"0123456789abcdef0123456789abcdef".to_vec())
}

pub fn opts() -> InitOptions {
    InitOptions {
        kdf_time: Duration::ZERO,
        ..InitOptions::default()
    }
}

/// Reproducible incompressible bytes.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
