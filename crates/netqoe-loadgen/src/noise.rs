//! Deterministic randomness for the scenario: seed mixing and the distributions it draws from.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// SplitMix64's finaliser: spreads the bits of `x` over all 64.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One seed derived from several parts (order matters).
pub fn seed_of(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x6E65_7471_6F65, |acc, &p| mix(acc ^ mix(p)))
}

/// A seeded generator for the stream named by `parts`.
pub fn rng_of(parts: &[u64]) -> StdRng {
    StdRng::seed_from_u64(seed_of(parts))
}

/// A uniform number in [0, 1) fixed by `parts`, without building a generator.
pub fn unit(parts: &[u64]) -> f64 {
    (seed_of(parts) >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller).
pub fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal draw with the given median and spread of the logarithm.
pub fn lognormal<R: Rng>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// `x` rounded to 0.01 (keeps the JSON short; ms and kbit/s need no more).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_median_and_spread_are_what_was_asked() {
        let mut rng = rng_of(&[1]);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| lognormal(&mut rng, 40.0, 0.2))
            .collect();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        assert!((median - 40.0).abs() < 1.0, "median {median}");
        // the 84th percentile of a log-normal is median·e^σ
        let p84 = v[v.len() * 841 / 1000];
        assert!((p84 / 40.0 - 0.2f64.exp()).abs() < 0.03, "p84 {p84}");
        assert!(v.iter().all(|x| *x > 0.0));
    }

    #[test]
    fn seeds_depend_on_every_part_and_its_place() {
        assert_eq!(seed_of(&[1, 2]), seed_of(&[1, 2]));
        assert_ne!(seed_of(&[1, 2]), seed_of(&[2, 1]));
        assert_ne!(seed_of(&[1, 2]), seed_of(&[1, 3]));
        let u = unit(&[7, 8]);
        assert!((0.0..1.0).contains(&u));
    }
}
