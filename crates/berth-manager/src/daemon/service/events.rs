//! `berth.manager.v1.Events`: a live stream of the bus (see `events.rs`).

use berth_api::berth::manager::v1 as pb;
use berth_api::berth::manager::v1::events_server::Events;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response};

use super::{Res, Svc};
use crate::daemon::events::Item;

#[tonic::async_trait]
impl Events for Svc {
    type SubscribeStream = ReceiverStream<Item>;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Res<Self::SubscribeStream> {
        let rx = self.d.events.subscribe(&req.into_inner().filters)?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
