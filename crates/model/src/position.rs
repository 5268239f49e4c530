//! Relative positions (HF's `make_log_bucket_position`; docs/model.md, 3.3): the log-bucket map
//! and the per-length row table.
//!
//! The table is pure integer/f64 host arithmetic, computed once per sequence length and cached:
//! it is the same for every layer, batch and call. HF recomputes it in float32 on the device
//! every forward; we checked the two agree for |r| <= 4096 on every bucket setting we test.
//!
//! Beyond `max_position` the HF and official code differ; we follow HF (the parity oracle): the
//! bucket keeps growing past the table and `clamp(bucket + span, 0, 2*span - 1)` then pins it to an
//! edge row, so for 256 buckets r >= +512 reads row 511 and r <= -512 reads row 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// DeBERTa's log-bucket position: exact for `|r| <= mid`, logarithmic beyond (`mid = buckets/2`).
pub fn log_bucket(r: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    if r.abs() <= mid {
        return r;
    }
    let abs = r.abs() as f64;
    let mid_f = mid as f64;
    let log_pos = ((abs / mid_f).ln() / ((max_position - 1) as f64 / mid_f).ln() * (mid - 1) as f64).ceil()
        as i64
        + mid;
    r.signum() * log_pos
}

/// How relative distances map onto rows of the `[2*span, H]` relative embedding table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelativeScheme {
    /// `position_buckets`; `<= 0` means no bucketing (plain clamped distances).
    pub buckets: i64,
    /// `max_relative_positions` after HF's `< 1 -> max_position_embeddings` rule.
    pub max_position: i64,
    /// Half the number of table rows.
    pub span: i64,
}

impl RelativeScheme {
    /// The table row for query position `i` and key position `j`.
    pub fn row(&self, i: i64, j: i64) -> i64 {
        let r = i - j;
        let bucket = if self.buckets > 0 && self.max_position > 0 {
            log_bucket(r, self.buckets, self.max_position)
        } else {
            r
        };
        (bucket + self.span).clamp(0, 2 * self.span - 1)
    }
}

/// Row indices for one length, restricted to the rows that length can touch.
#[derive(Debug)]
pub struct RelativeTable {
    pub len: usize,
    /// First table row a length-`len` input reads; rows are contiguous (the map is monotone in r).
    pub first_row: usize,
    /// Number of rows read (at most `2*len - 1` and at most `2*span`).
    pub num_rows: usize,
    /// `by_distance[t] = row(r) - first_row` for `r = t - (len - 1)`, `t` in `0..2*len - 1`: the
    /// row depends on `r = i - j` only, so one row per distance turns the c2p/p2c gathers into
    /// shifted windows (see `deberta::skew`).
    pub by_distance: Vec<i64>,
}

impl RelativeTable {
    pub fn new(scheme: RelativeScheme, len: usize) -> Self {
        let n = len as i64;
        // row(i, j) depends on i - j only and is monotone in it, so the extremes are at
        // r = -(len-1) and r = len-1.
        let lo = scheme.row(0, n - 1);
        let hi = scheme.row(n - 1, 0);
        let by_distance = (-(n - 1)..n).map(|r| scheme.row(r, 0) - lo).collect();
        RelativeTable { len, first_row: lo as usize, num_rows: (hi - lo + 1) as usize, by_distance }
    }
}

/// Per-length cache of [`RelativeTable`]s, shared by clones of the model.
#[derive(Debug, Clone)]
pub struct RelativeTableCache {
    scheme: RelativeScheme,
    tables: Arc<Mutex<HashMap<usize, Arc<RelativeTable>>>>,
}

impl RelativeTableCache {
    pub fn new(scheme: RelativeScheme) -> Self {
        Self { scheme, tables: Arc::new(Mutex::new(HashMap::new())) }
    }

    pub fn get(&self, len: usize) -> Arc<RelativeTable> {
        // A poisoned lock only means another thread panicked mid-insert of an immutable value.
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.entry(len).or_insert_with(|| Arc::new(RelativeTable::new(self.scheme, len))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values derived by hand from the log-bucket formula for 256 buckets, max position 512.
    #[test]
    fn bucket_hand_values() {
        let b = |r| log_bucket(r, 256, 512);
        for r in -128..=128 {
            assert_eq!(b(r), r);
        }
        assert_eq!(b(132), 131);
        assert_eq!(b(200), 169);
        assert_eq!(b(256), 192);
        assert_eq!(b(500), 254);
        for r in 506..=511 {
            assert_eq!(b(r), 255, "r = {r}");
        }
        for r in 0..2000 {
            assert_eq!(b(-r), -b(r), "odd symmetry at {r}");
        }
        // Monotone, so the table touches a contiguous band of rows.
        for r in -2000..2000 {
            assert!(b(r) <= b(r + 1));
        }
    }

    #[test]
    fn rows_and_edges() {
        let s = RelativeScheme { buckets: 256, max_position: 512, span: 256 };
        assert_eq!(s.row(0, 0), 256);
        assert_eq!(s.row(5, 0), 261);
        assert_eq!(s.row(0, 5), 251);
        // HF's behaviour past the table: +512 clamps to the top row, -512 lands on row 0.
        assert_eq!(s.row(511, 0), 511);
        assert_eq!(s.row(600, 0), 511);
        assert_eq!(s.row(0, 511), 1);
        assert_eq!(s.row(0, 512), 0);
        assert_eq!(s.row(0, 600), 0);

        // No buckets: plain distances clamped to the span.
        let s = RelativeScheme { buckets: -1, max_position: 8, span: 8 };
        assert_eq!(s.row(3, 1), 10);
        assert_eq!(s.row(20, 0), 15);
        assert_eq!(s.row(0, 20), 0);
    }

    #[test]
    fn table_uses_only_touched_rows() {
        let s = RelativeScheme { buckets: 256, max_position: 512, span: 256 };
        let t = RelativeTable::new(s, 4);
        assert_eq!((t.first_row, t.num_rows), (253, 7));
        // Distances -3..=3 read rows 253..=259.
        assert_eq!(t.by_distance, vec![0, 1, 2, 3, 4, 5, 6]);

        // Every (query, key) pair reads through its distance the row the scheme gives it.
        let t = RelativeTable::new(s, 300);
        assert_eq!(t.first_row as i64, s.row(0, 299));
        assert_eq!((t.first_row + t.num_rows - 1) as i64, s.row(299, 0));
        assert!(t.num_rows < 2 * 300 - 1, "buckets compress distances past 128");
        for i in 0..300i64 {
            for j in 0..300i64 {
                let v = t.by_distance[(i - j + 299) as usize];
                assert_eq!(v + t.first_row as i64, s.row(i, j), "({i}, {j})");
            }
        }
    }
}
