//! Environment variables that change how a program loads or runs code, which keys from
//! Vault data must never set (only a template that spells the name out may).
//!
//! The list errs on the side of refusing: a key of Vault data that happens to be called
//! `PATH` or `PYTHONPATH` is a name a Pod's author can still set on purpose, by writing it
//! in the template (`vaultlet.io/template-<name>`), which admission shows.

/// Exact names: the dynamic loader's neighbours, shells' start-up files, language runtimes'
/// option and module-path variables, and resolver/locale files that load code or redirect
/// lookups.
pub const CODE_LOADING_ENV_NAMES: &[&str] = &[
    // Search paths and shells.
    "PATH",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "ZDOTDIR",
    // glibc: loadable converters, locale data, resolver behaviour and host aliases.
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "MALLOC_CONF",
    // Java.
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "JAVA_OPTS",
    // Node.js.
    "NODE_OPTIONS",
    "NODE_PATH",
    // Ruby.
    "RUBYOPT",
    "RUBYLIB",
    "GEM_HOME",
    "GEM_PATH",
    // Perl, PHP, Lua (plus the prefixes below).
    "PERLLIB",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    // OpenSSL loads engines and providers named by its config.
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "OPENSSL_MODULES",
    // Programs that tools run on their own.
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
];

/// Prefixes: every variable of the family is refused.
pub const CODE_LOADING_ENV_PREFIXES: &[&str] = &[
    // The dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...) and macOS's.
    "LD_",
    "DYLD_",
    // Python (PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, PYTHONINSPECT, ...) and Perl (PERL5LIB,
    // PERL5OPT, PERL5DB).
    "PYTHON",
    "PERL5",
    // Bash exported functions (`BASH_FUNC_name%%`).
    "BASH_FUNC_",
    // git runs GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_* ...
    "GIT_",
    // Lua's module paths and init code (LUA_PATH, LUA_CPATH, LUA_INIT, LUA_INIT_5_4).
    "LUA_",
    // .NET start-up hooks and profilers (DOTNET_STARTUP_HOOKS, CORECLR_PROFILER_PATH,
    // COR_PROFILER_PATH).
    "DOTNET_",
    "CORECLR_",
    "COR_",
];

/// True when `name` is a variable that changes how programs load or run code, so a key of
/// Vault data must not become it. Exact, case-sensitive (Linux variable names are).
pub fn loads_code(name: &str) -> bool {
    CODE_LOADING_ENV_NAMES.contains(&name)
        || CODE_LOADING_ENV_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
}

/// True when a template writes `name=` itself (the name as literal text, not from data), so
/// the Pod's author chose it. The name must not be the tail of a longer name (`XPATH=`).
pub fn spelled_out(template: &str, name: &str) -> bool {
    let needle = format!("{name}=");
    template.match_indices(&needle).any(|(i, _)| {
        template[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_list_and_its_class_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "BASH_ENV",
            "ENV",
            "PATH",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "JDK_JAVA_OPTIONS",
            "NODE_OPTIONS",
            "NODE_PATH",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5LIB",
            "PERL5OPT",
            "RUBYOPT",
            "GCONV_PATH",
            "HOSTALIASES",
            "LOCALDOMAIN",
            "RES_OPTIONS",
            "CLASSPATH",
            "GIT_SSH_COMMAND",
            "DYLD_INSERT_LIBRARIES",
            "DOTNET_STARTUP_HOOKS",
            "OPENSSL_CONF",
        ] {
            assert!(loads_code(name), "{name}");
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "DB_PASSWORD",
            "user",
            "path",
            "MY_PATH",
            "PATHS",
            "ENVIRONMENT",
            "NODE_ENV",
            "LD",
            "HOME",
            "API_KEY",
        ] {
            assert!(!loads_code(name), "{name}");
        }
    }

    #[test]
    fn spelled_out_means_written_as_a_name() {
        assert!(spelled_out("PATH=/bin\n", "PATH"));
        assert!(spelled_out(
            "user={{u}}\nNODE_OPTIONS={{o}}\n",
            "NODE_OPTIONS"
        ));
        assert!(spelled_out("{{#if x}}PATH={{p}}{{/if}}", "PATH"));
        assert!(!spelled_out("MYPATH={{p}}\n", "PATH"));
        assert!(!spelled_out(
            "{{#each this}}{{@key}}={{this}}\n{{/each}}",
            "PATH"
        ));
        assert!(!spelled_out("{{name}}={{value}}", "LD_PRELOAD"));
    }
}
