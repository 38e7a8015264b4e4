//! `testbed gateway|demo|bench|iam-roles`: the bed's long-running gateway, the demo, the benchmark
//! and the roles the bed's moto enforces.

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
    /// Run the demo against a running bed (`make demo` starts it).
    Demo,
    /// Print, as JSON, the actions of every role both templates deploy (bed.sh hands them to moto).
    IamRoles,
    /// Benchmark release binaries under the local Lambda Runtime API (`make bench`).
    Bench {
        /// Directory holding `<function>/bootstrap` (cargo-lambda's layout) or `<function>`.
        #[arg(long, default_value = "target/lambda/x86_64")]
        bin_dir: std::path::PathBuf,
        #[arg(long = "function", default_value = "interruption-handler")]
        functions: Vec<String>,
        #[arg(long, default_value_t = 20)]
        cold_starts: usize,
        #[arg(long, default_value_t = 100)]
        warm_invocations: usize,
        /// Seeded account of the scheduled functions' benchmark.
        #[arg(long, default_value_t = 10_000)]
        snapshots: usize,
        #[arg(long, default_value_t = 1_000)]
        volumes: usize,
        #[arg(long, default_value_t = 100)]
        amis: usize,
        #[arg(long, default_value_t = 200)]
        eips: usize,
        #[arg(long, default_value_t = 2_000)]
        instances: usize,
        /// Cloud Custodian's `custodian` executable, for the side-by-side scan.
        #[arg(long)]
        custodian: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gateway { listen, moto } => testbed::gateway::serve(&listen, &moto).await,
        Command::Demo => testbed::demo::run().await,
        Command::IamRoles => {
            println!(
                "{}",
                serde_json::to_string_pretty(&testbed::iam::bed_roles()?)?
            );
            Ok(())
        }
        Command::Bench {
            bin_dir,
            functions,
            cold_starts,
            warm_invocations,
            snapshots,
            volumes,
            amis,
            eips,
            instances,
            custodian,
        } => {
            let sizes = testbed::bench_governance::Sizes {
                snapshots,
                volumes,
                amis,
                eips,
                instances,
            };
            let options = testbed::bench::Options {
                bin_dir,
                functions,
                cold_starts,
                warm_invocations,
                sizes,
                custodian,
            };
            testbed::bench::run(options).await
        }
    }
}
