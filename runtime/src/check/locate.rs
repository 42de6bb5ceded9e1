//! Where a key is written in a policy's TOML text, for findings about a policy that
//! validated (a validated [`crate::Policy`] keeps no positions).
//!
//! A line scanner, not a parser: it finds `key = ...` lines under a `[table]` header, as
//! people write policies. A key it cannot find (written as an inline table or a dotted
//! key) falls back to its table's header line, then to none.

/// A `[table]` or `[[array]]` header and the lines (0-based, exclusive end) it covers.
struct Table<'a> {
    header: String,
    array: bool,
    first: usize,
    end: usize,
    lines: &'a [&'a str],
}

fn tables<'a>(lines: &'a [&'a str]) -> Vec<Table<'a>> {
    let mut tables: Vec<Table<'a>> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if !trimmed.starts_with('[') {
            continue;
        }
        let array = trimmed.starts_with("[[");
        let inner = trimmed
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or("");
        let header = inner
            .split('.')
            .map(|part| part.trim().trim_matches('"'))
            .collect::<Vec<_>>()
            .join(".");
        if let Some(last) = tables.last_mut() {
            last.end = i;
        }
        tables.push(Table {
            header,
            array,
            first: i,
            end: lines.len(),
            lines,
        });
    }
    tables
}

impl Table<'_> {
    /// The 0-based line and the char column of `key = ` in this table.
    fn key(&self, key: &str) -> Option<(usize, usize)> {
        (self.first + 1..self.end).find_map(|i| {
            let line = self.lines[i];
            let trimmed = line.trim_start();
            let indent = line.chars().count() - trimmed.chars().count();
            let rest = trimmed
                .strip_prefix(key)
                .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")))?;
            rest.trim_start().starts_with('=').then_some((i, indent))
        })
    }
}

/// The `nth` table called `header` (0 for a plain table).
fn table<'a>(tables: &'a [Table<'a>], header: &str, nth: usize) -> Option<&'a Table<'a>> {
    tables.iter().filter(|t| t.header == header).nth(nth)
}

/// The 1-based line and column of `key` in the `nth` table `header` (a `[[header]]` array
/// of tables counts from 0), or of the table's header when the key is not written on its
/// own line there.
pub(super) fn key(text: &str, header: &str, nth: usize, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let tables = tables(&lines);
    let table = table(&tables, header, nth)?;
    Some(match table.key(key) {
        Some((line, column)) => (line + 1, column + 1),
        None => (table.first + 1, 1),
    })
}

/// The 1-based line and column of the quoted `value` in the list or value of `key` in
/// table `header` (the list may span lines), else of the key.
pub(super) fn quoted(text: &str, header: &str, key: &str, value: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let tables = tables(&lines);
    let table = table(&tables, header, 0)?;
    let Some((start, column)) = table.key(key) else {
        return Some((table.first + 1, 1));
    };
    let needle = format!("\"{value}\"");
    for (i, line) in lines.iter().enumerate().take(table.end).skip(start) {
        if let Some(at) = line.find(&needle) {
            return Some((i + 1, line[..at].chars().count() + 1));
        }
        if i > start && line.contains('=') {
            break;
        }
    }
    Some((start + 1, column + 1))
}

/// The index among the file's `[[gates]]` tables of the gate whose `to` is `to`.
pub(super) fn gate(text: &str, to: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let tables = tables(&lines);
    tables
        .iter()
        .filter(|t| t.array && t.header == "gates")
        .position(|t| {
            t.key("to").is_some_and(|(i, _)| {
                lines[i]
                    .split_once('=')
                    .is_some_and(|(_, v)| v.trim().trim_matches('"') == to)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "[capabilities]\ntools = [\"a\",\n  \"b\"]\nmodels = [\"m\"]\n\n\
        [[gates]]\nto = \"x\"\nlabel = \"l\"\n\n[[gates]]\nto = \"y\"\n  label = \"k\"\n\n\
        [models.m.features]\n\"f\" = \"1\"\ng = \"2\"\n";

    #[test]
    fn finds_keys_values_and_gates_as_written() {
        assert_eq!(quoted(POLICY, "capabilities", "tools", "b"), Some((3, 3)));
        assert_eq!(quoted(POLICY, "capabilities", "models", "m"), Some((4, 11)));
        assert_eq!(gate(POLICY, "y"), Some(1));
        assert_eq!(key(POLICY, "gates", 1, "label"), Some((12, 3)));
        assert_eq!(key(POLICY, "models.m.features", 0, "f"), Some((15, 1)));
        assert_eq!(key(POLICY, "models.m.features", 0, "h"), Some((14, 1)));
        assert_eq!(key(POLICY, "models.n.features", 0, "h"), None);
    }
}
