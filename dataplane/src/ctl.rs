//! `tern ctl`: a unix socket (mode 0600) where each connection sends one request line
//! (the words after `tern ctl`, JSON-encoded) and reads one JSON answer:
//! `{"ok": VALUE}` or `{"error": "message"}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::control_msg::ControlMsg;

pub fn ask(control: &SyncSender<ControlMsg>, words: Vec<String>) -> Result<Value, String> {
    let (tx, rx) = mpsc::channel();
    control
        .send(ControlMsg::Ctl { words, reply: tx })
        .map_err(|_| "the control plane has stopped".to_string())?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the control plane did not answer".to_string())?
}

pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Server {
    /// Serves `path`; BGP requests (`show bgp …`, `bgp …`) go to BGP, `show fpm` to the
    /// FPM listener, the rest to the control plane.
    pub fn start(
        path: &Path,
        control: SyncSender<ControlMsg>,
        planes: Planes,
    ) -> Result<Server, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use: is another tern running?",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // A blocking accept: the thread costs nothing while nobody asks; `stop` wakes it
        // with a connection of its own. Each connection is served on its own thread
        // (`serve`: bounded in number, size and time).
        let slots = crate::serve::Slots::default();
        let thread = std::thread::Builder::new()
            .name("tern-ctl".into())
            .spawn(move || loop {
                match listener.accept() {
                    _ if flag.load(Ordering::Relaxed) => break,
                    Ok((stream, _)) => {
                        let (control, planes) = (control.clone(), planes.clone());
                        crate::serve::spawn_or_refuse(
                            &slots,
                            "tern-ctl-conn",
                            stream,
                            move |s| serve(s, &control, &planes),
                            |s| {
                                answer(
                                    &s,
                                    &json!({ "error": "too many ctl connections; try again" }),
                                )
                            },
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread,
        })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if UnixStream::connect(&self.path).is_ok() {
            let _ = self.thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(mut stream: UnixStream, control: &SyncSender<ControlMsg>, planes: &Planes) {
    use crate::serve::{read_request, Request, MAX_REQUEST, REQUEST_DEADLINE, WRITE_TIMEOUT};
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reply = match read_request(&mut stream, b"\n") {
        Request::Complete(line) => match serde_json::from_slice::<Vec<String>>(&line) {
            Ok(words) if words.first().is_some_and(|w| w == "capture") => {
                use crate::capture::stream;
                let started = stream::Request::parse(&words[1..], &planes.port_names)
                    .and_then(|r| stream::serve(&stream, &planes.captures, r));
                match started {
                    Ok(()) => return,
                    Err(e) => json!({ "error": e }),
                }
            }
            Ok(words) => {
                let routes = crate::listing::route_listing(&words);
                let sessions = crate::nat_mailbox::session_listing(&words);
                match (routes, sessions, bgp_listing(&words)) {
                    (Some(Ok(query)), ..) => return stream_routes(&stream, control, &query),
                    (_, Some(Ok(query)), _) if planes.nat.is_some() => {
                        return stream_sessions(&stream, planes, &query)
                    }
                    (Some(Err(e)), ..) | (_, Some(Err(e)), _) => json!({ "error": e }),
                    (_, _, Some(filters)) if planes.bgp.is_some() => {
                        return stream_bgp_routes(&stream, planes, filters)
                    }
                    _ => match route(control, planes, words) {
                        Ok(v) => json!({ "ok": v }),
                        Err(e) => json!({ "error": e }),
                    },
                }
            }
            Err(e) => json!({ "error": format!("bad request: {e}") }),
        },
        Request::TooLarge => {
            let e = json!({ "error": format!("request longer than {MAX_REQUEST} bytes") });
            answer(&stream, &e);
            return crate::serve::linger(&mut stream);
        }
        Request::TimedOut => json!({
            "error": format!("request not complete within {} s", REQUEST_DEADLINE.as_secs())
        }),
        Request::Closed => return,
    };
    answer(&stream, &reply);
}

/// Writes a listing page by page (listing.rs has the format): `pages` hands each page's
/// rows to the writer, which says whether the client still reads, and returns what the
/// last line carries. Stops when the client stops reading.
fn stream_listing(
    stream: &UnixStream,
    kind: &str,
    pages: impl FnOnce(&mut dyn FnMut(Vec<Value>) -> bool) -> Result<Value, String>,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stream);
    if writeln!(out, "{}", json!({ "stream": kind })).is_err() {
        return;
    }
    let mut emit = |rows: Vec<Value>| {
        rows.iter()
            .try_for_each(|row| writeln!(out, "{}", json!({ "row": row })))
            .and_then(|()| out.flush())
            .is_ok()
    };
    let last = match pages(&mut emit) {
        Ok(end) => json!({ "end": end }),
        Err(e) => json!({ "error": e }),
    };
    let _ = writeln!(out, "{last}");
    let _ = out.flush();
}

/// `show routes …`, streamed from the control plane's pages.
fn stream_routes(
    stream: &UnixStream,
    control: &SyncSender<ControlMsg>,
    query: &crate::listing::RouteQuery,
) {
    stream_listing(stream, "routes", |emit| {
        let count = crate::listing::each_page(control, query, emit)?;
        let fib = ask(control, vec!["show".into(), "fib".into()]).unwrap_or(Value::Null);
        Ok(json!({ "count": count, "fib": fib }))
    });
}

/// The filters of a whole-table `show bgp routes [ipv4|ipv6] [peer P]` (not one prefix).
fn bgp_listing(words: &[String]) -> Option<&[String]> {
    match words {
        [show, bgp, routes, filters @ ..]
            if show == "show" && bgp == "bgp" && routes == "routes" =>
        {
            let whole = filters
                .first()
                .is_none_or(|w| matches!(w.as_str(), "ipv4" | "ipv6" | "peer"));
            whole.then_some(filters)
        }
        _ => None,
    }
}

/// `show conntrack …`, streamed from the workers' shards; the last line has each
/// shard's counters.
fn stream_sessions(stream: &UnixStream, planes: &Planes, query: &crate::nat_mailbox::SessionQuery) {
    let Some(shards) = &planes.nat else { return };
    stream_listing(stream, "sessions", |emit| {
        let count = shards.each_page(query, emit)?;
        Ok(json!({ "count": count, "shards": shards.summaries()? }))
    });
}

/// `show bgp routes …`, streamed from the BGP speaker's pages.
fn stream_bgp_routes(stream: &UnixStream, planes: &Planes, filters: &[String]) {
    let Some(bgp) = &planes.bgp else { return };
    stream_listing(stream, "routes", |emit| {
        let mut after = "-".to_string();
        let mut count = 0u64;
        loop {
            let mut words: Vec<String> =
                ["show", "bgp", "routes", "page"].map(String::from).to_vec();
            words.push(after.clone());
            words.extend_from_slice(filters);
            let page = bgp.ctl(&words)?;
            let rows = match page["routes"].as_array() {
                Some(rows) => rows.clone(),
                None => Vec::new(),
            };
            count += rows.len() as u64;
            if !emit(rows) {
                break;
            }
            match page["next"].as_str() {
                Some(next) => after = next.to_string(),
                None => break,
            }
        }
        Ok(json!({ "count": count }))
    });
}

/// Writes one answer line.
fn answer(stream: &UnixStream, v: &Value) {
    let mut w = stream;
    let _ = writeln!(w, "{v}");
}

/// The route feeds that answer their own ctl requests.
#[derive(Clone, Default)]
pub struct Planes {
    pub bgp: Option<Arc<bgp_glue::Bgp>>,
    pub fpm: Option<Arc<bgp_glue::fpm::Fpm>>,
    /// The NAT shards, which stream `show conntrack` straight from the workers.
    pub nat: Option<crate::nat_mailbox::Shards>,
    /// Packet captures and the packet trace, and the port names a request gives.
    pub captures: Arc<crate::capture::Captures>,
    pub tracer: Arc<crate::trace::Tracer>,
    pub port_names: Arc<[String]>,
}

/// Answers one request from whichever part owns it.
pub(crate) fn route(
    control: &SyncSender<ControlMsg>,
    planes: &Planes,
    words: Vec<String>,
) -> Result<Value, String> {
    tracing::debug!(?words, "ctl request");
    if let Some(answer) = crate::trace::answer(&planes.tracer, &planes.port_names, &words) {
        return answer;
    }
    if let [log, level, spec] = &words[..] {
        if log == "log" && level == "level" {
            return crate::logging::set_level(spec).map(Value::from);
        }
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match (w.as_slice(), &planes.bgp, &planes.fpm) {
        (["bgp", ..] | ["show", "bgp", ..], Some(bgp), _) => bgp.ctl(&words),
        (["bgp", ..] | ["show", "bgp", ..], None, _) => {
            Err("BGP is not configured (no [bgp] section)".into())
        }
        (["show", "fpm"], _, Some(fpm)) => Ok(fpm.show()),
        (["show", "fpm"], _, None) => Err("FPM is not configured (no [fpm] section)".into()),
        _ => ask(control, words),
    }
}

/// Client side: sends `words`, returns the answer. A streamed listing is gathered into
/// its last line's object with the rows under the stream's kind: `{"routes": [rows],
/// "fib": {…}, …}`, `{"sessions": [rows], "shards": […], …}` (callers that print it use
/// [`request_streaming`]).
pub fn request(path: &Path, words: &[String]) -> Result<Value, String> {
    let mut rows = Vec::new();
    let answer = request_streaming(path, words, |row| {
        rows.push(row);
        Ok(())
    })?;
    match (answer.get("stream_end"), answer.get("stream")) {
        (Some(end), Some(Value::String(kind))) => {
            let mut gathered = end.clone();
            gathered[kind.as_str()] = Value::Array(rows);
            Ok(gathered)
        }
        _ => Ok(answer),
    }
}

/// Client side: sends `words`; a streamed answer's rows go to `on_row` as they arrive
/// (an error from it, such as a closed pipe, ends the reading), and the answer returned is
/// `{"stream_end": {…}, "stream": KIND}` with the stream's last line and its kind. Any
/// other answer is returned as it is.
pub fn request_streaming(
    path: &Path,
    words: &[String],
    mut on_row: impl FnMut(Value) -> std::io::Result<()>,
) -> Result<Value, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is tern running?)",
            path.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{}", json!(words)).map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(&stream).lines();
    let mut next = || -> Result<Value, String> {
        let line = lines
            .next()
            .ok_or("the answer ended early")?
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&line).map_err(|e| format!("bad answer: {e}"))
    };
    let first = next()?;
    let Some(kind) = first.get("stream") else {
        return answer_of(first);
    };
    loop {
        let v = next()?;
        if let Some(row) = v.get("row") {
            if on_row(row.clone()).is_err() {
                return Ok(json!({ "stream_end": { "stopped": true }, "stream": kind }));
            }
        } else if let Some(end) = v.get("end") {
            return Ok(json!({ "stream_end": end, "stream": kind }));
        } else {
            return answer_of(v);
        }
    }
}

/// The value of an `{"ok": …}` answer, or its error.
fn answer_of(v: Value) -> Result<Value, String> {
    match (v.get("ok"), v.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (_, Some(err)) => Err(err.as_str().unwrap_or("error").to_string()),
        _ => Err("bad answer".into()),
    }
}
