//! Byte tries: the Darts double array stored in a `precompiled_charsmap`, and a simple trie for
//! vocabulary pieces (the library builds a Darts array from the pieces; any trie that walks bytes
//! and reports every prefix gives the same lattice).

/// Read-only Darts-clone double array (the format of SentencePiece's precompiled charsmap).
#[derive(Clone, Debug)]
pub struct DoubleArray {
    units: Vec<u32>,
}

impl DoubleArray {
    pub fn new(units: Vec<u32>) -> Self {
        DoubleArray { units }
    }

    #[inline]
    fn has_leaf(u: u32) -> bool {
        (u >> 8) & 1 == 1
    }
    #[inline]
    fn value(u: u32) -> u32 {
        u & ((1u32 << 31) - 1)
    }
    #[inline]
    fn label(u: u32) -> u32 {
        u & ((1u32 << 31) | 0xff)
    }
    #[inline]
    fn offset(u: u32) -> usize {
        ((u >> 10) << ((u & (1u32 << 9)) >> 6)) as usize
    }

    /// The longest key that is a prefix of `key`: (value, length), like the library's
    /// `commonPrefixSearch` followed by "take the longest".
    pub fn longest_prefix(&self, key: &[u8]) -> Option<(u32, usize)> {
        let mut best = None;
        let mut node_pos = 0usize;
        let &unit = self.units.first()?;
        node_pos ^= Self::offset(unit);
        for (i, &b) in key.iter().enumerate() {
            node_pos ^= b as usize;
            let Some(&unit) = self.units.get(node_pos) else { return best };
            if Self::label(unit) != b as u32 {
                return best;
            }
            node_pos ^= Self::offset(unit);
            if Self::has_leaf(unit) {
                let Some(&leaf) = self.units.get(node_pos) else { return best };
                best = Some((Self::value(leaf), i + 1));
            }
        }
        best
    }
}

/// A byte trie over vocabulary pieces. Children of a node are contiguous and sorted by label.
#[derive(Clone, Debug)]
pub struct PieceTrie {
    /// Per node: index of the first child edge in `labels`/`targets`, and the number of edges.
    first: Vec<u32>,
    count: Vec<u16>,
    /// Per node: the value stored at that node, or -1.
    value: Vec<i32>,
    labels: Vec<u8>,
    targets: Vec<u32>,
    /// Children of the root by byte, for speed (0 = none; node ids are >= 1).
    root: Box<[u32]>,
}

impl PieceTrie {
    /// Builds from (key, value) pairs; a later duplicate key is ignored.
    pub fn build<'a>(entries: impl IntoIterator<Item = (&'a [u8], i32)>) -> Self {
        // A simple pointer trie first, then flattened breadth-first.
        struct N {
            children: Vec<(u8, usize)>,
            value: i32,
        }
        let mut nodes = vec![N { children: Vec::new(), value: -1 }];
        for (key, value) in entries {
            if key.is_empty() {
                continue;
            }
            let mut cur = 0;
            for &b in key {
                cur = match nodes[cur].children.iter().find(|c| c.0 == b) {
                    Some(&(_, n)) => n,
                    None => {
                        nodes.push(N { children: Vec::new(), value: -1 });
                        let n = nodes.len() - 1;
                        nodes[cur].children.push((b, n));
                        n
                    }
                };
            }
            if nodes[cur].value < 0 {
                nodes[cur].value = value;
            }
        }
        for n in &mut nodes {
            n.children.sort_unstable_by_key(|c| c.0);
        }
        // Renumber breadth-first so siblings' edges are contiguous.
        let mut order = vec![0usize];
        let mut new_id = vec![0u32; nodes.len()];
        let mut i = 0;
        while i < order.len() {
            let n = order[i];
            new_id[n] = i as u32;
            for &(_, c) in &nodes[n].children {
                order.push(c);
            }
            i += 1;
        }
        let mut t = PieceTrie {
            first: Vec::new(),
            count: Vec::new(),
            value: Vec::new(),
            labels: Vec::new(),
            targets: Vec::new(),
            root: vec![0u32; 256].into_boxed_slice(),
        };
        for &n in &order {
            t.first.push(t.labels.len() as u32);
            t.count.push(nodes[n].children.len() as u16);
            t.value.push(nodes[n].value);
            for &(b, c) in &nodes[n].children {
                t.labels.push(b);
                t.targets.push(new_id[c]);
            }
        }
        for &(b, c) in &nodes[0].children {
            t.root[b as usize] = new_id[c];
        }
        t
    }

    #[inline]
    fn child(&self, node: u32, b: u8) -> Option<u32> {
        if node == 0 {
            let c = self.root[b as usize];
            return (c != 0).then_some(c);
        }
        let f = self.first[node as usize] as usize;
        let n = self.count[node as usize] as usize;
        let labels = &self.labels[f..f + n];
        if n <= 8 {
            labels.iter().position(|&l| l == b).map(|i| self.targets[f + i])
        } else {
            labels.binary_search(&b).ok().map(|i| self.targets[f + i])
        }
    }

    /// Calls `f(length, value)` for every key that is a prefix of `key`, shortest first.
    #[inline]
    pub fn for_each_prefix(&self, key: &[u8], mut f: impl FnMut(usize, i32)) {
        let mut node = 0u32;
        for (i, &b) in key.iter().enumerate() {
            match self.child(node, b) {
                Some(c) => node = c,
                None => return,
            }
            let v = self.value[node as usize];
            if v >= 0 {
                f(i + 1, v);
            }
        }
    }

    /// The longest key that is a prefix of `key`: its length.
    pub fn longest_prefix_len(&self, key: &[u8]) -> Option<usize> {
        let mut best = None;
        self.for_each_prefix(key, |len, _| best = Some(len));
        best
    }

    pub fn get(&self, key: &[u8]) -> Option<i32> {
        let mut node = 0u32;
        for &b in key {
            node = self.child(node, b)?;
        }
        let v = self.value[node as usize];
        (v >= 0 && !key.is_empty()).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_trie_prefixes() {
        let keys: Vec<(&[u8], i32)> = vec![(b"a", 1), (b"ab", 2), (b"abc", 3), (b"b", 4), (b"abd", 5)];
        let t = PieceTrie::build(keys);
        let mut got = vec![];
        t.for_each_prefix(b"abcx", |l, v| got.push((l, v)));
        assert_eq!(got, vec![(1, 1), (2, 2), (3, 3)]);
        assert_eq!(t.get(b"abd"), Some(5));
        assert_eq!(t.get(b"ac"), None);
        assert_eq!(t.longest_prefix_len(b"bz"), Some(1));
    }
}
