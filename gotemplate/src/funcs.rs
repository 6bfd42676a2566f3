//! Function calls: dispatch to Go's builtins and consul-template's functions; what is refused.

use crate::builtins;
use crate::error::{Error, Result};
use crate::exec::Exec;
use crate::helpers::helper;
use crate::parse::{Arg, Pipe};
use crate::value::Val;
use crate::{SecretKind, SecretRequest, vault};

/// consul-template's functions this engine implements.
pub const SUPPORTED: &[&str] = &[
    "secret",
    "secrets",
    "pkiCert",
    "toJSON",
    "toJSONPretty",
    "toUnescapedJSON",
    "toUnescapedJSONPretty",
    "toYAML",
    "toLower",
    "toUpper",
    "toTitle",
    "trimSpace",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "split",
    "join",
    "replaceAll",
    "contains",
    "in",
    "base64Encode",
    "base64Decode",
    "base64URLEncode",
    "base64URLDecode",
    "parseJSON",
    "parseBool",
    "parseInt",
    "parseFloat",
    "parseUint",
    "indent",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "minimum",
    "maximum",
    "loop",
];

/// Functions consul-template has that vaultlet refuses, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "env",
        "the agent's environment is not the application's; put the value in Vault",
    ),
    (
        "mustEnv",
        "the agent's environment is not the application's; put the value in Vault",
    ),
    (
        "envOrDefault",
        "the agent's environment is not the application's; put the value in Vault",
    ),
    ("file", "templates may not read the agent's files"),
    ("plugin", "templates may not run programs"),
    ("writeToFile", "templates may not write files"),
    ("executeTemplate", "use {{template}} instead"),
    (
        "timestamp",
        "time-dependent output re-renders on every refresh",
    ),
    ("regexReplaceAll", "Go's RE2 syntax is not reproduced"),
    ("regexMatch", "Go's RE2 syntax is not reproduced"),
    ("sockaddr", "host network lookups"),
    ("toTOML", "TOML output is not reproduced"),
    ("parseYAML", "YAML input is not reproduced"),
    ("sha256Hex", "hashing is not provided"),
    ("md5sum", "hashing is not provided"),
    ("hmacSHA256Hex", "hashing is not provided"),
    ("spew_dump", "debug output"),
    ("spew_printf", "debug output"),
    ("spew_sdump", "debug output"),
    ("spew_sprintf", "debug output"),
    ("call", "templates have no function values"),
];

/// Consul, Nomad and helper functions of consul-template with no Vault use.
const CONSUL: &[&str] = &[
    "key",
    "keyExists",
    "keyOrDefault",
    "ls",
    "safeLs",
    "tree",
    "safeTree",
    "node",
    "nodes",
    "service",
    "services",
    "connect",
    "datacenters",
    "partitions",
    "peerings",
    "caRoots",
    "caLeaf",
    "exportedServices",
    "byKey",
    "byPort",
    "byTag",
    "byMeta",
    "explode",
    "explodeMap",
    "mergeMap",
    "mergeMapWithOverride",
    "containsAll",
    "containsAny",
    "containsNone",
    "containsNotAll",
    "splitToMap",
    "scratch",
    "nomadServices",
    "nomadService",
    "nomadVarList",
    "nomadVarListSafe",
    "nomadVar",
    "nomadVarExists",
    "pkiSign",
];

/// Every supported name (Go builtins, then consul-template functions), comma-separated.
pub fn supported_list() -> String {
    let mut all: Vec<&str> = builtins::BUILTINS.to_vec();
    all.extend(SUPPORTED);
    all.join(", ")
}

/// The refusal of `name` at `pos`, or `None` when it is supported.
pub fn refusal(name: &str, pos: crate::Pos) -> Option<Error> {
    if builtins::BUILTINS.contains(&name) || SUPPORTED.contains(&name) {
        return None;
    }
    let why = if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
        format!(" ({why})")
    } else if name.starts_with("sprig_") {
        " (Sprig functions are not reproduced)".to_string()
    } else if CONSUL.contains(&name) {
        " (it reads Consul or Nomad, not Vault)".to_string()
    } else {
        " (nor by consul-template)".to_string()
    };
    Some(Error::Unsupported {
        pos,
        name: name.to_string(),
        why,
        supported: supported_list(),
    })
}

/// Calls function `name` with operand `args` (plus the piped value `fin`).
pub fn call(
    ex: &mut Exec<'_>,
    name: &str,
    at: usize,
    args: &[Arg],
    p: &Pipe,
    dot: &Val,
    fin: Option<Val>,
) -> Result<Val> {
    ex.step(at)?;
    if let Some(e) = refusal(name, ex.pos(at)) {
        return Err(e);
    }
    if name == "and" || name == "or" {
        return and_or(ex, name == "and", args, p, dot, fin);
    }
    let mut vals = Vec::with_capacity(args.len() + 1);
    for a in args {
        vals.push(ex.arg(a, p, dot)?);
    }
    vals.extend(fin);
    let fail = |ex: &Exec<'_>, m: String| ex.err(at, &p.text, format!("error calling {name}: {m}"));
    let result = match name {
        "secret" | "pkiCert" | "secrets" => return vault_call(ex, name, at, &vals, p),
        _ => match builtins::call(name, &vals) {
            Some(r) => r.map_err(|m| ex.err(at, &p.text, m)),
            None => helper(name, &vals, ex.limits.max_output).map_err(|m| fail(ex, m)),
        },
    }?;
    if let Some(s) = result.as_str() {
        ex.check_size(s.len(), at)?;
    }
    Ok(result)
}

fn and_or(
    ex: &mut Exec<'_>,
    is_and: bool,
    args: &[Arg],
    p: &Pipe,
    dot: &Val,
    fin: Option<Val>,
) -> Result<Val> {
    let total = args.len() + usize::from(fin.is_some());
    if total == 0 {
        let n = if is_and { "and" } else { "or" };
        return Err(ex.err(
            p.at,
            &p.text,
            format!("wrong number of args for {n}: want at least 1 got 0"),
        ));
    }
    let mut last = Val::Nil;
    for a in args {
        last = ex.arg(a, p, dot)?;
        if last.truthy() != is_and {
            return Ok(last);
        }
    }
    Ok(fin.unwrap_or(last))
}

fn vault_call(ex: &mut Exec<'_>, name: &str, at: usize, vals: &[Val], p: &Pipe) -> Result<Val> {
    let mut strs = Vec::with_capacity(vals.len());
    for v in vals {
        strs.push(
            want_str(v).map_err(|m| ex.err(at, &p.text, format!("error calling {name}: {m}")))?,
        );
    }
    let Some((path, rest)) = strs.split_first() else {
        return Ok(Val::Nil);
    };
    let kind = match name {
        "secrets" => SecretKind::List,
        "pkiCert" => SecretKind::PkiCert,
        _ if rest.is_empty() => SecretKind::Read,
        _ => SecretKind::Write,
    };
    if kind == SecretKind::List && !rest.is_empty() {
        return Err(ex.err(
            at,
            &p.text,
            format!(
                "wrong number of args for secrets: want 1 got {}",
                strs.len()
            ),
        ));
    }
    let req = SecretRequest::new(kind, path, rest)
        .map_err(|m| ex.err(at, &p.text, format!("error calling {name}: {m}")))?;
    let key = format!("{kind:?}\u{0}{}\u{0}{:?}", req.path, req.data);
    if let Some(v) = ex.cache.get(&key) {
        return Ok(v.clone());
    }
    let func: &'static str = match kind {
        SecretKind::List => "secrets",
        SecretKind::PkiCert => "pkiCert",
        _ => "secret",
    };
    let source_err = |ex: &Exec<'_>, msg: String| Error::Source {
        pos: ex.pos(at),
        func,
        path: req.path.clone(),
        msg,
    };
    let body = ex.source.fetch(&req).map_err(|m| source_err(ex, m))?;
    let v = vault::decode(kind, &body).map_err(|m| source_err(ex, m))?;
    ex.cache.insert(key, v.clone());
    Ok(v)
}

/// The text of a Go `string` argument (json.Number and nil are wrong types, as in Go).
pub fn want_str(v: &Val) -> Result<&str, String> {
    match v {
        Val::Str(s) => Ok(s),
        Val::Nil => Err("invalid value; expected string".into()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_function() {
        let e = refusal("env", crate::Pos { line: 1, col: 4 })
            .expect("refused")
            .to_string();
        assert!(e.starts_with("template:1:4: function \"env\" is not supported by vaultlet (the agent's environment"), "{e}");
        assert!(e.contains("; supported: and, or, not"), "{e}");
        assert!(refusal("toJSON", crate::Pos::default()).is_none());
        let e = refusal("sprig_upper", crate::Pos::default())
            .expect("refused")
            .to_string();
        assert!(e.contains("Sprig"), "{e}");
    }
}
