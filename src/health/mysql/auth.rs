//! The connection phase: the server greeting (HandshakeV10), the client's HandshakeResponse41, the
//! two supported password scrambles (mysql_native_password, caching_sha2_password's fast path) and
//! auth switch requests. Pure functions over packet payloads; the socket sequence is the driver's.

use sha1::{Digest, Sha1};
use sha2::Sha256;

use super::wire::{server_error, text_bytes, Reader, MAX_PACKET};

/// Length of the scramble nonce ("auth-plugin-data") of both supported plugins.
pub const NONCE_LEN: usize = 20;

/// Client capability flags (MySQL protocol "Capabilities Flags").
/// CLIENT_LONG_PASSWORD, which MariaDB reads as CLIENT_MYSQL: "not a MariaDB-extended client".
pub(super) const CLIENT_LONG_PASSWORD: u32 = 0x1;
pub(super) const CLIENT_PROTOCOL_41: u32 = 0x200;
pub(super) const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
pub(super) const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
/// utf8_general_ci: known to every server since 4.1; the check only sends ASCII.
pub(super) const CHARSET_UTF8: u8 = 33;
pub(super) const NATIVE_PASSWORD: &str = "mysql_native_password";
pub(super) const CACHING_SHA2: &str = "caching_sha2_password";

/// The server greeting (Protocol::HandshakeV10), as far as the check needs it.
#[derive(Debug)]
pub(super) struct Greeting {
    pub(super) version: String,
    pub(super) capabilities: u32,
    pub(super) nonce: [u8; NONCE_LEN],
    /// The server's default auth plugin, when it announces one (CLIENT_PLUGIN_AUTH).
    pub(super) plugin: Option<String>,
}

impl Greeting {
    pub(super) fn can_login(&self) -> bool {
        let need = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
        self.capabilities & need == need
    }
}

/// Parses a greeting payload; the error is the check's detail (an ERR packet is quoted).
pub(super) fn parse_greeting(p: &[u8]) -> Result<Greeting, String> {
    let mut r = Reader(p);
    match r.u8() {
        Some(10) => {}
        Some(0xff) => return Err(server_error(p)),
        Some(b) => return Err(format!("not a MySQL greeting (protocol byte 0x{b:02x})")),
        None => return Err("not a MySQL greeting (empty packet)".into()),
    }
    let bad = || "not a MySQL greeting (malformed handshake packet)".to_string();
    let version = r.nul_terminated().ok_or_else(bad)?;
    if version.is_empty() || !version.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(bad());
    }
    let _connection_id = r.take(4).ok_or_else(bad)?;
    let part1 = r.take(8).ok_or_else(bad)?;
    let _filler = r.take(1).ok_or_else(bad)?;
    let mut capabilities = u32::from(r.u16().ok_or_else(bad)?);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..8].copy_from_slice(part1);
    let mut plugin = None;
    // Servers before 4.1 stop here.
    if !r.0.is_empty() {
        let _charset = r.take(1).ok_or_else(bad)?;
        let _status = r.take(2).ok_or_else(bad)?;
        capabilities |= u32::from(r.u16().ok_or_else(bad)?) << 16;
        let data_len = r.u8().ok_or_else(bad)?;
        // Reserved; MariaDB puts its extended capabilities in the last 4 (unused here).
        let _reserved = r.take(10).ok_or_else(bad)?;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            // max(13, data_len - 8) bytes: 12 of nonce and a NUL.
            let len2 = usize::from(data_len).saturating_sub(8).max(13);
            let part2 = r.take(len2).ok_or_else(bad)?;
            nonce[8..].copy_from_slice(&part2[..NONCE_LEN - 8]);
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // NUL-terminated, but some 5.5 servers end the packet instead.
            let name = r.0.split(|&b| b == 0).next().unwrap_or_default();
            plugin = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(Greeting {
        version: String::from_utf8_lossy(version).into_owned(),
        capabilities,
        nonce,
        plugin,
    })
}

/// The two supported auth plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plugin {
    Native,
    CachingSha2,
}

impl Plugin {
    pub(super) fn name(self) -> &'static str {
        match self {
            Plugin::Native => NATIVE_PASSWORD,
            Plugin::CachingSha2 => CACHING_SHA2,
        }
    }

    pub(super) fn by_name(name: &[u8]) -> Option<Plugin> {
        match name {
            b"mysql_native_password" => Some(Plugin::Native),
            b"caching_sha2_password" => Some(Plugin::CachingSha2),
            _ => None,
        }
    }

    /// The auth response for `password`; empty for an empty password (as the servers expect).
    pub(super) fn scramble(self, password: &[u8], nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        if password.is_empty() {
            return Vec::new();
        }
        match self {
            Plugin::Native => native_password_scramble(password, nonce).to_vec(),
            Plugin::CachingSha2 => caching_sha2_scramble(password, nonce).to_vec(),
        }
    }
}

/// mysql_native_password: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
pub fn native_password_scramble(password: &[u8], nonce: &[u8; NONCE_LEN]) -> [u8; 20] {
    let stage1: [u8; 20] = Sha1::digest(password).into();
    let stage2 = Sha1::digest(stage1);
    let mix: [u8; 20] = Sha1::new()
        .chain_update(nonce)
        .chain_update(stage2)
        .finalize()
        .into();
    xor(stage1, mix)
}

/// caching_sha2_password's fast path: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + nonce).
pub fn caching_sha2_scramble(password: &[u8], nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let stage1: [u8; 32] = Sha256::digest(password).into();
    let stage2 = Sha256::digest(stage1);
    let mix: [u8; 32] = Sha256::new()
        .chain_update(stage2)
        .chain_update(nonce)
        .finalize()
        .into();
    xor(stage1, mix)
}

fn xor<const N: usize>(mut a: [u8; N], b: [u8; N]) -> [u8; N] {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
    a
}

/// Protocol::HandshakeResponse41 without TLS, database or connection attributes.
pub(super) fn handshake_response(
    server_caps: u32,
    user: &str,
    plugin: Plugin,
    auth: &[u8],
) -> Vec<u8> {
    let caps = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_SECURE_CONNECTION
        | (server_caps & CLIENT_PLUGIN_AUTH);
    let mut p = Vec::with_capacity(32 + 23 + user.len() + auth.len() + 32);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
    p.push(CHARSET_UTF8);
    p.extend_from_slice(&[0u8; 23]);
    // The config allows only visible ASCII in user names: no NUL inside.
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    // Scrambles are 0, 20 or 32 bytes: the 1-byte length of CLIENT_SECURE_CONNECTION fits.
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        p.extend_from_slice(plugin.name().as_bytes());
        p.push(0);
    }
    p
}

/// An auth switch request (0xfe, plugin name NUL, plugin data): the plugin and, for the supported
/// ones, the new nonce. `Err` is a detail.
pub(super) fn parse_auth_switch(
    p: &[u8],
) -> Result<(Option<Plugin>, String, [u8; NONCE_LEN]), String> {
    let mut r = Reader(p.get(1..).unwrap_or_default());
    let Some(name) = r.nul_terminated() else {
        // A bare 0xfe: the pre-4.1 "old password" request.
        return Err(
            "the server asks for the pre-4.1 password hash (old_passwords): not supported".into(),
        );
    };
    let plugin = Plugin::by_name(name);
    let mut nonce = [0u8; NONCE_LEN];
    if plugin.is_some() {
        // 20 bytes, usually followed by a NUL.
        let data = r
            .take(NONCE_LEN)
            .ok_or_else(|| "malformed auth switch request".to_string())?;
        nonce.copy_from_slice(data);
    }
    Ok((plugin, text_bytes(name), nonce))
}

/// How a login attempt ended, when the exchange itself worked.
pub(super) enum LoginEnd {
    LoggedIn,
    /// The server's ERR packet, as a detail.
    Refused(String),
    /// The check gave up (unsupported plugin, full authentication without TLS), with a detail.
    Stopped(String),
}

#[cfg(test)]
mod tests {
    use super::super::captures::{hex, payloads, GREETING_BYTES, NONCE};
    use super::super::wire::MAX_DETAIL_TEXT;
    use super::*;

    #[test]
    fn native_scramble_matches_known_vector_and_server_check() {
        let got = native_password_scramble(b"corelb_check", &NONCE);
        // Python: sha1(pw) XOR sha1(nonce + sha1(sha1(pw))).
        assert_eq!(
            got.to_vec(),
            hex("41269f2db9211af1dfd98cd1b4eb3b0e10cf0d7a")
        );
        // What the server does with it: it stores SHA1(SHA1(pw)) (MariaDB's own
        // PASSWORD('corelb_check'), below), recovers SHA1(pw) from the scramble and hashes it.
        let stored = hex("C875956F8D4507ADC1F5F500EDC32457DCF6851C");
        let mix = Sha1::new()
            .chain_update(NONCE)
            .chain_update(&stored)
            .finalize();
        let stage1: Vec<u8> = got.iter().zip(mix).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&stage1).to_vec(), stored);
        // A different password or nonce gives a different scramble.
        assert_ne!(native_password_scramble(b"corelb_chec", &NONCE), got);
        let mut nonce2 = NONCE;
        nonce2[19] ^= 1;
        assert_ne!(native_password_scramble(b"corelb_check", &nonce2), got);
        assert!(Plugin::Native.scramble(b"", &NONCE).is_empty());
    }

    #[test]
    fn caching_sha2_scramble_matches_known_vector_and_server_check() {
        let got = caching_sha2_scramble(b"corelb_check", &NONCE);
        // Python: sha256(pw) XOR sha256(sha256(sha256(pw)) + nonce).
        assert_eq!(
            got.to_vec(),
            hex("872bc8dd637482e0b3b77892c5d660f62c2490ed56bbe97f454b8cab4d4cd229")
        );
        // The server's fast path: it caches SHA256(SHA256(pw)), XORs the scramble with
        // SHA256(cached + nonce) and compares the hash of the result with the cache.
        let cached = Sha256::digest(Sha256::digest(b"corelb_check"));
        let mix = Sha256::new()
            .chain_update(cached)
            .chain_update(NONCE)
            .finalize();
        let stage1: Vec<u8> = got.iter().zip(mix).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha256::digest(&stage1), cached);
        assert!(Plugin::CachingSha2.scramble(b"", &NONCE).is_empty());
    }

    #[test]
    fn captured_greeting_parses() {
        let p = payloads(GREETING_BYTES, 0);
        assert_eq!(p.len(), 1);
        let g = parse_greeting(p[0]).unwrap();
        assert_eq!(g.version, "5.5.5-10.11.14-MariaDB-0+deb12u2");
        assert_eq!(g.plugin.as_deref(), Some(NATIVE_PASSWORD));
        assert!(g.can_login());
        assert_ne!(g.capabilities & CLIENT_PLUGIN_AUTH, 0);
        // The nonce's two parts sit after the version + connection id, and after the reserved bytes.
        let v = g.version.len() + 2;
        assert_eq!(&g.nonce[..8], &p[0][v + 4..v + 12]);
        assert_eq!(&g.nonce[8..], &p[0][v + 31..v + 43]);
        assert!(g.nonce.iter().all(|&b| b != 0));
    }

    #[test]
    fn greeting_errors_are_short_details() {
        let mut blocked = vec![0xff, 0x69, 0x04];
        blocked.extend_from_slice(
            b"Host '10.0.0.9' is blocked because of many connection errors; unblock with \
              'mariadb-admin flush-hosts'",
        );
        assert_eq!(
            parse_greeting(&blocked).unwrap_err(),
            "MySQL error 1129: Host '10.0.0.9' is blocked because of many connection errors; \
             unblock with 'mariadb-admin flush-hosts'"
        );
        assert_eq!(
            parse_greeting(b"\x09abc\0").unwrap_err(),
            "not a MySQL greeting (protocol byte 0x09)"
        );
        assert_eq!(
            parse_greeting(b"\x0a5.5\0\x01").unwrap_err(),
            "not a MySQL greeting (malformed handshake packet)"
        );
        assert!(parse_greeting(b"").is_err());
        // After the handshake an ERR carries "#" + SQLSTATE, which is not part of the message.
        assert_eq!(
            server_error(b"\xff\x15\x04#28000Access denied for user 'x'@'h' (using password: YES)"),
            "MySQL error 1045: Access denied for user 'x'@'h' (using password: YES)"
        );
        let long = [&[0xff, 1, 0][..], &[b'e'; 500]].concat();
        let d = server_error(&long);
        assert!(d.ends_with("...") && d.len() < MAX_DETAIL_TEXT + 40, "{d}");
        assert_eq!(server_error(&[0xff]), "malformed MySQL error packet");
        assert_eq!(server_error(b"\xff\x01\x00a\nb"), "MySQL error 1: a\\nb");
    }

    #[test]
    fn handshake_response_layout() {
        let caps = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
        let auth = native_password_scramble(b"pw", &NONCE);
        let p = handshake_response(caps, "corelb_check", Plugin::Native, &auth);
        let sent = u32::from_le_bytes(p[..4].try_into().unwrap());
        assert_eq!(
            sent,
            CLIENT_LONG_PASSWORD
                | CLIENT_PROTOCOL_41
                | CLIENT_SECURE_CONNECTION
                | CLIENT_PLUGIN_AUTH
        );
        assert_eq!(
            u32::from_le_bytes(p[4..8].try_into().unwrap()),
            MAX_PACKET as u32
        );
        assert_eq!(p[8], CHARSET_UTF8);
        assert!(p[9..32].iter().all(|&b| b == 0));
        let rest = &p[32..];
        assert_eq!(&rest[..13], b"corelb_check\0");
        assert_eq!(rest[13], 20);
        assert_eq!(&rest[14..34], &auth);
        assert_eq!(&rest[34..], b"mysql_native_password\0");
        // Without CLIENT_PLUGIN_AUTH at the server: no plugin name, and the flag not claimed.
        let p = handshake_response(
            CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION,
            "u",
            Plugin::Native,
            &[],
        );
        assert_eq!(p.len(), 32 + 2 + 1);
        assert_eq!(
            u32::from_le_bytes(p[..4].try_into().unwrap()) & CLIENT_PLUGIN_AUTH,
            0
        );
    }

    #[test]
    fn auth_switch_parsing() {
        let mut p = vec![0xfe];
        p.extend_from_slice(b"caching_sha2_password\0");
        p.extend_from_slice(&NONCE);
        p.push(0);
        let (plugin, name, nonce) = parse_auth_switch(&p).unwrap();
        assert_eq!(
            (plugin, name.as_str(), nonce),
            (Some(Plugin::CachingSha2), CACHING_SHA2, NONCE)
        );
        let (plugin, name, _) = parse_auth_switch(b"\xfeclient_ed25519\0abc").unwrap();
        assert_eq!((plugin, name.as_str()), (None, "client_ed25519"));
        assert!(parse_auth_switch(b"\xfe").unwrap_err().contains("pre-4.1"));
        assert!(parse_auth_switch(b"\xfemysql_native_password\0short").is_err());
    }
}
