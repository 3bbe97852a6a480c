//! The configuration shipped in wrangler.toml, for every environment, is
//! valid: a typo there would answer every request with a config error.

use switchyard::config::Config;

fn shipped() -> toml::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml")).unwrap();
    text.parse().unwrap()
}

fn config_of(vars: &toml::Value) -> Config {
    let table = vars.get("SWITCHYARD_CONFIG").expect("SWITCHYARD_CONFIG is declared");
    let json = serde_json::to_string(table).unwrap();
    Config::from_json(&json).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_default_environment_config_is_valid() {
    let doc = shipped();
    let c = config_of(&doc["vars"]);
    for route in ["chat", "smart", "cheap"] {
        assert!(c.route(route).is_some(), "route {route}");
    }
    // A deployment refuses anonymous callers unless the operator says otherwise.
    assert!(!c.security.anonymous);
    assert_eq!(c.security.rate_limit_binding.as_deref(), Some("RATE_LIMITER"));
    assert_eq!(doc["ratelimits"][0]["name"].as_str(), Some("RATE_LIMITER"));
    // Deployed providers authenticate with secrets, never inline keys.
    assert!(c.providers.iter().all(|p| p.key_secret.is_some()));
    assert!(c.providers.iter().all(|p| p.base_url.starts_with("https://")));
}

#[test]
fn every_environment_config_is_valid() {
    let doc = shipped();
    let envs = doc["env"].as_table().unwrap();
    assert!(envs.contains_key("local"));
    for (name, env) in envs {
        let c = config_of(&env["vars"]);
        assert!(!c.routes.is_empty(), "env {name}");
    }
    // The local environment talks only to the simulated providers on loopback.
    let local = config_of(&envs["local"]["vars"]);
    assert!(local.providers.iter().all(|p| p.base_url.starts_with("http://127.0.0.1:")));
}

#[test]
fn the_cron_trigger_runs_health_checks_everywhere() {
    let doc = shipped();
    assert_eq!(doc["triggers"]["crons"][0].as_str(), Some("* * * * *"));
    for (_, env) in doc["env"].as_table().unwrap() {
        assert!(env["triggers"]["crons"].as_array().is_some_and(|c| !c.is_empty()));
    }
}

#[test]
fn kv_binding_is_declared_everywhere() {
    let doc = shipped();
    assert_eq!(doc["kv_namespaces"][0]["binding"].as_str(), Some("STATE"));
    for (_, env) in doc["env"].as_table().unwrap() {
        assert_eq!(env["kv_namespaces"][0]["binding"].as_str(), Some("STATE"));
    }
}
