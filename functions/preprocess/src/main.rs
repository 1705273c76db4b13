//! fn-preprocess: consumes the ingest queue (S3 object-created events for `incoming/` and
//! `models/`), validates complete cases and queues one inference job per (case, model).

use statapp_lambda::{Handler, Services, init_logging, serve};
use statapp_stages::dispatch;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), statapp_lambda::lambda_runtime::Error> {
    init_logging();
    let services = Arc::new(Services::from_env().await?);
    let handler: Handler =
        Arc::new(move |body| dispatch::preprocess(body, &services.store, services.outputs()));
    serve("preprocess", handler).await
}
