//! What the Supervisor tells about its node: the status the dashboard shows, the
//! runners, and the context a dashboard serving the node needs.

use super::Supervisor;
use crate::error::Error;
use crate::messages::{GetNodeContext, NodeContext, NodeStatus, QueueState, QueueStatus, Status};
use actix::prelude::*;

impl Handler<Status> for Supervisor {
    type Result = ResponseFuture<Result<NodeStatus, Error>>;
    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        let (store, queue, node) = (self.store.clone(), self.queue.clone(), self.node.clone());
        Box::pin(async move {
            let queue = queue.send(QueueStatus).await.map_err(Error::NodeGone)?;
            Ok(NodeStatus {
                node,
                counts: store.queue_counts().await?,
                queue,
                scheduled: store.list_scheduled().await?,
                nodes: store.list_nodes().await?,
            })
        })
    }
}

impl Handler<QueueStatus> for Supervisor {
    type Result = ResponseFuture<QueueState>;
    /// This node's runners, as its queue sees them now.
    fn handle(&mut self, _: QueueStatus, _: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move {
            queue.send(QueueStatus).await.unwrap_or(QueueState {
                runners: Vec::new(),
                completed: 0,
                draining: true,
                connections: Default::default(),
            })
        })
    }
}

impl Handler<GetNodeContext> for Supervisor {
    type Result = MessageResult<GetNodeContext>;
    fn handle(&mut self, _: GetNodeContext, _: &mut Context<Self>) -> Self::Result {
        MessageResult(NodeContext {
            node: self.node.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            maintenance_offset: self.children.maintenance_offset,
        })
    }
}
