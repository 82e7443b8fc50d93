//! The order workflow mix that both the HTTP and the in-process drivers run: create an
//! order, add [`ITEMS`] items, place it, pay the amount due, and read it back at the
//! version the payment reached (read-your-writes). Each workflow owns its order, so
//! no two requests ever race on one aggregate.

use uuid::Uuid;

/// Items added to every order.
pub const ITEMS: u32 = 3;
/// Commands per workflow: create, the items, place, pay.
pub const COMMANDS: u64 = ITEMS as u64 + 3;
/// Requests per workflow: the commands and one read.
pub const REQUESTS: u64 = COMMANDS + 1;
/// Customers the orders are spread over.
const CUSTOMERS: u64 = 100;

/// One item line of the mix.
pub struct Item {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// The `index`-th item of every order.
pub fn item(index: u32) -> Item {
    Item {
        sku: format!("sku-{index}"),
        quantity: i64::from(index) + 1,
        unit_price_cents: 1_000 + 250 * i64::from(index),
    }
}

/// What an order of the mix costs once its items are in: the `pay` amount, and the
/// `total_cents` the read must show.
pub fn amount_due() -> i64 {
    (0..ITEMS).map(item).map(|i| i.quantity * i.unit_price_cents).sum()
}

/// One request of a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Create,
    AddItem {
        index: u32,
    },
    Place,
    Pay {
        amount_cents: i64,
    },
    /// Read the order once the read model has applied `min_version`.
    Read {
        min_version: u64,
    },
}

impl Step {
    pub fn is_command(self) -> bool {
        !matches!(self, Step::Read { .. })
    }
}

/// One order going through the mix: which request comes next, and the stream
/// version the last command reached.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub order_id: Uuid,
    pub customer_id: String,
    /// Requests done so far (0..REQUESTS).
    done: u64,
    /// The stream version after the last command.
    version: u64,
}

impl Workflow {
    /// A new order; `n` spreads the orders over the customers.
    pub fn new(n: u64) -> Self {
        Self { order_id: Uuid::new_v4(), customer_id: format!("bench-customer-{}", n % CUSTOMERS), done: 0, version: 0 }
    }

    /// The next request.
    pub fn step(&self) -> Step {
        match self.done {
            0 => Step::Create,
            n if n <= u64::from(ITEMS) => Step::AddItem { index: (n - 1) as u32 },
            n if n == u64::from(ITEMS) + 1 => Step::Place,
            n if n == u64::from(ITEMS) + 2 => Step::Pay { amount_cents: amount_due() },
            _ => Step::Read { min_version: self.version },
        }
    }

    /// The workflow after its next request succeeded with the stream at `version`;
    /// `None` once the read is done.
    pub fn advance(mut self, version: u64) -> Option<Self> {
        self.done += 1;
        self.version = self.version.max(version);
        (self.done < REQUESTS).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_creates_adds_places_pays_and_reads_at_the_paid_version() {
        let mut workflow = Some(Workflow::new(7));
        let mut steps = Vec::new();
        let mut version = 0;
        while let Some(w) = workflow {
            steps.push(w.step());
            if w.step().is_command() {
                version += 1;
            }
            workflow = w.advance(version);
        }
        let expected = vec![
            Step::Create,
            Step::AddItem { index: 0 },
            Step::AddItem { index: 1 },
            Step::AddItem { index: 2 },
            Step::Place,
            Step::Pay { amount_cents: 1_000 + 2 * 1_250 + 3 * 1_500 },
            Step::Read { min_version: 6 },
        ];
        assert_eq!(steps, expected);
        assert_eq!(steps.len() as u64, REQUESTS);
        assert_eq!(steps.iter().filter(|s| s.is_command()).count() as u64, COMMANDS);
    }
}
