//! The target's checkpoint rows as the queue service's witness of commit reports: before the
//! journal forgets a partition's rows on a commit report, the service reads the row the commit
//! wrote (its own connection, opened on first use and again after it breaks). The process that
//! wires the queue service to a target adapts this to the queue's `CommitWitness`.

use tokio::sync::Mutex;
use tokio_postgres::Client;
use wharf_base::Partition;

use crate::checkpoint::CheckpointRow;

pub struct CheckpointWitness {
    conn: String,
    staging_schema: String,
    client: Mutex<Option<Client>>,
}

impl CheckpointWitness {
    pub fn new(conn: &str, staging_schema: &str) -> Self {
        CheckpointWitness { conn: conn.to_owned(), staging_schema: staging_schema.to_owned(), client: Mutex::new(None) }
    }

    /// The partition's checkpoint row; `None` when there is none or it cannot be read (logged).
    pub async fn read(&self, partition: &Partition) -> Option<CheckpointRow> {
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
            Ok(row) => row,
            Err(error) => {
                tracing::warn!(%partition, error = %crate::describe_pg(&error), "cannot read the checkpoint row to confirm a commit report");
                None
            }
        }
    }
}
