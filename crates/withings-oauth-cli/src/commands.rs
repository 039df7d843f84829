//! The commands: settings in, text out. Data for scripts goes to stdout, everything else to
//! stderr, so `$(withings-oauth token)` holds only the token.

use chrono::Utc;
use withings_oauth::StoredEntry;
use withings_oauth::{DEFAULT_MARGIN, Session};
use withings_oauth::{Scopes, UserId};

use crate::agent;
use crate::cli::{LoginArgs, LogoutArgs};
use crate::error::CliError;
use crate::ops;
use crate::out::{note, say};
use crate::settings::Settings;
use crate::store::Store;

async fn open_store(settings: &Settings) -> Result<Store, CliError> {
    Store::open_setting(settings.store_path()?).await
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
    let store = open_store(settings).await?;
    // A store that can't be read would lose the login after the user went through it.
    store.users().await?;
    let (agent, spinner) = agent::choose(args, &client)?;
    let result = ops::log_in(&client, scopes, args.demo, agent.as_ref(), &store).await;
    spinner.finish();
    let (session, missing) = result?;
    let status = session.status();
    say!(
        "Logged in user {} with scopes {}.",
        status.user_id,
        status.scopes
    )?;
    store.close().await;
    say!("Credentials saved to {}.", store.location())?;
    if !missing.is_empty() {
        note!(
            "warning: Withings did not grant {missing}: calls that need it will be refused; log in again and allow it if you need it"
        );
    }
    Ok(())
}

/// Shows every stored user (or the one chosen with `--user`); exit code 3 if one of them
/// must log in again.
pub(crate) async fn status(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings).await?;
    let users: Vec<UserId> = match settings.user {
        Some(_) => vec![store.select_user(settings.user).await?],
        None => store.users().await?,
    };
    if users.is_empty() {
        store.select_user(None).await?;
    }
    let now = Utc::now();
    say!("store: {}", store.location())?;
    let mut dead = Vec::new();
    for user in users {
        say!("user {user}")?;
        match store.load(user).await? {
            Some(StoredEntry::Credentials(credentials)) => {
                say!("  scopes: {}", credentials.scopes())?;
                let expiry = ops::describe_expiry(credentials.expires_at(), now);
                if credentials.expires_within(DEFAULT_MARGIN, now) {
                    say!(
                        "  access token: {expiry}; `withings-oauth token` or `refresh` gets a new one"
                    )?;
                } else {
                    say!("  access token: {expiry}")?;
                }
            }
            other => {
                say!(
                    "  login required: {}",
                    ops::login_required_reason(other.as_ref())
                )?;
                dead.push(user.to_string());
            }
        }
    }
    if dead.is_empty() {
        Ok(())
    } else {
        Err(CliError::login_required(format!(
            "user {} must log in again: run `withings-oauth login`",
            dead.join(", ")
        )))
    }
}

async fn selected_session(settings: &Settings) -> Result<(Store, Session), CliError> {
    let store = open_store(settings).await?;
    let user = store.select_user(settings.user).await?;
    let client = settings.client()?;
    let session = ops::session(&client, &store, user).await?;
    Ok((store, session))
}

pub(crate) async fn token(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings).await?;
    let user = store.select_user(settings.user).await?;
    // Scripts call `token` often and it is nearly always fresh. Building the client costs more
    // than the rest of the command together (its TLS setup reads every root certificate), so
    // only a refresh, which needs the network, pays for it.
    settings.require_client()?;
    if let Some(StoredEntry::Credentials(credentials)) = store.load(user).await?
        && !credentials.expires_within(DEFAULT_MARGIN, Utc::now())
    {
        say!("{}", credentials.access_token().expose_secret())?;
        return Ok(());
    }
    let client = settings.client()?;
    let session = ops::session(&client, &store, user).await?;
    let token = match session.access_token().await {
        Ok(token) => Ok(token),
        Err(e) => Err(ops::session_error_in(&store, e).await),
    };
    store.close().await;
    say!("{}", token?.expose_secret())?;
    Ok(())
}

pub(crate) async fn refresh(settings: &Settings) -> Result<(), CliError> {
    let (store, session) = selected_session(settings).await?;
    let refreshed = match session.refresh().await {
        Ok(refreshed) => Ok(refreshed),
        Err(e) => Err(ops::session_error_in(&store, e).await),
    };
    store.close().await;
    refreshed?;
    let status = session.status();
    say!(
        "Refreshed user {}: access token {}.",
        status.user_id,
        ops::describe_expiry(status.expires_at, Utc::now())
    )?;
    Ok(())
}

pub(crate) async fn revoke(settings: &Settings) -> Result<(), CliError> {
    let (store, session) = selected_session(settings).await?;
    let user = session.user_id();
    let revoked = match session.revoke().await {
        Ok(revoked) => Ok(revoked),
        Err(e) => Err(ops::session_error_in(&store, e).await),
    };
    store.close().await;
    revoked?;
    say!("Revoked the app's access to user {user}'s data and deleted the local credentials.")?;
    Ok(())
}

pub(crate) async fn logout(settings: &Settings, args: &LogoutArgs) -> Result<(), CliError> {
    let store = open_store(settings).await?;
    let user = store.select_user(settings.user).await?;
    let deleted = store.delete(user, args.force).await;
    store.close().await;
    deleted?;
    say!(
        "Deleted the local credentials of user {user}. Withings still allows the app access: `withings-oauth revoke` withdraws it."
    )?;
    Ok(())
}

/// `store migrate-from FILE`: copies every login of a `tokens.json` into the database
/// `--store` names. Users the database already has are left as they are; the file is not
/// changed.
#[cfg(feature = "sql")]
pub(crate) async fn store_migrate_from(
    settings: &Settings,
    file: &std::path::Path,
) -> Result<(), CliError> {
    use withings_oauth::{Expected, StoreError, TokenStore};

    let target = open_store(settings).await?;
    let sql = target.sql()?;
    if !file.exists() {
        return Err(CliError::config(format!(
            "{} does not exist: give the path of a withings-oauth tokens.json",
            file.display()
        )));
    }
    let source =
        withings_oauth_store::FileStore::open(file).map_err(|e| crate::store::store_error(&e))?;
    let (mut copied, mut kept) = (0usize, Vec::new());
    for user in source
        .users()
        .await
        .map_err(|e| crate::store::store_error(&e))?
    {
        let Some(entry) = source
            .load(user)
            .await
            .map_err(|e| crate::store::store_error(&e))?
        else {
            continue;
        };
        let written = match &entry.entry {
            StoredEntry::Credentials(credentials) => sql
                .save(user, credentials, Expected::Absent)
                .await
                .map(drop),
            StoredEntry::LoginRequired => sql
                .mark_login_required(user, Expected::Absent)
                .await
                .map(drop),
        };
        match written {
            Ok(()) => copied += 1,
            Err(StoreError::Conflict(_)) => kept.push(user.to_string()),
            Err(e) => return Err(crate::store::store_error(&e)),
        }
    }
    say!(
        "Copied {copied} login(s) from {} into {}.",
        file.display(),
        target.location()
    )?;
    if !kept.is_empty() {
        note!(
            "the database already had user {}: kept its login, not the file's",
            kept.join(", ")
        );
    }
    note!(
        "{} was left as it was: delete it once the database works for you (it holds tokens).",
        file.display()
    );
    Ok(())
}

/// `store rotate-key`: re-encrypts every row with the active key of `WITHINGS_STORE_KEYS`.
#[cfg(feature = "sql")]
pub(crate) async fn store_rotate_key(settings: &Settings) -> Result<(), CliError> {
    let store = open_store(settings).await?;
    let rotation = store
        .sql()?
        .rotate_keys()
        .await
        .map_err(|e| crate::store::store_error(&e))?;
    say!(
        "Re-encrypted {} row(s) of {} with key {}.",
        rotation.rewritten,
        store.location(),
        rotation.active
    )?;
    report_key_use(&rotation)
}

/// `store encrypt`: seals the logins of a database used without keys until now.
#[cfg(feature = "sql")]
pub(crate) async fn store_encrypt(settings: &Settings) -> Result<(), CliError> {
    let path = settings.store_path()?;
    let Some(url) = crate::store::database_url(&path) else {
        return Err(CliError::config(format!(
            "the store {} is a file; this command works on a database: set --store or WITHINGS_STORE to sqlite:///path/tokens.db or postgres://user@host/db",
            path.display()
        )));
    };
    let options =
        withings_oauth_sql::SqlOptions::from_env().map_err(|e| CliError::config(e.to_string()))?;
    let sealing = withings_oauth_sql::SqlStore::encrypt_clear_rows(url, options)
        .await
        .map_err(|e| crate::store::store_error(&e))?;
    say!(
        "Encrypted {} login(s) with key {}: from now on the database refuses programs without its keys.",
        sealing.rewritten,
        sealing.active
    )?;
    report_key_use(&sealing)
}

/// What each key seals after a sweep, as the database counted it; an error unless every login
/// uses the active key.
#[cfg(feature = "sql")]
fn report_key_use(rotation: &withings_oauth_sql::Rotation) -> Result<(), CliError> {
    for (key, rows) in &rotation.rows_by_key {
        note!("key {key}: {rows} login(s)");
    }
    if rotation.clear_rows > 0 {
        note!("in clear text: {} login(s)", rotation.clear_rows);
    }
    if rotation.complete() {
        note!(
            "Every login uses key {}: the other keys may be removed from WITHINGS_STORE_KEYS.",
            rotation.active
        );
        return Ok(());
    }
    let users: Vec<String> = rotation
        .unreadable
        .iter()
        .map(ToString::to_string)
        .collect();
    Err(CliError::store(format!(
        "not every login uses key {} yet (counted above): the logins of user(s) {} could not be opened with the loaded keys and were left as they are; add their key to WITHINGS_STORE_KEYS (after the active one) and run `withings-oauth store rotate-key` again, or remove them with `withings-oauth logout --force --user <id>`",
        rotation.active,
        if users.is_empty() {
            "-".to_owned()
        } else {
            users.join(", ")
        }
    )))
}
