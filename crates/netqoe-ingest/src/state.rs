//! Shared state of the running service: auth and limits (swappable on SIGHUP), publisher,
//! readiness and the draining flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use crate::auth::{Token, Tokens, TokensError};
use crate::config::{AuthSource, Settings};
use crate::limit::Limiter;
use crate::metrics as m;
use crate::publish::Publisher;

/// Why a token set cannot be used (at start: ingest exits; on reload: the old set stays).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error("--max-batch {max_batch} (NETQOE_INGEST_MAX_BATCH) is larger than the burst of every token (largest: {largest}; --burst {default_burst} (NETQOE_INGEST_BURST) applies to tokens that set no burst), so no full batch could ever be admitted: lower --max-batch to at most {largest}, or raise --burst or the tokens' burst")]
    BatchOverBurst {
        max_batch: usize,
        largest: u32,
        default_burst: u32,
    },
}

/// Tokens and the limiters built for them; replaced as a whole on reload.
pub struct Auth {
    /// `None` when authentication is disabled.
    pub tokens: Option<Tokens>,
    pub limiter: Limiter,
}

impl Auth {
    /// Loads the tokens of `settings.auth` and builds their limiters; refuses an empty tokens
    /// file and a `--max-batch` that no token's burst could ever admit.
    pub fn load(settings: &Settings) -> Result<Auth, AuthError> {
        let tokens = match &settings.auth {
            AuthSource::File(path) => Some(Tokens::load(path)?),
            AuthSource::Inline(text) => Some(Tokens::from_toml_str(text)?),
            AuthSource::Disabled => None,
        };
        let limiter = Limiter::new(
            tokens.as_ref().unwrap_or(&Tokens::default()),
            settings.rate,
            settings.burst,
        );
        let largest = match &tokens {
            Some(tokens) => tokens
                .iter()
                .map(|t| limiter.burst_of(Some(t)))
                .max()
                .unwrap_or(0),
            None => limiter.burst_of(None),
        };
        if (largest as usize) < settings.max_batch {
            return Err(AuthError::BatchOverBurst {
                max_batch: settings.max_batch,
                largest,
                default_burst: settings.burst.get(),
            });
        }
        Ok(Auth { tokens, limiter })
    }

    /// Looks a presented token up; `Ok(None)` means auth is disabled.
    pub fn authenticate(
        &self,
        presented: Option<&str>,
    ) -> Result<Option<Arc<Token>>, &'static str> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let presented = presented
            .filter(|p| !p.is_empty())
            .ok_or("missing bearer token: send Authorization: Bearer <token>")?;
        tokens
            .find(presented)
            .map(Some)
            .ok_or("unknown bearer token")
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    auth: Arc<RwLock<Arc<Auth>>>,
    pub publisher: Publisher,
    /// Permits of the events requests served at once (`--max-in-flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Permits of bodies being decoded and validated at once: one per CPU. Decoding is CPU
    /// work, and a body's parsed form can take about 15 times its size, so this, not
    /// `--max-in-flight`, bounds that part of ingest's memory.
    pub decoders: Arc<tokio::sync::Semaphore>,
    ready: Arc<AtomicBool>,
    /// Cancelled when the service starts draining.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(
        settings: Settings,
        auth: Auth,
        publisher: Publisher,
        shutdown: CancellationToken,
    ) -> AppState {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            settings
                .max_in_flight
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let state = AppState {
            in_flight,
            decoders: Arc::new(tokio::sync::Semaphore::new(cpus)),
            settings: Arc::new(settings),
            auth: Arc::new(RwLock::new(Arc::new(auth))),
            publisher,
            ready: Arc::new(AtomicBool::new(false)),
            shutdown,
        };
        state.record_tokens();
        state
    }

    pub fn auth(&self) -> Arc<Auth> {
        self.auth.read().expect("auth lock").clone()
    }

    /// Re-reads the tokens file and limits; on error the previous set stays active.
    pub fn reload(&self) -> Result<(), AuthError> {
        match Auth::load(&self.settings) {
            Ok(auth) => {
                *self.auth.write().expect("auth lock") = Arc::new(auth);
                metrics::counter!(m::RELOADS, "result" => "ok").increment(1);
                self.record_tokens();
                Ok(())
            }
            Err(e) => {
                metrics::counter!(m::RELOADS, "result" => "error").increment(1);
                Err(e)
            }
        }
    }

    fn record_tokens(&self) {
        let n = self.auth().tokens.as_ref().map_or(0, Tokens::len);
        metrics::gauge!(m::TOKENS_LOADED).set(n as f64);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
