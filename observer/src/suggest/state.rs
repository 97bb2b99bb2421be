//! What a learner learned, as a value that travels: the daemon's state file
//! (`--suggest-state`) and the `GetLearning` RPC carry the same bytes, so that one
//! observer's learning can be merged into another's (`Learner::absorb`).

use std::collections::BTreeMap;

use super::edge::{EdgeKey, EdgeStats, Skipped, WorkloadId};

/// What the bytes say they are, so that another file is not mistaken for a state.
const FORMAT: &str = "observer-suggest-state";
/// The version [`State::encode`] writes and [`State::decode`] reads.
const VERSION: u32 = 1;

/// What a learner learned, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Every edge with its evidence.
    pub edges: Vec<(EdgeKey, EdgeStats)>,
    /// Every workload with the labels its pods share.
    pub labels: Vec<(WorkloadId, BTreeMap<String, String>)>,
    /// What learning could not use.
    pub skipped: Skipped,
}

/// The encoded form: the state with what it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<S> {
    format: String,
    version: u32,
    state: S,
}

impl State {
    /// The state as JSON, with its format and version.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            format: FORMAT.into(),
            version: VERSION,
            state: self,
        })
        // Serializing plain data to memory cannot fail.
        .unwrap_or_default()
    }

    /// Reads what [`State::encode`] wrote; anything else (another format, another
    /// version, corrupt bytes) is an error saying what it is.
    pub fn decode(bytes: &[u8]) -> Result<State, String> {
        match serde_json::from_slice::<Envelope<State>>(bytes) {
            Ok(e) if e.format == FORMAT && e.version == VERSION => Ok(e.state),
            Ok(e) => Err(format!(
                "format {:?} version {}, not {FORMAT} version {VERSION}",
                e.format, e.version
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_and_other_bytes_are_refused() {
        let state = State {
            skipped: Skipped {
                dropped_edges: 3,
                ..Skipped::default()
            },
            ..State::default()
        };
        assert_eq!(State::decode(&state.encode()), Ok(state));
        let foreign = br#"{"format":"other","version":1,"state":{"edges":[],"labels":[],"skipped":{"dropped_edges":0,"unresolved_services":0,"without_identity":0}}}"#;
        let err = State::decode(foreign).unwrap_err();
        assert!(err.contains("\"other\""), "{err}");
        assert!(State::decode(b"{not json").is_err());
    }
}
