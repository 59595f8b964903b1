//! Each HTTP-level fault measurably applied.

use std::time::{Duration, Instant};

use netqoe_lab::Faults;

use crate::{client, http_url, https_url, start_lab};

#[tokio::test]
async fn ttfb_delay_delays_the_first_byte() {
    let t = start_lab(Faults {
        ttfb_delay_ms: 300,
        ..Faults::default()
    })
    .await;
    let c = client(&t);
    for url in [http_url(&t, "/"), https_url(&t, "/")] {
        let start = Instant::now();
        let r = c.get(&url).send().await.unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), 200);
        assert!(took >= Duration::from_millis(300), "{url}: {took:?}");
        assert!(took < Duration::from_millis(3000), "{url}: {took:?}");
    }
}

#[tokio::test]
async fn tls_delay_delays_the_handshake_only() {
    let t = start_lab(Faults {
        tls_delay_ms: 200,
        ..Faults::default()
    })
    .await;
    // TCP connect itself is not delayed.
    let start = Instant::now();
    let _s = tokio::net::TcpStream::connect(t.lab.https_addr())
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );

    let c = client(&t);
    let start = Instant::now();
    assert_eq!(
        c.get(https_url(&t, "/")).send().await.unwrap().status(),
        200
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    // Plain HTTP has no handshake to delay.
    let start = Instant::now();
    assert_eq!(c.get(http_url(&t, "/")).send().await.unwrap().status(), 200);
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn throughput_cap_is_accurate() {
    let t = start_lab(Faults {
        throughput_kbps: Some(2000),
        ..Faults::default()
    })
    .await;
    let c = client(&t);
    let n = 500_000u64;
    for url in [
        http_url(&t, "/bytes/500000"),
        https_url(&t, "/bytes/500000"),
    ] {
        let mut r = c.get(&url).send().await.unwrap();
        let start = Instant::now();
        let mut got = 0u64;
        while let Some(chunk) = r.chunk().await.unwrap() {
            got += chunk.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, n);
        let kbps = n as f64 * 8.0 / 1000.0 / secs;
        assert!(
            (1800.0..=2200.0).contains(&kbps),
            "{url}: {kbps:.0} kbps over {secs:.2} s"
        );
    }
}

#[tokio::test]
async fn http_error_rate_answers_the_error_status() {
    let t = start_lab(Faults {
        http_error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let c = client(&t);
    for url in [http_url(&t, "/"), https_url(&t, "/bytes/10")] {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 503, "{url}");
    }
    // The control endpoint and health check are exempt.
    assert_eq!(
        c.get(http_url(&t, "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(http_url(&t, "/_lab/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn reset_rate_breaks_connections() {
    let t = start_lab(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let c = client(&t);
    for url in [http_url(&t, "/"), https_url(&t, "/")] {
        let err = c.get(&url).send().await.unwrap_err();
        assert!(!err.is_status(), "{url}: {err:?}");
    }
    t.lab.set_faults(Faults::default());
    assert_eq!(c.get(http_url(&t, "/")).send().await.unwrap().status(), 200);
}
