//! libpq's password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`): lines of
//! `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Who a password is looked up for.
pub struct Lookup<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first matching line, if the file exists and only its owner can read it
/// (like libpq, a file others can read is ignored, with a warning).
pub fn find(path: &Path, lookup: &Lookup<'_>) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            "password file has group or world access and is ignored; run chmod 0600 on it"
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| matching_password(line, lookup))
}

fn matching_password(line: &str, lookup: &Lookup<'_>) -> Option<String> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let fields = fields(line);
    let [host, port, database, user, password] = fields.as_slice() else { return None };
    let port_text = lookup.port.to_string();
    let wanted = [(host, lookup.host), (port, port_text.as_str()), (database, lookup.database), (user, lookup.user)];
    wanted.iter().all(|(field, value)| field.as_str() == "*" || field.as_str() == *value).then(|| password.clone())
}

fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup() -> Lookup<'static> {
        Lookup { host: "db.example", port: 5432, database: "app", user: "wharf" }
    }

    #[test]
    fn first_matching_line_wins_and_stars_match_anything() {
        assert_eq!(matching_password("other:5432:app:wharf:no", &lookup()), None);
        assert_eq!(matching_password("db.example:5433:app:wharf:no", &lookup()), None);
        assert_eq!(matching_password("*:*:app:wharf:yes", &lookup()), Some("yes".into()));
        assert_eq!(matching_password("db.example:5432:*:*:p:with:colons", &lookup()), Some("p:with:colons".into()));
    }

    #[test]
    fn escapes_and_comments() {
        let l = Lookup { host: "h", port: 1, database: "a:b", user: "u" };
        assert_eq!(matching_password(r"h:1:a\:b:u:p\\w", &l), Some(r"p\w".into()));
        assert_eq!(matching_password("#h:1:a:u:p", &l), None);
        assert_eq!(matching_password("h:1:a", &l), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find(&path, &lookup()), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(find(&path, &lookup()), Some("secret".into()));
    }
}
