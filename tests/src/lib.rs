//! End-to-end test helpers live in tests/tests/common; `crashfs` is the power-cut I/O layer
//! used by tests/tests/powercut.rs.

pub mod crashfs;
pub mod proxy;
pub mod rng;
