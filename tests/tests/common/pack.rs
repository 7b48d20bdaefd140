//! Reading pack files as docs/format.md section 5 lays them out, to aim corruption at a chosen
//! blob or at the trailer and footer. Only the plaintext framing is read; nothing is decrypted.

use std::fs;
use std::path::{Path, PathBuf};

/// Footer: magic[8] version u32 count u32 trailer_offset u64 pack_id[16] trailer_digest[32].
pub const FOOTER_LEN: u64 = 72;
/// Trailer entry: id[32] digest[16] stored_len u32 kind u8 reserved[3]; blobs lie back to back
/// from offset 0, so an entry's offset is the sum of the lengths before it.
pub const ENTRY_LEN: usize = 56;
/// Stored blob header (section 4.1), before the payload.
pub const BLOB_HEADER_LEN: u64 = 28;
/// AES-GCM tag appended to data and meta payloads.
pub const TAG_LEN: u64 = 16;

#[derive(Clone, Debug)]
pub struct Entry {
    pub id: [u8; 32],
    pub offset: u64,
    pub stored_len: u32,
    pub kind: u8,
}

#[derive(Clone, Debug)]
pub struct Pack {
    pub path: PathBuf,
    /// Hex pack id (the file name).
    pub id: String,
    pub len: u64,
    pub trailer_offset: u64,
    pub entries: Vec<Entry>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Parses the pack at `path`; panics with the path when it is not one.
pub fn read(path: &Path) -> Pack {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading pack {}: {e}", path.display()));
    let len = bytes.len() as u64;
    assert!(
        len >= FOOTER_LEN,
        "{} is too short to be a pack",
        path.display()
    );
    let footer = &bytes[bytes.len() - FOOTER_LEN as usize..];
    assert_eq!(
        &footer[..8],
        b"TVPACK01",
        "{}: bad pack magic",
        path.display()
    );
    let count = u32_at(footer, 12) as usize;
    let trailer_offset = u64_at(footer, 16);
    let trailer_end = trailer_offset as usize + count * ENTRY_LEN;
    assert_eq!(
        trailer_end as u64,
        len - FOOTER_LEN,
        "{}: trailer does not end at the footer",
        path.display()
    );
    let mut offset = 0u64;
    let entries = bytes[trailer_offset as usize..trailer_end]
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let entry = Entry {
                id: e[..32].try_into().expect("32 bytes"),
                offset,
                stored_len: u32_at(e, 48),
                kind: e[52],
            };
            offset += entry.stored_len as u64;
            entry
        })
        .collect();
    let id = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    Pack {
        path: path.to_path_buf(),
        id,
        len,
        trailer_offset,
        entries,
    }
}

/// Every pack of a vault with the default data directory: `<vault>/data/<xx>/<32 hex>`.
pub fn all(vault: &Path) -> Vec<Pack> {
    let mut packs = Vec::new();
    let data = vault.join("data");
    let Ok(dirs) = fs::read_dir(&data) else {
        return packs;
    };
    let mut dirs: Vec<PathBuf> = dirs.map(|d| d.expect("data dir entry").path()).collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().expect("name").to_string_lossy().into_owned();
        if name.len() != 2 || !d.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = fs::read_dir(&d)
            .expect("listing a pack directory")
            .map(|f| f.expect("entry").path())
            .collect();
        files.sort();
        for f in files {
            let n = f.file_name().expect("name").to_string_lossy().into_owned();
            if n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
                packs.push(read(&f));
            }
        }
    }
    packs
}
