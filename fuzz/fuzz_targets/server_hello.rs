//! `lb_common::tls::server_hello` and `new_session_ticket` on arbitrary
//! bytes, against `tls-parser`: no panic, spans in the buffer, and where both
//! accept the input, the same versions, session ID, accepted PSK and ticket.
#![no_main]

use lb_common::tls;
use libfuzzer_sys::fuzz_target;
use tls_parser::{
    TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_plaintext, parse_tls_server_hello_extensions,
};

fuzz_target!(|buf: &[u8]| {
    if let Ok(nst) = tls::new_session_ticket(buf, tls::RECORD_HEADER, buf.len().saturating_sub(tls::RECORD_HEADER)) {
        assert!(nst.ticket.start as usize + nst.ticket.len as usize <= buf.len());
        if let Ok((_, record)) = parse_tls_plaintext(buf) {
            if let [TlsMessage::Handshake(TlsMessageHandshake::NewSessionTicket(t))] = record.msg.as_slice() {
                assert_eq!(t.ticket_lifetime_hint, nst.lifetime_hint);
                // tls-parser 0.12 keeps the ticket's two length bytes.
                assert_eq!(t.ticket.get(2..).unwrap_or_default(), nst.ticket.of(buf));
            }
        }
    }
    let Ok(hello) = tls::server_hello(buf) else { return };
    assert!(hello.session_id.start as usize + hello.session_id.len as usize <= buf.len());
    let Ok((_, record)) = parse_tls_plaintext(buf) else { return };
    let [TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh))] = record.msg.as_slice() else { return };
    // tls-parser reads the extensions of other legacy versions its own way
    // (fuzzed SSL 3.0 hellos lost their supported_versions and
    // pre_shared_key): compared for the version TLS 1.2 and 1.3 servers send.
    if sh.version.0 != tls::TLS12 {
        return;
    }
    // As for ClientHellos: only extension walks tls-parser finished.
    let Ok(([], extensions)) = parse_tls_server_hello_extensions(sh.ext.unwrap_or_default()) else { return };
    assert_eq!(sh.version.0, hello.legacy_version);
    assert_eq!(sh.session_id.unwrap_or_default(), hello.session_id.of(buf));
    let mut version = None;
    let mut accepted = None;
    for e in extensions {
        match e {
            TlsExtension::SupportedVersions(v) if v.len() == 1 => version = Some(v[0].0),
            TlsExtension::PreSharedKey(raw) if raw.len() == 2 => accepted = Some(u16::from_be_bytes([raw[0], raw[1]])),
            _ => {}
        }
    }
    // tls-parser does not always report `supported_versions` (not for a
    // legacy version below TLS 1.2, a fuzzed input showed): compared where
    // it does.
    if let Some(version) = version {
        assert_eq!(version, hello.version, "negotiated version");
    }
    assert_eq!(accepted, hello.accepted_psk, "accepted PSK");
});
