//! The queue interface for workers inside the ingest process: direct calls into the service.

use std::time::Duration;

use crate::client::{Grant, QueueClient, QueueError, Release, WindowReader};
use crate::journal::{Chunk, ChunkLimits, WindowCursor};
use crate::lease::WorkerId;
use crate::record::Partition;
use crate::service::QueueService;
use wharf_base::hlc::Hlc;

/// One in-process session of `workers` workers. Its leases never expire: they live as long as
/// the process that serves them.
#[derive(Clone)]
pub struct LocalClient {
    service: QueueService,
    session: u64,
    workers: u32,
}

impl LocalClient {
    pub fn new(service: QueueService, name: &str, workers: u32) -> Self {
        let session = service.open_session(name, workers, false);
        LocalClient { service, session, workers }
    }

    /// The worker count the session was opened with.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    fn worker(&self, index: u32) -> WorkerId {
        WorkerId { session: self.session, index }
    }
}

pub struct LocalWindow {
    service: QueueService,
    worker: WorkerId,
    partition: Partition,
    epoch: u64,
    cursor: Option<WindowCursor>,
}

impl QueueClient for LocalClient {
    type Window = LocalWindow;

    async fn acquire(&self, worker: u32, wait: Duration) -> Result<Option<Grant>, QueueError> {
        Ok(self.service.acquire(self.worker(worker), wait).await?)
    }

    async fn open(
        &self,
        worker: u32,
        grant: &Grant,
        after: Hlc,
        tables: Vec<String>,
    ) -> Result<LocalWindow, QueueError> {
        let cursor = self
            .service
            .open_window(self.worker(worker), &grant.partition, grant.epoch, after, grant.upto, tables)
            .ok_or_else(|| QueueError::NotHolder(grant.partition.to_string()))?;
        Ok(LocalWindow {
            service: self.service.clone(),
            worker: self.worker(worker),
            partition: grant.partition.clone(),
            epoch: grant.epoch,
            cursor: Some(cursor),
        })
    }

    async fn committed(&self, worker: u32, grant: &Grant, checkpoint: Hlc, rows: u64) -> Result<bool, QueueError> {
        Ok(self.service.committed(self.worker(worker), &grant.partition, grant.epoch, checkpoint, rows).await?)
    }

    async fn release(&self, worker: u32, grant: &Grant, how: Release) -> Result<(), QueueError> {
        self.service.release(self.worker(worker), &grant.partition, grant.epoch, &how);
        Ok(())
    }
}

impl WindowReader for LocalWindow {
    async fn next_chunk(&mut self, limits: ChunkLimits) -> Result<Chunk, QueueError> {
        let cursor = self.cursor.take().ok_or_else(|| QueueError::Protocol("window read after an error".into()))?;
        // Reading is progress; a lease lost meanwhile shows at the commit, which is fenced.
        self.service.progress(self.worker, &self.partition, self.epoch);
        let (cursor, chunk) = self.service.read(self.partition.clone(), cursor, limits).await?;
        self.cursor = Some(cursor);
        Ok(chunk)
    }
}
