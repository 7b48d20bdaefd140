//! The disk-image dataset: a sparse ext4 image built with `mkfs.ext4 -d`, hole-preserving
//! copies, and the "v2" edit (random 4 KiB-aligned runs overwritten inside data extents).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use rustix::fs::SeekFrom;
use serde::{Deserialize, Serialize};

use super::dataset::{derive_seed, gen_content, FileKind, Rng, Vocab};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub seed: u64,
    /// Apparent size of the image file.
    pub image_size: u64,
    /// Bytes of file content put into the file system.
    pub content_bytes: u64,
    pub min_file: u64,
    pub max_file: u64,
    /// Share of the allocated bytes overwritten by the v2 edit.
    pub edit_fraction: f64,
    pub run_min: u64,
    pub run_max: u64,
}

impl ImageSpec {
    /// A 2 GiB ext4 image holding ~1.3 GB of files from 4 KB to 40 MB.
    pub fn standard() -> Self {
        ImageSpec {
            seed: 0x696d_6167_6576_3031,
            image_size: 2 << 30,
            content_bytes: 1_300_000_000,
            min_file: 4_000,
            max_file: 40_000_000,
            edit_fraction: 0.02,
            run_min: 64 << 10,
            run_max: 1 << 20,
        }
    }

    /// About 20× smaller than `standard`.
    pub fn small() -> Self {
        ImageSpec {
            image_size: 100 << 20,
            content_bytes: 65_000_000,
            max_file: 4_000_000,
            run_min: 16 << 10,
            run_max: 256 << 10,
            ..ImageSpec::standard()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStats {
    pub files: u64,
    pub content_bytes: u64,
    pub image_size: u64,
    /// Bytes in data extents (SEEK_DATA) of the sparse image file.
    pub allocated_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEditStats {
    pub runs: u64,
    pub bytes: u64,
}

/// `mkfs.ext4` on PATH or in the sbin directories (often missing from a user's PATH).
pub fn find_mkfs() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// Data extents `(offset, length)` of a file, as `SEEK_DATA`/`SEEK_HOLE` report them.
pub fn data_extents(path: &Path) -> Result<Vec<(u64, u64)>> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = f.metadata()?.len();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(&f, SeekFrom::Data(pos as i64)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e).with_context(|| format!("SEEK_DATA in {}", path.display())),
        };
        let end = rustix::fs::seek(&f, SeekFrom::Hole(start as i64))
            .with_context(|| format!("SEEK_HOLE in {}", path.display()))?;
        if end > start {
            out.push((start, end - start));
        }
        pos = end.max(start + 1);
    }
    Ok(out)
}

/// Copies `src` to `dst` writing only its data extents, so holes stay holes.
pub fn copy_sparse(src: &Path, dst: &Path) -> Result<()> {
    let extents = data_extents(src)?;
    let sf = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let size = sf.metadata()?.len();
    let _ = fs::remove_file(dst);
    let df = fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    df.set_len(size)?;
    let mut buf = vec![0u8; 1 << 20];
    for (start, len) in extents {
        let mut off = start;
        let end = start + len;
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            sf.read_exact_at(&mut buf[..n], off)
                .with_context(|| format!("reading {}", src.display()))?;
            df.write_all_at(&buf[..n], off)
                .with_context(|| format!("writing {}", dst.display()))?;
            off += n as u64;
        }
    }
    Ok(())
}

/// Generates the files of the image under `dir` (a few nested directories).
fn generate_files(dir: &Path, spec: &ImageSpec) -> Result<u64> {
    const DIRS: &[&str] = &[
        "home/alice/photos",
        "home/alice/docs",
        "home/bob/src/project",
        "home/bob/downloads",
        "var/lib/db",
        "var/log",
        "opt/app/lib",
        "opt/app/assets",
        "srv/www/static",
        "usr/share/data",
    ];
    let vocab = Vocab::new(spec.seed, 3000);
    let mut rng = Rng::new(derive_seed(spec.seed, 1));
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    let mut total = 0u64;
    let mut n = 0u64;
    let mut buf = Vec::new();
    while total < spec.content_bytes {
        let size = rng
            .log_uniform(spec.min_file, spec.max_file)
            .min(spec.content_bytes - total)
            .max(1);
        let r = rng.unit();
        let (kind, ext) = if r < 0.45 {
            (FileKind::Random, "jpg")
        } else if r < 0.7 {
            (FileKind::Text, "txt")
        } else if r < 0.85 {
            (FileKind::Structured, "db")
        } else {
            (FileKind::Mixed, "so")
        };
        let d = dir.join(DIRS[rng.index(DIRS.len())]);
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let p = d.join(format!("file_{n}.{ext}"));
        gen_content(
            &mut buf,
            kind,
            size as usize,
            derive_seed(spec.seed, 10 + n),
            &vocab,
        );
        fs::write(&p, &buf).with_context(|| format!("writing {}", p.display()))?;
        fs::File::options()
            .write(true)
            .open(&p)?
            .set_modified(mtime)?;
        total += size;
        n += 1;
    }
    Ok(n)
}

/// Builds the v1 image at `image` (`truncate -s SIZE` + `mkfs.ext4 -d`), using `scratch` for the
/// source files (removed afterwards).
pub fn build_image(
    mkfs: &Path,
    image: &Path,
    scratch: &Path,
    spec: &ImageSpec,
) -> Result<ImageStats> {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let files = generate_files(scratch, spec)?;
    let _ = fs::remove_file(image);
    let f = fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
    f.set_len(spec.image_size)?;
    drop(f);
    // Fixed UUID, hash seed and clock so that the file system metadata is reproducible too.
    let uuid = "7469e572-7661-756c-7462-656e63680001";
    let out = Command::new(mkfs)
        .args(["-q", "-F", "-U", uuid, "-E"])
        .arg(format!("root_owner=0:0,hash_seed={uuid}"))
        .arg("-d")
        .arg(scratch)
        .arg(image)
        .env("E2FSPROGS_FAKE_TIME", "1704067200")
        .output()
        .with_context(|| format!("running {}", mkfs.display()))?;
    if !out.status.success() {
        bail!(
            "mkfs.ext4 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::remove_dir_all(scratch).with_context(|| format!("removing {}", scratch.display()))?;
    let allocated = data_extents(image)?.iter().map(|e| e.1).sum();
    Ok(ImageStats {
        files,
        content_bytes: spec.content_bytes,
        image_size: spec.image_size,
        allocated_bytes: allocated,
    })
}

/// Turns a copy of the v1 image into its v2 in place: overwrites ~`edit_fraction` of its
/// allocated bytes with random data, in 4 KiB-aligned runs of `run_min..run_max` bytes that lie
/// inside data extents.
pub fn edit_image(image: &Path, spec: &ImageSpec) -> Result<ImageEditStats> {
    const ALIGN: u64 = 4096;
    let extents = data_extents(image)?;
    let allocated: u64 = extents.iter().map(|e| e.1).sum();
    let target = (allocated as f64 * spec.edit_fraction) as u64;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(image)
        .with_context(|| format!("opening {}", image.display()))?;
    let mut rng = Rng::new(derive_seed(spec.seed, 3));
    let mut st = ImageEditStats::default();
    let mut buf = Vec::new();
    let mut tries = 0;
    while st.bytes < target && tries < 1_000_000 && allocated > 0 {
        tries += 1;
        // A position uniform over the allocated bytes, then its extent.
        let mut pos = rng.below(allocated);
        let Some(&(es, el)) = extents.iter().find(|&&(_, l)| {
            if pos < l {
                true
            } else {
                pos -= l;
                false
            }
        }) else {
            continue;
        };
        let first = es.div_ceil(ALIGN) * ALIGN;
        let start = ((es + pos) / ALIGN * ALIGN).max(first);
        let len = rng.range(spec.run_min, spec.run_max + 1) / ALIGN * ALIGN;
        let end = (start + len).min((es + el) / ALIGN * ALIGN);
        if end <= start {
            continue;
        }
        buf.resize((end - start) as usize, 0);
        rng.fill(&mut buf);
        f.write_all_at(&buf, start)
            .with_context(|| format!("writing {}", image.display()))?;
        st.runs += 1;
        st.bytes += end - start;
    }
    f.sync_all()?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_and_edit() -> Result<()> {
        let tmp = std::env::temp_dir().join(format!("tv-bench-img-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let a = tmp.join("a.img");
        let f = fs::File::create(&a)?;
        f.set_len(64 << 20)?;
        let mut rng = Rng::new(5);
        let mut buf = vec![0u8; 4 << 20];
        rng.fill(&mut buf);
        f.write_all_at(&buf, 8 << 20)?;
        f.write_all_at(&buf, 40 << 20)?;
        drop(f);
        let ext = data_extents(&a)?;
        let alloc: u64 = ext.iter().map(|e| e.1).sum();
        assert!((8 << 20..32 << 20).contains(&alloc), "{ext:?}");
        let b = tmp.join("b.img");
        copy_sparse(&a, &b)?;
        assert_eq!(fs::read(&a)?, fs::read(&b)?);
        assert_eq!(data_extents(&b)?.iter().map(|e| e.1).sum::<u64>(), alloc);
        let spec = ImageSpec {
            run_min: 16 << 10,
            run_max: 64 << 10,
            ..ImageSpec::small()
        };
        let st = edit_image(&b, &spec)?;
        assert!(st.bytes >= alloc / 50 && st.runs > 0);
        assert_ne!(fs::read(&a)?, fs::read(&b)?);
        assert_eq!(data_extents(&b)?.iter().map(|e| e.1).sum::<u64>(), alloc);
        fs::remove_dir_all(&tmp)?;
        Ok(())
    }
}
