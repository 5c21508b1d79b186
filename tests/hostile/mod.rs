//! A hostile cloud endpoint for tests: a raw HTTP/1.1 server on loopback that answers with what
//! a tenant's endpoint might send (redirects, huge bodies, endless pages, fake throttling), and
//! records what reached it (requests, AccessKeyIds, bytes it managed to write).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `x-acs-action`.
    pub fn action(&self) -> &str {
        self.header("x-acs-action").unwrap_or("")
    }

    /// The AccessKeyId in `Authorization: ACS3-HMAC-SHA256 Credential=<id>,...`.
    pub fn access_key_id(&self) -> Option<String> {
        let authorization = self.header("authorization")?;
        let rest = authorization.split("Credential=").nth(1)?;
        Some(rest.split(',').next()?.to_string())
    }
}

/// What to answer; `Stream` writes a chunked body of `total` bytes (or until the peer goes), one
/// 64 KiB chunk per `pace`: paced, the peer keeps up, so what was written when it hung up is
/// about what it read (unpaced, 8 MB fit in loopback's socket buffers, read or not).
pub enum Answer {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Stream {
        status: u16,
        total: usize,
        pace: std::time::Duration,
    },
}

impl Answer {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Answer::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn redirect(location: &str) -> Self {
        Answer::Full {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }

    /// The throttling answer CloudSSO sends (and the emulator imitates): HTTP 400,
    /// `Throttling.User`.
    pub fn throttling() -> Self {
        Answer::json(
            400,
            serde_json::json!({"Code": "Throttling.User", "Message": "Request was denied due to user flow control.", "RequestId": "hostile"}),
        )
    }
}

/// What a server recorded.
#[derive(Debug, Default)]
pub struct Record {
    pub connections: usize,
    pub requests: Vec<Seen>,
    /// Body bytes of `Stream` answers written before the peer closed or the body ended.
    pub streamed: usize,
    /// Whether a `Stream` answer was written to its end.
    pub stream_finished: bool,
    /// Whether a `Stream` answer is over, written to its end or cut by the peer.
    pub stream_ended: bool,
}

#[derive(Clone)]
pub struct Hostile {
    pub url: String,
    pub record: Arc<Mutex<Record>>,
}

impl Hostile {
    pub fn connections(&self) -> usize {
        self.record.lock().unwrap().connections
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.record.lock().unwrap().requests.clone()
    }

    /// Once the streamed answer is over (within 10 s): the bytes written and whether all were.
    pub async fn streamed(&self) -> (usize, bool) {
        for _ in 0..100 {
            {
                let record = self.record.lock().unwrap();
                if record.stream_ended {
                    return (record.streamed, record.stream_finished);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the streamed answer did not end in 10 s");
    }
}

/// Starts a server on 127.0.0.1 that answers every request with `answer(index, request)`.
pub async fn serve<F>(answer: F) -> Hostile
where
    F: Fn(usize, &Seen) -> Answer + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let record = Arc::new(Mutex::new(Record::default()));
    let answer = Arc::new(answer);
    let kept = record.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            kept.lock().unwrap().connections += 1;
            // Without it, Nagle and delayed ACKs cost 40 ms an answer.
            let _ = stream.set_nodelay(true);
            tokio::spawn(connection(stream, kept.clone(), answer.clone()));
        }
    });
    Hostile { url, record }
}

/// Serves one keep-alive connection until the peer closes it or a streamed answer ends it.
async fn connection<F>(stream: TcpStream, record: Arc<Mutex<Record>>, answer: Arc<F>)
where
    F: Fn(usize, &Seen) -> Answer + Send + Sync + 'static,
{
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let seen = Seen {
            request_line: request_line.trim_end().to_string(),
            headers,
        };
        let length: usize = seen
            .header("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let index = {
            let mut record = record.lock().unwrap();
            record.requests.push(seen.clone());
            record.requests.len() - 1
        };
        match answer(index, &seen) {
            Answer::Full {
                status,
                headers,
                body,
            } => {
                let mut head = format!("HTTP/1.1 {status} Hostile\r\n");
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let answer = [head.as_bytes(), &body].concat();
                if stream.get_mut().write_all(&answer).await.is_err() {
                    return;
                }
            }
            Answer::Stream {
                status,
                total,
                pace,
            } => {
                let finished = stream_body(stream.get_mut(), status, total, pace, &record).await;
                let mut record = record.lock().unwrap();
                record.stream_finished = finished;
                record.stream_ended = true;
                return;
            }
        }
    }
}

/// A chunked JSON error body of `total` bytes in 64 KiB chunks, counting what was written;
/// whether all of it was.
async fn stream_body(
    out: &mut TcpStream,
    status: u16,
    total: usize,
    pace: std::time::Duration,
    record: &Mutex<Record>,
) -> bool {
    let head = format!(
        "HTTP/1.1 {status} Hostile\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    if out.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let opening = br#"{"Code":"Throttling.User","Message":""#;
    let mut written = 0;
    while written < total {
        let size = (total - written).min(64 << 10);
        let mut chunk: Vec<u8> = if written == 0 {
            opening.to_vec()
        } else {
            Vec::new()
        };
        // Control bytes in the message, to see them stripped wherever a prefix is shown.
        chunk.extend(
            b"\x1b[31mA\r\n"
                .iter()
                .copied()
                .cycle()
                .take(size - chunk.len()),
        );
        let framed = [format!("{size:x}\r\n").as_bytes(), &chunk, b"\r\n"].concat();
        if out.write_all(&framed).await.is_err() || out.flush().await.is_err() {
            return false;
        }
        written += size;
        record.lock().unwrap().streamed = written;
        tokio::time::sleep(pace).await;
    }
    out.write_all(b"0\r\n\r\n").await.is_ok()
}
