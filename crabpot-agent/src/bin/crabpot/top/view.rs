//! Drawing `crabpot top`: containers, pending decisions, recent alerts, the keys.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, Table},
};

use super::state::{ContainerRow, TopState};

pub(crate) const KEYS: &str = "p pause  r resume  a approve  A approve always  d deny  \
                               D deny, keep frozen  ↑/↓ select  q quit";

pub(crate) fn draw(frame: &mut Frame<'_>, state: &TopState) {
    let containers = u16::try_from(state.containers.len().max(1)).unwrap_or(u16::MAX);
    let pending = u16::try_from(state.pending.len().clamp(1, 6)).unwrap_or(6);
    let [header, containers_area, pending_area, alerts_area, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(containers.saturating_add(3)),
        Constraint::Length(pending.saturating_add(3)),
        Constraint::Min(4),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(state), header);
    if state.containers.is_empty() {
        frame.render_widget(
            placeholder(" containers ", "(no guarded container)"),
            containers_area,
        );
    } else {
        frame.render_widget(containers_table(state), containers_area);
    }
    if state.pending.is_empty() {
        let none = if state.pending_supported {
            "(none)"
        } else {
            "(this agent has no decisions API)"
        };
        frame.render_widget(placeholder(" pending decisions ", none), pending_area);
    } else {
        frame.render_widget(pending_table(state), pending_area);
    }
    frame.render_widget(alerts_table(state), alerts_area);
    draw_footer(frame, state, footer);
}

/// An empty list: its title and why it is empty, on the full width.
fn placeholder(title: &'static str, text: &'static str) -> Paragraph<'static> {
    Paragraph::new(text).block(Block::new().borders(Borders::ALL).title(title))
}

fn header_line(state: &TopState) -> Paragraph<'static> {
    let status = match &state.error {
        Some(error) => format!("  ! {error}"),
        None => format!("  updated {}", state.updated),
    };
    Paragraph::new(Line::from(format!(
        "CrabPot top — agent {}{status}",
        state.agent
    )))
    .style(Style::new().add_modifier(Modifier::BOLD))
}

fn bytes(value: Option<u64>) -> String {
    value.map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / 1_048_576.0))
}

fn container_cells(row: &ContainerRow) -> Row<'static> {
    let state_style = match row.state.as_str() {
        "running" => Style::new().fg(Color::Green),
        "paused" | "quarantined" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    };
    Row::new(vec![
        Cell::from(row.name.clone()),
        Cell::from(row.id.clone()),
        Cell::from(row.state.clone()).style(state_style),
        Cell::from(row.trust.map_or("-".into(), |t| t.to_string())),
        Cell::from(row.violations.map_or("-".into(), |v| v.to_string())),
        Cell::from(row.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%"))),
        Cell::from(format!(
            "{} / {}",
            bytes(row.memory_used),
            bytes(row.memory_limit)
        )),
        Cell::from(row.pids.map_or("-".into(), |p| p.to_string())),
    ])
}

/// A column as wide as its longest entry (names are long: test and per-session containers).
fn fitted<S: AsRef<str>>(values: impl Iterator<Item = S>, title: &str) -> Constraint {
    let widest = values
        .map(|v| v.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let width = widest.max(title.len()).clamp(9, 48);
    Constraint::Length(u16::try_from(width).unwrap_or(48))
}

fn containers_table(state: &TopState) -> Table<'static> {
    let names = fitted(
        state.containers.iter().map(|c| c.name.as_str()),
        "CONTAINER",
    );
    Table::new(
        state.containers.iter().map(container_cells),
        [
            names,
            Constraint::Length(13),
            Constraint::Length(12),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(22),
            Constraint::Length(5),
        ],
    )
    .header(bold_row(&[
        "CONTAINER",
        "ID",
        "STATE",
        "TRUST",
        "VIOLATIONS",
        "CPU",
        "MEMORY",
        "PIDS",
    ]))
    .block(Block::new().borders(Borders::ALL).title(" containers "))
}

fn bold_row(names: &[&'static str]) -> Row<'static> {
    Row::new(names.iter().map(|n| Cell::from(*n))).style(Style::new().add_modifier(Modifier::BOLD))
}

fn pending_table(state: &TopState) -> Table<'static> {
    let rows = state.pending.iter().enumerate().map(|(index, d)| {
        let row = Row::new(vec![
            Cell::from(d.id.clone()),
            Cell::from(d.container.clone()),
            Cell::from(d.since.clone()),
            Cell::from(d.what.clone()),
        ]);
        if index == state.selected {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let containers = fitted(
        state.pending.iter().map(|d| d.container.as_str()),
        "CONTAINER",
    );
    Table::new(
        rows,
        [
            Constraint::Length(24),
            containers,
            Constraint::Length(9),
            Constraint::Min(20),
        ],
    )
    .header(bold_row(&["DECISION", "CONTAINER", "SINCE", "WHAT"]))
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(" pending decisions "),
    )
}

fn alerts_table(state: &TopState) -> Table<'static> {
    let containers = fitted(
        state.alerts.iter().map(|a| a.container.as_str()),
        "CONTAINER",
    );
    let rows = state.alerts.iter().map(|a| {
        let style = match a.severity.as_str() {
            "CRITICAL" => Style::new().fg(Color::Red),
            "WARNING" => Style::new().fg(Color::Yellow),
            _ => Style::new(),
        };
        Row::new(vec![
            Cell::from(a.time.clone()),
            Cell::from(a.severity.clone()).style(style),
            Cell::from(a.rule.clone()),
            Cell::from(a.container.clone()),
            Cell::from(a.message.clone()),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(24),
            containers,
            Constraint::Min(20),
        ],
    )
    .header(bold_row(&[
        "TIME",
        "SEVERITY",
        "RULE",
        "CONTAINER",
        "MESSAGE",
    ]))
    .block(Block::new().borders(Borders::ALL).title(" recent alerts "))
}

fn draw_footer(frame: &mut Frame<'_>, state: &TopState, area: Rect) {
    let lines = vec![
        Line::from(state.message.clone()),
        Line::from(KEYS).style(Style::new().add_modifier(Modifier::DIM)),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::super::state::{AlertRow, PendingRow};
    use super::*;

    fn screen(state: &TopState) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 30)).expect("test terminal");
        terminal.draw(|f| draw(f, state)).expect("draw");
        let buffer = terminal.backend().buffer();
        buffer
            .content()
            .chunks(usize::from(buffer.area.width))
            .map(|line| line.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_part_is_on_screen() {
        let state = TopState {
            agent: "127.0.0.1:9876".into(),
            containers: vec![ContainerRow {
                name: "crabpot".into(),
                state: "paused".into(),
                trust: Some(80),
                cpu_percent: Some(3.25),
                memory_used: Some(64 * 1_048_576),
                ..ContainerRow::default()
            }],
            alerts: vec![AlertRow {
                time: "05:00:02".into(),
                severity: "CRITICAL".into(),
                rule: "denylisted_exec".into(),
                container: "crabpot".into(),
                message: "shell sh started".into(),
            }],
            pending: vec![PendingRow {
                id: "d-42".into(),
                container: "crabpot".into(),
                what: "exec /bin/sh".into(),
                since: "05:00:02".into(),
            }],
            pending_supported: true,
            message: "resumed crabpot".into(),
            ..TopState::default()
        };
        let text = screen(&state);
        for expected in [
            "agent 127.0.0.1:9876",
            "crabpot",
            "paused",
            "3.2%",
            "64 MiB / -",
            "d-42",
            "exec /bin/sh",
            "denylisted_exec",
            "shell sh started",
            "resumed crabpot",
            "q quit",
        ] {
            assert!(
                text.contains(expected),
                "`{expected}` missing from:\n{text}"
            );
        }
    }

    #[test]
    fn an_unreachable_agent_and_an_agent_without_decisions_say_so() {
        let state = TopState {
            agent: "127.0.0.1:1".into(),
            error: Some("crabpot-agent is not running".into()),
            ..TopState::default()
        };
        let text = screen(&state);
        assert!(text.contains("! crabpot-agent is not running"), "{text}");
        assert!(text.contains("(no guarded container)"), "{text}");
        assert!(text.contains("(this agent has no decisions API)"), "{text}");
    }
}
