//! Request fingerprints for idempotency keys: a SHA-256 over the method, the route
//! template, the path parameters and the canonical body. Canonical means parsed and
//! re-serialized with object keys sorted, so whitespace and key order do not make two
//! equal requests differ.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `value` with every object's keys sorted, recursively.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The fingerprint of a request, as lowercase hex.
pub fn fingerprint(method: &str, route: &str, params: &[(&str, &str)], body: &Value) -> String {
    // One JSON array: its encoding is unambiguous, so no two requests share an input.
    let params: Vec<Value> = params.iter().map(|(k, v)| Value::from(vec![*k, *v])).collect();
    let input = Value::Array(vec![method.into(), route.into(), Value::Array(params), body.clone()]);
    let digest = Sha256::digest(input.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(body: &str) -> String {
        let value = canonical(serde_json::from_str(body).unwrap());
        fingerprint("POST", "/orders/{id}/items", &[("id", "x")], &value)
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        assert_eq!(of(r#"{"sku":"A","quantity":1}"#), of("{ \"quantity\" : 1,\n \"sku\": \"A\" }"));
        assert_eq!(of(r#"{"a":{"y":1,"x":[{"q":1,"p":2}]}}"#), of(r#"{"a":{"x":[{"p":2,"q":1}],"y":1}}"#));
    }

    #[test]
    fn every_part_counts() {
        let body = json!({});
        let base = fingerprint("POST", "/orders/{id}/place", &[("id", "1")], &body);
        assert_ne!(base, fingerprint("DELETE", "/orders/{id}/place", &[("id", "1")], &body));
        assert_ne!(base, fingerprint("POST", "/orders/{id}/deliver", &[("id", "1")], &body));
        assert_ne!(base, fingerprint("POST", "/orders/{id}/place", &[("id", "2")], &body));
        assert_ne!(base, fingerprint("POST", "/orders/{id}/place", &[("id", "1")], &json!({"x": 1})));
        assert_ne!(of(r#"{"sku":"A","quantity":1}"#), of(r#"{"sku":"A","quantity":2}"#));
    }
}
