//! Compiled label selectors (`matchLabels` + `matchExpressions`, ANDed).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::error::{FieldError, FieldProblem};
use super::model::Labels;
use super::names::{label_key_problem, label_value_problem};

/// A validated label selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Box<[Requirement]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(Box<[String]>),
    NotIn(Box<[String]>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// Compiles a selector; `None` and `{}` (including `matchLabels: null`) select everything.
    ///
    /// `field` is the selector's path, used in errors.
    pub fn compile(sel: Option<&LabelSelector>, field: &str) -> Result<Self, FieldError> {
        let Some(sel) = sel else {
            return Ok(Self::default());
        };
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            let at = format!("{field}.matchLabels");
            if let Some(problem) = label_key_problem(key) {
                return Err(FieldError::new(
                    at,
                    FieldProblem::Label(format!("key {key:?}: {problem}")),
                ));
            }
            if let Some(problem) = label_value_problem(value) {
                return Err(FieldError::new(
                    format!("{at}.{key}"),
                    FieldProblem::Label(format!("value {value:?}: {problem}")),
                ));
            }
            requirements.push(Requirement {
                key: key.clone(),
                op: Op::In(Box::new([value.clone()])),
            });
        }
        for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let field = format!("{field}.matchExpressions[{i}]");
            if expr.key.is_empty() {
                return Err(FieldError::new(
                    format!("{field}.key"),
                    FieldProblem::Missing,
                ));
            }
            if let Some(problem) = label_key_problem(&expr.key) {
                return Err(FieldError::new(
                    format!("{field}.key"),
                    FieldProblem::Label(format!("key {:?}: {problem}", expr.key)),
                ));
            }
            for (j, value) in expr.values.iter().flatten().enumerate() {
                if let Some(problem) = label_value_problem(value) {
                    return Err(FieldError::new(
                        format!("{field}.values[{j}]"),
                        FieldProblem::Label(format!("value {value:?}: {problem}")),
                    ));
                }
            }
            let mut values: Vec<String> = expr.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{field}.values"),
                        FieldProblem::EmptyValues(expr.operator.clone()),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(FieldError::new(
                        format!("{field}.values"),
                        FieldProblem::UnexpectedValues(expr.operator.clone()),
                    ));
                }
                "In" => Op::In(values.into()),
                "NotIn" => Op::NotIn(values.into()),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(FieldError::new(
                        format!("{field}.operator"),
                        FieldProblem::UnknownOperator(other.to_owned()),
                    ));
                }
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Ok(Self {
            requirements: requirements.into(),
        })
    }

    /// True if the selector has no requirements and so selects every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement. `NotIn` and `DoesNotExist` match objects
    /// that lack the key; `In` and `Exists` need it.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}
