//! The client's address as throttling counts it: the IP of Envoy's downstream
//! remote address (`source.address`). Envoy sets that to the connection's peer
//! with `use_remote_address: true`, or takes it from `x-forwarded-for` per
//! `xff_num_trusted_hops`; with the HCM's default (`use_remote_address:
//! false`) it is the header's last entry, which any client can write, so
//! every shipped configuration sets `use_remote_address: true`.

/// `1.2.3.4:5678` → `1.2.3.4`, `[::1]:80` → `::1`; anything else as it is.
pub fn client_ip(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_does_not_count() {
        assert_eq!(client_ip("10.0.0.9:5123"), "10.0.0.9");
        assert_eq!(client_ip("[::1]:443"), "::1");
        assert_eq!(client_ip("::1"), "::1");
        assert_eq!(client_ip("2001:db8::7"), "2001:db8::7");
        assert_eq!(client_ip(""), "");
    }
}
