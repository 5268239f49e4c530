//! Pre-training corpus: streamed text -> memory-mapped token cache -> fixed-length lines.
