//! A small renderer for `--format` templates as `docker ps --format` users
//! write them: `{{.Field}}` (spaces inside the braces allowed), `{{json .}}`,
//! `{{json .Field}}`, the escapes `\t` and `\n`, and a leading `table` that
//! prints a header and aligns the tab-separated columns. Nothing else of Go's
//! template language: anything else is refused with one line.

/// What a template can show of one item.
pub trait Fields {
    /// Field names, in the order `--format` help lists them.
    const NAMES: &'static [&'static str];
    /// The field's text (already safe for a terminal), `None` if unknown.
    fn field(&self, name: &str) -> Option<String>;
    /// The whole item as one line of JSON (`{{json .}}`).
    fn json(&self) -> String;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    JsonField(String),
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    table: bool,
}

impl Template {
    /// Parses `s`, checking every field name against `T::NAMES`.
    pub fn parse<T: Fields>(s: &str) -> Result<Template, String> {
        let (table, body) = match s.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start_matches(' ')),
            None => (false, s),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template {s:?}: {{{{ without }}}}"))?;
            let action = after[..close].trim();
            parts.push(action_part::<T>(action, s)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts, table })
    }

    fn line<T: Fields>(&self, item: &T) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&item.field(f).unwrap_or_default()),
                Part::JsonField(f) => out.push_str(
                    &serde_json::to_string(&item.field(f).unwrap_or_default()).unwrap_or_default(),
                ),
                Part::Json => out.push_str(&item.json()),
            }
        }
        out
    }

    fn header(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) | Part::JsonField(f) => out.push_str(&f.to_uppercase()),
                Part::Json => out.push_str("JSON"),
            }
        }
        out
    }

    /// One line per item (a header first for `table`), newline-terminated.
    pub fn render<T: Fields>(&self, items: &[T]) -> String {
        let mut lines: Vec<String> = Vec::new();
        if self.table {
            lines.push(self.header());
        }
        lines.extend(items.iter().map(|i| self.line(i)));
        if self.table {
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| l.split('\t').map(str::to_string).collect())
                .collect();
            return align(&rows, &[]);
        }
        let mut out = String::new();
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

fn action_part<T: Fields>(action: &str, whole: &str) -> Result<Part, String> {
    let field = |f: &str| -> Result<String, String> {
        let name = f
            .strip_prefix('.')
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("template {whole:?}: cannot read {{{{{action}}}}}"))?;
        if T::NAMES.contains(&name) {
            Ok(name.to_string())
        } else {
            Err(format!(
                "template {whole:?}: unknown field .{name} (fields: {})",
                T::NAMES.join(", ")
            ))
        }
    };
    if action == "json ." {
        return Ok(Part::Json);
    }
    if let Some(f) = action.strip_prefix("json ") {
        return Ok(Part::JsonField(field(f.trim())?));
    }
    Ok(Part::Field(field(action)?))
}

/// Colours one cell of a column (`None`: left as is).
pub type Paint<'a> = Option<&'a dyn Fn(&str) -> String>;

/// Aligned columns, two spaces apart, trailing spaces trimmed. `paint(col,
/// text)` may wrap a padded cell in colour codes (not counted in widths).
pub fn align(rows: &[Vec<String>], paint: &[Paint<'_>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let last = i + 1 == r.len();
            let pad = if last {
                String::new()
            } else {
                " ".repeat(widths[i].saturating_sub(c.chars().count()))
            };
            match paint.get(i).copied().flatten() {
                // Not the header row.
                Some(p) if n > 0 => line.push_str(&p(c)),
                _ => line.push_str(c),
            }
            line.push_str(&pad);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(&'static str, &'static str);

    impl Fields for Item {
        const NAMES: &'static [&'static str] = &["Service", "Address"];
        fn field(&self, name: &str) -> Option<String> {
            match name {
                "Service" => Some(self.0.into()),
                "Address" => Some(self.1.into()),
                _ => None,
            }
        }
        fn json(&self) -> String {
            format!("{{\"service\":\"{}\"}}", self.0)
        }
    }

    const ITEMS: [Item; 2] = [
        Item("web1", "203.0.113.57"),
        Item("database", "203.0.113.58"),
    ];

    #[test]
    fn fields_as_docker_users_write_them() {
        let t = Template::parse::<Item>("{{.Service}} {{ .Address }}").unwrap();
        assert_eq!(
            t.render(&ITEMS),
            "web1 203.0.113.57\ndatabase 203.0.113.58\n"
        );
        let t = Template::parse::<Item>("{{.Service}}\\t{{json .Address}}").unwrap();
        assert_eq!(t.render(&ITEMS[..1]), "web1\t\"203.0.113.57\"\n");
        let t = Template::parse::<Item>("{{json .}}").unwrap();
        assert_eq!(t.render(&ITEMS[..1]), "{\"service\":\"web1\"}\n");
        let t = Template::parse::<Item>("no fields").unwrap();
        assert_eq!(t.render(&ITEMS[..1]), "no fields\n");
    }

    #[test]
    fn table_prefix_aligns_with_a_header() {
        let t = Template::parse::<Item>("table {{.Service}}\\t{{.Address}}").unwrap();
        assert_eq!(
            t.render(&ITEMS),
            "SERVICE   ADDRESS\nweb1      203.0.113.57\ndatabase  203.0.113.58\n"
        );
    }

    #[test]
    fn bad_templates_are_one_line_errors() {
        let e = Template::parse::<Item>("{{.Nope}}").unwrap_err();
        assert!(
            e.contains("unknown field .Nope") && e.contains("Service, Address"),
            "{e}"
        );
        for bad in ["{{.Service", "{{Service}}", "{{.}}", "{{range .}}"] {
            let e = Template::parse::<Item>(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn align_pads_before_painting() {
        let rows = vec![
            vec!["A".to_string(), "STATE".into(), "X".into()],
            vec!["long".to_string(), "ok".into(), "y".into()],
        ];
        let red = |s: &str| format!("<{s}>");
        let out = align(&rows, &[None, Some(&red)]);
        assert_eq!(out, "A     STATE  X\nlong  <ok>     y\n");
    }
}
