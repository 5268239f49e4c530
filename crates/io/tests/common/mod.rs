//! Helpers shared by the io crate's property tests.

use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, RngSeed};

/// `cases` cases from a fixed seed, writing no failure files: every CI run tries the same inputs.
/// `DEBERTA_PROPTEST_CASES=N` runs N cases instead, for a longer search by hand.
pub fn proptest_config(cases: u32) -> Config {
    let cases = std::env::var("DEBERTA_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0DEB_E27A),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}
