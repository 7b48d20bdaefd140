//! A condition the health rules found: the shared alert model's [`Finding`], re-exported so
//! the rules and their callers name it from here.

pub use tiervault_alerts::finding::{changes, Finding};
