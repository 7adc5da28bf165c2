//! The node's decisions as pure state machines: no tokio, no sockets, no
//! files. Each takes what happened as method calls and says what follows
//! in its return values; the core (the runtime) carries that out. Each has
//! unit tests and property tests over random event sequences.
//!
//! - [`ledger`]: the workers, what each does, and the resources each holds
//!   (with the scheduler's queue of ready tasks);
//! - [`placement`]: where a ready task runs, by its scheduling strategy
//!   (randomness passed in);
//! - [`bundles`]: which node each bundle of a placement group goes to;
//! - [`actor`]: what follows an actor's loss of its worker or node (one
//!   restart budget wherever it lives);
//! - [`stream`]: a generator task's items, held for its caller until taken;
//! - [`task_table`]: the bounded record of the tasks a node owns or runs;
//! - [`lineage`]: the specs of tasks whose results live on other nodes,
//!   kept (within a bound) to make those results again if they are lost.

pub mod actor;
pub mod bundles;
pub mod ledger;
pub mod lineage;
pub mod placement;
pub mod stream;
pub mod task_table;

pub use ledger::{Ledger, Slot};
