//! A node's TCP stream as russh sees it: buffered both ways, so that
//! a burst of packets costs one `recv` and the answers to it one `send`.
//!
//! russh reads a packet in several small reads and flushes after every
//! packet it handles. On loopback each `send` also runs the receiving
//! sshd's TCP work and wakes it, so sends are the client's largest cost.
//! [`Wire`] holds written bytes until the client would wait for input
//! anyway: a flush while read input is still buffered (the rest of the
//! same burst) is put off, and a read that finds nothing sends what is
//! held before it sleeps, after yielding once to the other ready tasks
//! (the node's task may be about to send more). The version line thus
//! leaves with the first key exchange packet, and NEWKEYS with the
//! service request.
//!
//! A read that sleeps with nothing to send acknowledges what came in at
//! once ([`Ack`]). The kernel would delay that ACK by 40 ms, hoping to
//! carry it on an answer, while sshd (Nagle on: it sets `TCP_NODELAY` only
//! for interactive sessions) holds its next small packet until the ACK
//! comes: the channel-open confirmation, which follows the host-key
//! announcement, waited those 40 ms on every connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once.
const READ_BUFFER: usize = 8 * 1024;

/// Held output past which a write goes out at once, whatever is buffered.
const HOLD_LIMIT: usize = 64 * 1024;

/// A socket that can acknowledge received data now instead of delaying it.
pub(super) trait Ack {
    fn ack_now(&self);
}

impl Ack for tokio::net::TcpStream {
    fn ack_now(&self) {
        // Best effort: a socket without the option only acks later.
        let _ = socket2::SockRef::from(self).set_tcp_quickack(true);
    }
}

/// A stream with a read buffer and held writes (see the module doc).
pub(super) struct Wire<S> {
    inner: S,
    rbuf: Box<[u8]>,
    rpos: usize,
    rlen: usize,
    held: Vec<u8>,
    sent: usize,
    /// A read found nothing and yielded once instead of sending `held`.
    yielded: bool,
    /// Data came in since the last send (which carried its ACK).
    unacked: bool,
}

impl<S> Wire<S> {
    pub(super) fn new(inner: S) -> Self {
        Wire {
            inner,
            rbuf: vec![0; READ_BUFFER].into_boxed_slice(),
            rpos: 0,
            rlen: 0,
            held: Vec::new(),
            sent: 0,
            yielded: false,
            unacked: false,
        }
    }

    fn input_buffered(&self) -> bool {
        self.rpos < self.rlen
    }
}

impl<S: AsyncWrite + Unpin> Wire<S> {
    /// Writes out what is held; Ready once all of it went.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        self.yielded = false;
        self.unacked = false;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Ack + Unpin> Wire<S> {
    /// The read is about to wait for the peer: what is held must go first,
    /// or the peer may be waiting for it; but the tasks already woken run
    /// first, once, and may add to it. With nothing to send, what came in
    /// is acknowledged now. Pending unless sending failed (a full socket
    /// also registers the task for writability).
    fn before_sleep(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if (self.unacked || !self.held.is_empty()) && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        if !self.held.is_empty() {
            ready!(self.poll_send_held(cx))?;
        } else if self.unacked {
            self.unacked = false;
            self.inner.ack_now();
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Ack + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.input_buffered() {
            let mut fill = ReadBuf::new(&mut this.rbuf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut fill) {
                Poll::Ready(r) => {
                    r?;
                    this.rpos = 0;
                    this.rlen = fill.filled().len();
                    this.unacked = true;
                }
                Poll::Pending => return this.before_sleep(cx),
            }
        }
        let n = (this.rlen - this.rpos).min(buf.remaining());
        buf.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
        this.rpos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Ack + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() >= HOLD_LIMIT {
            ready!(this.poll_send_held(cx))?;
        }
        this.held.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.input_buffered() {
            // The rest of the burst is still to be handled; its answers
            // leave with this one.
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::AsyncWriteExt;

    /// A socket with scripted arrivals that records each write call.
    #[derive(Default)]
    struct Script {
        arrivals: VecDeque<Vec<u8>>,
        sends: Vec<Vec<u8>>,
        acks: std::cell::Cell<usize>,
    }

    impl Ack for Script {
        fn ack_now(&self) {
            self.acks.set(self.acks.get() + 1);
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.arrivals.pop_front() {
                Some(a) => {
                    buf.put_slice(&a);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    impl AsyncWrite for Script {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.sends.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn wire(arrivals: &[&[u8]]) -> Wire<Script> {
        Wire::new(Script {
            arrivals: arrivals.iter().map(|a| a.to_vec()).collect(),
            ..Script::default()
        })
    }

    /// Polls a read once: Some(bytes) if it completed, None if it would wait.
    fn try_read(w: &mut Wire<Script>, n: usize) -> Option<Vec<u8>> {
        let mut out = vec![0; n];
        let mut buf = ReadBuf::new(&mut out);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(w).poll_read(&mut cx, &mut buf) {
            Poll::Ready(r) => {
                r.expect("read");
                let len = buf.filled().len();
                out.truncate(len);
                Some(out)
            }
            Poll::Pending => None,
        }
    }

    async fn send(w: &mut Wire<Script>, data: &[u8]) {
        w.write_all(data).await.expect("write");
        w.flush().await.expect("flush");
    }

    #[tokio::test]
    async fn answers_to_one_burst_leave_in_one_send() {
        let mut w = wire(&[b"AAAABBBB"]);
        assert_eq!(try_read(&mut w, 4).as_deref(), Some(&b"AAAA"[..]));
        send(&mut w, b"reply-a").await;
        assert!(w.inner.sends.is_empty(), "held while BBBB is unread");
        assert_eq!(try_read(&mut w, 4).as_deref(), Some(&b"BBBB"[..]));
        send(&mut w, b"reply-b").await;
        assert_eq!(w.inner.sends, vec![b"reply-areply-b".to_vec()]);
    }

    #[tokio::test]
    async fn a_write_without_flush_leaves_with_the_next_flush() {
        let mut w = wire(&[b"SSH-2.0-peer\r\n"]);
        w.write_all(b"SSH-2.0-us\r\n").await.expect("write");
        assert_eq!(
            try_read(&mut w, 64).as_deref(),
            Some(&b"SSH-2.0-peer\r\n"[..])
        );
        assert!(
            w.inner.sends.is_empty(),
            "input was there: nothing sent yet"
        );
        send(&mut w, b"KEXINIT").await;
        assert_eq!(w.inner.sends, vec![b"SSH-2.0-us\r\nKEXINIT".to_vec()]);
    }

    #[tokio::test]
    async fn held_bytes_go_out_before_a_read_waits() {
        let mut w = wire(&[b"AAAABBBB"]);
        assert_eq!(try_read(&mut w, 4).as_deref(), Some(&b"AAAA"[..]));
        send(&mut w, b"reply-a").await;
        assert_eq!(try_read(&mut w, 4).as_deref(), Some(&b"BBBB"[..]));
        // BBBB needed no answer: no flush. The next read has nothing to
        // read: it yields once, and then sends what is held before it waits.
        assert_eq!(try_read(&mut w, 4), None);
        assert!(w.inner.sends.is_empty(), "the first wait only yields");
        assert_eq!(try_read(&mut w, 4), None);
        assert_eq!(w.inner.sends, vec![b"reply-a".to_vec()]);
        assert_eq!(try_read(&mut w, 4), None);
        assert_eq!(w.inner.sends.len(), 1, "nothing more to send");
        assert_eq!(w.inner.acks.get(), 0, "the send carried the ACK");
    }

    #[tokio::test]
    async fn a_read_that_sleeps_with_nothing_to_send_acks_at_once() {
        let mut w = wire(&[b"announce"]);
        assert_eq!(try_read(&mut w, 64).as_deref(), Some(&b"announce"[..]));
        assert_eq!(try_read(&mut w, 4), None, "yields first");
        assert_eq!(w.inner.acks.get(), 0, "the node's task may still answer");
        assert_eq!(try_read(&mut w, 4), None);
        assert_eq!(w.inner.acks.get(), 1);
        assert_eq!(try_read(&mut w, 4), None);
        assert_eq!(try_read(&mut w, 4), None);
        assert_eq!(w.inner.acks.get(), 1, "nothing new came in");
        assert!(w.inner.sends.is_empty());
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_held_and_a_large_hold_goes_out() {
        let mut w = wire(&[b"AAAABBBB"]);
        try_read(&mut w, 4);
        let big = vec![7u8; HOLD_LIMIT];
        w.write_all(&big).await.expect("write");
        w.write_all(b"x").await.expect("write");
        assert_eq!(w.inner.sends, vec![big], "past the limit it went out");
        w.shutdown().await.expect("shutdown");
        assert_eq!(w.inner.sends.last().map(Vec::as_slice), Some(&b"x"[..]));
    }
}
