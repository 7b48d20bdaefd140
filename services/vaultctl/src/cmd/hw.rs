//! `vaultctl hw dump`: the hardware description provisioning matches against tiers.

use anyhow::Result;
use tiervault_sys::read_hardware;

use crate::cli::{Global, HwSource};
use crate::output::print_json;
use crate::Outcome;

pub fn dump(g: &Global, a: &HwSource) -> Result<Outcome> {
    let hw = read_hardware(&a.sysfs_root, &a.proc_root)?;
    if g.json {
        print_json(&serde_json::to_value(&hw)?);
    } else {
        out!(
            "# Hardware description (docs/hardware.md), for vaultctl provision --hardware FILE\n{}",
            hw.to_toml()
        );
    }
    Ok(Outcome::Ok)
}
