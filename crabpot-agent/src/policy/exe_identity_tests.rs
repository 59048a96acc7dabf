//! Unit tests of exe_identity.
use super::*;

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn applets_come_from_argv() {
    assert_eq!(applet(&argv(&["sh", "-c", "x"])), "sh");
    assert_eq!(applet(&argv(&["/tmp/busybox.bak", "sh"])), "sh");
    assert_eq!(applet(&argv(&["busybox", "--list"])), "busybox");
    assert_eq!(applet(&argv(&["innocent"])), "innocent");
    assert_eq!(applet(&argv(&[])), "");
}

#[test]
fn fds_of_fileless_execs() {
    let args = argv(&["sh"]);
    let target = |filename, flags| ExecTarget {
        tgid: 1,
        container_pid: None,
        filename,
        dirfd: 7,
        flags,
        argv: &args,
    };
    assert_eq!(exec_fd(&target("", AT_EMPTY_PATH)), Some(7));
    assert_eq!(exec_fd(&target("/dev/fd/3", 0)), Some(3));
    assert_eq!(exec_fd(&target("/proc/self/fd/4", 0)), Some(4));
    assert_eq!(exec_fd(&target("/bin/sh", 0)), None);
}

#[test]
fn a_copy_is_known_by_content_and_a_link_by_inode() {
    // The test's own root stands in for the container: index `cp`-able host files.
    let dir = std::env::temp_dir().join(format!("crabpot-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let identity = ExeIdentity::new(&argv(&["sh"]));
    let me = std::process::id();
    assert_eq!(identity.running_name(me, &argv(&["x"])), Some(None));
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    let copy = dir.join("innocent");
    std::fs::copy(&sh, &copy).expect("copy");
    let copy_path = copy.to_string_lossy().into_owned();
    let args = argv(&["innocent"]);
    let names = identity
        .exec_names(&ExecTarget {
            tgid: me,
            container_pid: None,
            filename: &copy_path,
            dirfd: AT_FDCWD,
            flags: 0,
            argv: &args,
        })
        .names;
    let _ = std::fs::remove_dir_all(&dir);
    let expected = if sh.ends_with("busybox") {
        "innocent"
    } else {
        "sh"
    };
    assert_eq!(names, vec![expected.to_string()]);
}

#[test]
fn shebang_lines_name_their_interpreter() {
    let dir = std::env::temp_dir().join(format!("crabpot-shebang-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let case = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        shebang(&File::open(&path).expect("open"))
    };
    assert_eq!(
        case("a", "#!/bin/sh\necho\n"),
        Some(("/bin/sh".to_string(), None))
    );
    assert_eq!(
        case("b", "#! /usr/bin/env  python3 -u\n"),
        Some(("/usr/bin/env".to_string(), Some("python3 -u".to_string())))
    );
    assert_eq!(case("c", "\x7fELF"), None);
    assert_eq!(case("d", "#!\n"), None);
    let _ = std::fs::remove_dir_all(&dir);
}
