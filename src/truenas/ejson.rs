//! Decoding of the middleware's "ejson" extensions (`$date`, `$set`, …) into plain JSON the tools can use.
//!
//! The server serialises Python datetimes, sets, times, dates and IP interfaces as single-key objects (wire protocol
//! reference §1.7). We turn them into the plain JSON a caller expects: RFC 3339 strings, arrays and strings.

use serde_json::{Map, Value};

/// Replace every ejson wrapper in `value` (recursively) by its plain JSON form.
pub fn decode(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(decode).collect()),
        Value::Object(map) => decode_object(map),
        other => other,
    }
}

fn decode_object(map: Map<String, Value>) -> Value {
    if map.len() == 1 {
        let (key, inner) = map.iter().next().expect("one entry");
        match (key.as_str(), inner) {
            ("$date", Value::Number(n)) => {
                if let Some(ms) = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)) {
                    return Value::String(crate::clock::rfc3339_from_millis(ms));
                }
            }
            ("$set", Value::Array(_)) => {
                let Some(Value::Array(items)) = map.into_iter().next().map(|x| x.1) else { unreachable!() };
                return Value::Array(items.into_iter().map(decode).collect());
            }
            ("$time", Value::String(_))
            | ("$ipv4_interface", Value::String(_))
            | ("$ipv6_interface", Value::String(_)) => {
                return inner.clone();
            }
            _ => {}
        }
    }
    if map.len() == 2 && map.get("$type").and_then(Value::as_str) == Some("date") {
        if let Some(Value::String(day)) = map.get("$value") {
            return Value::String(day.clone());
        }
    }
    Value::Object(map.into_iter().map(|(k, v)| (k, decode(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrappers_become_plain_json() {
        let cases = [
            (json!({"$date": 0}), json!("1970-01-01T00:00:00.000Z")),
            (json!({"$date": 1571300596053i64}), json!("2019-10-17T08:23:16.053Z")),
            (json!({"$date": 951782400000i64}), json!("2000-02-29T00:00:00.000Z")),
            (json!({"$set": ["APPS_READ", {"$set": [1]}]}), json!(["APPS_READ", [1]])),
            (json!({"$time": "12:30:00"}), json!("12:30:00")),
            (json!({"$type": "date", "$value": "2025-01-02"}), json!("2025-01-02")),
            (json!({"$ipv4_interface": "10.0.0.2/24"}), json!("10.0.0.2/24")),
            (json!({"$ipv6_interface": "fd00::1/64"}), json!("fd00::1/64")),
            (
                json!({"time_started": {"$date": 1000}, "roles": {"$set": []}, "n": 1}),
                json!({"time_started": "1970-01-01T00:00:01.000Z", "roles": [], "n": 1}),
            ),
            // Look-alikes stay as they are.
            (json!({"$date": "yesterday"}), json!({"$date": "yesterday"})),
            (json!({"$set": [1], "x": 2}), json!({"$set": [1], "x": 2})),
            (json!({"$type": "datetime", "$value": "x"}), json!({"$type": "datetime", "$value": "x"})),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input.clone()), want, "for {input}");
        }
    }
}
