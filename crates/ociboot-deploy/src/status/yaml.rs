//! The YAML of `status --format yaml`: block style over the JSON value of the typed
//! [`Host`](super::Host), keys in the JSON's (sorted) order, strings double-quoted (JSON
//! escapes, which YAML's double-quoted style shares) wherever a plain scalar could be misread.

use serde_json::Value;

/// YAML for a JSON value: block style, strings double-quoted where YAML would misread them.
pub(super) fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => {
                let plain = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./@+:".contains(c))
                    && !s.contains(": ")
                    && !s.ends_with(':')
                    && !matches!(
                        s.as_str(),
                        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                    )
                    && s.parse::<f64>().is_err()
                    && !s.starts_with(['-', ':', '@', '.']);
                if plain {
                    s.clone()
                } else {
                    Value::String(s.clone()).to_string()
                }
            }
            _ => unreachable!("only scalars"),
        }
    }
    fn rec(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::Object(o) if !o.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            rec(x, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            rec(x, indent, out);
                        }
                        Value::Object(_) => out.push_str(&format!("{pad}{k}: {{}}\n")),
                        Value::Array(_) => out.push_str(&format!("{pad}{k}: []\n")),
                        _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(x))),
                    }
                }
            }
            Value::Array(a) => {
                for x in a {
                    match x {
                        Value::Object(_) | Value::Array(_) => {
                            let mut inner = String::new();
                            rec(x, indent + 2, &mut inner);
                            let trimmed = inner.trim_start();
                            out.push_str(&format!("{pad}- {trimmed}"));
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", scalar(x))),
                    }
                }
            }
            _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
        }
    }
    let mut out = String::new();
    rec(v, 0, &mut out);
    out
}
