//! Names that arrive from the network are never logged raw: a classic
//! request whose name is not UTF-8 and holds a newline and an escape
//! sequence is logged quoted, with those characters escaped, so it cannot
//! forge a log line or drive the terminal that shows the log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{quick_cfg, MapSource};
use rutella_transfer::{serve_connection, ServeOutcome};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_non_utf8_classic_name_is_logged_escaped() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    // Not UTF-8 (0xff), with a newline that would start a forged log line
    // and an escape sequence that would set the terminal's title.
    let mut request = 0u32.to_le_bytes().to_vec();
    request.extend_from_slice(
        b"a\xff\nINFO forged: download complete\x1b]0;owned\x07\r\x1b[2J".as_slice(),
    );
    c.write_all(&request).await.unwrap();
    let report = serve_connection(s, Arc::new(MapSource::default()), Arc::new(quick_cfg()))
        .await
        .unwrap();
    assert_eq!(report.outcome, ServeOutcome::InvalidName);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("not UTF-8"))
        .unwrap_or_else(|| panic!("no warning logged: {log:?}"));
    assert!(line.contains(r"\nINFO forged"), "{line}");
    assert!(line.contains(r"\u{1b}]0;owned\u{7}\r\u{1b}[2J"), "{line}");
    assert!(!log.lines().any(|l| l.starts_with("INFO forged")), "{log}");
    assert!(
        !log.bytes().any(|b| b == 0x1b || b == 0x07 || b == b'\r'),
        "raw control bytes in the log: {log:?}"
    );
}
