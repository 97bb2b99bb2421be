//! Validation errors for input objects, named by field path like the API server does.

use thiserror::Error;

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldProblem {
    /// A required field is absent or empty.
    #[error("required field is missing")]
    Missing,
    /// A label selector operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator(String),
    /// `In`/`NotIn` without values.
    #[error("operator {0} needs at least one value")]
    EmptyValues(String),
    /// `Exists`/`DoesNotExist` with values.
    #[error("operator {0} must not have values")]
    UnexpectedValues(String),
    /// A CIDR that does not parse.
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    /// An IP address that does not parse.
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
    /// A protocol other than TCP, UDP or SCTP.
    #[error("unsupported protocol {0:?} (expected TCP, UDP or SCTP)")]
    Protocol(String),
    /// A port number outside 1..=65535.
    #[error("port {0} is outside 1-65535")]
    PortRange(i64),
    /// `endPort` lower than `port`.
    #[error("endPort {end} is lower than port {port}")]
    EndPortBelowPort {
        /// The start of the range.
        port: u16,
        /// The offending end of the range.
        end: i64,
    },
    /// `endPort` without a numeric `port`.
    #[error("endPort requires a numeric port")]
    EndPortNeedsNumber,
    /// A named port that is not a valid IANA service name.
    #[error("invalid port name {0:?} (must be 1-15 characters with at least one letter)")]
    PortName(String),
    /// A policyTypes entry other than Ingress or Egress.
    #[error("invalid policy type {0:?} (expected Ingress or Egress)")]
    PolicyType(String),
    /// A peer without podSelector, namespaceSelector or ipBlock.
    #[error("a peer must set podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    /// A label key that is not a qualified name, or a label value that is not valid.
    #[error("invalid label {0}")]
    Label(String),
    /// An object name the API server would refuse.
    #[error("invalid name {0}")]
    Name(String),
    /// An `except` that is not a strict subset of its `cidr`.
    #[error(
        "except {except} is not inside cidr {cidr} (it must be a smaller range within it, of the same family)"
    )]
    ExceptOutsideCidr {
        /// The except.
        except: String,
        /// Its ipBlock's cidr.
        cidr: String,
    },
    /// A peer with ipBlock and a selector.
    #[error("ipBlock may not be combined with podSelector or namespaceSelector")]
    MixedPeer,
    /// Any other problem, described.
    #[error("{0}")]
    Invalid(String),
}

/// A problem with one field, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// Dotted path of the field, as in API server validation messages.
    pub field: String,
    /// What is wrong with it.
    pub problem: FieldProblem,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, problem: FieldProblem) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}
