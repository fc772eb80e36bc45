//! The authorization endpoint (RFC 6749 §3.1, §4.1, §4.2) with its login and
//! consent page (the code is redeemed at /token: `crate::grant::authorization_code`).
//!
//! `GET /authorize?response_type=code|token&client_id&redirect_uri&scope&state
//! &code_challenge&code_challenge_method` checks the request, keeps it in the
//! store under a one-time form token ([`crate::endpoint::authorize::pending`]) and
//! shows the login page. `POST /authorize` (the page's form) consumes that
//! token, checks the credentials and answers with a redirect to the client:
//! a code in the query (`code`), or an access token in the fragment (`token`).
//!
//! Errors (RFC 6749 §4.1.2.1, §4.2.2.1): a missing or unknown client, or a
//! redirect URI that is not registered, get an error page and never a
//! redirect; every other error redirects back with `error`,
//! `error_description` and `state`.

pub mod browser_binding;
pub mod login_page;
pub mod pending;
mod redirect;

pub use redirect::url_encode;
use redirect::{done, refused_page, Back};

use subtle::ConstantTimeEq;

use crate::audit::{event, AuditRecord};
use crate::authn::env::ServiceEnv;
use crate::authn::slow_check::Refused;
use crate::authn::user::authenticate_user;
use crate::config::{Client, GrantType, TokenConfig};
use crate::endpoint::authorize::browser_binding::{BrowserCookie, BrowserId, RequestSite};
use crate::endpoint::authorize::login_page::{error_page, login_page, LoginView};
use crate::oauth::form::Form;
use crate::oauth::pkce;
use crate::oauth::response::Response;
use crate::oauth::scope;
use crate::store::server_key;
use crate::store::{CodeBinding, GrantRequest, GrantStore, Lifetimes, StoreError, TxnReport};
use pending::{PendingAuthorization, ResponseType};

/// Failed logins one authorization request may have before it is refused.
pub const MAX_FAILURES_PER_REQUEST: u8 = 5;

/// What the glue passes in.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    pub method: &'a str,
    /// The query string, without `?` (GET).
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    /// The form body (POST).
    pub body: &'a [u8],
    /// The `Cookie` header (the browser binding of the login form).
    pub cookie: Option<&'a str>,
    /// The request came over HTTPS (the binding cookie is then `__Host-`, `Secure`).
    pub https: bool,
    /// The `Host` (`:authority`): with `issuer_from_host`, it names the issuer.
    pub host: Option<&'a str>,
    /// Where the request says it comes from (checked on the form's POST).
    pub site: RequestSite<'a>,
}

/// What happened, for stats (`oauth2.authorize.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// The login page was shown for a new request.
    LoginPage,
    /// Wrong or missing credentials: the page again.
    LoginFailed,
    /// Too many failures for the user: the page again with a wait.
    Throttled,
    CodeIssued,
    TokenIssued,
    /// The user chose Deny.
    Denied,
    /// Redirected back with an error.
    ErrorRedirect,
    /// An error page (not redirectable, or a missing, used or expired form token).
    ErrorPage,
}

impl AuthorizeOutcome {
    /// The audit record: the event only (the page's facts are not kept here).
    pub fn audit(self) -> AuditRecord {
        let e = match self {
            AuthorizeOutcome::LoginPage => event::AUTHORIZE_PAGE,
            AuthorizeOutcome::LoginFailed => event::LOGIN_FAILED,
            AuthorizeOutcome::Throttled => event::AUTH_THROTTLED,
            AuthorizeOutcome::CodeIssued => event::CODE_ISSUED,
            AuthorizeOutcome::TokenIssued => event::TOKEN_ISSUED,
            AuthorizeOutcome::Denied => event::AUTHORIZE_DENIED,
            AuthorizeOutcome::ErrorRedirect | AuthorizeOutcome::ErrorPage => {
                event::AUTHORIZE_REFUSED
            }
        };
        let mut r = AuditRecord::new(e);
        if self == AuthorizeOutcome::TokenIssued {
            r.grant_type = Some("implicit");
        }
        r
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizeOutcome::LoginPage => "login_page",
            AuthorizeOutcome::LoginFailed => "login_failed",
            AuthorizeOutcome::Throttled => "throttled",
            AuthorizeOutcome::CodeIssued => "code_issued",
            AuthorizeOutcome::TokenIssued => "token_issued",
            AuthorizeOutcome::Denied => "denied",
            AuthorizeOutcome::ErrorRedirect => "error_redirect",
            AuthorizeOutcome::ErrorPage => "error_page",
        }
    }
}

pub struct AuthorizeResult {
    pub response: Response,
    pub outcome: AuthorizeOutcome,
    pub store: TxnReport,
}

/// `GET` or `POST /authorize`.
pub async fn handle_authorize(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &AuthorizeRequest<'_>,
) -> AuthorizeResult {
    let mut store = GrantStore::over(env.kv.clone(), env.rng, cfg.store);
    // Every redirect names the issuer (RFC 9207): a Host it cannot be built
    // from gets no page at all.
    let Some(issuer) = cfg.issuer.for_request(req.https, req.host) else {
        let (response, outcome) = refused_page(400, "This server does not answer for that host.");
        return AuthorizeResult {
            response,
            outcome,
            store: store.report,
        };
    };
    let (response, outcome) = match req.method {
        "GET" => start(cfg, env, req, &issuer).await,
        "POST" => submit(cfg, env, &mut store, req, &issuer).await,
        _ => done(
            error_page(405, "Only GET and POST are allowed here.").header("allow", "GET, POST"),
            AuthorizeOutcome::ErrorPage,
        ),
    };
    AuthorizeResult {
        response,
        outcome,
        store: store.report,
    }
}

/// The GET: check the request, remember it, show the login page.
async fn start(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &AuthorizeRequest<'_>,
    issuer: &str,
) -> (Response, AuthorizeOutcome) {
    let Ok(q) = Form::parse(req.query.as_bytes()) else {
        return refused_page(400, "The authorization request is malformed.");
    };
    // Before anything can be redirected: the client and its redirect URI.
    let client = match q.one("client_id") {
        Ok(Some(id)) => match cfg.client(id) {
            Some(c) => c,
            None => return refused_page(400, "The application (client_id) is unknown."),
        },
        Ok(None) => return refused_page(400, "The request names no application (client_id)."),
        Err(_) => return refused_page(400, "client_id is repeated."),
    };
    let requested_redirect = match q.one("redirect_uri") {
        Ok(r) => r,
        Err(_) => return refused_page(400, "redirect_uri is repeated."),
    };
    if !client.allows(GrantType::AuthorizationCode) && !client.allows(GrantType::Implicit) {
        return refused_page(400, "This application does not sign users in here.");
    }
    let Some(redirect_uri) = client.redirect_uri(requested_redirect) else {
        return refused_page(
            400,
            if requested_redirect.is_some() {
                "The redirect URI is not registered for this application."
            } else {
                "The request must name a redirect URI (redirect_uri)."
            },
        );
    };
    let response_type = q.one("response_type").ok().flatten();
    let mut back = Back {
        redirect_uri,
        fragment: response_type == Some("token"),
        state: None,
        issuer,
        status: 302,
    };
    let state = match q.one("state") {
        Ok(s) => s,
        Err(_) => return back.error("invalid_request", "state is repeated"),
    };
    // An oversized state is not echoed back (it would only bloat the redirect).
    if state.is_some_and(|s| s.len() > pending::MAX_STATE_BYTES) {
        return back.error("invalid_request", "state is too long");
    }
    back.state = state;
    let response_type = match q.one("response_type") {
        Err(_) => return back.error("invalid_request", "response_type is repeated"),
        Ok(None) => return back.error("invalid_request", "response_type is required"),
        Ok(Some("code")) => ResponseType::Code,
        Ok(Some("token")) => ResponseType::Token,
        Ok(Some(_)) => {
            return back.error(
                "unsupported_response_type",
                "response_type must be code or token",
            )
        }
    };
    let grant = grant_of(response_type);
    if !client.allows(grant) {
        return back.error(
            "unauthorized_client",
            &format!("this client may not use the {} grant", grant.as_str()),
        );
    }
    for p in ["scope", "code_challenge", "code_challenge_method", "prompt"] {
        if q.one(p).is_err() {
            return back.error("invalid_request", &format!("{p} is repeated"));
        }
    }
    // prompt=none asks for no user interaction, which a login page needs.
    if q.one("prompt")
        .ok()
        .flatten()
        .is_some_and(|p| p.split(' ').any(|x| x == "none"))
    {
        return back.error("login_required", "the user must sign in");
    }
    let requested = q.one("scope").ok().flatten().unwrap_or("");
    let Ok(requested) = scope::parse(requested) else {
        return back.error("invalid_scope", "the scope is malformed");
    };
    let scope = if requested.is_empty() {
        client.default_scope.clone()
    } else {
        if let Some(bad) = scope::first_outside(&requested, &client.scopes) {
            return back.error(
                "invalid_scope",
                &format!("scope `{bad}` is not allowed for this client"),
            );
        }
        scope::join(&requested)
    };
    let challenge = if response_type == ResponseType::Code {
        match check_pkce(
            client,
            q.one("code_challenge").ok().flatten(),
            q.one("code_challenge_method").ok().flatten(),
        ) {
            Ok(c) => c,
            Err(why) => return back.error("invalid_request", why),
        }
    } else {
        None
    };
    // The browser keeps one id across requests (several tabs, several forms); a
    // value this server did not issue is replaced by one it does.
    let key = match server_key::load(&env.kv, env.rng).await {
        Ok(k) => k,
        Err(e) => return store_failure(&back, e),
    };
    let (browser, new_browser) = match BrowserId::from_cookie_header(req.cookie, req.https, &key) {
        BrowserCookie::Issued(id) => (id, false),
        BrowserCookie::Missing | BrowserCookie::NotIssued => match BrowserId::new(env.rng) {
            Ok(id) => (id, true),
            Err(e) => return store_failure(&back, e.into()),
        },
    };
    let pending_req = PendingAuthorization {
        response_type,
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        redirect_given: requested_redirect.is_some(),
        scope,
        state: state.map(str::to_string),
        challenge,
        failures: 0,
        browser: browser.binding(),
    };
    match show_login(
        cfg,
        env,
        &pending_req,
        None,
        "",
        200,
        AuthorizeOutcome::LoginPage,
    )
    .await
    {
        Ok((page, outcome)) if new_browser => {
            match browser.set_cookie(&key, &cfg.paths.authorize, req.https) {
                Some(cookie) => (page.header("set-cookie", cookie), outcome),
                None => store_failure(&back, StoreError::Unavailable),
            }
        }
        Ok(shown) => shown,
        Err(e) => store_failure(&back, e),
    }
}

fn store_failure(back: &Back, e: StoreError) -> (Response, AuthorizeOutcome) {
    match e {
        StoreError::Unavailable => back.error("server_error", "the store is unavailable"),
        _ => back.error("temporarily_unavailable", "the server is busy; try again"),
    }
}

/// The grant type a `response_type` asks for.
fn grant_of(response_type: ResponseType) -> GrantType {
    match response_type {
        ResponseType::Code => GrantType::AuthorizationCode,
        ResponseType::Token => GrantType::Implicit,
    }
}

/// The GET's checks that depend on the client's configuration, again when the
/// form comes back: a grant type, PKCE rule or scope withdrawn while the page
/// was open takes effect at once, not when the form token expires.
fn still_allowed(
    client: &Client,
    req: &PendingAuthorization,
) -> Result<(), (&'static str, &'static str)> {
    if !client.allows(grant_of(req.response_type)) {
        return Err((
            "unauthorized_client",
            "this client may no longer use this grant",
        ));
    }
    if req.response_type == ResponseType::Code {
        match req.challenge.as_ref().map(|(m, _)| *m) {
            None if client.require_pkce => {
                return Err((
                    "invalid_request",
                    "code_challenge is required (PKCE, RFC 7636)",
                ))
            }
            Some(pkce::Method::Plain) if !client.allow_plain_pkce => {
                return Err(("invalid_request", "code_challenge_method must be S256"))
            }
            _ => {}
        }
    }
    let requested: Vec<&str> = req.scope.split(' ').filter(|s| !s.is_empty()).collect();
    if scope::first_outside(&requested, &client.scopes).is_some() {
        return Err((
            "invalid_scope",
            "a requested scope is no longer allowed for this client",
        ));
    }
    Ok(())
}

/// The PKCE challenge of a code request (RFC 7636 §4.3), per the client's policy.
fn check_pkce(
    client: &Client,
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<(pkce::Method, String)>, &'static str> {
    let Some(challenge) = challenge else {
        if method.is_some() {
            return Err("code_challenge_method without code_challenge");
        }
        if client.require_pkce {
            return Err("code_challenge is required (PKCE, RFC 7636)");
        }
        return Ok(None);
    };
    let Some(m) = pkce::Method::from_param(method) else {
        return Err("code_challenge_method must be S256");
    };
    if m == pkce::Method::Plain && !client.allow_plain_pkce {
        return Err("code_challenge_method must be S256");
    }
    if !pkce::is_valid(challenge) {
        return Err("code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~");
    }
    Ok(Some((m, challenge.to_string())))
}

/// Stores the request under a fresh form token and renders the page.
async fn show_login(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &PendingAuthorization,
    message: Option<&str>,
    username: &str,
    status: u16,
    outcome: AuthorizeOutcome,
) -> Result<(Response, AuthorizeOutcome), StoreError> {
    let form_token = pending::create(&env.kv, env.rng, req, env.clock.now_secs()).await?;
    let view = LoginView {
        action: &cfg.paths.authorize,
        client_id: &req.client_id,
        scope: &req.scope,
        form_token: &form_token,
        message,
        username,
        redirect_uri: &req.redirect_uri,
    };
    Ok((login_page(&view, status), outcome))
}

/// The POST of the login form.
async fn submit<'a>(
    cfg: &'a TokenConfig,
    env: &mut ServiceEnv<'_>,
    store: &mut GrantStore<'a>,
    req: &AuthorizeRequest<'_>,
    issuer: &str,
) -> (Response, AuthorizeOutcome) {
    if req.body.len() > cfg.max_body_bytes {
        return refused_page(413, "The form is too large.");
    }
    let media = req
        .content_type
        .map(|c| c.split(';').next().unwrap_or("").trim());
    if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return refused_page(
            400,
            "The form must be sent as application/x-www-form-urlencoded.",
        );
    }
    let Ok(form) = Form::parse(req.body) else {
        return refused_page(400, "The form is malformed.");
    };
    let form_token = match form.one("form_token") {
        Ok(Some(t)) => t,
        _ => {
            return refused_page(
                400,
                "The sign-in form is not valid (its form token is missing).",
            )
        }
    };
    let now = env.clock.now_secs();
    // Only the browser that opened the form, on this server's page, may post it
    // (login CSRF). Checked before the form token is used up, so a refused POST
    // (someone else's page, or no cookie) cannot spend the user's form.
    let own_issuer = cfg.issuer.for_request(req.https, req.host);
    if let Some(why) = req.site.refusal(req.https, own_issuer.as_deref()) {
        return refused_page(403, why);
    }
    let busy = || refused_page(503, "The server is busy. Try again.");
    let Ok(key) = server_key::load(&env.kv, env.rng).await else {
        return busy();
    };
    let browser = match BrowserId::from_cookie_header(req.cookie, req.https, &key) {
        BrowserCookie::Issued(id) => id,
        BrowserCookie::Missing => {
            return refused_page(
                403,
                "This browser sent no sign-in cookie with the form. Allow cookies for this site and start again from the application.",
            )
        }
        BrowserCookie::NotIssued => {
            return refused_page(
                403,
                "This browser's sign-in cookie was not issued by this server. Start again from the application.",
            )
        }
    };
    let open_form = match pending::open_unused(&env.kv, env.rng, form_token, now).await {
        Ok(Some(f)) => f,
        Ok(None) => return refused_page(400, "This sign-in form has expired or was already used."),
        Err(_) => return busy(),
    };
    if !bool::from(browser.binding().ct_eq(&open_form.request().browser)) {
        return refused_page(
            403,
            "This sign-in form belongs to another browser session. Start again from the application.",
        );
    }
    // Used up here, before the credentials are checked: a form token works once.
    let pending_req = match pending::use_up(&env.kv, open_form, now).await {
        Ok(Some(p)) => p,
        Ok(None) => return refused_page(400, "This sign-in form has expired or was already used."),
        Err(_) => return busy(),
    };
    // The configuration may have changed since the page was shown.
    let Some(client) = cfg.client(&pending_req.client_id) else {
        return refused_page(400, "The application (client_id) is unknown.");
    };
    if !client.redirect_uris.contains(&pending_req.redirect_uri) {
        return refused_page(
            400,
            "The redirect URI is not registered for this application.",
        );
    }
    let back = Back {
        redirect_uri: &pending_req.redirect_uri,
        fragment: pending_req.response_type == ResponseType::Token,
        state: pending_req.state.as_deref(),
        issuer,
        status: 303,
    };
    if let Err((error, why)) = still_allowed(client, &pending_req) {
        return back.error(error, why);
    }
    let (Ok(action), Ok(username), Ok(password)) = (
        form.one("action"),
        form.one("username"),
        form.one("password"),
    ) else {
        return back.error("invalid_request", "a form field is repeated");
    };
    match action {
        Some("deny") => {
            return done(
                back.to(&[
                    ("error", "access_denied"),
                    ("error_description", "the user denied the request"),
                ]),
                AuthorizeOutcome::Denied,
            )
        }
        Some("approve") => {}
        _ => return back.error("invalid_request", "the form has no valid action"),
    }
    let again = async |env: &mut ServiceEnv<'_>,
                       req: &PendingAuthorization,
                       message: &str,
                       status,
                       outcome| {
        show_login(
            cfg,
            env,
            req,
            Some(message),
            username.unwrap_or(""),
            status,
            outcome,
        )
        .await
        .unwrap_or_else(|e| store_failure(&back, e))
    };
    let (Some(username), Some(password)) = (username, password) else {
        return again(
            env,
            &pending_req,
            "Enter your username and password.",
            200,
            AuthorizeOutcome::LoginFailed,
        )
        .await;
    };
    let user = match authenticate_user(cfg, env, username, password).await {
        Ok(u) => u,
        Err(refused @ (Refused::Throttled(wait) | Refused::Busy(wait))) => {
            let message = if matches!(refused, Refused::Busy(_)) {
                format!("Too many sign-in attempts at this moment. Try again in {wait} seconds.")
            } else {
                format!("Too many failed sign-in attempts. Try again in {wait} seconds.")
            };
            return again(
                env,
                &pending_req,
                &message,
                429,
                AuthorizeOutcome::Throttled,
            )
            .await;
        }
        Err(Refused::Wrong) => {
            let mut next = pending_req.clone();
            next.failures = next.failures.saturating_add(1);
            if next.failures >= MAX_FAILURES_PER_REQUEST {
                return done(
                    back.to(&[
                        ("error", "access_denied"),
                        ("error_description", "too many failed sign-in attempts"),
                    ]),
                    AuthorizeOutcome::Denied,
                );
            }
            // Never says which of the two was wrong.
            return again(
                env,
                &next,
                "The username or password is incorrect.",
                200,
                AuthorizeOutcome::LoginFailed,
            )
            .await;
        }
    };
    // What the user may delegate, within what the client asked for.
    let granted: Vec<&str> = pending_req
        .scope
        .split(' ')
        .filter(|s| !s.is_empty() && user.scopes.iter().any(|u| u == s))
        .collect();
    if granted.is_empty() {
        return back.error(
            "invalid_scope",
            "the user cannot grant any of the requested scopes",
        );
    }
    let granted = scope::join(&granted);
    match pending_req.response_type {
        ResponseType::Code => {
            let binding = CodeBinding {
                client_id: client.client_id.clone(),
                user: user.id.clone(),
                scope: granted,
                redirect_uri: pending_req.redirect_uri.clone(),
                redirect_given: pending_req.redirect_given,
                challenge: pending_req.challenge.clone(),
            };
            match store.issue_code(&binding, cfg.code_lifetime, now).await {
                Ok(code) => done(back.to(&[("code", &code)]), AuthorizeOutcome::CodeIssued),
                Err(e) => store_failure(&back, e),
            }
        }
        ResponseType::Token => {
            let grant = GrantRequest {
                client_id: client.client_id.clone(),
                user: Some(user.id.clone()),
                scope: granted,
                lifetimes: Lifetimes {
                    access: client.lifetimes.user_access_token,
                    // Never a refresh token in a fragment (RFC 6749 §4.2.2).
                    refresh: None,
                },
            };
            match store
                .with_format(client.access_format())
                .issue(&grant, now)
                .await
            {
                Ok(t) => {
                    let expires_in = t.expires_in.to_string();
                    done(
                        back.to(&[
                            ("access_token", &t.access_token),
                            ("token_type", "Bearer"),
                            ("expires_in", &expires_in),
                            ("scope", &t.scope),
                        ]),
                        AuthorizeOutcome::TokenIssued,
                    )
                }
                Err(e) => store_failure(&back, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_only_unreserved() {
        assert_eq!(url_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
    }
}
