//! Which containers are guarded: `--container NAME` (repeatable) and `--select` selectors
//! (`label=KEY=VALUE`, `name=PREFIX*`, `name=NAME`), matched against a container's name and
//! labels when it starts.
use std::collections::HashMap;

/// One `--select` selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// `name=NAME`: exactly this name.
    Name(String),
    /// `name=PREFIX*`: every name that starts with the prefix.
    NamePrefix(String),
    /// `label=KEY=VALUE`: every container carrying the label with that value.
    Label { key: String, value: String },
}

impl Selector {
    /// Parse `label=KEY=VALUE`, `name=PREFIX*` or `name=NAME`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}`: a selector is `label=KEY=VALUE`, `name=PREFIX*` or `name=NAME`");
        let (kind, rest) = text.split_once('=').ok_or_else(bad)?;
        match kind.trim() {
            "label" => {
                let (key, value) = rest.split_once('=').ok_or_else(bad)?;
                if key.is_empty() {
                    return Err(bad());
                }
                Ok(Selector::Label {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
            "name" => {
                let name = rest.trim_start_matches('/');
                match name.strip_suffix('*') {
                    Some(prefix) if !prefix.contains('*') => {
                        Ok(Selector::NamePrefix(prefix.to_string()))
                    }
                    None if !name.is_empty() && !name.contains('*') => {
                        Ok(Selector::Name(name.to_string()))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    /// Whether a container with `name` (without Docker's leading `/`) and `labels` matches.
    pub(crate) fn matches(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        let name = name.trim_start_matches('/');
        match self {
            Selector::Name(wanted) => name == wanted,
            Selector::NamePrefix(prefix) => name.starts_with(prefix.as_str()),
            Selector::Label { key, value } => labels.get(key) == Some(value),
        }
    }
}

/// Whether any selector matches.
pub(crate) fn any_matches(
    selectors: &[Selector],
    name: &str,
    labels: &HashMap<String, String>,
) -> bool {
    selectors.iter().any(|s| s.matches(name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match_names_and_labels() {
        let labels = HashMap::from([("team".to_string(), "ai".to_string())]);
        let label = Selector::parse("label=team=ai").expect("label");
        assert!(label.matches("x", &labels));
        assert!(!label.matches("x", &HashMap::new()));
        assert!(
            !Selector::parse("label=team=ml")
                .expect("label")
                .matches("x", &labels)
        );
        let prefix = Selector::parse("name=agent-*").expect("prefix");
        assert_eq!(prefix, Selector::NamePrefix("agent-".into()));
        assert!(prefix.matches("/agent-1", &labels));
        assert!(!prefix.matches("other", &labels));
        let exact = Selector::parse("name=gw").expect("name");
        assert!(exact.matches("gw", &labels) && !exact.matches("gw2", &labels));
        // A value may itself contain `=`.
        let eq = Selector::parse("label=a=b=c").expect("label");
        assert_eq!(
            eq,
            Selector::Label {
                key: "a".into(),
                value: "b=c".into()
            }
        );
        for bad in [
            "",
            "label",
            "label=",
            "label==v",
            "name=",
            "name=a*b*",
            "image=x",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
