//! Which strings may name a user, a role or an environment.
//!
//! Names end up in audit records, otpauth URIs and error messages, so they
//! are kept to a small lowercase alphabet: no look-alike spellings
//! (`Alice` vs `alice`), nothing that needs escaping, nothing a terminal
//! interprets.

/// Longest name accepted for anything.
pub const MAX_NAME_LEN: usize = 64;

/// What kind of thing a name names (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    User,
    Role,
    Environment,
}

impl NameKind {
    fn allowed(self) -> &'static str {
        match self {
            // `@` and `.` so people can be named by their login or e-mail.
            NameKind::User => "lowercase letters, digits, `.`, `_`, `-` and `@`",
            NameKind::Role | NameKind::Environment => "lowercase letters, digits and `-`",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            NameKind::User => "user name",
            NameKind::Role => "role name",
            NameKind::Environment => "environment name",
        }
    }
}

/// `Ok` when `name` is acceptable as a `kind`; otherwise why not.
pub fn check(kind: NameKind, name: &str) -> Result<(), String> {
    let extra: &[u8] = match kind {
        NameKind::User => b"._-@",
        NameKind::Role | NameKind::Environment => b"-",
    };
    let bytes = name.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(b));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a valid {}: use 1–{MAX_NAME_LEN} {}, starting with a letter or digit",
            name.escape_debug(),
            kind.noun(),
            kind.allowed()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_allow_logins_and_mail_addresses() {
        assert!(check(NameKind::User, "alice").is_ok());
        assert!(check(NameKind::User, "alice.smith@example.com").is_ok());
        assert!(check(NameKind::User, "Alice").is_err());
        assert!(check(NameKind::User, "").is_err());
        assert!(check(NameKind::User, "-alice").is_err());
        assert!(check(NameKind::User, "al:ice").is_err());
        assert!(check(NameKind::User, "al\u{1b}ice").is_err());
        assert!(check(NameKind::User, &"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn role_and_environment_names_are_kebab_case() {
        assert!(check(NameKind::Role, "release-approver").is_ok());
        assert!(check(NameKind::Environment, "production").is_ok());
        assert!(check(NameKind::Role, "release_approver").is_err());
        assert!(check(NameKind::Environment, "prod.eu").is_err());
    }
}
