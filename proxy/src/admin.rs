//! The admin API, on its own listener (loopback by default) and thread.
//!
//! | request | auth | answer |
//! | --- | --- | --- |
//! | `GET /` | — | the admin web page (`/assets/app.js`, `/assets/style.css`; see `page`) |
//! | `GET /admin/summary` | — | routes, recent audit rows, every `ficus_*` sample, migration/drift availability |
//! | `GET /admin/mismatches?limit=N&route=R` | bearer | newest shadow mismatches with their diff |
//! | `GET /healthz` | — | 200 `ok` |
//! | `GET /readyz` | — | 200, or 503 while draining |
//! | `GET /metrics` | — | Prometheus text exposition |
//! | `GET /admin/routes` | — | `{"routes": [{name, target, percent, config_percent, source, sticky, ..., held, held_by, held_since, held_until, waiting_writes, in_flight_writes}]}` |
//! | `GET /admin/audit?limit=N` | — | `{"audit": [...]}` newest first |
//! | `PUT /admin/routes/{name}/rollout` `{"percent": 30}` | bearer | `{"route", "from", "to"}` |
//! | `DELETE /admin/routes/{name}/rollout` | bearer | back to the file's percentage |
//! | `POST /admin/rollback` `{"route": "x"}`, `{"routes": [..]}` or `{}` (all) | bearer | `{"rolled_back": [...]}` |
//! | `POST /admin/reload` | bearer | re-read the configuration file |
//! | `POST /admin/routes/{name}/hold` `{"max_ms": 2000, "actor": "cutover"}` | bearer | hold the route's writes: `{route, held, held_by, held_since, held_until, waiting_writes, in_flight_writes}`; 409 when held, 400 unless `max_ms` is 1..=60000 |
//! | `DELETE /admin/routes/{name}/hold` | bearer | release them (same answer); 409 when not held |
//! | `GET /admin/routes/{name}/plan` | — | the route's step plan: `{route, percent, steps, plan, next_percent, phase_seconds, waiting, live, cohort_mismatches}` |
//! | `POST /admin/routes/{name}/plan/{start,pause,resume,abort}` | bearer | the same answer after the command; 409 when the plan's state does not allow it or the route has no `[routes.plan]` |
//!
//! Mutations need `Authorization: Bearer <token>`: 401 without one, 403 with a wrong one (or
//! when no token is configured, which disables mutations). `X-Ficus-Actor` names who acts in
//! the audit log (default `admin-api`); a hold's `actor` field, when given, wins over it.

// Handlers return ready-made error responses through `?`; their size does not matter here.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::control::{Auth, Control};
use crate::error::ProxyError;
use crate::upstream::RespBody;

const MAX_ADMIN_BODY: usize = 64 * 1024;

pub(crate) async fn serve(
    listener: std::net::TcpListener,
    control: Arc<Control>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register admin listener");
            return;
        }
    };
    // A client gets as long for its request head, and for its body, as on the data plane
    // (`header_read_timeout_ms`, at most 30 s here): a PUT that declares a body and never sends
    // it is answered 408 rather than held open.
    let read_timeout = admin_read_timeout(control.config().proxy.header_read_timeout);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let control = control.clone();
                    let stop = stop.clone();
                    tokio::task::spawn_local(async move {
                        // `[proxy.admin_tls]`: the handshake first, bounded like a request head.
                        let acceptor = control.certs.admin.as_ref().map(|s| s.acceptor.clone());
                        match acceptor {
                            None => serve_conn(stream, control, stop, read_timeout).await,
                            Some(acceptor) => {
                                let limit = std::time::Duration::from_secs(10);
                                if let Some(tls) =
                                    crate::listener_tls::handshake(&acceptor, stream, limit).await
                                {
                                    serve_conn(tls, control, stop, read_timeout).await;
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One admin connection (HTTP/1.1), closed gracefully at `stop`.
async fn serve_conn<I>(
    io: I,
    control: Arc<Control>,
    mut stop: watch::Receiver<bool>,
    read_timeout: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(control.clone(), read_timeout, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<RespBody> {
    let mut r = Response::new(RespBody::full(format!("{v}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<RespBody> {
    json_response(status, json!({ "error": msg.into() }))
}

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut r = Response::new(RespBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn asset(ctype: &'static str, body: &'static str) -> Response<RespBody> {
    let mut r = text(StatusCode::OK, ctype, body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::page::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn from_proxy_error(e: ProxyError) -> Response<RespBody> {
    match e {
        ProxyError::UnknownRoute(r) => {
            error(StatusCode::NOT_FOUND, format!("no route named {r:?}"))
        }
        ProxyError::Config(c) => error(StatusCode::BAD_REQUEST, c.to_string()),
        e @ ProxyError::Invalid { .. } => error(StatusCode::BAD_REQUEST, e.to_string()),
        ProxyError::AlreadyHeld {
            route,
            by,
            since,
            until,
        } => {
            let message = ProxyError::AlreadyHeld {
                route: route.clone(),
                by: by.clone(),
                since: since.clone(),
                until: until.clone(),
            }
            .to_string();
            json_response(
                StatusCode::CONFLICT,
                json!({
                    "error": message,
                    "route": route,
                    "held_by": by,
                    "held_since": since,
                    "held_until": until,
                }),
            )
        }
        e @ (ProxyError::NotHeld(_) | ProxyError::Plan { .. }) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        other => {
            tracing::error!(error = %other, "admin request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    percent: f64,
}

/// `POST /admin/routes/{name}/hold`: `max_ms` checked by hand, so a wrong value is answered
/// naming the field.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    max_ms: Option<serde_json::Value>,
    actor: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    route: Option<String>,
    routes: Option<Vec<String>>,
}

/// The admin API's read timeout: the data plane's header timeout, or 30 s when that is off.
fn admin_read_timeout(header_read_timeout: Duration) -> Duration {
    if header_read_timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        header_read_timeout.min(Duration::from_secs(30))
    }
}

async fn read_json<T: for<'de> Deserialize<'de> + Default>(
    body: Incoming,
    allow_empty: bool,
    limit: Duration,
) -> Result<T, Response<RespBody>> {
    let read = Limited::new(body, MAX_ADMIN_BODY).collect();
    let bytes = tokio::time::timeout(limit, read)
        .await
        .map_err(|_| {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {limit:?}"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        })?
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) && allow_empty {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

impl Default for RolloutBody {
    fn default() -> Self {
        RolloutBody { percent: f64::NAN }
    }
}

async fn handle(
    control: Arc<Control>,
    read_timeout: Duration,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    Ok(route(control, read_timeout, req)
        .await
        .unwrap_or_else(|r| r))
}

async fn route(
    control: Arc<Control>,
    read_timeout: Duration,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Response<RespBody>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, [""]) => Ok(asset("text/html; charset=utf-8", crate::page::INDEX_HTML)),
        (&Method::GET, ["assets", "app.js"]) => {
            Ok(asset("text/javascript; charset=utf-8", crate::page::APP_JS))
        }
        (&Method::GET, ["assets", "style.css"]) => {
            Ok(asset("text/css; charset=utf-8", crate::page::STYLE_CSS))
        }
        (&Method::GET, ["favicon.ico"]) => {
            let mut r = text(StatusCode::NO_CONTENT, "image/x-icon", Bytes::new());
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=86400"),
            );
            Ok(r)
        }
        (&Method::GET, ["admin", "summary"]) => {
            let s = crate::page::summary(&control).map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, s))
        }
        (&Method::GET, ["admin", "mismatches"]) => {
            authorize(&control, &req)?;
            let q = req.uri().query();
            let limit = crate::split::query_value(q, "limit")
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(20usize)
                .min(200);
            let route = crate::split::query_value(q, "route")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string);
            Ok(json_response(
                StatusCode::OK,
                crate::page::mismatches(&control, limit, route.as_deref()),
            ))
        }
        (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "text/plain", "ok\n")),
        (&Method::GET, ["readyz"]) => Ok(if control.shared.draining.load(Ordering::SeqCst) {
            text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
        } else {
            text(StatusCode::OK, "text/plain", "ready\n")
        }),
        (&Method::GET, ["metrics"]) => Ok(text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            control.shared.metrics.encode(),
        )),
        (&Method::GET, ["admin", "routes"]) => {
            let routes = control.routes().map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!({ "routes": routes })))
        }
        (&Method::GET, ["admin", "audit"]) => {
            let limit = req
                .uri()
                .query()
                .and_then(|q| crate::split::query_value(Some(q), "limit"))
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(100usize)
                .min(10_000);
            let rows = control.audit(limit).map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!({ "audit": rows })))
        }
        (m, ["admin", "routes", name, "rollout"]) if m == Method::PUT || m == Method::DELETE => {
            let name = name.to_string();
            let actor = authorize(&control, &req)?;
            if m == Method::DELETE {
                let c = control
                    .reset_rollout(&name, &actor)
                    .map_err(from_proxy_error)?;
                return Ok(json_response(StatusCode::OK, json!(c)));
            }
            let b: RolloutBody = read_json(req.into_body(), false, read_timeout).await?;
            let bp = crate::config::percent_to_bp(b.percent)
                .map_err(|m| error(StatusCode::BAD_REQUEST, format!("percent: {m}")))?;
            let c = control
                .set_rollout(&name, bp, &actor)
                .map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!(c)))
        }
        (m, ["admin", "routes", name, "hold"]) if m == Method::POST || m == Method::DELETE => {
            let name = name.to_string();
            let actor = authorize(&control, &req)?;
            if m == Method::DELETE {
                let s = control.release(&name, &actor).map_err(from_proxy_error)?;
                return Ok(json_response(StatusCode::OK, json!(s)));
            }
            let b: HoldBody = read_json(req.into_body(), false, read_timeout).await?;
            let max_ms = match &b.max_ms {
                None => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "max_ms: missing (how long the hold may last at most, 1 to 60000 ms)",
                    ))
                }
                Some(v) => v.as_u64().ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("max_ms: must be an integer from 1 to 60000 (got {v})"),
                    )
                })?,
            };
            let actor = match b.actor {
                Some(a) if !a.is_empty() && a.len() <= 200 => a,
                Some(_) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "actor: must be 1 to 200 characters",
                    ))
                }
                None => actor,
            };
            let s = control
                .hold(&name, max_ms, &actor)
                .map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!(s)))
        }
        (&Method::GET, ["admin", "routes", name, "plan"]) => {
            let s = crate::planner::status(&control, name).map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!(s)))
        }
        (&Method::POST, ["admin", "routes", name, "plan", cmd]) => {
            let Some(cmd) = crate::PlanCommand::parse(cmd) else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    format!("no plan command {cmd:?} (start, pause, resume, abort)"),
                ));
            };
            let name = name.to_string();
            let actor = authorize(&control, &req)?;
            let s =
                crate::planner::command(&control, &name, cmd, &actor).map_err(from_proxy_error)?;
            Ok(json_response(StatusCode::OK, json!(s)))
        }
        (&Method::POST, ["admin", "rollback"]) => {
            let actor = authorize(&control, &req)?;
            let b: RollbackBody = read_json(req.into_body(), true, read_timeout).await?;
            let mut names: Vec<String> = b.routes.unwrap_or_default();
            names.extend(b.route);
            let changes = control.rollback(&names, &actor).map_err(from_proxy_error)?;
            Ok(json_response(
                StatusCode::OK,
                json!({ "rolled_back": changes }),
            ))
        }
        (&Method::POST, ["admin", "reload"]) => {
            authorize(&control, &req)?;
            match control.reload_from_file() {
                Ok(Some(r)) => Ok(json_response(
                    StatusCode::OK,
                    json!({ "reloaded": true, "needs_restart": r.needs_restart, "shadowed_by_runtime": r.shadowed_by_runtime }),
                )),
                Ok(None) => Ok(json_response(
                    StatusCode::OK,
                    json!({ "reloaded": false, "reason": "unchanged or no config file" }),
                )),
                Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
            }
        }
        (
            _,
            [""]
            | ["assets", "app.js" | "style.css"]
            | ["admin", "summary" | "mismatches"]
            | ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["admin", "routes"]
            | ["admin", "audit"]
            | ["admin", "rollback"]
            | ["admin", "reload"],
        )
        | (_, ["admin", "routes", _, "rollout" | "hold" | "plan"])
        | (_, ["admin", "routes", _, "plan", _]) => Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} not allowed on {path}"),
        )),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {path}"),
        )),
    }
}

/// Checks the bearer token; returns the actor for the audit log.
fn authorize(control: &Control, req: &Request<Incoming>) -> Result<String, Response<RespBody>> {
    let h = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match control.check_admin(h) {
        Auth::Ok => Ok(req
            .headers()
            .get("x-ficus-actor")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .unwrap_or("admin-api")
            .to_string()),
        Auth::Missing => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer <token>)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
        Auth::Wrong => Err(error(
            StatusCode::FORBIDDEN,
            if control.admin_token_configured() {
                "wrong bearer token"
            } else {
                "no admin token configured (set the admin_token_env variable); mutations are disabled"
            },
        )),
    }
}
