//! The API Lambda: the same axum Router the local runner serves, run by lambda_http.

use chunkstream::{api, app_state, aws, config::Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_tracing();
    let config = Config::from_env()?;
    let clients = aws::clients_from_env().await;
    let app = api::app(app_state(config, &clients));
    lambda_http::run(app).await
}
