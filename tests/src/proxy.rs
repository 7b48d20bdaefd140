//! A TCP proxy for replication tests: it counts the bytes that cross it, delays them like a
//! long link, and cuts every connection on demand.
//!
//! Each direction of a connection is a reader thread and a writer thread joined by a queue of
//! timestamped buffers: the reader never waits for the delay, the writer waits until each
//! buffer is due. So a delay adds latency without capping throughput at one buffer per delay,
//! and a pipelined sender can fill a fast link across a long round trip, as it would across a
//! real one. How much a direction holds in flight is capped (`MAX_IN_FLIGHT`) so a receiver
//! that stops reading pushes back on the sender instead of growing the proxy's memory.
//!
//! Counters count bytes delivered (written to the far side), so after a peer has seen EOF
//! they equal what it was sent.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Large reads keep a fast sender's data in few queue entries.
const READ_BUF: usize = 256 * 1024;
/// Per direction of a connection; the bandwidth-delay product of a 2 Gbit/s link at 250 ms.
const MAX_IN_FLIGHT: usize = 64 * 1024 * 1024;
/// How long `Drop` may wait for the accept loop to notice it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyOptions {
    /// Added to every byte in each direction, so a round trip gains twice this.
    pub delay_each_way: Duration,
}

/// A proxy listening on 127.0.0.1; dropping it closes the listener and every connection and
/// waits for its threads.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    delay: Duration,
    stop: AtomicBool,
    up: AtomicU64,
    down: AtomicU64,
    accepted: AtomicU64,
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    /// Weak, so a link whose threads have all ended closes its sockets on its own.
    live: Vec<Weak<Link>>,
    threads: Vec<JoinHandle<()>>,
}

/// One proxied connection: the accepted client socket and the socket to upstream.
struct Link {
    client: TcpStream,
    upstream: TcpStream,
}

impl Link {
    /// Shutting down (rather than dropping) reaches the threads blocked on these sockets:
    /// their reads return EOF and their writes fail, so they end and drop the link.
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

impl Proxy {
    /// Listens on 127.0.0.1 on a free port; each accepted connection is joined to a new
    /// connection to `upstream` (a client whose upstream connection fails is closed).
    pub fn start(upstream: SocketAddr, opts: ProxyOptions) -> io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        // Non-blocking with a short poll, so `Drop` can stop the loop without a wake-up trick.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            upstream,
            delay: opts.delay_each_way,
            stop: AtomicBool::new(false),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            links: Mutex::new(Links::default()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("proxy-accept".into())
                .spawn(move || shared.accept_loop(listener))?
        };
        Ok(Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes delivered from clients to upstream since start or the last `reset_counts`.
    pub fn bytes_up(&self) -> u64 {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// Bytes delivered from upstream to clients since start or the last `reset_counts`.
    pub fn bytes_down(&self) -> u64 {
        self.shared.down.load(Ordering::Relaxed)
    }

    /// Buffers already in flight are counted when delivered, after the reset.
    pub fn reset_counts(&self) {
        self.shared.up.store(0, Ordering::Relaxed);
        self.shared.down.store(0, Ordering::Relaxed);
    }

    /// Closes every connection accepted so far, dropping data still in flight; peers see EOF
    /// (std cannot send a reset) or a failed write. The proxy keeps accepting.
    pub fn cut_all(&self) {
        for link in self.shared.lock_links().live.drain(..) {
            if let Some(link) = link.upgrade() {
                link.cut();
            }
        }
    }

    /// Connections accepted since start, including those whose upstream connection failed.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // The acceptor first: once it has ended no link can appear after the cut below.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
        let threads = std::mem::take(&mut self.shared.lock_links().threads);
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock_links(&self) -> MutexGuard<'_, Links> {
        // A panicking pump thread leaves the lists intact; keep using them.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        while !self.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((client, _)) => {
                    self.accepted.fetch_add(1, Ordering::Relaxed);
                    // A connection that cannot be set up is closed; its client sees EOF.
                    let _ = self.open_link(client);
                }
                // WouldBlock, and also transient failures such as running out of descriptors:
                // the loop must outlive them.
                Err(_) => thread::sleep(ACCEPT_POLL),
            }
        }
    }

    fn open_link(self: &Arc<Self>, client: TcpStream) -> io::Result<()> {
        // Accepted sockets must block: the pumps rely on blocking reads and writes.
        client.set_nonblocking(false)?;
        client.set_nodelay(true)?;
        let upstream = TcpStream::connect_timeout(&self.upstream, CONNECT_TIMEOUT)?;
        upstream.set_nodelay(true)?;
        let link = Arc::new(Link { client, upstream });

        let mut links = self.lock_links();
        links.live.retain(|l| l.strong_count() > 0);
        links.threads.retain(|t| !t.is_finished());
        links.live.push(Arc::downgrade(&link));
        for dir in [Direction::Up, Direction::Down] {
            if let Err(e) = self.spawn_pump(&link, dir, &mut links.threads) {
                link.cut();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts the reader and the writer of one direction of `link`.
    fn spawn_pump(
        self: &Arc<Self>,
        link: &Arc<Link>,
        dir: Direction,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<()> {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let budget = Arc::new(Budget::new(MAX_IN_FLIGHT));
        let name = match dir {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        let reader = {
            let (link, budget, delay) = (Arc::clone(link), Arc::clone(&budget), self.delay);
            thread::Builder::new()
                .name(format!("proxy-{name}-read"))
                .spawn(move || read_side(&link, dir, delay, &budget, &tx))?
        };
        threads.push(reader);
        let writer = {
            let (link, shared) = (Arc::clone(link), Arc::clone(self));
            thread::Builder::new()
                .name(format!("proxy-{name}-write"))
                .spawn(move || {
                    let counter = match dir {
                        Direction::Up => &shared.up,
                        Direction::Down => &shared.down,
                    };
                    write_side(&link, dir, &budget, &rx, counter);
                })
        };
        // On failure the reader may be blocked on its socket: the caller's cut ends it.
        threads.push(writer?);
        Ok(())
    }
}

fn ends(link: &Link, dir: Direction) -> (&TcpStream, &TcpStream) {
    match dir {
        Direction::Up => (&link.client, &link.upstream),
        Direction::Down => (&link.upstream, &link.client),
    }
}

fn read_side(
    link: &Link,
    dir: Direction,
    delay: Duration,
    budget: &Budget,
    tx: &mpsc::Sender<(Instant, Vec<u8>)>,
) {
    let (mut src, _) = ends(link, dir);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match src.read(&mut buf) {
            // EOF: dropping the sender lets the writer finish the queue and pass the EOF on.
            Ok(0) => return,
            Ok(n) => {
                let due = Instant::now() + delay;
                if !budget.take(n) || tx.send((due, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset on one side becomes a cut of the whole link, not a tidy EOF.
            Err(_) => {
                link.cut();
                return;
            }
        }
    }
}

fn write_side(
    link: &Link,
    dir: Direction,
    budget: &Budget,
    rx: &mpsc::Receiver<(Instant, Vec<u8>)>,
    counter: &AtomicU64,
) {
    let (_, mut dst) = ends(link, dir);
    for (due, bytes) in rx {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        if dst.write_all(&bytes).is_err() {
            link.cut();
            budget.close();
            return;
        }
        counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        budget.give(bytes.len());
    }
    // The source ended cleanly: half-close so the far side sees EOF while the other
    // direction keeps flowing (an echo server answers the rest, then closes).
    let _ = dst.shutdown(Shutdown::Write);
}

/// Bytes a direction holds between read and delivery.
struct Budget {
    limit: usize,
    state: Mutex<BudgetState>,
    freed: Condvar,
}

struct BudgetState {
    used: usize,
    closed: bool,
}

impl Budget {
    fn new(limit: usize) -> Budget {
        Budget {
            limit,
            state: Mutex::new(BudgetState {
                used: 0,
                closed: false,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `n` more bytes fit (an empty budget always admits one buffer, whatever its
    /// size); false once the writer has given up.
    fn take(&self, n: usize) -> bool {
        let mut s = self.lock();
        while !s.closed && s.used > 0 && s.used + n > self.limit {
            s = self.freed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.closed {
            return false;
        }
        s.used += n;
        true
    }

    fn give(&self, n: usize) {
        self.lock().used -= n;
        self.freed.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes each connection until the client half-closes, then closes. The listener thread
    /// outlives the test; it only blocks in accept.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = io::copy(&mut &stream, &mut &stream);
                    let _ = stream.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn connect(proxy: &Proxy) -> TcpStream {
        let s = TcpStream::connect(proxy.addr()).expect("connect to proxy");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        s
    }

    /// Sends `data` from a second thread (so the echo cannot deadlock on full buffers),
    /// half-closes, and reads everything back until EOF.
    fn echo_all(stream: &TcpStream, data: &[u8], write_size: usize) -> Vec<u8> {
        thread::scope(|s| {
            s.spawn(|| {
                let mut w = stream;
                for piece in data.chunks(write_size) {
                    w.write_all(piece).expect("write");
                }
                stream.shutdown(Shutdown::Write).expect("half-close");
            });
            let mut back = Vec::with_capacity(data.len());
            let mut r = stream;
            r.read_to_end(&mut back).expect("read back");
            back
        })
    }

    /// Reads (and discards anything already delivered) until EOF or an error; false when the
    /// read timeout passes first.
    fn sees_the_cut(stream: &TcpStream) -> bool {
        let mut r = stream;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_are_counted() {
        let proxy = Proxy::start(echo_server(), ProxyOptions::default()).expect("start");
        let data = pattern(3 * 1024 * 1024 + 17);
        let back = echo_all(&connect(&proxy), &data, 100_000);
        assert!(back == data, "echo differs ({} bytes back)", back.len());
        // EOF reached the client after the last delivery was counted.
        assert_eq!(proxy.bytes_up(), data.len() as u64);
        assert_eq!(proxy.bytes_down(), data.len() as u64);

        proxy.reset_counts();
        assert_eq!((proxy.bytes_up(), proxy.bytes_down()), (0, 0));
        let back = echo_all(&connect(&proxy), b"again", 5);
        assert_eq!(back, b"again");
        assert_eq!((proxy.bytes_up(), proxy.bytes_down()), (5, 5));
        assert_eq!(proxy.connections(), 2);
    }

    #[test]
    fn a_round_trip_takes_twice_the_delay() {
        let delay = Duration::from_millis(100);
        let opts = ProxyOptions {
            delay_each_way: delay,
        };
        let proxy = Proxy::start(echo_server(), opts).expect("start");
        let mut s = connect(&proxy);
        for _ in 0..2 {
            let start = Instant::now();
            s.write_all(b"?").expect("write");
            let mut one = [0u8; 1];
            s.read_exact(&mut one).expect("read");
            let took = start.elapsed();
            assert!(took >= 2 * delay, "round trip took {took:?}");
        }
    }

    #[test]
    fn pipelined_writes_are_not_serialised_by_the_delay() {
        let delay = Duration::from_millis(100);
        let opts = ProxyOptions {
            delay_each_way: delay,
        };
        let proxy = Proxy::start(echo_server(), opts).expect("start");
        let data = pattern(20 * 1024 * 1024);
        let start = Instant::now();
        let back = echo_all(&connect(&proxy), &data, 1024 * 1024);
        let took = start.elapsed();
        assert!(back == data, "echo differs ({} bytes back)", back.len());
        assert!(took >= 2 * delay, "took {took:?}");
        assert!(took < 10 * 2 * delay, "20 pipelined writes took {took:?}");
    }

    #[test]
    fn cut_all_closes_current_connections_and_new_ones_work() {
        let proxy = Proxy::start(echo_server(), ProxyOptions::default()).expect("start");
        let mut old = connect(&proxy);
        old.write_all(b"ping").expect("write");
        let mut buf = [0u8; 4];
        old.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"ping");

        proxy.cut_all();
        assert!(sees_the_cut(&old), "client did not see the cut");

        let back = echo_all(&connect(&proxy), b"after the cut", 4);
        assert_eq!(back, b"after the cut");
        assert_eq!(proxy.connections(), 2);
    }

    #[test]
    fn cut_all_drops_data_in_flight() {
        let opts = ProxyOptions {
            delay_each_way: Duration::from_millis(300),
        };
        let proxy = Proxy::start(echo_server(), opts).expect("start");
        let mut s = connect(&proxy);
        s.write_all(b"lost").expect("write");
        thread::sleep(Duration::from_millis(50));
        proxy.cut_all();
        assert!(sees_the_cut(&s), "client did not see the cut");
        thread::sleep(Duration::from_millis(400));
        assert_eq!(proxy.bytes_up(), 0);
    }

    #[test]
    fn dropping_the_proxy_closes_its_connections() {
        let opts = ProxyOptions {
            delay_each_way: Duration::from_millis(200),
        };
        let proxy = Proxy::start(echo_server(), opts).expect("start");
        let mut s = connect(&proxy);
        // Data queued behind the delay, and more than the client will ever read.
        s.write_all(&pattern(4 * 1024 * 1024)).expect("write");
        let start = Instant::now();
        drop(proxy);
        assert!(start.elapsed() < Duration::from_secs(5), "drop took long");
        assert!(sees_the_cut(&s), "client did not see the close");
    }

    #[test]
    fn unreachable_upstream_closes_the_client() {
        let gone = {
            let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy = Proxy::start(gone, ProxyOptions::default()).expect("start");
        let s = connect(&proxy);
        assert!(sees_the_cut(&s), "client was not closed");
        assert_eq!(proxy.connections(), 1);
    }
}
