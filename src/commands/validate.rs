//! `tenantctl validate`: offline check of the whole directory.

use crate::cli::ValidateArgs;
use crate::error::Exit;
use anyhow::Result;

pub fn run(args: &ValidateArgs) -> Result<Exit> {
    let desired = super::load(&args.dir.dir)?;
    println!(
        "`{}` is valid: {} tenant{}, {} plan{}",
        args.dir.dir.display(),
        desired.tenants.len(),
        if desired.tenants.len() == 1 { "" } else { "s" },
        desired.plans.len(),
        if desired.plans.len() == 1 { "" } else { "s" },
    );
    Ok(Exit::Success)
}
