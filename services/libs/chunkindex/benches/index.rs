//! Chunk index benchmark: insert N synthetic ids, commit, reopen, then time lookups of present
//! and absent ids (one thread, then several), and report RAM and disk per entry.
//!
//! `cargo bench -p tiervault-chunkindex --bench index -- --entries 100000000 --budget-mib 380
//! --dir /tmp/idxbench [--threads 2] [--lookups 1000000] [--repeat 3] [--bits 16]
//! [--drop-caches] [--keep] [--json]`
//!
//! `bench-cgroup.sh` beside Cargo.toml runs it inside a memory cgroup sized to the budget.

use std::path::PathBuf;
use std::time::Instant;

use tiervault_chunkindex::{ChunkIndex, Options};

struct Args {
    entries: u64,
    budget_mib: u64,
    dir: PathBuf,
    threads: usize,
    lookups: u64,
    repeat: usize,
    bits: u32,
    drop_caches: bool,
    read_threads: usize,
    keep: bool,
    reuse: bool,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        entries: 1_000_000,
        budget_mib: 64,
        dir: PathBuf::from("/tmp/idxbench"),
        threads: 2,
        lookups: 1_000_000,
        repeat: 3,
        bits: 16,
        drop_caches: false,
        read_threads: 8,
        keep: false,
        reuse: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |s: String| s.replace('_', "").parse::<u64>().map_err(|e| e.to_string());
        match arg.as_str() {
            "--entries" => a.entries = num(val("--entries")?)?,
            "--budget-mib" => a.budget_mib = num(val("--budget-mib")?)?,
            "--dir" => a.dir = PathBuf::from(val("--dir")?),
            "--threads" => a.threads = num(val("--threads")?)? as usize,
            "--lookups" => a.lookups = num(val("--lookups")?)?,
            "--repeat" => a.repeat = num(val("--repeat")?)?.max(1) as usize,
            "--bits" => a.bits = num(val("--bits")?)? as u32,
            "--drop-caches" => a.drop_caches = true,
            "--read-threads" => a.read_threads = num(val("--read-threads")?)? as usize,
            "--keep" => a.keep = true,
            "--reuse" => a.reuse = true,
            "--json" => a.json = true,
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// splitmix64: a fast, seedable generator whose outputs are uniform in every bit, standing in
/// for keyed BLAKE3 chunk ids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    for j in 0..4 {
        k[j * 8..j * 8 + 8]
            .copy_from_slice(&mix(i.wrapping_mul(4).wrapping_add(j as u64)).to_le_bytes());
    }
    k
}

fn value(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn drop_caches(enabled: bool) {
    if enabled {
        // Best effort: needs root; a failure is reported, not fatal.
        if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
            eprintln!("warning: could not drop caches: {e}");
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Look up `n` ids on `threads` threads; returns lookups per second (all threads together).
fn lookups(
    index: &ChunkIndex,
    entries: u64,
    n: u64,
    threads: usize,
    present: bool,
    round: u64,
) -> f64 {
    let per = n / threads as u64;
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads as u64 {
            s.spawn(move || {
                let mut r = mix(round * 1000 + th + if present { 0 } else { 500 });
                for _ in 0..per {
                    r = mix(r);
                    if present {
                        let i = r % entries;
                        let got = index.get(&key(i)).expect("lookup");
                        assert_eq!(got, Some(value(i)), "present id {i} not found");
                    } else {
                        let i = entries + r % (u64::MAX / 8);
                        let got = index.get(&key(i)).expect("lookup");
                        assert_eq!(got, None, "absent id {i} reported present");
                    }
                }
            });
        }
    });
    (per * threads as u64) as f64 / t.elapsed().as_secs_f64()
}

/// Present lookups through `get_many` in batches of 4096 from one caller thread (the index
/// reads with `read_threads` threads); returns lookups per second.
fn batched(index: &ChunkIndex, entries: u64, n: u64, round: u64) -> f64 {
    let mut r = mix(round * 1000 + 777);
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        let ids: Vec<u64> = (0..4096.min(n - done))
            .map(|_| {
                r = mix(r);
                r % entries
            })
            .collect();
        let keys: Vec<[u8; 32]> = ids.iter().map(|&i| key(i)).collect();
        let got = index.get_many(&keys).expect("get_many");
        for (i, g) in ids.iter().zip(got) {
            assert_eq!(g, Some(value(*i)), "present id {i} not found");
        }
        done += ids.len() as u64;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut opts = Options::with_budget(a.budget_mib << 20);
    opts.bits_per_entry = a.bits;
    opts.read_threads = a.read_threads;

    // --reuse: keep an index of the right size from an earlier --keep run (lookups only).
    let reuse =
        a.reuse && ChunkIndex::open(&a.dir, opts.clone()).is_ok_and(|i| i.len() == a.entries);
    if !reuse {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    let t = Instant::now();
    let mut index = ChunkIndex::open(&a.dir, opts.clone()).expect("open");
    let mut max_mem = 0;
    if !reuse {
        for i in 0..a.entries {
            index.insert(&key(i), value(i)).expect("insert");
            if i % 1_000_000 == 0 {
                max_mem = max_mem.max(index.memory_used());
            }
        }
        index.commit(b"bench").expect("commit");
    }
    let insert_s = if reuse {
        f64::NAN
    } else {
        t.elapsed().as_secs_f64()
    };
    max_mem = max_mem.max(index.memory_used());
    let insert_runs = index.stats().runs;
    drop(index);

    let t = Instant::now();
    let index = ChunkIndex::open(&a.dir, opts).expect("reopen");
    let open_s = t.elapsed().as_secs_f64();
    let st = index.stats();
    assert_eq!(st.entries, a.entries);

    let mut rows: Vec<(String, f64)> = Vec::new();
    for (name, present, threads) in [
        ("present_1t", true, 1),
        ("absent_1t", false, 1),
        ("present_nt", true, a.threads),
        ("absent_nt", false, a.threads),
    ] {
        let mut v = Vec::new();
        for round in 0..a.repeat as u64 {
            drop_caches(a.drop_caches && present);
            // Absent lookups need no disk read: five times as many keep their timing stable.
            let n = if present { a.lookups } else { a.lookups * 5 };
            v.push(lookups(&index, a.entries, n, threads, present, round));
        }
        rows.push((name.to_string(), median(v)));
    }
    let mut v = Vec::new();
    for round in 0..a.repeat as u64 {
        drop_caches(a.drop_caches);
        v.push(batched(&index, a.entries, a.lookups, round));
    }
    rows.push(("present_batch".to_string(), median(v)));
    let hwm = status_kib("VmHWM:") * 1024;
    let rss = status_kib("VmRSS:") * 1024;
    let n = a.entries as f64;
    let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1).unwrap_or(0.0);
    let threads = a.threads as f64;

    if a.json {
        println!(
            "{{\"entries\":{},\"budget_bytes\":{},\"bits_per_entry\":{},\"threads\":{},\"repeat\":{},\
             \"inserts_per_s\":{:.0},\"insert_s\":{:.1},\"open_s\":{:.2},\"runs\":{},\"runs_while_inserting\":{},\
             \"present_per_s_1t\":{:.0},\"absent_per_s_1t\":{:.0},\"present_per_s_per_thread\":{:.0},\
             \"absent_per_s_per_thread\":{:.0},\"present_get_many_per_s\":{:.0},\"read_threads\":{},\"memory_used\":{},\"memory_used_max\":{},\
             \"memory_used_per_entry\":{:.3},\"table_bytes_per_entry\":{:.3},\"peak_rss\":{},\"peak_rss_per_entry\":{:.3},\"rss_after\":{},\
             \"disk_bytes\":{},\"disk_bytes_per_entry\":{:.2}}}",
            a.entries, a.budget_mib << 20, a.bits, a.threads, a.repeat,
            n / insert_s, insert_s, open_s, st.runs, insert_runs,
            get("present_1t"), get("absent_1t"), get("present_nt") / threads, get("absent_nt") / threads,
            get("present_batch"), a.read_threads,
            st.memory_used, max_mem, st.memory_used as f64 / n, st.table_bytes as f64 / n, hwm, hwm as f64 / n, rss,
            st.disk_bytes, st.disk_bytes as f64 / n,
        );
    } else {
        println!(
            "chunk index benchmark: {} entries, budget {} MiB, {} bits/entry, medians of {}",
            a.entries, a.budget_mib, a.bits, a.repeat
        );
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| inserts/s (incl. commit) | {:.0} ({:.1} s) |",
            n / insert_s,
            insert_s
        );
        println!("| reopen | {:.2} s, {} runs |", open_s, st.runs);
        println!("| present lookups/s, 1 thread | {:.0} |", get("present_1t"));
        println!("| absent lookups/s, 1 thread | {:.0} |", get("absent_1t"));
        println!(
            "| present lookups/s, {} threads (per thread) | {:.0} ({:.0}) |",
            a.threads,
            get("present_nt"),
            get("present_nt") / threads
        );
        println!(
            "| absent lookups/s, {} threads (per thread) | {:.0} ({:.0}) |",
            a.threads,
            get("absent_nt"),
            get("absent_nt") / threads
        );
        println!(
            "| present lookups/s, get_many batches of 4096, {} read threads | {:.0} |",
            a.read_threads,
            get("present_batch")
        );
        println!(
            "| memory_used after reopen (max while inserting) | {} B = {:.3} B/entry ({} B) |",
            st.memory_used,
            st.memory_used as f64 / n,
            max_mem
        );
        println!(
            "| peak RSS (VmHWM) | {} B = {:.3} B/entry |",
            hwm,
            hwm as f64 / n
        );
        println!(
            "| disk | {} B = {:.2} B/entry |",
            st.disk_bytes,
            st.disk_bytes as f64 / n
        );
    }
    drop(index);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
}
