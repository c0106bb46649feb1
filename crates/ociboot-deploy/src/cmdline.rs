//! The kernel command line, split the way the kernel splits it (`next_arg` in
//! `kernel/params.c`): arguments separated by whitespace, double quotes group spaces into one
//! argument (`a="b c"` is `a` = `b c`, `"a=b c"` too), and `--` ends the kernel's arguments
//! (what follows is for init). A key given twice is looked up as the last one, as the kernel
//! and systemd apply them.
//!
//! This is the only place that parses a command line: `/proc/cmdline` (booted deployment, root
//! set-up at boot, `ociboot.init=`) and a BLS entry's `options`. It only reads strings and
//! never writes a command line (entries are rendered from the origin's kargs).

use std::path::PathBuf;

/// The argument that names the deployment to boot: `ociboot=<stateroot>/<id>`.
pub const DEPLOYMENT_KEY: &str = "ociboot";

/// One argument: `key` or `key=value`, quotes removed as the kernel removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg<'a> {
    /// The part before the first `=`, or the whole argument when it has none.
    pub key: &'a str,
    /// The part after the first `=`, quotes removed; `None` when there is no `=`.
    pub value: Option<&'a str>,
}

/// A parsed command line: the kernel's arguments, in order, up to `--`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline<'a> {
    /// The arguments, in the order given.
    pub args: Vec<Arg<'a>>,
}

/// The kernel's `isspace`.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// One argument at the start of `s` (no leading space) and the rest after it.
fn next_arg(s: &str) -> (Arg<'_>, &str) {
    let b = s.as_bytes();
    let quoted = b.first() == Some(&b'"');
    let start = usize::from(quoted);
    let mut in_quote = quoted;
    let mut equals = None;
    let mut i = start;
    while i < b.len() {
        if is_space(b[i]) && !in_quote {
            break;
        }
        // As the kernel: an `=` as the first character does not split.
        if equals.is_none() && b[i] == b'=' && i > start {
            equals = Some(i);
        }
        if b[i] == b'"' {
            in_quote = !in_quote;
        }
        i += 1;
    }
    let mut end = i;
    let strip_end = |end: usize, from: usize| {
        if end > from && b[end - 1] == b'"' {
            end - 1
        } else {
            end
        }
    };
    let arg = match equals {
        None => {
            if quoted {
                end = strip_end(end, start);
            }
            Arg {
                key: &s[start..end],
                value: None,
            }
        }
        Some(eq) => {
            let mut vstart = eq + 1;
            if b.get(vstart) == Some(&b'"') {
                vstart += 1;
                end = strip_end(end, vstart);
            } else if quoted {
                end = strip_end(end, vstart);
            }
            Arg {
                key: &s[start..eq],
                value: Some(&s[vstart..end.max(vstart)]),
            }
        }
    };
    (arg, &s[i..])
}

fn skip_spaces(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

/// Split a command line into the kernel's arguments (those before `--`).
pub fn parse(cmdline: &str) -> Cmdline<'_> {
    let mut args = Vec::new();
    let mut rest = skip_spaces(cmdline);
    while !rest.is_empty() {
        let (arg, r) = next_arg(rest);
        if arg.key == "--" && arg.value.is_none() {
            break;
        }
        args.push(arg);
        rest = skip_spaces(r);
    }
    Cmdline { args }
}

impl<'a> Cmdline<'a> {
    /// The value of the last `key=value`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.args
            .iter()
            .rev()
            .find(|a| a.key == key && a.value.is_some())
            .and_then(|a| a.value)
    }

    /// The deployment `ociboot=` names (`<stateroot>/<id>`), unchecked.
    pub fn deployment_key(&self) -> Option<&'a str> {
        self.get(DEPLOYMENT_KEY)
    }
}

/// Why `arg` cannot be put on a boot entry's command line as one argument (`None` if it can):
/// empty, a control character (a newline would start a new line of the entry), more than one
/// argument as the kernel splits it, or a key in `owned` (keys the boot path sets itself, such
/// as `ociboot=`: the kernel and ociboot take the last one given).
pub fn refuse_arg(arg: &str, owned: &[&str]) -> Option<String> {
    if arg.is_empty() {
        return Some("an empty argument".into());
    }
    if arg.chars().any(char::is_control) {
        return Some(format!("{:?} has a control character", arg));
    }
    let parsed = parse(arg);
    match parsed.args.as_slice() {
        [one] if owned.contains(&one.key) => Some(format!(
            "{arg:?} sets {}=, which ociboot sets itself",
            one.key
        )),
        [_] => None,
        _ => Some(format!("{arg:?} is not one argument")),
    }
}

/// The value of `ociboot=` in a command line.
pub fn deployment_key(cmdline: &str) -> Option<&str> {
    parse(cmdline).deployment_key()
}

/// The kernel command line as the bootloader passed it: `OCIBOOT_PROC_CMDLINE=FILE` (like
/// systemd's SYSTEMD_PROC_CMDLINE) or /proc/cmdline.
pub fn proc_cmdline() -> String {
    let path = std::env::var_os("OCIBOOT_PROC_CMDLINE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/proc/cmdline".into());
    std::fs::read_to_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv<'a>(c: &Cmdline<'a>) -> Vec<(&'a str, Option<&'a str>)> {
        c.args.iter().map(|a| (a.key, a.value)).collect()
    }

    #[test]
    fn plain_arguments() {
        let c = parse("  root=UUID=x rw\tquiet  ociboot=default/abc.0\n");
        assert_eq!(
            kv(&c),
            [
                ("root", Some("UUID=x")),
                ("rw", None),
                ("quiet", None),
                ("ociboot", Some("default/abc.0")),
            ]
        );
        assert_eq!(c.deployment_key(), Some("default/abc.0"));
        assert_eq!(c.get("root"), Some("UUID=x"));
        assert_eq!(c.get("rw"), None);
        assert_eq!(parse("").args, []);
        assert_eq!(parse(" \n").args, []);
    }

    #[test]
    fn quoted_values_as_the_kernel_reads_them() {
        let c = parse(r#"a="b c" "d=e f" "g h" i=j"k l"m x="" y= "#);
        assert_eq!(
            kv(&c),
            [
                ("a", Some("b c")),
                ("d", Some("e f")),
                ("g h", None),
                ("i", Some(r#"j"k l"m"#)),
                ("x", Some("")),
                ("y", Some("")),
            ]
        );
        // An unterminated quote runs to the end.
        assert_eq!(kv(&parse(r#"a="b c"#)), [("a", Some("b c"))]);
    }

    #[test]
    fn last_duplicate_wins() {
        let c = parse("ociboot=default/a.0 console=tty0 ociboot=default/b.0 console");
        assert_eq!(c.deployment_key(), Some("default/b.0"));
        assert_eq!(c.get("console"), Some("tty0"));
    }

    #[test]
    fn double_dash_ends_kernel_arguments() {
        let c = parse("ro ociboot=default/a.0 -- ociboot=default/b.0 single");
        assert_eq!(kv(&c), [("ro", None), ("ociboot", Some("default/a.0"))]);
        assert_eq!(c.deployment_key(), Some("default/a.0"));
        // `--=x` is an argument, not the end.
        assert_eq!(parse("--=x a").args.len(), 2);
        assert_eq!(deployment_key("-- ociboot=default/a.0"), None);
    }

    #[test]
    fn leading_equals_does_not_split() {
        assert_eq!(kv(&parse("=a b")), [("=a", None), ("b", None)]);
        assert_eq!(kv(&parse("a==b")), [("a", Some("=b"))]);
    }

    #[test]
    fn arguments_for_an_entry_are_one_line_one_argument_and_not_ours() {
        let owned = [DEPLOYMENT_KEY, "init"];
        assert_eq!(refuse_arg("quiet", &owned), None);
        assert_eq!(refuse_arg("console=ttyS0,115200", &owned), None);
        assert_eq!(refuse_arg("a=\"b c\"", &owned), None);
        for bad in [
            "",
            "x\ntitle evil",
            "a b",
            "ociboot=default/x.0",
            "init=/bin/sh",
        ] {
            assert!(refuse_arg(bad, &owned).is_some(), "{bad:?} accepted");
        }
        let why = refuse_arg("ociboot=default/old.0", &owned).unwrap();
        assert!(why.contains("ociboot="), "{why}");
        assert_eq!(refuse_arg("init=/sbin/init", &[DEPLOYMENT_KEY]), None);
    }
}
