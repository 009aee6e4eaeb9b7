//! `tokenscale serve`: an OpenAI-compatible chat-completions server over one loaded model, with
//! a vision-token budget per request (`vision_tokens`, `reducer`, `short_tokens`,
//! `drop_query`), continuous batching with chunked prefill ([`engine`]), bounded admission
//! (429 past the queue), per-request limits, Prometheus metrics and a graceful shutdown.
//!
//! - [`http`]: endpoints and answers (plain JSON and server-sent events);
//! - [`schema`]: the request, checked field by field; [`media`]: its images;
//! - [`engine`]: the scheduler thread; [`text`]: detokenising and stop sequences;
//! - [`admission`], [`metrics`], [`error`], [`options`], [`warnings`] (said once per server);
//! - [`fault`]: panics injected on purpose by tests (`fault-injection` feature only).

#![warn(missing_docs)]

pub mod admission;
pub mod engine;
pub mod error;
pub mod fault;
pub mod http;
pub mod media;
pub mod metrics;
pub mod options;
pub mod schema;
pub mod text;
pub mod warnings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokenscale_model::runtime::Runtime;
use tokio::net::TcpListener;

pub use fault::{FaultPlan, FaultPoint};
pub use options::{Limits, ServeOptions};

/// A server running on its own threads (tests, the load tool); [`Server::stop`] shuts it
/// down gracefully.
pub struct Server {
    /// The address the server listens on (the real port when 0 was asked).
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Binds (port 0 picks a free one) and serves in the background.
    pub fn start(runtime: Runtime, options: ServeOptions) -> Result<Self> {
        Self::start_with(runtime, options, FaultPlan::default())
    }

    /// [`Server::start`] with faults the engine injects (tests of the failure paths).
    #[cfg(feature = "fault-injection")]
    pub fn start_with_faults(
        runtime: Runtime,
        options: ServeOptions,
        faults: FaultPlan,
    ) -> Result<Self> {
        Self::start_with(runtime, options, faults)
    }

    fn start_with(runtime: Runtime, options: ServeOptions, faults: FaultPlan) -> Result<Self> {
        options.validate()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("tokenscale-serve".into()).spawn(
            move || -> Result<()> {
                let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                tokio.block_on(async move {
                    let listener = match bind(&options).await {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = bound.send(Err(format!("{e:#}")));
                            return Err(e);
                        }
                    };
                    let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
                    run(runtime, options, faults, listener, async move {
                        let _ = stopped.await;
                    })
                    .await
                })
            },
        )?;
        let addr = address
            .recv()
            .context("the server thread ended before binding")?
            .map_err(anyhow::Error::msg)?;
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// Refuses new requests, lets running ones finish, then returns.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => {
                thread.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?
            }
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Serves in the foreground until SIGTERM or Ctrl-C, then finishes the running requests.
pub fn serve(runtime: Runtime, options: ServeOptions) -> Result<()> {
    options.validate()?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async move {
        let listener = bind(&options).await?;
        eprintln!(
            "listening on http://{} (model {}; batch {}, queue {})",
            listener.local_addr()?,
            options.model_name,
            options.max_batch,
            options.queue
        );
        run(runtime, options, FaultPlan::default(), listener, termination()).await?;
        eprintln!("stopped: every running request was answered");
        Ok(())
    })
}

async fn bind(options: &ServeOptions) -> Result<TcpListener> {
    let address = format!("{}:{}", options.host, options.port);
    TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))
}

/// SIGTERM or SIGINT.
async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

async fn run(
    runtime: Runtime,
    options: ServeOptions,
    faults: FaultPlan,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let runtime = Arc::new(runtime);
    let metrics = Arc::new(metrics::Metrics::new());
    let engine_options = engine::EngineOptions {
        max_batch: options.max_batch,
        prefill_chunk: options.prefill_chunk,
        faults,
    };
    let (engine, engine_thread) =
        engine::spawn(Arc::clone(&runtime), engine_options, Arc::clone(&metrics))?;
    let state = Arc::new(http::AppState::new(runtime, engine, options, metrics));
    let app = http::router(Arc::clone(&state));
    let draining = Arc::clone(&state);
    drop(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.draining.store(true, Ordering::Release);
        })
        .await
        .context("the server failed")?;
    // Every connection is closed: the router and its engine handle are gone, so the engine
    // thread ends once its (by now empty) work is done.
    engine_thread.join().map_err(|_| anyhow::anyhow!("the engine thread panicked"))
}
