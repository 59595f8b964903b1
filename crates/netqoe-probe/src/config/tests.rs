//! Unit tests of the probe configuration: defaults, bounds and errors naming line and key.

use super::*;

#[test]
fn parses_targets_with_defaults() {
    let c = parse(
        "interval = \"5s\"\n[[targets]]\nurl = \"https://example.com:8443/x\"\n\n[[targets]]\nhost = \"a\"\nport = 22\nkind = \"tcp\"\ntimeout = \"500ms\"\nip_version = \"both\"\n",
    )
    .unwrap();
    assert_eq!(c.targets.len(), 3);
    assert_eq!(c.targets[0].port, 8443);
    assert_eq!(c.targets[0].path, "/x");
    assert_eq!(c.targets[0].interval, Duration::from_secs(5));
    assert_eq!(c.targets[1].timeout, Duration::from_millis(500));
    assert_eq!(c.targets[1].ip_version, IpVersion::V4);
    assert_eq!(c.targets[2].ip_version, IpVersion::V6);
}

#[test]
fn bad_duration_names_line_and_key() {
    let e = parse("[[targets]]\nurl = \"http://a/\"\ninterval = \"5\"\n").unwrap_err();
    assert!(e.0.contains("line 3") && e.0.contains("`interval`"), "{e}");
}

#[test]
fn unknown_key_names_line() {
    let e = parse("[[targets]]\nurl = \"http://a/\"\nbogus = 1\n").unwrap_err();
    assert!(e.0.contains("line 3") && e.0.contains("bogus"), "{e}");
}

#[test]
fn shipping_and_spool_keys_have_defaults_and_bounds() {
    let c = parse("[[targets]]\nurl = \"http://a/\"\n").unwrap();
    assert_eq!(c.batch_size, 200);
    assert_eq!(c.spool_segment_bytes, 1 << 20);
    assert_eq!(c.spool_max_bytes, 64 << 20);
    let c = parse(
        "batch_size = 50\nspool_segment_bytes = 4096\nspool_max_bytes = 8192\n[[targets]]\nurl = \"http://a/\"\n",
    )
    .unwrap();
    assert_eq!(
        (c.batch_size, c.spool_segment_bytes, c.spool_max_bytes),
        (50, 4096, 8192)
    );
    let e = parse("batch_size = 5000\n[[targets]]\nurl = \"http://a/\"\n").unwrap_err();
    assert!(
        e.0.contains("line 1") && e.0.contains("`batch_size`"),
        "{e}"
    );
    let e = parse(
        "spool_segment_bytes = 4096\nspool_max_bytes = 100\n[[targets]]\nurl = \"http://a/\"\n",
    )
    .unwrap_err();
    assert!(e.0.contains("`spool_max_bytes`"), "{e}");
}

#[test]
fn client_id_with_an_empty_part_is_rejected() {
    for bad in ["a..b", ".x", "x."] {
        let e = parse(&format!(
            "client_id = \"{bad}\"\n[[targets]]\nurl = \"http://a/\"\n"
        ))
        .unwrap_err();
        assert!(
            e.0.contains("`client_id`") && e.0.contains("dot-separated part"),
            "{e}"
        );
    }
}

#[test]
fn a_dns_target_is_the_name_it_queries() {
    let c = parse(
        "[[targets]]\nhost = \"www.lab.netqoe\"\nkind = \"dns\"\n[[targets]]\nurl = \"https://www.lab.netqoe/x\"\nkind = \"dns\"\n",
    )
    .unwrap();
    assert_eq!(c.targets[0].name, "www.lab.netqoe");
    assert_eq!(c.targets[1].name, "www.lab.netqoe");
}

#[test]
fn an_address_literal_is_one_series_of_its_family() {
    let c = parse("[[targets]]\nurl = \"http://[::1]:80/\"\nip_version = \"both\"\n").unwrap();
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].ip_version, IpVersion::V6);
}

#[test]
fn throughput_url_must_be_http_with_a_host() {
    let e =
        parse("[[targets]]\nurl = \"http://a/\"\nthroughput_url = \"ftp://b/x\"\n").unwrap_err();
    assert!(e.0.contains("`throughput_url`"), "{e}");
}

#[test]
fn bad_kind_is_rejected() {
    let e = parse("[[targets]]\nurl = \"http://a/\"\nkind = \"icmp\"\n").unwrap_err();
    assert!(e.0.contains("`kind`"), "{e}");
}

#[test]
fn ingest_ca_file_must_hold_a_pem_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = format!(
        "ingest_ca_file = \"{}\"\n[[targets]]\nurl = \"http://a/\"\n",
        pem.display()
    );
    assert_eq!(parse(&text).unwrap().ingest_ca_file, Some(pem.clone()));
    std::fs::write(&pem, "no certificate here\n").unwrap();
    let e = parse(&text).unwrap_err();
    assert!(
        e.0.contains("`ingest_ca_file`") && e.0.contains("no PEM certificate"),
        "{e}"
    );
    let missing = text.replace("ca.pem", "missing.pem");
    let e = parse(&missing).unwrap_err();
    assert!(e.0.contains("`ingest_ca_file`"), "{e}");
}

#[test]
fn debug_output_never_holds_the_token() {
    let c = parse("token = \"probe-secret-token-0123456789\"\n[[targets]]\nurl = \"http://a/\"\n")
        .unwrap();
    assert_eq!(c.token.as_ref().unwrap().0, "probe-secret-token-0123456789");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("probe-secret-token"), "{dbg}");
    assert!(dbg.contains("Token(<29 characters redacted>)"), "{dbg}");
}
