//! Reference lists: the sorted ids a snapshot references, cut into refs blobs that a keyless
//! holder can read (docs/format.md 7.2).

use crate::id::Id;

pub const MAX_PIECE: usize = 4096;

/// Sort, deduplicate and cut `ids` into pieces; each piece is the plaintext of one refs blob.
pub fn pieces(mut ids: Vec<Id>) -> Vec<Vec<u8>> {
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut n = 0;
    for id in ids {
        cur.extend_from_slice(&id.0);
        n += 1;
        if id.is_list_cut() || n >= MAX_PIECE {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parse a refs blob's plaintext into ids.
pub fn parse(plain: &[u8]) -> Result<Vec<Id>, String> {
    if !plain.len().is_multiple_of(32) {
        return Err(format!(
            "refs blob of {} bytes is not a list of 32-byte ids",
            plain.len()
        ));
    }
    Ok(plain
        .chunks_exact(32)
        .map(|c| {
            let mut a = [0u8; 32];
            a.copy_from_slice(c);
            Id(a)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pieces_cover_the_sorted_set(seeds in proptest::collection::vec(any::<u32>(), 0..3000)) {
            let ids: Vec<Id> = seeds.iter().map(|s| Id::digest(&s.to_le_bytes())).collect();
            let ps = pieces(ids.clone());
            let mut back: Vec<Id> = ps.iter().flat_map(|p| parse(p).expect("parse")).collect();
            let mut want = ids;
            want.sort();
            want.dedup();
            prop_assert_eq!(&back, &want);
            back.dedup();
            prop_assert!(ps.iter().all(|p| !p.is_empty() && p.len() / 32 <= MAX_PIECE));
        }
    }

    #[test]
    fn unchanged_ranges_give_identical_pieces() {
        let ids: Vec<Id> = (0..50_000u32)
            .map(|i| Id::digest(&i.to_le_bytes()))
            .collect();
        let a = pieces(ids.clone());
        let mut more = ids;
        more.push(Id::digest(b"one more"));
        let b = pieces(more);
        let same = a.iter().filter(|p| b.contains(p)).count();
        assert!(same + 2 >= a.len(), "{same} of {} pieces kept", a.len());
    }
}
