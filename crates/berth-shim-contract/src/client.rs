//! Dialling a shim: a channel to its unix socket and the generated client on it.

use std::path::Path;

use berth_api::berth::shim::v1::shim_client::ShimClient;
use tonic::transport::{Channel, Endpoint};

/// A client for the shim serving `socket`.
pub async fn connect(socket: &Path) -> Result<ShimClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("unix://{}", socket.display()))?
        .connect()
        .await?;
    Ok(ShimClient::new(channel))
}
