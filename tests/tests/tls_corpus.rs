//! tether's TLS parser (`lb_common::tls`) against `tls-parser` on real
//! handshakes: ClientHellos from openssl s_client (TLS 1.2, 1.3, a long ALPN
//! list), curl, rustls and headless Chromium (post-quantum, about 2 KB), and
//! server flights from openssl s_server (with and without tickets), rustls
//! and nginx, each as a full handshake and as a resumption. The files in
//! `tests/corpus/` were recorded by `tether-capture` (see that file). No root
//! needed.

use std::{collections::BTreeMap, path::PathBuf};

use lb_common::tls::{self, Message, NEW_SESSION_TICKET, SERVER_HELLO, TLS13};
use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions, parse_tls_plaintext,
    parse_tls_server_hello_extensions,
};

fn corpus() -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("read"))
        })
        .collect()
}

fn files(ending: &str) -> Vec<(String, Vec<u8>)> {
    let all: Vec<_> = corpus().into_iter().filter(|(name, _)| name.ends_with(ending)).collect();
    // Every client against every server, twice: a test over a thinned-out
    // corpus must not pass quietly.
    assert!(all.len() >= 50, "only {} {ending} files in tests/corpus", all.len());
    for who in ["openssl13", "openssl12", "curl13", "curl12", "rustls-", "chromium", "-nginx", "-s_server"] {
        assert!(all.iter().any(|(n, _)| n.contains(who)), "no {who} capture in tests/corpus");
    }
    all
}

/// What tls-parser finds in a ClientHello, in the parser's terms.
#[derive(Debug, Default, PartialEq)]
struct HelloKeys {
    version: u16,
    session_id: Vec<u8>,
    sni: Vec<u8>,
    ticket: Option<Vec<u8>>,
    psk_identity: Vec<u8>,
    offers_tls13: bool,
}

fn reference_client_hello(buf: &[u8]) -> HelloKeys {
    let (_, record) = parse_tls_plaintext(buf).expect("tls-parser reads the record");
    let [TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))] = record.msg.as_slice() else {
        panic!("tls-parser: not one ClientHello: {:?}", record.msg)
    };
    let mut keys = HelloKeys {
        version: ch.version.0,
        session_id: ch.session_id.unwrap_or_default().to_vec(),
        ..Default::default()
    };
    let (_, extensions) = parse_tls_client_hello_extensions(ch.ext.unwrap_or_default()).expect("extensions");
    for e in extensions {
        match e {
            TlsExtension::SNI(names) => {
                keys.sni =
                    names.iter().find(|(t, _)| *t == SNIType::HostName).map(|(_, n)| n.to_vec()).unwrap_or_default()
            }
            TlsExtension::SessionTicket(t) => keys.ticket = Some(t.to_vec()),
            // tls-parser keeps pre_shared_key raw: identities<2>, then the
            // first identity<2>.
            TlsExtension::PreSharedKey(raw) => {
                let len = u16::from_be_bytes([raw[2], raw[3]]) as usize;
                keys.psk_identity = raw[4..4 + len].to_vec();
            }
            TlsExtension::SupportedVersions(v) => keys.offers_tls13 = v.iter().any(|v| v.0 == TLS13),
            _ => {}
        }
    }
    keys
}

fn ours_client_hello(buf: &[u8]) -> HelloKeys {
    let h = tls::client_hello(buf).expect("lb_common::tls reads the ClientHello");
    HelloKeys {
        version: h.legacy_version,
        session_id: h.session_id.of(buf).to_vec(),
        sni: h.sni.of(buf).to_vec(),
        ticket: h.has_ticket_ext.then(|| h.ticket.of(buf).to_vec()),
        psk_identity: h.psk_identity.of(buf).to_vec(),
        offers_tls13: h.offers_tls13(buf),
    }
}

#[test]
fn client_hellos_agree_with_tls_parser() {
    let (mut with_ticket, mut with_psk, mut post_quantum) = (0, 0, 0);
    for (name, buf) in files(".client") {
        let ours = ours_client_hello(&buf);
        let fixed = tls::hello_session_id(&buf, tls::CLIENT_HELLO).expect("session ID at its fixed offset");
        assert_eq!(fixed.of(&buf), ours.session_id, "{name}: the fixed-offset read");
        assert_eq!(ours, reference_client_hello(&buf), "{name}");
        assert_eq!(ours.sni, b"shop.example", "{name}: every client was given the name");
        with_ticket += usize::from(ours.ticket.as_ref().is_some_and(|t| !t.is_empty()));
        with_psk += usize::from(!ours.psk_identity.is_empty());
        post_quantum += usize::from(buf.len() > 1500);
    }
    // Resumptions of both kinds, and hellos longer than one segment, are in.
    assert!(with_ticket >= 2 && with_psk >= 8 && post_quantum >= 4, "{with_ticket} {with_psk} {post_quantum}");
}

/// What a server flight teaches, in the parser's terms.
#[derive(Debug, Default, PartialEq)]
struct FlightKeys {
    legacy_version: u16,
    version: u16,
    session_id: Vec<u8>,
    accepted_psk: Option<u16>,
    tickets: Vec<(u32, Vec<u8>)>,
}

fn reference_flight(mut buf: &[u8]) -> FlightKeys {
    let mut keys = FlightKeys::default();
    while !buf.is_empty() {
        let (rest, record) = parse_tls_plaintext(buf).expect("tls-parser reads the record");
        buf = rest;
        for m in record.msg {
            match m {
                TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) => {
                    keys.legacy_version = sh.version.0;
                    keys.version = sh.version.0;
                    keys.session_id = sh.session_id.unwrap_or_default().to_vec();
                    let (_, extensions) = parse_tls_server_hello_extensions(sh.ext.unwrap_or_default()).expect("ext");
                    for e in extensions {
                        match e {
                            TlsExtension::SupportedVersions(v) => keys.version = v[0].0,
                            TlsExtension::PreSharedKey(raw) => {
                                keys.accepted_psk = Some(u16::from_be_bytes([raw[0], raw[1]]))
                            }
                            _ => {}
                        }
                    }
                }
                // tls-parser 0.12 returns the ticket with its two-byte
                // length prefix (RFC 5077 §3.3: `opaque ticket<0..2^16-1>`).
                TlsMessage::Handshake(TlsMessageHandshake::NewSessionTicket(t)) => {
                    let (len, ticket) = t.ticket.split_at(2);
                    assert_eq!(u16::from_be_bytes([len[0], len[1]]) as usize, ticket.len(), "ticket length");
                    keys.tickets.push((t.ticket_lifetime_hint, ticket.to_vec()))
                }
                _ => {}
            }
        }
    }
    keys
}

fn ours_flight(buf: &[u8]) -> FlightKeys {
    let mut keys = FlightKeys::default();
    let mut messages: Vec<Message> = Vec::new();
    let end = tls::walk_flight(buf, |_, m| {
        messages.push(m);
        true
    })
    .expect("lb_common::tls walks the flight");
    assert_eq!(end, buf.len(), "the walk reads every handshake record");
    for m in messages {
        match m.msg_type {
            SERVER_HELLO => {
                let sh = tls::server_hello_at(buf, m).expect("ServerHello");
                keys.legacy_version = sh.legacy_version;
                keys.version = sh.version;
                keys.session_id = sh.session_id.of(buf).to_vec();
                keys.accepted_psk = sh.accepted_psk;
            }
            NEW_SESSION_TICKET => {
                let t = tls::new_session_ticket_at(buf, m).expect("NewSessionTicket");
                keys.tickets.push((t.lifetime_hint, t.ticket.of(buf).to_vec()));
            }
            _ => {}
        }
    }
    keys
}

#[test]
fn server_flights_agree_with_tls_parser() {
    let (mut tls12_tickets, mut tls13_resumed, mut tls12_session_ids) = (0, 0, 0);
    let all = corpus();
    for (name, buf) in files(".server") {
        let ours = ours_flight(&buf);
        let fixed = tls::hello_session_id(&buf, SERVER_HELLO).expect("session ID at its fixed offset");
        assert_eq!(fixed.of(&buf), ours.session_id, "{name}: the fixed-offset read");
        assert_eq!(ours, reference_flight(&buf), "{name}");
        tls12_tickets += usize::from(!ours.tickets.is_empty());
        tls13_resumed += usize::from(ours.version == TLS13 && ours.accepted_psk == Some(0));
        // A TLS 1.2 session ID resumption: the second hello offers the ID
        // the first server flight gave, and the server takes it.
        if let Some(first) = name.strip_suffix("-2.server").map(|n| format!("{n}-1.server")) {
            let earlier = ours_flight(&all[&first]);
            let hello = ours_client_hello(&all[&name.replace(".server", ".client")]);
            if ours.version != TLS13 && !earlier.session_id.is_empty() && hello.session_id == earlier.session_id {
                assert_eq!(ours.session_id, earlier.session_id, "{name}: resumed by session ID");
                tls12_session_ids += 1;
            }
        }
    }
    assert!(
        tls12_tickets >= 2 && tls13_resumed >= 8 && tls12_session_ids >= 2,
        "{tls12_tickets} {tls13_resumed} {tls12_session_ids}"
    );
}
