//! WSL2 Windows toasts for CRITICAL alerts, through `powershell.exe`. The alert text never
//! becomes code: it travels in an environment variable that a fixed script reads, and the
//! script itself is passed with -EncodedCommand (UTF-16LE, base64).
use std::{path::Path, sync::Arc};

use tokio::sync::mpsc;

use crate::model::alert::{Alert, Severity};

/// The fixed script: it reads the title and text from the environment.
const SCRIPT: &str = r#"$ErrorActionPreference = 'Stop'
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] | Out-Null
$template = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)
$texts = $template.GetElementsByTagName('text')
$texts.Item(0).AppendChild($template.CreateTextNode($env:CRABPOT_TOAST_TITLE)) | Out-Null
$texts.Item(1).AppendChild($template.CreateTextNode($env:CRABPOT_TOAST_TEXT)) | Out-Null
$toast = [Windows.UI.Notifications.ToastNotification]::new($template)
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('CrabPot').Show($toast)
"#;

/// Whether this is WSL2: a Microsoft kernel with the Windows interop entry registered.
pub(crate) fn is_wsl2(proc_version: &str, interop_registered: bool) -> bool {
    let lower = proc_version.to_ascii_lowercase();
    (lower.contains("microsoft") || lower.contains("wsl2")) && interop_registered
}

pub(crate) fn detect() -> bool {
    let version = std::fs::read_to_string("/proc/version").unwrap_or_default();
    is_wsl2(
        &version,
        Path::new("/proc/sys/fs/binfmt_misc/WSLInterop").exists(),
    )
}

/// `-EncodedCommand` wants base64 of UTF-16LE.
pub(crate) fn encode_command(script: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Raise one toast; the text is data in the environment, never part of the command line.
pub(crate) async fn show(alert: &Alert) -> std::io::Result<std::process::ExitStatus> {
    let title = format!("CrabPot {}: {}", alert.severity, alert.source.as_str());
    let text: String = alert.message.chars().take(512).collect();
    tokio::process::Command::new("powershell.exe")
        .args([
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-EncodedCommand",
            &encode_command(SCRIPT),
        ])
        .env("CRABPOT_TOAST_TITLE", title)
        .env("CRABPOT_TOAST_TEXT", text)
        // WSL passes these variables on to Windows processes.
        .env("WSLENV", "CRABPOT_TOAST_TITLE/u:CRABPOT_TOAST_TEXT/u")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
}

/// The sink: CRITICAL alerts only; a failing powershell.exe is reported once.
pub(crate) async fn run(mut alerts: mpsc::Receiver<Arc<Alert>>) {
    let mut failing = false;
    while let Some(alert) = alerts.recv().await {
        if alert.severity != Severity::Critical {
            continue;
        }
        match show(&alert).await {
            Ok(status) if status.success() => failing = false,
            outcome if !failing => {
                failing = true;
                tracing::warn!(
                    "Windows toast failed ({outcome:?}); alerts still reach the other sinks"
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_utf16le_base64_like_powershell_expects() {
        // [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('dir'))
        assert_eq!(encode_command("dir"), "ZABpAHIA");
        assert_eq!(encode_command("a"), "YQA=");
    }

    #[test]
    fn detects_wsl2_only_with_interop() {
        let wsl = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1) #1 SMP";
        assert!(is_wsl2(wsl, true));
        assert!(!is_wsl2(wsl, false));
        assert!(!is_wsl2("Linux version 6.18.44-fc", true));
    }

    #[test]
    fn the_script_never_contains_alert_text() {
        assert!(SCRIPT.contains("$env:CRABPOT_TOAST_TEXT"));
        assert!(!SCRIPT.contains("{}"));
    }
}
