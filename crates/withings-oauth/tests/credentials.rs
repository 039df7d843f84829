//! Storing credentials: what [`Credentials::reveal_for_storage`] writes comes back unchanged, and
//! damaged stored credentials get a typed error instead of a login that fails later.

use chrono::DateTime;
use proptest::prelude::*;
use withings_oauth::{
    Credentials, Scope, Scopes, StoredCredentials, StoredCredentialsError, UserId,
};

fn scopes() -> impl Strategy<Value = Scopes> {
    let known = prop_oneof![
        Just(Scope::Info),
        Just(Scope::Metrics),
        Just(Scope::Activity),
        Just(Scope::SleepEvents),
        "user\\.[a-z_-]{1,15}".prop_map(|s| s.parse::<Scope>().unwrap()),
    ];
    proptest::collection::vec(known, 0..6).prop_map(|v| v.into_iter().collect())
}

fn stored(
    user: u64,
    access: String,
    refresh: String,
    seconds: i64,
    nanos: u32,
    scopes: Scopes,
) -> StoredCredentials {
    StoredCredentials {
        format: StoredCredentials::FORMAT,
        user_id: UserId::new(user),
        access_token: access,
        refresh_token: refresh,
        expires_at: DateTime::from_timestamp(seconds, nanos).expect("in chrono's range"),
        scopes,
        token_type: "Bearer".to_owned(),
    }
}

proptest! {
    #[test]
    fn stored_credentials_round_trip_through_json(
        user: u64,
        access in "[!-~]{1,200}",
        refresh in "[!-~]{1,200}",
        // Roughly chrono's whole range: years -262000 to 262000.
        seconds in -8_200_000_000_000i64..8_200_000_000_000,
        nanos in 0u32..1_000_000_000,
        scopes in scopes(),
    ) {
        let original = Credentials::from_stored(stored(user, access.clone(), refresh.clone(), seconds, nanos, scopes.clone()))
            .expect("printable tokens are accepted");
        let text = serde_json::to_string(&original.reveal_for_storage()).unwrap();
        let back: StoredCredentials = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let restored = Credentials::from_stored(back).expect("what was written is read back");

        prop_assert_eq!(restored.user_id(), original.user_id());
        prop_assert_eq!(restored.expires_at(), original.expires_at());
        prop_assert_eq!(restored.scopes(), &scopes);
        prop_assert_eq!(restored.token_type(), "Bearer");
        let again = restored.reveal_for_storage();
        prop_assert_eq!(again.access_token, access);
        prop_assert_eq!(again.refresh_token, refresh);
    }

    #[test]
    fn damaged_tokens_are_refused_by_name(
        good in "[!-~]{1,40}",
        bad in prop_oneof![
            Just(String::new()),
            "[!-~]{0,10}[ \t\n\u{0}\u{7f}é€][!-~]{0,10}",
            "[!-~]{4097,4100}",
        ],
        damage_refresh: bool,
    ) {
        let (access, refresh) = if damage_refresh { (good, bad) } else { (bad, good) };
        let err = Credentials::from_stored(stored(1, access, refresh, 0, 0, Scopes::all()))
            .expect_err("a damaged token is refused");
        let which = if damage_refresh { "refresh token" } else { "access token" };
        prop_assert_eq!(&err, &StoredCredentialsError::InvalidToken(which));
        prop_assert!(err.to_string().contains("log in again"), "{}", err);
    }
}

#[test]
fn another_format_is_refused_with_its_number() {
    let mut s = stored(1, "a".into(), "r".into(), 0, 0, Scopes::all());
    s.format = 2;
    let err = Credentials::from_stored(s).unwrap_err();
    assert_eq!(err, StoredCredentialsError::UnsupportedFormat(2));
    assert!(err.to_string().contains("format 2"), "{err}");
}

#[test]
fn the_stored_form_is_plain_json_with_a_string_or_numeric_user_id() {
    let text = r#"{"format":1,"user_id":"12345678","access_token":"a075","refresh_token":"f631",
        "expires_at":"2026-11-28T17:00:00Z","scopes":"user.metrics,user.activity","token_type":"Bearer"}"#;
    let stored: StoredCredentials = serde_json::from_str(text).unwrap();
    let credentials = Credentials::from_stored(stored).unwrap();
    assert_eq!(credentials.user_id().get(), 12345678);
    assert!(credentials.scopes().contains(&Scope::Activity));
    let written = serde_json::to_value(credentials.reveal_for_storage()).unwrap();
    assert_eq!(written["user_id"], serde_json::json!(12345678));
    assert_eq!(written["scopes"], "user.metrics,user.activity");
    assert_eq!(written["expires_at"], "2026-11-28T17:00:00Z");
}
