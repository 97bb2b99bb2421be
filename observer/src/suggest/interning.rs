//! The learner's tables: values stored once and named by a `u32`, found by a fast hash of
//! their parts (so a record's borrowed strings find their id without allocating), and the
//! hasher itself (FxHash: a multiply and a rotate per word; the keys are the learner's own,
//! not chosen by an attacker who could aim at collisions).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// FxHash, as rustc uses it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`FxHasher`]s for the learner's maps.
pub(super) type Fx = BuildHasherDefault<FxHasher>;

/// The FxHash of a value.
pub(super) fn fx_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Values stored once, each named by its index.
#[derive(Clone, Debug)]
pub(super) struct Interned<T> {
    values: Vec<T>,
    /// By the hash of the value (as `intern_with` was given it): the first id with it.
    ids: HashMap<u64, u32, Fx>,
    /// Ids whose hash was already taken by another value: searched one by one (rare).
    collided: Vec<(u64, u32)>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            ids: HashMap::default(),
            collided: Vec::new(),
        }
    }
}

impl<T> Interned<T> {
    /// The id of the value whose hash is `hash` and that `same` accepts, made with `make`
    /// when there is none.
    pub(super) fn intern_with(
        &mut self,
        hash: u64,
        same: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
    ) -> u32 {
        if let Some(id) = self.find_with(hash, &same) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(make());
        match self.ids.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => self.collided.push((hash, id)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
        id
    }

    fn find_with(&self, hash: u64, same: impl Fn(&T) -> bool) -> Option<u32> {
        let first = self.ids.get(&hash)?;
        if self.values.get(*first as usize).is_some_and(&same) {
            return Some(*first);
        }
        self.collided
            .iter()
            .find(|(h, id)| *h == hash && self.values.get(*id as usize).is_some_and(&same))
            .map(|(_, id)| *id)
    }

    /// The value named `id`.
    pub(super) fn get(&self, id: u32) -> Option<&T> {
        self.values.get(id as usize)
    }

    /// Every value, by id.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.values.iter()
    }
}

impl<T: Hash + Eq> Interned<T> {
    /// The id of `value`, stored if new.
    pub(super) fn intern(&mut self, value: T) -> u32 {
        let hash = fx_hash(&value);
        if let Some(id) = self.find_with(hash, |v| *v == value) {
            return id;
        }
        self.intern_with(hash, |_| false, || value)
    }

    /// The id of `value`, if it is stored.
    pub(super) fn find(&self, value: &T) -> Option<u32> {
        self.find_with(fx_hash(value), |v| v == value)
    }
}

impl Interned<String> {
    /// The id of a string, stored (copied) if new.
    pub(super) fn intern_str(&mut self, value: &str) -> u32 {
        self.intern_with(fx_hash(value), |v| v == value, || value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_once_and_colliding_hashes_stay_apart() {
        let mut names: Interned<String> = Interned::default();
        let a = names.intern_str("shop/web-0");
        assert_eq!(names.intern("shop/web-0".to_string()), a);
        assert_eq!(names.find(&"shop/web-0".to_string()), Some(a));
        // Two values forced onto one hash keep their own ids.
        let x = names.intern_with(7, |v| v == "x", || "x".into());
        let y = names.intern_with(7, |v| v == "y", || "y".into());
        assert_ne!(x, y);
        assert_eq!(names.intern_with(7, |v| v == "y", || "again".into()), y);
        assert_eq!(names.get(y).map(String::as_str), Some("y"));
    }
}
