//! The job state machine: one instance per job, transitions exactly as the
//! original defined them. Owns states, events and the transition table; it does
//! not own what a job holds besides its state (see [`crate::jobstate::JobState`]).
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Pending,
    Running,
    Blocked,
    Done,
    Failed,
}

/// What moves a job from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Start,
    Block,
    Unblock,
    Complete,
    Fail,
    Reset,
}

impl State {
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Done | State::Failed)
    }

    /// The state `event` leads to, or `None` where the original defines no
    /// transition.
    pub fn next(self, event: Event) -> Option<State> {
        use Event::*;
        use State::*;
        match (self, event) {
            (Pending, Start) => Some(Running),
            (Pending, Fail) => Some(Failed),
            (Running, Block) => Some(Blocked),
            (Running, Complete) => Some(Done),
            (Running, Fail) => Some(Failed),
            (Blocked, Unblock) => Some(Running),
            (Blocked, Fail) => Some(Failed),
            (Failed, Reset) => Some(Pending),
            _ => None,
        }
    }

    /// Applies every event in order, or none of them: the first undefined
    /// transition refuses the whole sequence.
    pub fn apply_all(self, events: &[Event]) -> Result<State, TransitionError> {
        let mut state = self;
        for (index, event) in events.iter().enumerate() {
            state = state.next(*event).ok_or(TransitionError {
                from: state,
                event: *event,
                index,
            })?;
        }
        Ok(state)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Running => "RUNNING",
            State::Blocked => "BLOCKED",
            State::Done => "DONE",
            State::Failed => "FAILED",
        }
    }
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Block => "block",
            Event::Unblock => "unblock",
            Event::Complete => "complete",
            Event::Fail => "fail",
            Event::Reset => "reset",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event with no transition from the state it met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no transition from {from} on event '{event}' (event {index} of the decision)")]
pub struct TransitionError {
    pub from: State,
    pub event: Event,
    pub index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_STATES: [State; 5] = [
        State::Pending,
        State::Running,
        State::Blocked,
        State::Done,
        State::Failed,
    ];
    const ALL_EVENTS: [Event; 6] = [
        Event::Start,
        Event::Block,
        Event::Unblock,
        Event::Complete,
        Event::Fail,
        Event::Reset,
    ];

    #[test]
    fn the_transition_table_is_exactly_the_originals() {
        let defined = [
            (State::Pending, Event::Start, State::Running),
            (State::Pending, Event::Fail, State::Failed),
            (State::Running, Event::Block, State::Blocked),
            (State::Running, Event::Complete, State::Done),
            (State::Running, Event::Fail, State::Failed),
            (State::Blocked, Event::Unblock, State::Running),
            (State::Blocked, Event::Fail, State::Failed),
            (State::Failed, Event::Reset, State::Pending),
        ];
        let mut count = 0;
        for s in ALL_STATES {
            for e in ALL_EVENTS {
                let expected = defined
                    .iter()
                    .find(|(from, ev, _)| *from == s && *ev == e)
                    .map(|t| t.2);
                assert_eq!(s.next(e), expected, "{s} on {e}");
                count += usize::from(expected.is_some());
            }
        }
        assert_eq!(count, 8);
    }

    #[test]
    fn a_multi_event_sequence_is_all_or_nothing() {
        let err = State::Pending
            .apply_all(&[Event::Start, Event::Complete, Event::Reset])
            .unwrap_err();
        assert_eq!(err.from, State::Done);
        assert_eq!(err.index, 2);
        assert_eq!(
            State::Pending.apply_all(&[Event::Start, Event::Complete]),
            Ok(State::Done)
        );
    }
}
