//! Body layouts of the messages (docs/wire.md section 3). The writer and the reader of
//! every message sit side by side, so that a change to one is made next to the other.

use crate::codec::{Reader, Writer};
use crate::message::{
    type_name_of, BlobKind, ErrorCode, Message, SnapshotEntry, WireBlob, WireKeyFile,
    BLOB_HEADER_LEN, DIGEST_LEN, ID_LEN, MAX_BATCH, MAX_ERROR_MESSAGE_LEN, MAX_KEYS, MAX_NAME_LEN,
};
use crate::WireError;

// Smallest encodings of list items: a count is checked against them before anything is
// allocated, so a forged count costs the receiver nothing.
const MIN_BLOB_LEN: usize = ID_LEN + 1 + DIGEST_LEN + 4 + BLOB_HEADER_LEN;
const SNAPSHOT_ENTRY_LEN: usize = ID_LEN + 8 + 4 + 8;
const MIN_KEY_LEN: usize = 2 + 4;

impl Message {
    /// Appends the body (everything after the request id).
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut w = Writer::new(out, self.type_name());
        match self {
            Self::Hello {
                proto,
                client,
                vault_id,
            } => {
                w.u16(*proto);
                w.str("client", client, MAX_NAME_LEN)?;
                w.raw(vault_id);
            }
            Self::Welcome {
                proto,
                tenant,
                has_vault,
            } => {
                w.u16(*proto);
                w.str("tenant", tenant, MAX_NAME_LEN)?;
                w.flag(*has_vault);
            }
            Self::Error { code, message } => {
                w.u16(code.to_u16());
                w.str("message", message, MAX_ERROR_MESSAGE_LEN)?;
            }
            Self::Ok | Self::ListSnapshots | Self::GetVaultMeta => {}
            Self::Have { ids } | Self::GetBlobs { ids } => {
                w.count32("count", ids.len(), MAX_BATCH)?;
                for id in ids {
                    w.raw(id);
                }
            }
            Self::HaveReply { held } => {
                w.count32("count", held.len(), MAX_BATCH)?;
                let mut bitmap = vec![0u8; held.len().div_ceil(8)];
                for (i, _) in held.iter().enumerate().filter(|(_, &h)| h) {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
                w.raw(&bitmap);
            }
            Self::PutBlobs { blobs } | Self::Blobs { blobs } => {
                w.count32("count", blobs.len(), MAX_BATCH)?;
                for (index, blob) in blobs.iter().enumerate() {
                    if blob.stored.len() < BLOB_HEADER_LEN {
                        return Err(WireError::StoredTooShort {
                            message: self.type_name(),
                            index,
                            len: blob.stored.len(),
                        });
                    }
                    w.raw(&blob.id);
                    w.u8(blob.kind.code());
                    w.raw(&blob.digest);
                    w.bytes("blob stored", &blob.stored)?;
                }
            }
            Self::PutOk { stored, present } => {
                w.u32(*stored);
                w.u32(*present);
            }
            Self::PutSnapshot { id, file } | Self::SnapshotData { id, file } => {
                w.raw(id);
                w.bytes("file", file)?;
            }
            Self::SnapshotList { snapshots } => {
                w.count32("count", snapshots.len(), u32::MAX)?;
                for s in snapshots {
                    w.raw(&s.id);
                    w.i64(s.time);
                    w.u32(s.size);
                    w.i64(s.locked_until);
                }
            }
            Self::GetSnapshot { id } | Self::Forget { id } => w.raw(id),
            Self::VaultMeta { config, keys } | Self::PutVaultMeta { config, keys } => {
                w.bytes("config", config)?;
                w.count16("key_count", keys.len(), MAX_KEYS)?;
                for key in keys {
                    w.str("key name", &key.name, MAX_NAME_LEN)?;
                    w.bytes("key file", &key.file)?;
                }
            }
        }
        Ok(())
    }

    /// Decodes the body of a message of type `code`; the body must be consumed exactly.
    pub(crate) fn decode_body(code: u8, body: &[u8]) -> Result<Self, WireError> {
        let name = type_name_of(code).ok_or(WireError::UnknownType { code })?;
        let mut r = Reader::new(body, name);
        let msg = match code {
            0x01 => Self::Hello {
                proto: r.u16("proto")?,
                client: r.str("client", MAX_NAME_LEN)?,
                vault_id: r.array("vault_id")?,
            },
            0x02 => Self::Welcome {
                proto: r.u16("proto")?,
                tenant: r.str("tenant", MAX_NAME_LEN)?,
                has_vault: r.flag("has_vault")?,
            },
            0x03 => Self::Error {
                code: ErrorCode::from_u16(r.u16("code")?),
                message: r.str("message", MAX_ERROR_MESSAGE_LEN)?,
            },
            0x04 => Self::Ok,
            0x10 => Self::Have {
                ids: read_ids(&mut r)?,
            },
            0x11 => Self::HaveReply {
                held: read_bitmap(&mut r)?,
            },
            0x12 => Self::PutBlobs {
                blobs: read_blobs(&mut r)?,
            },
            0x13 => Self::PutOk {
                stored: r.u32("stored")?,
                present: r.u32("present")?,
            },
            0x14 => Self::PutSnapshot {
                id: r.array("id")?,
                file: r.bytes("file")?.to_vec(),
            },
            0x15 => Self::ListSnapshots,
            0x16 => Self::SnapshotList {
                snapshots: read_snapshots(&mut r)?,
            },
            0x17 => Self::GetSnapshot { id: r.array("id")? },
            0x18 => Self::SnapshotData {
                id: r.array("id")?,
                file: r.bytes("file")?.to_vec(),
            },
            0x19 => Self::GetBlobs {
                ids: read_ids(&mut r)?,
            },
            0x1A => Self::Blobs {
                blobs: read_blobs(&mut r)?,
            },
            0x1B => Self::Forget { id: r.array("id")? },
            0x1C => Self::GetVaultMeta,
            0x1D => {
                let (config, keys) = read_vault_meta(&mut r)?;
                Self::VaultMeta { config, keys }
            }
            0x1E => {
                let (config, keys) = read_vault_meta(&mut r)?;
                Self::PutVaultMeta { config, keys }
            }
            _ => return Err(WireError::UnknownType { code }),
        };
        r.finish()?;
        Ok(msg)
    }
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<[u8; ID_LEN]>, WireError> {
    let count = r.count32("count", MAX_BATCH, ID_LEN)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(r.array("id")?);
    }
    Ok(ids)
}

fn read_bitmap(r: &mut Reader<'_>) -> Result<Vec<bool>, WireError> {
    // The bitmap is checked as a whole below, so no per-item minimum here.
    let count = r.count32("count", MAX_BATCH, 0)?;
    let bitmap = r.slice("bitmap", count.div_ceil(8))?;
    if let Some(&last) = bitmap.last() {
        let used = count % 8;
        if used != 0 && last >> used != 0 {
            return Err(WireError::BitmapPadding {
                count: count as u32,
            });
        }
    }
    Ok((0..count)
        .map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
        .collect())
}

fn read_blobs(r: &mut Reader<'_>) -> Result<Vec<WireBlob>, WireError> {
    let count = r.count32("count", MAX_BATCH, MIN_BLOB_LEN)?;
    let mut blobs = Vec::with_capacity(count);
    for index in 0..count {
        let id = r.array("blob id")?;
        let kind_code = r.u8("blob kind")?;
        let kind = BlobKind::from_code(kind_code).ok_or(WireError::BadBlobKind {
            message: r.message(),
            index,
            kind: kind_code,
        })?;
        let digest = r.array("blob digest")?;
        let stored = r.bytes("blob stored")?;
        if stored.len() < BLOB_HEADER_LEN {
            return Err(WireError::StoredTooShort {
                message: r.message(),
                index,
                len: stored.len(),
            });
        }
        blobs.push(WireBlob {
            id,
            kind,
            digest,
            stored: stored.to_vec(),
        });
    }
    Ok(blobs)
}

fn read_snapshots(r: &mut Reader<'_>) -> Result<Vec<SnapshotEntry>, WireError> {
    // No limit of its own: the frame limit bounds it, and the count is checked against it.
    let count = r.count32("count", u32::MAX, SNAPSHOT_ENTRY_LEN)?;
    let mut snapshots = Vec::with_capacity(count);
    for _ in 0..count {
        snapshots.push(SnapshotEntry {
            id: r.array("snapshot id")?,
            time: r.i64("snapshot time")?,
            size: r.u32("snapshot size")?,
            locked_until: r.i64("snapshot locked_until")?,
        });
    }
    Ok(snapshots)
}

type VaultMetaBody = (Vec<u8>, Vec<WireKeyFile>);

fn read_vault_meta(r: &mut Reader<'_>) -> Result<VaultMetaBody, WireError> {
    let config = r.bytes("config")?.to_vec();
    let count = r.count16("key_count", MAX_KEYS, MIN_KEY_LEN)?;
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        keys.push(WireKeyFile {
            name: r.str("key name", MAX_NAME_LEN)?,
            file: r.bytes("key file")?.to_vec(),
        });
    }
    Ok((config, keys))
}
