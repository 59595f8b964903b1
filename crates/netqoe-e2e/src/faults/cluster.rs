//! A three-node nats-server 2.9 cluster with JetStream on loopback: one config file, port,
//! route port and store per node, each node killed (SIGKILL) and restarted on its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netqoe_test_support::free_port;

struct Node {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster; every node is killed by pid when dropped.
pub struct NatsCluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `n` nodes routed to each other and waits until each is ready.
    pub fn start(n: usize) -> Result<NatsCluster> {
        let dir = tempfile::Builder::new()
            .prefix("netqoe-nats-cluster-")
            .tempdir()?;
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let (port, store) = (free_port(), dir.path().join(format!("n{i}")));
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: netqoe-e2e, listen: 127.0.0.1:{route}, routes: [{route_list}] }}\n",
                    store.display()
                ),
            )?;
            let log = dir.path().join(format!("n{i}.log"));
            nodes.push(Node {
                port,
                config,
                log,
                child: None,
            });
        }
        let mut cluster = NatsCluster { _dir: dir, nodes };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = File::options().create(true).append(true).open(&node.log)?;
        let from = log.metadata()?.len() as usize;
        let binary = Path::new("/usr/sbin/nats-server");
        let binary = if binary.is_file() {
            binary
        } else {
            Path::new("nats-server")
        };
        let child = Command::new(binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start nats-server (make setup installs it)")?;
        let pid = child.id();
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            if text
                .get(from..)
                .is_some_and(|t| t.contains("Server is ready"))
            {
                crate::report(&format!(
                    "cluster node n{i} pid {pid} on port {}",
                    node.port
                ));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node n{i} not ready in 30 s:\n{}",
                    text.get(from..).unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The client URL of every node, comma separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `i` with SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            crate::report(&format!("killed cluster node n{i} pid {}", child.id()));
        }
    }

    /// Starts node `i` again on its port with its store.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Waits until `stream` has a leader and every replica is current.
    pub async fn wait_replicas_current(&self, stream: &str, limit: Duration) -> Result<()> {
        let js = super::connect(&self.urls()).await?;
        let deadline = Instant::now() + limit;
        loop {
            let info = match js.get_stream(stream).await {
                Ok(mut s) => s.info().await.ok().map(|i| i.cluster.clone()),
                Err(_) => None,
            };
            let current = info.flatten().is_some_and(|c| {
                c.leader.is_some()
                    && c.replicas.len() + 1 == self.nodes.len()
                    && c.replicas.iter().all(|r| r.current && !r.offline)
            });
            if current {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{stream} replicas not current within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
