//! `vaultlet-testapp`: the stand-in application of the samples on the local cluster. It prints
//! what a test needs to see in `kubectl logs`; the image links it under the process names the
//! samples signal (`nginx`, ...), since a process's name is the name it was started by.
//!
//! ```text
//! vaultlet-testapp watch FILE... [--exit CODE]   report FILE at start and at every SIGHUP;
//!                                                 with --exit, leave with CODE after the start
//! vaultlet-testapp serve PORT FILE...            the same, plus an HTTP server on PORT that
//!                                                 prints every request (and the files after a
//!                                                 POST) and serves GET /FILE
//! vaultlet-testapp env VAR... [--exit CODE] [--term-exit CODE]
//!                                                 report each VAR's digest (FNV-1a 64, hex;
//!                                                 never the value) at start; with --exit,
//!                                                 leave with CODE; on SIGTERM leave with
//!                                                 --term-exit's CODE (default 0)
//! ```
//! Lines: `app: started with FILE present` (or `WITHOUT FILE`), `app: FILE: <first line>`,
//! `app: got SIGHUP`, `app: got POST /path`, `app: got SIGTERM`; in env mode
//! `app: started pid PID`, `app: env VAR DIGEST` (or `MISSING`). The files are test data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        return usage();
    };
    let (port, rest) = match mode.as_str() {
        "env" => return env_mode(rest),
        "watch" => (None, rest),
        "serve" => match rest.split_first() {
            Some((port, files)) => match port.parse::<u16>() {
                Ok(p) => (Some(p), files),
                Err(_) => return usage(),
            },
            None => return usage(),
        },
        _ => return usage(),
    };
    let (files, exit) = match rest.iter().position(|a| a == "--exit") {
        Some(at) => match rest.get(at + 1).and_then(|c| c.parse::<u8>().ok()) {
            Some(code) => (&rest[..at], Some(code)),
            None => return usage(),
        },
        None => (rest, None),
    };
    // Signals are taken by sigwait below, so block them before any thread starts.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("app: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    for file in files {
        let state = if std::fs::metadata(file).is_ok_and(|m| m.len() > 0) {
            "with"
        } else {
            "WITHOUT"
        };
        say(&format!("started {state} {file} present"));
    }
    report(files);
    if let Some(code) = exit {
        return ExitCode::from(code);
    }
    if let Some(port) = port {
        let files = files.to_vec();
        std::thread::spawn(move || serve(port, &files));
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => {
                say("got SIGHUP");
                report(files);
            }
            Ok(other) => {
                say(&format!("got {}", other.as_str()));
                return ExitCode::SUCCESS;
            }
            Err(e) => eprintln!("app: sigwait: {e}"),
        }
    }
}

/// FNV-1a 64 of a value: tests compare it with the digest of the value they wrote, and no
/// secret value reaches a log.
fn digest(value: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn env_mode(rest: &[String]) -> ExitCode {
    let mut vars = Vec::new();
    let (mut exit, mut term_exit) = (None, 0u8);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let code = || it.clone().next().and_then(|c| c.parse::<u8>().ok());
        match a.as_str() {
            "--exit" | "--term-exit" => {
                let Some(c) = code() else { return usage() };
                it.next();
                if a == "--exit" {
                    exit = Some(c);
                } else {
                    term_exit = c;
                }
            }
            var => vars.push(var.to_owned()),
        }
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("app: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    say(&format!("started pid {}", std::process::id()));
    for var in &vars {
        let value = std::env::var(var).map_or_else(|_| "MISSING".to_owned(), |v| digest(&v));
        say(&format!("env {var} {value}"));
    }
    if let Some(code) = exit {
        return ExitCode::from(code);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => say("got SIGHUP"),
            Ok(other) => {
                say(&format!("got {}", other.as_str()));
                return ExitCode::from(term_exit);
            }
            Err(e) => eprintln!("app: sigwait: {e}"),
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: vaultlet-testapp watch FILE... [--exit CODE] | serve PORT FILE... | env VAR... [--exit CODE] [--term-exit CODE]"
    );
    ExitCode::from(2)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "app: {line}");
    let _ = out.flush();
}

fn first_line(file: &str) -> String {
    std::fs::read_to_string(file)
        .map(|s| s.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|e| format!("<unreadable: {e}>"))
}

fn report(files: &[String]) {
    for file in files {
        say(&format!("{file}: {}", first_line(file)));
    }
}

fn serve(port: u16, files: &[String]) {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("app: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    for stream in listener.incoming().flatten() {
        answer(stream, files);
    }
}

/// One request per connection: `GET /<file>` returns the file, anything else 200 empty.
fn answer(mut stream: TcpStream, files: &[String]) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 16)];
    let _ = reader.read_exact(&mut body);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    say(&format!("got {method} {path}"));
    if method == "POST" {
        // A reload request: show what the files hold now.
        report(files);
    }
    let content = files
        .iter()
        .find(|f| method == "GET" && f.as_str() == path)
        .and_then(|f| std::fs::read(f).ok())
        .unwrap_or_default();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream.write_all(&content);
}
