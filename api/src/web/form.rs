//! Reading URL-encoded form bodies, with unreadable ones answered by a 400 page.

use axum::extract::{FromRequest, Request};
use axum::Form;
use serde::de::DeserializeOwned;

use super::error::WebError;

/// A form body deserialised as `T`. Unlike axum's `Form` on its own, a failure becomes a
/// [`WebError`], so it gets a page like every other error.
pub struct FormData<T>(pub T);

impl<T, S> FromRequest<S> for FormData<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Form(value) = Form::<T>::from_request(request, state)
            .await
            .map_err(|rejection| WebError::BadRequest(rejection.body_text()))?;
        Ok(Self(value))
    }
}
