use super::*;

fn p() -> Partition {
    Partition::new("app", "public")
}

fn seen(resolved: Option<u64>, applied: Option<u64>) -> Observed {
    Observed { resolved: resolved.map(|w| Hlc::new(w, 0)), applied: applied.map(|w| Hlc::new(w, 0)) }
}

const T: Duration = Duration::from_secs(60);

#[test]
fn resolved_rows_that_are_not_applied_stall_after_the_timeout_and_recover() {
    let watch = StallWatch::new(T);
    let t0 = Instant::now();
    watch.observe([(p(), seen(Some(10), None))], t0);
    assert!(watch.reasons(t0 + T).is_empty(), "not yet");
    watch.observe([(p(), seen(Some(10), None))], t0 + T + Duration::from_secs(1));
    let reasons = watch.reasons(t0 + T + Duration::from_secs(1));
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with("app.public: resolved rows have waited 1m 1s and nothing was applied"),
        "{reasons:?}"
    );
    // Progress (even partial) restarts the clock; catching up clears it.
    watch.observe([(p(), seen(Some(20), Some(10)))], t0 + 2 * T);
    assert!(watch.reasons(t0 + 2 * T).is_empty());
    assert_eq!(watch.reasons(t0 + 3 * T + Duration::from_secs(1)).len(), 1);
    watch.observe([(p(), seen(Some(20), Some(20)))], t0 + 4 * T);
    assert!(watch.reasons(t0 + 9 * T).is_empty());
}

#[test]
fn rows_without_new_resolved_timestamps_stall_only_once_the_feed_resolved_before() {
    let watch = StallWatch::new(T);
    let t0 = Instant::now();
    // An initial scan: rows, no resolved timestamp yet. Logged, not a stall.
    watch.rows_arrived(&p(), Hlc::new(5, 0));
    watch.observe([(p(), seen(None, None))], t0);
    watch.observe([(p(), seen(None, None))], t0 + 10 * T);
    assert!(watch.reasons(t0 + 10 * T).is_empty());
    // Resolved and applied; then rows above it and silence.
    watch.observe([(p(), seen(Some(5), Some(5)))], t0 + 11 * T);
    watch.rows_arrived(&p(), Hlc::new(7, 0));
    watch.observe([(p(), seen(Some(5), Some(5)))], t0 + 12 * T);
    assert!(watch.reasons(t0 + 13 * T).is_empty(), "the wait starts when the rows are seen");
    watch.observe([(p(), seen(Some(5), Some(5)))], t0 + 13 * T + Duration::from_secs(1));
    let reasons = watch.reasons(t0 + 13 * T + Duration::from_secs(1));
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("rows keep arriving but no new resolved timestamp came in 1m 1s"), "{reasons:?}");
    watch.observe([(p(), seen(Some(8), Some(8)))], t0 + 14 * T);
    assert!(watch.reasons(t0 + 20 * T).is_empty());
}

#[test]
fn a_zero_timeout_turns_detection_off() {
    let watch = StallWatch::new(Duration::ZERO);
    let t0 = Instant::now();
    watch.observe([(p(), seen(Some(10), None))], t0);
    assert!(watch.reasons(t0 + 100 * T).is_empty());
}
