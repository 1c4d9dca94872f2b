//! A signed-in user's own account: `/settings`, where they change their password or email,
//! download their data, and delete the account.
//!
//! Each change is a command through the same bus as everything else (see
//! [`commands::accounts`]). Confirming with the password counts against the same budget as
//! signing in, so the form cannot be used to guess a password faster than the sign-in form.
//! A refused form re-renders the page with the reason, as the other forms do.

use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use commands::accounts::AccountChangeError;
use serde::Deserialize;

use super::error::{with_retry_after, WebError};
use super::form::FormData;
use super::pages::{encode_path_segment, redirect, render, SettingsPage, Title};
use super::proxy::ClientAddress;
use super::session::BrowserSession;
use super::timelines::chrome;
use super::WebState;
use crate::request_context::RequestContext;

const PASSWORD_CHANGED: &str = "Your password was changed, and you were signed out everywhere else";
const EMAIL_CHANGED: &str = "Your email address was changed";
const ACCOUNT_DELETED: &str = "Your account was deleted, and everything you wrote with it";

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
}

/// `GET /settings`.
pub async fn page(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, WebError> {
    let username = session.require_user()?;
    let account = state
        .reads
        .account(username)
        .await?
        .ok_or(WebError::NotSignedIn)?;
    settings_page(&state, &session, StatusCode::OK, None, account.email).await
}

/// `POST /settings/password`: the new password, confirmed with the current one; every other
/// session of the user ends.
pub async fn change_password(
    State(state): State<WebState>,
    session: BrowserSession,
    ClientAddress(address): ClientAddress,
    RequestContext(context): RequestContext,
    FormData(form): FormData<PasswordForm>,
) -> Result<Response, WebError> {
    let username = session.require_user()?.to_owned();
    let change = state.accounts.change_password(
        &username,
        form.current,
        form.password,
        &form.password2,
        &context,
    );
    if let Err(page) = confirmed(&state, &session, address, &username, change).await? {
        return Ok(page);
    }
    database::web_sessions::end_sessions_of(
        state.commands.pool(),
        &username,
        session.id().as_deref(),
    )
    .await?;
    session.flash(PASSWORD_CHANGED).await?;
    Ok(redirect("/settings"))
}

/// `POST /settings/email`.
pub async fn change_email(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    FormData(form): FormData<EmailForm>,
) -> Result<Response, WebError> {
    let username = session.require_user()?.to_owned();
    let email = form.email.clone();
    match state
        .accounts
        .change_email(&username, form.email, &context)
        .await
    {
        Ok(()) => {
            session.flash(EMAIL_CHANGED).await?;
            Ok(redirect("/settings"))
        }
        Err(AccountChangeError::Invalid(refusal)) => {
            settings_page(
                &state,
                &session,
                StatusCode::OK,
                Some(refusal.to_string()),
                email,
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /settings/data`: the user's data as a JSON file (see [`projections::person`]).
pub async fn download(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, WebError> {
    let username = session.require_user()?;
    let keys = state.commands.keys();
    let data = projections::person::data_of(state.commands.pool(), keys, username)
        .await?
        .ok_or(WebError::NotSignedIn)?;
    let json = serde_json::to_string_pretty(&data).map_err(anyhow::Error::from)?;
    let file = format!(
        "attachment; filename=\"minitwit-data.json\"; filename*=UTF-8''minitwit-{}.json",
        encode_path_segment(username)
    );
    Ok((
        [
            (CONTENT_TYPE, "application/json".to_owned()),
            (CONTENT_DISPOSITION, file),
        ],
        json,
    )
        .into_response())
}

/// `POST /settings/delete`: forgets the user (see [`commands::forgetting`]), once their
/// password confirms it, and signs them out.
pub async fn delete(
    State(state): State<WebState>,
    mut session: BrowserSession,
    ClientAddress(address): ClientAddress,
    RequestContext(context): RequestContext,
    FormData(form): FormData<DeleteForm>,
) -> Result<Response, WebError> {
    let username = session.require_user()?.to_owned();
    let deletion = state.accounts.delete(&username, form.password, &context);
    if let Err(page) = confirmed(&state, &session, address, &username, deletion).await? {
        return Ok(page);
    }
    session.sign_out().await?;
    session.flash(ACCOUNT_DELETED).await?;
    Ok(redirect("/public"))
}

/// Runs `change`, a change the user's password confirms, within the sign-in budget, and
/// counts its outcome against it; a change over budget or refused is the page to answer
/// with, saying why.
async fn confirmed<T>(
    state: &WebState,
    session: &BrowserSession,
    address: std::net::IpAddr,
    username: &str,
    change: impl std::future::Future<Output = Result<T, AccountChangeError>>,
) -> Result<Result<T, Response>, WebError> {
    if let Err(wait) = state.budgets.sign_in_attempt(address, username).await? {
        let message = format!(
            "Too many password attempts; please try again in {} seconds",
            wait.as_secs()
        );
        let email = current_email(state, username).await?;
        let page = settings_page(
            state,
            session,
            StatusCode::TOO_MANY_REQUESTS,
            Some(message),
            email,
        )
        .await?;
        return Ok(Err(with_retry_after(page, wait)));
    }
    let outcome = change.await;
    let confirmed = match &outcome {
        Err(AccountChangeError::WrongPassword) => Some(false),
        Ok(_) | Err(AccountChangeError::Invalid(_)) => Some(true),
        Err(_) => None,
    };
    if let Some(confirmed) = confirmed {
        state
            .budgets
            .sign_in_outcome(address, username, confirmed)
            .await?;
    }
    match outcome {
        Ok(done) => Ok(Ok(done)),
        Err(err) => refused_change(state, session, err).await.map(Err),
    }
}

/// The page again, with the reason a change was refused; an error that is not a refusal
/// stays one.
async fn refused_change(
    state: &WebState,
    session: &BrowserSession,
    err: AccountChangeError,
) -> Result<Response, WebError> {
    match err {
        AccountChangeError::WrongPassword | AccountChangeError::Invalid(_) => {
            let email = current_email(state, session.require_user()?).await?;
            settings_page(state, session, StatusCode::OK, Some(err.to_string()), email).await
        }
        other => Err(other.into()),
    }
}

/// The email the user's settings page shows now.
async fn current_email(state: &WebState, username: &str) -> Result<String, WebError> {
    Ok(state
        .reads
        .account(username)
        .await?
        .map(|account| account.email)
        .unwrap_or_default())
}

async fn settings_page(
    state: &WebState,
    session: &BrowserSession,
    status: StatusCode,
    error: Option<String>,
    email: String,
) -> Result<Response, WebError> {
    let page = SettingsPage {
        chrome: chrome(state, session).await?,
        title: Title::SETTINGS,
        error,
        email,
    };
    Ok(render(status, &page))
}
