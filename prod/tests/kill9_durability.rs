//! Every acknowledged write survives SIGKILL: `kvtablet write-stream` is killed mid-stream,
//! then `kvtablet dump` on the same data directory must show every key it acknowledged.
// A process-level test: it runs real processes, files and clocks on purpose.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KVTABLET: &str = env!("CARGO_BIN_EXE_kvtablet");
/// Far more than the test waits for: the writer is always killed mid-stream.
const STREAM_COUNT: u64 = 1_000_000;
/// Acks to see before the kill: at least this many, plus up to `KILL_JITTER_ACKS` more so that
/// the kill lands at a different point of the write path from run to run.
const KILL_AFTER_ACKS_MIN: u64 = 300;
const KILL_JITTER_ACKS: u64 = 200;
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

/// The key and value `write-stream` writes `index`-th, as `dump` prints them.
fn expected_line(index: u64) -> String {
    let key = format!("k{index:08}");
    let mut value = vec![1u8, 0];
    value.extend_from_slice(format!("v{index}").as_bytes());
    format!("key {} {}", key.as_bytes().escape_ascii(), value.escape_ascii())
}

fn expected_row_value(index: u64) -> String {
    let mut value = vec![1u8, 0];
    value.extend_from_slice(format!("v{index}").as_bytes());
    value.escape_ascii().to_string()
}

fn log_file(dir: &Path, name: &str) -> File {
    File::create(dir.join(name)).expect("log file")
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Waits for `child` to exit, killing it after `timeout`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Parses `ack <index> <base_offset>`.
fn parse_ack(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    if words.next()? != "ack" {
        return None;
    }
    let index = words.next()?.parse().ok()?;
    let _base_offset: u64 = words.next()?.parse().ok()?;
    Some(index)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let work_dir = tempfile::tempdir().expect("tempdir");
    let data_dir = work_dir.path().join("data");
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since_epoch| u64::from(since_epoch.subsec_nanos()))
        .unwrap_or(0)
        % KILL_JITTER_ACKS;
    let kill_after_acks = KILL_AFTER_ACKS_MIN + jitter;

    // Phase 1: stream writes and kill the writer once enough are acknowledged.
    let mut writer = Command::new(KVTABLET)
        .arg("write-stream")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--count")
        .arg(STREAM_COUNT.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(work_dir.path(), "writer.stderr"))
        .spawn()
        .expect("start kvtablet write-stream");
    let stdout = writer.stdout.take().expect("writer stdout");
    let (ack_sender, acks) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if ack_sender.send(line).is_err() {
                break;
            }
        }
    });

    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while (acknowledged.len() as u64) < kill_after_acks {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match acks.recv_timeout(remaining) {
            Ok(line) => acknowledged
                .push(parse_ack(&line).unwrap_or_else(|| panic!("bad ack line {line:?}"))),
            Err(error) => {
                let _ = writer.kill();
                let _ = writer.wait();
                panic!(
                    "writer stopped after {} acks ({error}); stderr:\n{}",
                    acknowledged.len(),
                    read_log(work_dir.path(), "writer.stderr")
                );
            }
        }
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, flush or shutdown runs in the writer.
    writer.kill().expect("SIGKILL the writer");
    let _ = writer.wait();
    // Acks printed before the kill count too: the writer only prints after durability.
    reader.join().expect("reader thread");
    acknowledged.extend(acks.try_iter().filter_map(|line| parse_ack(&line)));
    let expected: Vec<u64> = (0..acknowledged.len() as u64).collect();
    assert_eq!(acknowledged, expected, "acks are in order, one per key");

    // Phase 2: a fresh process recovers the data directory and dumps it.
    let dump_out = work_dir.path().join("dump.stdout");
    let mut dumper = Command::new(KVTABLET)
        .arg("dump")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--lookup-count")
        .arg(acknowledged.len().to_string())
        .stdin(Stdio::null())
        .stdout(File::create(&dump_out).expect("dump output file"))
        .stderr(log_file(work_dir.path(), "dump.stderr"))
        .spawn()
        .expect("start kvtablet dump");
    let status = wait_bounded(&mut dumper, PHASE_TIMEOUT);
    assert!(
        status.is_some_and(|status| status.success()),
        "dump failed ({status:?}); stderr:\n{}",
        read_log(work_dir.path(), "dump.stderr")
    );
    let dump = std::fs::read_to_string(&dump_out).expect("dump output");
    let lines: BTreeSet<&str> = dump.lines().collect();
    let row_values: BTreeSet<&str> = dump
        .lines()
        .filter_map(|line| line.strip_prefix("row "))
        .filter_map(|rest| rest.split_once(' ').map(|(_bucket, value)| value))
        .collect();

    let lost_lookups: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|index| !lines.contains(expected_line(*index).as_str()))
        .collect();
    let lost_rows: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|index| !row_values.contains(expected_row_value(*index).as_str()))
        .collect();
    assert!(
        lost_lookups.is_empty() && lost_rows.is_empty(),
        "{} acked writes; lost by lookup: {lost_lookups:?}; lost by scan: {lost_rows:?}",
        acknowledged.len()
    );
}

#[test]
fn ack_lines_parse() {
    assert_eq!(parse_ack("ack 12 40"), Some(12));
    assert_eq!(parse_ack("nack 12 40"), None);
    assert_eq!(parse_ack("ack 12"), None);
    assert_eq!(expected_line(3), "key k00000003 \\x01\\x00v3");
}
