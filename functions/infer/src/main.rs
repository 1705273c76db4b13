//! fn-infer: consumes the infer queue; predicts one case with one model on the CPU (burn's flex
//! backend), or one part of it when the prediction fans out, or gathers the parts; then queues
//! its metrics job and, once the case has every model, its ensemble job.

use burn::tensor::Device;
use statapp_lambda::{Handler, Services, init_logging, serve};
use statapp_stages::dispatch;
use statapp_stages::infer::InferSettings;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), statapp_lambda::lambda_runtime::Error> {
    init_logging();
    let services = Arc::new(Services::from_env().await?);
    let device = Device::flex();
    let settings = InferSettings::from_env()?;
    let handler: Handler = Arc::new(move |body| {
        dispatch::infer(
            body,
            &services.store,
            services.outputs(),
            &device,
            &settings,
        )
    });
    serve("infer", handler).await
}
