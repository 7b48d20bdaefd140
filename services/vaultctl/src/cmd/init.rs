use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tiervault_store::{io, ChunkerSizes, InitOptions, Vault};

use crate::cli::{Global, InitArgs};
use crate::open::{secret, vault_dir};
use crate::output::print_json;
use crate::Outcome;

pub fn run(g: &Global, a: &InitArgs) -> Result<Outcome> {
    let dir = vault_dir(g);
    let opts = InitOptions {
        chunker: ChunkerSizes {
            min: a.chunk_min,
            avg: a.chunk_avg,
            max: a.chunk_max,
        },
        image_chunk: a.image_chunk,
        compression_level: a.compression,
        kdf_time: Duration::from_millis(a.kdf_time_ms),
        data_dirs: a.data_dirs.clone(),
    };
    opts.validate().map_err(tiervault_store::Error::Invalid)?;
    let s = secret(g, true)?;
    let v = Vault::init(&dir, &s, &opts, io::default_io())
        .with_context(|| format!("creating vault {}", dir.display()))?;
    let c = v.config();
    if g.json {
        print_json(&json!({
            "vault": dir.display().to_string(),
            "id": c.id,
            "chunker": c.chunker,
            "image_chunk": c.image_chunker.fixed,
            "compression_level": c.compression_level,
            "data_dirs": c.data_dirs,
            "io_engine": v.io().engine(),
            "kdf": v.key_files()?.first().map(|k| json!({
                "kind": k.kind, "kdf": k.kdf, "m_kib": k.m_kib, "t": k.t, "p": k.p,
            })),
        }));
    } else if !g.quiet {
        outln!("created vault {} (id {})", dir.display(), &c.id[..16]);
    }
    Ok(Outcome::Ok)
}
