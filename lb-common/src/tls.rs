//! The TLS handshake as tether reads it: just enough of the ClientHello,
//! ServerHello and TLS 1.2 NewSessionTicket to find the keys persistence uses
//! (DESIGN.md §3). No allocation, no recursion, bounded loops, every length
//! checked against its container before use: the XDP program runs it over a
//! per-CPU copy of the payload, and the daemon over whatever the slow path
//! reassembled.
//!
//! A parse returns byte ranges (`Span`) into the caller's buffer, not copies,
//! so it costs no stack. Input is never trusted: a length that runs past the
//! field containing it, a list that does not end where its length says, a
//! second PSK extension that is not last, more extensions than the walk's
//! bound: each is a `TlsError` naming the problem, and the caller treats the
//! connection as one without persistence keys. Running out of bytes before
//! the message ends is `Incomplete` (a ClientHello longer than one segment),
//! which is not an error of the peer.

/// TLS record content type of handshake records (RFC 8446 §5.1).
pub const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message types (RFC 8446 §4, RFC 5077 §3.3).
pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const NEW_SESSION_TICKET: u8 = 4;

/// Extension types (RFC 6066, RFC 5077, RFC 8446).
const EXT_SERVER_NAME: u16 = 0;
const EXT_SESSION_TICKET: u16 = 35;
const EXT_PRE_SHARED_KEY: u16 = 41;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// Record header and handshake header lengths.
pub const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
/// A TLS record's payload is at most 2^14 bytes (RFC 8446 §5.1); with
/// encryption overhead 2^14 + 256, which a handshake record never needs.
pub const MAX_RECORD: usize = 1 << 14;
/// Session IDs are at most 32 bytes (RFC 5246 §7.4.1.2).
pub const MAX_SESSION_ID: usize = 32;
/// The walk over a hello's extensions stops here and reports
/// `TooManyExtensions`. Browsers send about 20 (with GREASE), OpenSSL and
/// rustls fewer; the bound keeps the walk's cost fixed in XDP.
pub const MAX_EXTENSIONS: usize = 40;
/// `SNI host_name` entries looked at: the first is the one servers use.
const SNI_NAME_TYPE_HOST: u8 = 0;

/// The `random` of a ServerHello that is really a HelloRetryRequest
/// (RFC 8446 §4.1.3): SHA-256 of "HelloRetryRequest".
pub const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11,
    0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Why a buffer did not give a handshake message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TlsError {
    /// The buffer ends before the message does (so far it is well formed).
    Incomplete = 1,
    /// The record is not a handshake record, or its version is not TLS's.
    NotHandshake = 2,
    /// A handshake record, but not the message asked for.
    UnexpectedMessage = 3,
    /// A length runs past the field or record that contains it, or a list
    /// does not end exactly where its length says.
    Overrun = 4,
    /// A session ID longer than 32 bytes.
    SessionIdTooLong = 5,
    /// More than `MAX_EXTENSIONS` extensions.
    TooManyExtensions = 6,
    /// A `pre_shared_key` extension that is not the last one (RFC 8446
    /// §4.2.11), or one that appears twice.
    PskNotLast = 7,
    /// The handshake message is longer than its record: it continues in the
    /// next record (allowed by RFC 8446 §5.1; the daemon's slow path reads it).
    SpansRecords = 8,
    /// More records or handshake messages than a flight walk reads.
    TooManyMessages = 9,
}

/// `len` bytes at `start` in the buffer given to the parser. Empty: absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u16,
    pub len: u16,
}

impl Span {
    pub const EMPTY: Span = Span { start: 0, len: 0 };

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, from the buffer the span was parsed from.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let start = self.start as usize;
        buf.get(start..start + self.len as usize).unwrap_or(&[])
    }
}

/// What persistence needs from a ClientHello. (`repr(C, align(4))`: the XDP
/// program clears one with word stores, see `lb-ebpf/src/mem.rs`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct ClientHello {
    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3 alike).
    pub legacy_version: u16,
    /// The session ID offered for resumption (TLS ≤ 1.2), or TLS 1.3's
    /// compatibility-mode random value, which is not a key.
    pub session_id: Span,
    /// The first `host_name` of `server_name`.
    pub sni: Span,
    /// Whether a `session_ticket` extension is present, and its ticket
    /// (empty: the client asks for one but has none).
    pub has_ticket_ext: bool,
    pub ticket: Span,
    /// The first PSK identity of `pre_shared_key` (TLS 1.3 resumption).
    pub psk_identity: Span,
    /// The `supported_versions` list (see `offers_tls13`).
    pub supported_versions: Span,
    /// Extensions walked (not counted by the XDP program, where nothing
    /// reads it).
    pub extensions: u8,
}

/// What learning needs from a ServerHello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct ServerHello {
    pub legacy_version: u16,
    /// The negotiated version: `supported_versions` if present, else
    /// `legacy_version`.
    pub version: u16,
    /// The server's session ID. In TLS 1.3 an echo of the client's, never a
    /// key (DESIGN.md §3).
    pub session_id: Span,
    /// TLS 1.3: the index of the client's PSK identity the server accepted.
    pub accepted_psk: Option<u16>,
    /// A HelloRetryRequest rather than a real ServerHello.
    pub hello_retry: bool,
}

/// A TLS 1.2 NewSessionTicket (RFC 5077 §3.3), sent in clear before the
/// server's ChangeCipherSpec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewSessionTicket {
    pub lifetime_hint: u32,
    pub ticket: Span,
}

type Result<T> = core::result::Result<T, TlsError>;

/// A cursor over `buf[pos..end]`: every read checks the end it was given,
/// so a nested length can never read past its container.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// `buf[start..start + len]`, which the caller has bounded by a container.
    fn new(buf: &'a [u8], start: usize, len: usize) -> Reader<'a> {
        Reader { buf, pos: start, end: start + len }
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(TlsError::Overrun);
        }
        let b = *self.buf.get(self.pos).ok_or(TlsError::Incomplete)?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16> {
        // Both bytes inside the container and the buffer: one check, not
        // four (the lengths a hello is made of are mostly two bytes).
        if self.pos + 2 <= self.end
            && let Some(&[a, b]) = self.buf.get(self.pos..self.pos + 2)
        {
            self.pos += 2;
            return Ok(u16::from_be_bytes([a, b]));
        }
        // Else the byte that fails says which error it is.
        Ok(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn u24(&mut self) -> Result<usize> {
        Ok(((self.byte()? as usize) << 16) | ((self.byte()? as usize) << 8) | self.byte()? as usize)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]))
    }

    /// Skips `n` bytes that must lie inside the container; whether they are
    /// in the buffer is checked by whoever reads after them.
    fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(TlsError::Overrun);
        }
        self.pos += n;
        Ok(())
    }

    /// A field of `n` bytes, inside the container and inside the buffer.
    fn span(&mut self, n: usize) -> Result<Span> {
        if n > self.remaining() {
            return Err(TlsError::Overrun);
        }
        if self.pos + n > self.buf.len() {
            return Err(TlsError::Incomplete);
        }
        let span = Span { start: self.pos as u16, len: n as u16 };
        self.pos += n;
        Ok(span)
    }

    /// A nested reader over the next `n` bytes, which must fit the container.
    fn sub(&mut self, n: usize) -> Result<Reader<'a>> {
        if n > self.remaining() {
            return Err(TlsError::Overrun);
        }
        let sub = Reader::new(self.buf, self.pos, n);
        self.pos += n;
        Ok(sub)
    }

    /// A vector with a two-byte length prefix, as a nested reader.
    fn vec16(&mut self) -> Result<Reader<'a>> {
        let n = self.u16()? as usize;
        self.sub(n)
    }
}

/// The body of the handshake message of type `msg_type` that starts the
/// record at the front of `buf`: its reader and the record's length.
fn handshake_body(buf: &[u8], msg_type: u8) -> Result<Reader<'_>> {
    if buf.len() < RECORD_HEADER {
        return Err(TlsError::Incomplete);
    }
    // Record versions are 0x0301-0x0303 in practice (TLS 1.3 freezes it at
    // 0x0303, ClientHellos often say 0x0301); the major must be 3.
    if buf[0] != CONTENT_HANDSHAKE || buf[1] != 3 {
        return Err(TlsError::NotHandshake);
    }
    let record_len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
    if record_len > MAX_RECORD {
        return Err(TlsError::Overrun);
    }
    message_body(buf, RECORD_HEADER, record_len, msg_type)
}

/// The handshake message of type `msg_type` at `start` in a record whose
/// payload ends `in_record` bytes from `start`.
fn message_body(buf: &[u8], start: usize, in_record: usize, msg_type: u8) -> Result<Reader<'_>> {
    let mut record = Reader::new(buf, start, in_record);
    if record.byte()? != msg_type {
        return Err(TlsError::UnexpectedMessage);
    }
    let len = record.u24()?;
    if len > record.remaining() {
        return Err(TlsError::SpansRecords);
    }
    // The whole message, or nothing: a prefix would give keys from a
    // message whose end might still turn out malformed.
    if buf.len() < record.pos + len {
        return Err(TlsError::Incomplete);
    }
    record.sub(len)
}

/// Where a hello's extension walk stands: the next extension starts at
/// `pos`, the block ends at `end`. The walk goes one extension per step
/// (`client_hello_extension`, `server_hello_extension`) so that the XDP
/// program can run each step as one `bpf_loop` iteration, verified once,
/// where a loop over all of them exceeded the verifier's budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Extensions {
    pub pos: u16,
    pub end: u16,
}

impl Extensions {
    pub fn done(&self) -> bool {
        self.pos >= self.end
    }

    fn of(reader: &Reader<'_>) -> Extensions {
        Extensions { pos: reader.pos as u16, end: reader.end as u16 }
    }
}

/// Where the extensions persistence reads lie in a ClientHello: the offset
/// of each one's type field (0: absent; a hello's extensions never start
/// there). `skip_extension` finds them, `read_found` reads them. Repeated
/// extensions (which RFC 8446 §4.2 forbids) count by their last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Found {
    pub server_name: u16,
    pub session_ticket: u16,
    pub pre_shared_key: u16,
    pub supported_versions: u16,
}

/// Parses the ClientHello that starts the record at the front of `buf`; the
/// whole message must be there (else `Incomplete`).
pub fn client_hello(buf: &[u8]) -> Result<ClientHello> {
    let mut hello = ClientHello::default();
    let mut extensions = Extensions::default();
    let mut found = Found::default();
    client_hello_head(buf, &mut hello, &mut extensions)?;
    // VERIFIER: a constant trip count.
    for _ in 0..MAX_EXTENSIONS {
        if extensions.done() {
            break;
        }
        skip_extension(buf, &mut extensions, &mut found, &mut hello)?;
    }
    if !extensions.done() {
        return Err(TlsError::TooManyExtensions);
    }
    read_found(buf, &found, &mut hello)?;
    Ok(hello)
}

/// Reads the fixed part of a ClientHello (everything before the extensions)
/// into `hello`, which must be all defaults, and where its extensions lie
/// into `walk`. `buf` must hold the whole message. (The caller provides
/// `hello`: a default one built here would be a `memset` in XDP. `walk` is
/// an out-parameter, not part of the result, for the verifier: LLVM packed
/// a `Result<Extensions>` into one register, filling the error case's
/// undefined half from a register that held a pointer, and the verifier
/// refuses to shift a pointer.)
pub fn client_hello_head(buf: &[u8], hello: &mut ClientHello, walk: &mut Extensions) -> Result<()> {
    let mut body = handshake_body(buf, CLIENT_HELLO)?;
    hello.legacy_version = body.u16()?;
    body.skip(32)?; // random
    hello.session_id = session_id(&mut body)?;
    let suites = body.u16()? as usize;
    body.skip(suites)?;
    let compressions = body.byte()? as usize;
    body.skip(compressions)?;
    let extensions = extensions_block(&mut body)?;
    *walk = Extensions::of(&extensions);
    Ok(())
}

/// Steps `at` over the ClientHello extension at `at.pos`, noting in `found`
/// where the ones persistence reads lie and counting it in `hello`. Called
/// with `at` done, it does nothing. Only the type and length are read: the
/// walk over a browser's twenty-odd extensions is most of what a hello
/// costs XDP, and four of them matter (`read_found` reads those).
pub fn skip_extension(buf: &[u8], at: &mut Extensions, found: &mut Found, hello: &mut ClientHello) -> Result<()> {
    let pos = at.pos as usize;
    let header = match buf.get(pos..pos + 4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => [0; 4],
    };
    step_over_extension(header, at, found, &mut hello.extensions)
}

/// `skip_extension` given the four bytes at `at.pos` (the extension's type
/// and length), which the XDP program reads its own way, and the count of
/// extensions walked (`ClientHello::extensions`), which it keeps in a
/// register over several steps. Whatever the bytes are, the step checks
/// that they and the extension lie inside the block, which
/// `client_hello_head` checked lies inside the buffer.
#[inline(always)]
pub fn step_over_extension(header: [u8; 4], at: &mut Extensions, found: &mut Found, walked: &mut u8) -> Result<()> {
    let (pos, end) = (at.pos as usize, at.end as usize);
    if pos >= end {
        return Ok(());
    }
    if found.pre_shared_key != 0 {
        return Err(TlsError::PskNotLast);
    }
    let next = pos + 4 + u16::from_be_bytes([header[2], header[3]]) as usize;
    // Also covers the header itself running past the end.
    if next > end {
        return Err(TlsError::Overrun);
    }
    match u16::from_be_bytes([header[0], header[1]]) {
        EXT_SERVER_NAME => found.server_name = pos as u16,
        EXT_SESSION_TICKET => found.session_ticket = pos as u16,
        EXT_PRE_SHARED_KEY => found.pre_shared_key = pos as u16,
        EXT_SUPPORTED_VERSIONS => found.supported_versions = pos as u16,
        _ => {}
    }
    *walked = walked.saturating_add(1);
    at.pos = next as u16;
    Ok(())
}

/// Reads the extensions `skip_extension` found into `hello`. Each lies
/// inside the extension block (the walk checked its length), and `buf`
/// holds the whole hello.
pub fn read_found(buf: &[u8], found: &Found, hello: &mut ClientHello) -> Result<()> {
    if found.server_name != 0 {
        hello.sni = server_name(&mut extension_data(buf, found.server_name)?)?;
    }
    if found.session_ticket != 0 {
        let mut data = extension_data(buf, found.session_ticket)?;
        hello.has_ticket_ext = true;
        let n = data.remaining();
        hello.ticket = data.span(n)?;
    }
    if found.pre_shared_key != 0 {
        hello.psk_identity = first_psk_identity(&mut extension_data(buf, found.pre_shared_key)?)?;
    }
    if found.supported_versions != 0 {
        hello.supported_versions = supported_versions(&mut extension_data(buf, found.supported_versions)?)?;
    }
    Ok(())
}

/// The data of the extension whose type field is at `at`, as a reader.
fn extension_data(buf: &[u8], at: u16) -> Result<Reader<'_>> {
    let mut header = Reader::new(buf, at as usize, 4);
    header.skip(2)?;
    let len = header.u16()? as usize;
    Ok(Reader::new(buf, at as usize + 4, len))
}

/// The extensions that end a hello, which must end exactly with it; none at
/// all (allowed before TLS 1.3) reads as an empty block.
fn extensions_block<'a>(body: &mut Reader<'a>) -> Result<Reader<'a>> {
    if body.remaining() == 0 {
        return Ok(Reader::new(body.buf, body.pos, 0));
    }
    let extensions = body.vec16()?;
    if body.remaining() != 0 {
        return Err(TlsError::Overrun);
    }
    Ok(extensions)
}

fn session_id(body: &mut Reader<'_>) -> Result<Span> {
    let len = body.byte()? as usize;
    if len > MAX_SESSION_ID {
        return Err(TlsError::SessionIdTooLong);
    }
    body.span(len)
}

/// `server_name`: a list of (type, name); the first `host_name`.
fn server_name(data: &mut Reader<'_>) -> Result<Span> {
    let mut list = data.vec16()?;
    if data.remaining() != 0 {
        return Err(TlsError::Overrun);
    }
    let kind = list.byte()?;
    let len = list.u16()? as usize;
    let name = list.span(len)?;
    Ok(if kind == SNI_NAME_TYPE_HOST { name } else { Span::EMPTY })
}

/// `pre_shared_key` in a ClientHello: identities, then binders; the first
/// identity. An empty identity list is malformed (RFC 8446 §4.2.11).
fn first_psk_identity(data: &mut Reader<'_>) -> Result<Span> {
    let mut identities = data.vec16()?;
    let len = identities.u16()? as usize;
    if len == 0 {
        return Err(TlsError::Overrun);
    }
    let identity = identities.span(len)?;
    identities.skip(4)?; // obfuscated_ticket_age
    Ok(identity)
}

/// `supported_versions` in a ClientHello: a list of versions, kept as a span
/// (persistence does not need it; the XDP program need not walk it).
fn supported_versions(data: &mut Reader<'_>) -> Result<Span> {
    let n = data.byte()? as usize;
    let list = data.span(n)?;
    if data.remaining() != 0 || !n.is_multiple_of(2) {
        return Err(TlsError::Overrun);
    }
    Ok(list)
}

impl ClientHello {
    /// Whether `supported_versions` offers TLS 1.3 (`buf`: the parsed buffer).
    pub fn offers_tls13(&self, buf: &[u8]) -> bool {
        self.supported_versions.of(buf).chunks_exact(2).any(|v| u16::from_be_bytes([v[0], v[1]]) == TLS13)
    }
}

/// Where a hello's session ID lies: record header, handshake header,
/// version and random come first, so its length byte is always at offset 43
/// and the ID starts at 44 (DESIGN.md §1).
const SESSION_ID_LEN_AT: usize = RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32;

/// The session ID of the hello (`msg_type` CLIENT_HELLO or SERVER_HELLO) at
/// the front of `buf`, read at its fixed offset with no walk: what the XDP
/// program can afford on every binding and every first server segment. It
/// checks the record and message types and that the ID fits the message
/// and `buf`; the rest of the hello is not read (`client_hello` and
/// `server_hello` do that).
pub fn hello_session_id(buf: &[u8], msg_type: u8) -> Result<Span> {
    if buf.len() < SESSION_ID_LEN_AT + 1 {
        return Err(TlsError::Incomplete);
    }
    if buf[0] != CONTENT_HANDSHAKE || buf[1] != 3 {
        return Err(TlsError::NotHandshake);
    }
    if buf[RECORD_HEADER] != msg_type {
        return Err(TlsError::UnexpectedMessage);
    }
    let message_len = u32::from_be_bytes([0, buf[6], buf[7], buf[8]]) as usize;
    let len = buf[SESSION_ID_LEN_AT] as usize;
    if len > MAX_SESSION_ID {
        return Err(TlsError::SessionIdTooLong);
    }
    // Version, random, length byte and the ID itself lie inside the message.
    if 2 + 32 + 1 + len > message_len {
        return Err(TlsError::Overrun);
    }
    if buf.len() < SESSION_ID_LEN_AT + 1 + len {
        return Err(TlsError::Incomplete);
    }
    Ok(Span { start: (SESSION_ID_LEN_AT + 1) as u16, len: len as u16 })
}

/// Parses the ServerHello that starts the record at the front of `buf`.
pub fn server_hello(buf: &[u8]) -> Result<ServerHello> {
    let body = handshake_body(buf, SERVER_HELLO)?;
    server_hello_body(buf, body)
}

fn server_hello_body(buf: &[u8], body: Reader<'_>) -> Result<ServerHello> {
    let mut hello = ServerHello::default();
    let mut extensions = server_hello_fixed(body, &mut hello)?;
    // VERIFIER: a constant trip count.
    for _ in 0..MAX_EXTENSIONS {
        if extensions.done() {
            return Ok(hello);
        }
        server_hello_extension(buf, &mut extensions, &mut hello)?;
    }
    if extensions.done() { Ok(hello) } else { Err(TlsError::TooManyExtensions) }
}

/// Reads the fixed part of the ServerHello that starts the record at the
/// front of `buf` into `hello` (all defaults), and returns where its
/// extensions lie; the whole message must be there.
pub fn server_hello_head(buf: &[u8], hello: &mut ServerHello) -> Result<Extensions> {
    server_hello_fixed(handshake_body(buf, SERVER_HELLO)?, hello)
}

fn server_hello_fixed(mut body: Reader<'_>, hello: &mut ServerHello) -> Result<Extensions> {
    hello.legacy_version = body.u16()?;
    hello.version = hello.legacy_version;
    let random = body.span(32)?;
    hello.hello_retry = is_hello_retry(random.of(body.buf));
    hello.session_id = session_id(&mut body)?;
    body.skip(3)?; // cipher_suite, legacy_compression_method
    let extensions = extensions_block(&mut body)?;
    Ok(Extensions::of(&extensions))
}

/// Whether a ServerHello's random is HelloRetryRequest's.
// VERIFIER: word differences or-ed together: a comparison of the arrays,
// or a chain of word comparisons (which LLVM merges back), is a call to the
// byte-loop `memcmp` in XDP (see `lb-ebpf/src/mem.rs`).
fn is_hello_retry(random: &[u8]) -> bool {
    let mut diff = (random.len() != HELLO_RETRY_RANDOM.len()) as u64;
    for (got, want) in random.chunks_exact(8).zip(HELLO_RETRY_RANDOM.chunks_exact(8)) {
        let got = u64::from_ne_bytes(got.try_into().unwrap_or([0; 8]));
        diff |= got ^ u64::from_ne_bytes(want.try_into().unwrap_or([0; 8]));
    }
    diff == 0
}

/// Reads the ServerHello extension at `at.pos` into `hello` and moves `at`
/// past it. Called with `at` done, it does nothing.
pub fn server_hello_extension(buf: &[u8], at: &mut Extensions, hello: &mut ServerHello) -> Result<()> {
    let mut extensions = Reader::new(buf, at.pos as usize, at.end.saturating_sub(at.pos) as usize);
    if extensions.remaining() == 0 {
        return Ok(());
    }
    let kind = extensions.u16()?;
    let mut data = extensions.vec16()?;
    match kind {
        EXT_SUPPORTED_VERSIONS => hello.version = data.u16()?,
        EXT_PRE_SHARED_KEY => hello.accepted_psk = Some(data.u16()?),
        _ => {
            let n = data.remaining();
            data.skip(n)?;
        }
    }
    if data.remaining() != 0 {
        return Err(TlsError::Overrun);
    }
    *at = Extensions::of(&extensions);
    Ok(())
}

/// Parses a TLS 1.2 NewSessionTicket starting at `buf[start..]`, a handshake
/// message with `in_record` bytes of its record from `start` on.
pub fn new_session_ticket(buf: &[u8], start: usize, in_record: usize) -> Result<NewSessionTicket> {
    let mut body = message_body(buf, start, in_record, NEW_SESSION_TICKET)?;
    let lifetime_hint = body.u32()?;
    let len = body.u16()? as usize;
    let ticket = body.span(len)?;
    if body.remaining() != 0 {
        return Err(TlsError::Overrun);
    }
    Ok(NewSessionTicket { lifetime_hint, ticket })
}

/// One handshake message found in a server's flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub msg_type: u8,
    /// Offset of the message's header in the buffer, and its body's length.
    pub start: usize,
    pub len: usize,
}

/// Walks the handshake records at the front of `buf` (a server's flight, in
/// order) and calls `found` with each complete handshake message, until a
/// record that is not a handshake (ChangeCipherSpec, alert, application
/// data), the end of the buffer, or `found` returning false. Returns the
/// offset where the walk stopped: the start of the first record not read
/// whole, which is where a later segment's walk resumes.
pub fn walk_flight(buf: &[u8], mut found: impl FnMut(&[u8], Message) -> bool) -> Result<usize> {
    let mut pos = 0;
    // VERIFIER: records bounded; a flight that needs more goes to the daemon.
    for _ in 0..16 {
        if buf.len() < pos + RECORD_HEADER {
            return Ok(pos);
        }
        if buf[pos] != CONTENT_HANDSHAKE {
            return Ok(pos);
        }
        if buf[pos + 1] != 3 {
            return Err(TlsError::NotHandshake);
        }
        let record_len = u16::from_be_bytes([buf[pos + 3], buf[pos + 4]]) as usize;
        if record_len > MAX_RECORD {
            return Err(TlsError::Overrun);
        }
        let payload = pos + RECORD_HEADER;
        if buf.len() < payload + record_len {
            return Ok(pos);
        }
        let mut at = payload;
        // VERIFIER: messages per record bounded as records are.
        for _ in 0..16 {
            if at == payload + record_len {
                break;
            }
            let mut header = Reader::new(buf, at, payload + record_len - at);
            let msg_type = header.byte()?;
            let len = header.u24()?;
            if len > header.remaining() {
                return Err(TlsError::SpansRecords);
            }
            if !found(buf, Message { msg_type, start: at, len }) {
                return Ok(pos);
            }
            at += HANDSHAKE_HEADER + len;
        }
        if at != payload + record_len {
            return Err(TlsError::TooManyMessages);
        }
        pos = payload + record_len;
    }
    Ok(pos)
}

/// The ServerHello of a message found by `walk_flight`.
pub fn server_hello_at(buf: &[u8], message: Message) -> Result<ServerHello> {
    if message.msg_type != SERVER_HELLO {
        return Err(TlsError::UnexpectedMessage);
    }
    server_hello_body(buf, Reader::new(buf, message.start + HANDSHAKE_HEADER, message.len))
}

/// The NewSessionTicket of a message found by `walk_flight`.
pub fn new_session_ticket_at(buf: &[u8], message: Message) -> Result<NewSessionTicket> {
    new_session_ticket(buf, message.start, HANDSHAKE_HEADER + message.len)
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
