//! Bounds on templates: no partials or decorators, bounded nesting, bounded output.

use std::io;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

/// Deepest nesting of blocks (`{{#if}}`, `{{#each}}`, ...) or of `(sub expressions)`; the
/// parser and the renderer recurse once per level.
pub const MAX_NESTING: usize = 16;

/// Deepest nesting of `{{#each}}` blocks: each level multiplies the work by the size of the
/// data it walks (`secrets` -> a secret -> a list inside a value is three).
pub const MAX_EACH_NESTING: usize = 3;

/// Default bound of a rendered file: the injector's default secrets volume size (16Mi).
pub const DEFAULT_MAX_FILE_SIZE: u64 = crate::config::DEFAULT_MAX_FILE_SIZE;

/// Why a template is refused before it is compiled or rendered.
pub const PARTIALS: &str = "partials and decorators ({{> ...}}, {{#> ...}}, {{#*inline ...}}) are not supported; write the text out, or refer to other secrets as secrets.<name>.<key>";

/// Checks the raw text for nesting deeper than [`MAX_NESTING`], before the parser (which
/// recurses per level) sees it. Errs on the side of counting: a `{{#` in a comment counts.
pub fn check_nesting(text: &str) -> Result<(), String> {
    let too_deep = || {
        format!("blocks or (sub expressions) nest deeper than {MAX_NESTING}; flatten the template")
    };
    let mut depth = 0usize;
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let inner = rest[start + 2..].trim_start_matches(['{', '~', ' ', '\t', '\n', '\r']);
        let end = inner.find("}}").unwrap_or(inner.len());
        let tag = &inner[..end];
        match tag.chars().next() {
            Some('#') => depth += 1,
            Some('^') if !tag[1..].trim_start_matches('~').trim().is_empty() => depth += 1,
            Some('/') => depth = depth.saturating_sub(1),
            _ => {}
        }
        let mut parens = 0usize;
        for c in tag.chars() {
            match c {
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            if parens > MAX_NESTING {
                return Err(too_deep());
            }
        }
        if depth > MAX_NESTING {
            return Err(too_deep());
        }
        rest = &inner[end..];
    }
    Ok(())
}

/// Walks a compiled template: refuses partials and decorators (a partial can include
/// another secret's template, which includes the first: endless recursion) and `{{#each}}`
/// nested deeper than [`MAX_EACH_NESTING`].
pub fn check_compiled(t: &Template) -> Result<(), String> {
    walk(t, 0)
}

fn walk(t: &Template, each_depth: usize) -> Result<(), String> {
    for e in &t.elements {
        match e {
            TemplateElement::DecoratorExpression(_)
            | TemplateElement::DecoratorBlock(_)
            | TemplateElement::PartialExpression(_)
            | TemplateElement::PartialBlock(_) => return Err(PARTIALS.into()),
            TemplateElement::HelperBlock(h) => walk_block(h, each_depth)?,
            _ => {}
        }
    }
    Ok(())
}

fn walk_block(h: &HelperTemplate, each_depth: usize) -> Result<(), String> {
    let is_each = matches!(&h.name, Parameter::Name(n) if n == "each");
    let depth = each_depth + usize::from(is_each);
    if depth > MAX_EACH_NESTING {
        return Err(format!(
            "{{{{#each}}}} nests deeper than {MAX_EACH_NESTING}; iterate over less"
        ));
    }
    for inner in [&h.template, &h.inverse].into_iter().flatten() {
        walk(inner, depth)?;
    }
    Ok(())
}

/// Collects rendered output up to a bound; a write beyond it fails and stops the render.
pub struct Bounded {
    /// The output so far.
    pub buf: Vec<u8>,
    max: usize,
    /// Set once a write went past the bound.
    pub exceeded: bool,
}

impl Bounded {
    /// An empty buffer that holds at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            exceeded: false,
        }
    }
}

impl io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.exceeded = true;
            return Err(io::Error::other(
                "rendered output exceeds the file size bound",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_from_the_text() {
        let ok = format!("{}x{}", "{{#if a}}".repeat(16), "{{/if}}".repeat(16));
        assert_eq!(check_nesting(&ok), Ok(()));
        let deep = format!("{}x{}", "{{~#if a}}".repeat(17), "{{/if}}".repeat(17));
        assert!(check_nesting(&deep).is_err());
        // `{{^}}` is an else, not a block; `{{^a}}` opens one.
        let elses = "{{#if a}}x{{^}}y{{/if}}".repeat(40);
        assert_eq!(check_nesting(&elses), Ok(()));
        assert!(check_nesting(&"{{^a}}".repeat(17)).is_err());
        let parens = format!("{{{{x {}y{}}}}}", "(f ".repeat(17), ")".repeat(17));
        assert!(check_nesting(&parens).is_err());
        assert_eq!(check_nesting("a (((( b )))) {{x}}"), Ok(()));
    }

    #[test]
    fn bounded_output_stops_at_the_bound() {
        use std::io::Write;
        let mut b = Bounded::new(4);
        assert!(b.write_all(b"abcd").is_ok());
        assert!(b.write_all(b"e").is_err());
        assert!(b.exceeded);
        assert_eq!(b.buf, b"abcd");
    }
}
