//! The in-process driver: the same mix with no HTTP, through what the server itself
//! runs per request — a `CommandHandler<Order>` with the server's default settings on
//! the store, projectors running in this process, and the read as the server's
//! `min_version` wait on the order read model (at most 5 s, as the server's default).

use ordo_core::{CommandError, CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, OrderWait};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderStatus};
use ordo_projection::ProjectionRuntime;
use std::time::Duration;

use super::driver::{Driver, Reply};
use super::workflow::{self, Step, Workflow};

/// The server's default `min_version` wait.
const READ_WAIT: Duration = Duration::from_secs(5);

pub struct InProcessDriver {
    handler: CommandHandler<Order>,
    runtime: ProjectionRuntime,
}

impl InProcessDriver {
    /// A handler configured as `ordo serve` configures its own, on `runtime`'s store.
    pub fn new(runtime: ProjectionRuntime) -> Self {
        let handler = CommandHandler::new(std::sync::Arc::clone(runtime.store()), HandlerConfig::default());
        Self { handler, runtime }
    }

    fn command(workflow: &Workflow, step: Step) -> Result<OrderCommand, String> {
        let invalid = |e: ordo_orders::values::ValidationError| format!("invalid input: {e}");
        Ok(match step {
            Step::Create => {
                OrderCommand::CreateOrder { customer_id: CustomerId::parse(&workflow.customer_id).map_err(invalid)? }
            }
            Step::AddItem { index } => {
                let item = workflow::item(index);
                OrderCommand::AddItem {
                    sku: Sku::parse(&item.sku).map_err(invalid)?,
                    quantity: Quantity::new(item.quantity).map_err(invalid)?,
                    unit_price: UnitPrice::new(item.unit_price_cents).map_err(invalid)?,
                }
            }
            Step::Place => OrderCommand::PlaceOrder,
            Step::Pay { amount_cents } => OrderCommand::PayOrder { amount_cents, payment_ref: None },
            Step::Read { .. } => return Err("a read is not a command".into()),
        })
    }

    async fn read(&self, order_id: &str, min_version: u64) -> Reply {
        match read_model::wait_for_order(&self.runtime, order_id, min_version, READ_WAIT).await {
            Ok(OrderWait::Reached(order))
                if order.status == OrderStatus::Paid && order.total_cents == workflow::amount_due() =>
            {
                Reply::Done { version: order.version }
            }
            Ok(OrderWait::Reached(order)) => {
                Reply::Failed(format!("read: status {:?}, total {}", order.status, order.total_cents))
            }
            Ok(OrderWait::Behind(_)) => Reply::Failed("read: projection lagging".into()),
            Err(e) => Reply::Failed(format!("read: {e}")),
        }
    }
}

impl Driver for InProcessDriver {
    async fn execute(&self, workflow: &Workflow, step: Step) -> Reply {
        let order_id = workflow.order_id.hyphenated().to_string();
        if let Step::Read { min_version } = step {
            return self.read(&order_id, min_version).await;
        }
        let command = match Self::command(workflow, step) {
            Ok(command) => command,
            Err(e) => return Reply::Failed(e),
        };
        match self.handler.handle(CommandRequest::new(order_id, command)).await {
            Ok(committed) => Reply::Done { version: committed.version },
            Err(CommandError::Rejected { rejection, .. }) => Reply::Failed(format!("rejected: {}", rejection.code())),
            Err(e) => Reply::Failed(format!("command: {e}")),
        }
    }
}
