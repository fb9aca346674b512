//! A map from `String` keys kept as a sorted `Vec`: the few small in-process maps of the forge
//! (held envs, pending mirror writes, request headers). Iterates in key order, as `BTreeMap`
//! does; each `BTreeMap<String, V>` instantiation is several KB of Wasm, this is a few
//! hundred bytes. Lookups are binary searches; inserts shift the tail (these maps hold tens to
//! a few thousand entries).
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct VecMap<V> {
    entries: Vec<(String, V)>,
}

impl<V> Default for VecMap<V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for VecMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> VecMap<V> {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(move |i| &mut self.entries[i].1)
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, inserted from `make` if absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (key.to_string(), make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Removes and returns the entry with the smallest key.
    pub fn pop_first(&mut self) -> Option<(String, V)> {
        (!self.entries.is_empty()).then(|| self.entries.remove(0))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u8),
        Remove(String),
        GetOrInsert(String, u8),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = "[a-d]{0,2}";
        prop_oneof![
            (key, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            key.prop_map(Op::Remove),
            (key, any::<u8>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
            Just(Op::PopFirst),
        ]
    }

    proptest! {
        /// Behaves as a `BTreeMap<String, _>`: same answers, same order, same Debug text.
        #[test]
        fn is_a_btreemap(ops in proptest::collection::vec(op(), 0..60)) {
            let mut a = VecMap::default();
            let mut b = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(a.insert(k.clone(), v), b.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(a.remove(&k), b.remove(&k)),
                    Op::GetOrInsert(k, v) => {
                        let x = a.get_or_insert_with(&k, || v);
                        *x = x.wrapping_add(1);
                        let y = b.entry(k).or_insert(v);
                        *y = y.wrapping_add(1);
                    }
                    Op::PopFirst => prop_assert_eq!(a.pop_first(), b.pop_first()),
                }
                prop_assert_eq!(a.len(), b.len());
                prop_assert!(a.iter().eq(b.iter()));
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                for k in ["", "a", "ab", "d"] {
                    prop_assert_eq!(a.get(k), b.get(k));
                    prop_assert_eq!(a.contains_key(k), b.contains_key(k));
                }
            }
        }
    }
}
