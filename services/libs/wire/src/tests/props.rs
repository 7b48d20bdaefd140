//! Property tests: every message round-trips whatever the split of the byte stream, and no
//! input makes the decoder panic or accept bytes it would not itself produce.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::{
    decode, decode_stream, encode, BlobKind, ErrorCode, Message, SnapshotEntry, WireBlob,
    WireKeyFile,
};

fn id() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// Printable text including multi-byte characters; 40 characters stay below every limit.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn blob() -> impl Strategy<Value = WireBlob> {
    (
        id(),
        prop_oneof![
            Just(BlobKind::Data),
            Just(BlobKind::Meta),
            Just(BlobKind::Refs)
        ],
        any::<[u8; 16]>(),
        vec(any::<u8>(), 28..90),
    )
        .prop_map(|(id, kind, digest, stored)| WireBlob {
            id,
            kind,
            digest,
            stored,
        })
}

fn snapshot() -> impl Strategy<Value = SnapshotEntry> {
    (id(), any::<i64>(), any::<u32>(), any::<i64>()).prop_map(|(id, time, size, locked_until)| {
        SnapshotEntry {
            id,
            time,
            size,
            locked_until,
        }
    })
}

fn keys() -> impl Strategy<Value = Vec<WireKeyFile>> {
    vec(
        (text(), bytes(64)).prop_map(|(name, file)| WireKeyFile { name, file }),
        0..4,
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), text(), id()).prop_map(|(proto, client, vault_id)| Message::Hello {
            proto,
            client,
            vault_id
        }),
        (any::<u16>(), text(), any::<bool>()).prop_map(|(proto, tenant, has_vault)| {
            Message::Welcome {
                proto,
                tenant,
                has_vault,
            }
        }),
        (any::<u16>(), text()).prop_map(|(code, message)| Message::Error {
            code: ErrorCode::from_u16(code),
            message
        }),
        Just(Message::Ok),
        vec(id(), 0..5).prop_map(|ids| Message::Have { ids }),
        vec(any::<bool>(), 0..40).prop_map(|held| Message::HaveReply { held }),
        vec(blob(), 0..4).prop_map(|blobs| Message::PutBlobs { blobs }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(stored, present)| Message::PutOk { stored, present }),
        (id(), bytes(200)).prop_map(|(id, file)| Message::PutSnapshot { id, file }),
        Just(Message::ListSnapshots),
        vec(snapshot(), 0..4).prop_map(|snapshots| Message::SnapshotList { snapshots }),
        id().prop_map(|id| Message::GetSnapshot { id }),
        (id(), bytes(200)).prop_map(|(id, file)| Message::SnapshotData { id, file }),
        vec(id(), 0..5).prop_map(|ids| Message::GetBlobs { ids }),
        vec(blob(), 0..4).prop_map(|blobs| Message::Blobs { blobs }),
        id().prop_map(|id| Message::Forget { id }),
        Just(Message::GetVaultMeta),
        (bytes(100), keys()).prop_map(|(config, keys)| Message::VaultMeta { config, keys }),
        (bytes(100), keys()).prop_map(|(config, keys)| Message::PutVaultMeta { config, keys }),
    ]
}

/// Whatever the decoders make of `data`, they do not panic, and what they accept is exactly
/// what the encoder writes for the result: there is one encoding of every message.
fn assert_canonical(data: &[u8]) {
    if let Ok((req, msg)) = decode(data) {
        let again = encode(req, &msg).expect("a decoded message re-encodes");
        assert_eq!(&again[4..], data);
    }
    if let Ok(Some((req, msg, used))) = decode_stream(data) {
        let again = encode(req, &msg).expect("a decoded message re-encodes");
        assert_eq!(again.as_slice(), &data[..used]);
    }
}

/// Edits applied to a valid frame to make near-valid inputs.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *m {
        Mutation::Set(i, b) if !data.is_empty() => {
            let i = at(i, data.len());
            data[i] = b;
        }
        Mutation::Flip(i, bit) if !data.is_empty() => {
            let i = at(i, data.len());
            data[i] ^= 1 << bit;
        }
        Mutation::Insert(i, b) => data.insert(at(i, data.len() + 1), b),
        Mutation::Remove(i) if !data.is_empty() => {
            data.remove(at(i, data.len()));
        }
        Mutation::Truncate(i) => data.truncate(at(i, data.len() + 1)),
        _ => {}
    }
}

/// Rewrites the length prefix to match the bytes, so that mutations reach the body decoder
/// instead of stopping at the framing.
fn fix_len(data: &mut [u8]) {
    if data.len() >= 4 {
        let len = (data.len() - 4) as u32;
        data[..4].copy_from_slice(&len.to_le_bytes());
    }
}

proptest! {
    #[test]
    fn messages_round_trip(req in any::<u64>(), msg in message()) {
        let frame = encode(req, &msg).unwrap();
        prop_assert_eq!(decode(&frame[4..]).unwrap(), (req, msg.clone()));
        prop_assert_eq!(decode_stream(&frame).unwrap(), Some((req, msg, frame.len())));
    }

    #[test]
    fn streams_decode_whatever_the_split(
        frames in vec((any::<u64>(), message()), 1..5),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (req, msg) in &frames {
            crate::encode_into(*req, msg, &mut stream).unwrap();
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();

        let mut pending = Vec::new();
        let mut got = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pending.extend_from_slice(&stream[from..cut]);
            from = cut;
            while let Some((req, msg, used)) = decode_stream(&pending).unwrap() {
                got.push((req, msg));
                pending.drain(..used);
            }
        }
        prop_assert!(pending.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..4096)) {
        assert_canonical(&data);
        if data.len() >= 4 {
            assert_canonical(&data[4..]);
        }
    }

    #[test]
    fn random_bodies_of_known_types_never_panic(
        code in prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
            0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E,
        ]),
        req in any::<u64>(),
        body in vec(any::<u8>(), 0..512),
    ) {
        let mut frame = vec![0; 4];
        frame.push(code);
        frame.extend_from_slice(&req.to_le_bytes());
        frame.extend_from_slice(&body);
        fix_len(&mut frame);
        assert_canonical(&frame);
        assert_canonical(&frame[4..]);
    }

    #[test]
    fn mutated_frames_never_panic(
        req in any::<u64>(),
        msg in message(),
        mutations in vec(mutation(), 1..6),
        keep_len in any::<bool>(),
    ) {
        let mut frame = encode(req, &msg).unwrap();
        for m in &mutations {
            apply(&mut frame, m);
        }
        if keep_len {
            fix_len(&mut frame);
        }
        assert_canonical(&frame);
        if frame.len() >= 4 {
            assert_canonical(&frame[4..]);
        }
    }
}
