//! A pull of the router image as the user sees it: per-layer lines redrawn
//! on a terminal, one line otherwise, log records under `watch`; and the
//! pull's failure as one line.

use bollard::errors::Error as BollardError;

use super::error::DockerError;

/// A pull's error as one line: "no such image or tag" or the daemon's words.
pub(super) fn pull_error(image: &str, e: BollardError) -> DockerError {
    let message = match &e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => return DockerError::NoImage(image.into()),
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    if is_not_found(&message) {
        return DockerError::NoImage(image.into());
    }
    DockerError::Pull {
        image: image.into(),
        detail: one_line(&message),
    }
}

/// The registry's and daemon's ways of saying "no such repository or tag".
fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "manifest unknown",
        "name unknown",
        "not found",
        "does not exist",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a pull shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullDisplay {
    /// A status line per layer, redrawn in place on stderr (a terminal).
    Terminal,
    /// One line on stderr when the pull starts.
    Line,
    /// Log records only (`watch`).
    Log,
}

impl PullDisplay {
    /// [`PullDisplay::Terminal`] when stderr is a terminal, else [`PullDisplay::Line`].
    pub fn for_stderr() -> PullDisplay {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            PullDisplay::Terminal
        } else {
            PullDisplay::Line
        }
    }
}

/// The per-layer status lines of a pull on a terminal.
pub(super) struct PullProgress {
    show: PullDisplay,
    /// (layer id or "", text), in the order they first appeared.
    lines: Vec<(String, String)>,
    /// Lines drawn so far (the cursor is below them).
    drawn: usize,
}

impl PullProgress {
    pub(super) fn new(image: &str, show: PullDisplay) -> Self {
        match show {
            PullDisplay::Terminal | PullDisplay::Line => {
                eprintln!("pulling router image {image}")
            }
            PullDisplay::Log => tracing::info!(%image, "pulling the router image"),
        }
        PullProgress {
            show,
            lines: Vec::new(),
            drawn: 0,
        }
    }

    pub(super) fn update(&mut self, info: &bollard::models::CreateImageInfo) {
        if self.show != PullDisplay::Terminal {
            return;
        }
        let out = self.redraw(info);
        if !out.is_empty() {
            use std::io::Write;
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(out.as_bytes());
            let _ = e.flush();
        }
    }

    /// Takes in one progress record; returns what redraws the block of lines
    /// (cursor up over the lines drawn before, each line cleared and written).
    fn redraw(&mut self, info: &bollard::models::CreateImageInfo) -> String {
        let Some(text) = progress_text(info) else {
            return String::new();
        };
        let id = info.id.clone().unwrap_or_default();
        match self
            .lines
            .iter_mut()
            .find(|(i, _)| !id.is_empty() && *i == id)
        {
            Some(line) => line.1 = text,
            None => self.lines.push((id, text)),
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for (id, text) in &self.lines {
            out.push_str("\r\x1b[2K");
            if !id.is_empty() {
                out.push_str(id);
                out.push_str(": ");
            }
            out.push_str(text);
            out.push('\n');
        }
        self.drawn = self.lines.len();
        out
    }
}

/// "Downloading 1.2/3.4 MB" from a pull's progress record.
fn progress_text(info: &bollard::models::CreateImageInfo) -> Option<String> {
    let status = info.status.as_deref()?.trim();
    if status.is_empty() {
        return None;
    }
    let detail = info.progress_detail.as_ref();
    match (detail.and_then(|d| d.current), detail.and_then(|d| d.total)) {
        (Some(cur), Some(total)) if total > 0 => Some(format!(
            "{status} {:.1}/{:.1} MB",
            cur as f64 / 1e6,
            total as f64 / 1e6
        )),
        _ => Some(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bollard::models::{CreateImageInfo, ProgressDetail};

    fn info(id: Option<&str>, status: &str, cur_total: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: id.map(str::to_string),
            status: Some(status.into()),
            progress_detail: cur_total.map(|(c, t)| ProgressDetail {
                current: Some(c),
                total: Some(t),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn terminal_progress_redraws_one_line_per_layer() {
        let mut p = PullProgress {
            show: PullDisplay::Terminal,
            lines: Vec::new(),
            drawn: 0,
        };
        assert_eq!(
            p.redraw(&info(Some("0.1.0"), "Pulling from r", None)),
            "\r\x1b[2K0.1.0: Pulling from r\n"
        );
        p.redraw(&info(Some("aaa"), "Pulling fs layer", None));
        let out = p.redraw(&info(
            Some("aaa"),
            "Downloading",
            Some((1_050_000, 2_100_000)),
        ));
        assert_eq!(
            out,
            "\x1b[2A\r\x1b[2K0.1.0: Pulling from r\n\r\x1b[2Kaaa: Downloading 1.1/2.1 MB\n"
        );
        p.redraw(&info(Some("bbb"), "Pull complete", None));
        let out = p.redraw(&info(None, "Digest: sha256:00", None));
        assert!(out.starts_with("\x1b[3A"), "{out:?}");
        assert!(out.ends_with("\r\x1b[2KDigest: sha256:00\n"), "{out:?}");
        assert_eq!(p.lines.len(), 4);
        // Records without a status draw nothing.
        assert_eq!(p.redraw(&CreateImageInfo::default()), "");
    }

    #[test]
    fn pull_errors() {
        let e = pull_error(
            "r:x",
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "manifest for r:x not found: manifest unknown".into(),
            },
        );
        assert!(
            matches!(e, DockerError::NoImage(ref i) if i == "r:x"),
            "{e:?}"
        );
        let e = pull_error(
            "r:x",
            BollardError::DockerStreamError {
                error: "pull access denied for r, repository does not exist or may require 'docker login'".into(),
            },
        );
        assert!(matches!(e, DockerError::NoImage(_)), "{e:?}");
        let e = pull_error(
            "127.0.0.1:1/r:x",
            BollardError::DockerResponseServerError {
                status_code: 500,
                message: "Get \"http://127.0.0.1:1/v2/\":\n dial tcp 127.0.0.1:1: connect: connection refused".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "cannot pull router image 127.0.0.1:1/r:x: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert!(e.hint().unwrap().contains("reachable"));
        let e = pull_error(
            "reg.example/r:x",
            BollardError::DockerStreamError {
                error: "unauthorized: authentication required".into(),
            },
        );
        assert!(e.hint().unwrap().contains("docker login"), "{e:?}");
    }
}
