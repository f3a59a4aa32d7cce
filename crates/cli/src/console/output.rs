//! Everything the console prints while the user may be typing.
//!
//! At the prompt, only the line editor may touch the terminal. Its external
//! printer clears the prompt line, writes a message, and draws the prompt
//! and the half-typed line again below it. Live progress bars go through it
//! as one message per refresh: the message first moves the cursor up over
//! the bars drawn last time and clears them, so the bars stay in place above
//! the prompt while the user types. Announcements (a download done or
//! failed) are written once, above the bars. Between prompts (while a
//! command prints its own output) nothing is drawn; announcements wait for
//! the next prompt.
//!
//! This was chosen over a progress-bar library drawing on its own because
//! two writers that each believe they own the cursor garble the line being
//! typed; here the editor stays the only writer at the prompt, so typing,
//! history and completion keep working during downloads (the pty tests type
//! commands while bars are drawn). One limit remains: if Enter is pressed
//! in the same instant as a refresh is queued, that refresh is drawn after
//! the command's output and may overwrite a line of it.

use super::results::bytes;
use crate::escape::escape;
use rustyline::ExternalPrinter;
use rutella_node::{Client, DownloadId, DownloadInfo, DownloadState, NodeEvent};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time between two refreshes of the bars.
const REFRESH: Duration = Duration::from_millis(400);
/// Widest line drawn when the terminal's width is unknown (no line may
/// wrap, or moving up over the bars would miss some).
const WIDTH: usize = 79;

/// Columns of the terminal on standard output, less one.
fn term_width() -> usize {
    #[cfg(unix)]
    {
        let mut ws = std::mem::MaybeUninit::<libc::winsize>::zeroed();
        // SAFETY: TIOCGWINSZ fills a winsize; it is read only on success.
        let ok =
            unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, ws.as_mut_ptr()) } == 0;
        if ok {
            // SAFETY: zero-initialised and written by a successful ioctl.
            let cols = unsafe { ws.assume_init() }.ws_col as usize;
            if cols >= 20 {
                return cols - 1;
            }
        }
    }
    WIDTH
}
/// Most announcements kept while no prompt is shown.
const MAX_PENDING: usize = 256;

/// An announcement not yet printed.
struct Pending {
    /// The download it is about, if one.
    about: Option<DownloadId>,
    line: String,
}

#[derive(Default)]
struct State {
    /// The prompt is shown (the line editor owns the terminal).
    at_prompt: bool,
    /// Lines of bars drawn right above the current prompt.
    bar_lines: usize,
    /// Announcements not yet printed.
    pending: Vec<Pending>,
    /// Since when the bars are gone but no announcement replaced them.
    orphan_since: Option<Instant>,
    /// The library was still hashing at the last refresh.
    hashing: bool,
}

/// Most downloads whose source is remembered as the user typed it.
const MAX_TYPED: usize = 1024;

/// Shared between the console loop and the printing thread.
#[derive(Clone)]
pub(crate) struct Output {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    /// Whether peers joining and uploads are announced.
    notices: Arc<AtomicBool>,
    /// Downloads of `get IP NAME`: the source's TCP address, and the
    /// address as the user typed it.
    typed: Arc<Mutex<HashMap<DownloadId, (SocketAddr, String)>>>,
}

/// `text` with the TCP address `tcp` of a source named as the user typed
/// it: `peer 10.0.0.5 (TCP port 6346) refused the connection`.
pub(crate) fn as_typed(text: &str, tcp: SocketAddr, typed: &str) -> String {
    text.replace(
        &tcp.to_string(),
        &format!("{typed} (TCP port {})", tcp.port()),
    )
}

impl Output {
    /// Starts the printing thread. `printer` is `None` when the terminal
    /// cannot print above the prompt (not a terminal): then announcements
    /// go to standard output between commands and no bars are drawn.
    pub(crate) fn start(
        client: Client,
        printer: Option<Box<dyn ExternalPrinter + Send>>,
        rt: &tokio::runtime::Handle,
        notices: bool,
    ) -> (Output, std::thread::JoinHandle<()>) {
        let out = Output {
            state: Arc::new(Mutex::new(State::default())),
            stop: Arc::new(AtomicBool::new(false)),
            notices: Arc::new(AtomicBool::new(notices)),
            typed: Arc::new(Mutex::new(HashMap::new())),
        };
        // Node events become announcements.
        let mut events = client.subscribe();
        let o = out.clone();
        rt.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(NodeEvent::DownloadDone { name, path, .. }) => o.announce(format!(
                        "✓ Downloaded {} to {}",
                        escape(&name),
                        crate::escape::path(&path)
                    )),
                    Ok(NodeEvent::DownloadFailed { id, name, reason }) => o.announce_about(
                        id,
                        format!(
                            "✗ {} failed: {}",
                            escape(&name),
                            escape(&super::friendly_reason(&reason))
                        ),
                    ),
                    Ok(NodeEvent::PeerAdded(p)) if o.notices() => {
                        o.announce(format!("+ Peer {} joined.", super::results::peer_name(&p)))
                    }
                    Ok(NodeEvent::UploadStarted { peer, name }) if o.notices() => o.announce(
                        format!("↑ {} is downloading {} from you.", peer.ip(), escape(&name)),
                    ),
                    Ok(NodeEvent::UploadEnded {
                        peer,
                        name,
                        bytes: n,
                    }) if o.notices() => o.announce(format!(
                        "↑ {} stopped downloading {} ({} sent).",
                        peer.ip(),
                        escape(&name),
                        bytes(n)
                    )),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        });
        // The reachability verdict, as it stands (it may have come while
        // the console started) and at every change.
        let mut reach = client.reachability();
        let o = out.clone();
        rt.spawn(async move {
            loop {
                let v = *reach.borrow_and_update();
                if v != rutella_node::Reachability::Unknown {
                    o.announce(crate::reach::line(v));
                }
                if reach.changed().await.is_err() {
                    break;
                }
            }
        });
        let o = out.clone();
        let thread = std::thread::spawn(move || o.run(client, printer));
        (out, thread)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether peers joining and uploads are announced.
    pub(crate) fn notices(&self) -> bool {
        self.notices.load(Ordering::Relaxed)
    }

    /// Turns the announcements of peers joining and uploads on or off.
    pub(crate) fn set_notices(&self, on: bool) {
        self.notices.store(on, Ordering::Relaxed);
    }

    /// Download `id` comes from the source at `tcp`, which the user typed
    /// as `typed`: what is said of it names it so.
    pub(crate) fn remember_typed(&self, id: DownloadId, tcp: SocketAddr, typed: &str) {
        let mut t = self.typed.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() >= MAX_TYPED {
            t.clear();
        }
        t.insert(id, (tcp, typed.to_string()));
    }

    /// `text` about download `id`, its source named as the user typed it
    /// (see [`Output::remember_typed`]).
    pub(crate) fn in_typed_words(&self, id: DownloadId, text: &str) -> String {
        let t = self.typed.lock().unwrap_or_else(|e| e.into_inner());
        match t.get(&id) {
            Some((tcp, typed)) => as_typed(text, *tcp, typed),
            None => text.to_string(),
        }
    }

    /// Queues a line about download `id` to print once.
    fn announce_about(&self, id: DownloadId, line: String) {
        let mut s = self.lock();
        if s.pending.len() < MAX_PENDING {
            s.pending.push(Pending {
                about: Some(id),
                line,
            });
        }
    }

    /// Queues a line to print once.
    pub(crate) fn announce(&self, line: String) {
        let mut s = self.lock();
        if s.pending.len() < MAX_PENDING {
            s.pending.push(Pending { about: None, line });
        }
    }

    /// The line editor is about to show the prompt.
    pub(crate) fn enter_prompt(&self) {
        let mut s = self.lock();
        s.at_prompt = true;
        // Bars drawn above an earlier prompt are part of the history now.
        s.bar_lines = 0;
        s.orphan_since = None;
    }

    /// The user pressed Enter: a command prints now.
    pub(crate) fn leave_prompt(&self) {
        self.lock().at_prompt = false;
    }

    /// Announcements waiting, for printing between commands.
    pub(crate) fn take_pending(&self) -> Vec<String> {
        let pending = std::mem::take(&mut self.lock().pending);
        pending.into_iter().map(|p| self.words(p)).collect()
    }

    /// A pending line as printed now: a download's source as the user
    /// typed it (known once its `get` printed its answer, which comes
    /// before any announcement is printed).
    fn words(&self, p: Pending) -> String {
        match p.about {
            Some(id) => self.in_typed_words(id, &p.line),
            None => p.line,
        }
    }

    /// Stops the printing thread.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn run(self, client: Client, mut printer: Option<Box<dyn ExternalPrinter + Send>>) {
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(REFRESH);
            let mut s = self.lock();
            if !s.at_prompt {
                continue;
            }
            let Some(p) = printer.as_mut() else {
                // No way to print above the prompt: announcements wait
                // for the next command (see take_pending).
                continue;
            };
            let mut bars: Vec<String> = client
                .downloads()
                .iter()
                .filter(|d| d.state == DownloadState::Running)
                .map(|d| bar(d, term_width().min(100)))
                .collect();
            // First-time hashing of the shared files runs in the background.
            let hashing = client.library().progress();
            if hashing.files_hashed < hashing.files_total {
                bars.push(hashing_line(&hashing));
                s.hashing = true;
            } else if std::mem::take(&mut s.hashing) {
                s.pending.push(Pending {
                    about: None,
                    line: format!(
                        "Hashed the {} shared file(s): hits now carry their hashes.",
                        hashing.files_total
                    ),
                });
            }
            if s.pending.is_empty() && bars.is_empty() {
                // A download ended: its announcement is on its way; leave
                // the last bars until it comes (or a little while).
                if s.bar_lines > 0 {
                    let since = *s.orphan_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(2) {
                        s.bar_lines = 0;
                    }
                }
                continue;
            }
            s.orphan_since = None;
            let mut msg = String::new();
            if s.bar_lines > 0 {
                msg.push_str(&format!("\x1b[{}A\r\x1b[J", s.bar_lines));
            }
            let pending: Vec<Pending> = s.pending.drain(..).collect();
            for p in pending {
                msg.push_str(&self.words(p));
                msg.push('\n');
            }
            msg.push_str(&bars.join("\n"));
            if bars.is_empty() {
                // The editor adds the final newline.
                msg.pop();
            }
            s.bar_lines = bars.len();
            if p.print(msg).is_err() {
                printer = None;
            }
        }
    }
}

/// The line that shows how far first-time hashing of the shares is.
pub(crate) fn hashing_line(p: &rutella_store::HashProgress) -> String {
    use crate::console::results::bytes;
    format!(
        "# hashing shared files: {}/{} files, {}/{}",
        p.files_hashed,
        p.files_total,
        bytes(p.bytes_hashed),
        bytes(p.bytes_total)
    )
}

/// Prints announcements that waited, between commands.
pub(crate) fn flush_pending(out: &Output) {
    let lines = out.take_pending();
    if !lines.is_empty() {
        let mut o = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(o, "{l}");
        }
        let _ = o.flush();
    }
}

/// Percent, speed and time left of a download, for bars and the table.
pub(crate) struct Figures {
    pub(crate) percent: Option<f64>,
    pub(crate) speed: f64,
    pub(crate) eta: Option<Duration>,
}

pub(crate) fn figures(d: &DownloadInfo) -> Figures {
    let speed = d.speed();
    let percent = d.total.map(|t| {
        if t == 0 {
            100.0
        } else {
            d.done as f64 * 100.0 / t as f64
        }
    });
    let eta = match d.total {
        Some(t) if speed > 1.0 && t >= d.done => {
            Some(Duration::from_secs_f64((t - d.done) as f64 / speed))
        }
        _ => None,
    };
    Figures {
        percent,
        speed,
        eta,
    }
}

/// `0s`, `42s`, `3m05s`, `2h07m`, or `-` when unknown.
pub(crate) fn eta_text(eta: Option<Duration>) -> String {
    let Some(e) = eta else {
        return "-".into();
    };
    let s = e.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `↓ name  [#####-----]  45%  1.2 MiB/3.0 MiB  800 KiB/s  ETA 2 seconds`
pub(crate) fn bar(d: &DownloadInfo, width: usize) -> String {
    let f = figures(d);
    const CELLS: usize = 12;
    let filled = f
        .percent
        .map(|p| ((p / 100.0) * CELLS as f64).round() as usize)
        .unwrap_or(0)
        .min(CELLS);
    let cells: String = "#".repeat(filled) + &"-".repeat(CELLS - filled);
    let pct = f
        .percent
        .map(|p| format!("{p:>3.0}%"))
        .unwrap_or_else(|| "  ?%".into());
    let amount = match d.total {
        Some(t) => format!("{}/{}", bytes(d.done), bytes(t)),
        None => bytes(d.done),
    };
    let tail = format!(
        " [{cells}] {pct} {amount} {}/s ETA {}",
        bytes(f.speed as u64),
        eta_text(f.eta)
    );
    let room = width.saturating_sub(tail.chars().count() + 2).max(8);
    let line = format!("↓ {}{tail}", fit(&escape(&d.name), room));
    // Very narrow terminals: cut the line rather than let it wrap.
    line.chars().take(width.max(1)).collect()
}

/// Cuts a name to `room` characters, keeping its end (the extension).
pub(crate) fn fit(name: &str, room: usize) -> String {
    let n = name.chars().count();
    if n <= room {
        return format!("{name:<room$}");
    }
    let keep: String = name.chars().skip(n - (room - 1)).collect();
    format!("…{keep}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(done: u64, total: Option<u64>) -> DownloadInfo {
        DownloadInfo {
            id: 1,
            name: "a rather long file name that goes on and on and on.mp4".into(),
            sources: vec![],
            paths: vec![],
            state: DownloadState::Running,
            done,
            received: done,
            total,
            started: Instant::now() - Duration::from_secs(2),
            network: "rutella",
            failure: None,
            report: None,
        }
    }

    #[test]
    fn bars_fit_the_terminal_and_show_figures() {
        let l = bar(&info(1 << 20, Some(4 << 20)), WIDTH);
        assert!(l.chars().count() <= WIDTH, "{l}");
        for w in [10, 40, 60, 200] {
            assert!(bar(&info(5, Some(9)), w).chars().count() <= w, "{w}");
        }
        assert!(l.contains(" 25%"), "{l}");
        assert!(l.contains("[###---------]"), "{l}");
        assert!(l.contains("on.mp4"), "{l}");
        assert!(l.contains("ETA 6s"), "{l}");
        let l = bar(&info(0, None), WIDTH);
        assert!(l.contains("?%") && l.contains("ETA -"), "{l}");
    }

    #[test]
    fn hashing_progress_line() {
        let p = rutella_store::HashProgress {
            files_total: 10,
            files_hashed: 4,
            bytes_total: 3 << 20,
            bytes_hashed: 1 << 20,
        };
        let line = hashing_line(&p);
        assert!(line.contains("4/10 files"), "{line}");
        assert!(line.contains("1.0 MiB/3.0 MiB"), "{line}");
    }

    #[test]
    fn eta_is_short() {
        assert_eq!(eta_text(None), "-");
        assert_eq!(eta_text(Some(Duration::from_millis(300))), "0s");
        assert_eq!(eta_text(Some(Duration::from_secs(185))), "3m05s");
        assert_eq!(eta_text(Some(Duration::from_secs(7620))), "2h07m");
    }

    #[test]
    fn fit_keeps_the_end() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdefgh.ogg", 8), "…fgh.ogg");
    }
}
