//! PLACEHOLDER — being written (import of an original ITU-MiniTwit SQLite database).

use std::fmt;
use std::path::Path;

use crate::admin::Admin;

pub struct LegacyReport;

impl fmt::Display for LegacyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not implemented")
    }
}

pub async fn import_legacy(_admin: &Admin, _path: &Path) -> anyhow::Result<LegacyReport> {
    anyhow::bail!("not implemented yet")
}
