//! A tiny seeded PRNG (SplitMix64) for election timeouts: no OS randomness, so a node's
//! behaviour is a function of its seed and inputs.

pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`; `high > low`.
    pub(crate) fn in_range(&mut self, low: u32, high: u32) -> u32 {
        assert!(high > low, "empty range {low}..{high}");
        let span = u64::from(high - low);
        low + u32::try_from(self.next_u64() % span).expect("below a u32 span")
    }
}
