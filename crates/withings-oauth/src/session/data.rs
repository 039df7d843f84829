//! Data calls through a session: the access token as `Authorization: Bearer`, one refresh and
//! one retry when Withings says it is invalid, and the bearer token kept on the API host.

use serde::de::DeserializeOwned;
use tracing::info;

use super::{Session, SessionError};
use crate::api::error::ApiError;
use crate::api::measure::{GetMeas, MeasureGroups};
use crate::api::transport::{DATA_BODY_LIMIT, post_form};
use crate::secret::AccessToken;

impl Session {
    /// Calls a Withings data endpoint (`path` on the API host, e.g. `measure`) with the access
    /// token as `Authorization: Bearer`, and returns the envelope's `body`.
    ///
    /// If Withings answers that the access token is invalid (status 401 `invalid_token`), the
    /// session refreshes once and retries once.
    pub async fn call(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, SessionError> {
        self.call_as(path, form).await
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<T, SessionError> {
        let path = self.check_path(path)?;
        let (token, generation) = self.token_and_generation().await?;
        match self.post(path, form, &token).await {
            Err(ApiError::InvalidAccessToken) => {
                info!(user_id = %self.shared.user, "access token rejected; refreshing once");
                let (token, _) = self.refresh_unless_newer(generation, true).await?;
                self.post(path, form, &token).await
            }
            other => other,
        }
        .map_err(SessionError::Api)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, &str)],
        token: &AccessToken,
    ) -> Result<T, ApiError> {
        let secret = token.expose_secret();
        post_form(
            &self.shared.client,
            path,
            form,
            Some(secret),
            &[secret],
            DATA_BODY_LIMIT,
            None,
        )
        .await
    }

    /// A path that stays on the API host: the bearer token must never go anywhere else.
    fn check_path<'p>(&self, path: &'p str) -> Result<&'p str, SessionError> {
        let relative = path.strip_prefix('/').unwrap_or(path);
        let base = self.shared.client.api_url();
        let stays = !relative.starts_with('/')
            && !relative.contains(['?', '#', '\\'])
            && base.join(relative).is_ok_and(|url| {
                url.origin() == base.origin() && url.path().starts_with(base.path())
            });
        if stays && !relative.is_empty() {
            Ok(relative)
        } else {
            Err(SessionError::InvalidPath {
                path: path.chars().take(100).collect(),
            })
        }
    }

    /// Withings' `getmeas`: body measures (weight, fat, blood pressure...).
    pub async fn get_meas(&self, query: &GetMeas) -> Result<MeasureGroups, SessionError> {
        let params = query.params();
        let mut form: Vec<(&str, &str)> = vec![("action", "getmeas")];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        self.call_as("measure", &form).await
    }
}
