//! The unit of resolved timestamps, leasing and transactional apply: one target schema.

/// One target schema: the unit of resolved timestamps, leasing and transactional apply.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub database: String,
    pub schema: String,
}

impl Partition {
    pub fn new(database: impl Into<String>, schema: impl Into<String>) -> Self {
        Partition { database: database.into(), schema: schema.into() }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.schema)
    }
}
