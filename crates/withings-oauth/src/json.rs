//! Reading untrusted JSON: Withings' loose scalars (numbers sent as strings, flags as `0`/`1`)
//! and serde errors turned into reasons that never quote a value.

use serde::{Deserialize, Deserializer};

/// A JSON scalar as Withings may send it: a boolean, a number, or a string of digits.
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose {
    Bool(bool),
    Number(u64),
    Signed(i64),
    Text(String),
}

/// A non-negative integer sent as a number or as a string of digits.
pub(crate) fn number_or_digits<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
) -> Result<u64, D::Error> {
    let invalid = || serde::de::Error::custom(format_args!("{what} is not a whole number"));
    match Loose::deserialize(d)? {
        Loose::Number(n) => Ok(n),
        Loose::Text(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            s.parse().map_err(|_| invalid())
        }
        Loose::Bool(_) | Loose::Signed(_) => Err(invalid()),
    }
}

/// A flag sent as `0`/`1` (or a boolean); missing or `null` is `false`.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Loose>::deserialize(d)? {
        Some(Loose::Bool(b)) => b,
        Some(Loose::Number(n)) => n != 0,
        Some(Loose::Signed(n)) => n != 0,
        Some(Loose::Text(_)) => return Err(serde::de::Error::custom("a flag is 0 or 1")),
        None => false,
    })
}

/// A serde error as a reason that names fields but never quotes a value (values may be tokens):
/// `"{what}: missing field `x` at line 1 column 9"`, `"{what}: invalid JSON at line 3 column 2"`.
///
/// ```
/// let err = serde_json::from_str::<Vec<u8>>(r#""my-secret-token""#).unwrap_err();
/// let reason = withings_oauth::json_error_reason("tokens.json", &err);
/// assert!(!reason.contains("my-secret-token"));
/// assert_eq!(reason, "tokens.json: a value has the wrong type at line 1 column 17");
/// ```
pub fn json_error_reason(what: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let detail = if ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|p| text.starts_with(p))
    {
        text.split(" at line").next().unwrap_or_default().to_owned()
    } else {
        match e.classify() {
            Category::Syntax => "invalid JSON".to_owned(),
            Category::Eof => "the JSON ends early".to_owned(),
            Category::Data => "a value has the wrong type".to_owned(),
            Category::Io => "read error".to_owned(),
        }
    };
    format!(
        "{what}: {detail} at line {} column {}",
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "id")]
        id: u64,
        #[serde(default, deserialize_with = "flag")]
        more: bool,
    }

    fn id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        number_or_digits(d, "id")
    }

    #[test]
    fn numbers_come_as_numbers_or_digits_and_flags_as_bits_or_booleans() {
        let p: Probe = serde_json::from_str(r#"{"id":"42","more":1}"#).unwrap();
        assert_eq!((p.id, p.more), (42, true));
        let p: Probe = serde_json::from_str(r#"{"id":42,"more":false}"#).unwrap();
        assert_eq!((p.id, p.more), (42, false));
        let p: Probe = serde_json::from_str(r#"{"id":7}"#).unwrap();
        assert!(!p.more);
        for bad in [
            r#"{"id":"4x2"}"#,
            r#"{"id":-1}"#,
            r#"{"id":""}"#,
            r#"{"id":true}"#,
        ] {
            let err = serde_json::from_str::<Probe>(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("id is not a whole number"),
                "{err}"
            );
        }
    }

    #[test]
    fn reasons_name_fields_and_never_values() {
        let err = serde_json::from_str::<Probe>(r#"{"more":1}"#).unwrap_err();
        assert_eq!(
            json_error_reason("x", &err),
            "x: missing field `id` at line 1 column 10"
        );
        let err = serde_json::from_str::<Probe>(r#"{"id":"leak-me"}"#).unwrap_err();
        assert!(!json_error_reason("x", &err).contains("leak-me"));
    }
}
