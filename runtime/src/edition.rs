//! Editions: the rules a run was recorded under.
//!
//! Upholds invariant 3 for old runs: a run is re-executed (replayed, resumed, forked)
//! under the rules of the edition it was recorded under, so that what a newer Warden
//! enforces or records differently never makes an old run depart from its journal.

use serde::{Deserialize, Serialize};

/// The rules a run was recorded under. A run is re-executed under the rules of its own
/// edition, so that old runs replay bit for bit while new runs get new rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Edition {
    /// Runs started by format version 1 (`RunStarted`): traps recorded as text.
    V1,
    /// Runs started from format version 2 on (`Started`): typed trap codes.
    V2,
    /// A run in a review state is held there: the agent may read but not act in it
    /// (whether a gate, its own transition or a reviewer's decision brought it there), so
    /// that only a person moves it on; and the action a reviewer decides on is bound to
    /// the run.
    V3,
}

impl Edition {
    /// The edition new runs are started under.
    pub const CURRENT: Edition = Edition::V3;

    /// The edition's number, as documents print it.
    pub fn number(self) -> u8 {
        match self {
            Edition::V1 => 1,
            Edition::V2 => 2,
            Edition::V3 => 3,
        }
    }
}
