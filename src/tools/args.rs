//! Typed arguments: every handler takes its own `#[derive(Deserialize)]` struct (next to the handler), which the
//! gate in `Tools::call` parses once from the schema-validated, defaulted arguments.
//!
//! The input schemas in `catalogue.rs` state every default, once; the structs state none
//! (`deny_unknown_fields`, no `#[serde(default)]`), so a field is required in Rust exactly when the schema requires
//! it or gives it a default. `every_argument_struct_agrees_with_its_schema` checks that for every tool.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Outcome, Tools};
use crate::mcp::tool::CallContext;

/// A call whose arguments are parsed, ready to run.
pub type Prepared = Box<dyn FnOnce(&Tools, &CallContext) -> Outcome>;

/// Parse a call's arguments into the handler's struct; `Err` says why they do not fit.
type Prepare = dyn Fn(&Value) -> Result<Prepared, String> + Send + Sync;

/// A tool's handler with its argument type erased: parse, then run.
pub struct Handler {
    prepare: Box<Prepare>,
    /// The argument struct's field names (for the agreement test).
    #[cfg(test)]
    pub(super) fields: fn() -> &'static [&'static str],
}

impl Handler {
    pub fn typed<A: DeserializeOwned + 'static>(run: fn(&Tools, A, &CallContext) -> Outcome) -> Handler {
        Handler {
            prepare: Box::new(move |args| {
                let args = A::deserialize(args).map_err(|e| e.to_string())?;
                Ok(Box::new(move |tools: &Tools, ctx: &CallContext| run(tools, args, ctx)) as Prepared)
            }),
            #[cfg(test)]
            fields: field_names::<A>,
        }
    }

    /// Parse `args` (validated against the schema, defaults filled in) into the handler's argument struct.
    pub fn prepare(&self, args: &Value) -> Result<Prepared, String> {
        (self.prepare)(args)
    }
}

/// The field names a derived `Deserialize` struct declares: it hands them to `deserialize_struct`.
#[cfg(test)]
fn field_names<A: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};

    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = serde_json::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Error::custom("names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = A::deserialize(Names(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::Deserialize;
    use serde_json::{json, Map};

    use super::*;
    use crate::jsonschema;

    /// A value the property schema accepts (the schema's default when it has one).
    fn sample(schema: &Value) -> Value {
        if let Some(d) = schema.get("default") {
            return d.clone();
        }
        if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return first.clone();
        }
        match schema["type"].as_str() {
            Some("string") => json!("a"),
            Some("integer") | Some("number") => schema.get("minimum").cloned().unwrap_or(json!(1)),
            Some("boolean") => json!(false),
            Some("object") => json!({}),
            Some("array") => json!([]),
            _ => Value::Null,
        }
    }

    /// Every way a struct and a schema can disagree, as a list of problems (empty: they agree).
    fn disagreements(schema: &Value, fields: &[&str], parse: &dyn Fn(Value) -> Result<(), String>) -> Vec<String> {
        let mut problems = Vec::new();
        let props = schema["properties"].as_object().cloned().unwrap_or_default();
        let required: BTreeSet<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let schema_names: BTreeSet<&str> = props.keys().map(String::as_str).collect();
        let struct_names: BTreeSet<&str> = fields.iter().copied().collect();
        if schema_names != struct_names {
            problems.push(format!("schema properties {schema_names:?} != struct fields {struct_names:?}"));
        }
        // What the server hands over for the smallest call: the required values, every default filled in.
        let mut minimal = Map::new();
        for r in &required {
            minimal.insert(r.to_string(), props.get(*r).map(sample).unwrap_or(Value::Null));
        }
        let mut minimal = Value::Object(minimal);
        jsonschema::apply_defaults(schema, &mut minimal);
        if let Err(e) = jsonschema::validate(schema, &minimal) {
            problems.push(format!("the minimal call {minimal} is not valid: {e:?}"));
        }
        if let Err(e) = parse(minimal.clone()) {
            problems.push(format!("the minimal call {minimal} does not parse: {e}"));
        }
        for (name, prop) in &props {
            let needed = required.contains(name.as_str()) || prop.get("default").is_some();
            let mut without = minimal.clone();
            without.as_object_mut().unwrap().remove(name);
            match (needed, parse(without).is_ok()) {
                // A default of the struct's own (or an Option) would restate or contradict the schema's.
                (true, true) => {
                    problems.push(format!("{name}: the schema requires or defaults it, the struct does not"))
                }
                (false, false) => problems.push(format!("{name}: optional in the schema, required by the struct")),
                _ => {}
            }
            let mut with = minimal.clone();
            with[name.as_str()] = sample(prop);
            if let Err(e) = parse(with) {
                problems.push(format!("{name}: a valid value does not parse: {e}"));
            }
        }
        let mut unknown = minimal;
        unknown["not_in_the_schema"] = json!(true);
        if parse(unknown).is_ok() {
            problems.push("an unknown field parses (deny_unknown_fields missing)".into());
        }
        problems
    }

    #[test]
    fn every_argument_struct_agrees_with_its_schema() {
        for spec in super::super::catalogue::specs() {
            let parse = |v: Value| spec.handler.prepare(&v).map(drop);
            let problems = disagreements(&spec.def.input_schema, (spec.handler.fields)(), &parse);
            assert!(problems.is_empty(), "{}: {problems:#?}", spec.def.name);
        }
    }

    /// The check fails for each way a struct can drift from its schema.
    #[test]
    fn the_agreement_check_catches_drift() {
        fn check<A: DeserializeOwned + 'static>(schema: &Value) -> Vec<String> {
            let parse = |v: Value| serde_json::from_value::<A>(v).map(drop).map_err(|e| e.to_string());
            disagreements(schema, field_names::<A>(), &parse)
        }
        let schema = json!({"type": "object", "additionalProperties": false, "required": ["app_name"],
            "properties": {"app_name": {"type": "string"}, "wait": {"type": "boolean", "default": true},
                "service_name": {"type": "string"}}});

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Agrees {
            app_name: String,
            wait: bool,
            service_name: Option<String>,
        }
        assert_eq!(check::<Agrees>(&schema), Vec::<String>::new());

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct OwnDefault {
            app_name: String,
            #[serde(default)]
            wait: bool,
            service_name: Option<String>,
        }
        assert!(check::<OwnDefault>(&schema).iter().any(|p| p.starts_with("wait:")));

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Extra {
            app_name: String,
            wait: bool,
            service_name: Option<String>,
            lines: Option<u32>,
        }
        assert!(check::<Extra>(&schema).iter().any(|p| p.contains("!= struct fields")));

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Missing {
            app_name: String,
            wait: bool,
        }
        assert!(!check::<Missing>(&schema).is_empty());

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Lenient {
            app_name: String,
            wait: bool,
            service_name: Option<String>,
        }
        assert!(check::<Lenient>(&schema).iter().any(|p| p.contains("deny_unknown_fields")));

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct WrongType {
            app_name: String,
            wait: u64,
            service_name: Option<String>,
        }
        assert!(!check::<WrongType>(&schema).is_empty());

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct RequiresOptional {
            app_name: String,
            wait: bool,
            service_name: String,
        }
        assert!(check::<RequiresOptional>(&schema).iter().any(|p| p.starts_with("service_name:")));
    }
}
