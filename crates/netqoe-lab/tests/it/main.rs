//! Integration tests of netqoe-lab: real HTTP, HTTPS and DNS clients against a running lab.

mod dns;
mod faults;
mod http;

use netqoe_lab::{Faults, Lab, LabConfig};
use tokio_util::sync::CancellationToken;

/// A lab on ephemeral loopback ports; stops when dropped.
pub struct TestLab {
    pub lab: Lab,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Drop for TestLab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start_lab(faults: Faults) -> TestLab {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LabConfig::loopback(dir.path().to_path_buf());
    cfg.faults = faults;
    let stop = CancellationToken::new();
    let lab = netqoe_lab::start(cfg, stop.clone()).await.unwrap();
    TestLab {
        lab,
        _dir: dir,
        stop,
    }
}

/// A client trusting the lab CA, with `lab.netqoe` and `www.lab.netqoe` pointed at the lab.
pub fn client(t: &TestLab) -> reqwest::Client {
    let pem = std::fs::read(t.lab.ca_cert_path()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("lab.netqoe", t.lab.https_addr())
        .resolve("www.lab.netqoe", t.lab.https_addr())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub fn http_url(t: &TestLab, path: &str) -> String {
    format!("http://{}{}", t.lab.http_addr(), path)
}

pub fn https_url(t: &TestLab, path: &str) -> String {
    format!("https://lab.netqoe:{}{}", t.lab.https_addr().port(), path)
}
