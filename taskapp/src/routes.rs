//! HTTP: maps a request to a [`Service`] call and its result to a JSON response, FastAPI
//! style — `{"detail": ...}` errors, `{"detail":"Not Found"}` for unknown paths and
//! `{"detail":"Method Not Allowed"}` (with `Allow`) for a known path with the wrong method.
//!
//! `/api/tasks` without the trailing slash is served like `/api/tasks/` (FastAPI would
//! redirect; a proxy in front should not have to follow redirects).
//!
//! A write carrying `X-Ficus-Request-Time: <RFC 3339 timestamp>` (or a naive
//! `YYYY-MM-DD HH:MM:SS[.f]`, read as UTC) is performed as of that time instead of the clock:
//! a dual-writing proxy stamps each write once and sends the same value to both sides, so
//! `created_at`, `updated_at`, `last_heartbeat` and note prefixes come out identical. A
//! malformed value is a 422 naming the header; reads ignore it.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Serialize;

use crate::error::TaskError;
use crate::model::Task;
use crate::render::{GroupsJson, Render, TaskJson, TaskListJson};
use crate::request::{self, FromBody};
use crate::service::Service;
use crate::store::Store;
use crate::timestamp::Timestamp;

/// The header a dual-writing proxy stamps on a write: the time to use as "now".
pub(crate) const REQUEST_TIME_HEADER: &str = "x-ficus-request-time";

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Where a path points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Collection,
    Ready,
    CoordinatorData,
    Task(String),
    Action(String, Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Claim,
    Heartbeat,
    UpdateNotes,
    SetStatus,
    Unclaim,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/api/tasks")?;
        if rest.is_empty() || rest == "/" {
            return Some(Route::Collection);
        }
        let rest = rest.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let first = parts.next()?;
        let second = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match (first, second) {
            ("ready", None) => Some(Route::Ready),
            ("coordinator-data", None) => Some(Route::CoordinatorData),
            (id, None) => Some(Route::Task(task_id(id)?)),
            (id, Some(action)) => {
                let action = match action {
                    "claim" => Action::Claim,
                    "heartbeat" => Action::Heartbeat,
                    "update-notes" => Action::UpdateNotes,
                    "set-status" => Action::SetStatus,
                    "unclaim" => Action::Unclaim,
                    _ => return None,
                };
                Some(Route::Action(task_id(id)?, action))
            }
        }
    }

    fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Collection => &[Method::GET, Method::POST],
            Route::Ready | Route::CoordinatorData | Route::Task(_) => &[Method::GET],
            Route::Action(..) => &[Method::POST],
        }
    }
}

/// A percent-decoded, non-empty path segment.
fn task_id(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let id = String::from_utf8(out).ok()?;
    (!id.is_empty()).then_some(id)
}

/// Answers one request.
pub(crate) async fn respond<S, B>(
    svc: &Service<S>,
    render: Render,
    req: Request<B>,
) -> Response<Full<Bytes>>
where
    S: Store,
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let render = render.for_request(req.headers());
    let Some(route) = Route::parse(req.uri().path()) else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    if !route.allowed().contains(req.method()) {
        let mut resp = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        let allow = route
            .allowed()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            resp.headers_mut().insert(ALLOW, v);
        }
        return resp;
    }
    let at =
        if matches!(route, Route::Collection | Route::Action(..)) && req.method() == Method::POST {
            match request_time(req.headers()) {
                Ok(at) => at,
                Err(e) => return failure(e),
            }
        } else {
            None
        };
    match route {
        Route::Collection if req.method() == Method::GET => list(svc.list().await, render),
        Route::Collection => match body::<request::CreateTask, B>(req).await {
            Ok(create) => one(StatusCode::CREATED, svc.create(create, at).await, render),
            Err(resp) => resp,
        },
        Route::Ready => list(svc.ready().await, render),
        Route::CoordinatorData => match svc.coordinator_data().await {
            Ok(groups) => json(StatusCode::OK, &GroupsJson(&groups, render)),
            Err(e) => failure(e),
        },
        Route::Task(id) => one(StatusCode::OK, svc.get(&id).await, render),
        Route::Action(id, Action::Unclaim) => {
            one(StatusCode::OK, svc.unclaim(&id, at).await, render)
        }
        Route::Action(id, action) => {
            let result = match action {
                Action::Claim => match body(req).await {
                    Ok(b) => svc.claim(&id, b, at).await,
                    Err(resp) => return resp,
                },
                Action::Heartbeat => match body(req).await {
                    Ok(b) => svc.heartbeat(&id, b, at).await,
                    Err(resp) => return resp,
                },
                Action::UpdateNotes => match body(req).await {
                    Ok(b) => svc.update_notes(&id, b, at).await,
                    Err(resp) => return resp,
                },
                Action::SetStatus => match body(req).await {
                    Ok(b) => svc.set_status(&id, b, at).await,
                    Err(resp) => return resp,
                },
                Action::Unclaim => svc.unclaim(&id, at).await,
            };
            one(StatusCode::OK, result, render)
        }
    }
}

/// The `X-Ficus-Request-Time` of a write, if it carries one.
fn request_time(headers: &http::HeaderMap) -> Result<Option<Timestamp>, TaskError> {
    let Some(v) = headers.get(REQUEST_TIME_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(Timestamp::parse_request_time)
        .map(Some)
        .ok_or_else(|| {
            TaskError::Invalid(format!(
                "X-Ficus-Request-Time: {:?} is not an RFC 3339 timestamp",
                String::from_utf8_lossy(v.as_bytes())
            ))
        })
}

/// Reads and parses the body; the error is the response to send.
async fn body<T, B>(req: Request<B>) -> Result<T, Response<Full<Bytes>>>
where
    T: FromBody,
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body larger than {MAX_BODY} bytes"),
            ))
        }
        Err(e) => {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                &format!("cannot read request body: {e}"),
            ))
        }
    };
    request::parse(&bytes).map_err(failure)
}

fn one(
    status: StatusCode,
    result: Result<Task, TaskError>,
    render: Render,
) -> Response<Full<Bytes>> {
    match result {
        Ok(t) => json(status, &TaskJson(&t, render)),
        Err(e) => failure(e),
    }
}

fn list(result: Result<Vec<Task>, TaskError>, render: Render) -> Response<Full<Bytes>> {
    match result {
        Ok(tasks) => json(StatusCode::OK, &TaskListJson(&tasks, render)),
        Err(e) => failure(e),
    }
}

fn failure(e: TaskError) -> Response<Full<Bytes>> {
    if let TaskError::Store(msg) = &e {
        tracing::error!(error = %msg, "task store failed");
    }
    detail(e.status(), &e.detail())
}

fn detail(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Detail<'a> {
        detail: &'a str,
    }
    json(status, &Detail { detail })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"detail":"Internal Server Error"}"#.to_vec(),
            )
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        use Route::*;
        assert_eq!(Route::parse("/api/tasks/"), Some(Collection));
        assert_eq!(Route::parse("/api/tasks"), Some(Collection));
        assert_eq!(Route::parse("/api/tasks/ready"), Some(Ready));
        assert_eq!(
            Route::parse("/api/tasks/coordinator-data"),
            Some(CoordinatorData)
        );
        assert_eq!(
            Route::parse("/api/tasks/TASK-1"),
            Some(Task("TASK-1".into()))
        );
        assert_eq!(
            Route::parse("/api/tasks/TASK%2D1%20x/set-status"),
            Some(Action("TASK-1 x".into(), super::Action::SetStatus))
        );
        for bad in [
            "/",
            "/api",
            "/api/tasksx",
            "/api/tasks//claim",
            "/api/tasks/TASK-1/",
            "/api/tasks/TASK-1/bogus",
            "/api/tasks/TASK-1/claim/x",
            "/api/tasks/%zz",
            "/api/tasks/%ff",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
    }
}
