//! A small client of the admin API, used by `ficus rollout` and `ficus rollback` (and handy in
//! tests and the demo). One HTTP/1 connection per call; plain `http://` only.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::control::{HoldStatus, RolloutChange, RouteStatus};

/// Errors of an admin API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin URL is not `http://host:port[/]`.
    #[error("bad admin URL {0:?} (expected http://host:port)")]
    BadUrl(String),
    /// Could not connect or the connection failed.
    #[error("admin API at {url}: {detail}")]
    Transport {
        /// The admin URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The admin API answered with an error status.
    #[error("admin API answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` field of the JSON body, or the body.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer from the admin API: {0}")]
    Decode(String),
}

/// A client of one proxy's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    authority: String,
    token: Option<String>,
    actor: Option<String>,
}

#[derive(Deserialize)]
struct Routes {
    routes: Vec<RouteStatus>,
}

#[derive(Deserialize)]
struct RolledBack {
    rolled_back: Vec<RolloutChange>,
}

impl AdminClient {
    /// `url` like `http://127.0.0.1:9900`; `token` for mutations; `actor` recorded in the audit log.
    pub fn new(
        url: &str,
        token: Option<String>,
        actor: Option<String>,
    ) -> Result<AdminClient, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::BadUrl(url.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::BadUrl(url.to_string()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::BadUrl(url.to_string()))?
            .to_string();
        Ok(AdminClient {
            base: url.trim_end_matches('/').to_string(),
            authority,
            token,
            actor,
        })
    }

    /// `GET /admin/routes`.
    pub async fn routes(&self) -> Result<Vec<RouteStatus>, ClientError> {
        let r: Routes = self.call(Method::GET, "/admin/routes", None).await?;
        Ok(r.routes)
    }

    /// `PUT /admin/routes/{name}/rollout`.
    pub async fn set_rollout(
        &self,
        route: &str,
        percent: f64,
    ) -> Result<RolloutChange, ClientError> {
        let path = format!("/admin/routes/{}/rollout", route);
        self.call(Method::PUT, &path, Some(json!({ "percent": percent })))
            .await
    }

    /// `DELETE /admin/routes/{name}/rollout`: back to the configuration's percentage.
    pub async fn reset_rollout(&self, route: &str) -> Result<RolloutChange, ClientError> {
        let path = format!("/admin/routes/{}/rollout", route);
        self.call(Method::DELETE, &path, None).await
    }

    /// `POST /admin/rollback`: the named routes, or all when `routes` is empty.
    pub async fn rollback(&self, routes: &[String]) -> Result<Vec<RolloutChange>, ClientError> {
        let r: RolledBack = self
            .call(
                Method::POST,
                "/admin/rollback",
                Some(json!({ "routes": routes })),
            )
            .await?;
        Ok(r.rolled_back)
    }

    /// `POST /admin/routes/{name}/hold`: holds the route's writes for at most `max_ms`
    /// (1..=60000), on behalf of this client's actor. A route already held answers 409
    /// ([`ClientError::Status`] naming who holds it since when).
    pub async fn hold(&self, route: &str, max_ms: u64) -> Result<HoldStatus, ClientError> {
        let path = format!("/admin/routes/{}/hold", route);
        let mut body = json!({ "max_ms": max_ms });
        if let Some(a) = &self.actor {
            body["actor"] = json!(a);
        }
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `DELETE /admin/routes/{name}/hold`: releases the route's writes (409 when not held).
    pub async fn release(&self, route: &str) -> Result<HoldStatus, ClientError> {
        let path = format!("/admin/routes/{}/hold", route);
        self.call(Method::DELETE, &path, None).await
    }

    /// `GET /admin/routes/{name}/plan`.
    pub async fn plan_status(&self, route: &str) -> Result<crate::PlanStatus, ClientError> {
        let path = format!("/admin/routes/{}/plan", route);
        self.call(Method::GET, &path, None).await
    }

    /// `POST /admin/routes/{name}/plan/{start|pause|resume|abort}`.
    pub async fn plan(
        &self,
        route: &str,
        command: crate::PlanCommand,
    ) -> Result<crate::PlanStatus, ClientError> {
        let path = format!("/admin/routes/{}/plan/{}", route, command.as_str());
        self.call(Method::POST, &path, None).await
    }

    /// Any call returning JSON.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let transport = |detail: String| ClientError::Transport {
            url: self.base.clone(),
            detail,
        };
        let stream = tokio::net::TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.authority.as_str());
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(a) = &self.actor {
            b = b.header("x-ficus-actor", a.as_str());
        }
        let payload = match body {
            Some(v) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b
            .body(Full::new(payload))
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
