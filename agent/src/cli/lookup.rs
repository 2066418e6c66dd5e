//! `agent lookup KEY…`: a Hiera lookup as the node sees it, like `puppet
//! lookup`: the first key found wins, `--default` when none is, `--type`
//! checks the value as Puppet's data types do, `--facts FILE` sets facts,
//! `--render-as s|json|yaml` picks the output (with `--explain`, every
//! level searched).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::engine::data_type::DataType;
use crate::engine::hiera::{HieraError, Merge};
use crate::engine::{compile, facts, report};
use crate::settings::Settings;

/// Flags of `agent lookup`.
#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    /// Keys to look up (`pgsql_server::db_name`, dotted to dig into a hash:
    /// `cluster.hosts.0`); with several, the first one found is printed, as
    /// `puppet lookup` does.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    /// Show every hierarchy level searched and what each held.
    #[arg(long)]
    pub explain: bool,
    /// Merge strategy, overriding the key's `lookup_options`.
    #[arg(long, value_parser = ["first", "unique", "hash", "deep"])]
    pub merge: Option<String>,
    /// Print Sensitive values in clear.
    #[arg(long)]
    pub show_sensitive: bool,
    /// Output: `yaml` (default: YAML that a YAML 1.1 reader such as
    /// Python's `yaml.safe_load` loads back to the same value), `json`, or
    /// `s` (Puppet's plain string form: a string unquoted).
    #[arg(long, value_enum, default_value_t = RenderAs::Yaml, value_name = "FORMAT")]
    pub render_as: RenderAs,
    /// The Puppet data type the value must have (`String`, `Integer[0,
    /// 65535]`, `Boolean`, `Array[String]`, `Hash`, `Optional[String]`,
    /// `Enum[a, b]`, `Variant[…]`); a value of another type is an error.
    #[arg(long = "type", value_name = "TYPE")]
    pub data_type: Option<DataType>,
    /// The value (a string) when no key is found; checked against `--type`.
    #[arg(long, value_name = "VALUE")]
    pub default: Option<String>,
    /// A YAML or JSON file of facts that replace the node's own (top-level
    /// names, as `puppet lookup --facts`); facts it does not name are still
    /// read from the node.
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
}

/// `--render-as` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderAs {
    /// Puppet's string form.
    S,
    /// Compact JSON.
    Json,
    /// Block YAML.
    Yaml,
}

pub fn run(settings: &Settings, args: LookupArgs) -> Result<u8> {
    // Only the facts the hierarchy and the data interpolate are read.
    let facts = Arc::new(facts::Facts::new(settings.fact_opts.clone()));
    if let Some(file) = &args.facts {
        facts.extend(load_facts_file(file)?);
    }
    let node = settings.node_name(&facts)?;
    let scope = compile::NodeScope::new(facts, &node, &settings.roles(&node)?);
    let hiera = settings.hiera()?;
    let merge = args
        .merge
        .as_deref()
        .map(|m| Merge::parse(m).map_err(|e| anyhow::anyhow!("bad --merge: {e}")))
        .transpose()?;
    let show = args.show_sensitive;
    let print = |text: &str| {
        if show {
            report::print_raw(text)
        } else {
            report::print(text)
        }
    };
    let mut found = None;
    let mut not_found = Vec::new();
    for key in &args.keys {
        let res = if args.explain {
            let (res, text) = hiera.explain(key, &scope, merge, show);
            print(&text);
            res
        } else {
            hiera.lookup(key, &scope, merge)
        };
        match res {
            Ok(f) => {
                found = Some(f);
                break;
            }
            Err(e @ HieraError::NotFound { .. }) => not_found.push(e),
            Err(e) => return Err(e.into()),
        }
    }
    let (value, sensitive) = match (found, &args.default) {
        (Some(f), _) => {
            if let Some(t) = &args.data_type {
                t.check("Found value", &f.value)
                    .map_err(anyhow::Error::msg)?;
            }
            (f.value, f.sensitive)
        }
        (None, Some(default)) => {
            let v = Value::String(default.clone());
            if let Some(t) = &args.data_type {
                t.check("Default value", &v).map_err(anyhow::Error::msg)?;
            }
            (v, false)
        }
        (None, None) => {
            let mut errors = not_found.into_iter().map(anyhow::Error::new);
            let first = errors.next().context("no key given")?;
            if args.keys.len() == 1 {
                return Err(first);
            }
            return Err(first.context(format!(
                "none of {} has a value (give --default to print one)",
                args.keys.join(", ")
            )));
        }
    };
    if args.explain {
        return Ok(0);
    }
    let value = if sensitive && !show {
        Value::String("Sensitive [value redacted]".into())
    } else {
        value
    };
    print(&render(&value, args.render_as));
    Ok(0)
}

/// `v` as `--render-as` asks.
pub fn render(v: &Value, how: RenderAs) -> String {
    match how {
        RenderAs::Yaml => crate::yaml::to_string(v),
        RenderAs::Json => v.to_string(),
        RenderAs::S => match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => puppet_string(other),
        },
    }
}

/// Puppet's `to_s` of a value inside a collection: strings quoted, hashes
/// as `{"k" => v}`, undef as `undef`... the `s` rendering Puppet prints.
fn puppet_string(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(puppet_string).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{}=>{}", Value::String(k.clone()), puppet_string(x)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// The facts of `--facts FILE`: a YAML (typed as Puppet's YAML reader
/// types it) or JSON mapping of top-level facts.
fn load_facts_file(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the --facts file {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json")
        || (!path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && text.trim_start().starts_with('{'));
    let value = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), e.line()))?
    } else {
        crate::yaml::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), e.mark.line, e.describe()))?
            .to_json_with(crate::yaml::yaml11::resolve)
    };
    match value {
        Value::Object(map) => Ok(map),
        other => bail!(
            "{}: the --facts file must hold a mapping of fact names to values, not {}\n\
             hint: write one fact a line, `operatingsystem: Debian`",
            path.display(),
            crate::engine::data_type::type_of(&other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_s_form_is_puppets() {
        let v = json!({"hash": {"a": 1, "b": {"c": false}}, "list": [1, "two", true, null]});
        assert_eq!(
            render(&v, RenderAs::S),
            r#"{"hash"=>{"a"=>1, "b"=>{"c"=>false}}, "list"=>[1, "two", true, nil]}"#
        );
        assert_eq!(render(&json!("os-file"), RenderAs::S), "os-file");
        assert_eq!(render(&json!(null), RenderAs::S), "");
        assert_eq!(render(&json!(true), RenderAs::S), "true");
        assert_eq!(render(&json!({"a": [1]}), RenderAs::Json), r#"{"a":[1]}"#);
    }
}
