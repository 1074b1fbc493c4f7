//! The seam between the journal and the applier.
//!
//! The applier sees the journal only through [`WindowSource`], so a journal served over the
//! network (the QUIC queue service) can replace the local one without touching the apply logic.

use tokio::sync::watch;

use crate::hlc::Hlc;
use crate::journal::{Journal, ReadError, WindowCursor};
use crate::record::{Partition, Row};

pub trait WindowSource: Clone + Send + Sync + 'static {
    /// Partitions that have data or resolved timestamps.
    fn partitions(&self) -> Vec<Partition>;
    /// The newest resolved timestamp of a partition.
    fn resolved(&self, partition: &Partition) -> Option<Hlc>;
    /// The next rows of a window; empty once the cursor is done.
    fn read_chunk(
        &self,
        partition: &Partition,
        cursor: &mut WindowCursor,
        max_rows: usize,
    ) -> Result<Vec<Row>, ReadError>;
    /// Tells the journal that `checkpoint` is committed on the target, so it may compact.
    fn mark_applied(&self, partition: &Partition, checkpoint: Hlc) -> Result<(), ReadError>;
    /// Changes whenever some resolved timestamp advances.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

impl WindowSource for Journal {
    fn partitions(&self) -> Vec<Partition> {
        Journal::partitions(self)
    }
    fn resolved(&self, partition: &Partition) -> Option<Hlc> {
        Journal::resolved(self, partition)
    }
    fn read_chunk(
        &self,
        partition: &Partition,
        cursor: &mut WindowCursor,
        max_rows: usize,
    ) -> Result<Vec<Row>, ReadError> {
        Journal::read_chunk(self, partition, cursor, max_rows)
    }
    fn mark_applied(&self, partition: &Partition, checkpoint: Hlc) -> Result<(), ReadError> {
        Journal::mark_applied(self, partition, checkpoint)
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        Journal::subscribe(self)
    }
}
