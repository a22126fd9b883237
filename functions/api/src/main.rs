//! The API Lambda: the same axum Router the local runner serves, run by lambda_http.

use chunkstream::owner::{self, OwnerConfig};
use chunkstream::{api, app_state, aws, config::Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_tracing();
    let config = Config::from_env()?;
    let owner_config = OwnerConfig::from_env()?;
    let aws_config = aws::sdk_config_from_lambda_env()?;
    let clients = aws::clients(&aws_config);
    let state = app_state(config, &clients);
    let owners = owner::owner_state_from_env(
        owner_config,
        state.sessions.clone(),
        state.config.public_base_url.clone(),
        state.config.presign_ttl,
        &aws_config,
    );
    let app = owner::wrap(api::app(state), owners);
    lambda_http::run(app).await
}
