//! Property: for random command sequences, the read model built incrementally (in
//! small batches, as events arrive) equals the one a rebuild from scratch produces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, ListOrders, ORDER_SUMMARIES};
use ordo_orders::testing::{step, Step};
use ordo_orders::Order;
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::testing::{run, TestDatabase};
use ordo_store::Backend;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

async fn incremental_equals_rebuild(db: TestDatabase, steps: Vec<(u8, Step)>) {
    let database = db.open().await;
    let store = Arc::clone(&database.store);
    let config = RunnerConfig { batch_size: 3, poll_interval: Duration::from_millis(20), ..RunnerConfig::default() };
    let rt = ProjectionRuntime::open(database, ordo_orders::projectors(), config).await.unwrap();
    let handler = CommandHandler::<Order>::new(Arc::clone(&store), HandlerConfig::default());
    rt.start().await.unwrap();
    let mut last = 0;
    for (order, step) in &steps {
        let id = format!("p{order}");
        let stream = CommandHandler::<Order>::stream_id(&id).unwrap();
        let (_, state) = handler.load(&stream).await.unwrap();
        if let Ok(done) = handler.handle(CommandRequest::new(id, step.command(&state))).await {
            last = last.max(done.position);
        }
    }
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(30)).await.unwrap());
    let everything = ListOrders { limit: 500, ..ListOrders::default() };
    let incremental = read_model::list_orders(rt.db(), &everything).await.unwrap();
    rt.rebuild(ORDER_SUMMARIES, |_| {}).await.unwrap();
    let rebuilt = read_model::list_orders(rt.db(), &everything).await.unwrap();
    rt.shutdown().await;
    assert_eq!(incremental, rebuilt);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn incremental_application_equals_a_full_rebuild(steps in prop::collection::vec((0u8..4, step()), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let steps = steps.clone();
            runtime.block_on(run(backend, "incremental_application_equals_a_full_rebuild", move |db| incremental_equals_rebuild(db, steps)));
        }
    }
}
