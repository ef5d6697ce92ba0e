//! The `myelin` command: run the homeserver and the operator's tasks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use myelin_homeserver::config::{Config, DEFAULT_CONFIG};

#[derive(Parser)]
#[command(name = "myelin", version, about = "A Matrix homeserver")]
struct Cli {
    /// Configuration file (TOML). Defaults apply to every key it leaves out;
    /// MYELIN__SECTION__KEY environment variables override both.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the documented default configuration.
    GenerateConfig {
        /// Write it to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check the configuration and exit.
    CheckConfig,
    /// Bring the database schema up to date and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::GenerateConfig { output } = &command {
        return match output {
            None => {
                print!("{DEFAULT_CONFIG}");
                ExitCode::SUCCESS
            }
            Some(path) => match std::fs::write(path, DEFAULT_CONFIG) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("myelin: cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            },
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("myelin: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = command {
        println!(
            "configuration is valid: server {} on {}, database {}",
            config.server.name,
            config.listen.client,
            if config.database_url().starts_with("sqlite") {
                "SQLite"
            } else {
                "PostgreSQL"
            }
        );
        return ExitCode::SUCCESS;
    }
    myelin_homeserver::telemetry::init(&config.logging);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("myelin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Migrate => myelin_homeserver::server::prepare(config).await.map(|_| ()),
            _ => myelin_homeserver::server::serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("myelin: {e}");
            ExitCode::FAILURE
        }
    }
}
