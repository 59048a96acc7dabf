use super::*;
use crate::model::alert::{AlertSource, Severity};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crabpot-writer-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn alert(i: usize) -> Alert {
    Alert::new(Severity::Warning, AlertSource::Logs, format!("line {i}"))
}

#[test]
fn appends_whole_lines_and_rotates_keeping_older_files() {
    let dir = temp_dir("rotate");
    let path = dir.join("data/alerts.log");
    let mut writer = AlertLogWriter::open(&path, 1000, 3).expect("open");
    for i in 0..40 {
        writer.append(&alert(i)).expect("append");
    }
    assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
    assert!(!rotated(&path, 4).exists(), "keeps at most 3 rotated files");
    for file in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
        let text = fs::read_to_string(&file).expect("read");
        assert!(text.len() <= 1000, "{}", file.display());
        for line in text.lines() {
            serde_json::from_str::<Alert>(line).expect("every line is a whole alert");
        }
    }
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_torn_tail_is_removed_at_open() {
    let dir = temp_dir("torn");
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("alerts.log");
    let whole = serde_json::to_string(&alert(1)).expect("json");
    fs::write(&path, format!("{whole}\n{{\"severity\":\"CRIT")).expect("write");
    let mut writer = AlertLogWriter::open(&path, 1 << 20, 2).expect("open");
    writer.append(&alert(2)).expect("append");
    let text = fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], whole);
    assert_eq!(
        repair_torn_tail(&path).expect("repair"),
        0,
        "clean file untouched"
    );
    fs::write(&path, "no newline at all").expect("write");
    assert_eq!(repair_torn_tail(&path).expect("repair"), 17);
    assert_eq!(fs::read(&path).expect("read").len(), 0);
    let _ = fs::remove_dir_all(dir);
}

fn messages(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| {
            serde_json::from_str::<Alert>(l)
                .expect("whole alert")
                .message
        })
        .collect()
}

#[test]
fn alerts_held_while_writing_fails_are_written_in_order_when_it_works_again() {
    let dir = temp_dir("held");
    let path = dir.join("alerts.log");
    let mut log = HeldWriter::new(AlertLogWriter::open(&path, 1 << 20, 2).expect("open"));
    log.write(Some(&alert(0)));
    // A read-only descriptor: every write fails, as on a full disk.
    log.writer.file = File::open(&path).expect("read-only");
    for i in 1..5 {
        log.write(Some(&alert(i)));
    }
    log.write(None);
    assert!(log.is_failing());
    assert_eq!(log.held(), 4);
    assert_eq!(messages(&path), vec!["line 0"]);

    log.writer.file = open_append(&path).expect("writable again");
    log.write(None);
    assert!(!log.is_failing());
    let expected: Vec<String> = (0..5).map(|i| format!("line {i}")).collect();
    assert_eq!(messages(&path), expected);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn the_held_backlog_is_bounded_and_keeps_the_newest() {
    let dir = temp_dir("shed");
    let path = dir.join("alerts.log");
    let mut log = HeldWriter::new(AlertLogWriter::open(&path, 1 << 30, 2).expect("open"));
    log.writer.file = File::open(&path).expect("read-only");
    let big = "x".repeat(100_000);
    for i in 0..100 {
        log.write(Some(&Alert::new(
            Severity::Info,
            AlertSource::Logs,
            format!("{i} {big}"),
        )));
    }
    assert!(log.held_bytes <= MAX_HELD_BYTES);
    let held = log.held();
    assert!(held > 0 && held < 100);
    assert_eq!(log.lost, (100 - held) as u64);
    log.writer.file = open_append(&path).expect("writable again");
    log.write(None);
    assert!(!log.is_failing() && log.lost == 0);
    let firsts: Vec<String> = messages(&path)
        .iter()
        .map(|m| m.split(' ').next().unwrap_or("").to_string())
        .collect();
    let expected: Vec<String> = (100 - held..100).map(|i| i.to_string()).collect();
    assert_eq!(firsts, expected, "the newest are kept, in order");
    let _ = fs::remove_dir_all(dir);
}
