//! `up`: stops a previous demo, starts the stack, sends the scenario and the live probes'
//! measurements through ingest, switches the lab's fault on, runs the diagnoser and returns
//! what the summary prints. Every step that runs a tool keeps its log under `logs/`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netqoe_test_support::{product_binary, NatsServer, PgServer};

use crate::config::UpArgs;
use crate::files::{now_ms, now_rfc3339, read_truth, rfc3339, scenario_count, token, write_tokens};
use crate::progress::{ensure_ok, run_tool, thousands, Progress};
use crate::stack::{loopback, port, scrape, start_service, udp_port, Db, Home};
use crate::state::{describe, Ports, State};
use crate::summary::{Evaluation, Report};
use crate::{backfill, live};

/// Steps of `up`.
pub const STEPS: usize = 15;

/// History the live series get before the probes start (`backfill`).
const LIVE_HISTORY_MS: i64 = 3 * 3_600_000;

const ACCEPTED: &str = "netqoe_ingest_events_accepted_total";

/// Runs the demo; the stack stays up, successful or not (`down` stops it).
pub fn up(home_dir: &Path, args: &UpArgs) -> Result<Report> {
    let mut p = Progress::new(STEPS);
    let home = Home::create(home_dir)?;
    p.step("stop a previous demo under the home", None, |_| {
        let stopped = crate::down::down(&home.dir)?;
        for entry in Home::OWN_ENTRIES {
            let path = home.dir.join(entry);
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .with_context(|| format!("remove {}", path.display()))?;
        }
        std::fs::create_dir_all(&home.logs)?;
        let detail = match stopped.len() {
            0 => "none was running; starting clean".to_string(),
            n => format!("stopped its {n} processes; starting clean"),
        };
        Ok(((), detail))
    })?;

    let ports = Ports {
        nats: port(args.nats_port),
        postgres: port(args.pg_port),
        ingest: port(args.ingest_port),
        ingest_metrics: port(19091),
        aggregator_metrics: port(19092),
        lab_http: port(18080),
        lab_https: port(18443),
        lab_dns: udp_port(15353),
        lab_metrics: port(19094),
        probe_metrics: vec![port(19095), port(19096)],
        diagnoser_metrics: port(19097),
    };
    let mut state = State {
        started_at: now_rfc3339(),
        nats_url: format!("nats://127.0.0.1:{}", ports.nats),
        database_url: format!("postgres://postgres@127.0.0.1:{}/netqoe", ports.postgres),
        ingest_url: format!("http://127.0.0.1:{}/api/v1/events", ports.ingest),
        ports: ports.clone(),
        processes: Vec::new(),
    };
    state.save(&home.dir)?;

    let log = home.log("nats-server");
    p.step("start nats-server (JetStream)", Some(&log), |_| {
        let nats = NatsServer::start_at(&home.dir.join("nats"), ports.nats, &log)?;
        let pid = nats.detach().context("nats-server has no pid")?;
        state.record(
            &home.dir,
            describe("nats-server", pid, "nats-server", "SIGTERM", &log)?,
        )?;
        Ok(((), format!("pid {pid}, {}", state.nats_url)))
    })?;

    let log = home.log("postgres");
    p.step("start PostgreSQL", Some(&log), |_| {
        let pg = PgServer::start_at(&home.dir.join("postgres"), ports.postgres, &log)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(pg.create_database("netqoe"))?;
        let pid = pg.detach().context("postgres has no pid")?;
        state.record(
            &home.dir,
            describe("postgres", pid, "postgres", "SIGINT", &log)?,
        )?;
        Ok(((), format!("pid {pid}, 127.0.0.1:{}", ports.postgres)))
    })?;
    let db_env = ("DATABASE_URL", state.database_url.clone());
    let nats_env = ("NATS_URL", state.nats_url.clone());

    let log = home.log("migrate");
    p.step("migrate the database", Some(&log), |p| {
        let bin = product_binary("netqoe-aggregator")?;
        let status = run_tool(
            p,
            &bin,
            ["migrate"],
            std::slice::from_ref(&db_env),
            &log,
            Duration::from_secs(120),
            || None,
        )?;
        ensure_ok(status, &log)?;
        Ok((
            (),
            "netqoe-aggregator migrate applied the migrations".to_string(),
        ))
    })?;

    let scenario_token = token();
    let live_token = token();
    let tokens = home.dir.join("tokens.toml");
    let log = home.log("netqoe-ingest");
    p.step("start netqoe-ingest", Some(&log), |_| {
        write_tokens(&tokens, &scenario_token, &live_token)?;
        let args = vec![
            "--listen".into(),
            loopback(ports.ingest).to_string(),
            "--metrics-listen".into(),
            loopback(ports.ingest_metrics).to_string(),
            "--tokens-file".into(),
            tokens.display().to_string(),
        ];
        let ready = (loopback(ports.ingest_metrics), "/readyz");
        let pid = start_service(
            &home,
            &mut state,
            "netqoe-ingest",
            "netqoe-ingest",
            args,
            std::slice::from_ref(&nats_env),
            ready,
        )?;
        Ok((
            (),
            format!(
                "pid {pid}, {} (tokens in {})",
                state.ingest_url,
                tokens.display()
            ),
        ))
    })?;

    let log = home.log("netqoe-aggregator");
    p.step("start netqoe-aggregator", Some(&log), |_| {
        let args = vec![
            "run".into(),
            "--metrics-listen".into(),
            loopback(ports.aggregator_metrics).to_string(),
        ];
        let ready = (loopback(ports.aggregator_metrics), "/readyz");
        let envs = [nats_env.clone(), db_env.clone()];
        let pid = start_service(
            &home,
            &mut state,
            "netqoe-aggregator",
            "netqoe-aggregator",
            args,
            &envs,
            ready,
        )?;
        Ok(((), format!("pid {pid}, consuming QOE_EVENTS into agg_1m")))
    })?;

    let log = home.log("netqoe-lab");
    p.step("start netqoe-lab and two live probes", Some(&log), |_| {
        let lab_args = vec![
            "--http-listen".into(),
            loopback(ports.lab_http).to_string(),
            "--https-listen".into(),
            loopback(ports.lab_https).to_string(),
            "--dns-listen".into(),
            loopback(ports.lab_dns).to_string(),
            "--cert-dir".into(),
            home.dir.join("lab").display().to_string(),
            "--metrics-listen".into(),
            loopback(ports.lab_metrics).to_string(),
        ];
        let ready = (loopback(ports.lab_http), "/healthz");
        start_service(
            &home,
            &mut state,
            "netqoe-lab",
            "netqoe-lab",
            lab_args,
            &[],
            ready,
        )?;
        for (client, metrics) in live::PROBES.iter().zip(&ports.probe_metrics) {
            let dir = home.dir.join("probes").join(client);
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("probe.toml");
            let toml = live::probe_config(
                &state.ingest_url,
                &live_token,
                client,
                ports.lab_http,
                loopback(ports.lab_dns),
                &dir.join("spool"),
            );
            std::fs::write(&config, toml)?;
            let args = vec![
                "--config".into(),
                config.display().to_string(),
                "--state-dir".into(),
                dir.join("state").display().to_string(),
                "--metrics-listen".into(),
                loopback(*metrics).to_string(),
            ];
            let role = format!("netqoe-probe {client}");
            start_service(
                &home,
                &mut state,
                &role,
                "netqoe-probe",
                args,
                &[],
                (loopback(*metrics), "/metrics"),
            )?;
        }
        let detail = format!(
            "{} measured by {} every 2 s",
            live::http_target(ports.lab_http),
            live::PROBES.join(", ")
        );
        Ok(((), detail))
    })?;
    let log = home.log("netqoe-probe-once");
    p.step(
        "give the live series 3 h of history from real measurements of the healthy lab",
        Some(&log),
        |_| {
            let probe = product_binary("netqoe-probe")?;
            let mut samples = Vec::new();
            for client in live::PROBES {
                let config = home.dir.join("probes").join(client).join("probe.toml");
                samples.extend(backfill::measure(&probe, &config, 8)?);
            }
            // Up to the minute before the probes started: the live windows stay their own.
            let until = now_ms() / 60_000 * 60_000 - 60_000;
            let events = backfill::history(&samples, until - LIVE_HISTORY_MS, until, args.seed);
            backfill::post(loopback(ports.ingest), &live_token, &events)?;
            Ok((
                (),
                format!(
                    "{} measurements copied into {} events",
                    samples.len(),
                    thousands(events.len() as u64)
                ),
            ))
        },
    )?;
    // The fault goes on part way through, while the history is sent and merged.
    let lab = loopback(ports.lab_http);
    let live_target = live::http_target(ports.lab_http);
    let healthy = args.live_healthy;
    let fault = std::thread::spawn(move || -> Result<i64> {
        std::thread::sleep(healthy);
        live::set_faults(
            lab,
            &format!("{{\"ttfb_delay_ms\": {}}}", live::FAULT_TTFB_MS),
        )?;
        Ok(now_ms())
    });

    let truth = home.dir.join("truth.json");
    let log = home.log("netqoe-loadgen");
    let ingest_metrics = loopback(ports.ingest_metrics);
    let what = format!(
        "send {} h of history ({} clients, {} targets, {} incidents) through ingest",
        args.hours, args.clients, args.targets, args.incidents
    );
    let scenario_events = p.step(&what, Some(&log), |p| {
        let bin = product_binary("netqoe-loadgen")?;
        let before = scrape(ingest_metrics, ACCEPTED).unwrap_or(0.0);
        let hours = args.hours;
        let scenario_args: Vec<String> = vec![
            "scenario".into(),
            "--ingest-url".into(),
            format!("http://127.0.0.1:{}", ports.ingest),
            "--truth".into(),
            truth.display().to_string(),
            "--seed".into(),
            args.seed.to_string(),
            "--clients".into(),
            args.clients.to_string(),
            "--targets".into(),
            args.targets.to_string(),
            "--incidents".into(),
            args.incidents.to_string(),
            "--period".into(),
            format!("{hours}h"),
            // Baselines need an incident-free start: an eighth of the period (3 h of 24 h).
            "--warmup".into(),
            format!("{}m", hours * 60 / 8),
        ];
        let started = Instant::now();
        let envs = [("NETQOE_LOADGEN_TOKEN", scenario_token.clone())];
        let status = run_tool(
            p,
            &bin,
            &scenario_args,
            &envs,
            &log,
            Duration::from_secs(900),
            || {
                let n = scrape(ingest_metrics, ACCEPTED).ok()? - before;
                let rate = n / started.elapsed().as_secs_f64().max(0.1);
                Some(format!(
                    "{} events accepted by ingest ({:.0}/s)",
                    thousands(n as u64),
                    rate
                ))
            },
        )?;
        ensure_ok(status, &log)?;
        let n = scenario_count(&log).context("the scenario's summary has no `events: N`")?;
        let injected = read_truth(&truth)?.len();
        Ok((
            n,
            format!(
                "{} events, {injected} injected incidents in {}",
                thousands(n),
                truth.display()
            ),
        ))
    })?;

    let db = Db::connect(&state.database_url)?;
    let log = home.log("netqoe-aggregator");
    p.step("merge the events into agg_1m", Some(&log), |p| {
        let accepted = scrape(ingest_metrics, ACCEPTED)? as i64;
        db.wait_merged(p, accepted, Duration::from_secs(600))?;
        Ok((
            (),
            format!(
                "{} events in {} one-minute windows",
                thousands(db.merged()? as u64),
                thousands(db.windows()? as u64)
            ),
        ))
    })?;

    let log = home.log("netqoe-lab");
    let live = p.step(
        "live: the lab's fault on, seen by the probes",
        Some(&log),
        |p| {
            let since_ms = fault
                .join()
                .map_err(|_| anyhow::anyhow!("the fault switch panicked"))??;
            let on_for = || Duration::from_millis((now_ms() - since_ms).max(0) as u64);
            while on_for() < args.live_fault {
                let left = args.live_fault.saturating_sub(on_for());
                p.update(&format!(
                    "lab answering {} ms late, diagnosing in {} s",
                    live::FAULT_TTFB_MS,
                    left.as_secs()
                ));
                std::thread::sleep(Duration::from_millis(500));
            }
            let accepted = scrape(ingest_metrics, ACCEPTED)? as i64;
            db.wait_merged(p, accepted, Duration::from_secs(120))?;
            let (before, after) = db.ttfb_around(&live_target, since_ms)?;
            let shift = live::ttfb_shift(before, after);
            let detail = format!("since {} on {live_target}: {shift}", rfc3339(since_ms));
            Ok(((rfc3339(since_ms), shift), detail))
        },
    )?;

    let diagnoser = product_binary("netqoe-diagnoser")?;
    let log = home.log("netqoe-diagnoser-run");
    p.step("diagnose (netqoe-diagnoser run)", Some(&log), |p| {
        let status = run_tool(
            p,
            &diagnoser,
            ["run"],
            std::slice::from_ref(&db_env),
            &log,
            Duration::from_secs(600),
            || Some("judging every window".into()),
        )?;
        ensure_ok(status, &log)?;
        Ok(((), format!("{} incidents stored", db.incidents()?)))
    })?;

    let log = home.log("netqoe-diagnoser-evaluate");
    let evaluation_file = home.dir.join("evaluation.json");
    let (evaluation, passed) = p.step(
        "score the incidents against the injected ones (netqoe-diagnoser evaluate)",
        Some(&log),
        |_| {
            let thresholds = (args.min_precision, args.min_recall);
            let run = Evaluation {
                diagnoser: &diagnoser,
                truth: &truth,
                exclude_target: &live_target,
                db_env: &db_env,
            };
            run.score(thresholds, &log, &evaluation_file)
        },
    )?;

    let report_html = home.dir.join("report.html");
    let log = home.log("netqoe-diagnoser-report");
    p.step(
        "write the HTML report (netqoe-diagnoser report)",
        Some(&log),
        |p| {
            let since = format!("{}h", args.hours + 1);
            let output = report_html.display().to_string();
            let report_args = [
                "report", "--format", "html", "--since", &since, "--output", &output,
            ];
            let status = run_tool(
                p,
                &diagnoser,
                report_args,
                std::slice::from_ref(&db_env),
                &log,
                Duration::from_secs(300),
                || None,
            )?;
            ensure_ok(status, &log)?;
            let len = std::fs::metadata(&report_html)
                .with_context(|| format!("no {}", report_html.display()))?
                .len();
            Ok((
                (),
                format!("{} ({} KiB)", report_html.display(), len / 1024),
            ))
        },
    )?;

    let log = home.log("netqoe-diagnoser");
    p.step(
        "keep diagnosing every minute (netqoe-diagnoser run --every 60s)",
        Some(&log),
        |_| {
            let metrics = loopback(ports.diagnoser_metrics);
            let run_args = vec![
                "run".into(),
                "--every".into(),
                "60s".into(),
                "--metrics-listen".into(),
                metrics.to_string(),
            ];
            let pid = start_service(
                &home,
                &mut state,
                "netqoe-diagnoser",
                "netqoe-diagnoser",
                run_args,
                std::slice::from_ref(&db_env),
                (metrics, "/metrics"),
            )?;
            Ok(((), format!("pid {pid}: the live incident stays current")))
        },
    )?;

    Ok(Report {
        home: home.dir.clone(),
        events_ingested: scrape(ingest_metrics, ACCEPTED)? as u64,
        scenario_events,
        windows: db.windows()?,
        injected: read_truth(&truth)?.len(),
        incidents_found: db.incidents()?,
        evaluation: Some(evaluation),
        passed,
        report_html,
        live_incidents: db.incidents_on(&live_target, "live-probe-")?,
        live_target,
        live_fault_since: live.0,
        live_shift: live.1,
        lab_control: format!("http://{lab}/_lab/faults"),
        timings: std::mem::take(&mut p.timings),
    })
}
