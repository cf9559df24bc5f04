//! A tiny HTTP/1.1 server on loopback for gate and http-step tests: every
//! request gets the same canned response. Stops when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct CannedServer {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// The head (request line and headers) of every request received.
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CannedServer {
    /// Serves `status` with `headers` and `body` on 127.0.0.1:random.
    pub fn start(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Self::start_after(Duration::ZERO, status, headers, body)
    }

    /// Like [`start`](Self::start), but the port only accepts after `delay`.
    pub fn start_after(delay: Duration, status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind test HTTP server");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let mut response = format!(
            "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(body);
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, hits2, requests2) = (stop.clone(), hits.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let listener = TcpListener::bind(addr).expect("bind test HTTP server");
            listener.set_nonblocking(true).expect("nonblocking");
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 8192];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        hits2.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut r) = requests2.lock() {
                            r.push(String::from_utf8_lossy(&got).into_owned());
                        }
                        let _ = s.write_all(response.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CannedServer {
            addr,
            hits,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
