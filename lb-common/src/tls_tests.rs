//! Hand-built handshakes: every field persistence reads, and every way a
//! length can lie. (Real captures, checked against `tls-parser`, are in
//! `tests/tests/tls_corpus.rs`.)

extern crate std;
use std::{vec, vec::Vec};

use super::*;

fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    [&kind.to_be_bytes()[..], &u16be(data.len()), data].concat()
}

fn record(content: u8, payload: &[u8]) -> Vec<u8> {
    [&[content, 3, 3][..], &u16be(payload.len()), payload].concat()
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    [&[msg_type, len[1], len[2], len[3]][..], body].concat()
}

fn client_hello_body(session_id: &[u8], extensions: Option<&[Vec<u8>]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(session_id.len() as u8);
    body.extend(session_id);
    body.extend([0, 4, 0x13, 0x01, 0xC0, 0x2F]); // two cipher suites
    body.extend([1, 0]); // null compression
    if let Some(extensions) = extensions {
        let all = extensions.concat();
        body.extend(u16be(all.len()));
        body.extend(all);
    }
    body
}

fn client_hello_record(session_id: &[u8], extensions: &[Vec<u8>]) -> Vec<u8> {
    record(CONTENT_HANDSHAKE, &handshake(CLIENT_HELLO, &client_hello_body(session_id, Some(extensions))))
}

fn sni(name: &[u8]) -> Vec<u8> {
    let entry = [&[SNI_NAME_TYPE_HOST][..], &u16be(name.len()), name].concat();
    ext(EXT_SERVER_NAME, &[&u16be(entry.len())[..], &entry].concat())
}

fn psk(identities: &[&[u8]]) -> Vec<u8> {
    let ids: Vec<u8> = identities.iter().flat_map(|id| [&u16be(id.len())[..], id, &[0, 0, 0, 7]].concat()).collect();
    let binders = [0, 33, 32].iter().copied().chain([0xBB; 32]).collect::<Vec<u8>>();
    ext(EXT_PRE_SHARED_KEY, &[&u16be(ids.len())[..], &ids, &binders].concat())
}

fn versions(list: &[u16]) -> Vec<u8> {
    let mut data = vec![(list.len() * 2) as u8];
    list.iter().for_each(|v| data.extend(v.to_be_bytes()));
    ext(EXT_SUPPORTED_VERSIONS, &data)
}

#[test]
fn a_client_hello_gives_every_key() {
    let ticket = [0x7A; 180];
    let buf = client_hello_record(
        &[0x5E; 32],
        &[
            ext(0x0A0A, &[]), // GREASE
            sni(b"shop.example"),
            ext(EXT_SESSION_TICKET, &ticket),
            versions(&[0x1A1A, TLS13, TLS12]),
            psk(&[b"identity-one", b"identity-two"]),
        ],
    );
    let hello = client_hello(&buf).expect("a valid ClientHello");
    assert_eq!(hello.legacy_version, TLS12);
    assert_eq!(hello.session_id.of(&buf), [0x5E; 32]);
    assert_eq!(hello.sni.of(&buf), b"shop.example");
    assert!(hello.has_ticket_ext);
    assert_eq!(hello.ticket.of(&buf), ticket);
    assert_eq!(hello.psk_identity.of(&buf), b"identity-one");
    assert!(hello.offers_tls13(&buf));
    assert_eq!(hello.extensions, 5);
}

#[test]
fn absent_fields_are_empty() {
    let buf = record(CONTENT_HANDSHAKE, &handshake(CLIENT_HELLO, &client_hello_body(&[], None)));
    let hello = client_hello(&buf).expect("extensions are optional");
    assert_eq!(hello.legacy_version, TLS12);
    assert!([hello.session_id, hello.sni, hello.ticket, hello.psk_identity].iter().all(Span::is_empty));
    assert!(!hello.has_ticket_ext && !hello.offers_tls13(&buf) && hello.extensions == 0);
    let buf = client_hello_record(&[], &[ext(EXT_SESSION_TICKET, &[]), versions(&[TLS12])]);
    let hello = client_hello(&buf).unwrap();
    assert!(hello.has_ticket_ext && hello.ticket.is_empty() && !hello.offers_tls13(&buf));
}

#[test]
fn every_truncation_is_incomplete() {
    let buf = client_hello_record(&[1; 32], &[sni(b"a.example"), ext(EXT_SESSION_TICKET, &[9; 100]), psk(&[b"id"])]);
    assert!(client_hello(&buf).is_ok());
    for cut in 0..buf.len() {
        assert_eq!(client_hello(&buf[..cut]), Err(TlsError::Incomplete), "cut at {cut}");
    }
}

#[test]
fn a_session_id_over_32_bytes_is_refused() {
    let buf = client_hello_record(&[1; 33], &[]);
    assert_eq!(client_hello(&buf), Err(TlsError::SessionIdTooLong));
}

#[test]
fn lengths_that_overrun_their_container_are_refused() {
    // An extension whose length runs past the extensions block.
    let mut buf = client_hello_record(&[], &[sni(b"x.example")]);
    let ext_len_at = buf.len() - sni(b"x.example").len() + 2;
    buf[ext_len_at..ext_len_at + 2].copy_from_slice(&u16be(200));
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));

    // An SNI list whose name runs past the list.
    let mut inner = sni(b"x.example");
    inner[8] = 50; // host_name length, low byte
    let buf = client_hello_record(&[], &[inner]);
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));

    // A handshake body longer than the hello it claims (cipher suites past the end).
    let mut body = client_hello_body(&[], None);
    body[35] = 0xFF; // cipher_suites length, high byte
    let buf = record(CONTENT_HANDSHAKE, &handshake(CLIENT_HELLO, &body));
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));

    // Bytes left after the extensions block.
    let mut body = client_hello_body(&[], Some(&[sni(b"x.example")]));
    body.push(0);
    let buf = record(CONTENT_HANDSHAKE, &handshake(CLIENT_HELLO, &body));
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));

    // A record longer than TLS allows.
    let mut buf = client_hello_record(&[], &[]);
    buf[3..5].copy_from_slice(&u16be(MAX_RECORD + 1));
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));

    // A PSK extension with no identity.
    let buf = client_hello_record(&[], &[ext(EXT_PRE_SHARED_KEY, &[0, 0, 0, 0])]);
    assert_eq!(client_hello(&buf), Err(TlsError::Overrun));
}

#[test]
fn a_psk_extension_must_be_last() {
    let buf = client_hello_record(&[], &[psk(&[b"id"]), sni(b"x.example")]);
    assert_eq!(client_hello(&buf), Err(TlsError::PskNotLast));
    let buf = client_hello_record(&[], &[psk(&[b"id"]), psk(&[b"id"])]);
    assert_eq!(client_hello(&buf), Err(TlsError::PskNotLast));
}

#[test]
fn a_repeated_extension_counts_by_its_last() {
    let buf = client_hello_record(&[], &[sni(b"first.example"), ext(0x0A0A, &[]), sni(b"second.example")]);
    let hello = client_hello(&buf).unwrap();
    assert_eq!(hello.sni.of(&buf), b"second.example");
    assert_eq!(hello.extensions, 3);
}

/// The XDP program hands `step_over_extension` four bytes it read without
/// a bounds check (past the block they are whatever follows it): the step
/// must not trust them further than the block goes.
#[test]
fn an_extension_header_past_the_block_is_refused_whatever_it_reads() {
    let mut found = Found::default();
    let mut walked = 0;
    for header in [[0, 0, 0, 0], [0, 0, 0xFF, 0xFF], [0, 41, 0, 1]] {
        // Three bytes left in the block: no room for a header.
        let mut at = Extensions { pos: 100, end: 103 };
        assert_eq!(step_over_extension(header, &mut at, &mut found, &mut walked), Err(TlsError::Overrun));
        assert_eq!((at, found), (Extensions { pos: 100, end: 103 }, Found::default()), "nothing moved or noted");
    }
    // A header whose length runs one byte past the block.
    let mut at = Extensions { pos: 100, end: 110 };
    assert_eq!(step_over_extension([0, 0, 0, 7], &mut at, &mut found, &mut walked), Err(TlsError::Overrun));
    let mut at = Extensions { pos: 100, end: 110 };
    assert_eq!(step_over_extension([0, 0, 0, 6], &mut at, &mut found, &mut walked), Ok(()));
    assert_eq!((at.pos, found.server_name, walked), (110, 100, 1));
}

#[test]
fn the_extension_walk_is_bounded() {
    let many = |n: usize| (0..n).map(|i| ext(0xFF00 + i as u16, &[])).collect::<Vec<_>>();
    assert_eq!(
        client_hello(&client_hello_record(&[], &many(MAX_EXTENSIONS))).unwrap().extensions,
        MAX_EXTENSIONS as u8
    );
    assert_eq!(client_hello(&client_hello_record(&[], &many(MAX_EXTENSIONS + 1))), Err(TlsError::TooManyExtensions));
}

#[test]
fn other_records_and_messages_are_named() {
    assert_eq!(client_hello(&record(23, &[0; 40])), Err(TlsError::NotHandshake));
    assert_eq!(client_hello(b"GET / HTTP/1.1\r\n\r\n"), Err(TlsError::NotHandshake));
    let sh = record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &server_hello_body_tls12(&[1; 32])));
    assert_eq!(client_hello(&sh), Err(TlsError::UnexpectedMessage));
    // A hello that continues in the next record.
    let mut buf = client_hello_record(&[], &[]);
    let record_len = buf.len() - RECORD_HEADER;
    buf[3..5].copy_from_slice(&u16be(record_len - 10));
    buf.truncate(buf.len() - 10);
    assert_eq!(client_hello(&buf), Err(TlsError::SpansRecords));
}

fn server_hello_body_tls12(session_id: &[u8]) -> Vec<u8> {
    server_hello_body_with([0x22; 32], session_id, None)
}

fn server_hello_body_with(random: [u8; 32], session_id: &[u8], extensions: Option<&[Vec<u8>]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend(random);
    body.push(session_id.len() as u8);
    body.extend(session_id);
    body.extend([0xC0, 0x2F, 0]);
    if let Some(extensions) = extensions {
        let all = extensions.concat();
        body.extend(u16be(all.len()));
        body.extend(all);
    }
    body
}

#[test]
fn server_hellos_of_each_version() {
    let buf = record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &server_hello_body_tls12(&[0xAB; 32])));
    let hello = server_hello(&buf).unwrap();
    assert_eq!((hello.version, hello.accepted_psk, hello.hello_retry), (TLS12, None, false));
    assert_eq!(hello.session_id.of(&buf), [0xAB; 32]);

    let exts = [ext(EXT_SUPPORTED_VERSIONS, &TLS13.to_be_bytes()), ext(EXT_PRE_SHARED_KEY, &[0, 1])];
    let buf =
        record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &server_hello_body_with([3; 32], &[7; 32], Some(&exts))));
    let hello = server_hello(&buf).unwrap();
    assert_eq!((hello.legacy_version, hello.version, hello.accepted_psk), (TLS12, TLS13, Some(1)));

    let exts = [ext(EXT_SUPPORTED_VERSIONS, &TLS13.to_be_bytes())];
    let body = server_hello_body_with(HELLO_RETRY_RANDOM, &[7; 32], Some(&exts));
    let hello = server_hello(&record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &body))).unwrap();
    assert!(hello.hello_retry);

    // supported_versions in a ServerHello holds exactly one version.
    let exts = [ext(EXT_SUPPORTED_VERSIONS, &[3, 4, 3, 3])];
    let body = server_hello_body_with([3; 32], &[], Some(&exts));
    assert_eq!(server_hello(&record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &body))), Err(TlsError::Overrun));
}

fn ticket_body(ticket: &[u8]) -> Vec<u8> {
    [&300u32.to_be_bytes()[..], &u16be(ticket.len()), ticket].concat()
}

#[test]
fn a_tls12_flight_is_walked_to_its_ticket() {
    // ServerHello, Certificate and ServerHelloDone in one record; the
    // ticket in the next; then ChangeCipherSpec, where the walk stops.
    let first =
        [handshake(SERVER_HELLO, &server_hello_body_tls12(&[])), handshake(11, &[0x30; 900]), handshake(14, &[])]
            .concat();
    let ticket = [0x42; 160];
    let flight = [
        record(CONTENT_HANDSHAKE, &first),
        record(CONTENT_HANDSHAKE, &handshake(NEW_SESSION_TICKET, &ticket_body(&ticket))),
        record(20, &[1]),
    ]
    .concat();
    let mut seen = Vec::new();
    let stop = walk_flight(&flight, |_, m| {
        seen.push(m);
        true
    })
    .unwrap();
    assert_eq!(seen.iter().map(|m| m.msg_type).collect::<Vec<_>>(), [SERVER_HELLO, 11, 14, NEW_SESSION_TICKET]);
    assert_eq!(&flight[stop..], &record(20, &[1])[..], "the walk stops at ChangeCipherSpec");
    let nst = new_session_ticket_at(&flight, seen[3]).unwrap();
    assert_eq!((nst.lifetime_hint, nst.ticket.of(&flight)), (300, &ticket[..]));
    assert_eq!(server_hello_at(&flight, seen[0]).unwrap().version, TLS12);

    // Cut inside the second record: the walk stops at its start, having
    // seen only the first record's messages.
    let cut = record(CONTENT_HANDSHAKE, &first).len() + 20;
    let mut count = 0;
    assert_eq!(
        walk_flight(&flight[..cut], |_, _| {
            count += 1;
            true
        }),
        Ok(cut - 20)
    );
    assert_eq!(count, 3);

    // A message whose length runs past its record.
    let bad = record(CONTENT_HANDSHAKE, &[NEW_SESSION_TICKET, 0, 1, 0, 0]);
    assert_eq!(walk_flight(&bad, |_, _| true), Err(TlsError::SpansRecords));
}

/// Random damage to valid hellos: the parser never panics and never returns
/// a span outside its buffer. (The `cargo fuzz` target does the same with
/// coverage guidance and checks the answers against `tls-parser`.)
#[test]
fn damaged_input_never_panics_or_escapes_the_buffer() {
    let base = client_hello_record(&[1; 32], &[sni(b"a.example"), ext(EXT_SESSION_TICKET, &[9; 64]), psk(&[b"id"])]);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..50_000 {
        let mut buf = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % buf.len();
            buf[at] = next() as u8;
        }
        let len = buf.len() - (next() as usize % 8);
        let buf = &buf[..len];
        if let Ok(h) = client_hello(buf) {
            for span in [h.session_id, h.sni, h.ticket, h.psk_identity] {
                assert!(span.start as usize + span.len as usize <= buf.len());
            }
        }
        let _ = server_hello(buf);
        let _ = walk_flight(buf, |b, m| {
            let _ = new_session_ticket_at(b, m);
            let _ = server_hello_at(b, m);
            true
        });
    }
}

/// The fixed-offset read the XDP program uses agrees with the full parse
/// and refuses what does not fit.
#[test]
fn the_session_id_is_read_at_its_fixed_offset() {
    let buf = client_hello_record(&[0x5E; 32], &[sni(b"x.example")]);
    let fixed = hello_session_id(&buf, CLIENT_HELLO).unwrap();
    assert_eq!((fixed.start, fixed.of(&buf)), (44, &[0x5E; 32][..]));
    assert_eq!(fixed, client_hello(&buf).unwrap().session_id);
    let buf = client_hello_record(&[], &[]);
    assert!(hello_session_id(&buf, CLIENT_HELLO).unwrap().is_empty());
    let sh = record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &server_hello_body_tls12(&[7; 16])));
    assert_eq!(hello_session_id(&sh, SERVER_HELLO).unwrap().of(&sh), [7; 16]);
    assert_eq!(hello_session_id(&sh, CLIENT_HELLO), Err(TlsError::UnexpectedMessage));
    // The ID runs past the buffer, past the message, or past 32 bytes.
    let buf = client_hello_record(&[1; 32], &[]);
    assert_eq!(hello_session_id(&buf[..60], CLIENT_HELLO), Err(TlsError::Incomplete));
    let mut short = buf.clone();
    short[6..9].copy_from_slice(&[0, 0, 40]); // message length 40: the ID would end at 67
    assert_eq!(hello_session_id(&short, CLIENT_HELLO), Err(TlsError::Overrun));
    let mut long = buf;
    long[43] = 33;
    assert_eq!(hello_session_id(&long, CLIENT_HELLO), Err(TlsError::SessionIdTooLong));
    assert_eq!(
        hello_session_id(b"GET / HTTP/1.1\r\nHost: x.example\r\n\r\n-------------------", CLIENT_HELLO),
        Err(TlsError::NotHandshake)
    );
}
