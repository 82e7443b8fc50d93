//! `POST /orders/{id}/discount` end to end, as the contract has it: 200 with `ETag`
//! and the amount due lowered, 422 outside 1..=50, 409 outside draft or for a second
//! discount, 404 for an unknown order, `If-Match` and `Idempotency-Key` as for every
//! command, `discount_percent` in the read model, and the route in the OpenAPI
//! document. On a fresh SQLite file and a fresh PostgreSQL database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use crate::common::Server;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::Method;
use serde_json::json;

#[backend_test]
async fn a_discount_lowers_the_amount_due(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("discount").await;
    let item = json!({"sku": "A", "quantity": 2, "unit_price_cents": 150});
    server.post(&format!("/orders/{id}/items"), item).await.assert_command(200, &id, 2);
    let discount = format!("/orders/{id}/discount");
    server.post(&discount, json!({"percent": 10})).await.assert_command(200, &id, 3);
    let order = server.get(&format!("/orders/{id}?min_version=3")).await.json();
    assert_eq!((&order["discount_percent"], &order["total_cents"]), (&json!(10), &json!(270)), "{order}");
    // One per order.
    server.post(&discount, json!({"percent": 5})).await.assert_problem(409, "rule_violation");
    server.post(&format!("/orders/{id}/place"), json!({})).await.assert_command(200, &id, 4);
    let pay = format!("/orders/{id}/pay");
    server.post(&pay, json!({"amount_cents": 300})).await.assert_problem(409, "rule_violation");
    server.post(&pay, json!({"amount_cents": 270})).await.assert_command(200, &id, 5);
    // An order without a discount shows 0, in the listing too.
    let plain = server.create_order("discount-none").await;
    let shown = server.get(&format!("/orders/{plain}?min_version=1")).await.json();
    assert_eq!(shown["discount_percent"], 0, "{shown}");
    let listed = server.get("/orders?customer_id=discount-none").await.json();
    let listed = &listed["orders"][0];
    assert_eq!((&listed["order_id"], &listed["discount_percent"]), (&json!(plain), &json!(0)), "{listed}");
}

#[backend_test]
async fn a_discount_is_refused_as_the_contract_says(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("discount-rules").await;
    let discount = format!("/orders/{id}/discount");
    for (percent, field) in [(json!(0), "percent"), (json!(51), "percent"), (json!(-1), "percent")] {
        let reply = server.post(&discount, json!({ "percent": percent })).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.json()["errors"][0]["field"], field, "{}", reply.text());
    }
    for body in [json!({"percent": 1.5}), json!({"percent": "10"}), json!({}), json!(null)] {
        server.post(&discount, body).await.assert_problem(422, "validation_failed");
    }
    let unknown = format!("/orders/{}/discount", uuid::Uuid::new_v4());
    server.post(&unknown, json!({"percent": 10})).await.assert_problem(404, "order_not_found");
    let pinned = server.send(Method::POST, &unknown, Some(json!({"percent": 10})), &[("if-match", "\"1\"")]).await;
    pinned.assert_problem(404, "order_not_found");
    server.post("/orders/not-a-uuid/discount", json!({"percent": 10})).await.assert_problem(400, "invalid_order_id");

    // If-Match pins the version.
    let stale = server.send(Method::POST, &discount, Some(json!({"percent": 10})), &[("if-match", "\"7\"")]).await;
    stale.assert_problem(412, "wrong_expected_version");
    assert_eq!(stale.header("etag"), Some("\"1\""));
    let pinned = server.send(Method::POST, &discount, Some(json!({"percent": 50})), &[("if-match", "\"1\"")]).await;
    pinned.assert_command(200, &id, 2);

    // Idempotency-Key: the same request replays, another one with the key is refused.
    let other = server.create_order("discount-keys").await;
    let path = format!("/orders/{other}/discount");
    let key = [("idempotency-key", "discount-1")];
    let first = server.send(Method::POST, &path, Some(json!({"percent": 20})), &key).await;
    first.assert_command(200, &other, 2);
    let again = server.send(Method::POST, &path, Some(json!({"percent": 20})), &key).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("etag"), Some("\"2\""));
    let reused = server.send(Method::POST, &path, Some(json!({"percent": 30})), &key).await;
    reused.assert_problem(422, "idempotency_key_reused");
    let bad_key = [("idempotency-key", "discount-2")];
    let refused = server.send(Method::POST, &path, Some(json!({"percent": 99})), &bad_key).await;
    refused.assert_problem(422, "validation_failed");
    let refused_again = server.send(Method::POST, &path, Some(json!({"percent": 99})), &bad_key).await;
    assert_eq!((refused_again.status, &refused_again.body), (refused.status, &refused.body));
    assert_eq!(refused_again.header("idempotent-replayed"), Some("true"));

    // Only in draft.
    server.post(&format!("/orders/{other}/cancel"), json!({"reason": "r"})).await.assert_command(200, &other, 3);
    let third = server.create_order("discount-late").await;
    server
        .post(&format!("/orders/{third}/items"), json!({"sku": "A", "quantity": 1, "unit_price_cents": 9}))
        .await
        .assert_command(200, &third, 2);
    server.post(&format!("/orders/{third}/place"), json!({})).await.assert_command(200, &third, 3);
    for closed in [&other, &third] {
        let reply = server.post(&format!("/orders/{closed}/discount"), json!({"percent": 10})).await;
        reply.assert_problem(409, "rule_violation");
    }
}

#[backend_test]
async fn the_discount_route_is_documented(db: TestDatabase) {
    let server = Server::start(&db).await;
    let doc = server.get("/openapi.json").await.json();
    let operation = &doc["paths"]["/orders/{id}/discount"]["post"];
    assert_eq!(operation["operationId"], "apply_discount", "{operation}");
    for status in ["200", "404", "409", "412", "422"] {
        assert!(operation["responses"].get(status).is_some(), "{status} is documented: {operation}");
    }
    let body = &doc["components"]["schemas"]["DiscountBody"]["properties"]["percent"];
    assert_eq!((&body["minimum"], &body["maximum"]), (&json!(1), &json!(50)), "{body}");
    let created = &doc["paths"]["/orders"]["post"]["responses"]["201"]["links"]["apply_discount"];
    assert_eq!(created["operationId"], "apply_discount", "a created order's id leads to its discount: {created}");
    assert_eq!(created["parameters"]["id"], "$response.body#/order_id");
}
