//! One generator task's items at the node that owns it: which items the
//! stream holds for its caller, which the caller took, and what the next
//! `next()` gets.
//!
//! Items come in order (from one worker, or again in order from a retry of
//! the task). The stream holds one reference to each item that arrives
//! until the caller takes it; the core takes and drops those references as
//! told here. An item may have arrived and still not be ready (its value is
//! being pulled from the node that made it): it is given only once ready.
//! After the end, an index past the last item gets `End`, or once the error
//! of a task that failed as a whole.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct StreamBook {
    /// Items arrived and not taken, each holding one reference.
    held: BTreeSet<u32>,
    /// One past the highest item index arrived.
    made: u32,
    /// The end is set: no more items will come.
    ended: bool,
    /// The task failed as a whole and the caller was not given that yet.
    error_due: bool,
}

/// What `next()` of item `index` gets now.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// The item: its reference moves to the caller if `held` (else the
    /// caller needs a reference of its own).
    Item { held: bool },
    /// The task's error, held by its end.
    Error,
    /// No such item will come.
    End,
    /// Not yet: ask again when an item is ready or the stream ends.
    Wait,
}

impl StreamBook {
    /// Item `index` (from 1) arrived. Returns whether the stream must take
    /// a reference to it (false for an item it holds or gave already).
    #[must_use]
    pub fn arrive(&mut self, index: u32) -> bool {
        if index == 0 || index < self.made && !self.held.contains(&index) {
            return false;
        }
        self.made = self.made.max(index + 1);
        self.held.insert(index)
    }

    /// The task ended; `failed` if its end holds an error.
    pub fn end(&mut self, failed: bool) {
        self.ended = true;
        self.error_due = failed;
    }

    /// `next()` of item `index`, whose value is `ready` or not.
    pub fn take(&mut self, index: u32, ready: bool) -> Take {
        if index > 0 && ready {
            return Take::Item {
                held: self.held.remove(&index),
            };
        }
        if !self.ended || index < self.made {
            return Take::Wait;
        }
        if std::mem::take(&mut self.error_due) {
            return Take::Error;
        }
        Take::End
    }

    /// The generator was dropped: the items it still holds, to release.
    pub fn drop_held(self) -> impl Iterator<Item = u32> {
        self.held.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn items_then_end() {
        let mut s = StreamBook::default();
        assert_eq!(s.take(1, false), Take::Wait);
        assert!(s.arrive(1));
        assert_eq!(s.take(1, true), Take::Item { held: true });
        s.end(false);
        assert_eq!(s.take(2, false), Take::End);
    }

    #[test]
    fn an_item_being_pulled_is_waited_for_even_after_the_end() {
        let mut s = StreamBook::default();
        assert!(s.arrive(1));
        s.end(false);
        assert_eq!(s.take(1, false), Take::Wait);
        assert_eq!(s.take(1, true), Take::Item { held: true });
    }

    #[test]
    fn a_failed_task_gives_its_error_once() {
        let mut s = StreamBook::default();
        s.end(true);
        assert_eq!(s.take(1, false), Take::Error);
        assert_eq!(s.take(1, false), Take::End);
    }

    #[derive(Debug, Clone)]
    enum Event {
        /// The worker (or a retry, from item 1 again) makes the next item.
        Make,
        Retry,
        /// An item's pull ends: it is ready.
        Ready,
        End {
            failed: bool,
        },
        /// The caller asks for its next item.
        Next,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Make),
            1 => Just(Event::Retry),
            3 => Just(Event::Ready),
            1 => any::<bool>().prop_map(|failed| Event::End { failed }),
            4 => Just(Event::Next),
        ]
    }

    proptest! {
        /// Over any run: the caller gets items 1, 2, ... in order, each
        /// once, only when ready; End only after every item made was
        /// taken; the error at most once; and every reference the stream
        /// took is handed to the caller or released when dropped.
        #[test]
        fn items_are_given_in_order_once_and_no_reference_leaks(
            events in proptest::collection::vec(event(), 0..80),
        ) {
            let mut s = StreamBook::default();
            let mut produced = 0u32; // items the current run of the task made
            let mut arrived = BTreeSet::new();
            let mut ready = BTreeSet::new();
            let mut refs = 0i64; // references the stream took, not yet handed or released
            let (mut next, mut ended, mut errors, mut over) = (1u32, false, 0, false);
            for e in events {
                match e {
                    Event::Make if !ended => {
                        produced += 1;
                        if s.arrive(produced) {
                            refs += 1;
                        }
                        arrived.insert(produced);
                    }
                    Event::Retry if !ended => produced = 0,
                    Event::Ready => {
                        if let Some(i) = arrived.iter().find(|i| !ready.contains(*i)).copied() {
                            ready.insert(i);
                        }
                    }
                    Event::End { failed } if !ended => {
                        ended = true;
                        s.end(failed);
                    }
                    Event::Next if !over => match s.take(next, ready.contains(&next)) {
                        Take::Item { held } => {
                            prop_assert!(ready.contains(&next));
                            prop_assert!(held, "an item arrived once is held until taken");
                            refs -= 1;
                            next += 1;
                        }
                        Take::Error => {
                            errors += 1;
                            prop_assert!(ended);
                        }
                        Take::End => {
                            prop_assert!(ended);
                            prop_assert!(!arrived.contains(&next), "End while item {} is due", next);
                            over = true;
                        }
                        Take::Wait => prop_assert!(!ended || arrived.contains(&next)),
                    },
                    _ => {}
                }
            }
            prop_assert!(errors <= 1);
            let dropped = s.drop_held().count() as i64;
            prop_assert_eq!(refs, dropped);
        }
    }
}
