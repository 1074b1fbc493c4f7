use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn parse(conn: &str, vars: &[(&str, &str)]) -> Result<ConnInfo, ConnInfoError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ConnInfo::parse_with(conn, &move |key: &str| map.get(key).cloned())
}

#[test]
fn the_string_wins_over_the_environment() {
    let vars = [("PGHOST", "envhost"), ("PGPORT", "7000"), ("PGUSER", "envuser"), ("PGPASSWORD", "envpw")];
    let info = parse("postgresql://u:pw@h:5433/d", &vars).unwrap();
    assert_eq!(info.pg.get_hosts(), &[Host::Tcp("h".into())]);
    assert_eq!(info.pg.get_ports(), &[5433]);
    assert_eq!(info.pg.get_user(), Some("u"));
    assert_eq!(info.pg.get_password(), Some(&b"pw"[..]));
}

#[test]
fn the_environment_fills_what_the_string_leaves_out() {
    let vars = [
        ("PGHOST", "envhost"),
        ("PGPORT", "7000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGPASSWORD", "envpw"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", "/ca.crt"),
        ("PGAPPNAME", "mine"),
        ("PGCONNECT_TIMEOUT", "7"),
    ];
    let info = parse("", &vars).unwrap();
    assert_eq!(info.pg.get_hosts(), &[Host::Tcp("envhost".into())]);
    assert_eq!(info.pg.get_ports(), &[7000]);
    assert_eq!(info.pg.get_user(), Some("envuser"));
    assert_eq!(info.pg.get_dbname(), Some("envdb"));
    assert_eq!(info.pg.get_password(), Some(&b"envpw"[..]));
    assert_eq!(info.pg.get_application_name(), Some("mine"));
    assert_eq!(info.pg.get_connect_timeout(), Some(&Duration::from_secs(7)));
    assert_eq!(info.ssl.mode, SslMode::VerifyFull);
    assert_eq!(info.ssl.root_cert, Some(RootCert::File("/ca.crt".into())));
    assert_eq!(info.describe(), "host envhost, port 7000, database envdb, user envuser");
}

#[test]
fn ssl_parameters_in_the_string_win_and_default_to_prefer() {
    let vars = [("PGSSLMODE", "disable")];
    let info = parse("host=h sslmode=verify-ca sslrootcert=system sslcert=/c sslkey=/k", &vars).unwrap();
    assert_eq!(
        info.ssl,
        SslSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::System),
            cert: Some("/c".into()),
            key: Some("/k".into())
        }
    );
    assert_eq!(parse("host=h", &[]).unwrap().ssl.mode, SslMode::Prefer);
    assert_eq!(parse("host=h", &vars).unwrap().ssl.mode, SslMode::Disable);
    assert_eq!(parse("host=h sslmode=allow", &[]).unwrap_err(), ConnInfoError::SslMode("allow".into()));
}

#[test]
fn the_password_file_is_read_when_no_password_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pass");
    std::fs::write(&file, "h:5433:d:u:from-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conn = format!("postgresql://u@h:5433/d?passfile={}", file.display());
    assert_eq!(parse(&conn, &[]).unwrap().pg.get_password(), Some(&b"from-file"[..]));
    let vars = [("PGPASSWORD", "env")];
    assert_eq!(parse(&conn, &vars).unwrap().pg.get_password(), Some(&b"env"[..]));
    let vars = [("PGPASSFILE", file.to_str().unwrap())];
    assert_eq!(parse("postgresql://u@h:5433/d", &vars).unwrap().pg.get_password(), Some(&b"from-file"[..]));
    let home = dir.path().to_str().unwrap();
    std::fs::rename(&file, dir.path().join(".pgpass")).unwrap();
    let vars = [("HOME", home)];
    assert_eq!(parse("postgresql://u@h:5433/d", &vars).unwrap().pg.get_password(), Some(&b"from-file"[..]));
    assert_eq!(parse("postgresql://u@other:5433/d", &vars).unwrap().pg.get_password(), None);
}

#[test]
fn errors_never_show_the_password() {
    for conn in ["postgresql://u:hunter2@h:notaport/d", "host=h password=hunter2 bogus=1", "password='hunter2"] {
        let err = parse(conn, &[]).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
    let info = parse("postgresql://u:hunter2@h/d", &[]).unwrap();
    assert!(!info.describe().contains("hunter2"));
}
