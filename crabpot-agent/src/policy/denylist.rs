//! Which executables must not run in the container, judged by what is executed.
use std::collections::HashMap;

/// The name a process really runs as: the basename of the executed path, or for a
/// multi-call binary (and for `/proc/self/exe`, which busybox uses to run its own applets)
/// the basename of argv[0]. A leading `-` (the login-shell form) is dropped.
pub(crate) fn executable_name(exec_path: &str, argv: &[String]) -> String {
    let base = basename(exec_path);
    let via_self = exec_path == "/proc/self/exe" || exec_path.starts_with("/proc/self/fd/");
    // busybox runs as a multi-call binary under any name starting with "busybox".
    if (via_self || MULTICALL.iter().any(|m| base.starts_with(m))) && !argv.is_empty() {
        let name = applet(argv);
        if !name.is_empty() {
            return name;
        }
    }
    login_form(base).to_string()
}

/// `name` without the leading dashes of the login-shell convention: `login(1)` runs a shell
/// as `-sh`, and busybox and bash strip the dash to choose what to run, so `-sh` is `sh`.
pub(crate) fn login_form(name: &str) -> &str {
    name.trim_start_matches('-')
}

pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Multi-call binaries: the applet they run is named by argv[0].
pub(crate) const MULTICALL: &[&str] = &["busybox", "toybox"];

/// The applet a multi-call binary runs: the basename of argv[0], or of argv[1] when argv[0]
/// names the binary itself (busybox accepts any name starting with "busybox"); a login
/// shell's leading `-` is dropped, as busybox drops it.
pub(crate) fn applet(argv: &[String]) -> String {
    let first = login_form(argv.first().map(|a| basename(a)).unwrap_or(""));
    if first.is_empty() || MULTICALL.iter().any(|m| first.starts_with(m)) {
        return match argv.get(1) {
            Some(next) if !next.starts_with('-') => login_form(basename(next)).to_string(),
            _ => first.to_string(),
        };
    }
    first.to_string()
}

/// The denylist with a category for each built-in name.
#[derive(Debug, Clone)]
pub(crate) struct Denylist(HashMap<String, &'static str>);

pub(crate) fn builtin_category(name: &str) -> &'static str {
    match name {
        "sh" | "bash" | "dash" | "zsh" | "ash" | "ksh" | "fish" | "csh" | "tcsh" | "hush" => {
            "shell"
        }
        "nc" | "ncat" | "netcat" | "socat" | "nmap" | "telnet" => "network tool",
        "gcc" | "cc" | "make" | "ld" => "compiler",
        n if n.starts_with("python") || ["perl", "ruby", "php", "lua"].contains(&n) => {
            "scripting runtime"
        }
        _ => "denylisted program",
    }
}

impl Denylist {
    pub(crate) fn new(names: &[String]) -> Self {
        Denylist(
            names
                .iter()
                .map(|n| (n.clone(), builtin_category(n)))
                .collect(),
        )
    }

    /// The category of `name` when it is denied. Versioned runtimes (`python3.11`) count as
    /// their family, and a login-shell name (`-sh`) as the name without its dash.
    pub(crate) fn category(&self, name: &str) -> Option<&'static str> {
        let name = login_form(name);
        if let Some(category) = self.0.get(name) {
            return Some(category);
        }
        let family = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        (family != name)
            .then(|| self.0.get(family).copied())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DENYLIST;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_what_is_executed() {
        assert_eq!(executable_name("/bin/sh", &argv(&["sh", "-c", "x"])), "sh");
        assert_eq!(executable_name("/bin/busybox", &argv(&["nc", "-l"])), "nc");
        assert_eq!(
            executable_name("/proc/self/exe", &argv(&["cat", "/x"])),
            "cat"
        );
        assert_eq!(executable_name("/usr/bin/node", &argv(&["sh"])), "node");
        assert_eq!(executable_name("/bin/busybox", &argv(&[])), "busybox");
        assert_eq!(executable_name("/bin/busybox", &argv(&["-sh"])), "sh");
        assert_eq!(executable_name("/bin/sh", &argv(&["-sh"])), "sh");
        assert_eq!(
            executable_name("/tmp/busybox.bak", &argv(&["/tmp/busybox.bak", "sh"])),
            "sh"
        );
    }

    #[test]
    fn categories_and_versioned_runtimes() {
        let names: Vec<String> = DEFAULT_DENYLIST.iter().map(|s| s.to_string()).collect();
        let denylist = Denylist::new(&names);
        assert_eq!(denylist.category("bash"), Some("shell"));
        assert_eq!(denylist.category("python3.11"), Some("scripting runtime"));
        assert_eq!(denylist.category("nc"), Some("network tool"));
        assert_eq!(denylist.category("make"), Some("compiler"));
        assert_eq!(denylist.category("node"), None);
        assert_eq!(denylist.category("cat"), None);
        assert_eq!(denylist.category("shx"), None);
        assert_eq!(denylist.category("-sh"), Some("shell"));
        assert_eq!(denylist.category("--bash"), Some("shell"));
        assert_eq!(denylist.category("-python3.11"), Some("scripting runtime"));
        assert_eq!(denylist.category("-"), None);
    }

    #[test]
    fn login_shell_names_are_the_shell() {
        assert_eq!(applet(&argv(&["-sh"])), "sh");
        assert_eq!(applet(&argv(&["/bin/-ash", "-i"])), "ash");
        assert_eq!(applet(&argv(&["busybox", "-sh"])), "busybox");
        assert_eq!(applet(&argv(&["-busybox", "sh"])), "sh");
        assert_eq!(executable_name("/bin/busybox", &argv(&["-sh"])), "sh");
        assert_eq!(executable_name("/proc/self/exe", &argv(&["-bash"])), "bash");
        assert_eq!(executable_name("/tmp/-sh", &argv(&["x"])), "sh");
        assert_eq!(executable_name("/bin/sh", &argv(&["-sh"])), "sh");
    }
}
