//! Heap buffers whose usable part starts on an `ALIGN` boundary, as `O_DIRECT` needs (no
//! unsafe allocation: over-allocate and skip to the first aligned byte).

/// Alignment that satisfies both 512-byte and 4 KiB logical-sector devices.
pub const ALIGN: usize = 4096;

pub struct Aligned {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl Aligned {
    /// `cap` usable bytes, zeroed.
    pub fn new(cap: usize) -> Aligned {
        let raw = vec![0u8; cap + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        Aligned { raw, start, cap }
    }

    pub fn get(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.cap]
    }

    pub fn get_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.cap]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_part_is_aligned_and_sized() {
        for cap in [0, 1, ALIGN, 3 * ALIGN + 5] {
            let mut a = Aligned::new(cap);
            assert_eq!(a.get().len(), cap);
            assert_eq!(a.get_mut().as_ptr() as usize % ALIGN, 0);
        }
    }
}
