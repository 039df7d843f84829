//! `withings-oauth`: log in to Withings from a terminal, keep the tokens fresh, and hand a valid
//! access token to scripts. `withings-oauth demo` shows the whole flow offline.

mod agent;
mod cli;
mod commands;
mod demo;
mod error;
mod fleet;
mod ops;
mod out;
mod service;
mod settings;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Kind};
use crate::out::note;
use crate::settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A login waits on a browser, a listener and the terminal at once; the other commands make
    // at most a few requests in a row, and starting worker threads would be most of the time
    // `token` takes.
    let mut builder = match cli.command {
        Command::Login(_) | Command::Demo(_) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.kind() != Kind::StdoutClosed {
                note!("error: {e}");
            }
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    if let (Command::Fleet(_), Some(user)) = (&cli.command, global.user) {
        return Err(CliError::config(format!(
            "the fleet commands act on every user of the store, not on one: drop --user {user} (or use `status`, `token` or `refresh` for one user)"
        )));
    }
    let settings = move || Settings::load(global);
    match cli.command {
        // The demo reads none of the user's settings and never touches their store.
        Command::Demo(args) => demo::run(&args).await,
        Command::Login(args) => commands::login(&settings()?, &args).await,
        Command::Status => commands::status(&settings()?).await,
        Command::Token => commands::token(&settings()?).await,
        Command::Refresh => commands::refresh(&settings()?).await,
        Command::Revoke => commands::revoke(&settings()?).await,
        Command::Logout(args) => commands::logout(&settings()?, &args).await,
        Command::Fleet(cli::FleetCommand::Status(args)) => fleet::status(&settings()?, &args).await,
        Command::Fleet(cli::FleetCommand::Sweep(args)) => fleet::sweep(&settings()?, &args).await,
        #[cfg(feature = "sql")]
        Command::Store(cli::StoreCommand::MigrateFrom { file }) => {
            commands::store_migrate_from(&settings()?, &file).await
        }
        #[cfg(feature = "sql")]
        Command::Store(cli::StoreCommand::RotateKey) => {
            commands::store_rotate_key(&settings()?).await
        }
        #[cfg(feature = "sql")]
        Command::Store(cli::StoreCommand::Encrypt) => commands::store_encrypt(&settings()?).await,
    }
}
