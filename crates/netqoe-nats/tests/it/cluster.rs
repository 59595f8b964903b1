//! Replicas against a real three-node JetStream cluster: a binary at its defaults leaves a
//! 3-replica stream at 3; only an explicit replicas option changes it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use netqoe_nats::{provision, ProvisionOptions, Scope, DLQ_STREAM, EVENTS_STREAM};
use netqoe_test_support::free_port;

/// Three nats-server processes clustered on loopback; killed by pid when dropped.
struct Cluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("netqoe-cluster-")
            .tempdir()?;
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for i in 0..3 {
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let store = dir.path().join(format!("n{i}"));
            let conf = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\n\
                     jetstream {{ store_dir: {:?} }}\n\
                     cluster {{ name: netqoe-test, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                    client_ports[i],
                    store.display().to_string(),
                    route_ports[i],
                    routes.join(", ")
                ),
            )?;
            let log = std::fs::File::create(dir.path().join(format!("n{i}.log")))?;
            children.push(
                Command::new(nats_server())
                    .arg("-c")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()?,
            );
        }
        Ok(Cluster {
            children,
            client_ports,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[0])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nats_server() -> &'static str {
    if Path::new("/usr/sbin/nats-server").is_file() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

async fn replicas(js: &jetstream::Context, name: &str) -> anyhow::Result<(usize, i64)> {
    let config = js.get_stream(name).await?.info().await?.config.clone();
    Ok((config.num_replicas, config.max_bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_replica_stream_stays_at_three_unless_replicas_are_given() -> anyhow::Result<()> {
    let cluster = Cluster::start()?;
    let client = netqoe_nats::connect(&cluster.url(), "netqoe-test", false).await?;
    let js = jetstream::new(client);
    let three = ProvisionOptions {
        events_max_bytes: None,
        replicas: Some(3),
        ..Default::default()
    };
    // the cluster elects its JetStream meta leader a few seconds after start
    let start = Instant::now();
    loop {
        match provision(&js, Scope::All, &three).await {
            Ok(()) => break,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                tracing::debug!(error = %e, "cluster not ready yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => anyhow::bail!("cluster never accepted the streams: {e}"),
        }
    }
    assert_eq!(replicas(&js, EVENTS_STREAM).await?.0, 3);
    assert_eq!(replicas(&js, DLQ_STREAM).await?.0, 3);

    // a binary left at its defaults (ingest scope and aggregator scope), twice
    let defaults = ProvisionOptions::default();
    for scope in [Scope::Events, Scope::All, Scope::All] {
        provision(&js, scope, &defaults).await?;
        assert_eq!(replicas(&js, EVENTS_STREAM).await?.0, 3, "{scope:?}");
        assert_eq!(replicas(&js, DLQ_STREAM).await?.0, 3, "{scope:?}");
    }
    // another change without the flag applies and keeps the replicas
    let smaller = ProvisionOptions {
        events_max_bytes: Some(64 << 20),
        replicas: None,
        ..Default::default()
    };
    provision(&js, Scope::Events, &smaller).await?;
    assert_eq!(replicas(&js, EVENTS_STREAM).await?, (3, 64 << 20));

    // only the explicit option scales it
    let one = ProvisionOptions {
        events_max_bytes: Some(64 << 20),
        replicas: Some(1),
        ..Default::default()
    };
    provision(&js, Scope::Events, &one).await?;
    assert_eq!(replicas(&js, EVENTS_STREAM).await?.0, 1);
    assert_eq!(
        replicas(&js, DLQ_STREAM).await?.0,
        3,
        "ingest scope leaves the DLQ"
    );
    Ok(())
}
