//! Names and help texts of every aggregator metric (listed in docs/metrics.md).

pub const EVENTS: &str = "netqoe_aggregator_events_total";
pub const BATCHES: &str = "netqoe_aggregator_batches_committed_total";
pub const ROWS: &str = "netqoe_aggregator_rows_written_total";
pub const COMMIT_DURATION: &str = "netqoe_aggregator_commit_duration_seconds";
pub const FRESHNESS: &str = "netqoe_aggregator_freshness_seconds";
pub const PENDING: &str = "netqoe_aggregator_consumer_pending_messages";
pub const ACK_PENDING: &str = "netqoe_aggregator_consumer_ack_pending_messages";
pub const DLQ: &str = "netqoe_aggregator_dlq_messages_total";
pub const DLQ_PUSHED_OUT: &str = "netqoe_aggregator_dlq_discarded_total";
pub const DB_ERRORS: &str = "netqoe_aggregator_db_errors_total";
pub const NATS_ERRORS: &str = "netqoe_aggregator_nats_errors_total";
pub const READY: &str = "netqoe_aggregator_ready";
pub const PRUNED: &str = "netqoe_aggregator_pruned_rows_total";
pub const REDELIVERED: &str = "netqoe_aggregator_redelivered_messages_total";
pub const KEPT_ALIVE: &str = "netqoe_aggregator_in_progress_acks_total";

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(EVENTS, "events processed, by outcome (new, duplicate, dlq)");
    describe_counter!(BATCHES, "batches committed to Postgres");
    describe_counter!(ROWS, "agg_1m rows written");
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "time of one batch transaction"
    );
    describe_histogram!(
        FRESHNESS,
        Unit::Seconds,
        "now minus recv_ts_ms of each new event at commit"
    );
    describe_gauge!(
        PENDING,
        "messages of QOE_EVENTS not yet delivered to the consumer"
    );
    describe_gauge!(ACK_PENDING, "messages delivered and not yet acknowledged");
    describe_counter!(DLQ, "messages sent to QOE_DLQ, by reason");
    describe_counter!(
        DLQ_PUSHED_OUT,
        "old dead letters a full QOE_DLQ discarded to store new ones"
    );
    describe_counter!(
        DB_ERRORS,
        "failed batch transactions (transient ones retried, permanent ones isolated)"
    );
    describe_counter!(
        NATS_ERRORS,
        "failed fetches, acks and DLQ publishes (retried)"
    );
    describe_gauge!(
        READY,
        "1 while the last fetch and the last commit succeeded"
    );
    describe_counter!(PRUNED, "rows deleted by retention, by table");
    describe_counter!(
        REDELIVERED,
        "messages fetched that had been delivered before (not acked within the ack wait, or naked)"
    );
    describe_counter!(
        KEPT_ALIVE,
        "in-progress acks sent for fetched messages still waiting for their commit"
    );
    // Every series exists from the start, at zero, so alerts on rates see it before the
    // first failure.
    for outcome in ["new", "duplicate", "dlq"] {
        metrics::counter!(EVENTS, "outcome" => outcome).increment(0);
    }
    for reason in ["undecodable", "invalid", "unmergeable"] {
        metrics::counter!(DLQ, "reason" => reason).increment(0);
    }
    for table in ["events_seen", "agg_1m"] {
        metrics::counter!(PRUNED, "table" => table).increment(0);
    }
    for name in [
        BATCHES,
        ROWS,
        DB_ERRORS,
        NATS_ERRORS,
        REDELIVERED,
        KEPT_ALIVE,
        DLQ_PUSHED_OUT,
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [PENDING, ACK_PENDING, READY] {
        metrics::gauge!(name).set(0.0);
    }
}
