//! `testbed gateway|demo|bench`: the bed's long-running gateway, the demo and the benchmark.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Local AWS test bed for the Spot optimizer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bed's single endpoint: Lambda invocations run our binaries, the rest goes to moto.
    Gateway {
        #[arg(long, default_value = "127.0.0.1:5100")]
        listen: String,
        #[arg(long, default_value = "http://127.0.0.1:5101")]
        moto: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gateway { listen, moto } => testbed::gateway::serve(&listen, &moto).await,
    }
}
