//! Mail delivery: a small blocking SMTP client (RFC 5321) with STARTTLS (RFC 3207) and AUTH
//! PLAIN/LOGIN (RFC 4954), enough to hand one message to a relay.
//!
//! Hand-written rather than a mail library: sending one plain-text message to a configured
//! relay is a dozen lines of protocol, and the appliance keeps its dependencies few.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rustls::pki_types::ServerName;

use crate::target::sanitize_remote;
use crate::{Appliance, DeliveryError, Notification, NotifyError, Secret, SmtpConfig, Target};

/// Longest reply line accepted; RFC 5321 allows 512 bytes.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one (multi-line) reply.
const MAX_REPLY_LINES: usize = 128;

/// Sends each notification as a plain-text mail (see [`subject`](crate::mail::subject) and
/// [`body`](crate::mail::body)) through one relay.
///
/// Replies decide: 4xx is retried, 5xx refuses this notification for good (an unknown
/// recipient, a rejected message or login). Connection, TLS and timeout errors, and a server
/// that does not offer STARTTLS or a usable AUTH when they are needed, are retried: they are
/// the relay's state, not the notification's. One refused recipient fails the whole mail, so
/// a retry never mails the others twice.
pub struct SmtpTarget {
    name: String,
    host: String,
    port: u16,
    from: String,
    to: Vec<String>,
    helo: String,
    login: Option<(String, Secret)>,
    /// `Some` when STARTTLS is required.
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("starttls", &self.tls.is_some())
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl SmtpTarget {
    /// Builds the target, reading the password and CA files now so that a wrong path shows at
    /// start-up. The EHLO name defaults to the appliance's host name.
    pub fn from_config(
        config: &SmtpConfig,
        appliance: &Appliance,
    ) -> Result<SmtpTarget, NotifyError> {
        config.validate()?;
        let context = config.context();
        let login = match (&config.user, &config.password_file) {
            (Some(user), Some(path)) => Some((user.clone(), Secret::from_file(path, &context)?)),
            _ => None,
        };
        let tls = if config.starttls {
            let cas = config
                .ca_file
                .as_deref()
                .map(|path| crate::trust::load_ca_file(path, &context))
                .transpose()?;
            Some(crate::trust::client_config(
                cas.as_deref(),
                &context,
                config.ca_file.as_deref(),
            )?)
        } else {
            None
        };
        let helo = config
            .helo
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| helo_name(appliance.name()));
        Ok(SmtpTarget {
            name: config.name.clone(),
            host: config.host.clone(),
            port: config.port,
            from: config.from.clone(),
            to: config.to.clone(),
            helo,
            login,
            tls,
            timeout: Duration::from_secs(config.timeout_secs),
        })
    }

    fn send(&self, notification: &Notification) -> Result<(), DeliveryError> {
        let mut session = Session::connect(self)?;
        session.exchange("greeting", None, 220)?;
        let mut features = session.ehlo()?;
        if let Some(tls) = &self.tls {
            if !features.has("STARTTLS") {
                return Err(self.retryable(
                    "the server does not offer STARTTLS, which this target requires".into(),
                ));
            }
            session.exchange("STARTTLS", Some("STARTTLS"), 220)?;
            session.start_tls(tls)?;
            features = session.ehlo()?;
        }
        if let Some((user, password)) = &self.login {
            session.login(&features, user, password)?;
        }
        session.exchange(
            "MAIL FROM",
            Some(&format!("MAIL FROM:<{}>", self.from)),
            250,
        )?;
        for to in &self.to {
            session.exchange("RCPT TO", Some(&format!("RCPT TO:<{to}>")), 250)?;
        }
        session.exchange("DATA", Some("DATA"), 354)?;
        let message = crate::mail::message(notification, &self.from, &self.to);
        session.write_data(&message)?;
        session.exchange("end of DATA", None, 250)?;
        // The mail is accepted; a failing QUIT changes nothing.
        let _ = session.exchange("QUIT", Some("QUIT"), 221);
        Ok(())
    }

    fn retryable(&self, reason: String) -> DeliveryError {
        DeliveryError::retryable(self.describe(), reason)
    }
}

impl Target for SmtpTarget {
    fn describe(&self) -> String {
        format!("smtp {} ({}:{})", self.name, self.host, self.port)
    }

    fn deliver(&mut self, notification: &Notification) -> Result<(), DeliveryError> {
        self.send(notification)
    }
}

/// A host name usable in EHLO: the appliance's name if it is one, else `localhost`.
fn helo_name(name: &str) -> String {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        name.to_owned()
    } else {
        "localhost".into()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn io_error(target: &SmtpTarget, step: &str, e: io::Error) -> DeliveryError {
    let what = if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        format!("timed out after {:?}", target.timeout)
    } else {
        e.to_string()
    };
    target.retryable(format!("{step}: {what}"))
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        sanitize_remote(&self.lines.join(" / "), 300)
    }
}

/// The EHLO keywords the server offered, upper-case, with their parameters.
struct Features(Vec<String>);

impl Features {
    fn has(&self, keyword: &str) -> bool {
        self.0
            .iter()
            .any(|l| l.split_whitespace().next() == Some(keyword))
    }

    fn auth_offers(&self, mechanism: &str) -> bool {
        self.0.iter().any(|l| {
            let mut words = l.split_whitespace();
            matches!(words.next(), Some("AUTH") | Some("AUTH=")) && words.any(|w| w == mechanism)
        })
    }
}

struct Session<'a> {
    target: &'a SmtpTarget,
    stream: Option<Stream>,
    /// Bytes read past the last reply line.
    pending: Vec<u8>,
}

impl<'a> Session<'a> {
    fn connect(target: &'a SmtpTarget) -> Result<Session<'a>, DeliveryError> {
        let addrs = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| target.retryable(format!("cannot resolve the host: {e}")))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, target.timeout) {
                Ok(tcp) => {
                    let setup = tcp
                        .set_read_timeout(Some(target.timeout))
                        .and_then(|()| tcp.set_write_timeout(Some(target.timeout)));
                    if let Err(e) = setup {
                        last = Some(e);
                        continue;
                    }
                    return Ok(Session {
                        target,
                        stream: Some(Stream::Plain(tcp)),
                        pending: Vec::new(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(target.retryable(match last {
            Some(e) => format!("cannot connect: {e}"),
            None => "the host name resolves to no address".into(),
        }))
    }

    fn stream(&mut self) -> Result<&mut Stream, DeliveryError> {
        self.stream.as_mut().ok_or_else(|| {
            self.target
                .retryable("connection lost during STARTTLS".into())
        })
    }

    fn send_line(&mut self, step: &str, line: &str) -> Result<(), DeliveryError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write_all(step, &bytes)
    }

    fn write_all(&mut self, step: &str, bytes: &[u8]) -> Result<(), DeliveryError> {
        let target = self.target;
        let Some(stream) = self.stream.as_mut() else {
            return Err(target.retryable("connection lost during STARTTLS".into()));
        };
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| io_error(target, step, e))
    }

    fn read_line(&mut self, step: &str) -> Result<String, DeliveryError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.pending.len() > MAX_REPLY_LINE {
                return Err(self.target.retryable(format!(
                    "{step}: reply line longer than {MAX_REPLY_LINE} bytes"
                )));
            }
            let mut buf = [0u8; 1024];
            let n = self
                .stream()?
                .read(&mut buf)
                .map_err(|e| io_error(self.target, step, e))?;
            if n == 0 {
                return Err(self
                    .target
                    .retryable(format!("{step}: the server closed the connection")));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    fn read_reply(&mut self, step: &str) -> Result<Reply, DeliveryError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(step)?;
            let code = line
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(self.target.retryable(format!(
                    "{step}: not an SMTP reply: {}",
                    sanitize_remote(&line, 100)
                )));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(self.target.retryable(format!(
                    "{step}: reply of more than {MAX_REPLY_LINES} lines"
                )));
            }
        }
    }

    /// Sends `command` (if any) and requires the reply `code`; 4xx is retryable, 5xx
    /// permanent, anything else a protocol error (retryable).
    fn exchange(
        &mut self,
        step: &str,
        command: Option<&str>,
        code: u16,
    ) -> Result<Reply, DeliveryError> {
        if let Some(command) = command {
            self.send_line(step, command)?;
        }
        let reply = self.read_reply(step)?;
        self.check(step, reply, code)
    }

    fn check(&self, step: &str, reply: Reply, code: u16) -> Result<Reply, DeliveryError> {
        if reply.code == code {
            return Ok(reply);
        }
        let reason = format!("{step}: the server replied {} {}", reply.code, reply.text());
        if (500..600).contains(&reply.code) {
            Err(DeliveryError::permanent(self.target.describe(), reason))
        } else {
            Err(self.target.retryable(reason))
        }
    }

    fn ehlo(&mut self) -> Result<Features, DeliveryError> {
        let command = format!("EHLO {}", self.target.helo);
        let reply = self.exchange("EHLO", Some(&command), 250)?;
        Ok(Features(
            reply
                .lines
                .iter()
                .skip(1)
                .map(|l| l.to_ascii_uppercase())
                .collect(),
        ))
    }

    fn start_tls(&mut self, config: &Arc<rustls::ClientConfig>) -> Result<(), DeliveryError> {
        if !self.pending.is_empty() {
            // Bytes sent before the handshake would be read as if they came over TLS
            // (CVE-2011-0411 and kin): refuse.
            return Err(self
                .target
                .retryable("STARTTLS: the server sent data before the TLS handshake".into()));
        }
        let name = ServerName::try_from(self.target.host.clone()).map_err(|_| {
            self.target
                .retryable("STARTTLS: the host is not a valid TLS server name".into())
        })?;
        let connection = rustls::ClientConnection::new(config.clone(), name)
            .map_err(|e| self.target.retryable(format!("STARTTLS: {e}")))?;
        let tcp = match self.stream.take() {
            Some(Stream::Plain(tcp)) => tcp,
            _ => {
                return Err(self
                    .target
                    .retryable("STARTTLS: the connection is already encrypted".into()))
            }
        };
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        // Handshake now, so that a certificate problem is reported as such.
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(self.target.retryable(format!("TLS handshake: {e}")));
            }
        }
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    fn login(
        &mut self,
        features: &Features,
        user: &str,
        password: &Secret,
    ) -> Result<(), DeliveryError> {
        if features.auth_offers("PLAIN") {
            let token = BASE64.encode(format!("\0{user}\0{}", password.expose()));
            // The step name, not the command, goes into errors: the command holds the password.
            self.send_line("AUTH PLAIN", &format!("AUTH PLAIN {token}"))?;
            let reply = self.read_reply("AUTH PLAIN")?;
            self.check("AUTH PLAIN", reply, 235)?;
            return Ok(());
        }
        if features.auth_offers("LOGIN") {
            self.exchange("AUTH LOGIN", Some("AUTH LOGIN"), 334)?;
            self.exchange("AUTH LOGIN user", Some(&BASE64.encode(user)), 334)?;
            self.send_line("AUTH LOGIN password", &BASE64.encode(password.expose()))?;
            let reply = self.read_reply("AUTH LOGIN password")?;
            self.check("AUTH LOGIN password", reply, 235)?;
            return Ok(());
        }
        Err(self.target.retryable(
            "the server offers neither AUTH PLAIN nor AUTH LOGIN, and this target logs in".into(),
        ))
    }

    /// Sends the message with dot-stuffing and the terminating `.` line.
    fn write_data(&mut self, message: &[u8]) -> Result<(), DeliveryError> {
        let mut data = Vec::with_capacity(message.len() + 64);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.write_all("DATA", &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_matched_by_keyword() {
        let f = Features(vec![
            "PIPELINING".into(),
            "AUTH LOGIN PLAIN".into(),
            "STARTTLS".into(),
        ]);
        assert!(f.has("STARTTLS"));
        assert!(!f.has("SMTPUTF8"));
        assert!(f.auth_offers("PLAIN"));
        assert!(f.auth_offers("LOGIN"));
        assert!(!f.auth_offers("CRAM-MD5"));
    }

    #[test]
    fn helo_falls_back_when_the_name_is_not_a_host_name() {
        assert_eq!(helo_name("site-appliance-7"), "site-appliance-7");
        assert_eq!(helo_name("Site Appliance"), "localhost");
    }
}
