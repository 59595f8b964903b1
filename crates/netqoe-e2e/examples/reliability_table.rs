//! Prints the tables of docs/reliability.md from the rows the fault suite and the security
//! tests recorded under `target/reliability/` (`make reliability-report` runs them, then this).

fn main() -> anyhow::Result<()> {
    print!("{}", netqoe_e2e::faults::table()?);
    println!();
    print!("{}", netqoe_e2e::faults::security_table()?);
    Ok(())
}
