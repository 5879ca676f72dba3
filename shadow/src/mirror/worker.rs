//! The shadow thread: mirror jobs from the queue, at most `concurrency` exchanges at once,
//! each bounded by `timeout_ms`; the comparison, noise learning, outcome counting and the
//! mismatch record handed to the store's writer thread. Also the once-a-second harvest of the
//! routes' outcome counts into the store.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use ficus_core::SharedClock;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::mpsc;

use super::job::{is_safe, report, MirrorJob};
use super::route::ShadowRoute;
use crate::capture::{CapturedBody, CapturedResponse, Side};
use crate::compare::{compare, DiffKind};
use crate::metrics::Outcome;
use crate::noise::{self, NoiseBook};
use crate::redact::Redactor;
use crate::store::{now_ms, MismatchRecord, Op, StoredBody, StoredResponse};

/// The marker header every mirrored request carries.
pub use ficus_core::headers::SHADOW as SHADOW_HEADER;
/// The idempotency header mirrored writes carry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Request headers not copied to a mirror request besides the hop-by-hop ones
/// ([`ficus_core::headers::HOP_BY_HOP`]): those the client recomputes for the new body and
/// target.
const NOT_COPIED: &[&str] = &["host", "content-length", "expect"];

/// State shared by the handle and the worker thread.
pub(super) struct Shared {
    pub(super) store: mpsc::Sender<Op>,
    pub(super) pending: AtomicUsize,
    pub(super) closed: AtomicBool,
    /// Every route built, for harvesting their counts.
    pub(super) routes: Mutex<Vec<Weak<ShadowRoute>>>,
    pub(super) noise: NoiseBook,
    pub(super) redactor: Redactor,
    pub(super) max_body_bytes: usize,
    pub(super) timeout: Duration,
    /// Where the breakers and the exchanges' durations read the time.
    pub(super) clock: SharedClock,
    /// How the client reaches the backends (TLS for https:// ones).
    pub(super) connector: super::connector::Connector,
}

impl Shared {
    /// Takes every route's counts since the last harvest, as one store write.
    pub(super) fn harvest(&self) -> Option<Op> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|w| w.strong_count() > 0);
        let counts: Vec<_> = routes
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|r| r.take_counts())
            .collect();
        (!counts.is_empty()).then(|| Op::Counts {
            counts,
            time_ms: now_ms(),
        })
    }
}

/// `base` (scheme, authority, optional path prefix) joined with `target`'s path and query.
fn join(base: &Uri, target: &Uri) -> Result<Uri, http::Error> {
    let pq = target.path_and_query().map_or("/", |pq| pq.as_str());
    let prefix = base.path().trim_end_matches('/');
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(format!("{prefix}{pq}").parse()?);
    Ok(Uri::from_parts(parts)?)
}

type HttpClient = Client<super::connector::Connector, Full<Bytes>>;

pub(super) async fn run_worker(
    mut rx: mpsc::Receiver<Box<MirrorJob>>,
    shared: Arc<Shared>,
    concurrency: usize,
) {
    let connector = shared.connector.clone();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let ticker = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Some(op) = ticker.harvest() {
                let _ = ticker.store.send(op).await;
            }
        }
    });
    while let Some(job) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (shared, client) = (shared.clone(), client.clone());
        tokio::spawn(async move {
            process(&shared, &client, *job).await;
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
    // Closed: wait for what is in flight.
    let _ = permits.acquire_many(concurrency as u32).await;
    if let Some(op) = shared.harvest() {
        let _ = shared.store.send(op).await;
    }
}

/// The request sent to `side` for `job`.
fn mirror_request(job: &MirrorJob, side: Side) -> Result<Request<Full<Bytes>>, http::Error> {
    let uri = join(job.route.base(side), &job.uri)?;
    let mut req = Request::builder()
        .method(job.method.clone())
        .uri(uri)
        .body(Full::new(job.request_body.to_bytes()))?;
    let connection_listed: Vec<String> = job
        .request_headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let headers = req.headers_mut();
    for (name, value) in &job.request_headers {
        let n = name.as_str();
        if NOT_COPIED.contains(&n)
            || ficus_core::headers::is_hop_by_hop(n)
            || connection_listed.iter().any(|c| c == n)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(SHADOW_HEADER, HeaderValue::from_static("1"));
    if !is_safe(&job.method) && !headers.contains_key(IDEMPOTENCY_KEY) {
        let key = HeaderValue::from_str(&job.request_id)?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
    }
    Ok(req)
}

/// One exchange under the time limit; the body is read up to `limit` bytes.
async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    limit: usize,
    clock: &SharedClock,
) -> (Result<CapturedResponse, String>, Duration) {
    let started = clock.now();
    let work = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let (parts, mut body) = resp.into_parts();
        let mut captured = CapturedBody::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| error_chain(&e))?;
            if let Some(data) = frame.data_ref() {
                captured.push(data, limit);
                if captured.is_truncated() {
                    break;
                }
            }
        }
        Ok(CapturedResponse {
            status: parts.status,
            headers: parts.headers,
            body: captured,
        })
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    };
    (result, clock.now().saturating_duration_since(started))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn process(shared: &Shared, client: &HttpClient, mut job: MirrorJob) {
    let route = job.route.clone();
    let mirror_side = job.primary_side.other();
    let mirror_req = match mirror_request(&job, mirror_side) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(route = %route.name, error = %e, "shadow: cannot build mirror request");
            route.record(Outcome::Error);
            job.report(None, Outcome::Error);
            return;
        }
    };
    let probe = job.method == Method::GET
        && route.learn_noise > 0.0
        && rand::random::<f64>() < route.learn_noise;
    let (limit, timeout, clock) = (shared.max_body_bytes, shared.timeout, &shared.clock);
    let ((mirrored, took), probed) = if probe {
        let probe_req = mirror_request(&job, job.primary_side).ok();
        let probe_fut = async {
            match probe_req {
                Some(r) => Some(exchange(client, r, timeout, limit, clock).await.0),
                None => None,
            }
        };
        tokio::join!(
            exchange(client, mirror_req, timeout, limit, clock),
            probe_fut
        )
    } else {
        (
            exchange(client, mirror_req, timeout, limit, clock).await,
            None,
        )
    };
    route.metrics.duration.observe(took.as_secs_f64());
    let breaker = route.breaker(mirror_side);
    let mirror = match mirrored {
        Ok(m) => {
            breaker.succeeded();
            m
        }
        Err(e) => {
            tracing::debug!(route = %route.name, side = mirror_side.as_str(), error = %e, "shadow: mirror request failed");
            if let Some(pause) = breaker.failed() {
                tracing::warn!(
                    route = %route.name,
                    side = mirror_side.as_str(),
                    error = %e,
                    "shadow: mirror side keeps failing; pausing mirroring to it for {pause} ms"
                );
            }
            route.record(Outcome::Error);
            job.report(None, Outcome::Error);
            return;
        }
    };
    // Noise first, so the very exchange that revealed it is already judged with it. A probe
    // answered with another status says the resource changed in between (or the side is
    // flaky), not which fields are noisy: it teaches nothing, and status is never noise.
    if let Some(Ok(second)) =
        probed.filter(|p| matches!(p, Ok(s) if s.status == job.primary.status))
    {
        let observed = noise::observe(&compare(&route.rules, &job.primary, &second));
        shared.noise.learn(&route.name, &observed);
        let op = Op::Noise {
            route: route.name.clone(),
            observed,
            time_ms: now_ms(),
        };
        let _ = shared.store.send(op).await;
    }
    let (legacy, new) = match job.primary_side {
        Side::Legacy => (&job.primary, &mirror),
        Side::New => (&mirror, &job.primary),
    };
    let cmp = compare(&route.rules, legacy, new);
    let diff_truncated = cmp.truncated;
    let (real, noise_count) = shared.noise.split(&route.name, cmp.entries);
    let outcome = match (real.is_empty(), noise_count) {
        (true, 0) => Outcome::Match,
        (true, _) => Outcome::Noise,
        (false, _) => Outcome::Mismatch,
    };
    route.record(outcome);
    report(&mut job.on_done, Some(mirror.status), outcome);
    if outcome != Outcome::Mismatch {
        return;
    }
    let mut kinds: Vec<DiffKind> = real.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        route.metrics.count_kind(k);
    }
    let record = build_record(shared, &job, legacy, new, real, diff_truncated);
    let _ = shared.store.send(Op::Mismatch(Box::new(record))).await;
}

/// The stored form of a mismatch: redacted, bodies cut.
fn build_record(
    shared: &Shared,
    job: &MirrorJob,
    legacy: &CapturedResponse,
    new: &CapturedResponse,
    mut diff: Vec<crate::DiffEntry>,
    diff_truncated: bool,
) -> MismatchRecord {
    let r = &shared.redactor;
    let content_type = |h: &HeaderMap| {
        h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = |b: &CapturedBody, h: &HeaderMap| {
        let mut stored = StoredBody::cut(r.body(&b.to_bytes(), content_type(h).as_deref()));
        stored.truncated |= b.is_truncated();
        stored
    };
    let response = |resp: &CapturedResponse| StoredResponse {
        status: resp.status.as_u16(),
        headers: r.headers(&resp.headers),
        body: body(&resp.body, &resp.headers),
    };
    r.entries(&mut diff);
    MismatchRecord {
        id: 0,
        time_ms: now_ms(),
        route: job.route.name.to_string(),
        method: job.method.to_string(),
        path: r.path_and_query(job.uri.path_and_query().map_or("/", |pq| pq.as_str())),
        request_id: job.request_id.clone(),
        primary: job.primary_side,
        request_headers: r.headers(&job.request_headers),
        request_body: body(&job.request_body, &job.request_headers),
        legacy: response(legacy),
        new: response(new),
        diff,
        diff_truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_and_target() {
        let base: Uri = "http://127.0.0.1:8001".parse().unwrap();
        let t: Uri = "/api/tasks/?x=1".parse().unwrap();
        assert_eq!(
            join(&base, &t).unwrap().to_string(),
            "http://127.0.0.1:8001/api/tasks/?x=1"
        );
        let base: Uri = "http://h:1/prefix/".parse().unwrap();
        assert_eq!(
            join(&base, &t).unwrap().to_string(),
            "http://h:1/prefix/api/tasks/?x=1"
        );
    }
}
