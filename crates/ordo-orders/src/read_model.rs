//! The order read models: one row per order in `order_summaries`, kept by
//! [`OrderSummaryProjector`]. It serves `GET /orders/{id}` ([`get_order`]) and the
//! listing by customer and status with keyset pagination ([`list_orders`]).
//!
//! The projector works a batch at a time: one query loads the orders the batch
//! touches, the events are folded in memory, and one upsert per 500 orders writes
//! them back. It skips events an order already holds (by stream version) and fails
//! loudly on a gap, so a redelivered event is harmless and a lost one is noticed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordo_core::{decode_event, Aggregate};
use ordo_projection::{
    Column, ProjectionError, ProjectionRuntime, Projector, ProjectorTx, ReadDb, ReadModelTx, SqlValue, TableDef,
};
use ordo_store::{EventFilter, Position, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::{amount_due_cents, Line, Order, OrderEvent, OrderStatus};

/// The projector's name, which keys its checkpoint.
pub const ORDER_SUMMARIES: &str = "order_summaries";

const TABLE: TableDef = TableDef {
    name: ORDER_SUMMARIES,
    create: "CREATE TABLE IF NOT EXISTS {table} (
        order_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        status TEXT NOT NULL,
        items TEXT NOT NULL,
        discount_percent BIGINT NOT NULL,
        total_cents BIGINT NOT NULL,
        version BIGINT NOT NULL,
        created_position BIGINT NOT NULL,
        updated_at TEXT NOT NULL
    )",
    indexes: &[
        "CREATE UNIQUE INDEX IF NOT EXISTS {table}_by_creation ON {table} (created_position)",
        "CREATE INDEX IF NOT EXISTS {table}_by_customer ON {table} (customer_id, created_position)",
        "CREATE INDEX IF NOT EXISTS {table}_by_status ON {table} (status, created_position)",
    ],
};

const COLUMNS: &str =
    "order_id, customer_id, status, items, discount_percent, total_cents, version, created_position, updated_at";

/// One line of an order as `GET /orders/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// The SKU.
    pub sku: String,
    /// Units on the line.
    pub quantity: u32,
    /// The price per unit, in cents.
    pub unit_price_cents: i64,
}

/// An order as `GET /orders/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// The order's id (its stream is `order-{order_id}`).
    pub order_id: String,
    /// Who orders.
    pub customer_id: String,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Its lines, by SKU.
    pub items: Vec<ItemView>,
    /// 0 without a discount.
    pub discount_percent: u8,
    /// The amount due: the items' subtotal less the discount.
    pub total_cents: i64,
    /// The order's stream version this summary reflects.
    pub version: u64,
    /// When its last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// The position of the order's creation: its place in listings.
    #[serde(skip)]
    pub created_position: Position,
}

#[derive(sqlx::FromRow)]
struct Row {
    order_id: String,
    customer_id: String,
    status: String,
    items: String,
    discount_percent: i64,
    total_cents: i64,
    version: i64,
    created_position: i64,
    updated_at: String,
}

impl Row {
    /// The summary this row holds; a row that does not decode is corrupt state.
    fn into_summary(self) -> Result<OrderSummary, ProjectionError> {
        let id = &self.order_id;
        let corrupt = |what: &str, detail: &dyn std::fmt::Display| {
            ProjectionError::corrupt(ORDER_SUMMARIES, format!("{what} of order {id}: {detail}"))
        };
        Ok(OrderSummary {
            items: serde_json::from_str(&self.items).map_err(|e| corrupt("items", &e))?,
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status", &self.status))?,
            discount_percent: u8::try_from(self.discount_percent)
                .map_err(|_| corrupt("discount percent", &self.discount_percent))?,
            version: u64::try_from(self.version).map_err(|_| corrupt("version", &self.version))?,
            created_position: u64::try_from(self.created_position)
                .map_err(|_| corrupt("created position", &self.created_position))?,
            updated_at: DateTime::parse_from_rfc3339(&self.updated_at)
                .map_err(|e| corrupt("updated_at", &e))?
                .with_timezone(&Utc),
            customer_id: self.customer_id,
            total_cents: self.total_cents,
            order_id: self.order_id,
        })
    }
}

/// An order being folded: items by SKU, so that events apply in place.
struct Folding {
    summary: OrderSummary,
    lines: BTreeMap<String, Line>,
}

impl Folding {
    fn from_summary(summary: OrderSummary) -> Self {
        let lines = summary
            .items
            .iter()
            .map(|i| (i.sku.clone(), Line { quantity: i.quantity, unit_price_cents: i.unit_price_cents }))
            .collect();
        Self { summary, lines }
    }

    fn apply(&mut self, event: &OrderEvent) {
        let s = &mut self.summary;
        match event {
            OrderEvent::OrderCreated { customer_id } => {
                s.customer_id.clone_from(customer_id);
                s.status = OrderStatus::Draft;
            }
            OrderEvent::ItemAdded { sku, quantity, unit_price_cents } => {
                let line =
                    self.lines.entry(sku.clone()).or_insert(Line { quantity: 0, unit_price_cents: *unit_price_cents });
                line.quantity = line.quantity.saturating_add(*quantity);
            }
            OrderEvent::ItemRemoved { sku } => {
                self.lines.remove(sku);
            }
            OrderEvent::DiscountApplied { percent } => s.discount_percent = *percent,
            OrderEvent::OrderPlaced { .. } => s.status = OrderStatus::Placed,
            OrderEvent::OrderPaid { .. } => s.status = OrderStatus::Paid,
            OrderEvent::OrderShipped { .. } => s.status = OrderStatus::Shipped,
            OrderEvent::OrderDelivered {} => s.status = OrderStatus::Delivered,
            OrderEvent::OrderCancelled { .. } => s.status = OrderStatus::Cancelled,
        }
    }

    fn finish(mut self) -> OrderSummary {
        let subtotal = self
            .lines
            .values()
            .fold(0i64, |sum, l| sum.saturating_add(i64::from(l.quantity).saturating_mul(l.unit_price_cents)));
        self.summary.total_cents = amount_due_cents(subtotal, self.summary.discount_percent);
        self.summary.items = self
            .lines
            .into_iter()
            .map(|(sku, l)| ItemView { sku, quantity: l.quantity, unit_price_cents: l.unit_price_cents })
            .collect();
        self.summary
    }
}

/// The order id of an order stream (`order-42` → `42`).
fn order_id_of(stream: &StreamId) -> Option<&str> {
    stream.as_str().strip_prefix(Order::CATEGORY)?.strip_prefix('-')
}

/// Keeps `order_summaries`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderSummaryProjector;

#[async_trait]
impl Projector for OrderSummaryProjector {
    fn name(&self) -> &'static str {
        ORDER_SUMMARIES
    }

    fn filter(&self) -> EventFilter {
        EventFilter::Categories(vec![Order::CATEGORY.into()])
    }

    fn tables(&self) -> Vec<TableDef> {
        vec![TABLE]
    }

    /// 2: `discount_percent`, and `total_cents` is the amount due.
    fn version(&self) -> u32 {
        2
    }

    fn partitioned_by_stream(&self) -> bool {
        true // one row per order, from that order's events alone
    }

    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let table = tx.table(ORDER_SUMMARIES);
        // Orders whose first event here is their creation have no row yet (the
        // upsert below never moves a row backwards, should one exist after all):
        // only the others are loaded.
        let mut first_seen: HashMap<&str, u64> = HashMap::new();
        for e in events {
            if let Some(id) = order_id_of(&e.stream_id) {
                first_seen.entry(id).or_insert(e.version);
            }
        }
        let mut ids: Vec<String> =
            first_seen.iter().filter(|(_, version)| **version > 1).map(|(id, _)| (*id).to_owned()).collect();
        ids.sort_unstable();
        let rows: Vec<Row> = if ids.is_empty() {
            Vec::new()
        } else {
            let sql = format!("SELECT {COLUMNS} FROM {table} WHERE order_id {}{}", tx.any_of("$1"), tx.for_update());
            tx.fetch_all(&sql, &[SqlValue::TextList(ids)]).await?
        };
        let mut orders: HashMap<String, Folding> = HashMap::with_capacity(rows.len());
        for row in rows {
            let summary = row.into_summary()?;
            orders.insert(summary.order_id.clone(), Folding::from_summary(summary));
        }
        let mut touched = Vec::new();
        for stored in events {
            let Some(id) = order_id_of(&stored.stream_id) else {
                return Err(ProjectionError::apply(stored, "not an order stream"));
            };
            let held = orders.get(id).map_or(0, |o| o.summary.version);
            if stored.version <= held {
                continue; // already applied: a redelivery
            }
            if stored.version != held + 1 {
                return Err(ProjectionError::apply(
                    stored,
                    format!("order {id} is at version {held}, the event is version {}", stored.version),
                ));
            }
            let event: OrderEvent = decode_event(stored).map_err(|e| ProjectionError::apply(stored, e))?;
            let order = match (orders.get_mut(id), &event) {
                (Some(order), _) => order,
                (None, OrderEvent::OrderCreated { .. }) => orders.entry(id.to_owned()).or_insert_with(|| Folding {
                    summary: OrderSummary {
                        order_id: id.to_owned(),
                        customer_id: String::new(),
                        status: OrderStatus::Draft,
                        items: Vec::new(),
                        discount_percent: 0,
                        total_cents: 0,
                        version: 0,
                        updated_at: stored.recorded_at,
                        created_position: stored.position,
                    },
                    lines: BTreeMap::new(),
                }),
                (None, _) => return Err(ProjectionError::apply(stored, format!("order {id} was never created"))),
            };
            order.apply(&event);
            order.summary.version = stored.version;
            order.summary.updated_at = stored.recorded_at;
            touched.push(id.to_owned());
        }
        touched.sort_unstable();
        touched.dedup();
        let summaries: Vec<OrderSummary> =
            touched.iter().filter_map(|id| orders.remove(id)).map(Folding::finish).collect();
        upsert(tx, table, &summaries).await
    }

    async fn forget_stream(&self, tx: &mut ProjectorTx<'_, '_>, stream: &StreamId) -> Result<bool, ProjectionError> {
        let Some(id) = order_id_of(stream) else { return Ok(true) };
        let sql = format!("DELETE FROM {} WHERE order_id = $1", tx.table(ORDER_SUMMARIES));
        tx.execute(&sql, &[id.into()]).await?;
        Ok(true)
    }
}

async fn upsert(tx: &mut ReadModelTx<'_>, table: &str, summaries: &[OrderSummary]) -> Result<(), ProjectionError> {
    let text = |f: fn(&OrderSummary) -> String| summaries.iter().map(f).collect::<Vec<_>>();
    let int = |f: fn(&OrderSummary) -> i64| summaries.iter().map(f).collect::<Vec<_>>();
    // Plain structs of strings and numbers: serializing them cannot fail.
    let items = summaries.iter().map(|s| serde_json::to_string(&s.items).unwrap_or_default()).collect();
    let columns = [
        Column::Text("order_id", text(|s| s.order_id.clone())),
        Column::Text("customer_id", text(|s| s.customer_id.clone())),
        Column::Text("status", text(|s| s.status.as_str().to_owned())),
        Column::Text("items", items),
        Column::Int("discount_percent", int(|s| i64::from(s.discount_percent))),
        Column::Int("total_cents", int(|s| s.total_cents)),
        Column::Int("version", stored(summaries, |s| s.version)?),
        Column::Int("created_position", stored(summaries, |s| s.created_position)?),
        Column::Text("updated_at", text(|s| s.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
    ];
    // `created_position` never changes: the upsert may rewrite it to the same value.
    Ok(tx.upsert(table, "order_id", &columns, Some("version")).await?)
}

/// A version or position of every summary, as the column stores it.
fn stored(summaries: &[OrderSummary], field: fn(&OrderSummary) -> u64) -> Result<Vec<i64>, ProjectionError> {
    summaries
        .iter()
        .map(|s| {
            i64::try_from(field(s)).map_err(|_| {
                ProjectionError::Store(ordo_store::StoreError::OutOfRange {
                    what: "version or position",
                    value: field(s),
                })
            })
        })
        .collect()
}

/// One order's summary, if the read model has it. The read model trails the
/// commands: use [`wait_for_order`] to read a write of one's own.
pub async fn get_order(db: &ReadDb, order_id: &str) -> Result<Option<OrderSummary>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM {ORDER_SUMMARIES} WHERE order_id = $1");
    let row = db.fetch_all::<Row>(&sql, &[order_id.into()]).await?.pop();
    row.map(Row::into_summary).transpose()
}

/// What a read-your-writes wait found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderWait {
    /// The read model holds the order at the version asked for, or later.
    Reached(OrderSummary),
    /// Time ran out first; this is what the read model held then (if anything).
    Behind(Option<OrderSummary>),
}

/// Waits (at most `timeout`) until the read model holds `order_id` at `min_version`
/// or later: read-your-writes, with the `version` a command answered. Waiting needs
/// `runtime` to run [`OrderSummaryProjector`] ([`ProjectionError::UnknownProjector`]
/// otherwise).
pub async fn wait_for_order(
    runtime: &ProjectionRuntime,
    order_id: &str,
    min_version: u64,
    timeout: Duration,
) -> Result<OrderWait, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let summary = get_order(runtime.db(), order_id).await?;
        if let Some(summary) = summary.as_ref().filter(|s| s.version >= min_version) {
            return Ok(OrderWait::Reached(summary.clone()));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(OrderWait::Behind(summary));
        }
        runtime.changed(ORDER_SUMMARIES, (deadline - now).min(Duration::from_millis(50))).await?;
    }
}

/// A page of the listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPage {
    /// The orders, oldest creation first.
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// The most orders one page of the listing holds.
pub const MAX_PAGE: usize = 500;
/// The orders a page holds when the caller does not say.
pub const DEFAULT_PAGE: usize = 50;

/// What to list.
#[derive(Clone, Debug)]
pub struct ListOrders {
    /// Only this customer's orders.
    pub customer_id: Option<String>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Orders per page, clamped to 1..=[`MAX_PAGE`] ([`DEFAULT_PAGE`] by default).
    pub limit: usize,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl Default for ListOrders {
    /// Every order, [`DEFAULT_PAGE`] a page, from the first.
    fn default() -> Self {
        Self { customer_id: None, status: None, limit: DEFAULT_PAGE, cursor: None }
    }
}

/// A cursor that is not one of ours.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor")]
pub struct InvalidCursor;

/// Parses a cursor (an opaque token to clients: the creation position of the last
/// order on the previous page). Anything that is not a cursor [`list_orders`] made
/// is refused.
pub fn parse_cursor(cursor: &str) -> Result<Position, InvalidCursor> {
    cursor.strip_prefix('c').and_then(|p| p.parse().ok()).ok_or(InvalidCursor)
}

/// Orders by creation, filtered by customer and status, a page at a time. Pages are
/// stable: an order's place never changes, so no order is shown twice or skipped.
/// Fails with [`ListError::InvalidCursor`] for a cursor it did not make.
pub async fn list_orders(db: &ReadDb, query: &ListOrders) -> Result<OrderPage, ListError> {
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?.unwrap_or(0);
    let mut conditions = vec!["created_position > $1".to_owned()];
    let mut params = vec![SqlValue::from(i64::try_from(after).map_err(|_| InvalidCursor)?)];
    if let Some(customer) = &query.customer_id {
        params.push(customer.as_str().into());
        conditions.push(format!("customer_id = ${}", params.len()));
    }
    if let Some(status) = query.status {
        params.push(status.as_str().into());
        conditions.push(format!("status = ${}", params.len()));
    }
    let limit = query.limit.clamp(1, MAX_PAGE);
    params.push(SqlValue::from(limit as i64 + 1));
    let sql = format!(
        "SELECT {COLUMNS} FROM {ORDER_SUMMARIES} WHERE {} ORDER BY created_position LIMIT ${}",
        conditions.join(" AND "),
        params.len()
    );
    let rows = db.fetch_all::<Row>(&sql, &params).await.map_err(ProjectionError::from)?;
    let mut orders = rows.into_iter().map(Row::into_summary).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if orders.len() > limit {
        orders.truncate(limit);
        orders.last().map(|o| format!("c{}", o.created_position))
    } else {
        None
    };
    Ok(OrderPage { orders, next_cursor })
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The cursor is not one [`list_orders`] made: the caller's to fix.
    #[error(transparent)]
    InvalidCursor(#[from] InvalidCursor),
    /// The query failed, or a row does not decode.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}
