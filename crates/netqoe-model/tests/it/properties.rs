//! Property tests: valid events survive a JSON round trip; mutations never panic the validator;
//! the typed fast path accepts only what the validator accepts, as the same event.

use netqoe_model::{parse_canonical, validate_at, Event, ProbeKind, Timings};
use proptest::prelude::*;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000_000;

fn timing() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), (0.0f64..=600_000.0).prop_map(Some)]
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u128>(),
        // dot-separated parts, none empty (each becomes a NATS subject token)
        "[A-Za-z0-9_:-]{1,20}(\\.[A-Za-z0-9_:-]{1,20}){0,4}",
        (NOW - 7 * 86_400_000)..=(NOW + 300_000),
        prop_oneof![
            (
                "https://[a-z]{1,20}\\.example/[a-z0-9/]{0,30}",
                Just(ProbeKind::Http)
            ),
            ("[a-z]{1,20}\\.lab:[1-9][0-9]{0,3}", Just(ProbeKind::Tcp)),
            (
                "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}\\.?",
                Just(ProbeKind::Dns)
            ),
        ],
        (timing(), timing(), timing(), timing(), timing(), timing()),
        proptest::option::of(100u16..=599),
        proptest::option::of(0.0f64..1e7),
        proptest::option::of(prop::sample::select(netqoe_model::ErrorStage::ALL.to_vec())),
    )
        .prop_map(
            |(bits, client, ts, (target, kind), t, status, tput, stage)| {
                let id = uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid();
                let mut e = Event::new(id, &client, ts, &target);
                e.probe_kind = kind;
                e.timings = Some(Timings {
                    dns_ms: t.0,
                    tcp_ms: t.1,
                    tls_ms: t.2,
                    http_ttfb_ms: t.3,
                    transfer_ms: t.4,
                    total_ms: t.5,
                });
                e.http_status = status;
                e.throughput_kbps = tput;
                e.error_stage = stage;
                e
            },
        )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        ".{0,40}".prop_map(Value::String),
        "[0-9a-f-]{36}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "schema_version",
    "event_id",
    "client_id",
    "ts_ms",
    "target",
    "probe_kind",
    "network_context",
    "timings",
    "timings.dns_ms",
    "timings.total_ms",
    "throughput_kbps",
    "bytes",
    "http_status",
    "ping",
    "tls",
    "error_stage",
    "error_message",
    "recv_ts_ms",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_events_survive_a_json_round_trip(e in event()) {
        let text = serde_json::to_string(&e).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let back = validate_at(&value, NOW).map_err(|errs| TestCaseError::fail(format!("{errs:?}")))?;
        prop_assert_eq!(&back.event, &e);
        prop_assert!(back.warnings.is_empty());
        let typed: Event = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&typed, &e);
        prop_assert_eq!(parse_canonical(text.as_bytes(), |_| NOW), Some(e));
    }

    #[test]
    fn mutations_are_valid_or_rejected_by_field(
        e in event(),
        field in prop::sample::select(FIELDS),
        replacement in json_value(),
        delete in any::<bool>(),
    ) {
        let mut value = serde_json::to_value(&e).unwrap();
        let (parent, key) = match field.split_once('.') {
            Some((p, k)) => {
                if !value[p].is_object() { value[p] = json!({}); }
                (Some(p), k)
            }
            None => (None, field),
        };
        let obj = match parent {
            Some(p) => value.get_mut(p).unwrap().as_object_mut().unwrap(),
            None => value.as_object_mut().unwrap(),
        };
        if delete { obj.remove(key); } else { obj.insert(key.to_string(), replacement); }
        if let Some(fast) = parse_canonical(value.to_string().as_bytes(), |_| NOW) {
            let slow = validate_at(&value, NOW).map(|v| v.event);
            prop_assert_eq!(slow, Ok(fast), "the fast path accepted {}", value);
        }
        match validate_at(&value, NOW) {
            Ok(v) => {
                // whatever passed must serialise to something that passes again
                let again = serde_json::to_value(&v.event).unwrap();
                prop_assert!(validate_at(&again, NOW).is_ok());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for err in &errors {
                    prop_assert!(!err.field.is_empty(), "error without a field: {:?}", err);
                    prop_assert!(!err.problem.is_empty());
                    // a dns event's bare host name is no target for another kind
                    let kind_made_target_invalid = field == "probe_kind" && err.field == "target";
                    prop_assert!(err.field.split('.').next() == field.split('.').next()
                        || kind_made_target_invalid,
                        "mutating {} blamed {}", field, err.field);
                }
            }
        }
    }

    #[test]
    fn arbitrary_json_is_rejected_with_field_errors(value in json_value()) {
        // Random JSON is never a valid event (it lacks the required fields); it must come back
        // as a list of problems, not a panic.
        let errors = validate_at(&value, NOW).expect_err("random JSON is not an event");
        prop_assert!(!errors.is_empty());
    }
}
