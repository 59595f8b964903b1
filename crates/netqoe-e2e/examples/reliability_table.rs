//! Prints the table of docs/reliability.md from the rows the fault suite recorded under
//! `target/reliability/` (`make reliability-report` runs the suite, then this).

fn main() -> anyhow::Result<()> {
    print!("{}", netqoe_e2e::faults::table()?);
    Ok(())
}
