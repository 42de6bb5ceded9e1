//! A tiny HTTP/1.1 server on 127.0.0.1 for the tests of the `http` tool and `chat` model
//! providers: real sockets, real HTTP, one thread per connection, every request recorded.
//! It answers as its handler says (JSON, any status, a delay, no answer at all, a dropped
//! connection), closes each connection after one exchange, and stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the server does with a request.
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, String),
    /// Any status, headers and body.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Waits, then replies.
    Delay(Duration, Box<Reply>),
    /// Never answers (until the server stops, or 30 s).
    Hang,
    /// Closes the connection without a word.
    Close,
}

/// The longest a connection is kept open, whatever the handler says.
const MAX_HANG: Duration = Duration::from_secs(30);

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on a free port of 127.0.0.1 answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, stop, handler) =
                        (requests.clone(), stop.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &requests, &stop, &*handler));
                }
            })
        };
        Server {
            addr,
            requests,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    /// Waits until the server has received a request, at most 30 s.
    pub fn wait_for_a_request(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.requests().is_empty() {
            assert!(Instant::now() < until, "timed out waiting for a request");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops accepting; hanging connections are let go.
    pub fn stop(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Request>>, stop: &AtomicBool, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    requests.lock().expect("requests").push(request.clone());
    let mut reply = handler(&request);
    let started = Instant::now();
    loop {
        match reply {
            Reply::Delay(wait, next) => {
                sleep_unless(stop, wait, started);
                reply = *next;
            }
            Reply::Hang => {
                sleep_unless(stop, MAX_HANG, started);
                return;
            }
            Reply::Close => return,
            Reply::Json(status, body) => {
                let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
                write_reply(stream, status, &headers, body.as_bytes());
                return;
            }
            Reply::Raw {
                status,
                headers,
                body,
            } => {
                write_reply(stream, status, &headers, &body);
                return;
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, wait: Duration, started: Instant) {
    let until = Instant::now() + wait;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_HANG {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

/// A reply header that makes the server leave out `Content-Length` (the body then ends
/// where the connection does), so a client cannot know its size in advance.
pub const NO_LENGTH: &str = "X-Test-No-Length";

fn write_reply(mut stream: TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status} Status\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n == NO_LENGTH) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers.iter().filter(|(n, _)| n != NO_LENGTH) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}
