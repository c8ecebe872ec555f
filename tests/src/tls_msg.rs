//! TLS records and handshake messages built by hand (RFC 5246, RFC 8446),
//! for golden-packet tests: only the fields tether reads are meaningful.

pub const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const NEW_SESSION_TICKET: u8 = 4;
pub const CERTIFICATE: u8 = 11;
const EXT_SUPPORTED_GROUPS: u16 = 0x000A;
const EXT_PADDING: u16 = 21;
const EXT_SESSION_TICKET: u16 = 35;

pub fn record(content: u8, payload: &[u8]) -> Vec<u8> {
    [&[content, 3, 3][..], &(payload.len() as u16).to_be_bytes(), payload].concat()
}

pub fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    [&[msg_type, len[1], len[2], len[3]][..], body].concat()
}

pub fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    [&kind.to_be_bytes()[..], &(data.len() as u16).to_be_bytes(), data].concat()
}

/// A ClientHello offering `session_id`, and a SessionTicket extension with
/// `ticket` if given (empty: asking for one).
pub fn client_hello(session_id: &[u8], ticket: Option<&[u8]>) -> Vec<u8> {
    padded_client_hello(session_id, 0, ticket)
}

/// As `client_hello`, with a padding extension of `padding` bytes (RFC
/// 7685) before the SessionTicket extension, which so comes last: a hello
/// as long as a post-quantum one whose ticket sits at its end.
pub fn padded_client_hello(session_id: &[u8], padding: usize, ticket: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(session_id.len() as u8);
    body.extend(session_id);
    body.extend([0, 4, 0x13, 0x01, 0xC0, 0x2F, 1, 0]);
    let mut extensions = ext(EXT_SUPPORTED_GROUPS, &[0, 2, 0, 0x1D]);
    if padding > 0 {
        extensions.extend(ext(EXT_PADDING, &vec![0; padding]));
    }
    if let Some(ticket) = ticket {
        extensions.extend(ext(EXT_SESSION_TICKET, ticket));
    }
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    record(CONTENT_HANDSHAKE, &handshake(CLIENT_HELLO, &body))
}

/// A ServerHello with `session_id`; TLS 1.3 (`supported_versions`) or 1.2.
pub fn server_hello(session_id: &[u8], tls13: bool) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x22; 32]);
    body.push(session_id.len() as u8);
    body.extend(session_id);
    body.extend([0x13, 0x01, 0]);
    let mut extensions = Vec::new();
    if tls13 {
        extensions.extend(ext(43, &[3, 4]));
        extensions.extend(ext(51, &[[0, 0x1D, 0, 32].as_slice(), &[0x33; 32]].concat()));
    } else {
        extensions.extend(ext(0xFF01, &[0]));
    }
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    record(CONTENT_HANDSHAKE, &handshake(SERVER_HELLO, &body))
}

/// A TLS 1.2 NewSessionTicket record (RFC 5077 §3.3).
pub fn new_session_ticket(ticket: &[u8]) -> Vec<u8> {
    let body = [&7200u32.to_be_bytes()[..], &(ticket.len() as u16).to_be_bytes(), ticket].concat();
    record(CONTENT_HANDSHAKE, &handshake(NEW_SESSION_TICKET, &body))
}
