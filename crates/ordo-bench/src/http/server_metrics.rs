//! The server's own view of its latency: `ordo_http_request_duration_seconds` from
//! `GET /metrics` (Prometheus text), summed over routes and methods for one status
//! class. It is timed inside the server (from its outermost middleware), so beside the
//! client's figures it tells how much of a latency is the server's work and how much
//! is the wait before it (accept queue, runtime scheduling, CPU contention with the
//! client) — on a 2-core machine that matters. Histograms are cumulative since the
//! server started: a phase's share is the difference of two scrapes.

use reqwest::Client;
use std::collections::BTreeMap;
use std::net::SocketAddr;

const HISTOGRAM_BUCKET: &str = "ordo_http_request_duration_seconds_bucket{";

/// Which responses to count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Success,
    ServiceUnavailable,
}

impl StatusFilter {
    fn matches(self, status: &str) -> bool {
        match self {
            StatusFilter::Success => status.starts_with('2'),
            StatusFilter::ServiceUnavailable => status == "503",
        }
    }
}

/// Cumulative bucket counts by upper bound (seconds, as the exporter prints them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    by_bound: BTreeMap<String, u64>,
}

impl Buckets {
    /// This scrape's counts less an earlier one's.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let by_bound = self
            .by_bound
            .iter()
            .map(|(le, n)| (le.clone(), n.saturating_sub(earlier.by_bound.get(le).copied().unwrap_or(0))))
            .collect();
        Buckets { by_bound }
    }

    /// The upper bound, in milliseconds, of the bucket holding the `quantile`
    /// (`None` with no requests, infinity when it is past the last bound).
    pub fn quantile_bound_ms(&self, quantile: f64) -> Option<f64> {
        let mut bounds: Vec<(f64, u64)> = self
            .by_bound
            .iter()
            .filter_map(|(le, n)| {
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((bound, *n))
            })
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = bounds.last()?.1;
        if total == 0 {
            return None;
        }
        let wanted = (quantile * total as f64).ceil() as u64;
        bounds.iter().find(|(_, n)| *n >= wanted).map(|(bound, _)| bound * 1e3)
    }
}

/// Parses the latency histogram's buckets for responses that `filter` selects.
pub fn parse(text: &str, filter: StatusFilter) -> Buckets {
    let mut buckets = Buckets::default();
    for line in text.lines().filter(|l| l.starts_with(HISTOGRAM_BUCKET)) {
        // Route labels hold braces (`/orders/{id}`): find labels by name, not by
        // the label set's closing brace.
        let (Some(status), Some(le), Some((_, count))) =
            (label(line, "status"), label(line, "le"), line.rsplit_once(' '))
        else {
            continue;
        };
        let Ok(count) = count.trim().parse::<f64>() else { continue };
        if filter.matches(status) {
            *buckets.by_bound.entry(le.to_owned()).or_default() += count as u64;
        }
    }
    buckets
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = line.get(start..)?;
    rest.get(..rest.find('"')?)
}

/// Scrapes `GET /metrics` of the server at `address`.
pub async fn scrape(client: &Client, address: SocketAddr, filter: StatusFilter) -> anyhow::Result<Buckets> {
    let text = client.get(format!("http://{address}/metrics")).send().await?.error_for_status()?.text().await?;
    Ok(parse(&text, filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE ordo_http_request_duration_seconds histogram
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders/{id}/items",status="200",le="0.001"} 90
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders/{id}/items",status="200",le="0.005"} 99
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders/{id}/items",status="200",le="+Inf"} 100
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders",status="503",le="0.001"} 7
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders",status="503",le="0.005"} 10
ordo_http_request_duration_seconds_bucket{method="POST",route="/orders",status="503",le="+Inf"} 10
ordo_http_request_duration_seconds_sum{method="POST",route="/orders",status="503"} 0.01
"#;

    #[test]
    fn sums_buckets_per_status_class_and_finds_the_quantile_bucket() {
        let ok = parse(TEXT, StatusFilter::Success);
        assert_eq!(ok.quantile_bound_ms(0.5), Some(1.0));
        assert_eq!(ok.quantile_bound_ms(0.99), Some(5.0));
        assert_eq!(ok.quantile_bound_ms(1.0), Some(f64::INFINITY));
        let shed = parse(TEXT, StatusFilter::ServiceUnavailable);
        assert_eq!(shed.quantile_bound_ms(0.7), Some(1.0));
        assert_eq!(shed.quantile_bound_ms(0.99), Some(5.0));
        assert_eq!(shed.since(&shed).quantile_bound_ms(0.99), None);
    }
}
