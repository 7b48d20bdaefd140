//! Tiervault's narrow seams over the operating system. Every reader takes its roots (`/sys`,
//! `/proc`, ...) as parameters, so tests run against fake trees; nothing here needs root.
//!
//! - [`hw`]: the machine's disks, memory and CPUs from sysfs and procfs, as a
//!   [`HardwareDescription`](tiervault_model::HardwareDescription).
//! - [`durable`]: replacing a small file crash-safely (write, fsync, rename, fsync the directory).
//! - [`stdout`]: standard output for command-line tools that ends the process quietly (status
//!   141) when its reader goes away, instead of panicking as `println!` does; macros
//!   [`outln!`] and [`out!`].

pub mod durable;
pub mod hw;
pub mod stdout;

pub use hw::{read_hardware, HwError};
