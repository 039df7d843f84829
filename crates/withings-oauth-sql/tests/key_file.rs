//! The key file named by `WITHINGS_STORE_KEYS_FILE` is a secret: one that group or others can
//! read or change is refused, with the command that fixes it.

use withings_oauth_sql::{KeyError, Keyring};

const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

#[cfg(unix)]
fn with_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_or_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, KEY).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o666] {
        with_mode(&path, mode);
        let error = Keyring::from_file(&path).unwrap_err();
        assert!(
            matches!(&error, KeyError::FileOpenToOthers { path: p } if *p == path),
            "mode {mode:o}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("other users can read or change it")
                && message.contains(&format!("run `chmod 600 {}`", path.display())),
            "{message}"
        );
        assert!(!message.contains("AAEC"), "{message}");
    }
    for mode in [0o600, 0o400] {
        with_mode(&path, mode);
        assert_eq!(Keyring::from_file(&path).unwrap().active_id(), "k1");
    }
}
