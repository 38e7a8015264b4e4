//! Reads `infra/template.yaml`, the one source of truth for table schemas and function settings:
//! the bed creates its tables and sets each function's environment from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_norway::Value;

/// The workspace root (parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub struct Template {
    resources: serde_norway::Mapping,
    parameters: serde_norway::Mapping,
    conditions: serde_norway::Mapping,
}

/// A DynamoDB table as the template declares it.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub logical_id: String,
    pub key_schema: Vec<KeySchemaElement>,
    pub attributes: Vec<AttributeDefinition>,
    pub indexes: Vec<GlobalSecondaryIndex>,
    pub ttl_attribute: Option<String>,
}

impl Template {
    pub fn load() -> Result<Self> {
        Self::from_path(&workspace_root().join("infra/template.yaml"))
    }

    pub fn from_path(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: Value =
            serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let section = |name: &str| {
            doc.get(name)
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        };
        Ok(Self {
            resources: section("Resources"),
            parameters: section("Parameters"),
            conditions: section("Conditions"),
        })
    }

    /// The resource of `logical_id`.
    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources.get(logical_id)
    }

    /// `(logical id, resource)` of every resource of `kind`.
    pub fn resources_of_type<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources.iter().filter_map(move |(id, resource)| {
            (resource.get("Type")?.as_str()? == kind).then_some((id.as_str()?, resource))
        })
    }

    pub fn tables(&self) -> Result<Vec<TableDef>> {
        self.resources_of_type("AWS::DynamoDB::Table")
            .map(|(id, resource)| table_def(id, resource.get("Properties").unwrap_or(&Value::Null)))
            .collect()
    }

    /// The binary a function resource builds.
    pub fn function_binary(&self, logical_id: &str) -> Option<String> {
        let resource = self.resources.get(logical_id)?;
        Some(
            resource
                .get("Metadata")?
                .get("BuildProperties")?
                .get("Binary")?
                .as_str()?
                .to_owned(),
        )
    }

    /// A state machine's `DefinitionUri` and its substitutions: placeholder → the function
    /// resource whose ARN replaces it.
    pub fn state_machine(&self, logical_id: &str) -> Result<(PathBuf, BTreeMap<String, String>)> {
        let props = self
            .resources
            .get(logical_id)
            .and_then(|r| r.get("Properties"))
            .ok_or_else(|| anyhow!("no state machine {logical_id}"))?;
        let uri = props
            .get("DefinitionUri")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{logical_id}: no DefinitionUri"))?;
        let mut substitutions = BTreeMap::new();
        for (k, v) in props
            .get("DefinitionSubstitutions")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let placeholder = k
                .as_str()
                .ok_or_else(|| anyhow!("{logical_id}: bad substitution key"))?;
            // A value (`!Sub`, e.g. the partition's service integration ARN) is not a function:
            // see `state_machine_values`.
            if matches!(v, Value::String(_)) || matches!(v, Value::Tagged(t) if t.tag == "Sub") {
                continue;
            }
            let target = match v {
                Value::Tagged(t) if t.tag == "GetAtt" => t
                    .value
                    .as_str()
                    .and_then(|a| a.strip_suffix(".Arn"))
                    .map(str::to_owned),
                _ => None,
            }
            .ok_or_else(|| {
                anyhow!("{logical_id}.{placeholder}: expected !GetAtt <function>.Arn or !Sub")
            })?;
            substitutions.insert(placeholder.to_owned(), target);
        }
        Ok((workspace_root().join("infra").join(uri), substitutions))
    }

    /// State machine `logical_id`'s substitutions that are values (a string, or `!Sub`), resolved as
    /// [`Template::function_env`] resolves values: placeholder → value.
    pub fn state_machine_values(
        &self,
        logical_id: &str,
        resolve_ref: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        let substitutions = self
            .resources
            .get(logical_id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("DefinitionSubstitutions"))
            .and_then(Value::as_mapping);
        for (k, v) in substitutions.into_iter().flatten() {
            let placeholder = k.as_str().unwrap_or_default().to_owned();
            match v {
                Value::String(text) => {
                    values.insert(placeholder, text.clone());
                }
                Value::Tagged(t) if t.tag == "Sub" => {
                    values.insert(placeholder, self.resolve(v, &resolve_ref)?);
                }
                _ => {}
            }
        }
        Ok(values)
    }

    /// Parameter `name`'s declaration.
    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters.get(name)
    }

    /// State machine `logical_id`'s `Name`, resolved as [`Template::function_env`] resolves values.
    pub fn state_machine_name(
        &self,
        logical_id: &str,
        resolve_ref: impl Fn(&str) -> Option<String>,
    ) -> Result<String> {
        let name = self
            .resources
            .get(logical_id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("Name"))
            .ok_or_else(|| anyhow!("state machine {logical_id} has no Name"))?;
        self.resolve(name, &resolve_ref)
    }

    /// The binaries of every function the template deploys.
    pub fn function_binaries(&self) -> Vec<String> {
        self.resources_of_type("AWS::Serverless::Function")
            .filter_map(|(id, _)| self.function_binary(id))
            .collect()
    }

    pub fn is_parameter(&self, name: &str) -> bool {
        self.parameters.contains_key(name)
    }

    /// Every parameter: name, default (as the template writes it), description.
    pub fn parameter_docs(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.parameters
            .iter()
            .filter_map(|(name, p)| {
                let text = |v: &Value| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                };
                Some((
                    name.as_str()?.to_owned(),
                    p.get("Default").and_then(text),
                    p.get("Description").and_then(text),
                ))
            })
            .collect()
    }

    /// Environment values written as literals (a tunable should be a parameter), as problems.
    pub fn literal_environment_values(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (id, function) in self.resources_of_type("AWS::Serverless::Function") {
            let vars = function
                .get("Properties")
                .and_then(|p| p.get("Environment"))
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping);
            for (k, v) in vars.into_iter().flatten() {
                if !matches!(v, Value::Tagged(t) if t.tag == "Ref" || t.tag == "GetAtt" || t.tag == "Sub" || t.tag == "If")
                {
                    problems.push(format!(
                        "{id}.{}: a literal, not a parameter",
                        k.as_str().unwrap_or("?")
                    ));
                }
            }
        }
        problems
    }

    /// The environment a function gets when deployed, with `!Ref`s resolved by `resolve_ref`
    /// (table names, `AWS::AccountId`); parameters resolve to their defaults.
    pub fn function_env(
        &self,
        binary: &str,
        resolve_ref: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        let (id, function) = self
            .resources_of_type("AWS::Serverless::Function")
            .find(|(_, function)| {
                let built = || {
                    function
                        .get("Metadata")?
                        .get("BuildProperties")?
                        .get("Binary")?
                        .as_str()
                };
                built() == Some(binary)
            })
            .ok_or_else(|| anyhow!("no function with binary `{binary}` in the template"))?;
        let props = function.get("Properties").unwrap_or(&Value::Null);
        let Some(vars) = props
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping)
        else {
            return Ok(BTreeMap::new());
        };
        vars.iter()
            .map(|(k, v)| {
                let key = k
                    .as_str()
                    .ok_or_else(|| anyhow!("{id}: env key is not a string"))?;
                Ok((
                    key.to_owned(),
                    self.resolve(v, &resolve_ref)
                        .with_context(|| format!("{id}.{key}"))?,
                ))
            })
            .collect()
    }

    fn resolve(
        &self,
        value: &Value,
        resolve_ref: &impl Fn(&str) -> Option<String>,
    ) -> Result<String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                let name = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| anyhow!("!Ref of a non-string"))?;
                self.reference(name, resolve_ref)
            }
            // `!Sub "${AWS::StackName}-atomic-switch"`: each `${Name}` resolved as a `!Ref`.
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                let mut text = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| anyhow!("!Sub of a non-string"))?
                    .to_owned();
                while let Some(start) = text.find("${") {
                    let end = start
                        + text[start..]
                            .find('}')
                            .ok_or_else(|| anyhow!("unclosed ${{ in !Sub {text}"))?;
                    let value = self.reference(&text[start + 2..end], resolve_ref)?;
                    text.replace_range(start..=end, &value);
                }
                Ok(text)
            }
            // `!GetAtt Resource.Attribute`, resolved as a reference to `Resource.Attribute`.
            Value::Tagged(tagged) if tagged.tag == "GetAtt" => {
                let name = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| anyhow!("!GetAtt of a non-string"))?;
                resolve_ref(name).ok_or_else(|| anyhow!("!GetAtt {name}: unknown here"))
            }
            // `!If [condition, then, else]`, the condition evaluated as deployed here.
            Value::Tagged(tagged) if tagged.tag == "If" => match tagged.value.as_sequence() {
                Some(branches) if branches.len() == 3 => {
                    let name = branches[0]
                        .as_str()
                        .ok_or_else(|| anyhow!("!If without a condition name"))?;
                    let condition = self
                        .conditions
                        .get(name)
                        .ok_or_else(|| anyhow!("no condition {name}"))?;
                    let chosen = if self.holds(condition, resolve_ref)? {
                        1
                    } else {
                        2
                    };
                    self.resolve(&branches[chosen], resolve_ref)
                }
                _ => bail!("!If needs three items"),
            },
            other => bail!("unsupported value {other:?}"),
        }
    }

    /// A condition of the template (`!Equals`, `!Not`, `!And`, `!Or`, `!Condition`).
    fn holds(
        &self,
        condition: &Value,
        resolve_ref: &impl Fn(&str) -> Option<String>,
    ) -> Result<bool> {
        let Value::Tagged(tagged) = condition else {
            bail!("unsupported condition {condition:?}")
        };
        let items = || {
            tagged
                .value
                .as_sequence()
                .ok_or_else(|| anyhow!("!{} needs a list", tagged.tag))
        };
        match tagged.tag.to_string().trim_start_matches('!') {
            "Equals" => match items()?.as_slice() {
                [a, b] => Ok(self.resolve(a, resolve_ref)? == self.resolve(b, resolve_ref)?),
                _ => bail!("!Equals needs two items"),
            },
            "Not" => match items()?.as_slice() {
                [c] => Ok(!self.holds(c, resolve_ref)?),
                _ => bail!("!Not needs one item"),
            },
            "And" => items()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.holds(c, resolve_ref)?)),
            "Or" => items()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.holds(c, resolve_ref)?)),
            "Condition" => {
                let name = tagged
                    .value
                    .as_str()
                    .ok_or_else(|| anyhow!("!Condition of a non-string"))?;
                let condition = self
                    .conditions
                    .get(name)
                    .ok_or_else(|| anyhow!("no condition {name}"))?;
                self.holds(condition, resolve_ref)
            }
            other => bail!("unsupported condition !{other}"),
        }
    }

    /// `!Ref name`: what `resolve_ref` says, else the parameter's default.
    fn reference(
        &self,
        name: &str,
        resolve_ref: &impl Fn(&str) -> Option<String>,
    ) -> Result<String> {
        if let Some(resolved) = resolve_ref(name) {
            return Ok(resolved);
        }
        let default = self
            .parameters
            .get(name)
            .and_then(|p| p.get("Default"))
            .ok_or_else(|| anyhow!("cannot resolve !Ref {name}"))?;
        self.resolve(default, resolve_ref)
    }
}

fn table_def(logical_id: &str, props: &Value) -> Result<TableDef> {
    let list = |name: &str| {
        props
            .get(name)
            .and_then(Value::as_sequence)
            .ok_or_else(|| anyhow!("{logical_id}: no {name}"))
    };
    let text = |v: &Value, name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{logical_id}: entry without {name}"))
    };
    let keys = |schema: &[Value]| {
        schema
            .iter()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(text(k, "AttributeName")?)
                    .key_type(KeyType::from(text(k, "KeyType")?.as_str()))
                    .build()?)
            })
            .collect::<Result<Vec<_>>>()
    };
    let key_schema = keys(list("KeySchema")?)?;
    let indexes = props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|index| {
            let schema = index
                .get("KeySchema")
                .and_then(Value::as_sequence)
                .ok_or_else(|| anyhow!("{logical_id}: index without KeySchema"))?;
            let projection = index
                .get("Projection")
                .and_then(|p| p.get("ProjectionType"))
                .and_then(Value::as_str)
                .unwrap_or("ALL");
            Ok(GlobalSecondaryIndex::builder()
                .index_name(text(index, "IndexName")?)
                .set_key_schema(Some(keys(schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection))
                        .build(),
                )
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let attributes = list("AttributeDefinitions")?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    text(a, "AttributeType")?.as_str(),
                ))
                .build()?)
        })
        .collect::<Result<_>>()?;
    if props.get("BillingMode").and_then(Value::as_str) != Some("PAY_PER_REQUEST") {
        bail!("{logical_id}: the bed only creates PAY_PER_REQUEST tables");
    }
    let ttl_attribute = props
        .get("TimeToLiveSpecification")
        .filter(|t| t.get("Enabled").and_then(Value::as_bool) == Some(true))
        .and_then(|t| t.get("AttributeName"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(TableDef {
        logical_id: logical_id.to_owned(),
        key_schema,
        attributes,
        indexes,
        ttl_attribute,
    })
}

impl TableDef {
    /// Creates this table as `name` and turns its TTL on.
    pub async fn create(&self, ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
        ddb.create_table()
            .table_name(name)
            .set_key_schema(Some(self.key_schema.clone()))
            .set_attribute_definitions(Some(self.attributes.clone()))
            .set_global_secondary_indexes((!self.indexes.is_empty()).then(|| self.indexes.clone()))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .with_context(|| format!("creating table {name}"))?;
        if let Some(attribute) = &self.ttl_attribute {
            ddb.update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("TTL on {name}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_quarantine_table_and_the_handler_env() {
        let template = Template::load().unwrap();
        let tables = template.tables().unwrap();
        let quarantine = tables
            .iter()
            .find(|t| t.logical_id == "QuarantineTable")
            .unwrap();
        assert_eq!(quarantine.key_schema[0].attribute_name(), "pool");
        assert_eq!(quarantine.ttl_attribute.as_deref(), Some("expires_at"));
        let waste = tables
            .iter()
            .find(|t| t.logical_id == "WasteTable")
            .unwrap();
        assert_eq!(waste.indexes[0].index_name(), "by-scope");
        assert_eq!(waste.indexes[0].key_schema()[0].attribute_name(), "scope");
        let env = template
            .function_env("interruption-handler", |name| match name {
                "QuarantineTable" => Some("q-1".into()),
                "AccountsTable" => Some("a-1".into()),
                "AWS::AccountId" => Some("123456789012".into()),
                "EmergencyFailoverStateMachine" => Some("arn:sm".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(env["QUARANTINE_TABLE"], "q-1");
        assert_eq!(env["HOME_ACCOUNT_ID"], "123456789012");
        assert_eq!(env["DEFAULT_ENVIRONMENT"], "PROD");
        assert_eq!(env["QUARANTINE_SECONDS_INTERRUPTION"], "1296000");
    }
}
