//! `vaultctl bench`: reproducible datasets, stage ceilings and a restic comparison.

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Working directory for datasets, vaults and restores
    #[arg(long, value_name = "DIR", default_value = "bench-data")]
    pub dir: std::path::PathBuf,
}

pub fn run(_args: &BenchArgs, _json: bool, _quiet: bool) -> anyhow::Result<()> {
    anyhow::bail!("bench is being written")
}
