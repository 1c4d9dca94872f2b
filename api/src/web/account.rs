//! Signing up, in and out: `/register`, `/login`, `/logout`.
//!
//! Form errors re-render the form (status 200, as the original) with the original's
//! messages and the username and email filled in again; passwords never are.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use commands::accounts::{NewAccount, SignInError};
use commands::CommandError;
use domain::UserError;
use serde::Deserialize;

use super::error::{with_retry_after, WebError};
use super::form::FormData;
use super::pages::{redirect, render, LoginPage, RegisterPage, Title};
use super::proxy::ClientAddress;
use super::session::BrowserSession;
use super::timelines::chrome;
use super::WebState;
use crate::request_context::RequestContext;

/// The flashes of this module, the original's words.
const REGISTERED: &str = "You were successfully registered and can login now";
const SIGNED_IN: &str = "You were logged in";
const SIGNED_OUT: &str = "You were logged out";

/// A missing field counts as empty, so it gets the rule's own message.
#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `GET /register`.
pub async fn register_form(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, WebError> {
    if session.username().is_some() {
        return Ok(redirect("/"));
    }
    register_page(
        &state,
        &session,
        StatusCode::OK,
        None,
        String::new(),
        String::new(),
    )
    .await
}

/// `POST /register`.
pub async fn register(
    State(state): State<WebState>,
    session: BrowserSession,
    ClientAddress(address): ClientAddress,
    RequestContext(context): RequestContext,
    FormData(form): FormData<RegisterForm>,
) -> Result<Response, WebError> {
    if session.username().is_some() {
        return Ok(redirect("/"));
    }
    let RegisterForm {
        username,
        email,
        password,
        password2,
    } = form;
    if let Err(wait) = state.budgets.registration_attempt(address).await? {
        let message = format!(
            "Too many sign-ups from your address; please try again in {} minutes",
            wait.as_secs().div_ceil(60)
        );
        let page = register_page(
            &state,
            &session,
            StatusCode::TOO_MANY_REQUESTS,
            Some(message),
            username,
            email,
        )
        .await?;
        return Ok(with_retry_after(page, wait));
    }
    let account = NewAccount {
        username: username.clone(),
        email: email.clone(),
        password,
        password_repeated: Some(password2),
    };
    match state.accounts.register(account, &context).await {
        Ok(()) => {
            session.flash(REGISTERED).await?;
            Ok(redirect("/login"))
        }
        Err(CommandError::Rejected(UserError::Registration(refusal))) => {
            register_page(
                &state,
                &session,
                StatusCode::OK,
                Some(refusal.to_string()),
                username,
                email,
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

async fn register_page(
    state: &WebState,
    session: &BrowserSession,
    status: StatusCode,
    error: Option<String>,
    username: String,
    email: String,
) -> Result<Response, WebError> {
    let page = RegisterPage {
        chrome: chrome(state, session).await?,
        title: Title::SIGN_UP,
        error,
        username,
        email,
    };
    Ok(render(status, &page))
}

/// `GET /login`.
pub async fn login_form(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, WebError> {
    if session.username().is_some() {
        return Ok(redirect("/"));
    }
    login_page(&state, &session, StatusCode::OK, None, String::new()).await
}

/// `POST /login`.
pub async fn login(
    State(state): State<WebState>,
    mut session: BrowserSession,
    ClientAddress(address): ClientAddress,
    RequestContext(context): RequestContext,
    FormData(form): FormData<LoginForm>,
) -> Result<Response, WebError> {
    if session.username().is_some() {
        return Ok(redirect("/"));
    }
    let LoginForm { username, password } = form;
    if let Err(wait) = state.budgets.sign_in_attempt(address, &username).await? {
        metrics::counter!("minitwit_logins_total", "outcome" => "limited").increment(1);
        let message = format!(
            "Too many sign-in attempts; please try again in {} seconds",
            wait.as_secs()
        );
        let page = login_page(
            &state,
            &session,
            StatusCode::TOO_MANY_REQUESTS,
            Some(message),
            username,
        )
        .await?;
        return Ok(with_retry_after(page, wait));
    }
    let outcome = state.accounts.sign_in(&username, password, &context).await;
    if !matches!(outcome, Err(SignInError::Failed(_))) {
        state
            .budgets
            .sign_in_outcome(address, &username, outcome.is_ok())
            .await?;
    }
    match outcome {
        Ok(()) => {
            metrics::counter!("minitwit_logins_total", "outcome" => "ok").increment(1);
            session.sign_in(state.commands.pool(), &username).await?;
            session.flash(SIGNED_IN).await?;
            Ok(redirect("/"))
        }
        Err(SignInError::Failed(cause)) => Err(cause.into()),
        Err(refusal) => {
            metrics::counter!("minitwit_logins_total", "outcome" => "refused").increment(1);
            login_page(
                &state,
                &session,
                StatusCode::OK,
                Some(refusal.to_string()),
                username,
            )
            .await
        }
    }
}

async fn login_page(
    state: &WebState,
    session: &BrowserSession,
    status: StatusCode,
    error: Option<String>,
    username: String,
) -> Result<Response, WebError> {
    let page = LoginPage {
        chrome: chrome(state, session).await?,
        title: Title::SIGN_IN,
        error,
        username,
    };
    Ok(render(status, &page))
}

/// `GET /logout`: ends the session (the flash travels in a fresh one).
pub async fn logout(mut session: BrowserSession) -> Result<Response, WebError> {
    if session.username().is_none() {
        // Nobody to sign out: a flash would store a session for every anonymous hit, which
        // anyone could use to fill the sessions table.
        return Ok(redirect("/public"));
    }
    session.sign_out().await?;
    session.flash(SIGNED_OUT).await?;
    Ok(redirect("/public"))
}
