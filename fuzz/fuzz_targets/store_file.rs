//! A credential store file, as `FileStore` reads it: whatever is on disk (damaged, hand-edited,
//! written by another version) gives entries or a `Corrupt` error, never a panic.
//!
//! Properties: an entry is the entry of the user it was asked for, or an error that names the
//! user; credentials read from the
//! file are saved and read back unchanged; no error message or `Debug` quotes a value of the
//! file (they may be tokens).

#![no_main]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use withings_oauth::{Expected, StoreError, StoredEntry, TokenStore};
use withings_oauth_store::FileStore;

struct Fixture {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    file: PathBuf,
    copy: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // tempdir() makes the directory with mode 0700, as the store wants.
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            file: dir.path().join("tokens.json"),
            copy: dir.path().join("copy.json"),
            _dir: dir,
        }
    })
}

/// String values of the file (not keys), long enough to be tokens.
fn values(v: &serde_json::Value, keys: &mut Vec<String>, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if s.len() >= 12 => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| values(x, keys, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                keys.push(k.clone());
                values(x, keys, out);
            }
        }
        _ => {}
    }
}

fn check_quiet(text: &str, secrets: &[String], keys: &[String]) {
    for s in secrets {
        if !keys.iter().any(|k| k.contains(s.as_str())) {
            assert!(
                !text.contains(s.as_str()),
                "a store message quotes the file: {text}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = std::fs::remove_file(&f.copy);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&f.file)
        .unwrap();
    file.write_all(data).unwrap();
    drop(file);

    let (mut keys, mut secrets) = (Vec::new(), Vec::new());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        values(&v, &mut keys, &mut secrets);
    }

    let store = FileStore::open(&f.file).unwrap();
    let copy = FileStore::open(&f.copy).unwrap();
    f.rt.block_on(async {
        let users = match store.users().await {
            Ok(users) => users,
            Err(e) => {
                check_quiet(&e.to_string(), &secrets, &keys);
                check_quiet(&format!("{e:?}"), &secrets, &keys);
                return;
            }
        };
        assert!(
            users.windows(2).all(|w| w[0] < w[1]),
            "users are not in ascending order"
        );
        for user in users {
            // The file parses, but one user's entry may still be unusable (a damaged token):
            // that user's load says so, without quoting the file.
            let entry = match store.load(user).await {
                Ok(entry) => entry,
                Err(e @ StoreError::Corrupt { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("user {user}")), "{text}");
                    check_quiet(&text, &secrets, &keys);
                    check_quiet(&format!("{e:?}"), &secrets, &keys);
                    continue;
                }
                Err(e) => panic!("loading a listed user failed: {e}"),
            };
            match entry.map(|e| e.entry) {
                Some(StoredEntry::Credentials(c)) => {
                    assert_eq!(c.user_id(), user, "loaded another user's tokens");
                    assert!(!format!("{c:?}").contains(c.access_token().expose_secret()));
                    copy.save(user, &c, Expected::Absent)
                        .await
                        .expect("loaded credentials can't be saved");
                    let Some(StoredEntry::Credentials(back)) =
                        copy.load(user).await.unwrap().map(|e| e.entry)
                    else {
                        panic!("saved credentials did not read back");
                    };
                    assert_eq!(
                        back.access_token().expose_secret(),
                        c.access_token().expose_secret()
                    );
                    assert_eq!(
                        back.reveal_for_storage().refresh_token,
                        c.reveal_for_storage().refresh_token
                    );
                    assert_eq!(back.expires_at(), c.expires_at());
                    assert!(back.scopes().same_set(c.scopes()));
                }
                Some(StoredEntry::LoginRequired) => {}
                None => panic!("user {user} is listed but has no entry"),
            }
        }
    });
});
