//! fn-aggregate: consumes the aggregate queue (ensembles of a case) and the merge queue (the
//! combined CSV).

use statapp_lambda::{Handler, Services, init_logging, serve};
use statapp_stages::dispatch;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), statapp_lambda::lambda_runtime::Error> {
    init_logging();
    let services = Arc::new(Services::from_env().await?);
    let handler: Handler =
        Arc::new(move |body| dispatch::aggregate(body, &services.store, services.outputs()));
    serve("aggregate", handler).await
}
