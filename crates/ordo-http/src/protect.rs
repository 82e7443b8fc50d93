//! Overload protection: a global concurrency limit that sheds at once (503 with
//! `Retry-After`, never a queue), a request timeout (503), and an optional token
//! bucket per client address (429 with `Retry-After`). `X-Forwarded-For` names the
//! client only when the configuration says a trusted proxy sets it.

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use tower::BoxError;

use crate::config::{HttpConfig, RateLimit};
use crate::error::ApiError;

/// Client buckets kept before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Puts `router` behind the rate limit (when configured), the load shedder, the
/// global concurrency limit and the request timeout, in that order.
pub fn protect(router: Router, config: &HttpConfig) -> Router {
    // One semaphore for every route: `Router::layer` wraps each route on its own.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(config.max_concurrency.max(1)));
    let router = router.layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overload_response))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(semaphore))
            .timeout(config.request_timeout),
    );
    match config.rate_limit {
        Some(limit) => router.layer(axum::middleware::from_fn_with_state(
            ClientLimiter::new(limit, config.trust_forwarded_for),
            rate_limit,
        )),
        None => router,
    }
}

async fn overload_response(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("ordo_http_shed_total").increment(1);
        ApiError::Overloaded.into_response()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout.into_response()
    } else {
        ApiError::Internal(error.to_string()).into_response()
    }
}

/// A token bucket per client address.
#[derive(Clone)]
pub struct ClientLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    trust_forwarded_for: bool,
}

impl ClientLimiter {
    pub fn new(limit: RateLimit, trust_forwarded_for: bool) -> Self {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self { limiter: Arc::new(RateLimiter::keyed(quota)), trust_forwarded_for }
    }

    fn client(&self, request: &Request) -> IpAddr {
        let forwarded = self.trust_forwarded_for.then(|| forwarded_for(request.headers())).flatten();
        forwarded
            .or_else(|| request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The last address in `X-Forwarded-For`: the one our trusted proxy appended (earlier
/// entries come from the client and may be forged).
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
    last.rsplit(',').next()?.trim().parse().ok()
}

pub async fn rate_limit(State(limiter): State<ClientLimiter>, request: Request, next: Next) -> Response {
    let client = limiter.client(&request);
    if limiter.limiter.len() > MAX_TRACKED_CLIENTS {
        limiter.limiter.retain_recent();
    }
    match limiter.limiter.check_key(&client) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            metrics::counter!("ordo_http_rate_limited_total").increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_forwarded_address_counts() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.7".parse().unwrap());
        assert_eq!(forwarded_for(&headers), Some("10.0.0.7".parse().unwrap()));
        headers.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }
}
