//! `edgefleet db copy`: move an installation to another database (SQLite to PostgreSQL).

use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum DbCommand {
    /// Copy every row from one database into another, empty one, and check each table arrived
    /// whole. Stop the server first.
    Copy {
        /// e.g. sqlite://edgefleet-data/edgefleet.db
        #[arg(long)]
        from: String,
        /// e.g. postgres://edgefleet@db-host:5432/edgefleet
        #[arg(long)]
        to: String,
    },
}

pub async fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Copy { from, to } => {
            if let Some(path) = from.strip_prefix("sqlite://") {
                let path = path.split('?').next().unwrap_or(path);
                anyhow::ensure!(std::path::Path::new(path).exists(), "{path} does not exist");
            }
            let source = store::Store::open(&from).await.with_context(|| format!("cannot open {from}"))?;
            let target = store::Store::open(&to).await.with_context(|| format!("cannot open {to}"))?;
            let report = source.copy_into(&target).await.context("copy failed")?;
            println!("{:<20} {:>10}  content check", "TABLE", "ROWS");
            let mut all_match = true;
            for table in &report {
                all_match &= table.matches();
                let check =
                    if table.matches() { format!("ok {}", &table.source_sha256[..16]) } else { "MISMATCH".to_owned() };
                println!("{:<20} {:>10}  {check}", table.table, table.rows);
            }
            if !all_match {
                eprintln!("edgefleet: some tables differ after the copy; do not switch to the new database");
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "all {} tables copied and checked. Start edgefleet with --database-url {to} and the same secret key.",
                report.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
