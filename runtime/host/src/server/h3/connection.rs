//! One QUIC connection's driver: a task that owns the `quiche::Connection` and its HTTP/3
//! layer, feeds it the datagrams the endpoint routes here, turns request streams into
//! handler tasks, and writes their responses back as flow control allows.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use quiche::h3::{self, Header};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use super::body::{self, Piece, RequestBody};
use super::endpoint::{Command, Datagram, Endpoint, MAX_SEND_PAYLOAD, StreamId};
use super::headers;
use crate::dispatch::ConnectionInfo;

/// RFC 9114 §8.1 error codes.
const H3_NO_ERROR: u64 = 0x100;
const H3_INTERNAL_ERROR: u64 = 0x102;
const H3_EXCESSIVE_LOAD: u64 = 0x107;
const H3_REQUEST_REJECTED: u64 = 0x10b;
const H3_REQUEST_CANCELLED: u64 = 0x10c;
const H3_MESSAGE_ERROR: u64 = 0x10e;

/// Requests served on one connection before it is sent GOAWAY (the client reconnects):
/// bounds what a long-lived connection accumulates.
const MAX_REQUESTS_PER_CONNECTION: u64 = 10_000;
/// Streams a client may cancel while their handlers run, beyond the number it let finish,
/// before its connection is closed with H3_EXCESSIVE_LOAD (rapid reset, as CVE-2023-44487
/// on HTTP/2).
const MAX_CANCELLED_IN_FLIGHT: u64 = 100;
/// Datagrams taken at once before the driver turns to its other work.
const DATAGRAM_BATCH: usize = 64;
/// After the last response at shutdown, time for acknowledgements and retransmissions
/// before the connection is closed.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a response head may wait for room (congestion window, flow control) before
/// its stream is reset: a head larger than the window would otherwise wait forever.
const HEAD_BLOCKED_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

thread_local! {
    /// Where body data is read before it is copied out in one piece: per worker thread,
    /// not per connection (reading never awaits), so idle connections cost no buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

/// A request stream's state on the driver side.
struct Stream {
    /// Where the request body goes; `None` once it ended or nobody reads it any more.
    body: Option<mpsc::Sender<Piece>>,
    /// Pieces (trailers, end) waiting for room in the body channel.
    waiting: VecDeque<Piece>,
    /// Body data left unread in quiche because the channel was full.
    paused: bool,
    /// Response pieces not yet accepted by quiche.
    out: VecDeque<Out>,
    /// The handler's byte credit for response data.
    credit: Arc<Semaphore>,
    /// The handler task: aborted when the stream goes away (a reset stream or a closed
    /// connection cancels its request, guest included).
    handler: Option<tokio::task::AbortHandle>,
    /// Since when the response head has been waiting for room.
    head_blocked_since: Option<std::time::Instant>,
}

impl Stream {
    fn new(body: Option<mpsc::Sender<Piece>>) -> Self {
        Self {
            body,
            waiting: VecDeque::new(),
            paused: false,
            out: VecDeque::new(),
            credit: Arc::new(Semaphore::new(body::RESPONSE_CREDIT)),
            handler: None,
            head_blocked_since: None,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A handler still sending learns that the stream is gone.
        self.credit.close();
        if let Some(handler) = self.handler.take() {
            handler.abort();
        }
    }
}

enum Out {
    Head(Vec<Header>, bool),
    Data(Bytes, bool),
    Trailers(Vec<Header>),
}

/// Drives one connection until it closes. `datagrams` carries what the endpoint received
/// for it; a closed channel means the endpoint is gone.
pub(super) async fn drive(
    mut conn: quiche::Connection,
    peer: SocketAddr,
    mut datagrams: mpsc::Receiver<Datagram>,
    endpoint: Arc<Endpoint>,
    mut stop: watch::Receiver<bool>,
) {
    let (commands, mut command_rx) = mpsc::unbounded_channel();
    let room = Arc::new(Notify::new());
    let mut driver = Driver {
        h3: None,
        streams: HashMap::new(),
        room: room.clone(),
        commands,
        endpoint,
        peer,
        highest_stream: None,
        goaway_sent: false,
        draining: false,
        requests: 0,
        cancelled: 0,
    };
    let mut out = vec![0; MAX_SEND_PAYLOAD].into_boxed_slice();
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    if *stop.borrow() {
        driver.draining = true;
    }
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        driver.flush(&mut conn, &mut out).await;
        // A closing connection keeps taking packets (and timers) until quiche is done.
        if conn.is_closed() {
            break;
        }
        if driver.draining {
            // Idempotent; also covers a GOAWAY decided while HTTP/3 was busy polling.
            driver.goaway(&mut conn);
        }
        if driver.draining && driver.streams.is_empty() && !conn.is_draining() {
            let now = tokio::time::Instant::now();
            match close_at {
                None => close_at = Some(now + CLOSE_GRACE),
                Some(at) if at <= now => {
                    let _ = conn.close(true, H3_NO_ERROR, b"shutting down");
                    close_at = Some(far());
                    continue;
                }
                Some(_) => {}
            }
        }
        let deadline = conn
            .timeout_instant()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(far)
            .min(close_at.unwrap_or_else(far));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            datagram = datagrams.recv() => {
                let Some(datagram) = datagram else { break };
                driver.receive(&mut conn, datagram);
                // Take what else has arrived before answering (fewer, fuller packets), but
                // not without bound: a flood must not starve the rest of this loop.
                for _ in 1..DATAGRAM_BATCH {
                    let Ok(datagram) = datagrams.try_recv() else { break };
                    driver.receive(&mut conn, datagram);
                }
            }
            command = command_rx.recv() => {
                if let Some(command) = command {
                    driver.apply(&mut conn, command);
                }
            }
            () = room.notified() => driver.resume_reading(&mut conn),
            () = &mut timer => {}
            _ = stop.changed(), if !driver.draining => {
                driver.draining = true;
                driver.goaway(&mut conn);
            }
        }
        // Whatever woke the driver: handlers' output, and quiche's timers when due.
        while let Ok(command) = command_rx.try_recv() {
            driver.apply(&mut conn, command);
        }
        if conn
            .timeout_instant()
            .is_some_and(|at| at <= std::time::Instant::now())
        {
            conn.on_timeout();
        }
        driver.progress(&mut conn);
    }
    // Handlers still reading bodies see them end with an error; senders see closed credit;
    // handlers still running are cancelled.
    driver.streams.clear();
}

struct Driver {
    h3: Option<h3::Connection>,
    streams: HashMap<StreamId, Stream>,
    room: Arc<Notify>,
    commands: mpsc::UnboundedSender<Command>,
    endpoint: Arc<Endpoint>,
    peer: SocketAddr,
    highest_stream: Option<StreamId>,
    goaway_sent: bool,
    /// Shutting down (or done with this connection): GOAWAY sent or to be sent, no new
    /// requests, close once the streams are done.
    draining: bool,
    /// Requests accepted on this connection.
    requests: u64,
    /// Requests the client cancelled while their handlers ran.
    cancelled: u64,
}

impl Driver {
    fn receive(&mut self, conn: &mut quiche::Connection, mut datagram: Datagram) {
        let info = quiche::RecvInfo {
            from: datagram.from,
            to: self.endpoint.local,
        };
        if let Err(e) = conn.recv(&mut datagram.bytes, info) {
            tracing::trace!(peer = %self.peer, error = %e, "QUIC packet refused");
        }
    }

    /// Sends everything quiche has queued.
    async fn flush(&mut self, conn: &mut quiche::Connection, out: &mut [u8]) {
        loop {
            match conn.send(out) {
                Ok((len, info)) => {
                    if let Err(e) = self.endpoint.socket.send_to(&out[..len], info.to).await {
                        tracing::debug!(peer = %self.peer, error = %e, "UDP send failed");
                    }
                }
                Err(quiche::Error::Done) => return,
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "QUIC send failed");
                    // Closing queues a CONNECTION_CLOSE: send it now (a second failure
                    // means quiche has nothing more to send).
                    if conn.close(false, 0x1, b"internal error").is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// After any event: set up HTTP/3 once the handshake is done, take its events, and
    /// write what handlers produced.
    fn progress(&mut self, conn: &mut quiche::Connection) {
        if self.h3.is_none() && conn.is_established() {
            match h3::Connection::with_transport(conn, &self.endpoint.h3_config) {
                Ok(h3) => self.h3 = Some(h3),
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "HTTP/3 setup failed");
                    let _ = conn.close(true, H3_INTERNAL_ERROR, b"HTTP/3 setup failed");
                    return;
                }
            }
        }
        let Some(mut h3) = self.h3.take() else {
            return;
        };
        loop {
            match h3.poll(conn) {
                Ok((id, h3::Event::Headers { list, more_frames })) => {
                    self.on_headers(conn, id, list, more_frames)
                }
                Ok((id, h3::Event::Data)) => self.read_body(conn, &mut h3, id),
                Ok((id, h3::Event::Finished)) => self.offer(id, Piece::End),
                Ok((id, h3::Event::Reset(code))) => {
                    tracing::debug!(peer = %self.peer, stream = id, code, "client reset a stream");
                    let _ = conn.stream_shutdown(id, quiche::Shutdown::Write, H3_REQUEST_CANCELLED);
                    if self.streams.remove(&id).is_some() && self.cancelled_one(conn) {
                        break;
                    }
                }
                Ok((_, h3::Event::PriorityUpdate | h3::Event::GoAway)) => {}
                Err(h3::Error::Done) => break,
                Err(e) => {
                    // quiche has closed the connection with the matching error code
                    // (e.g. H3_EXCESSIVE_LOAD for an oversized field section).
                    tracing::debug!(peer = %self.peer, error = %e, "HTTP/3 connection error");
                    break;
                }
            }
        }
        let ids: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.out.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.write(conn, &mut h3, id);
        }
        self.h3 = Some(h3);
    }

    fn on_headers(
        &mut self,
        conn: &mut quiche::Connection,
        id: StreamId,
        fields: Vec<Header>,
        more_frames: bool,
    ) {
        if let Some(stream) = self.streams.get(&id) {
            // A second field section on a request stream: trailers (RFC 9114 §4.1).
            if stream.body.is_some() {
                match headers::trailers(&fields) {
                    Ok(trailers) => self.offer(id, Piece::Trailers(trailers)),
                    Err(reason) => {
                        tracing::debug!(peer = %self.peer, stream = id, reason, "bad trailers");
                        self.streams.remove(&id);
                        // RFC 9114 §4.1.2: a malformed request is a stream error.
                        let _ = conn.stream_shutdown(id, quiche::Shutdown::Write, H3_MESSAGE_ERROR);
                        let _ = conn.stream_shutdown(id, quiche::Shutdown::Read, H3_MESSAGE_ERROR);
                    }
                }
            }
            return;
        }
        if self.draining && self.goaway_sent {
            // Past our GOAWAY: the client may retry elsewhere (RFC 9114 §5.2).
            let _ = conn.stream_shutdown(id, quiche::Shutdown::Write, H3_REQUEST_REJECTED);
            let _ = conn.stream_shutdown(id, quiche::Shutdown::Read, H3_REQUEST_REJECTED);
            return;
        }
        self.highest_stream = Some(self.highest_stream.map_or(id, |h| h.max(id)));
        self.requests += 1;
        if self.requests >= MAX_REQUESTS_PER_CONNECTION {
            // This one is served; the client takes the next ones to a new connection.
            self.draining = true;
            self.goaway(conn);
        }
        let head = match headers::request_head(&fields) {
            Ok(head) => head,
            Err(reason) => {
                self.refuse(conn, id, &reason, more_frames);
                return;
            }
        };
        let declared = match declared_length(&fields) {
            Ok(declared) => declared,
            Err(reason) => {
                self.refuse(conn, id, reason, more_frames);
                return;
            }
        };
        let (sender, body) = if more_frames {
            let (tx, rx) = mpsc::channel(body::REQUEST_CHUNKS);
            (
                Some(tx),
                RequestBody::new(Some(rx), self.room.clone(), declared),
            )
        } else {
            if declared.is_some_and(|d| d != 0) {
                self.refuse(
                    conn,
                    id,
                    "the request body is shorter than its content-length",
                    false,
                );
                return;
            }
            (None, RequestBody::new(None, self.room.clone(), declared))
        };
        let request = match head
            .extension(ConnectionInfo::new(true, Some(self.peer)))
            .body(body)
        {
            Ok(request) => request,
            Err(e) => {
                self.refuse(conn, id, &e.to_string(), more_frames);
                return;
            }
        };
        let mut stream = Stream::new(sender);
        let credit = stream.credit.clone();
        let commands = self.commands.clone();
        let endpoint = self.endpoint.clone();
        let head_request = request.method() == http::Method::HEAD;
        let handler = tokio::spawn(async move {
            let guard = AbortOnDrop {
                stream: id,
                commands: commands.clone(),
                armed: true,
            };
            let response =
                super::super::h1h2::public(&endpoint.runtime, endpoint.body_rate, request).await;
            body::send_response(id, response, head_request, &commands, credit).await;
            guard.disarm();
        });
        stream.handler = Some(handler.abort_handle());
        self.streams.insert(id, stream);
    }

    /// Answers a malformed request 400 naming the problem (the host's usual error
    /// response, through the usual response path), and stops reading it.
    fn refuse(
        &mut self,
        conn: &mut quiche::Connection,
        id: StreamId,
        reason: &str,
        more_frames: bool,
    ) {
        tracing::debug!(peer = %self.peer, stream = id, reason, "malformed HTTP/3 request");
        if more_frames {
            let _ = conn.stream_shutdown(id, quiche::Shutdown::Read, H3_NO_ERROR);
        }
        let response =
            crate::Error::BadRequest(format!("malformed HTTP/3 request: {reason}")).into_response();
        let stream = Stream::new(None);
        let credit = stream.credit.clone();
        let commands = self.commands.clone();
        self.streams.insert(id, stream);
        tokio::spawn(async move {
            body::send_response(id, response, false, &commands, credit).await;
        });
    }

    /// Moves body data from quiche into the stream's channel while it has room.
    fn read_body(&mut self, conn: &mut quiche::Connection, h3: &mut h3::Connection, id: StreamId) {
        SCRATCH.with_borrow_mut(|buf| self.read_body_into(conn, h3, id, buf));
    }

    fn read_body_into(
        &mut self,
        conn: &mut quiche::Connection,
        h3: &mut h3::Connection,
        id: StreamId,
        read_buf: &mut [u8],
    ) {
        let Some(stream) = self.streams.get_mut(&id) else {
            discard(conn, h3, id, read_buf);
            return;
        };
        let Some(sender) = stream.body.clone() else {
            discard(conn, h3, id, read_buf);
            return;
        };
        loop {
            let permit = match sender.try_reserve() {
                Ok(permit) => permit,
                Err(TrySendError::Full(())) => {
                    stream.paused = true;
                    return;
                }
                Err(TrySendError::Closed(())) => {
                    // The handler dropped the body: nobody wants the rest.
                    stream.body = None;
                    stream.paused = false;
                    let _ = conn.stream_shutdown(id, quiche::Shutdown::Read, H3_NO_ERROR);
                    discard(conn, h3, id, read_buf);
                    return;
                }
            };
            // Fill the buffer with what quiche holds (often many packets' worth), so that
            // the handler reads few large chunks rather than one per packet.
            let mut filled = 0;
            let mut drained = false;
            while filled < read_buf.len() {
                match h3.recv_body(conn, id, &mut read_buf[filled..]) {
                    Ok(len) => filled += len,
                    Err(h3::Error::Done) => {
                        drained = true;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, stream = id, error = %e, "reading a body failed");
                        stream.body = None;
                        stream.paused = false;
                        return;
                    }
                }
            }
            if filled > 0 {
                permit.send(Piece::Data(Bytes::copy_from_slice(&read_buf[..filled])));
            }
            if drained {
                stream.paused = false;
                return;
            }
        }
    }

    /// Queues a piece for the request body, delivering what fits now.
    fn offer(&mut self, id: StreamId, piece: Piece) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.waiting.push_back(piece);
            deliver(stream);
        }
    }

    /// A handler read from its body: resume the streams that were waiting for room.
    fn resume_reading(&mut self, conn: &mut quiche::Connection) {
        let Some(mut h3) = self.h3.take() else {
            return;
        };
        let paused: Vec<StreamId> = self
            .streams
            .iter_mut()
            .filter_map(|(id, stream)| {
                deliver(stream);
                stream.paused.then_some(*id)
            })
            .collect();
        for id in paused {
            self.read_body(conn, &mut h3, id);
        }
        self.h3 = Some(h3);
    }

    fn apply(&mut self, conn: &mut quiche::Connection, command: Command) {
        let (id, out) = match command {
            Command::Head {
                stream,
                head,
                data,
                fin,
            } => {
                if data.is_empty() {
                    (stream, Out::Head(head, fin))
                } else {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.out.push_back(Out::Head(head, false));
                    }
                    (stream, Out::Data(data, fin))
                }
            }
            Command::Data { stream, data, fin } => (stream, Out::Data(data, fin)),
            Command::Trailers { stream, trailers } => (
                stream,
                Out::Trailers(headers::fields_of(&trailers).collect()),
            ),
            Command::Abort { stream } => {
                if self.streams.remove(&stream).is_some() {
                    let _ =
                        conn.stream_shutdown(stream, quiche::Shutdown::Write, H3_INTERNAL_ERROR);
                    let _ = conn.stream_shutdown(stream, quiche::Shutdown::Read, H3_NO_ERROR);
                }
                return;
            }
        };
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.out.push_back(out);
        }
    }

    /// Writes a stream's queued response pieces as far as quiche takes them.
    fn write(&mut self, conn: &mut quiche::Connection, h3: &mut h3::Connection, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let mut finished = false;
        let mut failed = None;
        while let Some(front) = stream.out.front_mut() {
            let result = match front {
                Out::Head(head, fin) => h3.send_response(conn, id, head, *fin).map(|()| Some(*fin)),
                Out::Data(data, fin) if data.is_empty() && !*fin => Ok(Some(false)),
                Out::Data(data, fin) => match h3.send_body(conn, id, data, *fin) {
                    Ok(written) => {
                        let whole = written == data.len();
                        // Credit back what the response's sender took from it.
                        stream.credit.add_permits(written);
                        data.advance(written);
                        Ok(whole.then_some(*fin))
                    }
                    Err(e) => Err(e),
                },
                Out::Trailers(fields) => h3
                    .send_additional_headers(conn, id, fields, true, true)
                    .map(|()| Some(true)),
            };
            let head = matches!(front, Out::Head(..));
            match result {
                Ok(Some(fin)) => {
                    stream.out.pop_front();
                    stream.head_blocked_since = None;
                    if fin {
                        finished = true;
                        break;
                    }
                }
                Err(h3::Error::StreamBlocked) if head => {
                    let since = *stream
                        .head_blocked_since
                        .get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > HEAD_BLOCKED_LIMIT {
                        failed = Some(h3::Error::StreamBlocked);
                    }
                    break;
                }
                Ok(None) | Err(h3::Error::Done | h3::Error::StreamBlocked) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            tracing::debug!(peer = %self.peer, stream = id, error = %e, "writing a response failed");
            let _ = conn.stream_shutdown(id, quiche::Shutdown::Write, H3_INTERNAL_ERROR);
            // STOP_SENDING from the client: it cancelled the request.
            if matches!(
                e,
                h3::Error::TransportError(quiche::Error::StreamStopped(_))
            ) {
                self.streams.remove(&id);
                self.cancelled_one(conn);
                return;
            }
            finished = true;
        }
        if finished {
            let stream = self.streams.remove(&id);
            // The response is complete: the rest of an unread body is not wanted
            // (RFC 9114 §4.1: abort reading with H3_NO_ERROR).
            if stream.is_some_and(|s| s.body.is_some()) {
                let _ = conn.stream_shutdown(id, quiche::Shutdown::Read, H3_NO_ERROR);
            }
        }
    }

    /// Counts a request the client cancelled while it was in flight; past the bound, closes
    /// the connection (and says so).
    fn cancelled_one(&mut self, conn: &mut quiche::Connection) -> bool {
        self.cancelled += 1;
        let finished = self.requests.saturating_sub(self.cancelled);
        if self.cancelled > MAX_CANCELLED_IN_FLIGHT && self.cancelled > finished {
            tracing::debug!(peer = %self.peer, "too many cancelled requests; closing");
            let _ = conn.close(true, H3_EXCESSIVE_LOAD, b"too many cancelled requests");
            return true;
        }
        false
    }

    /// Sends GOAWAY naming the first request stream that will not be processed.
    fn goaway(&mut self, conn: &mut quiche::Connection) {
        if self.goaway_sent {
            return;
        }
        if let Some(h3) = &mut self.h3 {
            let next = self.highest_stream.map_or(0, |id| id + 4);
            if h3.send_goaway(conn, next).is_ok() {
                self.goaway_sent = true;
            }
        }
    }
}

/// The request's declared body length: every `content-length` field must agree
/// (RFC 9110 §8.6).
fn declared_length(fields: &[Header]) -> Result<Option<u64>, &'static str> {
    let mut declared = None;
    for field in fields {
        if quiche::h3::NameValue::name(field) != b"content-length" {
            continue;
        }
        let value = std::str::from_utf8(quiche::h3::NameValue::value(field))
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("bad content-length")?;
        if declared.replace(value).is_some_and(|seen| seen != value) {
            return Err("conflicting content-length fields");
        }
    }
    Ok(declared)
}

/// Hands waiting pieces to the body channel while it has room.
fn deliver(stream: &mut Stream) {
    let Some(sender) = &stream.body else {
        stream.waiting.clear();
        return;
    };
    while let Some(piece) = stream.waiting.pop_front() {
        let end = matches!(piece, Piece::End);
        match sender.try_send(piece) {
            // After the end there is nothing more to read.
            Ok(()) if end => {
                stream.body = None;
                stream.waiting.clear();
                return;
            }
            Ok(()) => {}
            Err(TrySendError::Full(piece)) => {
                stream.waiting.push_front(piece);
                return;
            }
            Err(TrySendError::Closed(_)) => {
                stream.body = None;
                stream.waiting.clear();
                return;
            }
        }
    }
}

/// Reads and drops body data nobody will read.
fn discard(conn: &mut quiche::Connection, h3: &mut h3::Connection, id: StreamId, buf: &mut [u8]) {
    while let Ok(len) = h3.recv_body(conn, id, buf) {
        if len == 0 {
            break;
        }
    }
}

/// Resets the stream if a handler task ends without finishing its response (it panicked).
struct AbortOnDrop {
    stream: StreamId,
    commands: mpsc::UnboundedSender<Command>,
    armed: bool,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::Abort {
                stream: self.stream,
            });
        }
    }
}
