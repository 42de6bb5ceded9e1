//! How a memory page is stored. A page is always [`PAGE_SIZE`] bytes; its digest, the
//! key, names the uncompressed content, so content addressing, sharing and verification
//! are unchanged by how it is stored:
//!
//! - exactly [`PAGE_SIZE`] bytes: the page, raw (every page of format versions 1 and 2,
//!   and a page that does not compress);
//! - `0x01` then one zstd frame: the page, compressed;
//! - `0x02`, a depth (1 byte), the digest of a base page (32 bytes), then one zstd frame
//!   of the page XOR the base: the page as its difference from the page it replaced at
//!   the same index in the previous checkpoint. A step changes a few bytes of a page, so
//!   the difference is mostly zeros. The base is itself stored in one of these forms;
//!   the depth (its base's depth plus one) is kept at most [`MAX_DEPTH`], so reading a
//!   page reads at most that many others.

use super::{Difference, PAGE_SIZE};
use crate::digest::Digest;

/// zstd's level: fast; a guest's heap is mostly zeros and repeated structure.
const LEVEL: i32 = 3;

/// The longest chain of differences a stored page may head.
pub(crate) const MAX_DEPTH: u8 = 8;

const COMPRESSED: u8 = 0x01;

/// A difference at most this long is stored without trying the whole page: no
/// compression of a whole page gets near it.
const SMALL_DIFFERENCE: usize = PAGE_SIZE / 16;

thread_local! {
    /// One zstd context per thread, reused: creating one costs as much as compressing a
    /// page.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(data: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut context = cell.borrow_mut();
        if context.is_none() {
            *context = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        context.as_mut()?.compress(data).ok()
    })
}
const DELTA: u8 = 0x02;

/// The depth of the chain of differences a stored page heads (0: a whole page), or `None`
/// when it is too deep to serve as a base, or not a stored page at all.
pub(crate) fn depth(stored: &[u8]) -> Option<u8> {
    if stored.len() == PAGE_SIZE {
        return Some(0);
    }
    match stored.first() {
        Some(&COMPRESSED) => Some(0),
        Some(&DELTA) => stored.get(1).copied().filter(|depth| *depth < MAX_DEPTH),
        _ => None,
    }
}

/// The base page a stored difference refers to.
pub(crate) fn base_of(stored: &[u8]) -> Option<Digest> {
    if stored.len() == PAGE_SIZE || stored.first() != Some(&DELTA) {
        return None;
    }
    let digest: [u8; 32] = stored.get(2..34)?.try_into().ok()?;
    Some(Digest(digest))
}

/// The stored form of `page`, as a difference from `base` (its digest, how `page` differs
/// from it, the depth of its stored chain) when that is smaller.
pub(crate) fn pack(page: &[u8], base: Option<(Digest, &Difference, u8)>) -> Vec<u8> {
    if page.len() != PAGE_SIZE {
        return page.to_vec();
    }
    // The difference first: a step changes a few bytes of a page, so it is usually tiny,
    // and then compressing the whole page as well would be wasted.
    let mut best: Option<Vec<u8>> = None;
    if let Some((digest, difference, depth)) = base
        && depth < MAX_DEPTH
    {
        let difference = difference.to_xor(PAGE_SIZE);
        if let Some(frame) = compress(&difference) {
            let mut out = Vec::with_capacity(frame.len() + 34);
            out.push(DELTA);
            out.push(depth + 1);
            out.extend_from_slice(&digest.0);
            out.extend_from_slice(&frame);
            if out.len() <= SMALL_DIFFERENCE {
                return out;
            }
            best = Some(out);
        }
    }
    let whole = match compress(page) {
        Some(frame) if frame.len() + 1 < PAGE_SIZE => {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(COMPRESSED);
            out.extend_from_slice(&frame);
            out
        }
        _ => page.to_vec(),
    };
    match best {
        Some(difference) if difference.len() < whole.len() => difference,
        _ => whole,
    }
}

/// The page a stored value holds; `base` fetches a stored base page by digest.
pub(crate) fn unpack(
    stored: &[u8],
    mut base: impl FnMut(&Digest) -> Result<Option<Vec<u8>>, String>,
) -> Result<Vec<u8>, String> {
    unpack_at(stored, &mut base, MAX_DEPTH)
}

fn unpack_at(
    stored: &[u8],
    base: &mut impl FnMut(&Digest) -> Result<Option<Vec<u8>>, String>,
    budget: u8,
) -> Result<Vec<u8>, String> {
    if stored.len() == PAGE_SIZE {
        return Ok(stored.to_vec());
    }
    match stored.split_first() {
        Some((&COMPRESSED, frame)) => decompress(frame),
        Some((&DELTA, rest)) if rest.len() > 33 => {
            let (header, frame) = rest.split_at(33);
            let depth = header[0];
            if depth == 0 || depth > budget {
                return Err(format!(
                    "its chain of differences is deeper than {MAX_DEPTH} pages"
                ));
            }
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&header[1..]);
            let digest = Digest(digest);
            let Some(stored_base) = base(&digest)? else {
                return Err(format!("its base page {} is missing", digest.short()));
            };
            let whole = unpack_at(&stored_base, base, depth - 1)?;
            if Digest::of(crate::digest::domain::PAGE, &whole) != digest {
                return Err(format!(
                    "its base page {} does not match its digest",
                    digest.short()
                ));
            }
            let difference = decompress(frame)?;
            Ok(difference.iter().zip(&whole).map(|(a, b)| a ^ b).collect())
        }
        _ => Err("not a stored page (unknown form)".into()),
    }
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, String> {
    let page = DECOMPRESSOR.with(|cell| {
        let mut context = cell.borrow_mut();
        if context.is_none() {
            *context = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        match context.as_mut() {
            Some(context) => context
                .decompress(frame, PAGE_SIZE)
                .map_err(|e| e.to_string()),
            None => Err("no zstd context".to_string()),
        }
    })?;
    if page.len() != PAGE_SIZE {
        return Err(format!(
            "decompresses to {} bytes, not a page of {PAGE_SIZE}",
            page.len()
        ));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::domain;
    use proptest::prelude::*;

    fn none(_: &Digest) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    #[test]
    fn zeros_shrink_and_noise_stays_raw() {
        let zeros = vec![0u8; PAGE_SIZE];
        let stored = pack(&zeros, None);
        assert!(stored.len() < 100, "{}", stored.len());
        assert_eq!(unpack(&stored, none).as_deref(), Ok(zeros.as_slice()));
        let noise = crate::checkpoint::noise(7);
        let stored = pack(&noise, None);
        assert_eq!(
            stored.len(),
            PAGE_SIZE,
            "incompressible pages are stored raw"
        );
        assert_eq!(unpack(&stored, none).as_deref(), Ok(noise.as_slice()));
    }

    #[test]
    fn a_small_change_to_a_noisy_page_is_stored_as_a_small_difference() {
        let base = crate::checkpoint::noise(9);
        let base_digest = Digest::of(domain::PAGE, &base);
        let mut page = base.clone();
        page[100] ^= 0xff;
        page[40_000] = 7;
        let stored = pack(
            &page,
            Some((base_digest, &Difference::between(&base, &page), 0)),
        );
        assert!(stored.len() < 200, "{}", stored.len());
        let base_stored = pack(&base, None);
        let fetch = |digest: &Digest| Ok((*digest == base_digest).then(|| base_stored.clone()));
        assert_eq!(unpack(&stored, fetch).as_deref(), Ok(page.as_slice()));
        // A missing or altered base is an error, never a wrong page.
        assert!(unpack(&stored, none).is_err());
        let mut altered = base_stored.clone();
        altered[5] ^= 1;
        assert!(unpack(&stored, |_| Ok(Some(altered.clone()))).is_err());
        // Too deep a base is not used.
        let deep = pack(
            &page,
            Some((base_digest, &Difference::between(&base, &page), MAX_DEPTH)),
        );
        assert_ne!(deep.first(), Some(&DELTA));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(200)))]

        /// Every page round-trips, whole or as a difference; garbage never panics and
        /// never yields a page of the wrong size.
        #[test]
        fn pages_round_trip_and_garbage_is_refused(
            fill in any::<u8>(),
            edits in proptest::collection::vec((0..PAGE_SIZE, any::<u8>()), 0..64),
            garbage in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let base = vec![fill; PAGE_SIZE];
            let base_digest = Digest::of(domain::PAGE, &base);
            let mut page = base.clone();
            for (at, byte) in edits {
                page[at] = byte;
            }
            prop_assert_eq!(unpack(&pack(&page, None), none), Ok(page.clone()));
            let base_stored = pack(&base, None);
            let stored = pack(&page, Some((base_digest, &Difference::between(&base, &page), 0)));
            let fetch = |_: &Digest| Ok(Some(base_stored.clone()));
            prop_assert_eq!(unpack(&stored, fetch), Ok(page));
            if let Ok(decoded) = unpack(&garbage, |_| Ok(Some(garbage.clone()))) {
                prop_assert_eq!(decoded.len(), PAGE_SIZE);
            }
        }
    }
}
