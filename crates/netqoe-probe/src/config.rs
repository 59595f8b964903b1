//! Probe configuration file (TOML): parsing, defaults and validation with line numbers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod cli;
pub use cli::Cli;

/// Default measurement interval when neither the file nor the target sets one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Default per-target timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default spool directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/netqoe/spool";
/// Default most events per request: well inside ingest's default per-token burst and one
/// second of its default rate (200 events/s).
pub const DEFAULT_BATCH_SIZE: usize = 200;
/// Largest `batch_size`: ingest's default `--max-batch`.
pub const MAX_BATCH_SIZE: usize = 1000;
/// Default spool segment size before rolling to a new file.
pub const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 1 << 20;
/// Default spool bound; the oldest segments are dropped (and counted) beyond it.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 << 20;

/// A configuration error; the message names the line and key when known.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A bearer token: `Debug` never prints it, so neither does a logged configuration.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} characters redacted>)", self.0.chars().count())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ingest_url: Option<String>,
    ingest_ca_file: Option<PathBuf>,
    token: Option<Token>,
    token_file: Option<PathBuf>,
    client_id: Option<String>,
    interval: Option<toml::Spanned<String>>,
    timeout: Option<toml::Spanned<String>>,
    spool_dir: Option<PathBuf>,
    spool_segment_bytes: Option<toml::Spanned<i64>>,
    spool_max_bytes: Option<toml::Spanned<i64>>,
    batch_size: Option<toml::Spanned<i64>>,
    #[serde(default)]
    targets: Vec<toml::Spanned<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    kind: Option<toml::Spanned<String>>,
    interval: Option<toml::Spanned<String>>,
    timeout: Option<toml::Spanned<String>>,
    method: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    expect_status: Option<u16>,
    throughput_url: Option<String>,
    ip_version: Option<toml::Spanned<toml::Value>>,
    resolver: Option<toml::Spanned<String>>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
    count: Option<u32>,
}

/// What a target measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Tcp,
    Dns,
    Ping,
}

/// Which address families a target resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
    Both,
}

/// One target, with file-level defaults applied.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target string reported in events (the url, or host:port).
    pub name: String,
    pub kind: Kind,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub expect_status: Option<u16>,
    pub throughput_url: Option<String>,
    pub ip_version: IpVersion,
    pub resolver: Option<std::net::SocketAddr>,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub count: u32,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest_url: Option<String>,
    /// PEM CA certificates trusted for ingest besides the public roots (a private CA).
    pub ingest_ca_file: Option<PathBuf>,
    pub token: Option<Token>,
    pub client_id: Option<String>,
    pub spool_dir: PathBuf,
    /// Size at which the active spool segment is closed and a new one started.
    pub spool_segment_bytes: u64,
    /// Bound of the whole spool; the oldest segments are dropped beyond it.
    pub spool_max_bytes: u64,
    /// Most events per request to ingest.
    pub batch_size: usize,
    pub targets: Vec<Target>,
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// An integer key within `min..=max`, else an error naming its line.
fn int_in(
    src: &str,
    key: &str,
    v: &Option<toml::Spanned<i64>>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let n = *v.get_ref();
    if n < min as i64 || n as u64 > max {
        return Err(ConfigError(format!(
            "line {}: key `{key}`: {n} must be between {min} and {max}",
            line_of(src, v.span().start)
        )));
    }
    Ok(n as u64)
}

fn duration(src: &str, key: &str, v: &toml::Spanned<String>) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.get_ref()).map_err(|e| {
        ConfigError(format!(
            "line {}: key `{key}`: {:?} is not a duration with a unit like \"500ms\" or \"30s\" ({e})",
            line_of(src, v.span().start),
            v.get_ref()
        ))
    })
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse(&src)
}

/// Parses and validates configuration text.
pub fn parse(src: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| line_of(src, s.start));
        match line {
            Some(l) => ConfigError(format!("line {l}: {}", e.message())),
            None => ConfigError(e.message().to_string()),
        }
    })?;
    let interval = match &raw.interval {
        Some(v) => duration(src, "interval", v)?,
        None => DEFAULT_INTERVAL,
    };
    let timeout = match &raw.timeout {
        Some(v) => duration(src, "timeout", v)?,
        None => DEFAULT_TIMEOUT,
    };
    let token = match (&raw.token, &raw.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(Token(
            std::fs::read_to_string(f)
                .map_err(|e| {
                    ConfigError(format!(
                        "key `token_file`: cannot read {}: {e}",
                        f.display()
                    ))
                })?
                .trim()
                .to_string(),
        )),
        (None, None) => None,
    };
    if let Some(ca) = &raw.ingest_ca_file {
        check_ingest_ca_file(ca).map_err(|e| ConfigError(format!("key `ingest_ca_file`: {e}")))?;
    }
    if let Some(id) = &raw.client_id {
        crate::client_id::check(id).map_err(|e| ConfigError(format!("key `client_id`: {e}")))?;
    }
    let batch_size = int_in(
        src,
        "batch_size",
        &raw.batch_size,
        DEFAULT_BATCH_SIZE as u64,
        1,
        MAX_BATCH_SIZE as u64,
    )? as usize;
    let spool_segment_bytes = int_in(
        src,
        "spool_segment_bytes",
        &raw.spool_segment_bytes,
        DEFAULT_SPOOL_SEGMENT_BYTES,
        1,
        u32::MAX as u64,
    )?;
    let spool_max_bytes = int_in(
        src,
        "spool_max_bytes",
        &raw.spool_max_bytes,
        DEFAULT_SPOOL_MAX_BYTES,
        spool_segment_bytes,
        i64::MAX as u64,
    )?;
    let mut targets = Vec::new();
    for t in &raw.targets {
        let line = line_of(src, t.span().start);
        targets.extend(target(src, line, t.get_ref(), interval, timeout)?);
    }
    if targets.is_empty() {
        return Err(ConfigError(
            "key `targets`: at least one [[targets]] table is required".into(),
        ));
    }
    Ok(Config {
        ingest_url: raw.ingest_url,
        ingest_ca_file: raw.ingest_ca_file,
        token,
        client_id: raw.client_id,
        spool_dir: raw
            .spool_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR)),
        spool_segment_bytes,
        spool_max_bytes,
        batch_size,
        targets,
    })
}

/// Checks that `path` holds at least one PEM certificate (the ingest CA file, from the config
/// or `--ca-file`).
pub fn check_ingest_ca_file(path: &Path) -> Result<(), ConfigError> {
    match crate::tls::ca_certs(path) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "{} holds no PEM certificate",
            path.display()
        ))),
        Err(e) => Err(ConfigError(e.to_string())),
    }
}

fn target(
    src: &str,
    line: usize,
    t: &RawTarget,
    interval: Duration,
    timeout: Duration,
) -> Result<Vec<Target>, ConfigError> {
    let err =
        |key: &str, msg: String| ConfigError(format!("line {line}: target key `{key}`: {msg}"));
    let kind = match t.kind.as_ref().map(|k| k.get_ref().as_str()) {
        None | Some("http") => Kind::Http,
        Some("tcp") => Kind::Tcp,
        Some("dns") => Kind::Dns,
        Some("ping") => Kind::Ping,
        Some(other) => {
            return Err(err(
                "kind",
                format!("{other:?} is not one of http, tcp, dns, ping"),
            ))
        }
    };
    let (name, scheme, host, port, path) = if let Some(url) = &t.url {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| err("url", format!("{url:?} is not a valid URL ({e})")))?;
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        if scheme != "http" && scheme != "https" {
            return Err(err(
                "url",
                format!("scheme {scheme:?} must be http or https"),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| err("url", format!("{url:?} has no host")))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or("/".into());
        // a dns target reports the name it queries (SPEC §2), whatever form it was given in
        let name = if kind == Kind::Dns {
            host.clone()
        } else {
            url.clone()
        };
        (name, scheme, host, port, path)
    } else if let Some(host) = &t.host {
        let port = match (t.port, kind) {
            (Some(p), _) => p,
            (None, Kind::Dns) => 53,
            (None, _) => return Err(err("port", "required with `host` for this kind".into())),
        };
        let name = if kind == Kind::Dns {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        (name, "tcp".into(), host.clone(), port, "/".into())
    } else {
        return Err(err("url", "every target needs `url` or `host`".into()));
    };
    if kind == Kind::Http && t.url.is_none() {
        return Err(err("url", "kind http needs a `url`".into()));
    }
    let ip_version = match t.ip_version.as_ref().map(|v| v.get_ref()) {
        None => IpVersion::V4,
        Some(toml::Value::Integer(4)) => IpVersion::V4,
        Some(toml::Value::Integer(6)) => IpVersion::V6,
        Some(toml::Value::String(s)) if s == "both" => IpVersion::Both,
        Some(toml::Value::String(s)) if s == "4" => IpVersion::V4,
        Some(toml::Value::String(s)) if s == "6" => IpVersion::V6,
        Some(v) => return Err(err("ip_version", format!("{v} must be 4, 6 or \"both\""))),
    };
    // an address literal is measured over its own family: one series, whatever was asked
    let ip_version = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => IpVersion::V4,
        Ok(std::net::IpAddr::V6(_)) => IpVersion::V6,
        Err(_) => ip_version,
    };
    let resolver = match &t.resolver {
        None => None,
        Some(r) => Some(r.get_ref().parse().map_err(|_| {
            ConfigError(format!(
                "line {}: target key `resolver`: {:?} must be \"ip:port\"",
                line_of(src, r.span().start),
                r.get_ref()
            ))
        })?),
    };
    if let Some(url) = &t.throughput_url {
        let uri: http::Uri = url.parse().map_err(|e| {
            err(
                "throughput_url",
                format!("{url:?} is not a valid URL ({e})"),
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(err(
                "throughput_url",
                format!("{url:?} must be an http:// or https:// URL with a host"),
            ));
        }
    }
    if let Some(ca) = &t.ca_file {
        if !ca.exists() {
            return Err(err("ca_file", format!("{} does not exist", ca.display())));
        }
    }
    if let Some(s) = t.expect_status {
        if !(100..=599).contains(&s) {
            return Err(err(
                "expect_status",
                format!("{s} is not an HTTP status (100-599)"),
            ));
        }
    }
    let base = Target {
        name,
        kind,
        scheme,
        host,
        port,
        path,
        interval: match &t.interval {
            Some(v) => duration(src, "interval", v)?,
            None => interval,
        },
        timeout: match &t.timeout {
            Some(v) => duration(src, "timeout", v)?,
            None => timeout,
        },
        method: t
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase(),
        headers: t
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        expect_status: t.expect_status,
        throughput_url: t.throughput_url.clone(),
        ip_version,
        resolver,
        ca_file: t.ca_file.clone(),
        insecure_skip_verify: t.insecure_skip_verify,
        count: t.count.unwrap_or(5).max(1),
    };
    if base.interval.is_zero() {
        return Err(err("interval", "must be greater than zero".into()));
    }
    Ok(match ip_version {
        IpVersion::Both => vec![
            Target {
                ip_version: IpVersion::V4,
                ..base.clone()
            },
            Target {
                ip_version: IpVersion::V6,
                ..base
            },
        ],
        _ => vec![base],
    })
}

#[cfg(test)]
mod tests;
