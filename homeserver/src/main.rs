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
    /// Create an account directly in the database (no server needed).
    /// Without --password or --password-file, the password is read from
    /// standard input.
    RegisterUser {
        /// The localpart: `alice` for @alice:<server.name>.
        localpart: String,
        /// The password (visible to other local users in the process list;
        /// prefer --password-file or standard input).
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
    },
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
    if let Command::RegisterUser {
        localpart,
        password,
        password_file,
        admin,
    } = command
    {
        use myelin_homeserver::commands::{PasswordSource, register_user};
        let source = match (password, password_file) {
            (Some(p), _) => PasswordSource::Literal(p),
            (None, Some(f)) => PasswordSource::File(f),
            (None, None) => PasswordSource::Stdin,
        };
        return match runtime.block_on(register_user(&config, &localpart, source, admin)) {
            Ok(user_id) => {
                println!(
                    "registered {user_id}{}",
                    if admin { " (admin)" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("myelin: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
