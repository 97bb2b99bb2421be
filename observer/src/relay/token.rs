//! The cluster cursor: where a relay's stream is in every node's flows, as an opaque token
//! the client keeps. The relay keeps no state of its own, so any replica resumes it.
//!
//! A token is `v1.` and the base64url of: for each node, its id (8 bytes, little-endian)
//! and the cursor of the last flow delivered from it (LEB128). A node's id is the FNV-1a
//! hash of its name: fixed, so that every replica and version reads the same token.
//! Cursors already carry the node's run: each run's are above every earlier run's.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const PREFIX: &str = "v1.";

/// Per node, the cursor of the last flow delivered (or passed over) from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterCursor {
    positions: BTreeMap<u64, u64>,
}

/// A token that is not one a relay wrote.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("after_token is not a relay's token ({0}): pass a token exactly as a relay sent it")]
pub struct BadToken(&'static str);

/// The id a node has in tokens.
pub fn node_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

impl ClusterCursor {
    /// The cursor after which `node`'s flows resume, if the token has one.
    pub fn get(&self, node: &str) -> Option<u64> {
        self.positions.get(&node_id(node)).copied()
    }

    /// Records that `node`'s flows up to `cursor` were delivered. Never moves back.
    pub fn advance(&mut self, node: &str, cursor: u64) {
        self.advance_id(node_id(node), cursor);
    }

    /// [`Self::advance`] by the node's id ([`node_id`]).
    pub fn advance_id(&mut self, id: u64, cursor: u64) {
        let position = self.positions.entry(id).or_insert(cursor);
        *position = (*position).max(cursor);
    }

    /// Forgets the node's position: a resume reads it from its oldest flow held.
    pub fn forget_id(&mut self, id: u64) {
        self.positions.remove(&id);
    }

    /// The token.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.positions.len() * 18);
        for (id, cursor) in &self.positions {
            bytes.extend_from_slice(&id.to_le_bytes());
            let mut value = *cursor;
            loop {
                let low = (value & 0x7f) as u8;
                value >>= 7;
                if value == 0 {
                    bytes.push(low);
                    break;
                }
                bytes.push(low | 0x80);
            }
        }
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads a token.
    pub fn decode(token: &str) -> Result<Self, BadToken> {
        let body = token
            .strip_prefix(PREFIX)
            .ok_or(BadToken("it does not start with v1."))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| BadToken("not base64url"))?;
        let mut positions = BTreeMap::new();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let (id, tail) = rest.split_first_chunk::<8>().ok_or(BadToken("cut short"))?;
            let mut cursor = 0u64;
            let mut shift = 0;
            let mut tail = tail;
            loop {
                let (&byte, next) = tail.split_first().ok_or(BadToken("cut short"))?;
                tail = next;
                if shift > 63 || (shift == 63 && byte > 1) {
                    return Err(BadToken("a cursor too large"));
                }
                cursor |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            positions.insert(u64::from_le_bytes(*id), cursor);
            rest = tail;
        }
        Ok(Self { positions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_keep_every_node() {
        let mut cursor = ClusterCursor::default();
        cursor.advance("node-a", 1_764_000_000_000_123);
        cursor.advance("node-b", 5);
        cursor.advance("node-b", 3);
        cursor.advance("node-c", u64::MAX);
        let token = cursor.encode();
        assert!(token.starts_with("v1."), "{token}");
        let back = ClusterCursor::decode(&token).expect("decodes");
        assert_eq!(back, cursor);
        assert_eq!(back.get("node-a"), Some(1_764_000_000_000_123));
        assert_eq!(back.get("node-b"), Some(5), "never moves back");
        assert_eq!(back.get("node-c"), Some(u64::MAX));
        assert_eq!(back.get("node-d"), None);
        assert_eq!(
            ClusterCursor::decode(&ClusterCursor::default().encode()),
            Ok(ClusterCursor::default())
        );
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let good = {
            let mut c = ClusterCursor::default();
            c.advance("n", 300);
            c.encode()
        };
        assert!(ClusterCursor::decode(&good[..good.len() - 1]).is_err());
        assert!(ClusterCursor::decode("1234").is_err());
        assert!(ClusterCursor::decode("v1.!!").is_err());
        let overlong: Vec<u8> = [0u8; 8].iter().chain(&[0xff; 11]).copied().collect();
        let overlong = format!("v1.{}", URL_SAFE_NO_PAD.encode(overlong));
        assert!(ClusterCursor::decode(&overlong).is_err());
        // Node ids are fixed: another replica, another version read the same token.
        // (FNV-1a's published test values.)
        assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
