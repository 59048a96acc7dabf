use clap::Parser as _;
use crabpot_agent::AgentArgs;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = AgentArgs::parse();
    if args.check_config {
        return crabpot_agent::check_config(&args);
    }
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|error| {
        eprintln!("invalid --log filter `{}`: {error}; using `info`", args.log);
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match crabpot_agent::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
