//! Helpers shared by the end-to-end tests of `vaultctl`.
//!
//! Every test binary includes this module with `mod common;` and uses only part of it, hence
//! the dead-code allowance. The pieces:
//! - [`cli`]: finding/building the `vaultctl` binary, the [`Vault`] fixture, exit-code checks;
//! - [`fsx`]: low-level file-system facts and actions (hole maps, xattrs, times, copies);
//! - [`gen`]: deterministic file contents (incompressible and text-like);
//! - [`pack`]: the plaintext framing of pack files, to aim corruption at a blob;
//! - [`tree`]: the proptest strategy for random trees and its materialisation on disk;
//! - [`compare`]: the tree comparator used to check restores.
#![allow(dead_code)]

pub mod bus;
pub mod cli;
pub mod compare;
pub mod fakemd;
pub mod fsx;
pub mod gen;
pub mod ipmisim;
pub mod pack;
pub mod remote;
pub mod tree;
pub mod vm;

#[allow(unused_imports)]
pub use cli::{check_exit, describe, error_line, json_of, vaultctl, Vault};
#[allow(unused_imports)]
pub use compare::{assert_same_file_data, assert_same_tree, assert_same_tree_except};

/// Reports a test that cannot run here. The notes count it as skipped, never as passed.
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
}
