//! Rules on names: the `client_id` (a NATS subject token path) and the `target` of each
//! probe kind (an absolute URL, `host:port`, or for `dns` the host name queried).

use crate::event::ProbeKind;

use super::MAX_CLIENT_ID_CHARS;

/// Longest host name a `dns` event's `target` may be.
const MAX_HOST_NAME_CHARS: usize = 253;

/// Why `client_id` cannot be used, or None when it can: 1–128 characters of
/// `[A-Za-z0-9._:-]` with no empty dot-separated part (`a..b`, `.x` and `x.` are refused,
/// because the id becomes tokens of the NATS subject `qoe.events.<client_id>`).
///
/// The probe checks its own `client_id` with it at start; the validator uses it for events.
pub fn client_id_problem(client_id: &str) -> Option<&'static str> {
    let n = client_id.chars().count();
    if n == 0 || n > MAX_CLIENT_ID_CHARS {
        return Some("must be 1 to 128 characters");
    }
    if !client_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Some("may contain only A-Z a-z 0-9 . _ : -");
    }
    if client_id.split('.').any(str::is_empty) {
        return Some("must not start or end with a dot or hold two dots in a row: every dot-separated part becomes a NATS subject token and must not be empty");
    }
    None
}

/// Whether `target` is valid for an event of `kind`: an absolute URL or `host:port`, or for
/// `dns` also the bare host name queried.
pub(crate) fn is_valid_target_for(target: &str, kind: ProbeKind) -> bool {
    is_valid_target(target) || (kind == ProbeKind::Dns && is_host_name(target))
}

/// A host name: labels of 1–63 letters, digits and hyphens joined by dots, an optional
/// trailing dot, at most 253 characters in all.
pub(super) fn is_host_name(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_HOST_NAME_CHARS {
        return false;
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// An absolute URL (`scheme://authority...`) or `host:port` (IPv6 hosts in brackets).
pub(super) fn is_valid_target(s: &str) -> bool {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if let Some((scheme, rest)) = s.split_once("://") {
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        return scheme_ok && !authority.is_empty() && !authority.starts_with([':', '@']);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(['/', ':', '[', ']', '@'])
    };
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}
