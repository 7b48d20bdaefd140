//! The vault's `config` file (docs/format.md section 2).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChunkerSizes {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerSizes {
    fn default() -> Self {
        ChunkerSizes {
            min: 32 * 1024,
            avg: 128 * 1024,
            max: 512 * 1024,
        }
    }
}

impl ChunkerSizes {
    /// The limits of the fastcdc crate's 2020 algorithm, checked so `init` names a bad value.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: u32, lo: u32, hi: u32| v >= lo && v <= hi;
        if !ok(self.min, 64, 1 << 20) {
            return Err(format!("chunk min {} is outside 64 B..1 MiB", self.min));
        }
        if !ok(self.avg, 256, 4 << 20) {
            return Err(format!("chunk avg {} is outside 256 B..4 MiB", self.avg));
        }
        if !ok(self.max, 1024, 16 << 20) {
            return Err(format!("chunk max {} is outside 1 KiB..16 MiB", self.max));
        }
        if !(self.min <= self.avg && self.avg <= self.max) {
            return Err(format!(
                "chunk sizes must satisfy min <= avg <= max (got {}/{}/{})",
                self.min, self.avg, self.max
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageChunker {
    pub fixed: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub created: String,
    pub chunker: ChunkerSizes,
    pub image_chunker: ImageChunker,
    pub compression_level: i32,
    pub data_dirs: Vec<String>,
}

pub const FORMAT_NAME: &str = "tiervault-vault";
pub const VERSION: u32 = 1;

/// What `init` may choose.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerSizes,
    pub image_chunk: u32,
    pub compression_level: i32,
    /// Target duration of one passphrase derivation.
    pub kdf_time: std::time::Duration,
    /// Data directories, in order (`dir` numbers follow it): absolute, or relative to the
    /// vault. Each must be absent or empty (a fresh file system's `lost+found` aside).
    /// Empty: the single default `data`.
    pub data_dirs: Vec<std::path::PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerSizes::default(),
            image_chunk: 256 * 1024,
            compression_level: 3,
            kdf_time: std::time::Duration::from_millis(500),
            data_dirs: Vec::new(),
        }
    }
}

impl InitOptions {
    pub fn validate(&self) -> Result<(), String> {
        self.chunker.validate()?;
        if !(4096..=(16 << 20)).contains(&self.image_chunk)
            || !self.image_chunk.is_multiple_of(4096)
        {
            return Err(format!(
                "image chunk {} must be a multiple of 4096 between 4 KiB and 16 MiB",
                self.image_chunk
            ));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err(format!(
                "compression level {} is outside 1..19",
                self.compression_level
            ));
        }
        self.data_dir_entries().map(|_| ())
    }

    /// The data directories as `config` lists them (checked; the default when none given).
    pub fn data_dir_entries(&self) -> Result<Vec<String>, String> {
        if self.data_dirs.is_empty() {
            return Ok(vec![crate::datadir::DEFAULT_DIR.into()]);
        }
        if self.data_dirs.len() > u16::MAX as usize {
            return Err("too many data directories".into());
        }
        let mut out: Vec<String> = Vec::with_capacity(self.data_dirs.len());
        for d in &self.data_dirs {
            let e = crate::datadir::config_entry(d)?;
            if out.contains(&e) {
                return Err(format!("data directory {e} is given twice"));
            }
            out.push(e);
        }
        Ok(out)
    }
}

impl Config {
    /// The vault id named by a config file's bytes.
    pub fn vault_id_of(bytes: &[u8]) -> Result<[u8; 32], String> {
        let c: Config = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        c.vault_id()
    }

    pub fn vault_id(&self) -> Result<[u8; 32], String> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(&self.id, &mut id)
            .map_err(|_| "id is not 64 hex digits".to_string())?;
        Ok(id)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!("format {:?} is not {FORMAT_NAME:?}", self.format));
        }
        if self.version != VERSION {
            return Err(format!(
                "format version {} (this program reads version {VERSION})",
                self.version
            ));
        }
        self.vault_id()?;
        self.chunker.validate()?;
        if self.data_dirs.is_empty() {
            return Err("data_dirs is empty".into());
        }
        Ok(())
    }
}
