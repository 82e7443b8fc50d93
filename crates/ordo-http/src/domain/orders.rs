//! The order queries: one order, a page of them, from `order_summaries`, waiting
//! for a version when asked (read-your-writes); an order's stream from the event
//! store.

use ordo_core::CommandHandler;
use ordo_orders::read_model::{self, ListOrders, OrderSummary, OrderWait};
use ordo_orders::Order;
use std::time::Duration;
use uuid::Uuid;

use super::errors::{projection_error, store_error};
use super::Domain;
use crate::dto::{EventView, ItemView, OrderPageView, OrderStatusName, OrderView};
use crate::error::ApiError;

/// Events read per page of `GET /orders/{id}/events`.
const EVENTS_PAGE: usize = 1_000;

impl Domain {
    /// The order as the read model has it now.
    pub async fn order(&self, id: &Uuid) -> Result<OrderView, ApiError> {
        let summary =
            read_model::get_order(self.runtime.db(), &id.hyphenated().to_string()).await.map_err(projection_error)?;
        summary.map(order_view).transpose()?.ok_or(ApiError::OrderNotFound { replayed: false })
    }

    /// The order once the read model has applied `min_version` of it, waiting at most
    /// `wait`. An order with no events at all is not found at once.
    pub async fn order_at_least(&self, id: &Uuid, min_version: u64, wait: Duration) -> Result<OrderView, ApiError> {
        let order_id = id.hyphenated().to_string();
        // Mostly the read model has the order already: one read answers. Only when it
        // has nothing is the stream asked whether there is anything to wait for.
        let summary = read_model::get_order(self.runtime.db(), &order_id).await.map_err(projection_error)?;
        match summary {
            Some(summary) if summary.version >= min_version => return order_view(summary),
            Some(_) => {}
            None => {
                let stream = CommandHandler::<Order>::stream_id(&order_id).map_err(|e| store_error(&e))?;
                if self.runtime.store().stream_version(&stream).await.map_err(|e| store_error(&e))? == 0 {
                    return Err(ApiError::OrderNotFound { replayed: false });
                }
            }
        }
        match read_model::wait_for_order(&self.runtime, &order_id, min_version, wait).await {
            Ok(OrderWait::Reached(summary)) => order_view(summary),
            Ok(OrderWait::Behind(_)) => Err(ApiError::ProjectionLagging { what: "order", min_version }),
            Err(e) => Err(projection_error(e)),
        }
    }

    /// A page of orders, by creation.
    pub async fn list(
        &self,
        customer_id: Option<String>,
        status: Option<&str>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<OrderPageView, ApiError> {
        let status = status
            .map(|s| {
                ordo_orders::OrderStatus::parse(s).ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "status {s:?} is not one of draft, placed, paid, shipped, delivered, cancelled"
                    ))
                })
            })
            .transpose()?;
        if let Some(cursor) = &cursor {
            read_model::parse_cursor(cursor)
                .map_err(|_| ApiError::InvalidQuery(format!("invalid cursor {cursor:?}")))?;
        }
        let query = ListOrders { customer_id, status, limit, cursor };
        let page = read_model::list_orders(self.runtime.db(), &query).await.map_err(|e| match e {
            read_model::ListError::InvalidCursor(_) => ApiError::InvalidQuery("invalid cursor".into()),
            read_model::ListError::Projection(e) => projection_error(e),
            other => ApiError::Internal(other.to_string()),
        })?;
        let orders = page.orders.into_iter().map(order_view).collect::<Result<Vec<_>, _>>()?;
        Ok(OrderPageView { orders, next_cursor: page.next_cursor })
    }

    /// The order's stream, oldest first, straight from the event store.
    pub async fn events(&self, id: &Uuid) -> Result<Vec<EventView>, ApiError> {
        let stream = CommandHandler::<Order>::stream_id(&id.hyphenated().to_string()).map_err(|e| store_error(&e))?;
        let store = self.runtime.store();
        let mut events = Vec::new();
        loop {
            let from = events.len() as u64 + 1;
            let page = store.read_stream(&stream, from, EVENTS_PAGE).await.map_err(|e| store_error(&e))?;
            let full = page.len() == EVENTS_PAGE;
            for e in page {
                events.push(EventView {
                    version: e.version,
                    position: e.position,
                    event_id: e.event_id.hyphenated().to_string(),
                    r#type: e.event_type,
                    data: e.data,
                    metadata: serde_json::to_value(&e.metadata).map_err(|e| ApiError::Internal(e.to_string()))?,
                    recorded_at: e.recorded_at,
                });
            }
            if !full {
                break;
            }
        }
        if events.is_empty() {
            return Err(ApiError::OrderNotFound { replayed: false });
        }
        Ok(events)
    }
}

fn order_view(summary: OrderSummary) -> Result<OrderView, ApiError> {
    use ordo_orders::OrderStatus;
    let status = match summary.status {
        OrderStatus::Draft => OrderStatusName::Draft,
        OrderStatus::Placed => OrderStatusName::Placed,
        OrderStatus::Paid => OrderStatusName::Paid,
        OrderStatus::Shipped => OrderStatusName::Shipped,
        OrderStatus::Delivered => OrderStatusName::Delivered,
        OrderStatus::Cancelled => OrderStatusName::Cancelled,
    };
    Ok(OrderView {
        order_id: summary.order_id,
        customer_id: summary.customer_id,
        status,
        items: summary
            .items
            .into_iter()
            .map(|i| ItemView { sku: i.sku, quantity: i.quantity, unit_price_cents: i.unit_price_cents })
            .collect(),
        discount_percent: summary.discount_percent,
        total_cents: summary.total_cents,
        version: summary.version,
        updated_at: summary.updated_at,
    })
}
