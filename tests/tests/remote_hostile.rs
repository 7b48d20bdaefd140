//! A hostile or broken appliance against the remote vault server: truncated frames, oversized
//! lengths, unknown types, trailing bytes, blobs whose digest, kind or refs content lies,
//! snapshots that lie about their id or reference blobs never sent, replays, requests out of
//! order, connections cut mid-batch and a server killed mid-session. In every case the server
//! answers with an error naming the problem or closes the connection (and logs why), keeps
//! serving other connections, and the tenant's vault stays consistent: `vaultctl verify` with
//! the appliance's key passes and every snapshot it lists restores.

mod common;

use std::collections::HashSet;
use std::fs;

use common::cli::Vault;
use common::pack;
use common::remote::{
    assert_tenant_consistent, back_up_more, backed_up_vault, batches, expect_error, push_vault_as,
    snapshot_files, stored_blobs, vault_meta, wire_blob, ClientCert, Pki, Pushed, RawClient,
    RemoteServer, TenantConf,
};
use tiervault_wire::{BlobKind, ErrorCode, Message, WireBlob};

/// A server whose tenant `acme` holds a pushed vault, and a second backup of that vault the
/// server has not been sent: its blobs (`fresh`) and snapshot are the material of each case.
struct Fixture {
    _pki: Pki,
    server: RemoteServer,
    source: Vault,
    cert: ClientCert,
    pushed: Pushed,
    /// Blobs of the second backup the server does not hold.
    fresh: Vec<WireBlob>,
    /// The second backup's snapshot (id, file), not sent.
    fresh_snapshot: ([u8; 32], Vec<u8>),
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let pki = Pki::new();
        let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
        let source = backed_up_vault(seed);
        let cert = pki.client("acme");
        let pushed = push_vault_as(&server, &cert, &source.dir);
        back_up_more(&source, seed + 1000);
        let known: HashSet<[u8; 32]> = pushed.blobs.iter().copied().collect();
        let fresh: Vec<WireBlob> = stored_blobs(&source.dir)
            .into_iter()
            .filter(|b| !known.contains(&b.id))
            .collect();
        let fresh_snapshot = snapshot_files(&source.dir)
            .into_iter()
            .find(|(id, _)| !pushed.snapshots.contains(id))
            .expect("the second backup made a snapshot");
        for kind in [BlobKind::Data, BlobKind::Meta, BlobKind::Refs] {
            assert!(
                fresh.iter().any(|b| b.kind == kind),
                "the second backup stored no new {kind:?} blob"
            );
        }
        Fixture {
            _pki: pki,
            server,
            source,
            cert,
            pushed,
            fresh,
            fresh_snapshot,
        }
    }

    /// A connection that has not said Hello.
    fn raw(&self) -> RawClient {
        RawClient::connect(&self.server, &self.cert, &self.server.ca_pem())
            .unwrap_or_else(|e| panic!("connecting as acme: {e}"))
    }

    /// A connection past Hello/Welcome.
    fn session(&self) -> RawClient {
        let mut c = self.raw();
        assert!(c.welcome(self.pushed.vault_id), "acme holds its vault");
        c
    }

    fn fresh_of(&self, kind: BlobKind) -> &WireBlob {
        self.fresh
            .iter()
            .find(|b| b.kind == kind)
            .expect("a fresh blob of each kind")
    }

    fn fresh_ids(&self) -> Vec<[u8; 32]> {
        self.fresh.iter().map(|b| b.id).collect()
    }

    /// The server runs, a new session lists exactly `snapshots` and holds every pushed blob,
    /// and the tenant's vault verifies and restores.
    fn assert_healthy(&mut self, snapshots: &[[u8; 32]]) {
        self.server.assert_running();
        let mut c = self.session();
        let listed: HashSet<[u8; 32]> = c.list().iter().map(|e| e.id).collect();
        let expected: HashSet<[u8; 32]> = snapshots.iter().copied().collect();
        assert_eq!(listed, expected, "the snapshots the server lists");
        let held = c.have(&self.pushed.blobs);
        assert!(held.iter().all(|h| *h), "a pushed blob went missing");
        let _ = c.shutdown();
        drop(c);
        let ids: HashSet<String> = assert_tenant_consistent(&self.server, "acme", &self.source)
            .into_iter()
            .collect();
        let expected: HashSet<String> = snapshots.iter().map(hex::encode).collect();
        assert_eq!(
            ids, expected,
            "the snapshots vaultctl lists in the tenant's vault"
        );
    }

    /// Healthy, holding exactly the snapshots pushed at setup (a refused request changed
    /// nothing).
    fn assert_unchanged(&mut self) {
        let snaps = self.pushed.snapshots.clone();
        self.assert_healthy(&snaps);
    }

    /// A new session sends the fresh blobs the server lacks and commits the fresh snapshot
    /// (what an appliance does after a cut); the tenant is then healthy with it.
    fn resume_and_commit_fresh(&mut self, when: &str) {
        let mut c = self.session();
        let all: Vec<[u8; 32]> = self.fresh.iter().map(|b| b.id).collect();
        let held = c.have(&all);
        let missing: Vec<WireBlob> = self
            .fresh
            .iter()
            .zip(&held)
            .filter(|(_, h)| !**h)
            .map(|(b, _)| b.clone())
            .collect();
        for batch in batches(&missing) {
            c.put_blobs(&batch);
        }
        let (id, file) = self.fresh_snapshot.clone();
        match c.request(Message::PutSnapshot { id, file }) {
            Ok(Message::Ok) => {}
            other => panic!("PutSnapshot {when}: expected Ok, got {other:?}"),
        }
        drop(c);
        self.assert_fresh_committed();
    }

    /// Healthy, holding the setup's snapshots and the fresh one.
    fn assert_fresh_committed(&mut self) {
        let mut snaps = self.pushed.snapshots.clone();
        snaps.push(self.fresh_snapshot.0);
        self.assert_healthy(&snaps);
    }
}

/// A frame with `len`, `type` and `req` as given, followed by `body`.
fn frame(len: u32, code: u8, req: u64, body: &[u8]) -> Vec<u8> {
    let mut f = len.to_le_bytes().to_vec();
    f.push(code);
    f.extend_from_slice(&req.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// Sends `bytes` on a session, expects the server to close the connection without answering
/// and to log a line containing `closing` and `reason`.
fn expect_closed_for(f: &Fixture, what: &str, bytes: &[u8], reason: &str) {
    let mut c = f.session();
    let mark = f.server.log_mark();
    c.send_raw(bytes)
        .unwrap_or_else(|e| panic!("{what}: sending: {e}"));
    let frames = c.expect_closed();
    assert!(
        frames
            .iter()
            .all(|(_, m)| matches!(m, Message::Error { .. })),
        "{what}: the server answered {frames:?}"
    );
    let line = f.server.wait_log(mark, &["closing", reason]);
    eprintln!("{what}: {line}");
}

#[test]
fn a_truncated_frame_closes_the_connection_and_the_vault_stays_consistent() {
    let mut f = Fixture::new(11);
    // The length says 1000, 10 bytes follow, then a clean TLS close.
    let mut c = f.session();
    let mark = f.server.log_mark();
    c.send_raw(&frame(1000, 0x12, 1, &[0; 1])).expect("sending");
    c.shutdown().expect("closing our half");
    assert!(c.expect_closed().is_empty());
    let line = f
        .server
        .wait_log(mark, &["closing", "PutBlobs: truncated in frame"]);
    assert!(line.contains("needed 1000 bytes, 10 available"), "{line}");

    // The same, with the connection cut instead of closed.
    let mut c = f.session();
    let mark = f.server.log_mark();
    c.send_raw(&frame(1000, 0x12, 1, &[0; 1])).expect("sending");
    drop(c);
    f.server.wait_log(mark, &["closing"]);

    f.assert_unchanged();
}

#[test]
fn an_oversized_length_is_refused_from_the_prefix_alone() {
    let mut f = Fixture::new(12);
    // 200 MiB announced (above the 128 MiB limit), a few bytes sent, the connection kept open:
    // the server must not wait for the rest.
    expect_closed_for(
        &f,
        "200 MiB length",
        &frame(200 << 20, 0x12, 1, &[0; 64]),
        "frame length 209715200 exceeds the limit",
    );
    // Below the 9-byte minimum.
    expect_closed_for(&f, "length 3", &frame(3, 0x15, 1, &[]), "below the minimum");
    // The server keeps serving, repeatedly.
    for _ in 0..3 {
        let mut c = f.session();
        assert_eq!(c.list().len(), f.pushed.snapshots.len());
    }
    f.assert_unchanged();
}

#[test]
fn unknown_types_trailing_bytes_and_bad_fields_close_the_connection() {
    let mut f = Fixture::new(13);
    expect_closed_for(
        &f,
        "unknown type",
        &frame(9, 0x7f, 5, &[]),
        "unknown message type 0x7f",
    );
    let mut trailing = tiervault_wire::encode(7, &Message::ListSnapshots).expect("encoding");
    trailing.extend_from_slice(&[1, 2, 3]);
    let len = u32::try_from(trailing.len() - 4).expect("small");
    trailing[..4].copy_from_slice(&len.to_le_bytes());
    expect_closed_for(
        &f,
        "trailing bytes",
        &trailing,
        "ListSnapshots: 3 trailing bytes after the body",
    );
    // A blob kind that does not exist (byte 4 + 1 + 8 + 4 + 32 is the kind of blob 0).
    let blob = f.fresh_of(BlobKind::Data).clone();
    let mut bad_kind =
        tiervault_wire::encode(9, &Message::PutBlobs { blobs: vec![blob] }).expect("encoding");
    bad_kind[4 + 1 + 8 + 4 + 32] = 7;
    expect_closed_for(&f, "blob kind 7", &bad_kind, "unknown kind 7");
    // A count promising more than the frame holds.
    let mut body = 65_536u32.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 32]);
    expect_closed_for(
        &f,
        "Have count 65536 with one id",
        &frame(9 + 36, 0x10, 3, &body),
        "needs at least",
    );

    // A well-formed reply type sent as a request is refused, the connection stays usable.
    let mut c = f.session();
    let msg = expect_error(
        c.request(Message::Ok),
        ErrorCode::BadRequest,
        "Ok as a request",
    );
    assert!(msg.contains("Ok"), "{msg}");
    assert_eq!(c.list().len(), f.pushed.snapshots.len());
    drop(c);

    let fresh = f.fresh_ids();
    let mut c = f.session();
    assert!(
        c.have(&fresh).iter().all(|h| !h),
        "a refused frame stored a blob"
    );
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_blob_whose_digest_lies_is_refused_and_not_stored() {
    let mut f = Fixture::new(14);
    let mut c = f.session();
    let good = f.fresh_of(BlobKind::Data).clone();

    // The digest does not match the bytes.
    let mut bad = good.clone();
    bad.digest[0] ^= 1;
    let mark = f.server.log_mark();
    let msg = expect_error(
        c.request(Message::PutBlobs { blobs: vec![bad] }),
        ErrorCode::DigestMismatch,
        "PutBlobs with a wrong digest",
    );
    assert!(
        msg.contains(&hex::encode(good.id)),
        "the error names the blob: {msg}"
    );
    f.server
        .wait_log(mark, &["rejected blob", &hex::encode(good.id)]);
    assert_eq!(c.have(&[good.id]), vec![false]);

    // The bytes were damaged in transit: the original digest no longer matches.
    let mut damaged = good.clone();
    let last = damaged.stored.len() - 1;
    damaged.stored[last] ^= 0x40;
    expect_error(
        c.request(Message::PutBlobs {
            blobs: vec![damaged],
        }),
        ErrorCode::DigestMismatch,
        "PutBlobs with damaged bytes",
    );
    assert_eq!(c.have(&[good.id]), vec![false]);

    // A header that is not a blob header (format byte 9), with a matching digest.
    let mut stored = good.stored.clone();
    stored[0] = 9;
    expect_error(
        c.request(Message::PutBlobs {
            blobs: vec![wire_blob(good.id, BlobKind::Data, stored)],
        }),
        ErrorCode::DigestMismatch,
        "PutBlobs with a bad header",
    );
    assert_eq!(c.have(&[good.id]), vec![false]);
    drop(c);

    let mut c = f.session();
    assert_eq!(
        c.have(&[good.id]),
        vec![false],
        "a refused blob is held after all"
    );
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_refused_blob_in_a_batch_leaves_what_the_server_reports_held_durable() {
    let mut f = Fixture::new(15);
    let data: Vec<WireBlob> = f
        .fresh
        .iter()
        .filter(|b| b.kind == BlobKind::Data)
        .take(3)
        .cloned()
        .collect();
    assert!(
        data.len() >= 2,
        "the second backup stored at least two data blobs"
    );
    let mut bad = data[1].clone();
    bad.digest[3] ^= 0x80;
    let mut batch = vec![data[0].clone(), bad];
    batch.extend(data[2..].iter().cloned());
    let ids: Vec<[u8; 32]> = data.iter().map(|b| b.id).collect();

    let mut c = f.session();
    expect_error(
        c.request(Message::PutBlobs { blobs: batch }),
        ErrorCode::DigestMismatch,
        "a batch with one bad blob",
    );
    let during = c.have(&ids);
    assert!(!during[1], "the refused blob is reported held");
    let _ = c.shutdown();
    drop(c);
    // Whatever the session said it held must still be held by the next one: "held" means
    // durable (docs/wire.md 3.3).
    let mut c = f.session();
    let after = c.have(&ids);
    for (i, (d, a)) in during.iter().zip(&after).enumerate() {
        assert!(
            !*d || *a,
            "blob {i} was reported held during the session but is gone after it \
             (during: {during:?}, after: {after:?})"
        );
    }
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_refs_blob_whose_content_does_not_match_its_id_is_refused() {
    let mut f = Fixture::new(16);
    let refs = f.fresh_of(BlobKind::Refs).clone();
    let mut c = f.session();

    // One id of the list changed; the digest is made to match the changed bytes.
    let mut stored = refs.stored.clone();
    let last = stored.len() - 1;
    stored[last] ^= 1;
    let lying = wire_blob(refs.id, BlobKind::Refs, stored);
    let msg = expect_error(
        c.request(Message::PutBlobs { blobs: vec![lying] }),
        ErrorCode::DigestMismatch,
        "a refs blob not matching its id",
    );
    assert!(msg.contains(&hex::encode(refs.id)), "{msg}");
    assert_eq!(c.have(&[refs.id]), vec![false]);

    // A genuine refs blob announced under another id.
    let other_id = f.pushed.blobs[0];
    let renamed = wire_blob(other_id, BlobKind::Refs, refs.stored.clone());
    expect_error(
        c.request(Message::PutBlobs {
            blobs: vec![renamed],
        }),
        ErrorCode::DigestMismatch,
        "a refs blob under another id",
    );
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_blob_announced_with_another_kind_than_its_header_is_refused() {
    let mut f = Fixture::new(17);
    let mut c = f.session();
    for (kind, announced) in [
        (BlobKind::Data, BlobKind::Meta),
        (BlobKind::Data, BlobKind::Refs),
        (BlobKind::Meta, BlobKind::Data),
        (BlobKind::Refs, BlobKind::Data),
    ] {
        let b = f.fresh_of(kind).clone();
        let lying = wire_blob(b.id, announced, b.stored.clone());
        let msg = expect_error(
            c.request(Message::PutBlobs { blobs: vec![lying] }),
            ErrorCode::DigestMismatch,
            &format!("a {kind:?} blob announced as {announced:?}"),
        );
        eprintln!("{kind:?} as {announced:?}: {msg}");
        assert!(msg.contains(&hex::encode(b.id)), "{msg}");
        assert_eq!(c.have(&[b.id]), vec![false], "{kind:?} as {announced:?}");
    }
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_data_blob_under_a_wrong_id_is_caught_by_the_owner_and_collected() {
    // A data or meta id is keyed: the keyless server cannot check it (docs/wire.md 7) and stores
    // the blob. Nothing the tenant holds depends on it; the owner's verify names it as damage
    // and the server's garbage collection removes it, since no snapshot references it.
    let mut f = Fixture::new(25);
    let d = f.fresh_of(BlobKind::Data).clone();
    let wrong = [0x5a; 32];
    let mut c = f.session();
    assert_eq!(
        c.put_blobs(&[wire_blob(wrong, BlobKind::Data, d.stored.clone())]),
        (1, 0)
    );
    drop(c);
    let replica = f.source.at(f.server.tenant_dir("acme"));
    let out = replica.run(["verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        common::cli::describe(&out)
    );
    assert!(
        stderr.contains(&hex::encode(wrong)),
        "verify names the blob under the wrong id: {}",
        common::cli::describe(&out)
    );
    for snap in replica.snapshots() {
        let id = common::cli::snap_id(&snap);
        replica.restore(&id, &f.source.scratch(&format!("before-gc-{id}")));
    }
    let out = f.server.operator("gc", &["--tenant", "acme"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        common::cli::describe(&out)
    );
    let mut c = f.session();
    assert_eq!(
        c.have(&[wrong]),
        vec![false],
        "gc kept an unreferenced blob"
    );
    drop(c);
    f.assert_unchanged();
}

#[test]
fn a_snapshot_referencing_blobs_never_sent_is_refused_and_not_listed() {
    let mut f = Fixture::new(18);
    let (sid, file) = f.fresh_snapshot.clone();
    let sid_hex = hex::encode(sid);
    let snap_path = f.server.tenant_dir("acme").join("snapshots").join(&sid_hex);
    let mut c = f.session();

    let msg = expect_error(
        c.request(Message::PutSnapshot {
            id: sid,
            file: file.clone(),
        }),
        ErrorCode::MissingBlobs,
        "a snapshot without its blobs",
    );
    assert!(
        msg.contains(&sid_hex),
        "the error names the snapshot: {msg}"
    );
    assert!(!c.list().iter().any(|e| e.id == sid));
    assert!(!snap_path.exists());

    // Its refs blobs alone: the ids they list are still missing.
    let refs: Vec<WireBlob> = f
        .fresh
        .iter()
        .filter(|b| b.kind == BlobKind::Refs)
        .cloned()
        .collect();
    c.put_blobs(&refs);
    expect_error(
        c.request(Message::PutSnapshot {
            id: sid,
            file: file.clone(),
        }),
        ErrorCode::MissingBlobs,
        "a snapshot with its refs blobs but not what they list",
    );
    assert!(!c.list().iter().any(|e| e.id == sid));
    assert!(!snap_path.exists());

    // Everything but one data blob.
    let rest: Vec<WireBlob> = f
        .fresh
        .iter()
        .filter(|b| b.kind != BlobKind::Refs)
        .skip(1)
        .cloned()
        .collect();
    c.put_blobs(&rest);
    expect_error(
        c.request(Message::PutSnapshot {
            id: sid,
            file: file.clone(),
        }),
        ErrorCode::MissingBlobs,
        "a snapshot missing one blob",
    );
    drop(c);
    f.assert_unchanged();

    // With every blob sent it is accepted.
    let mut c = f.session();
    c.put_blobs(&f.fresh);
    match c.request(Message::PutSnapshot { id: sid, file }) {
        Ok(Message::Ok) => {}
        other => panic!("PutSnapshot with every blob held: expected Ok, got {other:?}"),
    }
    drop(c);
    f.assert_fresh_committed();
}

#[test]
fn a_snapshot_whose_bytes_do_not_match_its_id_is_refused() {
    let mut f = Fixture::new(19);
    let mut c = f.session();
    c.put_blobs(&f.fresh);
    let (sid, file) = f.fresh_snapshot.clone();
    let snapshots_dir = f.server.tenant_dir("acme").join("snapshots");
    let count = || {
        fs::read_dir(&snapshots_dir)
            .expect("listing snapshots")
            .count()
    };
    let before = count();

    // A genuine file under another id.
    let other = f.pushed.snapshots[0];
    let msg = expect_error(
        c.request(Message::PutSnapshot {
            id: other,
            file: file.clone(),
        }),
        ErrorCode::DigestMismatch,
        "a snapshot under another id",
    );
    assert!(msg.contains(&hex::encode(other)), "{msg}");
    // One byte changed, announced under the original id.
    let mut damaged = file.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    expect_error(
        c.request(Message::PutSnapshot {
            id: sid,
            file: damaged,
        }),
        ErrorCode::DigestMismatch,
        "a damaged snapshot",
    );
    // Bytes that name themselves correctly but are no snapshot file.
    let junk = b"not a snapshot file at all, but long enough to have a header".to_vec();
    let junk_id = *blake3::hash(&junk).as_bytes();
    expect_error(
        c.request(Message::PutSnapshot {
            id: junk_id,
            file: junk,
        }),
        ErrorCode::DigestMismatch,
        "a file without the snapshot layout",
    );
    // A snapshot whose lengths do not add up (one byte appended), correctly named.
    let mut long = file.clone();
    long.push(0);
    let long_id = *blake3::hash(&long).as_bytes();
    expect_error(
        c.request(Message::PutSnapshot {
            id: long_id,
            file: long,
        }),
        ErrorCode::DigestMismatch,
        "a snapshot with a wrong length",
    );
    assert_eq!(count(), before, "a refused snapshot was written");
    let listed: HashSet<[u8; 32]> = c.list().iter().map(|e| e.id).collect();
    let expected: HashSet<[u8; 32]> = f.pushed.snapshots.iter().copied().collect();
    assert_eq!(listed, expected);
    drop(c);
    f.assert_unchanged();
}

#[test]
fn replayed_blobs_and_snapshots_are_acknowledged_and_stored_once() {
    let mut f = Fixture::new(20);
    let n = u32::try_from(f.fresh.len()).expect("few blobs");
    let mut c = f.session();
    assert_eq!(
        c.put_blobs(&f.fresh),
        (n, 0),
        "first PutBlobs stores everything"
    );
    assert_eq!(
        c.put_blobs(&f.fresh),
        (0, n),
        "a replay finds everything present"
    );

    // Pipelined replays, and a replay on another connection.
    let first = c.send(&Message::PutBlobs {
        blobs: f.fresh.clone(),
    });
    let second = c.send(&Message::PutBlobs {
        blobs: f.fresh.clone(),
    });
    let (first, second) = (first.expect("sending"), second.expect("sending"));
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match c.read_reply() {
            Ok(Some(r)) => replies.push(r),
            other => panic!("waiting for two PutOk: {other:?}"),
        }
    }
    replies.sort_by_key(|(req, _)| *req);
    assert_eq!(
        replies,
        vec![
            (
                first,
                Message::PutOk {
                    stored: 0,
                    present: n
                }
            ),
            (
                second,
                Message::PutOk {
                    stored: 0,
                    present: n
                }
            ),
        ]
    );
    let mut c2 = f.session();
    assert_eq!(c2.put_blobs(&f.fresh), (0, n));

    // Each blob has exactly one copy in the tenant's packs.
    let mut copies = std::collections::HashMap::new();
    for p in pack::all(&f.server.tenant_dir("acme")) {
        for e in p.entries {
            *copies.entry(e.id).or_insert(0u32) += 1;
        }
    }
    for b in &f.fresh {
        assert_eq!(
            copies.get(&b.id),
            Some(&1),
            "blob {} has {:?} copies",
            hex::encode(b.id),
            copies.get(&b.id)
        );
    }

    // The snapshot, three times on two connections: Ok each time, one file.
    let (sid, file) = f.fresh_snapshot.clone();
    for use_second in [false, false, true] {
        let client = if use_second { &mut c2 } else { &mut c };
        match client.request(Message::PutSnapshot {
            id: sid,
            file: file.clone(),
        }) {
            Ok(Message::Ok) => {}
            other => panic!("PutSnapshot (replayed): expected Ok, got {other:?}"),
        }
    }
    let names: Vec<String> = fs::read_dir(f.server.tenant_dir("acme").join("snapshots"))
        .expect("listing snapshots")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), f.pushed.snapshots.len() + 1, "{names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == hex::encode(sid)).count(),
        1,
        "{names:?}"
    );
    drop(c);
    drop(c2);
    f.assert_fresh_committed();
}

#[test]
fn requests_before_hello_a_second_hello_and_other_versions_are_refused() {
    let mut f = Fixture::new(21);
    let ids = f.pushed.blobs[..2].to_vec();
    let (sid, file) = f.fresh_snapshot.clone();

    // Before Hello: every request is refused as unauthorized, and nothing is done.
    let mut c = f.raw();
    let before_hello = vec![
        Message::ListSnapshots,
        Message::Have { ids: ids.clone() },
        Message::GetBlobs { ids: ids.clone() },
        Message::PutBlobs {
            blobs: f.fresh.clone(),
        },
        Message::PutSnapshot {
            id: sid,
            file: file.clone(),
        },
        Message::GetSnapshot {
            id: f.pushed.snapshots[0],
        },
        Message::Forget {
            id: f.pushed.snapshots[0],
        },
        Message::GetVaultMeta,
        vault_meta(&f.source.dir),
    ];
    for msg in before_hello {
        let what = format!("{} before Hello", msg.type_name());
        let m = expect_error(c.request(msg), ErrorCode::Unauthorized, &what);
        assert!(m.contains("Hello"), "{what}: {m}");
    }
    // Hello still works on that connection; a second one is refused.
    assert!(c.welcome(f.pushed.vault_id));
    let m = expect_error(
        c.hello(f.pushed.vault_id),
        ErrorCode::BadRequest,
        "a second Hello",
    );
    eprintln!("second Hello: {m}");
    assert_eq!(
        c.list().len(),
        f.pushed.snapshots.len(),
        "the session goes on"
    );
    let fresh = f.fresh_ids();
    assert!(
        c.have(&fresh).iter().all(|h| !h),
        "blobs sent before Hello were stored"
    );
    drop(c);

    // Protocol version 2: refused, naming the version spoken, and the connection is closed.
    let mut c = f.raw();
    let m = expect_error(
        c.request(Message::Hello {
            proto: 2,
            client: "test".into(),
            vault_id: f.pushed.vault_id,
        }),
        ErrorCode::BadRequest,
        "Hello with protocol 2",
    );
    assert!(m.contains('2') && m.contains('1'), "{m}");
    let after = c.expect_closed();
    assert!(after.is_empty(), "frames after the refusal: {after:?}");

    // Another vault than the tenant's: by Hello, and by PutVaultMeta after a good Hello.
    let other = Vault::new();
    let mut c = f.raw();
    let mark = f.server.log_mark();
    expect_error(
        c.hello(common::remote::vault_id_of(&other.dir)),
        ErrorCode::DifferentVault,
        "Hello naming another vault",
    );
    f.server.wait_log(mark, &["another vault"]);
    drop(c);
    let mut c = f.session();
    expect_error(
        c.request(vault_meta(&other.dir)),
        ErrorCode::DifferentVault,
        "PutVaultMeta of another vault",
    );
    drop(c);
    f.assert_unchanged();
}

#[test]
fn vault_meta_that_lies_about_the_vault_or_its_key_names_is_refused() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme"), TenantConf::new("globex")]);
    let source = backed_up_vault(22);
    let cert = pki.client("acme");
    let vid = common::remote::vault_id_of(&source.dir);
    let dir = server.tenant_dir("acme");

    // A config of another vault than the one named in Hello.
    let other = Vault::new();
    let mut c = RawClient::connect(&server, &cert, &server.ca_pem()).expect("connecting");
    assert!(!c.welcome(vid));
    expect_error(
        c.request(vault_meta(&other.dir)),
        ErrorCode::DifferentVault,
        "PutVaultMeta of another vault than Hello's",
    );
    // Not a config at all.
    expect_error(
        c.request(Message::PutVaultMeta {
            config: b"{\"not\": \"a config\"}".to_vec(),
            keys: Vec::new(),
        }),
        ErrorCode::BadRequest,
        "PutVaultMeta with a bad config",
    );
    // Key file names that are not plain names.
    let Message::PutVaultMeta { config, keys } = vault_meta(&source.dir) else {
        unreachable!("vault_meta makes PutVaultMeta")
    };
    for name in ["../../globex/config", "", ".", "..", "a/b", "nul\0"] {
        let mut bad = keys.clone();
        bad.push(tiervault_wire::WireKeyFile {
            name: name.to_owned(),
            file: keys[0].file.clone(),
        });
        expect_error(
            c.request(Message::PutVaultMeta {
                config: config.clone(),
                keys: bad,
            }),
            ErrorCode::BadRequest,
            &format!("PutVaultMeta with a key named {name:?}"),
        );
        assert!(
            !dir.join("config").exists(),
            "a refused PutVaultMeta made a vault"
        );
    }
    assert!(
        !server.tenant_dir("globex").exists(),
        "a key name escaped the tenant"
    );
    // After all that, the genuine meta creates the vault.
    match c.request(Message::PutVaultMeta { config, keys }) {
        Ok(Message::Ok) => {}
        other => panic!("the genuine PutVaultMeta after refused ones: expected Ok, got {other:?}"),
    }
    drop(c);
    let pushed = push_vault_as(&server, &cert, &source.dir);
    let listed = assert_tenant_consistent(&server, "acme", &source);
    assert_eq!(listed.len(), pushed.snapshots.len());
}

#[test]
fn a_client_cut_mid_batch_leaves_a_consistent_vault_and_can_resume() {
    let mut f = Fixture::new(23);
    let mut c = f.session();
    // Small batches so that some are acknowledged, one is in flight and one is cut.
    let per = f.fresh.len().div_ceil(4);
    let parts: Vec<Vec<WireBlob>> = f.fresh.chunks(per).map(<[WireBlob]>::to_vec).collect();
    assert!(parts.len() >= 3);
    let acked = c.put_blobs(&parts[0]);
    assert_eq!(acked.0 as usize, parts[0].len());
    c.send(&Message::PutBlobs {
        blobs: parts[1].clone(),
    })
    .expect("sending");
    let cut = tiervault_wire::encode(
        c.next_req(),
        &Message::PutBlobs {
            blobs: parts[2].clone(),
        },
    )
    .expect("encoding");
    let mark = f.server.log_mark();
    c.send_raw(&cut[..cut.len() / 2])
        .expect("sending half a frame");
    drop(c);
    f.server.wait_log(mark, &["closing"]);

    // What was acknowledged is held; the rest may or may not be; the vault is consistent.
    let mut c = f.session();
    let ids0: Vec<[u8; 32]> = parts[0].iter().map(|b| b.id).collect();
    assert!(
        c.have(&ids0).iter().all(|h| *h),
        "acknowledged blobs are gone"
    );
    let ids: Vec<[u8; 32]> = f.fresh.iter().map(|b| b.id).collect();
    let held = c.have(&ids);
    eprintln!(
        "after the cut the server holds {} of {} fresh blobs",
        held.iter().filter(|h| **h).count(),
        held.len()
    );
    drop(c);
    f.assert_unchanged();

    // The appliance resumes: sends what is missing, then the snapshot.
    f.resume_and_commit_fresh("after resuming");
}

#[test]
fn a_server_killed_mid_session_keeps_what_it_acknowledged() {
    let mut f = Fixture::new(24);
    let half = f.fresh.len() / 2;
    let (first, second) = (f.fresh[..half].to_vec(), f.fresh[half..].to_vec());
    let mut c = f.session();
    assert_eq!(c.put_blobs(&first).0 as usize, first.len());
    // The second half is in flight when the server dies.
    c.send(&Message::PutBlobs {
        blobs: second.clone(),
    })
    .expect("sending");
    f.server.kill();
    drop(c);
    f.server.restart();

    let mut c = f.session();
    let ids: Vec<[u8; 32]> = first.iter().map(|b| b.id).collect();
    assert!(
        c.have(&ids).iter().all(|h| *h),
        "blobs acknowledged before the kill are gone"
    );
    drop(c);
    f.assert_unchanged();

    f.resume_and_commit_fresh("after the restart");
}

#[test]
fn silent_peers_are_closed_after_the_idle_timeout() {
    use std::io::Read;
    let pki = Pki::new();
    let server =
        RemoteServer::start_with(&pki, &[TenantConf::new("acme")], "idle-timeout = \"2s\"");
    // A TCP peer that never starts the TLS handshake.
    let mark = server.log_mark();
    let mut tcp = std::net::TcpStream::connect(server.addr()).expect("connecting over TCP");
    tcp.set_read_timeout(Some(common::remote::IO_TIMEOUT))
        .expect("setting a read timeout");
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a peer without a handshake was not closed: {other:?}"),
    }
    server.wait_log(mark, &["no TLS handshake within 2s"]);

    // A session that says hello and then nothing.
    let mark = server.log_mark();
    let mut c = RawClient::connect(&server, &pki.client("acme"), &server.ca_pem())
        .expect("connecting as acme");
    match c.hello([7; 32]) {
        Ok(Message::Welcome { .. }) => {}
        other => panic!("Hello: expected Welcome, got {other:?}"),
    }
    assert!(
        c.expect_closed().is_empty(),
        "no frame expected before the close"
    );
    server.wait_log(mark, &["acme", "nothing received for 2s"]);
}

#[test]
fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let pki = Pki::new();
    let server = RemoteServer::start_with(&pki, &[TenantConf::new("acme")], "max-connections = 1");
    let cert = pki.client("acme");
    let connect = || RawClient::connect(&server, &cert, &server.ca_pem());
    let mut first = connect().expect("the first connection is served");
    match first.hello([7; 32]) {
        Ok(Message::Welcome { .. }) => {}
        other => panic!("Hello: expected Welcome, got {other:?}"),
    }
    let mark = server.log_mark();
    match connect() {
        Err(_) => {}
        Ok(mut c) => {
            // TLS 1.3 lets a client finish its side before the server has spoken: the
            // refusal then shows as the connection ending without a reply.
            assert!(
                c.hello([7; 32]).is_err(),
                "a second connection over max-connections = 1 was served"
            );
        }
    }
    server.wait_log(mark, &["at the connection limit (1)"]);
    let _ = first.shutdown();
    drop(first);
    // The slot is given back when the first connection ends.
    let deadline = std::time::Instant::now() + common::remote::IO_TIMEOUT;
    loop {
        if let Ok(mut c) = connect() {
            if matches!(c.hello([7; 32]), Ok(Message::Welcome { .. })) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection was served after the first one closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
