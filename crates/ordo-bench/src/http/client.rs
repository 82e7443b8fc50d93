//! The HTTP driver: one pooled `reqwest` client (HTTP/1.1 keep-alive, `TCP_NODELAY`,
//! as many connections as requests in flight, no proxy lookup) sending the mix's
//! requests as the contract spells them, and reading each answer to its end so that
//! its connection goes back to the pool.

use reqwest::header::{HeaderMap, CONTENT_TYPE, ETAG, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

use super::driver::{Driver, Reply};
use super::workflow::{self, Step, Workflow};

/// Longest a request may take before it counts as failed (the server's own request
/// timeout is 15 s; `min_version` waits at most 5 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct HttpDriver {
    client: Client,
    base: String,
}

impl HttpDriver {
    pub fn new(address: SocketAddr) -> anyhow::Result<Self> {
        let client = Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { client, base: format!("http://{address}") })
    }

    fn request(&self, workflow: &Workflow, step: Step) -> reqwest::RequestBuilder {
        let order = workflow.order_id.hyphenated();
        let post = |path: String, body: Value| {
            self.client
                .post(format!("{}{path}", self.base))
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string())
        };
        match step {
            Step::Create => {
                post("/orders".into(), json!({"customer_id": workflow.customer_id, "order_id": order.to_string()}))
            }
            Step::AddItem { index } => {
                let item = workflow::item(index);
                post(
                    format!("/orders/{order}/items"),
                    json!({"sku": item.sku, "quantity": item.quantity, "unit_price_cents": item.unit_price_cents}),
                )
            }
            Step::Place => post(format!("/orders/{order}/place"), json!({})),
            Step::Pay { amount_cents } => post(format!("/orders/{order}/pay"), json!({"amount_cents": amount_cents})),
            Step::Read { min_version } => {
                self.client.get(format!("{}/orders/{order}?min_version={min_version}", self.base))
            }
        }
    }
}

impl Driver for HttpDriver {
    async fn execute(&self, workflow: &Workflow, step: Step) -> Reply {
        let response = match self.request(workflow, step).send().await {
            Ok(response) => response,
            Err(e) => return Reply::Failed(transport_label(&e).into()),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Reply::Failed(format!("{} body: {}", status.as_u16(), transport_label(&e))),
        };
        if status.is_success() {
            let Some(version) = etag_version(&headers) else {
                return Reply::Failed(format!("{} without an ETag", status.as_u16()));
            };
            if let Step::Read { .. } = step {
                if let Err(wrong) = check_paid_order(&body) {
                    return Reply::Failed(wrong);
                }
            }
            return Reply::Done { version };
        }
        let code = problem_code(&body);
        if status == StatusCode::SERVICE_UNAVAILABLE && code == "overloaded" && headers.contains_key(RETRY_AFTER) {
            return Reply::Shed;
        }
        Reply::Failed(format!("{} {code}", status.as_u16()))
    }
}

fn transport_label(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "client timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
}

/// The version in `ETag: "<version>"`.
fn etag_version(headers: &HeaderMap) -> Option<u64> {
    let tag = headers.get(ETAG)?.to_str().ok()?;
    tag.trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// The problem's `code`, or `-` when the body is not a problem.
fn problem_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|problem| problem.get("code").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// The read must show the order paid, at the amount the mix computed.
fn check_paid_order(body: &[u8]) -> Result<(), String> {
    let order: Value = serde_json::from_slice(body).map_err(|_| "200 read: not JSON".to_owned())?;
    let status = order.get("status").and_then(Value::as_str);
    let total = order.get("total_cents").and_then(Value::as_i64);
    if status == Some("paid") && total == Some(workflow::amount_due()) {
        Ok(())
    } else {
        Err(format!("200 read: status {status:?}, total {total:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_strong_or_weak_etags() {
        let mut headers = HeaderMap::new();
        headers.insert(ETAG, "\"7\"".parse().unwrap());
        assert_eq!(etag_version(&headers), Some(7));
        headers.insert(ETAG, "W/\"8\"".parse().unwrap());
        assert_eq!(etag_version(&headers), Some(8));
        headers.insert(ETAG, "nonsense".parse().unwrap());
        assert_eq!(etag_version(&headers), None);
    }

    #[test]
    fn a_read_must_show_the_order_paid_in_full() {
        let paid = json!({"status": "paid", "total_cents": workflow::amount_due()}).to_string();
        assert_eq!(check_paid_order(paid.as_bytes()), Ok(()));
        let placed = json!({"status": "placed", "total_cents": workflow::amount_due()}).to_string();
        assert!(check_paid_order(placed.as_bytes()).is_err());
        assert_eq!(problem_code(br#"{"code":"overloaded"}"#), "overloaded");
        assert_eq!(problem_code(b"<html>"), "-");
    }
}
