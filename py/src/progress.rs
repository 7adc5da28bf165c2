//! Progress bars of `raynode.experimental.tqdm_ray`, drawn by the driver.
//!
//! A task's bar reaches the driver as a line of the task's stdout: the
//! mark [`raynode_proto::PROGRESS_MARK`] and the bar's state (see
//! [`BarState::parse`]). The driver keeps one bar per task bar, labelled
//! with the worker that sent it. On a terminal the live bars stay below
//! the other output: they are erased, the lines printed, and the bars
//! drawn again. Elsewhere (a pipe, a file) each update is one plain line.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Width of the bar itself, in characters.
const BAR_WIDTH: usize = 24;

/// One bar as its task last reported it.
#[derive(Debug, PartialEq)]
pub struct BarState {
    pub id: String,
    pub n: u64,
    pub total: Option<u64>,
    pub closed: bool,
    pub unit: String,
    pub desc: String,
}

impl BarState {
    /// Reads `id \t n \t total \t closed \t unit \t desc` (total empty when
    /// unknown, closed 0 or 1). `None` for anything else.
    pub fn parse(text: &str) -> Option<BarState> {
        let mut fields = text.splitn(6, '\t');
        let id = fields.next()?.to_string();
        let n = fields.next()?.parse().ok()?;
        let total = match fields.next()? {
            "" => None,
            t => Some(t.parse().ok()?),
        };
        let closed = fields.next()? == "1";
        let unit = fields.next()?.to_string();
        let desc = fields.next()?.to_string();
        Some(BarState {
            id,
            n,
            total,
            closed,
            unit,
            desc,
        })
    }

    /// The bar as one line: `desc: 40%|█████     | 4/10 it`.
    fn render(&self, source: &str) -> String {
        let label = if self.desc.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.desc)
        };
        let unit = if self.unit.is_empty() {
            "it"
        } else {
            &self.unit
        };
        match self.total {
            Some(total) if total > 0 => {
                let done = self.n.min(total);
                let filled = (done as usize * BAR_WIDTH) / total as usize;
                format!(
                    "({source}) {label}{:3}%|{}{}| {}/{} {unit}",
                    done * 100 / total,
                    "█".repeat(filled),
                    " ".repeat(BAR_WIDTH - filled),
                    self.n,
                    total
                )
            }
            _ => format!("({source}) {label}{} {unit}", self.n),
        }
    }
}

#[derive(Default)]
struct Board {
    /// Live bars by (source, id), in the order they came.
    live: BTreeMap<(u64, String), (String, BarState)>,
    next: u64,
    order: BTreeMap<(String, String), u64>,
    /// Lines of bars on the terminal now, below the other output.
    drawn: usize,
}

static BOARD: Mutex<Option<Board>> = Mutex::new(None);

/// Prints `lines` of ordinary output from `source` and applies the bar
/// updates among them (the lines that start with the progress mark).
/// A closed stdout or stderr loses the lines, nothing else.
pub fn print(source: &str, lines: &[String], stderr: bool) {
    let tty = std::io::stdout().is_terminal();
    let mut guard = BOARD.lock().unwrap_or_else(|e| e.into_inner());
    let board = guard.get_or_insert_with(Board::default);
    let mut bars = String::new();
    let mut plain = String::new();
    let mut changed = false;
    for line in lines {
        match line.strip_prefix(raynode_proto::PROGRESS_MARK) {
            Some(state) => {
                let Some(state) = BarState::parse(state) else {
                    continue;
                };
                if !tty {
                    bars.push_str(&state.render(source));
                    bars.push('\n');
                }
                board.update(source, state);
                changed = true;
            }
            None => {
                plain.push_str(&format!("({source}) {line}\n"));
            }
        }
    }
    if !tty || (!changed && board.drawn == 0) {
        write_out(&bars, false);
        write_out(&plain, stderr);
        if !tty {
            board.live.retain(|_, (_, s)| !s.closed);
        }
        return;
    }
    // On a terminal: erase the bars, print the lines, draw the bars again.
    let mut text = format!("\x1b[{}A\x1b[J", board.drawn);
    if board.drawn == 0 {
        text.clear();
    }
    if stderr {
        write_out(&text, false);
        write_out(&plain, true);
        text.clear();
    } else {
        text.push_str(&plain);
    }
    board.drawn = 0;
    for (source, state) in board.live.values() {
        text.push_str(&state.render(source));
        text.push('\n');
        board.drawn += 1;
    }
    board.prune();
    write_out(&text, false);
}

fn write_out(text: &str, stderr: bool) {
    if text.is_empty() {
        return;
    }
    let _ = if stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
}

impl Board {
    fn update(&mut self, source: &str, state: BarState) {
        let key = (source.to_string(), state.id.clone());
        let next = &mut self.next;
        let seq = *self.order.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        });
        self.live
            .insert((seq, state.id.clone()), (source.to_string(), state));
    }

    /// Forgets closed bars once drawn for the last time: they stay above
    /// the live ones as ordinary lines.
    fn prune(&mut self) {
        let closed: Vec<_> = self
            .live
            .iter()
            .take_while(|(_, (_, s))| s.closed)
            .map(|(k, _)| k.clone())
            .collect();
        for key in closed {
            if let Some((source, state)) = self.live.remove(&key) {
                self.order.remove(&(source, state.id));
                self.drawn -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_line_round_trips_and_renders() {
        let s = BarState::parse("ab12\t4\t10\t0\tfiles\tcopying\twith a tab").expect("a bar state");
        assert_eq!(s.n, 4);
        assert_eq!(s.total, Some(10));
        assert_eq!(s.desc, "copying\twith a tab");
        let line = s.render("f pid=1, ip=127.0.0.1");
        assert!(line.starts_with("(f pid=1, ip=127.0.0.1) copying\twith a tab:  40%|"));
        assert!(line.ends_with("| 4/10 files"));
    }

    #[test]
    fn a_bar_without_total_counts_only() {
        let s = BarState::parse("x\t7\t\t1\t\t").expect("a bar state");
        assert!(s.closed);
        assert_eq!(
            s.render("g pid=2, ip=1.2.3.4"),
            "(g pid=2, ip=1.2.3.4) 7 it"
        );
    }

    #[test]
    fn garbage_is_no_state() {
        assert_eq!(BarState::parse("x\tmany\t\t0\t\t"), None);
        assert_eq!(BarState::parse("x\t1"), None);
    }
}
