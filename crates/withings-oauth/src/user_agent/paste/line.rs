//! Reading one bounded line of pasted text, from an async reader or from the process's standard
//! input (through one background thread for the whole process).

use std::io::{self, BufRead as _, Read as _, Write as _};
use std::sync::OnceLock;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
};
use tokio::sync::{Mutex, mpsc};

/// Longest line accepted. A redirect URL is well under 1 KiB; Withings caps callbacks at 255
/// characters plus the code and state.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// One line of input.
pub(crate) enum Line {
    Text(String),
    TooLong,
    NotUtf8,
    Eof,
}

/// One line read in bounded chunks (`read_until(b'\n')` through `take(limit)`): the first chunk is
/// the line, unless it overflows; then chunks are skipped up to the end of the line, so its tail
/// is not taken for the next input. Both standard input and async readers go through it.
#[derive(Default)]
pub(crate) struct LineRead {
    skipping: bool,
}

impl LineRead {
    /// The most bytes to read for the next chunk: one past the limit shows an overflow.
    fn limit(&self) -> u64 {
        MAX_LINE as u64 + u64::from(!self.skipping)
    }

    /// Takes the next chunk; returns the line once it is complete.
    fn feed(&mut self, mut chunk: Vec<u8>) -> Option<Line> {
        let ends = chunk.is_empty() || chunk.last() == Some(&b'\n');
        if self.skipping {
            return ends.then_some(Line::TooLong);
        }
        if chunk.is_empty() {
            return Some(Line::Eof);
        }
        if chunk.len() > MAX_LINE && !ends {
            self.skipping = true;
            return None;
        }
        if ends {
            chunk.pop();
        }
        Some(match String::from_utf8(chunk) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8,
        })
    }
}

pub(crate) enum Input {
    Reader(Box<dyn AsyncBufRead + Send + Unpin>),
    Stdin,
}

impl Input {
    pub(crate) async fn next_line(&mut self) -> io::Result<Line> {
        match self {
            Input::Reader(reader) => read_line_async(reader).await,
            Input::Stdin => stdin_line().await,
        }
    }
}

pub(crate) async fn read_line_async(
    reader: &mut (dyn AsyncBufRead + Send + Unpin),
) -> io::Result<Line> {
    let mut read = LineRead::default();
    loop {
        let mut chunk = Vec::new();
        (&mut *reader)
            .take(read.limit())
            .read_until(b'\n', &mut chunk)
            .await?;
        if let Some(line) = read.feed(chunk) {
            return Ok(line);
        }
    }
}

pub(crate) fn read_line_blocking(reader: &mut impl io::BufRead) -> io::Result<Line> {
    let mut read = LineRead::default();
    loop {
        let mut chunk = Vec::new();
        reader
            .by_ref()
            .take(read.limit())
            .read_until(b'\n', &mut chunk)?;
        if let Some(line) = read.feed(chunk) {
            return Ok(line);
        }
    }
}

/// The process's standard input, read by one thread for the whole process.
///
/// A blocking read of stdin can't be cancelled, and one running on the runtime's blocking pool
/// would hold up the runtime's shutdown until the user presses Enter. A plain thread, reading
/// only when asked, can be left blocked.
struct StdinReader {
    /// Asks the thread for one line.
    ask: std::sync::mpsc::Sender<()>,
    lines: Mutex<StdinLines>,
}

struct StdinLines {
    rx: mpsc::Receiver<io::Result<Line>>,
    /// A line was asked for and has not been received (its reader was dropped).
    outstanding: bool,
}

fn stdin_reader() -> &'static StdinReader {
    static READER: OnceLock<StdinReader> = OnceLock::new();
    READER.get_or_init(|| {
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel(1);
        // If the thread can't start, the senders are dropped and every read sees the error below.
        let _ = std::thread::Builder::new()
            .name("withings-oauth-stdin".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    let line = read_line_blocking(&mut io::stdin().lock());
                    let done = !matches!(line, Ok(Line::Text(_) | Line::TooLong | Line::NotUtf8));
                    if tx.blocking_send(line).is_err() || done {
                        break;
                    }
                }
            });
        StdinReader {
            ask,
            lines: Mutex::new(StdinLines {
                rx,
                outstanding: false,
            }),
        }
    })
}

async fn stdin_line() -> io::Result<Line> {
    let reader = stdin_reader();
    let mut lines = reader.lines.lock().await;
    if !lines.outstanding {
        if reader.ask.send(()).is_err() {
            return Ok(Line::Eof);
        }
        lines.outstanding = true;
    }
    let line = lines.rx.recv().await;
    lines.outstanding = false;
    line.unwrap_or(Ok(Line::Eof))
}

pub(crate) enum Output {
    Writer(Box<dyn AsyncWrite + Send + Unpin>),
    Stderr,
}

impl Output {
    pub(crate) async fn write(&mut self, text: &str) -> io::Result<()> {
        match self {
            Output::Writer(w) => {
                w.write_all(text.as_bytes()).await?;
                w.flush().await
            }
            Output::Stderr => {
                let mut err = io::stderr().lock();
                err.write_all(text.as_bytes())?;
                err.flush()
            }
        }
    }
}
