//! `verify`: proves that the views equal the log. Each chosen projection is rebuilt from
//! position zero into a scratch version and compared, row for row, with the active version
//! at the same log position (see `projections::maintenance::verify`); differences are
//! reported with a few of the differing rows.

use std::fmt;

use projections::maintenance::{Comparison, TableComparison};

use crate::terminal::printable;

/// The report of one projection's comparison.
pub struct VerifyReport<'a>(pub &'a Comparison);

impl fmt::Display for VerifyReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let comparison = self.0;
        writeln!(
            f,
            "{} version {} at position {}: {}",
            comparison.projection,
            comparison.active_version,
            comparison.position.global_position,
            if comparison.is_equal() {
                "identical to a rebuild from the log"
            } else {
                "DIFFERS from a rebuild from the log"
            }
        )?;
        for table in &comparison.tables {
            write_table(f, table)?;
        }
        Ok(())
    }
}

fn write_table(f: &mut fmt::Formatter<'_>, table: &TableComparison) -> fmt::Result {
    writeln!(
        f,
        "  {}: {} rows, rebuilt {} rows{}",
        table.table,
        table.active_rows,
        table.rebuilt_rows,
        if table.is_equal() { ", identical" } else { "" }
    )?;
    let sides = [
        (
            "only in the active version",
            table.only_active,
            &table.only_active_sample,
        ),
        (
            "only in the rebuild",
            table.only_rebuilt,
            &table.only_rebuilt_sample,
        ),
    ];
    for (label, count, sample) in sides {
        if count > 0 {
            writeln!(f, "    {count} rows {label}, e.g.:")?;
            for row in sample {
                writeln!(f, "      {}", printable(row))?;
            }
        }
    }
    Ok(())
}
