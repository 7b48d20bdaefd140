//! Dedup cache size by protected source data: the seed's Table 9.
//!
//! Between the table's points the size is interpolated linearly; below the first point
//! (0.5 TB) it is the first point's 4 GB. Beyond 100 TB it grows linearly at 1.6 GB per TB:
//! the slope of the table's last segment (75 → 100 TB: +40 GB for +25 TB), which is also
//! exactly its ratio at 100 TB (160 GB / 100 TB), so the extrapolation is proportional to the
//! data and continuous at 100 TB. The result is rounded up to a whole GiB: the table's "GB"
//! is read as GiB, the larger reading, so a cache is never sized below the table.
//!
//! Replication sizes its remote-id cache with [`dedup_cache_bytes`].

use crate::size::GIB;

/// (source TB, cache GB), as printed in the seed's Table 9.
pub const TABLE9: [(f64, f64); 12] = [
    (0.5, 4.0),
    (1.0, 4.0),
    (2.0, 4.0),
    (3.0, 5.0),
    (4.0, 7.0),
    (5.0, 8.0),
    (10.0, 16.0),
    (15.0, 25.0),
    (25.0, 40.0),
    (50.0, 80.0),
    (75.0, 120.0),
    (100.0, 160.0),
];

/// GB of cache per TB of source data beyond the table's last point.
pub const GB_PER_TB_BEYOND: f64 = 1.6;

/// The cache size in (fractional) GiB for `source_tb` TB of protected data (vendor TB,
/// 10^12 bytes). Negative or NaN inputs count as no data.
pub fn dedup_cache_gib(source_tb: f64) -> f64 {
    let tb = if source_tb.is_nan() {
        0.0
    } else {
        source_tb.max(0.0)
    };
    let (first, last) = (TABLE9[0], TABLE9[TABLE9.len() - 1]);
    if tb <= first.0 {
        return first.1;
    }
    if tb >= last.0 {
        return last.1 + (tb - last.0) * GB_PER_TB_BEYOND;
    }
    for w in TABLE9.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if tb <= x1 {
            return y0 + (y1 - y0) * (tb - x0) / (x1 - x0);
        }
    }
    last.1
}

/// The cache size in bytes for `source_tb` TB of protected data, rounded up to a whole GiB.
pub fn dedup_cache_bytes(source_tb: f64) -> u64 {
    // Guard against float noise (e.g. 19.600000000000001 → 20, but 16.0000000001 → 16).
    let gib = (dedup_cache_gib(source_tb) - 1e-9).ceil().max(1.0);
    (gib as u64).saturating_mul(GIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gib(tb: f64) -> u64 {
        dedup_cache_bytes(tb) / GIB
    }

    #[test]
    fn table_points_exact() {
        for (tb, gb) in TABLE9 {
            assert_eq!(gib(tb), gb as u64, "at {tb} TB");
        }
    }

    #[test]
    fn interpolates_between_points() {
        assert_eq!(dedup_cache_gib(3.5), 6.0);
        assert_eq!(gib(3.5), 6);
        assert_eq!(dedup_cache_gib(7.5), 12.0);
        // 10 → 16, 15 → 25: 12 TB is 16 + 9 × 2/5 = 19.6, rounded up.
        assert!((dedup_cache_gib(12.0) - 19.6).abs() < 1e-9);
        assert_eq!(gib(12.0), 20);
        assert_eq!(gib(1.5), 4);
        assert_eq!(gib(62.5), 100);
    }

    #[test]
    fn below_the_table_is_the_minimum() {
        assert_eq!(gib(0.0), 4);
        assert_eq!(gib(0.1), 4);
        assert_eq!(gib(-3.0), 4);
        assert_eq!(gib(f64::NAN), 4);
    }

    #[test]
    fn extrapolates_beyond_100_tb() {
        assert_eq!(gib(150.0), 240);
        assert_eq!(gib(200.0), 320);
        assert_eq!(gib(101.0), 162);
        assert_eq!(gib(1000.0), 1600);
    }

    #[test]
    fn never_decreases() {
        let mut prev = 0;
        for i in 0..2500 {
            let g = dedup_cache_bytes(f64::from(i) / 10.0);
            assert!(g >= prev, "at {} TB", f64::from(i) / 10.0);
            prev = g;
        }
    }
}
