//! Test helpers: the real tables and a naive longest-prefix-match oracle.
#![allow(dead_code)]

pub mod data;

use std::collections::HashMap;

/// The obviously-correct LPM: one hash map per prefix length, probed longest first.
pub struct Oracle {
    bits: u8,
    maps: Vec<HashMap<u128, u32>>,
}

impl Oracle {
    pub fn new(bits: u8) -> Oracle {
        Oracle {
            bits,
            maps: (0..=bits).map(|_| HashMap::new()).collect(),
        }
    }
    fn mask(&self, key: u128, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            key & (u128::MAX << (128 - len as u32)) >> (128 - self.bits as u32)
        }
    }
    pub fn insert(&mut self, key: u128, len: u8, nh: u32) {
        let k = self.mask(key, len);
        self.maps[len as usize].insert(k, nh);
    }
    pub fn remove(&mut self, key: u128, len: u8) -> Option<u32> {
        let k = self.mask(key, len);
        self.maps[len as usize].remove(&k)
    }
    pub fn lookup(&self, key: u128) -> Option<u32> {
        (0..=self.bits).rev().find_map(|len| {
            let map = &self.maps[len as usize];
            if map.is_empty() {
                return None;
            }
            map.get(&self.mask(key, len)).copied()
        })
    }
}
