//! Foreign-key groups as lease units (`--partitionBy group`, decision 0011): which units a schema
//! has, their tables, and what each applied. Pure state, driven by the queue service.
//!
//! The journal keeps rows, resolved timestamps and compaction per schema; a group is leased,
//! applied and checkpointed on its own, its windows being the schema's filtered to its tables.
//! The journal may forget a schema's rows only up to the lowest checkpoint of its groups.
//!
//! Not built yet (the branch's next step): regrouping behind a barrier when the catalog's groups
//! change. Until then a schema's grouping is the first one set, and a different one is refused.

use std::collections::HashMap;

use crate::record::Partition;
use wharf_base::hlc::Hlc;

/// One schema's groups: each a unit (`db.schema/first-table`) and its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub groups: Vec<(Partition, Vec<String>)>,
}

impl Grouping {
    /// From the catalog's groups (each sorted, as `wharf_targetdb::catalog::fk_groups` gives them).
    pub fn of(schema: &Partition, groups: &[Vec<String>]) -> Grouping {
        let groups =
            groups.iter().filter_map(|tables| Some((schema.group(tables.first()?.clone()), tables.clone()))).collect();
        Grouping { groups }
    }
}

/// Why a grouping was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the foreign-key groups of {0} changed; regrouping a running schema is not built yet: restart the ingest")]
pub struct Regrouping(pub String);

/// The groupings of the schemas that have one, and the checkpoint each group reported.
#[derive(Debug, Default)]
pub struct Groups {
    by_schema: HashMap<Partition, Grouping>,
    applied: HashMap<Partition, Hlc>,
    /// Epochs granted to groups (the journal keeps the schemas'): after a restart they start at 0
    /// and the target's fence raises them (a worker's claim below the target's epoch is refused
    /// and the next grant goes above it).
    epochs: HashMap<Partition, u64>,
}

impl Groups {
    /// Sets `schema`'s grouping; the same again is a no-op, another is refused.
    pub fn set(&mut self, schema: &Partition, grouping: Grouping) -> Result<(), Regrouping> {
        match self.by_schema.get(schema) {
            None => {
                self.by_schema.insert(schema.clone(), grouping);
                Ok(())
            }
            Some(current) if *current == grouping => Ok(()),
            Some(_) => Err(Regrouping(schema.to_string())),
        }
    }

    /// The lease units of the journal's schemas: their groups, or the schema itself.
    pub fn units(&self, schemas: &[Partition]) -> Vec<Partition> {
        let mut units = Vec::new();
        for schema in schemas {
            match self.by_schema.get(schema) {
                Some(grouping) => units.extend(grouping.groups.iter().map(|(unit, _)| unit.clone())),
                None => units.push(schema.clone()),
            }
        }
        units
    }

    /// The tables of a group unit (`None` for a schema).
    pub fn tables(&self, unit: &Partition) -> Option<&[String]> {
        unit.group.as_ref()?;
        let grouping = self.by_schema.get(&unit.schema_level())?;
        grouping.groups.iter().find(|(u, _)| u == unit).map(|(_, tables)| tables.as_slice())
    }

    pub fn applied(&self, unit: &Partition) -> Option<Hlc> {
        self.applied.get(unit).copied()
    }

    /// Records a group's checkpoint; returns the lowest of its schema's groups when every group
    /// has one (what the journal may forget up to).
    pub fn mark_applied(&mut self, unit: &Partition, checkpoint: Hlc) -> Option<Hlc> {
        let entry = self.applied.entry(unit.clone()).or_insert(checkpoint);
        *entry = (*entry).max(checkpoint);
        let grouping = self.by_schema.get(&unit.schema_level())?;
        grouping
            .groups
            .iter()
            .map(|(u, _)| self.applied.get(u).copied())
            .collect::<Option<Vec<Hlc>>>()?
            .into_iter()
            .min()
    }

    pub fn epoch(&self, unit: &Partition) -> u64 {
        self.epochs.get(unit).copied().unwrap_or(0)
    }

    pub fn set_epoch(&mut self, unit: &Partition, epoch: u64) {
        let entry = self.epochs.entry(unit.clone()).or_default();
        *entry = (*entry).max(epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn units_are_the_groups_of_grouped_schemas_and_the_other_schemas_whole() {
        let (a, b) = (Partition::new("db", "a"), Partition::new("db", "b"));
        let mut groups = Groups::default();
        groups.set(&a, Grouping::of(&a, &[names(&["customers", "orders"]), names(&["events"])])).unwrap();
        assert_eq!(groups.units(&[a.clone(), b.clone()]), [a.group("customers"), a.group("events"), b.clone()]);
        assert_eq!(groups.tables(&a.group("customers")), Some(names(&["customers", "orders"]).as_slice()));
        assert_eq!(groups.tables(&b), None);
        let again = Grouping::of(&a, &[names(&["customers", "orders"]), names(&["events"])]);
        assert_eq!(groups.set(&a, again), Ok(()));
        let merged = Grouping::of(&a, &[names(&["customers", "events", "orders"])]);
        assert_eq!(groups.set(&a, merged), Err(Regrouping("db.a".into())));
    }

    #[test]
    fn the_schema_compacts_to_its_slowest_group_once_each_has_a_checkpoint() {
        let a = Partition::new("db", "a");
        let mut groups = Groups::default();
        groups.set(&a, Grouping::of(&a, &[names(&["x"]), names(&["y"])])).unwrap();
        assert_eq!(groups.mark_applied(&a.group("x"), Hlc::new(20, 0)), None);
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(10, 0)), Some(Hlc::new(10, 0)));
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(30, 0)), Some(Hlc::new(20, 0)));
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(5, 0)), Some(Hlc::new(20, 0)), "never back");
    }
}
