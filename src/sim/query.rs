//! The middleware's generic `query(filters, options)` semantics (`filter_list`), shared by `app.query` and
//! `core.get_jobs`.

use serde_json::Value;

use super::wire::{Failure, EINVAL};

/// Apply `filters` (`[[field, op, value], …]`) and `options` (`get`, `count`, `limit`, `offset`, `order_by`,
/// `select`) to `items`.
pub(crate) fn apply(items: Vec<Value>, filters: &Value, options: &Value) -> Result<Value, Failure> {
    let filters = match filters {
        Value::Null => Vec::new(),
        Value::Array(f) => f.clone(),
        _ => return Err(Failure::invalid("filters", "Input should be a valid list", EINVAL)),
    };
    let mut out = Vec::new();
    for item in items {
        if matches_all(&item, &filters)? {
            out.push(item);
        }
    }
    if let Some(order) = options.get("order_by").and_then(Value::as_array) {
        for key in order.iter().rev().filter_map(Value::as_str) {
            let (desc, field) = match key.strip_prefix('-') {
                Some(f) => (true, f),
                None => (false, key),
            };
            out.sort_by(|a, b| {
                let o = compare(field_of(a, field), field_of(b, field));
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
        }
    }
    let offset = options.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut out: Vec<Value> = out.into_iter().skip(offset).collect();
    if let Some(limit) = options.get("limit").and_then(Value::as_u64).filter(|l| *l > 0) {
        out.truncate(limit as usize);
    }
    if let Some(select) = options.get("select").and_then(Value::as_array).filter(|s| !s.is_empty()) {
        out = out
            .into_iter()
            .map(|item| {
                let mut o = serde_json::Map::new();
                for f in select.iter().filter_map(Value::as_str) {
                    if let Some(v) = field_of(&item, f) {
                        o.insert(f.to_string(), v.clone());
                    }
                }
                Value::Object(o)
            })
            .collect();
    }
    if options.get("count").and_then(Value::as_bool) == Some(true) {
        return Ok(Value::from(out.len()));
    }
    if options.get("get").and_then(Value::as_bool) == Some(true) {
        return match out.into_iter().next() {
            Some(v) => Ok(v),
            // MatchNotFound is not a CallError: it surfaces as errno EINVAL with its repr as the reason.
            None => Err(Failure::call(EINVAL, "MatchNotFound()")),
        };
    }
    Ok(Value::Array(out))
}

fn field_of<'a>(item: &'a Value, field: &str) -> Option<&'a Value> {
    let mut cur = item;
    for part in field.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn matches_all(item: &Value, filters: &[Value]) -> Result<bool, Failure> {
    for f in filters {
        if !matches(item, f)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn matches(item: &Value, filter: &Value) -> Result<bool, Failure> {
    let parts = filter.as_array().ok_or_else(|| Failure::invalid("filters", "Invalid filter", EINVAL))?;
    if parts.len() == 2 && parts[0] == "OR" {
        let alts = parts[1].as_array().cloned().unwrap_or_default();
        for alt in alts {
            let ok = match &alt {
                Value::Array(a) if a.first().is_some_and(Value::is_array) => matches_all(item, a)?,
                _ => matches(item, &alt)?,
            };
            if ok {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if parts.len() != 3 {
        return Err(Failure::invalid("filters", format!("Invalid filter {filter}"), EINVAL));
    }
    let field = parts[0].as_str().unwrap_or_default();
    let op = parts[1].as_str().unwrap_or_default();
    let want = &parts[2];
    let have = field_of(item, field).unwrap_or(&Value::Null);
    let as_str = |v: &Value| v.as_str().map(str::to_string);
    Ok(match op {
        "=" => have == want,
        "!=" => have != want,
        ">" => compare(Some(have), Some(want)).is_gt(),
        ">=" => compare(Some(have), Some(want)).is_ge(),
        "<" => compare(Some(have), Some(want)).is_lt(),
        "<=" => compare(Some(have), Some(want)).is_le(),
        "in" => want.as_array().is_some_and(|w| w.contains(have)),
        "nin" => !want.as_array().is_some_and(|w| w.contains(have)),
        "rin" => have.as_array().is_some_and(|h| h.contains(want)),
        "rnin" => !have.as_array().is_some_and(|h| h.contains(want)),
        "^" => matches!((as_str(have), as_str(want)), (Some(h), Some(w)) if h.starts_with(&w)),
        "!^" => !matches!((as_str(have), as_str(want)), (Some(h), Some(w)) if h.starts_with(&w)),
        "$" => matches!((as_str(have), as_str(want)), (Some(h), Some(w)) if h.ends_with(&w)),
        "!$" => !matches!((as_str(have), as_str(want)), (Some(h), Some(w)) if h.ends_with(&w)),
        "~" => matches!((as_str(have), as_str(want)), (Some(h), Some(w)) if h.contains(&w)),
        other => return Err(Failure::invalid("filters", format!("Invalid operation: {other}"), EINVAL)),
    })
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_options() {
        let items = vec![json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"}), json!({"id": 3, "name": "c"})];
        let cases = [
            (json!([["id", "=", 2]]), json!({}), json!([{"id": 2, "name": "b"}])),
            (json!([["id", "in", [1, 3]]]), json!({"count": true}), json!(2)),
            (json!([]), json!({"order_by": ["-id"], "limit": 1}), json!([{"id": 3, "name": "c"}])),
            (json!([["name", "^", "b"]]), json!({"get": true}), json!({"id": 2, "name": "b"})),
            (
                json!([["OR", [["id", "=", 1], ["id", "=", 3]]]]),
                json!({"select": ["id"]}),
                json!([{"id": 1}, {"id": 3}]),
            ),
        ];
        for (f, o, want) in cases {
            assert_eq!(apply(items.clone(), &f, &o).unwrap(), want, "{f} {o}");
        }
        assert!(apply(items, &json!([["id", "=", 9]]), &json!({"get": true})).is_err());
    }
}
