//! The unit of resolved timestamps, leasing and transactional apply: one target schema, or one
//! foreign-key group of its tables (`--partitionBy group`, decision 0011).

/// One target schema (`group: None`): the unit of resolved timestamps and of the journal; and,
/// with a group, one foreign-key group of its tables, a unit of leasing and apply of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub database: String,
    pub schema: String,
    /// The group's name (its first table in sort order); `None` for the whole schema.
    pub group: Option<String>,
}

impl Partition {
    pub fn new(database: impl Into<String>, schema: impl Into<String>) -> Self {
        Partition { database: database.into(), schema: schema.into(), group: None }
    }

    /// The group `name` of this schema.
    pub fn group(&self, name: impl Into<String>) -> Self {
        Partition { group: Some(name.into()), ..self.schema_level() }
    }

    /// The whole schema this partition belongs to (what the journal keys rows by).
    pub fn schema_level(&self) -> Self {
        Partition { database: self.database.clone(), schema: self.schema.clone(), group: None }
    }
}

/// `db.schema`, and `db.schema/group` for a group.
impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.schema)?;
        match &self.group {
            Some(group) => write!(f, "/{group}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Partition;

    #[test]
    fn a_group_names_its_schema_and_itself() {
        let schema = Partition::new("app", "public");
        let group = schema.group("customers");
        assert_eq!((schema.to_string(), group.to_string()), ("app.public".into(), "app.public/customers".into()));
        assert_eq!(group.schema_level(), schema);
    }
}
