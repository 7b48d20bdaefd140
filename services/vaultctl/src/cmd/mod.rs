//! One module per command group.

mod backup;
mod browse;
pub mod bundle;
mod datadir;
mod gc;
pub mod health;
mod hw;
mod index;
mod init;
mod key;
pub mod pool;
mod provision;
mod quickstart;
mod replicate;
mod restore;
mod service;
mod verify;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::Outcome;

pub fn run(cli: &Cli) -> Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Job(c) => return service::job(g, c),
        Command::Alert(c) => return service::alert(g, c),
        Command::Backup(_) | Command::Snapshots(_) | Command::Restore(_) | Command::Verify(_) => {
            if let Some(c) = crate::service::Client::choose(g)? {
                return match &cli.command {
                    Command::Backup(a) => service::backup(&c, g, a),
                    Command::Snapshots(a) => service::snapshots(&c, g, a),
                    Command::Restore(a) => service::restore(&c, g, a),
                    Command::Verify(a) => service::verify(&c, g, a),
                    _ => unreachable!("matched above"),
                };
            }
        }
        _ => {}
    }
    match &cli.command {
        // Nothing that opens a vault: a broken appliance config must not stop these.
        Command::Provision(_)
        | Command::Hw(_)
        | Command::Bench(_)
        | Command::Pool(_)
        | Command::Health(_)
        | Command::SupportBundle(_) => {}
        _ => {
            index::set_budget(g)?;
        }
    }
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => browse::snapshots(g, a),
        Command::Ls(a) => browse::ls(g, a),
        Command::Cat(a) => browse::cat(g, a),
        Command::Diff(a) => browse::diff(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Verify(a) => verify::run(g, a),
        Command::Stats => browse::stats(g),
        Command::Replicate(a) => replicate::run(g, a),
        Command::Pull(a) => replicate::pull(g, a),
        Command::Export(a) => replicate::export(g, a),
        Command::Import(a) => replicate::import(g, a),
        Command::Replication(crate::cli::ReplicationCmd::Status) => replicate::status(g),
        Command::Forget(a) => gc::forget(g, a),
        Command::Gc(a) => gc::gc(g, a),
        Command::Bench(a) => crate::bench::run(a, g.json, g.quiet).map(|()| Outcome::Ok),
        Command::Quickstart(a) => quickstart::run(g, a),
        Command::Provision(a) => provision::run(g, a),
        Command::Hw(crate::cli::HwCmd::Dump(a)) => hw::dump(g, a),
        Command::Index(c) => index::run(g, c),
        Command::DataDir(c) => datadir::run(g, c),
        Command::Key(c) => key::run(g, c),
        Command::Pool(c) => pool::run(g, c),
        Command::Health(c) => health::run(g, c),
        Command::SupportBundle(a) => bundle::run(g, a),
        Command::Job(_) | Command::Alert(_) => unreachable!("answered by the service"),
    }
}
