//! `lb_common::tls::client_hello` on arbitrary bytes, against `tls-parser`:
//! it must not panic, its spans must lie in the buffer, the fixed-offset
//! session ID read (what XDP does on every binding) must agree with the full
//! parse, and whenever both parsers accept the input they must find the same
//! version, session ID, server name, ticket and first PSK identity.
//! (Either may reject what the other accepts: tls-parser checks extensions
//! tether skips, tether checks the PSK extension's place and bounds the
//! walk.)
#![no_main]

use lb_common::tls::{self, Span};
use libfuzzer_sys::fuzz_target;
use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions, parse_tls_plaintext,
};

fn in_buffer(span: Span, buf: &[u8]) -> bool {
    span.start as usize + span.len as usize <= buf.len()
}

fuzz_target!(|buf: &[u8]| {
    let Ok(hello) = tls::client_hello(buf) else { return };
    for span in [hello.session_id, hello.sni, hello.ticket, hello.psk_identity, hello.supported_versions] {
        assert!(in_buffer(span, buf), "{span:?} outside a {}-byte buffer", buf.len());
    }
    let fixed = tls::hello_session_id(buf, tls::CLIENT_HELLO).expect("the fixed-offset read of an accepted hello");
    assert_eq!(fixed, hello.session_id);

    let Ok((_, record)) = parse_tls_plaintext(buf) else { return };
    let [TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))] = record.msg.as_slice() else { return };
    // tls-parser stops at the first extension it cannot read and returns the
    // ones before it: only a walk that read them all is compared.
    let Ok(([], extensions)) = parse_tls_client_hello_extensions(ch.ext.unwrap_or_default()) else { return };
    assert_eq!(ch.version.0, hello.legacy_version);
    assert_eq!(ch.session_id.unwrap_or_default(), hello.session_id.of(buf));
    let (mut sni, mut ticket, mut psk) = (None, None, None);
    for e in extensions {
        match e {
            // tether keeps the last of repeated extensions (a PSK cannot repeat).
            TlsExtension::SNI(names) => {
                sni = Some(names.first().filter(|(t, _)| *t == SNIType::HostName).map(|(_, n)| *n).unwrap_or_default())
            }
            TlsExtension::SessionTicket(t) => ticket = Some(t),
            // Raw: identities<2>, then the first identity<2>.
            TlsExtension::PreSharedKey(raw) => {
                let len = raw.get(2..4).map_or(0, |l| u16::from_be_bytes([l[0], l[1]]) as usize);
                psk = raw.get(4..4 + len);
            }
            _ => {}
        }
    }
    assert_eq!(sni.unwrap_or_default(), hello.sni.of(buf), "server name");
    assert_eq!(ticket.is_some(), hello.has_ticket_ext, "ticket extension");
    assert_eq!(ticket.unwrap_or_default(), hello.ticket.of(buf), "ticket");
    assert_eq!(psk.unwrap_or_default(), hello.psk_identity.of(buf), "PSK identity");
});
