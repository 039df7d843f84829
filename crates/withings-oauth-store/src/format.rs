//! The file's JSON layout, format 2 (versioned entries), and the reading of format 1 files
//! written by earlier versions, whose entries all get version 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use withings_oauth::{StoredCredentials, UserId, Version, VersionedMap, json_error_reason};

/// The version of the file layout this crate writes.
pub const FILE_FORMAT: u32 = 2;

/// The layout of earlier versions, read and migrated on the next write.
const FORMAT_WITHOUT_VERSIONS: u32 = 1;

/// Every user of the file, with the last version the file gave out.
pub(crate) type Users = VersionedMap<Record>;

pub(crate) enum Record {
    Credentials(StoredCredentials),
    LoginRequired,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn<'a> {
    format: u32,
    #[serde(default)]
    last_version: Option<u64>,
    #[serde(borrow)]
    users: BTreeMap<String, &'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn<'a> {
    version: u64,
    #[serde(default, borrow)]
    credentials: Option<&'a RawValue>,
    #[serde(default)]
    login_required: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LoginRequiredV1 {
    login_required: bool,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    last_version: u64,
    users: BTreeMap<u64, EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<&'a StoredCredentials>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    login_required: bool,
}

/// Parses the file; the error is a reason that never quotes the content.
pub(crate) fn parse(bytes: &[u8]) -> Result<Users, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    if text.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    let file: FileIn<'_> =
        serde_json::from_str(text).map_err(|e| json_error_reason("the file", &e))?;
    let versioned = match file.format {
        FILE_FORMAT => true,
        FORMAT_WITHOUT_VERSIONS => false,
        other => {
            return Err(format!(
                "it has format {other}, and this version reads formats {FORMAT_WITHOUT_VERSIONS} and {FILE_FORMAT}: use the program version that wrote it"
            ));
        }
    };
    let mut users = Users::new();
    for (key, raw) in file.users {
        let user: UserId = key
            .parse()
            .map_err(|_| "a key of \"users\" is not a user id".to_owned())?;
        let (version, record) = if versioned {
            parse_entry(user, raw)?
        } else {
            (Version::FIRST, parse_record_v1(user, raw)?)
        };
        users.restore(user, version, record);
    }
    if versioned {
        let last = file
            .last_version
            .ok_or_else(|| "missing field `last_version`".to_owned())?;
        if !users.restore_last_version(last) {
            return Err("last_version is lower than a user's version".to_owned());
        }
    }
    Ok(users)
}

fn parse_entry(user: UserId, raw: &RawValue) -> Result<(Version, Record), String> {
    let entry: EntryIn<'_> = serde_json::from_str(raw.get())
        .map_err(|e| json_error_reason(&format!("user {user}"), &e))?;
    if entry.version == 0 {
        return Err(format!("user {user}: version 0 is not a version"));
    }
    let record = match (entry.credentials, entry.login_required) {
        (Some(credentials), false) => Record::Credentials(parse_credentials(user, credentials)?),
        (None, true) => Record::LoginRequired,
        _ => {
            return Err(format!(
                "user {user}: an entry holds either credentials or login_required"
            ));
        }
    };
    Ok((Version::new(entry.version), record))
}

fn parse_record_v1(user: UserId, raw: &RawValue) -> Result<Record, String> {
    if let Ok(marker) = serde_json::from_str::<LoginRequiredV1>(raw.get()) {
        if !marker.login_required {
            return Err(format!("user {user}: login_required is false"));
        }
        return Ok(Record::LoginRequired);
    }
    parse_credentials(user, raw).map(Record::Credentials)
}

fn parse_credentials(user: UserId, raw: &RawValue) -> Result<StoredCredentials, String> {
    let stored: StoredCredentials = serde_json::from_str(raw.get())
        .map_err(|e| json_error_reason(&format!("user {user}"), &e))?;
    if stored.user_id != user {
        return Err(format!(
            "user {user}: the entry holds the tokens of user {}",
            stored.user_id
        ));
    }
    Ok(stored)
}

pub(crate) fn serialize(users: &Users) -> Vec<u8> {
    let out = FileOut {
        format: FILE_FORMAT,
        last_version: users.last_version(),
        users: users
            .iter()
            .map(|(user, version, record)| {
                let (credentials, login_required) = match record {
                    Record::Credentials(stored) => (Some(stored), false),
                    Record::LoginRequired => (None, true),
                };
                let out = EntryOut {
                    version: version.get(),
                    credentials,
                    login_required,
                };
                (user.get(), out)
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&out).expect("maps with integer keys serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, Utc};
    use withings_oauth::Expected;

    fn stored(user: u64, refresh: &str) -> StoredCredentials {
        serde_json::from_value(serde_json::json!({
            "format": 1,
            "user_id": user,
            "access_token": format!("access-{refresh}"),
            "refresh_token": refresh,
            "expires_at": Utc::now() + TimeDelta::hours(3),
            "scopes": "user.metrics",
            "token_type": "Bearer",
        }))
        .unwrap()
    }

    #[test]
    fn a_format_1_file_reads_with_every_entry_at_version_1() {
        let text = serde_json::json!({
            "format": 1,
            "users": { "1001": stored(1001, "r1"), "1002": { "login_required": true } },
        })
        .to_string();
        let users = parse(text.as_bytes()).unwrap();
        assert_eq!(users.last_version(), 1);
        assert!(users.iter().all(|(_, v, _)| v == Version::FIRST));
        assert!(matches!(
            users.get(UserId::new(1002)),
            Some((_, Record::LoginRequired))
        ));
        let again = parse(&serialize(&users)).unwrap();
        assert_eq!(again.last_version(), 1);
        assert!(matches!(
            again.get(UserId::new(1001)),
            Some((_, Record::Credentials(c))) if c.refresh_token == "r1"
        ));
    }

    #[test]
    fn versions_and_the_last_version_round_trip() {
        let mut users = Users::new();
        let none = |_, _: &Record| None;
        let v1 = users
            .write(
                UserId::new(5),
                Expected::Absent,
                Some(Record::Credentials(stored(5, "r"))),
                none,
            )
            .unwrap();
        users
            .write(UserId::new(5), Expected::Version(v1), None, none)
            .unwrap();
        let back = parse(&serialize(&users)).unwrap();
        assert!(back.is_empty());
        assert_eq!(
            back.last_version(),
            2,
            "a delete still counts: versions never come back"
        );
    }

    #[test]
    fn damaged_entries_are_named_never_quoted() {
        for (text, reason) in [
            (
                r#"{"format":2,"last_version":3,"users":{"5":{"version":0,"login_required":true}}}"#,
                "user 5: version 0 is not a version",
            ),
            (
                r#"{"format":2,"last_version":1,"users":{"5":{"version":3,"login_required":true}}}"#,
                "last_version is lower than a user's version",
            ),
            (r#"{"format":2,"users":{}}"#, "missing field `last_version`"),
            (
                r#"{"format":2,"last_version":3,"users":{"5":{"version":2}}}"#,
                "user 5: an entry holds either credentials or login_required",
            ),
            (r#"{"format":3,"users":{}}"#, "it has format 3"),
        ] {
            let err = parse(text.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{text}"));
            assert!(err.contains(reason), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_any_bytes_never_panics_nor_quotes_them(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Err(reason) = parse(&bytes) {
                let text = String::from_utf8_lossy(&bytes);
                for token in text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| t.len() >= 12) {
                    proptest::prop_assert!(!reason.contains(token), "{reason}");
                }
            }
        }

        #[test]
        fn parsing_json_like_text_never_panics(text in r#"\{"format":[12],("last_version":[0-9]{1,3},)?"users":\{("[0-9]{1,4}":(\{"version":[0-9],"login_required":(true|false)\}|\{"login_required":(true|false)\}|\{\}|null|\[\]|"x"),?){0,3}\}\}?"#) {
            let _ = parse(text.as_bytes());
        }
    }
}
