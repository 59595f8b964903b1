//! Routes over HTTP and HTTPS, the certificate and the control endpoint.

use netqoe_lab::Faults;

use crate::{client, http_url, https_url, start_lab};

#[tokio::test]
async fn http_and_https_serve_the_routes() {
    let t = start_lab(Faults::default()).await;
    let c = client(&t);
    for url in [http_url(&t, ""), https_url(&t, "")] {
        let r = c.get(format!("{url}/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.text().await.unwrap(), "netqoe-lab\n");

        let r = c.get(format!("{url}/bytes/12345")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(12345));
        assert_eq!(r.bytes().await.unwrap().len(), 12345);

        let r = c.get(format!("{url}/status/418")).send().await.unwrap();
        assert_eq!(r.status(), 418);
        let r = c.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c.get(format!("{url}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = c.get(format!("{url}/bytes/lots")).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
}

#[tokio::test]
async fn certificate_covers_the_sans_and_is_untrusted_without_the_ca() {
    let t = start_lab(Faults::default()).await;
    let c = client(&t);
    let port = t.lab.https_addr().port();
    for host in ["lab.netqoe", "www.lab.netqoe", "127.0.0.1"] {
        let r = c.get(format!("https://{host}:{port}/")).send().await;
        assert_eq!(r.unwrap().status(), 200, "{host}");
    }
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let err = plain
        .get(format!("https://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let pem = std::fs::read_to_string(t.lab.ca_cert_path()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn control_endpoint_reads_and_changes_faults() {
    let t = start_lab(Faults::default()).await;
    let c = client(&t);
    let got: Faults = c
        .get(http_url(&t, "/_lab/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, Faults::default());

    let r = c
        .put(http_url(&t, "/_lab/faults"))
        .body(r#"{"http_error_rate": 1, "http_error_status": 502}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f = t.lab.faults();
    assert_eq!(f.http_error_rate, 1.0);
    assert_eq!(f.http_error_status, 502);
    assert_eq!(
        c.get(https_url(&t, "/")).send().await.unwrap().status(),
        502
    );

    // Invalid values are rejected with the field named, and nothing changes.
    let r = c
        .put(http_url(&t, "/_lab/faults"))
        .body(r#"{"reset_rate": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("reset_rate"));
    assert_eq!(t.lab.faults().http_error_status, 502);

    // The library handle clears them.
    t.lab.set_faults(Faults::default());
    let got: Faults = c
        .get(https_url(&t, "/_lab/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, Faults::default());
    assert_eq!(c.get(http_url(&t, "/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    let t = start_lab(Faults::default()).await;
    let (http, https) = (t.lab.http_addr(), t.lab.https_addr());
    assert!(tokio::net::TcpStream::connect(http).await.is_ok());
    drop(t);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let a = tokio::net::TcpStream::connect(http).await.is_err();
        let b = tokio::net::TcpStream::connect(https).await.is_err();
        if a && b {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listeners still accept after shutdown"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
