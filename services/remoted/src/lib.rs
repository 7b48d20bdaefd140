//! The remote vault: serves many tenants (MSP customers) from one data directory, each a
//! vault directory of its own written without any key (docs/format.md section 11), reached
//! over mutual TLS 1.3 with the tenant taken from the client certificate (docs/wire.md).
//!
//! Architecture invariant: nothing here can decrypt; a tenant's namespace is chosen by its
//! certificate only, never by anything the client sends.

pub mod config;
mod conn;
pub mod server;

pub use config::{Config, TenantPolicy};
pub use server::{ServeError, Server};
