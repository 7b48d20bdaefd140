//! Every message type survives encode → decode, and the bytes match docs/wire.md.

use super::{raw, sample, samples, with_len};
use crate::{decode, decode_stream, encode, encode_into, Message, LEN_PREFIX};

fn round_trip(req: u64, msg: &Message) {
    let frame = encode(req, msg).unwrap();
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        frame.len() - LEN_PREFIX,
        "{}: length prefix",
        msg.type_name()
    );
    assert_eq!(frame[4], msg.code());
    assert_eq!(decode(&frame[4..]).unwrap(), (req, msg.clone()));
    assert_eq!(
        decode_stream(&frame).unwrap(),
        Some((req, msg.clone(), frame.len()))
    );
}

macro_rules! round_trip_tests {
    ($($name:ident => $code:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            let msg = sample($code);
            round_trip(0, &msg);
            round_trip(u64::MAX, &msg);
        }
    )*};
}

round_trip_tests! {
    hello => 0x01,
    welcome => 0x02,
    error => 0x03,
    ok => 0x04,
    have => 0x10,
    have_reply => 0x11,
    put_blobs => 0x12,
    put_ok => 0x13,
    put_snapshot => 0x14,
    list_snapshots => 0x15,
    snapshot_list => 0x16,
    get_snapshot => 0x17,
    snapshot_data => 0x18,
    get_blobs => 0x19,
    blobs => 0x1A,
    forget => 0x1B,
    get_vault_meta => 0x1C,
    vault_meta => 0x1D,
    put_vault_meta => 0x1E,
}

#[test]
fn samples_cover_every_type_once() {
    let mut codes: Vec<u8> = samples().iter().map(Message::code).collect();
    codes.sort_unstable();
    let expected: Vec<u8> = (0x01..=0x04).chain(0x10..=0x1E).collect();
    assert_eq!(codes, expected);
}

#[test]
fn replies_are_the_server_messages() {
    let replies: Vec<&str> = samples()
        .iter()
        .filter(|m| m.is_reply())
        .map(Message::type_name)
        .collect();
    assert_eq!(
        replies,
        [
            "Welcome",
            "Error",
            "Ok",
            "HaveReply",
            "PutOk",
            "SnapshotList",
            "SnapshotData",
            "Blobs",
            "VaultMeta"
        ]
    );
}

#[test]
fn empty_lists_round_trip() {
    for msg in [
        Message::Have { ids: vec![] },
        Message::HaveReply { held: vec![] },
        Message::PutBlobs { blobs: vec![] },
        Message::Blobs { blobs: vec![] },
        Message::GetBlobs { ids: vec![] },
        Message::SnapshotList { snapshots: vec![] },
        Message::SnapshotData {
            id: [0; 32],
            file: vec![],
        },
    ] {
        round_trip(1, &msg);
    }
}

#[test]
fn full_batches_round_trip() {
    round_trip(
        2,
        &Message::Have {
            ids: vec![[0x5a; 32]; 65536],
        },
    );
    round_trip(
        3,
        &Message::HaveReply {
            held: (0..65536).map(|i| i % 3 == 0).collect(),
        },
    );
}

#[test]
fn hello_bytes_match_the_spec() {
    let frame = encode(
        0x0102_0304_0506_0708,
        &Message::Hello {
            proto: 1,
            client: "ab".into(),
            vault_id: [0xee; 32],
        },
    )
    .unwrap();
    let mut body = vec![1, 0, 2, 0, b'a', b'b'];
    body.extend_from_slice(&[0xee; 32]);
    let expected = with_len(&raw(0x01, 0x0102_0304_0506_0708, &body));
    assert_eq!(frame, expected);
    assert_eq!(&frame[..5], &[9 + 38, 0, 0, 0, 0x01]);
    assert_eq!(&frame[5..13], &[8, 7, 6, 5, 4, 3, 2, 1]);
}

#[test]
fn have_reply_bitmap_is_lsb_first() {
    let held = vec![
        true, false, false, false, false, false, false, true, false, true,
    ];
    let frame = encode(0, &Message::HaveReply { held }).unwrap();
    assert_eq!(&frame[13..], &[10, 0, 0, 0, 0b1000_0001, 0b0000_0010]);
}

#[test]
fn put_blobs_bytes_match_the_spec() {
    let msg = sample(0x12);
    let Message::PutBlobs { blobs } = &msg else {
        unreachable!()
    };
    let mut body = 2u32.to_le_bytes().to_vec();
    for b in blobs {
        body.extend_from_slice(&b.id);
        body.push(b.kind.code());
        body.extend_from_slice(&b.digest);
        body.extend_from_slice(&(b.stored.len() as u32).to_le_bytes());
        body.extend_from_slice(&b.stored);
    }
    assert_eq!(body[4 + 32], 0, "data kind code after count and id");
    assert_eq!(encode(5, &msg).unwrap(), with_len(&raw(0x12, 5, &body)));
}

#[test]
fn snapshot_list_and_vault_meta_bytes_match_the_spec() {
    let entry = crate::SnapshotEntry {
        id: [1; 32],
        time: -2,
        size: 3,
        locked_until: 4,
    };
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[1; 32]);
    body.extend_from_slice(&(-2i64).to_le_bytes());
    body.extend_from_slice(&3u32.to_le_bytes());
    body.extend_from_slice(&4i64.to_le_bytes());
    let msg = Message::SnapshotList {
        snapshots: vec![entry],
    };
    assert_eq!(encode(0, &msg).unwrap(), with_len(&raw(0x16, 0, &body)));

    let msg = Message::PutVaultMeta {
        config: b"cf".to_vec(),
        keys: vec![crate::WireKeyFile {
            name: "k".into(),
            file: b"xyz".to_vec(),
        }],
    };
    let body = [
        2, 0, 0, 0, b'c', b'f', 1, 0, 1, 0, b'k', 3, 0, 0, 0, b'x', b'y', b'z',
    ];
    assert_eq!(encode(0, &msg).unwrap(), with_len(&raw(0x1E, 0, &body)));
}

#[test]
fn error_codes_keep_unknown_values() {
    use crate::ErrorCode;
    for n in 0..=300u16 {
        assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
    }
    assert_eq!(ErrorCode::from_u16(10), ErrorCode::Busy);
    assert_eq!(ErrorCode::from_u16(11), ErrorCode::Other(11));
    let msg = Message::Error {
        code: ErrorCode::Other(999),
        message: String::new(),
    };
    round_trip(4, &msg);
    assert!(ErrorCode::Busy.is_temporary());
    assert!(!ErrorCode::DigestMismatch.is_temporary());
}

#[test]
fn encode_into_appends_frames_back_to_back() {
    let mut out = b"junk".to_vec();
    encode_into(1, &Message::Ok, &mut out).unwrap();
    encode_into(2, &Message::ListSnapshots, &mut out).unwrap();
    let (req, msg, used) = decode_stream(&out[4..]).unwrap().unwrap();
    assert_eq!((req, msg), (1, Message::Ok));
    let (req, msg, used2) = decode_stream(&out[4 + used..]).unwrap().unwrap();
    assert_eq!((req, msg), (2, Message::ListSnapshots));
    assert_eq!(4 + used + used2, out.len());
}
