//! deploy/systemd: every unit passes `systemd-analyze verify` without a warning, is
//! hardened, and every env file lists exactly the settings its binary reads.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use netqoe_deploy_check::{
    all_env_vars, env_names_in, read, repo_root, run, BINARIES, LIBRARY_VARS,
};

const INSTALL_DIR: &str = "/usr/local/bin/";

fn unit_files() -> Result<Vec<String>> {
    let dir = repo_root().join("deploy/systemd");
    let mut units: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    units.retain(|n| n.ends_with(".service") || n.ends_with(".timer"));
    units.sort();
    Ok(units)
}

/// Values of `key=` lines in a unit (all of them, in order).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn every_unit_verifies_without_a_warning() -> Result<()> {
    // The units start /usr/local/bin/netqoe-*, which this machine need not have: verify
    // copies whose ExecStart* point at stand-ins of the same names in a temporary directory.
    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin)?;
    for b in BINARIES {
        let path = bin.join(format!("netqoe-{b}"));
        std::fs::write(&path, "#!/bin/sh\nexit 0\n")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    let units = unit_files()?;
    ensure!(
        units.len() == 5,
        "expected a unit per binary plus the timer, found {units:?}"
    );
    let mut paths = Vec::new();
    for name in &units {
        let text = read(format!("deploy/systemd/{name}"))?;
        for exec in values(&text, "ExecStart")
            .into_iter()
            .chain(values(&text, "ExecStartPre"))
        {
            let program = exec.split_whitespace().next().unwrap_or_default();
            let b = program
                .strip_prefix(INSTALL_DIR)
                .and_then(|p| p.strip_prefix("netqoe-"))
                .with_context(|| format!("{name}: {program} is not {INSTALL_DIR}netqoe-*"))?;
            ensure!(BINARIES.contains(&b), "{name}: unknown binary {program}");
        }
        let rewritten = text.replace(INSTALL_DIR, &format!("{}/", bin.display()));
        let path = tmp.path().join(name);
        std::fs::write(&path, rewritten)?;
        paths.push(path);
    }
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values ("…, ignoring."): any output is an error.
    ensure!(
        out.status.success() && stderr.trim().is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify ({}):\n{stderr}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

#[test]
fn verify_catches_a_misspelt_key() -> Result<()> {
    // Guards the test above: a typo in a unit must produce output.
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("typo.service");
    std::fs::write(
        &path,
        "[Service]\nExecStart=/bin/true\nProtectSystm=strict\n",
    )?;
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path))?;
    ensure!(String::from_utf8_lossy(&out.stderr).contains("ProtectSystm"));
    Ok(())
}

#[test]
fn services_are_hardened_and_the_diagnoser_runs_from_a_timer() -> Result<()> {
    for b in BINARIES {
        let text = read(format!("deploy/systemd/netqoe-{b}.service"))?;
        for line in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "RestrictSUIDSGID=yes",
            "SystemCallFilter=@system-service",
        ] {
            ensure!(
                text.lines().any(|l| l == line),
                "netqoe-{b}.service lacks {line}"
            );
        }
        ensure!(
            values(&text, "EnvironmentFile") == [format!("-/etc/netqoe/{b}.env")],
            "netqoe-{b}.service must read /etc/netqoe/{b}.env"
        );
        let caps = values(&text, "CapabilityBoundingSet");
        let allowed: &[&str] = if b == "probe" {
            &["CAP_NET_RAW"]
        } else {
            &[""]
        };
        ensure!(
            caps == allowed,
            "netqoe-{b}.service: CapabilityBoundingSet {caps:?}"
        );
    }
    let probe = read("deploy/systemd/netqoe-probe.service")?;
    ensure!(
        values(&probe, "StateDirectory") == ["netqoe"],
        "the probe's spool needs StateDirectory=netqoe"
    );
    let agg = read("deploy/systemd/netqoe-aggregator.service")?;
    ensure!(values(&agg, "ExecStartPre") == ["/usr/local/bin/netqoe-aggregator migrate"]);
    let diag = read("deploy/systemd/netqoe-diagnoser.service")?;
    ensure!(values(&diag, "Type") == ["oneshot"]);
    ensure!(values(&diag, "ExecStart") == ["/usr/local/bin/netqoe-diagnoser run"]);
    ensure!(
        values(&diag, "WantedBy").is_empty(),
        "the timer starts the diagnoser, not boot"
    );
    let timer = read("deploy/systemd/netqoe-diagnoser.timer")?;
    ensure!(values(&timer, "Unit") == ["netqoe-diagnoser.service"]);
    Ok(())
}

#[test]
fn every_env_file_documents_exactly_the_settings_of_its_binary() -> Result<()> {
    let every = all_env_vars()?;
    let known: BTreeSet<&String> = every.values().flatten().collect();
    for b in BINARIES {
        let file = format!("deploy/systemd/netqoe-{b}.env");
        let text = read(&file)?;
        let listed = env_names_in(&text);
        // A name may appear in a comment about another binary; it must still exist.
        let unknown: BTreeSet<_> = listed
            .iter()
            .filter(|v| !known.contains(v) && !LIBRARY_VARS.contains(&v.as_str()))
            .collect();
        ensure!(
            unknown.is_empty(),
            "{file} names {unknown:?}, which no binary reads"
        );
        let Some(code) = every.get(b) else {
            // The binary's crate is not in this tree yet: its env file holds shared settings only.
            let own = format!("NETQOE_{}_", b.to_uppercase());
            ensure!(
                !text.contains(&own),
                "{file} names {own}* but crates/netqoe-{b} does not exist"
            );
            continue;
        };
        let missing: BTreeSet<_> = code.difference(&listed).collect();
        ensure!(missing.is_empty(), "{file} does not document {missing:?}");
    }
    Ok(())
}
