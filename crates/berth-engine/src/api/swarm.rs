//! Swarm endpoints: berth has no swarm mode, and answers as a dockerd outside a swarm.

use http::Response;

use super::Body;
use crate::error::EngineError;

/// `POST /swarm/leave`: 503 "This node is not part of a swarm" (docker-py's tear-down
/// accepts it).
pub fn leave() -> Result<Response<Body>, EngineError> {
    Err(EngineError::NoSwarm)
}
