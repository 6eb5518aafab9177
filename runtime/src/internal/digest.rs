//! Fast, non-cryptographic digests: of a launch's scalar arguments, and of copied content
//! (what redundant-transfer detection compares).

/// Multipliers of the mixing steps (odd 64-bit constants with well-spread bits).
const K0: u64 = 0x9e37_79b9_7f4a_7c15;
const K1: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// Buffers up to this size are hashed whole even in sampled mode, bytes.
pub const FULL_HASH_LIMIT_BYTES: usize = 1 << 20;
/// Chunks read from a larger buffer in sampled mode.
pub const SAMPLE_CHUNKS: usize = 64;
/// Bytes per sampled chunk.
pub const SAMPLE_CHUNK_BYTES: usize = 4096;
/// Bytes a sampled digest reads: every chunk and the last one.
pub const SAMPLE_BYTES: usize = (SAMPLE_CHUNKS + 1) * SAMPLE_CHUNK_BYTES;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K0).rotate_left(29).wrapping_mul(K1)
}

#[inline]
fn finalize(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(K1);
    h ^= h >> 29;
    h = h.wrapping_mul(K0);
    h ^ (h >> 32)
}

/// An incremental digest of a launch's scalar arguments, in argument order.
#[derive(Debug, Clone, Copy)]
pub struct ArgDigest {
    state: u64,
    count: u64,
}

impl Default for ArgDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl ArgDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self {
            state: K1,
            count: 0,
        }
    }

    /// Add one argument's bytes (each argument is delimited by its length).
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        self.state = mix(self.state, bytes.len() as u64 ^ (self.count << 32));
        self.state = hash_words(self.state, bytes);
        self.count += 1;
    }

    /// The digest; 0 when no scalar argument was added (the trace's "none").
    pub fn finish(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            finalize(self.state).max(1)
        }
    }
}

/// Fold `bytes` into `h`, eight bytes at a time (four lanes for long inputs).
fn hash_words(h: u64, bytes: &[u8]) -> u64 {
    let mut lanes = [h, h ^ K0, h ^ K1, h.rotate_left(17)];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = mix(*lane, u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        }
    }
    let mut h = lanes.iter().fold(h, |acc, &l| mix(acc, l).rotate_left(7));
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        h = mix(h, u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        h = mix(h, u64::from_le_bytes(last) ^ ((tail.len() as u64) << 56));
    }
    h
}

/// How transferred content is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentHash {
    /// No content digests.
    Off,
    /// Whole buffers up to [`FULL_HASH_LIMIT_BYTES`]; larger ones from [`SAMPLE_CHUNKS`]
    /// evenly spaced chunks plus the last chunk (the default: bounded host cost).
    #[default]
    Sampled,
    /// Every byte of every buffer.
    Full,
}

/// The content digest of `bytes` under `mode`, or `None` when hashing is off.
///
/// Bit 0 of a digest says how it was made: 0 when every byte was hashed, 1 when it was
/// computed from samples, so analysis can tell proof from likelihood.
pub fn content_digest(bytes: &[u8], mode: ContentHash) -> Option<u64> {
    match mode {
        ContentHash::Off => None,
        ContentHash::Full => Some(bounded_digest(bytes, usize::MAX)),
        ContentHash::Sampled => Some(bounded_digest(bytes, FULL_HASH_LIMIT_BYTES)),
    }
}

/// The content digest of `bytes`, hashed whole up to `whole_limit_bytes` and from
/// [`SAMPLE_CHUNKS`] evenly spaced chunks plus the last chunk above it (bit 0 set). A limit
/// below what the samples read ([`SAMPLE_BYTES`]) is raised to it: sampling reads no less.
pub fn bounded_digest(bytes: &[u8], whole_limit_bytes: usize) -> u64 {
    let len = bytes.len();
    let seed = mix(K0, len as u64);
    if len <= whole_limit_bytes.max(SAMPLE_BYTES) {
        return finalize(hash_words(seed, bytes)) & !1;
    }
    let stride = len / SAMPLE_CHUNKS;
    let mut h = seed;
    for i in 0..SAMPLE_CHUNKS {
        let at = i * stride;
        h = hash_words(h, &bytes[at..at + SAMPLE_CHUNK_BYTES.min(len - at)]);
    }
    h = hash_words(h, &bytes[len - SAMPLE_CHUNK_BYTES..]);
    finalize(h) | 1
}

/// True when `digest` was computed from samples of the content (see [`content_digest`]).
pub fn is_sampled(digest: u64) -> bool {
    digest & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_digest_depends_on_values_order_and_boundaries() {
        let d = |args: &[&[u8]]| {
            let mut d = ArgDigest::new();
            for a in args {
                d.push(a);
            }
            d.finish()
        };
        assert_eq!(d(&[]), 0);
        let base = d(&[&1u32.to_le_bytes(), &2u32.to_le_bytes()]);
        assert_eq!(base, d(&[&1u32.to_le_bytes(), &2u32.to_le_bytes()]));
        assert_ne!(base, d(&[&2u32.to_le_bytes(), &1u32.to_le_bytes()]));
        assert_ne!(base, d(&[&[1, 0, 0, 0, 2, 0, 0, 0]]));
        assert_ne!(d(&[&0u32.to_le_bytes()]), 0);
    }

    #[test]
    fn content_digests_flag_sampling_and_see_changes_they_read() {
        let mut small = vec![7u8; 1000];
        let a = content_digest(&small, ContentHash::Sampled).unwrap();
        assert!(!is_sampled(a));
        small[999] = 8;
        assert_ne!(a, content_digest(&small, ContentHash::Sampled).unwrap());

        let mut big = vec![0u8; 4 * FULL_HASH_LIMIT_BYTES];
        let s = content_digest(&big, ContentHash::Sampled).unwrap();
        let f = content_digest(&big, ContentHash::Full).unwrap();
        assert!(is_sampled(s) && !is_sampled(f));
        // A change inside a sampled chunk changes the sampled digest...
        big[0] = 1;
        assert_ne!(s, content_digest(&big, ContentHash::Sampled).unwrap());
        big[0] = 0;
        // ...one between chunks changes only the full digest.
        let between = SAMPLE_CHUNK_BYTES + 10;
        big[between] = 1;
        assert_eq!(s, content_digest(&big, ContentHash::Sampled).unwrap());
        assert_ne!(f, content_digest(&big, ContentHash::Full).unwrap());
        assert_eq!(content_digest(&big, ContentHash::Off), None);
    }

    #[test]
    fn a_bounded_digest_hashes_whole_up_to_its_limit_and_never_samples_more_than_that() {
        let data: Vec<u8> = (0..SAMPLE_BYTES + 8192).map(|i| (i % 251) as u8).collect();
        let whole = content_digest(&data, ContentHash::Full).unwrap();
        assert_eq!(bounded_digest(&data, data.len()), whole);
        let sampled = bounded_digest(&data, SAMPLE_BYTES);
        assert!(is_sampled(sampled), "just above the limit: sampled");
        // A limit under what the samples read is raised to it: hashing whole reads no more.
        let small = &data[..SAMPLE_BYTES];
        assert_eq!(
            bounded_digest(small, 1),
            content_digest(small, ContentHash::Full).unwrap()
        );
        // The runtime's sampled mode is the bounded digest at its 1 MiB limit.
        let big = vec![3u8; 2 * FULL_HASH_LIMIT_BYTES];
        assert_eq!(
            content_digest(&big, ContentHash::Sampled),
            Some(bounded_digest(&big, FULL_HASH_LIMIT_BYTES))
        );
    }
}
