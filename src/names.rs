//! Names and how people read them: DNS labels, ticket numbers and ids,
//! random ids, durations. Pure, and a leaf: it imports nothing of the crate,
//! so the webhook, the certificate tool and config can check a name without
//! reaching into the ticket service.

/// Checks a Kubernetes namespace or label-value-like name: an RFC 1123 label.
pub fn validate_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// The display number of ticket `id`: `RG-000042`.
pub fn ticket_number(id: u64) -> String {
    format!("RG-{id:06}")
}

/// The id behind a ticket number: `RG-000042` → `42`.
pub fn ticket_id_of(number: &str) -> Option<String> {
    let digits = number.strip_prefix("RG-")?;
    digits.parse::<u64>().ok().map(|id| id.to_string())
}

/// A random 128-bit id, hex: grant `jti`s, operation ids, demo tokens.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // getrandom only fails when the OS has no entropy source at all, in
    // which case no key or token could be made safely either.
    getrandom::fill(&mut bytes).expect("the OS entropy source is available");
    hex::encode(bytes)
}

/// `1h59m`, `12m`, `45s`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        let rows = [
            ("two hours", 7200, "2h00m"),
            ("just under two hours", 7140, "1h59m"),
            ("minutes", 754, "12m34s"),
            ("seconds", 45, "45s"),
            ("zero", 0, "0s"),
            ("negative is clamped", -10, "0s"),
        ];
        for (row, secs, expected) in rows {
            assert_eq!(human_duration(secs), expected, "row {row:?}");
        }
    }

    #[test]
    fn a_ticket_number_leads_back_to_its_id() {
        assert_eq!(ticket_number(42), "RG-000042");
        assert_eq!(ticket_id_of(&ticket_number(42)).as_deref(), Some("42"));
        assert_eq!(ticket_id_of("RG-1").as_deref(), Some("1"));
        assert_eq!(ticket_id_of("42"), None);
        assert_eq!(ticket_id_of("RG-x"), None);
    }
}
