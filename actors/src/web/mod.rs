//! The dashboard: an HTTP server (actix-web) serving the dashboard's static page, the
//! JSON API it calls and Prometheus metrics — the contract is `docs/api.md`.
//!
//! Every `/api/…` request and `/metrics` need the node's bearer token ([`auth`]). The
//! handlers never write SQL: they ask the node's Supervisor (scheduling, cancelling,
//! retrying, running a scheduled task now) or call the store.
//!
//! ```no_run
//! # async fn example(node: actix::Addr<warren_actors::Supervisor>) -> std::io::Result<()> {
//! use warren_actors::web::{generate_token, Dashboard, WebState};
//! let token = generate_token();
//! let state = WebState::for_node(node, &token).await.expect("node context");
//! let dashboard = Dashboard::start(state, "127.0.0.1:4900".parse().unwrap())?;
//! println!("dashboard: http://{}/#token={token}", dashboard.addr());
//! # Ok(()) }
//! ```

mod assets;
mod auth;
mod error;
mod input;
mod metrics;
mod nodes;
mod openapi;
mod pauses;
mod queue;
mod scheduled;
mod tasks;

pub use error::ApiError;

use crate::messages::GetNodeContext;
use crate::metrics::Metrics;
use crate::supervisor::Supervisor;
use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use warren::store::Store;

/// Largest JSON body an action accepts.
const MAX_BODY_BYTES: usize = 4 << 20;

/// The policy of every answer: the page's own script, style sheets and images only
/// (plus `data:` images), and no framing by other sites.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'";

/// Why the dashboard could not be set up for a node.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The node's Supervisor did not answer (it stopped).
    #[error("the node did not answer: {0}")]
    Node(#[from] actix::MailboxError),
}

/// What the dashboard's handlers share: the node and the token.
#[derive(Clone)]
pub struct WebState {
    /// The node's Supervisor (scheduling, cancelling, retrying, running now, runners).
    pub supervisor: Addr<Supervisor>,
    /// The node's store (queries, and the actions the Supervisor is not needed for).
    pub store: Store,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// The node's name.
    pub node: String,
    /// The bearer token every API request must present.
    pub token: Arc<str>,
    /// The node's maintenance zone offset in minutes (for enabling scheduled tasks):
    /// the node's own, so the dashboard and the node always agree.
    pub maintenance_offset: u32,
}

impl WebState {
    /// The state for serving the node of `supervisor` with `token`.
    pub async fn for_node(
        supervisor: Addr<Supervisor>,
        token: &str,
    ) -> Result<WebState, DashboardError> {
        let context = supervisor.send(GetNodeContext).await?;
        Ok(WebState {
            supervisor,
            store: context.store,
            metrics: context.metrics,
            node: context.node,
            token: token.into(),
            maintenance_offset: context.maintenance_offset,
        })
    }
}

/// A new random token: 32 bytes, hex-encoded.
pub fn generate_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The dashboard's application: static files, the API and `/metrics`.
pub fn app(
    state: WebState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json = web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|e, _| ApiError::from(e).into());
    App::new()
        .app_data(web::Data::new(state))
        .app_data(json)
        .wrap(
            DefaultHeaders::new()
                .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .add((header::REFERRER_POLICY, "no-referrer")),
        )
        .route("/", web::get().to(assets::index))
        .route("/assets/{name}", web::get().to(assets::asset))
        .service(
            web::resource("/metrics")
                .wrap(from_fn(auth::guard))
                .route(web::get().to(metrics::metrics))
                .default_service(web::to(not_allowed)),
        )
        .service(
            web::scope("/api")
                .wrap(from_fn(auth::guard))
                .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
                .service(
                    web::resource("/tasks")
                        .route(web::get().to(tasks::list))
                        .route(web::post().to(tasks::schedule))
                        .default_service(web::to(not_allowed)),
                )
                // Before `/tasks/{id}`, which would take these names for ids.
                .service(single("/tasks/count", web::get().to(tasks::count)))
                .service(single("/tasks/bulk", web::post().to(tasks::bulk)))
                .service(single("/tasks/{id}", web::get().to(tasks::show)))
                .service(single("/tasks/{id}/runs", web::get().to(tasks::runs)))
                .service(single("/tasks/{id}/retry", web::post().to(tasks::retry)))
                .service(single(
                    "/tasks/{id}/reschedule",
                    web::post().to(tasks::reschedule),
                ))
                .service(single("/tasks/{id}/cancel", web::post().to(tasks::cancel)))
                .service(single("/tasks/{id}/delete", web::post().to(tasks::delete)))
                .service(single(
                    "/tasks/{id}/duplicate",
                    web::post().to(tasks::duplicate),
                ))
                .service(single("/counts", web::get().to(queue::counts)))
                .service(single("/throughput", web::get().to(queue::throughput)))
                .service(single("/scheduled", web::get().to(scheduled::list)))
                .service(single(
                    "/scheduled/{tag}/run",
                    web::post().to(scheduled::run),
                ))
                .service(single(
                    "/scheduled/{tag}/enable",
                    web::post().to(scheduled::enable),
                ))
                .service(single(
                    "/scheduled/{tag}/disable",
                    web::post().to(scheduled::disable),
                ))
                .service(single("/clusters", web::get().to(pauses::list)))
                .service(single(
                    "/clusters/{name}/pause",
                    web::post().to(pauses::pause_cluster),
                ))
                .service(single(
                    "/clusters/{name}/resume",
                    web::post().to(pauses::resume_cluster),
                ))
                .service(single(
                    "/types/{name}/pause",
                    web::post().to(pauses::pause_type),
                ))
                .service(single(
                    "/types/{name}/resume",
                    web::post().to(pauses::resume_type),
                ))
                .service(single("/nodes", web::get().to(nodes::nodes)))
                .service(single("/overview", web::get().to(nodes::overview)))
                .service(single("/openapi.json", web::get().to(openapi::openapi)))
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found))
}

/// A resource with one route; other methods get a JSON 405.
fn single(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(not_allowed))
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!("no such page: {}", req.path())))
}

async fn not_allowed(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// A running dashboard server.
pub struct Dashboard {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Dashboard {
    /// Binds `listen` and serves the dashboard on the current actix system, until
    /// [`Dashboard::stop`]. The process's signals are left to the caller.
    pub fn start(state: WebState, listen: SocketAddr) -> std::io::Result<Dashboard> {
        let server = HttpServer::new(move || app(state.clone()))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(5)
            .bind(listen)?;
        let addr = server.addrs().first().copied().unwrap_or(listen);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Dashboard { addr, handle })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and lets requests in flight finish (at most 5 s).
    pub async fn stop(&self) {
        let stopping = self.handle.stop(true);
        let _ = actix_rt::time::timeout(Duration::from_secs(10), stopping).await;
    }
}
