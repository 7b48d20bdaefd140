//! The tokio helpers: frame sequences, clean and unclean ends, forged lengths.

use tokio::io::AsyncWriteExt;

use super::{sample, samples};
use crate::{encode, read_frame, write_frame, Message, WireError, MAX_FRAME};

#[tokio::test]
async fn frames_then_clean_eof_over_a_duplex() {
    // A small pipe so that large frames arrive in many pieces.
    let (mut client, mut server) = tokio::io::duplex(4096);
    let mut msgs = samples();
    msgs.push(Message::SnapshotData {
        id: [1; 32],
        file: (0..3_000_000u32).map(|i| i as u8).collect(),
    });
    msgs.push(Message::Ok);
    let sent = msgs.clone();
    let writer = tokio::spawn(async move {
        for (req, msg) in sent.iter().enumerate() {
            write_frame(&mut client, req as u64, msg).await.unwrap();
        }
    });
    let mut buf = Vec::new();
    for (req, msg) in msgs.iter().enumerate() {
        let got = read_frame(&mut server, &mut buf).await.unwrap();
        assert_eq!(got, Some((req as u64, msg.clone())));
    }
    writer.await.unwrap();
    assert!(read_frame(&mut server, &mut buf).await.unwrap().is_none());
}

#[tokio::test]
async fn frames_from_a_byte_slice() {
    let mut bytes = encode(1, &Message::ListSnapshots).unwrap();
    bytes.extend(encode(2, &Message::GetVaultMeta).unwrap());
    let mut r: &[u8] = &bytes;
    let mut buf = Vec::new();
    assert_eq!(
        read_frame(&mut r, &mut buf).await.unwrap(),
        Some((1, Message::ListSnapshots))
    );
    assert_eq!(
        read_frame(&mut r, &mut buf).await.unwrap(),
        Some((2, Message::GetVaultMeta))
    );
    assert_eq!(read_frame(&mut r, &mut buf).await.unwrap(), None);
    assert_eq!(read_frame(&mut &[][..], &mut buf).await.unwrap(), None);
}

#[tokio::test]
async fn a_reused_big_buffer_does_not_read_into_the_next_frame() {
    let mut bytes = encode(
        1,
        &Message::SnapshotData {
            id: [0; 32],
            file: vec![7; 100_000],
        },
    )
    .unwrap();
    bytes.extend(encode(2, &Message::Ok).unwrap());
    bytes.extend(encode(3, &Message::Forget { id: [3; 32] }).unwrap());
    let mut r: &[u8] = &bytes;
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut r, &mut buf).await.unwrap().unwrap().0, 1);
    assert!(buf.capacity() >= 100_000);
    assert_eq!(
        read_frame(&mut r, &mut buf).await.unwrap(),
        Some((2, Message::Ok))
    );
    assert_eq!(
        read_frame(&mut r, &mut buf).await.unwrap(),
        Some((3, Message::Forget { id: [3; 32] }))
    );
}

#[tokio::test]
async fn eof_inside_the_length_prefix_is_truncated() {
    let mut buf = Vec::new();
    let e = read_frame(&mut &[9u8, 0][..], &mut buf).await.unwrap_err();
    assert!(
        matches!(
            e,
            WireError::Truncated {
                message: "frame",
                field: "len",
                needed: 4,
                available: 2
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn eof_inside_the_body_is_truncated() {
    let frame = encode(5, &sample(0x01)).unwrap();
    for end in [5, 13, frame.len() - 1] {
        let mut buf = Vec::new();
        let e = read_frame(&mut &frame[..end], &mut buf).await.unwrap_err();
        assert!(
            matches!(
                e,
                WireError::Truncated {
                    message: "Hello",
                    field: "frame",
                    ..
                }
            ),
            "cut at {end}: {e:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_length_is_refused_before_allocating() {
    let mut buf = Vec::new();
    let prefix = (MAX_FRAME as u32 + 1).to_le_bytes();
    let e = read_frame(&mut &prefix[..], &mut buf).await.unwrap_err();
    assert!(matches!(e, WireError::FrameTooLarge { .. }), "{e:?}");
    assert_eq!(buf.capacity(), 0);

    let e = read_frame(&mut &8u32.to_le_bytes()[..], &mut buf)
        .await
        .unwrap_err();
    assert!(matches!(e, WireError::FrameTooShort { len: 8 }), "{e:?}");
}

#[tokio::test]
async fn a_forged_large_length_costs_about_one_step() {
    // Announces the largest frame allowed, then sends ten bytes and hangs up.
    let mut bytes = (MAX_FRAME as u32).to_le_bytes().to_vec();
    bytes.push(0x18);
    bytes.extend_from_slice(&[0; 9]);
    let mut buf = Vec::new();
    let e = read_frame(&mut &bytes[..], &mut buf).await.unwrap_err();
    assert!(
        matches!(
            e,
            WireError::Truncated {
                message: "SnapshotData",
                needed: MAX_FRAME,
                available: 10,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(buf.capacity() <= 2 << 20, "capacity {}", buf.capacity());
}

#[tokio::test]
async fn a_malformed_body_is_reported() {
    let mut frame = encode(4, &Message::Ok).unwrap();
    frame[0] += 1;
    frame.push(0);
    let e = read_frame(&mut &frame[..], &mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WireError::TrailingBytes {
                message: "Ok",
                len: 1
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn write_frame_sends_nothing_for_an_invalid_message() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let bad = Message::Error {
        code: crate::ErrorCode::BadRequest,
        message: "x".repeat(5000),
    };
    let e = write_frame(&mut client, 1, &bad).await.unwrap_err();
    assert!(matches!(e, WireError::StringTooLong { .. }), "{e:?}");
    write_frame(&mut client, 2, &Message::Ok).await.unwrap();
    client.shutdown().await.unwrap();
    drop(client);
    let mut buf = Vec::new();
    assert_eq!(
        read_frame(&mut server, &mut buf).await.unwrap(),
        Some((2, Message::Ok))
    );
    assert_eq!(read_frame(&mut server, &mut buf).await.unwrap(), None);
}
