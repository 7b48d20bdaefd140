//! Unit and property tests of the codec, and of the tokio helpers when that feature is on.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "tokio")]
mod async_io;
mod malformed;
mod props;
mod roundtrip;

use crate::{BlobKind, ErrorCode, Message, SnapshotEntry, WireBlob, WireKeyFile};

/// A frame after its length prefix, built by hand.
fn raw(code: u8, req: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![code];
    f.extend_from_slice(&req.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// The same frame with its length prefix.
fn with_len(frame: &[u8]) -> Vec<u8> {
    let mut f = (frame.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(frame);
    f
}

fn blob(n: u8, kind: BlobKind, stored_len: usize) -> WireBlob {
    WireBlob {
        id: [n; 32],
        kind,
        digest: [n.wrapping_add(1); 16],
        stored: vec![n; stored_len],
    }
}

/// The sample message of type `code`.
fn sample(code: u8) -> Message {
    samples().into_iter().find(|m| m.code() == code).unwrap()
}

/// One message of every type, with non-trivial field values.
fn samples() -> Vec<Message> {
    vec![
        Message::Hello {
            proto: 1,
            client: "vaultctl 0.1.0".into(),
            vault_id: [7; 32],
        },
        Message::Welcome {
            proto: 1,
            tenant: "acme-ünïcode".into(),
            has_vault: true,
        },
        Message::Error {
            code: ErrorCode::RetentionLocked,
            message: "snapshot 1a2b3c4d is locked until 2031".into(),
        },
        Message::Ok,
        Message::Have {
            ids: vec![[1; 32], [2; 32], [3; 32]],
        },
        Message::HaveReply {
            held: vec![true, false, true, true, false, false, false, false, true],
        },
        Message::PutBlobs {
            blobs: vec![blob(1, BlobKind::Data, 28), blob(2, BlobKind::Refs, 100)],
        },
        Message::PutOk {
            stored: 5,
            present: 70_000,
        },
        Message::PutSnapshot {
            id: [9; 32],
            file: b"TVSNAP01 and the rest".to_vec(),
        },
        Message::ListSnapshots,
        Message::SnapshotList {
            snapshots: vec![
                SnapshotEntry {
                    id: [4; 32],
                    time: 1_700_000_000_000_000_000,
                    size: 4096,
                    locked_until: 0,
                },
                SnapshotEntry {
                    id: [5; 32],
                    time: -1,
                    size: u32::MAX,
                    locked_until: i64::MAX,
                },
            ],
        },
        Message::GetSnapshot { id: [6; 32] },
        Message::SnapshotData {
            id: [6; 32],
            file: vec![0; 1000],
        },
        Message::GetBlobs { ids: vec![[8; 32]] },
        Message::Blobs {
            blobs: vec![blob(3, BlobKind::Meta, 64)],
        },
        Message::Forget { id: [10; 32] },
        Message::GetVaultMeta,
        Message::VaultMeta {
            config: br#"{"format":"tiervault-vault"}"#.to_vec(),
            keys: vec![
                WireKeyFile {
                    name: "default".into(),
                    file: b"{}".to_vec(),
                },
                WireKeyFile {
                    name: "backup-admin".into(),
                    file: Vec::new(),
                },
            ],
        },
        Message::PutVaultMeta {
            config: Vec::new(),
            keys: Vec::new(),
        },
    ]
}
