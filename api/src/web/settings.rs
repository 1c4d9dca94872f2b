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
    if let Some(refused) = confirmation_budget(&state, &session, address, &username).await? {
        return Ok(refused);
    }
    let outcome = state
        .accounts
        .change_password(
            &username,
            form.current,
            form.password,
            &form.password2,
            &context,
        )
        .await;
    record_confirmation(&state, address, &username, &outcome).await?;
    match outcome {
        Ok(()) => {
            database::web_sessions::end_sessions_of(
                state.commands.pool(),
                &username,
                session.id().as_deref(),
            )
            .await?;
            session.flash(PASSWORD_CHANGED).await?;
            Ok(redirect("/settings"))
        }
        Err(err) => refused_change(&state, &session, err).await,
    }
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
    if let Some(refused) = confirmation_budget(&state, &session, address, &username).await? {
        return Ok(refused);
    }
    let outcome = state
        .accounts
        .delete(&username, form.password, &context)
        .await;
    record_confirmation(&state, address, &username, &outcome).await?;
    match outcome {
        Ok(_) => {
            session.sign_out().await?;
            session.flash(ACCOUNT_DELETED).await?;
            Ok(redirect("/public"))
        }
        Err(err) => refused_change(&state, &session, err).await,
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
            let username = session.require_user()?;
            let email = state
                .reads
                .account(username)
                .await?
                .map(|account| account.email)
                .unwrap_or_default();
            settings_page(state, session, StatusCode::OK, Some(err.to_string()), email).await
        }
        other => Err(other.into()),
    }
}

/// The page answering a confirmation over budget, if this one is.
async fn confirmation_budget(
    state: &WebState,
    session: &BrowserSession,
    address: std::net::IpAddr,
    username: &str,
) -> Result<Option<Response>, WebError> {
    let Err(wait) = state.budgets.sign_in_attempt(address, username).await? else {
        return Ok(None);
    };
    let message = format!(
        "Too many password attempts; please try again in {} seconds",
        wait.as_secs()
    );
    let email = state
        .reads
        .account(username)
        .await?
        .map(|account| account.email)
        .unwrap_or_default();
    let page = settings_page(
        state,
        session,
        StatusCode::TOO_MANY_REQUESTS,
        Some(message),
        email,
    )
    .await?;
    Ok(Some(with_retry_after(page, wait)))
}

/// Counts a password confirmation's outcome against the sign-in budget, as a sign-in's.
async fn record_confirmation<T>(
    state: &WebState,
    address: std::net::IpAddr,
    username: &str,
    outcome: &Result<T, AccountChangeError>,
) -> Result<(), WebError> {
    let confirmed = match outcome {
        Err(AccountChangeError::WrongPassword) => false,
        Ok(_) | Err(AccountChangeError::Invalid(_)) => true,
        Err(_) => return Ok(()),
    };
    Ok(state
        .budgets
        .sign_in_outcome(address, username, confirmed)
        .await?)
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
