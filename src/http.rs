//! The admin HTTP server: `/metrics` for Prometheus, `/healthz` and `/readyz`
//! for the orchestrator, and `/customers/{id}`, the read-only look-up a
//! customer-success agent uses to see why a customer is at risk.
//!
//! Nothing here changes state: every route is a `GET` (axum answers other
//! methods with 405). The pipeline is reached only through [`AdminSource`],
//! so the server is tested with a fake and knows nothing of Kafka.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use prometheus::IntCounter;
use serde::Serialize;
use serde_json::json;
use tokio::{net::TcpListener, sync::Semaphore};

use crate::{
    channel,
    config::CoreConfig,
    metrics::Metrics,
    outreach,
    pb::{self, Channel, Outcome, Playbook},
    population::PopulationModel,
    score::{self, Contribution, Level, Reason},
    signals::Context,
    state::CustomerState,
    time::{rfc3339, Timestamp},
};

/// Name of the counter of refused `/customers` requests. Registered by
/// [`router`] because the server, not the pipeline, sees these requests.
pub const UNAUTHORIZED_METRIC: &str = "churnwatch_http_unauthorized_total";

/// How long a handler waits for the pipeline. The pipeline holds its engine
/// lock through a whole changelog restore, so an answer may not come soon;
/// a probe is better told "not ready" than left hanging.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most pipeline calls under way at once. A call stuck behind a restore keeps
/// its blocking thread until the lock is free; the bound stops probes and
/// look-ups from piling up threads meanwhile.
const SOURCE_CALLS: usize = 4;

/// What the admin server may expose (from the service's `[http]` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Serve `/customers/{id}` (it shows personal data; turn it off where
    /// the admin port is reachable by more than the support team).
    pub customers_endpoint: bool,
    /// When set, `/customers/{id}` requires `Authorization: Bearer <token>`.
    /// `/metrics`, `/healthz` and `/readyz` stay open: scrapers and probes
    /// carry no token and show no customer data. An empty token refuses
    /// every request (an empty secret file is a mistake, not "no auth").
    pub bearer_token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            customers_endpoint: true,
            bearer_token: None,
        }
    }
}

/// What the admin server asks of the running pipeline.
pub trait AdminSource: Send + Sync + 'static {
    /// Ok with the text of `/readyz`'s 200 when the instance should receive
    /// traffic, otherwise the reason ([`crate::readiness::Readiness`]). Must
    /// not block: the handler calls it on the async worker, so the probe
    /// answers at once whatever the pipeline is doing.
    fn readiness(&self) -> Result<String, String>;
    /// May block (it takes the pipeline's locks); the server calls it off
    /// the async workers, bounded in time and concurrency.
    /// The current view of a customer this instance owns; `None` when the
    /// customer is unknown or owned by another instance.
    fn customer(&self, id: &str) -> Option<CustomerView>;
}

/// A customer as `/customers/{id}` shows it: the current risk with its
/// reasons, the profile facts behind them and the last outreach. In JSON
/// the names and enum spellings are proto3 JSON's, as in `OutreachRequested`
/// (`scoredAt`, `RISK_LEVEL_HIGH`, `CHANNEL_EMAIL`, `WIN_BACK`,
/// `OUTCOME_REPLIED`); absent values are `null`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub customer_id: String,
    /// The time the risk below is computed at (RFC 3339).
    pub scored_at: String,
    pub risk: f64,
    #[serde(serialize_with = "proto_json::level")]
    pub level: Level,
    /// Largest contribution first.
    pub reasons: Vec<Reason>,
    /// Every term of the risk's log-odds (bias, the model's log-odds, each
    /// signal): coefficient, value and their product; they sum to logit(risk).
    pub contributions: Vec<Contribution>,
    /// Where the coefficients came from: `learned`, `prior` or `fixed`.
    pub coefficients: &'static str,
    /// Short channel name (`email`), if the customer has used any.
    #[serde(serialize_with = "proto_json::channel")]
    pub preferred_channel: Option<&'static str>,
    pub profile: ProfileView,
    pub last_outreach: Option<OutreachView>,
    /// When the silence timer looks at this customer again (RFC 3339).
    pub next_check_at: Option<String>,
}

/// The profile summary, as every outreach carries it (`CustomerProfile`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub tenure_days: u32,
    /// Start of the day of the last activity (RFC 3339).
    #[serde(rename = "lastActivityAt")]
    pub last_activity: Option<String>,
    pub open_tickets: u32,
    pub lifetime_value: f64,
    pub purchases: u32,
    pub last_nps: Option<i32>,
    pub last_csat: Option<i32>,
    #[serde(rename = "subscriptionPlan")]
    pub plan: Option<String>,
    pub renews_at: Option<String>,
    /// Journey stage: new, active, at_risk, lapsed or won_back.
    pub stage: String,
}

/// The last outreach sent to the customer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutreachView {
    #[serde(rename = "outreachId")]
    pub id: String,
    pub decided_at: String,
    /// Playbook as written in the configuration (`win_back`).
    #[serde(serialize_with = "proto_json::playbook")]
    pub playbook: String,
    #[serde(serialize_with = "proto_json::channel_name")]
    pub channel: &'static str,
    /// Last outcome reported (`replied`), `None` while none came back.
    #[serde(serialize_with = "proto_json::outcome")]
    pub outcome: Option<&'static str>,
}

/// The proto3 JSON spellings of the view's enums (the Rust values keep the
/// short names the demo and the metrics use).
mod proto_json {
    use serde::Serializer;

    use crate::score::Level;

    pub fn level<S: Serializer>(l: &Level, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("RISK_LEVEL_{}", l.as_str().to_ascii_uppercase()))
    }

    pub fn channel_name<S: Serializer>(c: &&'static str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("CHANNEL_{}", c.to_ascii_uppercase()))
    }

    pub fn channel<S: Serializer>(c: &Option<&'static str>, s: S) -> Result<S::Ok, S::Error> {
        match c {
            Some(c) => channel_name(c, s),
            None => s.serialize_none(),
        }
    }

    pub fn playbook<S: Serializer>(p: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.to_ascii_uppercase())
    }

    pub fn outcome<S: Serializer>(o: &Option<&'static str>, s: S) -> Result<S::Ok, S::Error> {
        match o {
            Some(o) => s.serialize_str(&format!("OUTCOME_{}", o.to_ascii_uppercase())),
            None => s.serialize_none(),
        }
    }
}

/// The view of a customer from their state snapshot, scored at `now`.
///
/// `now` should be the time the pipeline scores with (the owning partition's
/// stream time, or the wall clock in live mode). `None` when the snapshot
/// does not decode (written by a newer build).
pub fn customer_view(
    id: &str,
    snap: &pb::CustomerState,
    core: &CoreConfig,
    model: &PopulationModel,
    now: Timestamp,
) -> Option<CustomerView> {
    let state = match CustomerState::from_snapshot(snap) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "customer snapshot does not decode");
            return None;
        }
    };
    // Scores never go back in time: a clock behind this customer's newest
    // event or last score would show an older risk than the pipeline acts on.
    let at = now.max(state.last_event_at).max(state.score.scored_at);
    let ctx = Context::new(core, model);
    let sc = score::score(&state, at, &ctx);
    let p = outreach::profile(&state, sc.level, at);
    let preferred = Channel::try_from(p.preferred_channel).unwrap_or(Channel::Unspecified);
    let last_outreach = state
        .outreach
        .as_ref()
        .and_then(|h| h.last.as_ref())
        .map(|l| OutreachView {
            id: l.outreach_id.clone(),
            decided_at: rfc3339(l.decided_at),
            playbook: playbook_name(l.playbook),
            channel: channel::name(l.channel),
            outcome: outcome_name(l.outcome),
        });
    Some(CustomerView {
        customer_id: id.to_owned(),
        scored_at: rfc3339(at),
        risk: sc.risk,
        level: sc.level,
        reasons: sc.reasons,
        contributions: sc.contributions,
        coefficients: sc.coefficients,
        preferred_channel: (preferred != Channel::Unspecified).then(|| channel::name(preferred)),
        profile: ProfileView {
            tenure_days: p.tenure_days,
            last_activity: p.last_activity_at.map(|t| rfc3339(t.seconds)),
            open_tickets: p.open_tickets,
            lifetime_value: p.lifetime_value,
            purchases: p.purchases,
            last_nps: p.last_nps,
            last_csat: p.last_csat,
            plan: (!p.subscription_plan.is_empty()).then_some(p.subscription_plan),
            renews_at: p.renews_at.map(|t| rfc3339(t.seconds)),
            stage: p.stage,
        },
        last_outreach,
        next_check_at: (state.score.next_check_at != 0).then(|| rfc3339(state.score.next_check_at)),
    })
}

fn playbook_name(p: Playbook) -> String {
    p.as_str_name().to_ascii_lowercase()
}

/// The outcome's name as the metrics label it (`replied`); 0 = none yet.
fn outcome_name(n: i32) -> Option<&'static str> {
    match Outcome::try_from(n).ok()? {
        Outcome::Unspecified => None,
        Outcome::Delivered => Some("delivered"),
        Outcome::Opened => Some("opened"),
        Outcome::Replied => Some("replied"),
        Outcome::Converted => Some("converted"),
        Outcome::Ignored => Some("ignored"),
        Outcome::Bounced => Some("bounced"),
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    source: Arc<dyn AdminSource>,
    token: Option<Arc<str>>,
    /// `None` only if the counter could not be made (it cannot: its name is
    /// a valid constant); requests are still refused then, just not counted.
    unauthorized: Option<IntCounter>,
    permits: Arc<Semaphore>,
}

/// Why a pipeline call gave no answer.
enum SourceError {
    Busy,
    TimedOut,
    Panicked,
}

impl SourceError {
    fn text(&self) -> String {
        match self {
            SourceError::Busy => {
                format!("busy: {SOURCE_CALLS} earlier requests still wait for the pipeline")
            }
            SourceError::TimedOut => {
                format!(
                    "the pipeline did not answer within {} s (restoring state?)",
                    SOURCE_TIMEOUT.as_secs()
                )
            }
            SourceError::Panicked => "the pipeline look-up panicked".to_owned(),
        }
    }
}

impl AdminState {
    /// Runs `f` on the blocking pool (it may wait for pipeline locks), bounded
    /// in concurrency and in time.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn AdminSource) -> T + Send + 'static,
    ) -> Result<T, SourceError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| SourceError::Busy)?;
        let source = self.source.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Held until the call returns, even after the handler gave up.
            let _permit = permit;
            f(source.as_ref())
        });
        match tokio::time::timeout(SOURCE_TIMEOUT, task).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(SourceError::Panicked),
            Err(_) => Err(SourceError::TimedOut),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match given {
            Some(token) if !expected.is_empty() => {
                same_secret(token.as_bytes(), expected.as_bytes())
            }
            _ => false,
        }
    }
}

/// Compares every byte whatever the first difference, so the response time
/// does not tell a guesser how much of the token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized_counter(metrics: &Metrics) -> Option<IntCounter> {
    let counter = match IntCounter::new(
        UNAUTHORIZED_METRIC,
        "Requests to /customers refused for a missing or wrong bearer token.",
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create {UNAUTHORIZED_METRIC}");
            return None;
        }
    };
    match metrics.registry.register(Box::new(counter.clone())) {
        // AlreadyReg: a second router over the same registry (tests); the
        // first router's counter is the one exported.
        Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
        Err(e) => tracing::warn!(error = %e, "cannot register {UNAUTHORIZED_METRIC}"),
    }
    Some(counter)
}

/// The admin routes. `/customers/{id}` is left out when the configuration
/// disables it (it then answers 404 like any unknown path).
pub fn router(metrics: Arc<Metrics>, source: Arc<dyn AdminSource>, cfg: AdminConfig) -> Router {
    let state = AdminState {
        unauthorized: unauthorized_counter(&metrics),
        metrics,
        source,
        token: cfg.bearer_token.map(Arc::from),
        permits: Arc::new(Semaphore::new(SOURCE_CALLS)),
    };
    let mut r = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if cfg.customers_endpoint {
        r = r.route("/customers/{id}", get(customer));
    }
    r.with_state(state)
}

/// Limits on the admin server's connections (`http.header_read_timeout`,
/// `http.idle_timeout`, `http.max_connections`), so slow or idle clients
/// cannot starve a liveness probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time a client has to send a whole request head, counted from when
    /// the server starts waiting for it (a new connection, or the previous
    /// response on a kept-alive one).
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is
    /// closed (a stalled body or a client that stops reading).
    pub idle_timeout: Duration,
    /// Connections open at once; a new one beyond it closes the oldest.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// The open connections, oldest first; dropping a sender closes its
/// connection.
#[derive(Default)]
struct Conns(std::sync::Mutex<std::collections::BTreeMap<u64, tokio::sync::oneshot::Sender<()>>>);

impl Conns {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, tokio::sync::oneshot::Sender<()>>>
    {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers connection `id`, closing the oldest ones beyond `cap - 1`.
    fn open(&self, id: u64, cap: usize) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut map = self.lock();
        while map.len() >= cap.max(1) {
            map.pop_first();
        }
        map.insert(id, tx);
        rx
    }

    fn close_oldest(&self) {
        self.lock().pop_first();
    }

    fn closed(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Serves until `shutdown` completes, then lets requests in flight finish.
///
/// Each connection is HTTP/1.1 with hyper's header-read timeout, an idle
/// timeout of its own (no byte read or written) and a cap on connections:
/// at the cap, a new connection closes the oldest, so a client holding many
/// connections open (idle, or sending a request a byte at a time) cannot
/// keep a probe out. A failed accept (out of file descriptors) closes the
/// oldest connection too.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Arc::new(Conns::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin HTTP: accept failed; closing the oldest connection");
                    conns.close_oldest();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let id = next_id;
        let evicted = conns.open(id, limits.max_connections);
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        let conns = conns.clone();
        let stopping = stopping.clone();
        tasks.spawn(async move {
            connection(stream, svc, limits, evicted, stopping).await;
            conns.closed(id);
        });
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One connection, until it ends, is idle too long, is closed to make room,
/// or (at shutdown) has finished the request in flight.
async fn connection<S>(
    stream: tokio::net::TcpStream,
    svc: S,
    limits: ConnLimits,
    mut evicted: tokio::sync::oneshot::Receiver<()>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let started = tokio::time::Instant::now();
    let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let io = hyper_util::rt::TokioIo::new(Tracked {
        inner: stream,
        started,
        last: last.clone(),
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let idle = async {
        loop {
            let at = started
                + Duration::from_millis(last.load(std::sync::atomic::Ordering::Relaxed))
                + limits.idle_timeout;
            if tokio::time::Instant::now() >= at {
                break;
            }
            tokio::time::sleep_until(at).await;
        }
    };
    tokio::pin!(idle);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = &mut idle => break,
            _ = &mut evicted => break,
            _ = stopping.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's stream that notes when bytes last moved (milliseconds
/// after `started`), for the idle timeout.
struct Tracked {
    inner: tokio::net::TcpStream,
    started: tokio::time::Instant,
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Tracked {
    fn moved(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn metrics_text(State(st): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        st.metrics.render(),
    )
        .into_response()
}

/// The process is alive and serving; says nothing about Kafka (a liveness
/// probe that failed on a broker outage would restart healthy pods).
async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<AdminState>) -> Response {
    match st.source.readiness() {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

fn json_error(status: StatusCode, text: String) -> Response {
    (status, Json(json!({ "error": text }))).into_response()
}

async fn customer(
    State(st): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !st.authorized(&headers) {
        if let Some(c) = &st.unauthorized {
            c.inc();
        }
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".to_owned(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let lookup = id.clone();
    match st.call(move |s| s.customer(&lookup)).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => json_error(
            StatusCode::NOT_FOUND,
            format!("customer {id} is not owned by this instance (or unknown)"),
        ),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.text()),
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Mutex};

    use axum::{body::Body, http::Request};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{events, processor::Processor, time::SECS_PER_DAY};

    const READY: &str = "ready: owns partitions [0]";
    const T0: Timestamp = 1_767_225_600; // 2026-01-01

    struct Fake {
        ready: Mutex<Result<String, String>>,
        customers: HashMap<String, CustomerView>,
    }

    impl AdminSource for Fake {
        fn readiness(&self) -> Result<String, String> {
            self.ready
                .lock()
                .map(|r| r.clone())
                .unwrap_or_else(|p| p.into_inner().clone())
        }
        fn customer(&self, id: &str) -> Option<CustomerView> {
            self.customers.get(id).cloned()
        }
    }

    /// A weekly buyer, silent for eight weeks: at risk, with reasons.
    fn silent_weekly_buyer() -> CustomerView {
        let core = Arc::new(CoreConfig::default());
        let model = Arc::new(PopulationModel::prior(&core.model));
        let mut p = Processor::new(core.clone(), model.clone());
        let mut out = Vec::new();
        for week in 0..12 {
            let at = T0 + week * 7 * SECS_PER_DAY;
            let ev = events::purchase(&format!("e{week}"), "c-1", at, 40.0);
            if let Err(e) = p.process(&ev, None, &mut out) {
                panic!("{e}");
            }
        }
        let state = p.get("c-1").unwrap_or_else(|| panic!("c-1 folded"));
        let snap = state.to_snapshot("c-1");
        let now = T0 + (11 * 7 + 56) * SECS_PER_DAY;
        customer_view("c-1", &snap, &core, &model, now).unwrap_or_else(|| panic!("view"))
    }

    fn admin(cfg: AdminConfig, ready: Result<String, String>) -> (Router, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
        let fake = Fake {
            ready: Mutex::new(ready),
            customers: HashMap::from([("c-1".to_owned(), silent_weekly_buyer())]),
        };
        (router(metrics.clone(), Arc::new(fake), cfg), metrics)
    }

    async fn get_with(
        app: &Router,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"));
        let resp = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
        get_with(app, path, None).await
    }

    fn token(t: &str) -> AdminConfig {
        AdminConfig {
            customers_endpoint: true,
            bearer_token: Some(t.to_owned()),
        }
    }

    #[test]
    fn the_view_explains_a_silent_customer() {
        let v = silent_weekly_buyer();
        assert!(v.level >= Level::Medium, "{v:?}");
        assert_eq!(
            v.reasons.first().map(|r| r.code.as_str()),
            Some("silence"),
            "{v:?}"
        );
        assert!(
            v.reasons[0].evidence.contains("day"),
            "{}",
            v.reasons[0].evidence
        );
        assert_eq!(v.profile.purchases, 12);
        assert!((v.profile.lifetime_value - 480.0).abs() < 1e-9);
        assert_eq!(v.profile.tenure_days, 11 * 7 + 56);
        assert_eq!(
            v.profile.last_activity.as_deref(),
            Some("2026-03-19T00:00:00Z")
        );
        assert_eq!(v.scored_at, "2026-05-14T00:00:00Z");
        assert_eq!(v.profile.plan, None);
        assert!(v.last_outreach.is_none());
    }

    /// The JSON of `/customers/{id}` speaks proto3 JSON: camelCase names as
    /// in `OutreachRequested`/`CustomerProfile`, enum value names.
    #[test]
    fn the_view_uses_proto3_json_names_and_enum_spellings() {
        let mut v = silent_weekly_buyer();
        v.last_outreach = Some(OutreachView {
            id: "o-1".into(),
            decided_at: "2026-05-01T00:00:00Z".into(),
            playbook: "win_back".into(),
            channel: "email",
            outcome: Some("replied"),
        });
        v.preferred_channel = Some("app");
        let j = serde_json::to_value(&v).unwrap_or_else(|e| panic!("{e}"));
        let keys = |o: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = o
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        assert_eq!(
            keys(&j),
            [
                "coefficients",
                "contributions",
                "customerId",
                "lastOutreach",
                "level",
                "nextCheckAt",
                "preferredChannel",
                "profile",
                "reasons",
                "risk",
                "scoredAt"
            ]
        );
        assert_eq!(
            keys(&j["profile"]),
            [
                "lastActivityAt",
                "lastCsat",
                "lastNps",
                "lifetimeValue",
                "openTickets",
                "purchases",
                "renewsAt",
                "stage",
                "subscriptionPlan",
                "tenureDays"
            ]
        );
        assert_eq!(
            keys(&j["lastOutreach"]),
            ["channel", "decidedAt", "outcome", "outreachId", "playbook"]
        );
        assert_eq!(keys(&j["reasons"][0]), ["code", "contribution", "evidence"]);
        assert_eq!(
            keys(&j["contributions"][0]),
            ["coefficient", "logOdds", "name", "value"]
        );
        assert_eq!(
            j["level"],
            format!("RISK_LEVEL_{}", v.level.as_str().to_ascii_uppercase())
        );
        assert!(j["level"]
            .as_str()
            .is_some_and(|l| pb::RiskLevel::from_str_name(l).is_some()));
        assert_eq!(j["preferredChannel"], "CHANNEL_APP");
        assert_eq!(j["lastOutreach"]["playbook"], "WIN_BACK");
        assert_eq!(j["lastOutreach"]["channel"], "CHANNEL_EMAIL");
        assert_eq!(j["lastOutreach"]["outcome"], "OUTCOME_REPLIED");
        assert!(j["lastOutreach"]["playbook"]
            .as_str()
            .is_some_and(|p| Playbook::from_str_name(p).is_some()));
        assert!(pb::Outcome::from_str_name("OUTCOME_REPLIED").is_some());
        assert!(Channel::from_str_name("CHANNEL_APP").is_some());
    }

    #[tokio::test]
    async fn healthz_says_ok_even_when_not_ready() {
        let (app, _) = admin(
            AdminConfig::default(),
            Err("restoring partitions [3]".into()),
        );
        let (status, _, body) = get(&app, "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn readyz_follows_the_pipeline_and_says_why_not() {
        let (app, _) = admin(AdminConfig::default(), Ok(READY.into()));
        let (status, _, body) = get(&app, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, READY));
        let (app, _) = admin(
            AdminConfig::default(),
            Err("restoring partitions [3]".into()),
        );
        let (status, _, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "restoring partitions [3]");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let (app, metrics) = admin(AdminConfig::default(), Ok(READY.into()));
        metrics
            .events_consumed
            .with_label_values(&["purchase", "0"])
            .inc_by(7);
        let (status, headers, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        assert!(
            body.contains("churnwatch_events_consumed_total{kind=\"purchase\",partition=\"0\"} 7"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE churnwatch_http_unauthorized_total counter"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_customer_is_shown_as_json() {
        let (app, _) = admin(AdminConfig::default(), Ok(READY.into()));
        let (status, headers, body) = get(&app, "/customers/c-1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["customerId"], "c-1");
        assert_eq!(v["reasons"][0]["code"], "silence");
        assert_eq!(v["profile"]["purchases"], 12);
        assert!(v["level"].is_string() && v["risk"].is_f64(), "{body}");
    }

    #[tokio::test]
    async fn an_unknown_customer_is_a_404_that_says_why() {
        let (app, _) = admin(AdminConfig::default(), Ok(READY.into()));
        let (status, _, body) = get(&app, "/customers/c-404").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(
            v["error"],
            "customer c-404 is not owned by this instance (or unknown)"
        );
    }

    #[tokio::test]
    async fn a_disabled_customers_endpoint_is_not_there() {
        let cfg = AdminConfig {
            customers_endpoint: false,
            bearer_token: None,
        };
        let (app, _) = admin(cfg, Ok(READY.into()));
        assert_eq!(get(&app, "/customers/c-1").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&app, "/metrics").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_token_guards_customers_and_refusals_are_counted() {
        let (app, metrics) = admin(token("s3cret"), Ok(READY.into()));
        let (status, headers, _) = get(&app, "/customers/c-1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        assert_eq!(
            get_with(&app, "/customers/c-1", Some("Bearer wrong!"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_with(&app, "/customers/c-1", Some("Basic s3cret"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (status, _, body) = get_with(&app, "/customers/c-1", Some("Bearer s3cret")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            get_with(&app, "/customers/c-1", Some("bearer s3cret"))
                .await
                .0,
            StatusCode::OK
        );
        assert!(metrics
            .render()
            .contains("churnwatch_http_unauthorized_total 3"));
        // Probes and scrapers carry no token.
        assert_eq!(get(&app, "/metrics").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_empty_token_refuses_everyone() {
        let (app, _) = admin(token(""), Ok(READY.into()));
        assert_eq!(
            get_with(&app, "/customers/c-1", Some("Bearer ")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&app, "/customers/c-1").await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn nothing_can_be_changed() {
        let (app, _) = admin(AdminConfig::default(), Ok(READY.into()));
        for (method, path) in [
            ("POST", "/customers/c-1"),
            ("DELETE", "/customers/c-1"),
            ("PUT", "/metrics"),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap_or_else(|e| panic!("{e}"));
            let resp = app
                .clone()
                .oneshot(req)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }

    /// A pipeline stuck behind its lock (as during a long restore) until
    /// released: look-ups wait, readiness is published and answers at once.
    struct Stuck(Mutex<std::sync::mpsc::Receiver<()>>);

    impl AdminSource for Stuck {
        fn readiness(&self) -> Result<String, String> {
            Err("restoring partitions [3]".into())
        }
        fn customer(&self, _: &str) -> Option<CustomerView> {
            if let Ok(rx) = self.0.lock() {
                let _ = rx.recv_timeout(Duration::from_secs(30));
            }
            None
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_pipeline_still_answers_readyz_and_bounds_threads() {
        let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
        let (release, rx) = std::sync::mpsc::channel();
        let app = router(
            metrics,
            Arc::new(Stuck(Mutex::new(rx))),
            AdminConfig::default(),
        );
        let waiting: Vec<_> = (0..SOURCE_CALLS)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { get(&app, "/customers/c-1").await })
            })
            .collect();
        // Give the first calls time to take every permit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _, body) = get(&app, "/customers/c-2").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("busy"), "{body}");
        // Every permit is held by a stuck look-up: the probe answers all the
        // same, so it does not queue behind them.
        let (status, _, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "restoring partitions [3]");
        for w in waiting {
            let (status, _, body) = w.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.contains("did not answer"), "{body}");
        }
        for _ in 0..SOURCE_CALLS {
            let _ = release.send(());
        }
    }

    #[tokio::test]
    async fn serve_stops_when_told() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (app, _) = admin(AdminConfig::default(), Ok(READY.into()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, ConnLimits::default(), async {
            let _ = rx.await;
        }));
        let _ = tx.send(());
        let done = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }
}
