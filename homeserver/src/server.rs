//! Starting the server: data directory, signing keys, database and schema,
//! then the listeners, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::storage::Db;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyFileError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server.name is not a valid server name")]
    ServerName,
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Federation(#[from] crate::federation::SetupError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("federation TLS: {0}")]
    TlsConfig(#[from] rustls::Error),
}

/// Everything up to (not including) accepting connections: a ready state.
pub async fn prepare(config: Config) -> Result<AppState, StartError> {
    let server_name =
        ruma::ServerName::parse(&config.server.name).map_err(|_| StartError::ServerName)?;
    std::fs::create_dir_all(&config.server.data_dir).map_err(|source| StartError::DataDir {
        path: config.server.data_dir.display().to_string(),
        source,
    })?;
    let keys = crate::keys::load_or_generate(&config.signing_key_path())?;
    let db = Db::connect_pool(
        &config.database_url(),
        config.database_connections(),
        config.database_min_connections(),
    )
    .await?;
    db.migrate().await?;
    let metrics = Metrics::new()?;
    let federation = crate::federation::FederationService::new(
        &config,
        &server_name,
        &keys,
        db.clone(),
        &metrics,
    )?;
    Ok(AppState::new(
        config,
        server_name,
        db,
        keys,
        metrics,
        federation,
    ))
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let state = prepare(config).await?;
    let client_addr = state.config().listen.client;
    let client = TcpListener::bind(client_addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: client_addr,
            source,
        })?;
    let metrics_listener = match state.config().metrics.listen.as_str() {
        "" => None,
        addr if state.config().metrics.enabled => {
            let addr: SocketAddr = addr.parse().map_err(|_| StartError::Listen {
                addr: client_addr,
                source: std::io::Error::other("bad metrics.listen"),
            })?;
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr, source })?,
            )
        }
        _ => None,
    };
    tracing::info!(
        server_name = %state.server_name(),
        addr = %client_addr,
        key_id = state.signing_key().key_id(),
        "myelin is listening"
    );
    if let Some(listener) = metrics_listener {
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(crate::metrics::scrape))
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(%e, "metrics listener stopped");
            }
        });
    }
    // One signal stops both listeners; each finishes the requests it has
    // accepted (a federation transaction being processed is not cut off).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let federation = if state.config().listen.federation.is_empty() {
        None
    } else {
        Some(serve_federation(&state, stopped()).await?)
    };
    // Events and to-device messages queued before a stop go out now.
    if let Err(e) = state.federation().sender().resume().await {
        tracing::error!(error = %e, "cannot resume federation delivery");
    }
    crate::federation::remote_keys::spawn_maintenance(state.clone());
    crate::presence::spawn_timeouts(state.clone());
    let router = crate::api::router(state);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let served = axum::serve(
        client,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped())
    .await
    .map_err(StartError::Serve);
    if let Some(federation) = federation {
        let _ = federation.await;
    }
    served
}

/// Starts the HTTPS federation listener (its certificate reloads itself, see [`crate::tls`]);
/// it stops accepting when `stop` completes, and the returned task ends when its
/// connections are done.
async fn serve_federation(
    state: &AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let fed = &state.config().federation;
    let addr: SocketAddr =
        state
            .config()
            .listen
            .federation
            .parse()
            .map_err(|_| StartError::Listen {
                addr: state.config().listen.client,
                source: std::io::Error::other("bad listen.federation"),
            })?;
    let cert = crate::tls::ReloadableCert::load(
        fed.tls_certificate_path.clone().into(),
        fed.tls_private_key_path.clone().into(),
    )?;
    cert.watch();
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let listener = crate::tls::TlsListener::new(tcp, crate::tls::server_config(cert)?)
        .map_err(|source| StartError::Listen { addr, source })?;
    tracing::info!(%addr, "federation listener is up");
    let router = crate::api::federation::router(state.clone());
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%e, "federation listener stopped");
        }
    }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
