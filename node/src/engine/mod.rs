//! The node's decisions as pure state machines: no tokio, no sockets, no
//! files. Each takes what happened as method calls and says what follows
//! in its return values; the core (the runtime) carries that out. Each has
//! unit tests and property tests over random event sequences.
//!
//! - [`ledger`]: the workers, what each does, and the resources each holds
//!   (with the scheduler's queue of ready tasks).

pub mod ledger;

pub use ledger::{Ledger, Slot};
