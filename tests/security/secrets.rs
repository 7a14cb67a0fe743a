//! Configuration and secrets: `check-config` never prints one.

use super::support::*;

/// `check-config` prints the effective configuration: every secret, however
/// it is given, is masked, and `env:`/`file:` references show as references.
#[test]
fn check_config_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.path().join("sasl-password");
    std::fs::write(&key_file, "pw-from-file-9d1c\n").unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "svc-churnwatch"
"sasl.password" = "literal-pw-71f3"
"ssl.key.password" = "env:CW_TEST_KEY_PW"
"ssl.key.pem" = "-----BEGIN PRIVATE KEY-----\nliteral-pem-body-5e2a\n-----END PRIVATE KEY-----"
"ssl.keystore.password" = "file:{}"
"sasl.oauthbearer.client.secret" = "literal-oauth-secret-0b7e"
"sasl.oauthbearer.config" = "principal=svc extension_token=literal-jwt-ext-44aa"
[http]
bearer_token = "literal-bearer-c3d9"
"#,
            key_file.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = churnwatch_testkit::churnwatch_command()
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env("CW_TEST_KEY_PW", "pw-from-env-2a8b")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_absent(
        &text,
        &[
            "literal-pw-71f3",
            "pw-from-env-2a8b",
            "pw-from-file-9d1c",
            "literal-pem-body-5e2a",
            "literal-oauth-secret-0b7e",
            "literal-jwt-ext-44aa",
            "literal-bearer-c3d9",
        ],
        "check-config",
    );
    // Still useful: references and non-secrets are shown as written.
    assert!(text.contains("env:CW_TEST_KEY_PW"), "{text}");
    assert!(
        text.contains(&format!("file:{}", key_file.display())),
        "{text}"
    );
    assert!(text.contains("svc-churnwatch"), "{text}");
    assert!(text.contains("\"***\""), "{text}");

    // A token given only in the environment is masked too.
    let out = churnwatch_testkit::churnwatch_command()
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env("CW_TEST_KEY_PW", "pw-from-env-2a8b")
        .env("CHURNWATCH_HTTP__BEARER_TOKEN", "env-override-token-6f0d")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert_absent(&text, &["env-override-token-6f0d"], "check-config");

    // A reference that cannot be resolved names the key and the variable,
    // and the error says nothing secret.
    let out = churnwatch_testkit::churnwatch_command()
        .arg("check-config")
        // The service names its brokers (none is assumed).
        .env("CHURNWATCH_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        .arg(&config)
        .env_remove("CW_TEST_KEY_PW")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("kafka.properties.\"ssl.key.password\"")
            && err.contains("environment variable CW_TEST_KEY_PW is not set"),
        "{err}"
    );
    assert_absent(
        &err,
        &[
            "literal-pw-71f3",
            "pw-from-file-9d1c",
            "literal-bearer-c3d9",
        ],
        "the configuration error",
    );
}
