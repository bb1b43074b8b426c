//! Drops the `ef_test_*` databases the PostgreSQL test runs made (`EDGEFLEET_TEST_POSTGRES`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("EDGEFLEET_TEST_POSTGRES")?;
    let dropped = store::testing::drop_test_databases(&base).await?;
    println!("dropped {dropped} test databases");
    Ok(())
}
