//! A batch's values sent to PostgreSQL column by column, one text
//! parameter each, for `SELECT * FROM UNNEST(…)`.
//!
//! The `Any` driver binds no arrays, so each column travels as text that
//! the statement turns into an array:
//! - integers as an array literal, `{1,NULL,3}`, cast with `::bigint[]`;
//! - text joined by a separator, `(string_to_array($n, $sep, $null))[2:]`.
//!   An array literal of text would need quoting, and PostgreSQL reads a
//!   quoted literal six times slower than it splits a string: for a
//!   thousand request rows, 14 ms against 2 ms.
//!
//! The separator and the NULL mark are two characters that no text of the
//! statement holds (control characters, then private-use ones), so no value
//! can be split or taken for NULL. Each text column starts with a separator
//! that `[2:]` drops: `string_to_array('', …)` is an empty array, while one
//! row's empty text must stay a row.

use std::collections::HashSet;

use super::Value;

/// What a column's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
}

/// One column's values, in row order, as the text its parameter binds.
#[derive(Debug, Default)]
struct Column {
    kind: Option<Kind>,
    text: String,
}

impl Column {
    /// Appends a value; a column holds integers or text, never both.
    fn push(&mut self, value: Value, marks: Marks) -> Result<(), sqlx::Error> {
        let kind = match &value {
            Value::Int(_) | Value::MaybeInt(_) => Kind::Int,
            Value::Text(_) | Value::MaybeText(_) => Kind::Text,
        };
        if *self.kind.get_or_insert(kind) != kind {
            return Err(sqlx::Error::Encode(
                "a column of a multi-row statement mixes integers and text".into(),
            ));
        }
        match value {
            Value::Int(v) | Value::MaybeInt(Some(v)) => {
                self.text.push(if self.text.is_empty() { '{' } else { ',' });
                self.text.push_str(&v.to_string());
            }
            Value::MaybeInt(None) => {
                self.text.push(if self.text.is_empty() { '{' } else { ',' });
                self.text.push_str("NULL");
            }
            Value::Text(v) | Value::MaybeText(Some(v)) => {
                self.text.push(marks.separator);
                self.text.push_str(&v);
            }
            Value::MaybeText(None) => {
                self.text.push(marks.separator);
                self.text.push(marks.null);
            }
        }
        Ok(())
    }

    /// The bound text: integers' array literal closed, texts as joined.
    fn finish(mut self) -> String {
        if self.kind == Some(Kind::Int) {
            self.text.push('}');
        }
        self.text
    }
}

/// The separator and the NULL mark for `values`' texts: two characters
/// none of them holds. `None` only if they hold every candidate (some
/// 72,000 characters in one statement): the caller then binds the values
/// one by one.
pub(super) fn marks(values: &[Value]) -> Option<Marks> {
    let candidate = |c: char| {
        c < ' '
            || ('\u{E000}'..='\u{F8FF}').contains(&c)
            || ('\u{F0000}'..='\u{FFFFD}').contains(&c)
    };
    let used: HashSet<char> = values
        .iter()
        .filter_map(|value| match value {
            Value::Text(text) | Value::MaybeText(Some(text)) => Some(text),
            _ => None,
        })
        .flat_map(|text| text.chars().filter(|&c| candidate(c)))
        .collect();
    let mut free = ('\u{1}'..'\u{20}')
        .rev()
        .chain('\u{E000}'..='\u{F8FF}')
        .chain('\u{F0000}'..='\u{FFFFD}')
        .filter(|c| !used.contains(c));
    Some(Marks {
        separator: free.next()?,
        null: free.next()?,
    })
}

/// Two characters that no text of a statement holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marks {
    separator: char,
    null: char,
}

/// The `UNNEST` arguments for `values`, rows of `width`, and the values to
/// bind in order: column `i` is parameter `$first + i`; the separator and
/// the NULL mark follow the columns when one is text.
pub(super) fn unnest(
    values: Vec<Value>,
    width: usize,
    first: usize,
    marks: Marks,
) -> Result<(String, Vec<Value>), sqlx::Error> {
    let mut columns: Vec<Column> = (0..width).map(|_| Column::default()).collect();
    for (n, value) in values.into_iter().enumerate() {
        columns[n % width].push(value, marks)?;
    }
    let has_text = columns.iter().any(|c| c.kind == Some(Kind::Text));
    let (sep_param, null_param) = (first + width, first + width + 1);
    let mut sql = String::new();
    let mut bound = Vec::with_capacity(width + 2);
    for (i, column) in columns.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let param = first + i;
        if column.kind == Some(Kind::Text) {
            sql.push_str(&format!(
                "(string_to_array(${param}, ${sep_param}, ${null_param}))[2:]"
            ));
        } else {
            sql.push_str(&format!("${param}::bigint[]"));
        }
        bound.push(Value::Text(column.finish()));
    }
    if has_text {
        bound.push(Value::Text(marks.separator.to_string()));
        bound.push(Value::Text(marks.null.to_string()));
    }
    Ok((sql, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(texts: &[Option<&str>]) -> Vec<Value> {
        texts
            .iter()
            .map(|text| Value::MaybeText(text.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn marks_are_characters_no_text_holds() {
        let values = texts(&[Some("a\u{1f}b"), Some("\u{1e}"), None, Some("\u{1c}")]);
        let marks = marks(&values).unwrap();
        assert_eq!((marks.separator, marks.null), ('\u{1d}', '\u{1b}'));
    }

    #[test]
    fn marks_reach_the_private_use_characters() {
        let controls: String = ('\u{1}'..'\u{20}').collect();
        let marks = marks(&texts(&[Some(&controls), Some("\u{E000}")])).unwrap();
        assert_eq!((marks.separator, marks.null), ('\u{E001}', '\u{E002}'));
    }

    #[test]
    fn texts_holding_every_candidate_leave_no_marks() {
        let all: String = ('\u{1}'..'\u{20}')
            .chain('\u{E000}'..='\u{F8FF}')
            .chain('\u{F0000}'..='\u{FFFFB}')
            .collect();
        let marks_left = marks(&texts(&[Some(&all)])).unwrap();
        assert_eq!(
            (marks_left.separator, marks_left.null),
            ('\u{FFFFC}', '\u{FFFFD}')
        );
        let all = format!("{all}\u{FFFFC}");
        assert!(marks(&texts(&[Some(&all)])).is_none());
    }

    #[test]
    fn a_column_mixing_integers_and_text_is_refused() {
        let values = vec![Value::Int(1), Value::from("x")];
        let marks = marks(&values).unwrap();
        assert!(unnest(values, 1, 1, marks).is_err());
    }

    #[test]
    fn columns_become_parameters_after_the_first() {
        let values = vec![
            Value::Int(-3),
            Value::from(""),
            Value::MaybeInt(None),
            Value::MaybeText(None),
        ];
        let marks = marks(&values).unwrap();
        let (sql, bound) = unnest(values, 2, 3, marks).unwrap();
        assert_eq!(sql, "$3::bigint[], (string_to_array($4, $5, $6))[2:]");
        assert_eq!(
            bound,
            vec![
                Value::from("{-3,NULL}"),
                Value::from("\u{1f}\u{1f}\u{1e}"),
                Value::from("\u{1f}"),
                Value::from("\u{1e}"),
            ]
        );
    }
}
