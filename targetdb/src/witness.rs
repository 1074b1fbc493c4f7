//! The target's checkpoint rows as the queue service's [`CommitWitness`]: before the journal
//! forgets a partition's rows on a commit report, the service reads the row the commit wrote
//! (its own connection, opened on first use and again after it breaks).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::Mutex;
use tokio_postgres::Client;
use wharf_queue::Partition;
use wharf_queue::service::{CommitWitness, TargetCheckpoint};

pub struct CheckpointWitness {
    conn: String,
    staging_schema: String,
    client: Mutex<Option<Client>>,
}

impl CheckpointWitness {
    pub fn new(conn: &str, staging_schema: &str) -> Self {
        CheckpointWitness { conn: conn.to_owned(), staging_schema: staging_schema.to_owned(), client: Mutex::new(None) }
    }

    async fn read(&self, partition: &Partition) -> Option<TargetCheckpoint> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = Some(
                crate::connect(&self.conn)
                    .await
                    .inspect_err(|error| tracing::warn!(%error, "cannot reach the target to confirm a commit report"))
                    .ok()?,
            );
        }
        let row = crate::checkpoint::read(client.as_ref()?, &self.staging_schema, partition).await;
        match row {
            Ok(row) => row.map(|r| TargetCheckpoint { resolved: r.resolved, epoch: r.epoch }),
            Err(error) => {
                tracing::warn!(%partition, error = %crate::describe_pg(&error), "cannot read the checkpoint row to confirm a commit report");
                None
            }
        }
    }
}

impl CommitWitness for CheckpointWitness {
    fn checkpoint<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> Pin<Box<dyn Future<Output = Option<TargetCheckpoint>> + Send + 'a>> {
        Box::pin(self.read(partition))
    }
}
