//! PLACEHOLDER — being written (export/import of the event log as JSON lines).

use std::fmt;
use std::path::Path;

use sqlx::PgPool;

pub struct ExportSummary;
pub struct ImportSummary;

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not implemented")
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not implemented")
    }
}

pub async fn export_to(_pool: &PgPool, _file: &Path) -> anyhow::Result<ExportSummary> {
    anyhow::bail!("not implemented yet")
}

pub async fn import_from(_pool: &PgPool, _file: &Path) -> anyhow::Result<ImportSummary> {
    anyhow::bail!("not implemented yet")
}
