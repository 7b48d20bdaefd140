//! The stored form of a blob: its 28-byte header (docs/format.md 4.1).

pub const HEADER_LEN: usize = 28;
const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Data = 0,
    Meta = 1,
    Refs = 2,
}

impl Kind {
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Data),
            1 => Some(Kind::Meta),
            2 => Some(Kind::Refs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Meta => "meta",
            Kind::Refs => "refs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    pub compressed: bool,
    pub kind: Kind,
    pub key_id: [u8; 16],
    pub counter: u64,
}

impl BlobHeader {
    pub fn refs() -> BlobHeader {
        BlobHeader {
            compressed: false,
            kind: Kind::Refs,
            key_id: [0; 16],
            counter: 0,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = FORMAT;
        h[1] = u8::from(self.compressed);
        h[2] = self.kind as u8;
        h[4..20].copy_from_slice(&self.key_id);
        h[20..28].copy_from_slice(&self.counter.to_le_bytes());
        h
    }

    pub fn decode(b: &[u8]) -> Result<BlobHeader, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("shorter than a blob header");
        }
        if b[0] != FORMAT {
            return Err("unknown blob format byte");
        }
        if b[1] > 1 || b[3] != 0 {
            return Err("unknown blob flags");
        }
        let kind = Kind::from_u8(b[2]).ok_or("unknown blob kind")?;
        let mut key_id = [0u8; 16];
        key_id.copy_from_slice(&b[4..20]);
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[20..28]);
        Ok(BlobHeader {
            compressed: b[1] == 1,
            kind,
            key_id,
            counter: u64::from_le_bytes(c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects_unknown_bytes() {
        let h = BlobHeader {
            compressed: true,
            kind: Kind::Meta,
            key_id: [7; 16],
            counter: 0x0102_0304_0506,
        };
        let e = h.encode();
        assert_eq!(BlobHeader::decode(&e), Ok(h));
        let mut bad = e;
        bad[2] = 9;
        assert_eq!(BlobHeader::decode(&bad), Err("unknown blob kind"));
        bad = e;
        bad[0] = 2;
        assert!(BlobHeader::decode(&bad).is_err());
        assert!(BlobHeader::decode(&e[..10]).is_err());
    }
}
