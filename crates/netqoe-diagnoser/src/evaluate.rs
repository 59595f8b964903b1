//! `evaluate` (being written).
use crate::config::EvaluateArgs;
pub async fn run(_pool: &sqlx::PgPool, _args: &EvaluateArgs) -> Result<bool, crate::Error> {
    Err(crate::Error::Input("evaluate is not built yet".into()))
}
