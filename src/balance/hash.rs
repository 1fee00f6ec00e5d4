//! Hashing for the balancer: `hash_bytes` for request keys and server identities, `mix64` to derive
//! independent values from one hash, and a per-core wyrand RNG. No random seed anywhere: the same bytes
//! hash to the same value in every process, so every core and every restart maps a key to the same server.

/// Multipliers from wyhash (odd, high-entropy 64-bit constants).
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// Fast, well-mixed 64-bit hash of `bytes` (source IP bytes, URI, header or cookie value, or a
/// backend+server name for `ServerSpec::id_hash`). Deterministic across processes and versions of the
/// standard library (no `RandomState`). Not a cryptographic or DoS-resistant hash: a client who can pick
/// its key can pick its server, which hash balancing allows anyway.
///
/// Each 8-byte word goes through a bijective step (xor, odd multiply, xorshift), so distinct states never
/// collapse; the length seeds the state so trailing zero bytes change the result; splitmix64's finalizer
/// spreads every input bit over the output.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = P0 ^ (bytes.len() as u64).wrapping_mul(P1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = step(h, u64::from_le_bytes(w));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        h = step(h, u64::from_le_bytes(w));
    }
    mix64(h ^ P2)
}

/// The key of `hash_key = "source"`: an IPv4-mapped IPv6 address hashes as the IPv4 address it is, so a
/// client keeps its server whichever socket family it arrived on.
pub fn hash_ip(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => hash_bytes(&v4.octets()),
            None => hash_bytes(&v6.octets()),
        },
    }
}

#[inline]
fn step(h: u64, word: u64) -> u64 {
    let x = (h ^ word).wrapping_mul(P1);
    x ^ (x >> 29)
}

/// splitmix64's finalizer: a bijection that spreads every input bit over the output.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64x64 -> 128-bit multiply folded to 64 bits (wyhash's mixing primitive).
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// wyrand: one add and one 128-bit multiply per draw, passes BigCrush; per core, so no atomic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(mix64(seed))
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(P0);
        fold_mul(self.0, self.0 ^ P1)
    }

    /// Uniform in `0..n` (n > 0) by Lemire's multiply-shift: no division; bias <= n / 2^64, negligible.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_addresses_hash_as_ipv4() {
        let v4: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        let v6: std::net::IpAddr = "2001:db8::9".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(mapped));
        assert_ne!(hash_ip(v4), hash_ip(v6));
    }

    #[test]
    fn hash_is_deterministic_and_length_sensitive() {
        let owned = b"203.0.113.7".to_vec();
        assert_eq!(hash_bytes(b"203.0.113.7"), hash_bytes(&owned));
        assert_ne!(
            hash_bytes(b"a"),
            hash_bytes(b"a\0"),
            "length is part of the key"
        );
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(
            hash_bytes(b"12345678a"),
            hash_bytes(b"12345678b"),
            "tail word counts"
        );
    }

    #[test]
    fn hash_spreads_similar_keys_evenly() {
        // Keys that differ in few bits (consecutive IPs, numbered URIs), bucketed mod 16: each bucket
        // within 5 sigma of the uniform expectation.
        const KEYS: u32 = 64_000;
        const BUCKETS: usize = 16;
        let mut counts = [0u32; BUCKETS];
        for i in 0..KEYS {
            let key = format!("/item/{i}");
            counts[(hash_bytes(key.as_bytes()) % BUCKETS as u64) as usize] += 1;
        }
        let expect = f64::from(KEYS) / BUCKETS as f64;
        let sigma = (expect * (1.0 - 1.0 / BUCKETS as f64)).sqrt();
        for c in counts {
            assert!((f64::from(c) - expect).abs() < 5.0 * sigma, "{counts:?}");
        }
    }

    #[test]
    fn hash_avalanche() {
        // Flipping one input bit flips about half the output bits on average.
        let mut flipped = 0u64;
        let mut trials = 0u64;
        for i in 0u32..200 {
            let base = i.to_le_bytes().repeat(3); // 12 bytes: one full word and a tail
            let h = hash_bytes(&base);
            for bit in 0..base.len() * 8 {
                let mut b = base.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                flipped += u64::from((h ^ hash_bytes(&b)).count_ones());
                trials += 1;
            }
        }
        let mean = flipped as f64 / trials as f64;
        assert!((30.0..34.0).contains(&mean), "mean flipped bits {mean}");
    }

    #[test]
    fn rng_below_is_in_range_and_uniform() {
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let x = rng.below(10);
            assert!(x < 10);
            counts[x as usize] += 1;
        }
        let sigma = (10_000.0f64 * 0.9).sqrt();
        for c in counts {
            assert!((f64::from(c) - 10_000.0).abs() < 5.0 * sigma, "{counts:?}");
        }
        assert_ne!(
            Rng::new(1).next_u64(),
            Rng::new(2).next_u64(),
            "seeds differ"
        );
    }
}
