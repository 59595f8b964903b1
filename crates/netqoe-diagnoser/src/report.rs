//! `report` (being written).
use crate::config::ReportArgs;
pub async fn run(_pool: &sqlx::PgPool, _args: &ReportArgs) -> Result<(), crate::Error> {
    Err(crate::Error::Input("report is not built yet".into()))
}
