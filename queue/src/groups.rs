//! Foreign-key groups as lease units (`--partitionBy group`, decision 0011): which units a schema
//! has, their tables, and what each applied. Pure state, driven by the queue service.
//!
//! The journal keeps rows, resolved timestamps and compaction per schema; a group is leased,
//! applied and checkpointed on its own, its windows being the schema's filtered to its tables.
//! The journal may forget a schema's rows only up to the lowest checkpoint of its groups.
//!
//! When the catalog's groups change, the new grouping replaces the old one at once: the old
//! units are no longer leased (their holders find out at their next window or commit), and the
//! new ones are claimed in the target, where each seeds its checkpoint from the rows of the units
//! it takes tables over from, so that nothing is applied twice or skipped (see
//! `wharf_targetdb::checkpoint`). What the queue service kept of the schema's groups' progress is
//! forgotten then: a report of an old unit must not let the journal forget rows a new one needs.

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

/// The groupings of the schemas that have one, and the checkpoint each group reported.
#[derive(Debug, Default)]
pub struct Groups {
    by_schema: HashMap<Partition, Grouping>,
    applied: HashMap<Partition, Hlc>,
}

impl Groups {
    /// Whether `groups` (as the catalog gives them) is `schema`'s grouping in force: the check made
    /// on every request, without building a grouping.
    pub fn is_current(&self, schema: &Partition, groups: &[Vec<String>]) -> bool {
        self.by_schema.get(schema).is_some_and(|current| {
            let mut tables = current.groups.iter().map(|(_, tables)| tables);
            current.groups.len() == groups.iter().filter(|g| !g.is_empty()).count()
                && groups.iter().filter(|g| !g.is_empty()).all(|g| tables.next() == Some(g))
        })
    }

    /// Sets `schema`'s grouping; returns `None` when it is the one in force, else the units whose
    /// leases end: the schema itself when it had no grouping, and each old group that is not a
    /// group of the new one with the same tables (one keeping its name with other tables too).
    pub fn set(&mut self, schema: &Partition, grouping: Grouping) -> Option<Vec<Partition>> {
        let ended = match self.by_schema.get(schema) {
            Some(current) if *current == grouping => return None,
            Some(current) => {
                current.groups.iter().filter(|g| !grouping.groups.contains(g)).map(|(u, _)| u.clone()).collect()
            }
            None => vec![schema.clone()],
        };
        self.applied.retain(|unit, _| unit.schema_level() != *schema);
        self.by_schema.insert(schema.clone(), grouping);
        Some(ended)
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
    /// has one (what the journal may forget up to). A unit of no current grouping counts for
    /// nothing.
    pub fn mark_applied(&mut self, unit: &Partition, checkpoint: Hlc) -> Option<Hlc> {
        let grouping = self.by_schema.get(&unit.schema_level())?;
        if !grouping.groups.iter().any(|(u, _)| u == unit) {
            return None;
        }
        let entry = self.applied.entry(unit.clone()).or_insert(checkpoint);
        *entry = (*entry).max(checkpoint);
        grouping
            .groups
            .iter()
            .map(|(u, _)| self.applied.get(u).copied())
            .collect::<Option<Vec<Hlc>>>()?
            .into_iter()
            .min()
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
        assert_eq!(
            groups.set(&a, Grouping::of(&a, &[names(&["customers", "orders"]), names(&["events"])])),
            Some(vec![a.clone()])
        );
        assert_eq!(groups.units(&[a.clone(), b.clone()]), [a.group("customers"), a.group("events"), b.clone()]);
        assert_eq!(groups.tables(&a.group("customers")), Some(names(&["customers", "orders"]).as_slice()));
        assert_eq!(groups.tables(&b), None);
        assert!(groups.is_current(&a, &[names(&["customers", "orders"]), names(&["events"])]));
        assert!(!groups.is_current(&a, &[names(&["customers", "events", "orders"])]));
        assert!(!groups.is_current(&Partition::new("db", "b"), &[names(&["events"])]));
        let again = Grouping::of(&a, &[names(&["customers", "orders"]), names(&["events"])]);
        assert_eq!(groups.set(&a, again), None);
        let merged = Grouping::of(&a, &[names(&["customers", "events", "orders"])]);
        assert_eq!(
            groups.set(&a, merged),
            Some(vec![a.group("customers"), a.group("events")]),
            "the same name, other tables"
        );
        assert_eq!(groups.units(std::slice::from_ref(&a)), [a.group("customers")]);
        assert_eq!(groups.tables(&a.group("events")), None, "an old unit is no longer leased");
    }

    #[test]
    fn a_regrouping_forgets_the_old_units_progress() {
        let a = Partition::new("db", "a");
        let mut groups = Groups::default();
        groups.set(&a, Grouping::of(&a, &[names(&["x"]), names(&["y"])]));
        groups.mark_applied(&a.group("x"), Hlc::new(50, 0));
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(40, 0)), Some(Hlc::new(40, 0)));
        groups.set(&a, Grouping::of(&a, &[names(&["x", "y"])]));
        assert_eq!(groups.applied(&a.group("x")), None);
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(60, 0)), None, "y is no unit any more");
        assert_eq!(groups.mark_applied(&a.group("x"), Hlc::new(45, 0)), Some(Hlc::new(45, 0)));
    }

    #[test]
    fn the_schema_compacts_to_its_slowest_group_once_each_has_a_checkpoint() {
        let a = Partition::new("db", "a");
        let mut groups = Groups::default();
        groups.set(&a, Grouping::of(&a, &[names(&["x"]), names(&["y"])]));
        assert_eq!(groups.mark_applied(&a.group("x"), Hlc::new(20, 0)), None);
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(10, 0)), Some(Hlc::new(10, 0)));
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(30, 0)), Some(Hlc::new(20, 0)));
        assert_eq!(groups.mark_applied(&a.group("y"), Hlc::new(5, 0)), Some(Hlc::new(20, 0)), "never back");
    }
}
