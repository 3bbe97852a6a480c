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

/// The Claude generation a model name belongs to (`claude-sonnet-4-5` is
/// 4.5, `claude-opus-4-6-20260101` is 4.6), if it is one.
fn claude_version(model: &str) -> Option<(u32, u32)> {
    let rest = model.strip_prefix("claude-")?;
    let mut nums = rest.split('-').filter_map(|p| p.parse::<u32>().ok()).filter(|n| *n < 100);
    Some((nums.next()?, nums.next().unwrap_or(0)))
}

#[test]
fn only_models_that_accept_a_prefill_are_marked_prefill() {
    let doc = shipped();
    let mut envs = vec![doc["vars"].clone()];
    envs.extend(doc["env"].as_table().unwrap().values().map(|e| e["vars"].clone()));
    let mut checked = 0;
    for vars in &envs {
        let c = config_of(vars);
        for t in c.routes.iter().flat_map(|r| r.targets.iter()) {
            if let Some(v) = claude_version(&t.model) {
                // Claude 4.6 and later reject an assistant prefill.
                assert_eq!(t.caps.prefill, v < (4, 6), "{} (Claude {}.{})", t.id, v.0, v.1);
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "{checked} Claude targets checked");
    assert_eq!(claude_version("claude-opus-4-6-20260101"), Some((4, 6)));
}
