//! A group whose tables the target's foreign keys now link to another group: the ingest's
//! grouping is behind the target's catalog until its next read (`--catalogRefresh`). A row the
//! target refuses for such a key may only be waiting for its parent in the other group, so the
//! worker pauses the group briefly ([`crate::error::ApplyError::Regrouping`]) instead of
//! refusing the row under `--onApplyError`; the regrouping then merges the two.

/// The tables that `catalog_groups` (the target's foreign-key groups) link to `tables` from
/// outside them, sorted: none when `tables` is a union of the target's groups.
pub(crate) fn linked_outside(catalog_groups: &[Vec<String>], tables: &[String]) -> Vec<String> {
    let mut others: Vec<String> = catalog_groups
        .iter()
        .filter(|group| group.iter().any(|t| tables.contains(t)))
        .flatten()
        .filter(|t| !tables.contains(t))
        .cloned()
        .collect();
    others.sort();
    others
}

#[cfg(test)]
mod tests {
    use super::linked_outside;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_a_target_group_reaching_outside_the_granted_tables_links_them() {
        let target = [names(&["stock", "warehouses"]), names(&["events"])];
        assert_eq!(linked_outside(&target, &names(&["stock"])), names(&["warehouses"]));
        assert!(linked_outside(&target, &names(&["stock", "warehouses"])).is_empty(), "the same group");
        assert!(linked_outside(&target, &names(&["events", "stock", "warehouses"])).is_empty(), "a merged group");
        assert!(linked_outside(&target, &names(&["new"])).is_empty(), "a table the target lacks");
    }
}
