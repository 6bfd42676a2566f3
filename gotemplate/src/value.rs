//! Template values with the Go types consul-template hands to text/template.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A value as Go's text/template would hold it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Val {
    /// A nil interface: JSON `null`, a missing map key.
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(Rc<str>),
    /// `json.Number`: a number from Vault's JSON, kept as written (its kind is string).
    Num(Rc<str>),
    /// `int` (literals, `len`, math).
    Int(i64),
    /// `float64` (float literals, `parseJSON` numbers).
    Float(f64),
    /// `[]interface{}`.
    List(Rc<Vec<Val>>),
    /// `[]string` (`split`, `secrets`, a secret's warnings).
    Strs(Rc<Vec<String>>),
    /// `map[string]interface{}`.
    Map(Rc<BTreeMap<String, Val>>),
    /// `*dependency.Secret` from `secret`.
    Secret(Rc<Secret>),
    /// `dependency.PemEncoded` from `pkiCert`.
    Pem(Rc<Pem>),
}

/// consul-template's view of a Vault response (`*dependency.Secret`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Secret {
    /// `.RequestID`.
    pub request_id: String,
    /// `.LeaseID`.
    pub lease_id: String,
    /// `.LeaseDuration` (seconds).
    pub lease_duration: i64,
    /// `.Renewable`.
    pub renewable: bool,
    /// `.Data`: a `Val::Map` (or `Val::Nil` when Vault sent none).
    pub data: Val,
    /// `.Warnings`.
    pub warnings: Vec<String>,
}

/// The PEMs of `pkiCert`: `.Cert`, `.Key`, `.CA` (also under `.Data`; consul-template's
/// `PemEncoded` as OpenBao's agent ships it has no `.CAChain`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pem {
    /// The certificate PEM (with a trailing newline).
    pub cert: String,
    /// The private key PEM.
    pub key: String,
    /// The issuing CA PEM.
    pub ca: String,
}

impl Val {
    /// A `string`.
    pub fn str(s: impl Into<Rc<str>>) -> Val {
        Val::Str(s.into())
    }

    /// Go's `%T` of the value (used in error texts such as `%!d(string=x)`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Str(_) => "string",
            Val::Num(_) => "json.Number",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::List(_) => "[]interface {}",
            Val::Strs(_) => "[]string",
            Val::Map(_) => "map[string]interface {}",
            Val::Secret(_) => "*dependency.Secret",
            Val::Pem(_) => "dependency.PemEncoded",
        }
    }

    /// Go's truth: false, 0, "", nil and empty collections are false; structs are true.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Str(s) | Val::Num(s) => !s.is_empty(),
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::List(l) => !l.is_empty(),
            Val::Strs(l) => !l.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Secret(_) | Val::Pem(_) => true,
        }
    }

    /// The text of a string-kind value (`string`, `json.Number`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) | Val::Num(s) => Some(s),
            _ => None,
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)` with `e+06` exponents).
pub fn go_float_g(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (digits, exp) = shortest_digits(f);
    let neg = if f < 0.0 { "-" } else { "" };
    // strconv 'g' with the shortest precision decides with precision 6.
    if !(-4..6).contains(&exp) {
        format!("{neg}{}", exp_form(&digits, exp))
    } else {
        format!("{neg}{}", plain_form(&digits, exp))
    }
}

/// Go's JSON encoding of a float64 ('f', or 'e' below 1e-6 / from 1e21, `e-07` -> `e-7`).
pub fn go_float_json(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let abs = f.abs();
    let (digits, exp) = shortest_digits(f);
    let neg = if f < 0.0 { "-" } else { "" };
    if !(1e-6..1e21).contains(&abs) {
        let e = exp_form(&digits, exp);
        // Go trims "e-07" to "e-7" in JSON.
        let e = match e.find("e-0") {
            Some(i) => format!("{}e-{}", &e[..i], &e[i + 3..]),
            None => e,
        };
        format!("{neg}{e}")
    } else {
        format!("{neg}{}", plain_form(&digits, exp))
    }
}

/// Shortest round-trip decimal digits of |f| and the decimal exponent of the first digit.
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn exp_form(digits: &str, exp: i32) -> String {
    let (first, rest) = digits.split_at(1.min(digits.len()));
    let sign = if exp < 0 { '-' } else { '+' };
    let e = exp.abs();
    if rest.is_empty() {
        format!("{first}e{sign}{e:02}")
    } else {
        format!("{first}.{rest}e{sign}{e:02}")
    }
}

fn plain_form(digits: &str, exp: i32) -> String {
    let nd = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= nd {
        format!("{digits}{}", "0".repeat((exp + 1 - nd) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        for (f, v, j) in [
            (1e6, "1e+06", "1000000"),
            (123456.0, "123456", "123456"),
            (1234567.0, "1.234567e+06", "1234567"),
            (1e20, "1e+20", "100000000000000000000"),
            (1e21, "1e+21", "1e+21"),
            (0.0001, "0.0001", "0.0001"),
            (0.00001, "1e-05", "0.00001"),
            (1e-7, "1e-07", "1e-7"),
            (1.5, "1.5", "1.5"),
            (100.0, "100", "100"),
            (-2.25, "-2.25", "-2.25"),
        ] {
            assert_eq!(go_float_g(f), v, "{f} %v");
            assert_eq!(go_float_json(f), j, "{f} json");
        }
    }
}
