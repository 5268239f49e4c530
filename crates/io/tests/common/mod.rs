//! Helpers shared by the io crate's property tests.

use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, RngSeed};

/// `cases` cases from a fixed seed, writing no failure files: every CI run tries the same inputs.
pub fn proptest_config(cases: u32) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0DEB_E27A),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}
