//! Database URLs: which engine a store location names, and how it is shown in logs and errors
//! (never with its password).

/// Whether `s` is a PostgreSQL connection URL (`postgres://` or `postgresql://`); anything
/// else names a SQLite file.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL with any password replaced by `***`, for logs and errors:
/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`. A `password=` query
/// parameter is masked the same way.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_key_value(url);
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let mut out = match rest[..auth_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &url[..scheme_end], masked, &rest[at..])
        }
        None => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

/// A `key=value` connection string with its `password` value masked (`password=***`),
/// quoted values included.
fn redact_key_value(s: &str) -> String {
    let Some(at) = s.find("password") else {
        return s.to_string();
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut pos = at;
    loop {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        let after_key = tail["password".len()..].trim_start();
        let at_word_start = head.is_empty() || head.ends_with(char::is_whitespace);
        match after_key.strip_prefix('=') {
            Some(v) if at_word_start => {
                out.push_str("password=***");
                let v = v.trim_start();
                let end = if let Some(q) = v.strip_prefix('\'') {
                    // Quoted: up to the closing quote not preceded by a backslash.
                    let mut esc = false;
                    q.char_indices()
                        .find(|&(_, c)| {
                            let hit = c == '\'' && !esc;
                            esc = c == '\\' && !esc;
                            hit
                        })
                        .map_or(v.len(), |(i, _)| i + 2)
                } else {
                    v.find(char::is_whitespace).unwrap_or(v.len())
                };
                rest = &v[end..];
            }
            _ => {
                out.push_str("password");
                rest = &tail["password".len()..];
            }
        }
        match rest.find("password") {
            Some(p) => pos = p,
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_passwords_never_shown() {
        assert_eq!(
            redact_url("host=db user=u password=secret dbname=app"),
            "host=db user=u password=*** dbname=app"
        );
        assert_eq!(
            redact_url("host=db password = 'se cret\\' x' dbname=app"),
            "host=db password=*** dbname=app"
        );
        assert_eq!(
            redact_url("host=db passwordless=1"),
            "host=db passwordless=1"
        );
    }

    #[test]
    fn engines() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("ficus-state.db"));
        assert!(!is_postgres_url(":memory:"));
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql://h/db?x=1"), "postgresql://h/db?x=1");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(redact_url("state.db"), "state.db");
        // An @ in the path is not userinfo.
        assert_eq!(redact_url("postgres://h/db@x"), "postgres://h/db@x");
    }
}
