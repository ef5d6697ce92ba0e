//! The HTTP API: routing, and the shared pieces every endpoint uses
//! (error rendering, ruma request parsing, authentication). Cross-cutting
//! concerns (body limits, CORS, metrics) are layers here, not handler code.

use ::ruma::api::Metadata;
use ::ruma::api::path_builder::PathBuilder;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, get, on};
use tower_http::cors::{Any, CorsLayer};

use crate::state::AppState;

pub mod auth;
pub mod client;
pub mod error;
pub mod federation;
pub mod ruma_wrapper;
pub mod synapse_admin;

use error::ApiError;

/// Adds `handler` for every path (legacy `r0` and current) of endpoint `E`.
pub fn route<E, H, T>(router: Router<AppState>, handler: H) -> Router<AppState>
where
    E: Metadata,
    H: Handler<T, AppState>,
    T: 'static,
{
    let Ok(filter) = MethodFilter::try_from(E::METHOD) else {
        return router;
    };
    E::PATH_BUILDER
        .all_paths()
        .fold(router, |r, path| r.route(path, on(filter, handler.clone())))
}

/// The client API router.
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    r = route::<::ruma::api::client::discovery::get_supported_versions::Request, _, _>(
        r,
        client::discovery::versions,
    );
    r = client::rooms::routes(r);
    r = client::receipts::routes(r);
    r = client::presence::routes(r);
    r = route::<::ruma::api::client::sync::sync_events::v3::Request, _, _>(
        r,
        client::sync::sync_events,
    );
    r = r.route(
        "/.well-known/matrix/client",
        get(client::discovery::well_known_client),
    );
    r = client::account::routes(r);
    r = client::user_data::routes(r);
    r = client::directory::routes(r);
    r = client::keys::routes(r);
    if state.config().metrics.enabled && state.config().metrics.listen.is_empty() {
        r = r.route("/metrics", get(crate::metrics::scrape));
    }
    r.fallback(|| async { ApiError::unrecognized(http::StatusCode::NOT_FOUND).into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::unrecognized(http::StatusCode::METHOD_NOT_ALLOWED).into_response()
        })
        .layer(DefaultBodyLimit::max(
            state.config().limits.max_request_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track_http,
        ))
        // Web clients (Element Web) call from another origin.
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any),
        )
        .with_state(state)
}
