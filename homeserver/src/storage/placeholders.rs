//! Placeholders for SQLite. Our SQL is written with PostgreSQL's numbered
//! `$1, $2, ...`; SQLite gets anonymous `?`s, with the values laid out in
//! the order the placeholders appear (repeated where one is used twice).
//!
//! Why not SQLite's own numbered `?NNN`: the driver binds every value by
//! asking SQLite for its parameter's name, and SQLite finds a numbered
//! name by walking the statement's list of names, so binding costs grow
//! with the square of the count. A multi-row insert of 1,280 values spent
//! more time there than in SQLite writing the rows.

use sea_orm::Value;

/// `sql` with each `$N` replaced by `?`, and `values` ordered to match.
/// `$` followed by a digit is always a placeholder: our SQL has no `$` in
/// string literals (values are always bound). A placeholder without a
/// value binds NULL, as SQLite does for an unbound parameter.
pub(super) fn anonymous(sql: &str, values: Vec<Value>) -> (String, Vec<Value>) {
    let mut out = String::with_capacity(sql.len());
    // The value index of each placeholder in order, kept only once they
    // stop being 1, 2, 3, ... (the common case needs no reordering).
    let mut order: Option<Vec<usize>> = None;
    let mut seen = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let digits = from[1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(from.len() - 1);
        match from[1..=digits].parse::<usize>() {
            Ok(n) if n > 0 => {
                out.push('?');
                let index = n - 1;
                match &mut order {
                    Some(order) => order.push(index),
                    None if index == seen => {}
                    None => {
                        let mut v: Vec<usize> = (0..seen).collect();
                        v.push(index);
                        order = Some(v);
                    }
                }
                seen += 1;
            }
            _ => out.push_str(&from[..=digits]),
        }
        rest = &from[1 + digits..];
    }
    out.push_str(rest);
    let values = match order {
        None if seen == values.len() => values,
        None => {
            let mut values = values;
            values.resize(seen, Value::String(None));
            values
        }
        Some(order) => order
            .into_iter()
            .map(|i| values.get(i).cloned().unwrap_or(Value::String(None)))
            .collect(),
    };
    (out, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(values: &[Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| match v {
                Value::String(Some(s)) => s.to_string(),
                Value::String(None) => "NULL".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn abc() -> Vec<Value> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn placeholders_in_order_keep_their_values() {
        let (sql, values) = anonymous("INSERT INTO t VALUES ($1, $2), ($3, 'x')", abc());
        assert_eq!(sql, "INSERT INTO t VALUES (?, ?), (?, 'x')");
        assert_eq!(texts(&values), ["a", "b", "c"]);
    }

    #[test]
    fn reordered_and_repeated_placeholders_repeat_their_values() {
        let (sql, values) = anonymous(
            "SELECT x FROM t WHERE b = $2 AND c = $1 AND d = $2 AND e = $3",
            abc(),
        );
        assert_eq!(
            sql,
            "SELECT x FROM t WHERE b = ? AND c = ? AND d = ? AND e = ?"
        );
        assert_eq!(texts(&values), ["b", "a", "b", "c"]);
        // A repeat after an in-order start.
        let (_, values) = anonymous("WHERE a = $1 AND b = $2 AND c = $1", abc());
        assert_eq!(texts(&values), ["a", "b", "a"]);
    }

    #[test]
    fn numbers_past_nine_are_one_placeholder() {
        let values: Vec<Value> = (1..=12).map(|i| i.to_string().into()).collect();
        let sql: Vec<String> = (1..=12).map(|i| format!("${i}")).collect();
        let (out, bound) = anonymous(&sql.join(","), values);
        assert_eq!(out, ["?"; 12].join(","));
        assert_eq!(bound.len(), 12);
        assert_eq!(texts(&bound)[11], "12");
    }

    #[test]
    fn missing_values_bind_null_and_extra_ones_are_dropped() {
        let (_, values) = anonymous("a = $1 AND b = $2", vec!["a".into()]);
        assert_eq!(texts(&values), ["a", "NULL"]);
        let (_, values) = anonymous("a = $2", abc());
        assert_eq!(texts(&values), ["b"]);
        let (_, values) = anonymous("a = $1", abc());
        assert_eq!(texts(&values), ["a"]);
    }

    #[test]
    fn a_dollar_without_digits_is_left_alone() {
        let (sql, values) = anonymous("SELECT '$' || $1, $x, $", abc());
        assert_eq!(sql, "SELECT '$' || ?, $x, $");
        assert_eq!(texts(&values), ["a"]);
    }
}
