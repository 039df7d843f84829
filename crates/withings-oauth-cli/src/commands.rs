//! The commands: settings in, text out. Data for scripts goes to stdout, everything else to
//! stderr, so `$(withings-oauth token)` holds only the token.

use chrono::Utc;
use secrecy::ExposeSecret;
use withings_oauth::{Scopes, UserId};

use crate::agent;
use crate::cli::LoginArgs;
use crate::error::CliError;
use crate::ops;
use crate::settings::Settings;
use crate::store::Store;

fn open_store(settings: &Settings) -> Result<Store, CliError> {
    Ok(Store::open(settings.store_path()?))
}

fn parse_scopes(args: &LoginArgs) -> Result<Scopes, CliError> {
    let mut scopes = Scopes::empty();
    for s in args
        .scopes
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        scopes.insert(
            s.parse()
                .map_err(|e| CliError::config(format!("--scope: {e}")))?,
        );
    }
    if scopes.is_empty() {
        return Err(CliError::config(
            "no scope given: pass --scope user.metrics (or user.info, user.activity, user.sleepevents)",
        ));
    }
    Ok(scopes)
}

pub(crate) async fn login(settings: &Settings, args: &LoginArgs) -> Result<(), CliError> {
    let scopes = parse_scopes(args)?;
    let client = settings.client()?;
    let store = open_store(settings)?;
    // A store that can't be read would lose the login after the user went through it.
    store.users()?;
    let (agent, spinner) = agent::choose(args, &client)?;
    let result = ops::log_in(&client, scopes, args.demo, agent.as_ref(), &store).await;
    spinner.finish();
    let (credentials, missing) = result?;
    println!(
        "Logged in user {} with scopes {}.",
        credentials.user_id(),
        credentials.scopes()
    );
    println!("Credentials saved to {}.", store.path().display());
    if !missing.is_empty() {
        eprintln!(
            "warning: Withings did not grant {missing}: calls that need it will be refused; log in again and allow it if you need it"
        );
    }
    Ok(())
}

pub(crate) fn status(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings)?;
    let users: Vec<UserId> = match settings.user {
        Some(_) => vec![store.select_user(settings.user)?],
        None => store.users()?,
    };
    if users.is_empty() {
        return Err(store.select_user(None).unwrap_err());
    }
    let now = Utc::now();
    println!("store: {}", store.path().display());
    for user in users {
        let credentials = ops::stored(&store, user)?;
        println!("user {user}");
        println!("  scopes: {}", credentials.scopes());
        let expiry = ops::describe_expiry(credentials.expires_at(), now);
        if credentials.expires_within(ops::REFRESH_MARGIN, now) {
            println!(
                "  access token: {expiry}; `withings-oauth token` or `refresh` gets a new one"
            );
        } else {
            println!("  access token: {expiry}");
        }
    }
    Ok(())
}

pub(crate) async fn token(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings)?;
    let user = store.select_user(settings.user)?;
    let client = settings.client()?;
    let (token, _) = ops::access_token(&client, &store, user, Utc::now()).await?;
    println!("{}", token.expose_secret());
    Ok(())
}

pub(crate) async fn refresh(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings)?;
    let user = store.select_user(settings.user)?;
    let client = settings.client()?;
    let fresh = ops::refresh(&client, &store, user).await?;
    println!(
        "Refreshed user {user}: access token {}.",
        ops::describe_expiry(fresh.expires_at(), Utc::now())
    );
    Ok(())
}

pub(crate) async fn revoke(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings)?;
    let user = store.select_user(settings.user)?;
    let client = settings.client()?;
    ops::revoke(&client, &store, user).await?;
    println!("Revoked the app's access to user {user}'s data and deleted the local credentials.");
    Ok(())
}

pub(crate) fn logout(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings)?;
    let user = store.select_user(settings.user)?;
    store.remove(user)?;
    println!(
        "Deleted the local credentials of user {user}. Withings still allows the app access: `withings-oauth revoke` withdraws it."
    );
    Ok(())
}
