//! Byte sizes written the way data sheets write them: `"450 GB"`, `"2 TB"`, `"16 GiB"`.
//!
//! Decimal units are the disk vendors' (1 TB = 10^12 bytes, 1 GB = 10^9); binary units
//! (KiB, MiB, GiB, TiB) are powers of 1024. A number may carry a decimal fraction
//! (`"0.5 TB"`); the result must be a whole number of bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, parsed from and shown as a number with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;
pub const GB: u64 = 1_000_000_000;
pub const TB: u64 = 1_000_000_000_000;

const UNITS: [(&str, u64); 11] = [
    ("B", 1),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", GB),
    ("TB", TB),
    ("PB", 1_000 * TB),
    ("KiB", KIB),
    ("MiB", MIB),
    ("GiB", GIB),
    ("TiB", TIB),
];

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {text:?}: {reason} (write e.g. \"450 GB\", \"2 TB\" or \"16 GiB\")")]
pub struct SizeError {
    pub text: String,
    pub reason: &'static str,
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<ByteSize, SizeError> {
        let err = |reason| SizeError {
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (&t[..split], t[split..].trim());
        let mult = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| err("unknown or missing unit"))?;
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("not a number"));
        }
        let int: u64 = int.parse().map_err(|_| err("not a number"))?;
        let mut bytes = int.checked_mul(mult).ok_or_else(|| err("too large"))?;
        if !frac.is_empty() {
            let scale = 10u64.pow(frac.len() as u32);
            let f: u64 = frac.parse().map_err(|_| err("not a number"))?;
            let part = u128::from(f) * u128::from(mult);
            if part % u128::from(scale) != 0 {
                return Err(err("not a whole number of bytes"));
            }
            let part = u64::try_from(part / u128::from(scale)).map_err(|_| err("too large"))?;
            bytes = bytes.checked_add(part).ok_or_else(|| err("too large"))?;
        }
        Ok(ByteSize(bytes))
    }
}

impl ByteSize {
    /// An approximate, short form for messages: `"2 TB"`, `"1.9 TB"`, `"31.3 GiB"`.
    /// Decimal units unless `binary`.
    pub fn approx(self, binary: bool) -> String {
        let (base, units): (f64, [&str; 5]) = if binary {
            (1024.0, ["B", "KiB", "MiB", "GiB", "TiB"])
        } else {
            (1000.0, ["B", "kB", "MB", "GB", "TB"])
        };
        let mut v = self.0 as f64;
        let mut i = 0;
        while v >= base && i + 1 < units.len() {
            v /= base;
            i += 1;
        }
        let s = format!("{v:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s);
        format!("{s} {}", units[i])
    }
}

/// The exact form: the largest unit that divides the size (decimal preferred), else bytes.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "0 B");
        }
        let exact = |units: &[(&'static str, u64)]| {
            units
                .iter()
                .rev()
                .find(|(_, m)| self.0.checked_rem(*m) == Some(0))
                .map(|(u, m)| (*u, self.0 / m))
        };
        let dec = exact(&[("kB", 1_000), ("MB", 1_000_000), ("GB", GB), ("TB", TB)]);
        let bin = exact(&[("KiB", KIB), ("MiB", MIB), ("GiB", GIB), ("TiB", TIB)]);
        // Whichever exact form is shorter; decimal on a tie.
        match (dec, bin) {
            (Some((_, dn)), Some((bu, bn))) if bn < dn => write!(f, "{bn} {bu}"),
            (Some((u, n)), _) | (None, Some((u, n))) => write!(f, "{n} {u}"),
            (None, None) => write!(f, "{} B", self.0),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> u64 {
        s.parse::<ByteSize>().expect(s).0
    }

    #[test]
    fn parses_vendor_and_binary_units() {
        assert_eq!(p("450 GB"), 450 * GB);
        assert_eq!(p("2 TB"), 2 * TB);
        assert_eq!(p("2TB"), 2 * TB);
        assert_eq!(p("0.5 TB"), 500 * GB);
        assert_eq!(p("16 GiB"), 16 * GIB);
        assert_eq!(p("256 MiB"), 256 * MIB);
        assert_eq!(p("12 B"), 12);
    }

    #[test]
    fn refuses_bad_sizes() {
        for bad in [
            "",
            "2",
            "2 XB",
            "two TB",
            "1.5 B",
            ".5 TB",
            "99999999999999 TB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
        let e = "2 XB".parse::<ByteSize>().expect_err("unknown unit");
        assert!(e.to_string().contains("\"2 XB\""), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["450 GB", "2 TB", "16 GiB", "3 GiB", "256 MiB", "12345 B"] {
            assert_eq!(ByteSize(p(s)).to_string(), s);
            assert_eq!(p(&ByteSize(p(s)).to_string()), p(s));
        }
    }

    #[test]
    fn approx_is_short() {
        assert_eq!(ByteSize(2_000_398_934_016).approx(false), "2 TB");
        assert_eq!(ByteSize(1_000_204_886_016).approx(false), "1 TB");
        assert_eq!(ByteSize(31 * GIB + GIB / 3).approx(true), "31.3 GiB");
    }
}
