//! `ordo-bench`: load generators for Ordo. Every benchmark measures a raw-database
//! baseline in the same run and prints a table, then one JSON line with all figures.

// Fixed benchmark inputs (a SKU, a quantity) are valid by construction.
#![allow(clippy::expect_used)]

mod append;
mod commands;
mod http;
mod phase;
mod raw;
mod rebuild;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ordo-bench", about = "Benchmarks for Ordo, each beside a raw-database baseline")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Event-store appends vs raw single-row INSERTs.
    Append(append::Args),
    /// Commands through the command handler (no HTTP) vs raw single-row INSERTs.
    Commands(commands::Args),
    /// Rebuilding the order read model from scratch vs a raw scan-and-upsert ceiling,
    /// and the live projection lag under load.
    Rebuild(rebuild::Args),
    /// The real server (`ordo serve`) under an order workflow mix over HTTP, beside
    /// the same mix in-process and raw single-row INSERTs: maximum rate, open-loop
    /// latency at 50 % and 80 % of it, load shedding at 2x, server memory.
    Http(http::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Append(args) => append::run(args).await,
        Bench::Commands(args) => commands::run(args).await,
        Bench::Rebuild(args) => rebuild::run(args).await,
        Bench::Http(args) => http::run(args).await,
    }
}
