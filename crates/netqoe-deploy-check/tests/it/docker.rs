//! deploy/docker: docker itself cannot run here, so this checks what can be checked without
//! it: the compose file parses, each service runs a binary the Dockerfile builds, and every
//! environment variable a service sets is one its binary reads.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use netqoe_deploy_check::{all_env_vars, read, yaml_documents, BINARIES, LIBRARY_VARS};

#[test]
fn the_dockerfile_builds_and_installs_every_binary() -> Result<()> {
    let dockerfile = read("deploy/docker/Dockerfile")?;
    for b in BINARIES {
        ensure!(
            dockerfile.contains(&format!("--bin netqoe-{b}")),
            "the Dockerfile does not build netqoe-{b}"
        );
        ensure!(
            dockerfile.contains(&format!("target/release/netqoe-{b}")),
            "the Dockerfile does not install netqoe-{b}"
        );
    }
    ensure!(
        dockerfile.contains("USER 65532"),
        "the image must not run as root"
    );
    Ok(())
}

#[test]
fn compose_services_set_only_settings_their_binary_reads() -> Result<()> {
    let every = all_env_vars()?;
    let compose = &yaml_documents(&read("deploy/docker/compose.yaml")?)?[0];
    let services = compose["services"].as_object().context("no services")?;
    let mut run = BTreeSet::new();
    for (name, svc) in services {
        let Some(program) = svc["command"][0]
            .as_str()
            .filter(|p| p.starts_with("netqoe-"))
        else {
            continue;
        };
        let binary = &program["netqoe-".len()..];
        let own = every
            .get(binary)
            .with_context(|| format!("service {name}: unknown binary {program}"))?;
        run.insert(binary.to_string());
        for var in svc["environment"]
            .as_object()
            .into_iter()
            .flat_map(|e| e.keys())
        {
            ensure!(
                own.contains(var) || LIBRARY_VARS.contains(&var.as_str()),
                "service {name}: {program} does not read {var}"
            );
        }
    }
    for b in BINARIES {
        ensure!(run.contains(b), "compose runs no netqoe-{b}");
    }
    Ok(())
}
