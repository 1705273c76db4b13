//! fn-metrics: consumes the metrics queue; writes one metric row per prediction or ensemble and
//! asks for a merge. Links no burn.

use statapp_lambda::{Handler, Services, init_logging, serve};
use statapp_stages::dispatch;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), statapp_lambda::lambda_runtime::Error> {
    init_logging();
    let services = Arc::new(Services::from_env().await?);
    let handler: Handler =
        Arc::new(move |body| dispatch::metrics(body, &services.store, services.outputs()));
    serve("metrics", handler).await
}
