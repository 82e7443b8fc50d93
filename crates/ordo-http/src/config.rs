//! What the HTTP layer can be told: limits, protection and the admin token. The
//! binary fills it from flags and environment; every field has a sane default.

use std::time::Duration;

/// The request body limit of the contract: 64 KiB.
pub const BODY_LIMIT_DEFAULT: usize = 64 * 1024;

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    /// Longest a request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// Requests handled at once; more are shed at once with 503 (never queued).
    pub max_concurrency: usize,
    /// Per-client rate limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Enables the admin routes; compared in constant time.
    pub admin_token: Option<String>,
    /// Longest `GET /orders/{id}?min_version=N` waits for the read model.
    pub min_version_wait: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: BODY_LIMIT_DEFAULT,
            request_timeout: Duration::from_secs(15),
            max_concurrency: 512,
            rate_limit: None,
            trust_forwarded_for: false,
            admin_token: None,
            min_version_wait: Duration::from_secs(5),
        }
    }
}

/// A token bucket per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst above that.
    pub burst: u32,
}
