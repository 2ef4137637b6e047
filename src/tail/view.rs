//! Which entries become lines: the session filter, and one line per request when a
//! mutation has both an intent and an outcome.
//!
//! Under `on_failure: fail-closed-mutations` every mutation is written twice with one
//! `trace_id`: an `intent` before it is forwarded and an `outcome` when it completes
//! (docs/ledger.md). The outcome says everything the intent said and more, so the view
//! holds an intent back and prints only the outcome. An intent whose outcome does not
//! come within [`INTENT_GRACE`] (a slow request, or a pathgate that died with the mutation
//! in flight) is printed on its own, marked `[intent]`: the ledger knows the request was
//! about to be forwarded and nothing after that, and the operator must see it. At the end
//! of a finite input every intent still held is printed the same way.
//!
//! Pure apart from the caller's clock (`now` is a parameter), so the pairing is tested
//! without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ledger::{Entry, Phase};

/// How long an intent waits for its outcome before it is shown alone.
pub const INTENT_GRACE: Duration = Duration::from_secs(2);

/// Intents held at most; past it the oldest is shown alone (bounded memory whatever the
/// spool holds).
pub const MAX_HELD_INTENTS: usize = 4096;

/// The entries a view shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Sessions to show; empty shows every session.
    pub sessions: Vec<String>,
    /// Show every intent at once instead of pairing it with its outcome.
    pub intents: bool,
}

impl Selection {
    /// Whether `entry` belongs to a selected session.
    pub fn matches(&self, entry: &Entry) -> bool {
        self.sessions.is_empty() || self.sessions.contains(&entry.session)
    }
}

/// The pairing state of one view.
#[derive(Debug)]
pub struct View {
    selection: Selection,
    /// Intents waiting for their outcome, oldest first, with when they were read.
    held: VecDeque<(Instant, Entry)>,
}

impl View {
    pub fn new(selection: Selection) -> Self {
        View {
            selection,
            held: VecDeque::new(),
        }
    }

    /// The entries to print now that `entry` was read at `now`, in order.
    pub fn push(&mut self, entry: Entry, now: Instant) -> Vec<Entry> {
        if !self.selection.matches(&entry) {
            return Vec::new();
        }
        match entry.phase {
            Phase::Intent if !self.selection.intents => {
                let mut shown = Vec::new();
                if self.held.len() == MAX_HELD_INTENTS {
                    shown.extend(self.held.pop_front().map(|(_, intent)| intent));
                }
                self.held.push_back((now, entry));
                shown
            }
            Phase::Intent => vec![entry],
            Phase::Outcome => {
                self.held
                    .retain(|(_, intent)| intent.trace_id != entry.trace_id);
                vec![entry]
            }
        }
    }

    /// Intents that waited [`INTENT_GRACE`] or longer by `now`, to print alone.
    pub fn expire(&mut self, now: Instant) -> Vec<Entry> {
        let mut shown = Vec::new();
        while let Some((read_at, _)) = self.held.front() {
            if now.saturating_duration_since(*read_at) < INTENT_GRACE {
                break;
            }
            shown.extend(self.held.pop_front().map(|(_, intent)| intent));
        }
        shown
    }

    /// Every intent still held (the input ended).
    pub fn finish(&mut self) -> Vec<Entry> {
        self.held.drain(..).map(|(_, intent)| intent).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::testing;

    fn intent(trace_id: &str) -> Entry {
        let mut entry = testing::mutation(trace_id);
        entry.phase = Phase::Intent;
        entry.response = None;
        entry.ended_at = None;
        entry.duration_ms = None;
        entry
    }

    fn traces(entries: &[Entry]) -> Vec<(String, Phase)> {
        entries
            .iter()
            .map(|entry| (entry.trace_id.clone(), entry.phase))
            .collect()
    }

    #[test]
    fn an_intent_followed_by_its_outcome_is_one_line() {
        let mut view = View::new(Selection::default());
        let start = Instant::now();
        assert!(view.push(intent("t1"), start).is_empty());
        let shown = view.push(testing::mutation("t1"), start);
        assert_eq!(traces(&shown), [("t1".into(), Phase::Outcome)]);
        assert!(view.expire(start + INTENT_GRACE * 2).is_empty());
        assert!(view.finish().is_empty());
    }

    #[test]
    fn an_intent_without_an_outcome_is_shown_after_the_grace_or_at_the_end() {
        let mut view = View::new(Selection::default());
        let start = Instant::now();
        view.push(intent("slow"), start);
        view.push(intent("later"), start + Duration::from_secs(1));
        assert!(view.expire(start + INTENT_GRACE / 2).is_empty());
        let shown = view.expire(start + INTENT_GRACE);
        assert_eq!(traces(&shown), [("slow".into(), Phase::Intent)]);
        // Its outcome, when it comes, is still shown.
        let shown = view.push(testing::mutation("slow"), start + INTENT_GRACE * 3);
        assert_eq!(traces(&shown), [("slow".into(), Phase::Outcome)]);
        assert_eq!(traces(&view.finish()), [("later".into(), Phase::Intent)]);
    }

    #[test]
    fn with_intents_selected_both_entries_are_shown() {
        let mut view = View::new(Selection {
            intents: true,
            ..Selection::default()
        });
        let now = Instant::now();
        assert_eq!(view.push(intent("t1"), now).len(), 1);
        assert_eq!(view.push(testing::mutation("t1"), now).len(), 1);
    }

    #[test]
    fn only_selected_sessions_are_shown() {
        let mut view = View::new(Selection {
            sessions: vec!["a".into(), "b".into()],
            intents: false,
        });
        let now = Instant::now();
        for (session, shown) in [("a", 1), ("b", 1), ("c", 0), ("", 0)] {
            let mut entry = testing::read("t");
            entry.session = session.into();
            assert_eq!(view.push(entry, now).len(), shown, "session {session:?}");
        }
        let mut other = intent("t9");
        other.session = "c".into();
        view.push(other, now);
        assert!(view.finish().is_empty(), "an unselected intent is not held");
    }

    #[test]
    fn held_intents_are_bounded() {
        let mut view = View::new(Selection::default());
        let now = Instant::now();
        for n in 0..MAX_HELD_INTENTS {
            assert!(view.push(intent(&format!("t{n}")), now).is_empty());
        }
        let shown = view.push(intent("one-too-many"), now);
        assert_eq!(traces(&shown), [("t0".into(), Phase::Intent)]);
        assert_eq!(view.finish().len(), MAX_HELD_INTENTS);
    }
}
