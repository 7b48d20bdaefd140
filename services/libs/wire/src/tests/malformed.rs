//! Hand-written malformed frames: each is refused with the error that names its fault.

use super::{blob, raw, sample};
use crate::{
    decode, decode_stream, encode, encode_into, frame_len, BlobKind, ErrorCode, Message, WireError,
    WireKeyFile, MAX_FRAME,
};

fn err(code: u8, body: &[u8]) -> WireError {
    decode(&raw(code, 0, body)).unwrap_err()
}

/// Body of a frame of `msg`: what follows the type byte and request id.
fn body_of(msg: &Message) -> Vec<u8> {
    encode(0, msg).unwrap()[13..].to_vec()
}

macro_rules! assert_err {
    ($e:expr, $pat:pat $(if $guard:expr)?) => {{
        let e = $e;
        assert!(matches!(e, $pat $(if $guard)?), "got {e:?}");
    }};
}

#[test]
fn length_prefix_limits() {
    for len in 0..9u32 {
        assert_err!(
            frame_len(len.to_le_bytes()).unwrap_err(),
            WireError::FrameTooShort { len: l } if l == len
        );
    }
    assert_eq!(frame_len(9u32.to_le_bytes()).unwrap(), 9);
    assert_eq!(
        frame_len((MAX_FRAME as u32).to_le_bytes()).unwrap(),
        MAX_FRAME
    );
    assert_err!(
        frame_len((MAX_FRAME as u32 + 1).to_le_bytes()).unwrap_err(),
        WireError::FrameTooLarge { len, .. } if len == MAX_FRAME as u64 + 1
    );
    assert_err!(
        frame_len(u32::MAX.to_le_bytes()).unwrap_err(),
        WireError::FrameTooLarge { .. }
    );
}

#[test]
fn decode_stream_rejects_a_bad_prefix_before_its_bytes_arrive() {
    let mut buf = (MAX_FRAME as u32 + 1).to_le_bytes().to_vec();
    buf.push(0x04);
    assert_err!(
        decode_stream(&buf).unwrap_err(),
        WireError::FrameTooLarge { .. }
    );
    assert_err!(
        decode_stream(&3u32.to_le_bytes()).unwrap_err(),
        WireError::FrameTooShort { len: 3 }
    );
}

#[test]
fn decode_stream_waits_for_the_whole_frame() {
    let frame = encode(9, &sample(0x01)).unwrap();
    for end in 0..frame.len() {
        assert_eq!(
            decode_stream(&frame[..end]).unwrap(),
            None,
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn frame_shorter_than_its_header() {
    assert_err!(
        decode(&[]).unwrap_err(),
        WireError::Truncated {
            message: "frame",
            field: "type",
            ..
        }
    );
    assert_err!(
        decode(&[0x04, 1, 2, 3]).unwrap_err(),
        WireError::Truncated {
            message: "frame",
            field: "req",
            needed: 8,
            available: 3
        }
    );
}

#[test]
fn unknown_types() {
    for code in [0x00, 0x05, 0x0F, 0x1F, 0x20, 0x80, 0xFF] {
        assert_err!(err(code, &[]), WireError::UnknownType { code: c } if c == code);
    }
}

#[test]
fn truncated_bodies_name_message_and_field() {
    let hello = body_of(&sample(0x01));
    assert_err!(
        err(0x01, &hello[..hello.len() - 1]),
        WireError::Truncated {
            message: "Hello",
            field: "vault_id",
            needed: 32,
            available: 31
        }
    );
    assert_err!(
        err(0x01, &hello[..1]),
        WireError::Truncated {
            message: "Hello",
            field: "proto",
            ..
        }
    );
    assert_err!(
        err(0x01, &[1, 0, 10, 0, b'a']),
        WireError::Truncated {
            message: "Hello",
            field: "client",
            needed: 10,
            available: 1
        }
    );
    assert_err!(
        err(0x02, &[1, 0, 0, 0]),
        WireError::Truncated {
            message: "Welcome",
            field: "has_vault",
            ..
        }
    );
    assert_err!(
        err(0x13, &[1, 0, 0, 0]),
        WireError::Truncated {
            message: "PutOk",
            field: "present",
            ..
        }
    );
    let mut put = vec![0; 32];
    put.extend_from_slice(&100u32.to_le_bytes());
    put.extend_from_slice(&[0; 10]);
    assert_err!(
        err(0x14, &put),
        WireError::Truncated {
            message: "PutSnapshot",
            field: "file",
            needed: 100,
            available: 10
        }
    );
    assert_err!(
        err(0x17, &[0; 31]),
        WireError::Truncated {
            message: "GetSnapshot",
            field: "id",
            ..
        }
    );
    let meta = body_of(&sample(0x1D));
    assert_err!(
        err(0x1D, &meta[..meta.len() - 1]),
        WireError::Truncated {
            message: "VaultMeta",
            field: "key file",
            ..
        }
    );
}

#[test]
fn truncated_blob_inside_a_batch() {
    let body = body_of(&Message::Blobs {
        blobs: vec![blob(1, BlobKind::Data, 28), blob(2, BlobKind::Meta, 200)],
    });
    assert_err!(
        err(0x1A, &body[..body.len() - 1]),
        WireError::Truncated {
            message: "Blobs",
            field: "blob stored",
            needed: 200,
            available: 199
        }
    );
}

#[test]
fn trailing_bytes() {
    assert_err!(
        err(0x04, &[0]),
        WireError::TrailingBytes {
            message: "Ok",
            len: 1
        }
    );
    assert_err!(
        err(0x15, &[1, 2]),
        WireError::TrailingBytes {
            message: "ListSnapshots",
            len: 2
        }
    );
    assert_err!(
        err(0x1B, &[0; 33]),
        WireError::TrailingBytes {
            message: "Forget",
            len: 1
        }
    );
    for msg in super::samples() {
        let mut body = body_of(&msg);
        body.push(0);
        let name = msg.type_name();
        assert_err!(
            err(msg.code(), &body),
            WireError::TrailingBytes { message, len: 1 } if message == name
        );
    }
}

#[test]
fn counts_above_their_limit() {
    for code in [0x10, 0x11, 0x12, 0x19, 0x1A] {
        assert_err!(
            err(code, &65537u32.to_le_bytes()),
            WireError::CountTooLarge {
                field: "count",
                count: 65537,
                max: 65536,
                ..
            }
        );
    }
    let mut meta = 0u32.to_le_bytes().to_vec();
    meta.extend_from_slice(&65u16.to_le_bytes());
    assert_err!(
        err(0x1E, &meta),
        WireError::CountTooLarge {
            message: "PutVaultMeta",
            field: "key_count",
            count: 65,
            max: 64
        }
    );
}

#[test]
fn counts_larger_than_the_frame_can_hold() {
    // 1000 ids need 32 000 bytes; one is there.
    let mut have = 1000u32.to_le_bytes().to_vec();
    have.extend_from_slice(&[0; 32]);
    assert_err!(
        err(0x10, &have),
        WireError::CountExceedsBody {
            message: "Have",
            count: 1000,
            min_bytes: 32000,
            available: 32,
            ..
        }
    );
    assert_err!(
        err(0x16, &u32::MAX.to_le_bytes()),
        WireError::CountExceedsBody {
            message: "SnapshotList",
            ..
        }
    );
    // Two blobs announced, one present: refused before the first is read.
    let mut blobs = body_of(&Message::PutBlobs {
        blobs: vec![blob(1, BlobKind::Data, 90)],
    });
    blobs[..4].copy_from_slice(&2u32.to_le_bytes());
    assert_err!(
        err(0x12, &blobs),
        WireError::CountExceedsBody {
            message: "PutBlobs",
            count: 2,
            min_bytes: 162,
            ..
        }
    );
    let mut meta = 0u32.to_le_bytes().to_vec();
    meta.extend_from_slice(&64u16.to_le_bytes());
    assert_err!(
        err(0x1D, &meta),
        WireError::CountExceedsBody {
            message: "VaultMeta",
            field: "key_count",
            ..
        }
    );
    assert_err!(
        err(0x11, &9u32.to_le_bytes()),
        WireError::Truncated {
            message: "HaveReply",
            field: "bitmap",
            needed: 2,
            available: 0
        }
    );
}

#[test]
fn bad_blob_kind() {
    let mut body = body_of(&Message::PutBlobs {
        blobs: vec![blob(1, BlobKind::Data, 28), blob(2, BlobKind::Data, 28)],
    });
    let second_kind = 4 + (32 + 1 + 16 + 4 + 28) + 32;
    for kind in [3, 0xFF] {
        body[second_kind] = kind;
        assert_err!(
            err(0x12, &body),
            WireError::BadBlobKind { message: "PutBlobs", index: 1, kind: k } if k == kind
        );
    }
}

#[test]
fn stored_blob_shorter_than_its_header() {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 32]);
    body.push(2);
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&27u32.to_le_bytes());
    body.extend_from_slice(&[0; 27]);
    // Pad so that the count check passes and the stored length is what fails.
    body.extend_from_slice(&[0; 8]);
    assert_err!(
        err(0x1A, &body),
        WireError::StoredTooShort {
            message: "Blobs",
            index: 0,
            len: 27
        }
    );
}

#[test]
fn bad_strings() {
    let mut hello = vec![1, 0, 2, 0, 0xff, 0xfe];
    hello.extend_from_slice(&[0; 32]);
    assert_err!(
        err(0x01, &hello),
        WireError::BadUtf8 {
            message: "Hello",
            field: "client"
        }
    );

    let mut welcome = vec![1, 0];
    welcome.extend_from_slice(&257u16.to_le_bytes());
    welcome.extend_from_slice(&[b'a'; 257]);
    welcome.push(1);
    assert_err!(
        err(0x02, &welcome),
        WireError::StringTooLong {
            message: "Welcome",
            field: "tenant",
            len: 257,
            max: 256
        }
    );

    let mut error = vec![2, 0];
    error.extend_from_slice(&4097u16.to_le_bytes());
    assert_err!(
        err(0x03, &error),
        WireError::StringTooLong {
            message: "Error",
            field: "message",
            len: 4097,
            max: 4096
        }
    );
    // A truncated UTF-8 sequence at the end of a key name.
    let mut meta = 0u32.to_le_bytes().to_vec();
    meta.extend_from_slice(&[1, 0, 1, 0, 0xc3, 0, 0, 0, 0]);
    assert_err!(
        err(0x1D, &meta),
        WireError::BadUtf8 {
            message: "VaultMeta",
            field: "key name"
        }
    );
}

#[test]
fn strings_at_their_limit_are_accepted() {
    let msg = Message::Error {
        code: ErrorCode::Internal,
        message: "é".repeat(2048),
    };
    assert_eq!(decode(&encode(1, &msg).unwrap()[4..]).unwrap().1, msg);
}

#[test]
fn has_vault_must_be_zero_or_one() {
    let body = [1, 0, 1, 0, b't', 2];
    assert_err!(
        err(0x02, &body),
        WireError::BadFlag {
            message: "Welcome",
            field: "has_vault",
            value: 2
        }
    );
}

#[test]
fn bitmap_padding_must_be_zero() {
    let mut body = 3u32.to_le_bytes().to_vec();
    body.push(0b0000_1000);
    assert_err!(err(0x11, &body), WireError::BitmapPadding { count: 3 });
    body[4] = 0b1000_0111;
    assert_err!(err(0x11, &body), WireError::BitmapPadding { count: 3 });
    body[4] = 0b0000_0111;
    assert_eq!(
        decode(&raw(0x11, 0, &body)).unwrap().1,
        Message::HaveReply {
            held: vec![true; 3]
        }
    );
}

#[test]
fn decode_refuses_a_slice_above_the_frame_limit() {
    let big = vec![0x04; MAX_FRAME + 1];
    assert_err!(decode(&big).unwrap_err(), WireError::FrameTooLarge { .. });
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let too_long = Message::Hello {
        proto: 1,
        client: "x".repeat(257),
        vault_id: [0; 32],
    };
    assert_err!(
        encode(0, &too_long).unwrap_err(),
        WireError::StringTooLong {
            message: "Hello",
            field: "client",
            len: 257,
            ..
        }
    );
    assert_err!(
        encode(
            0,
            &Message::GetBlobs {
                ids: vec![[0; 32]; 65537]
            }
        )
        .unwrap_err(),
        WireError::CountTooLarge {
            message: "GetBlobs",
            count: 65537,
            ..
        }
    );
    assert_err!(
        encode(
            0,
            &Message::HaveReply {
                held: vec![false; 65537]
            }
        )
        .unwrap_err(),
        WireError::CountTooLarge {
            message: "HaveReply",
            ..
        }
    );
    assert_err!(
        encode(
            0,
            &Message::PutBlobs {
                blobs: vec![blob(0, BlobKind::Data, 28), blob(1, BlobKind::Data, 27)]
            }
        )
        .unwrap_err(),
        WireError::StoredTooShort {
            message: "PutBlobs",
            index: 1,
            len: 27
        }
    );
    let keys = vec![
        WireKeyFile {
            name: "k".into(),
            file: vec![]
        };
        65
    ];
    assert_err!(
        encode(
            0,
            &Message::VaultMeta {
                config: vec![],
                keys
            }
        )
        .unwrap_err(),
        WireError::CountTooLarge {
            field: "key_count",
            ..
        }
    );
}

#[test]
fn encoder_refuses_a_frame_above_the_limit_and_leaves_the_buffer_alone() {
    let msg = Message::SnapshotData {
        id: [0; 32],
        // 9 + 32 + 4 header and field bytes push this one byte past the limit.
        file: vec![0; MAX_FRAME - 44],
    };
    let mut out = b"earlier frames".to_vec();
    assert_err!(
        encode_into(0, &msg, &mut out).unwrap_err(),
        WireError::FrameTooLarge { len, .. } if len == MAX_FRAME as u64 + 1
    );
    assert_eq!(out, b"earlier frames");

    let fits = Message::SnapshotData {
        id: [0; 32],
        file: vec![0; MAX_FRAME - 45],
    };
    let frame = encode(0, &fits).unwrap();
    assert_eq!(
        frame_len(frame[..4].try_into().unwrap()).unwrap(),
        MAX_FRAME
    );
}
