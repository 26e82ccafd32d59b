//! A plan's defaults deep-merged with a tenant's overrides.

use super::{EffectiveConfig, PartialConfig};

/// Merges `overrides` over `defaults`: a scalar set by the tenant replaces the plan's, and
/// `features` merge key by key, so a tenant can add a flag or switch a plan's flag off.
///
/// # Errors
///
/// The names of the required keys (`model`, `max_tokens`, `rate_limit_per_minute`) that neither
/// side sets, in that order.
pub(super) fn effective_config(
    defaults: &PartialConfig,
    overrides: &PartialConfig,
) -> Result<EffectiveConfig, Vec<&'static str>> {
    let model = overrides.model.clone().or_else(|| defaults.model.clone());
    let max_tokens = overrides.max_tokens.or(defaults.max_tokens);
    let rate_limit_per_minute = overrides
        .rate_limit_per_minute
        .or(defaults.rate_limit_per_minute);
    let mut features = defaults.features.clone();
    features.extend(
        overrides
            .features
            .iter()
            .map(|(name, enabled)| (name.clone(), *enabled)),
    );
    match (model, max_tokens, rate_limit_per_minute) {
        (Some(model), Some(max_tokens), Some(rate_limit_per_minute)) => Ok(EffectiveConfig {
            model,
            max_tokens,
            rate_limit_per_minute,
            features,
        }),
        (model, max_tokens, rate_limit_per_minute) => {
            let mut missing = Vec::new();
            if model.is_none() {
                missing.push("model");
            }
            if max_tokens.is_none() {
                missing.push("max_tokens");
            }
            if rate_limit_per_minute.is_none() {
                missing.push("rate_limit_per_minute");
            }
            Err(missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn features(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs
            .iter()
            .map(|(name, enabled)| (name.to_string(), *enabled))
            .collect()
    }

    #[test]
    fn overrides_replace_scalars_and_merge_features_key_by_key() {
        let plan = PartialConfig {
            model: Some("gpt-4o-mini".into()),
            max_tokens: Some(1000),
            rate_limit_per_minute: Some(60),
            features: features(&[("basic_chat", true), ("rag", true)]),
        };
        let tenant = PartialConfig {
            model: None,
            max_tokens: Some(4000),
            rate_limit_per_minute: None,
            features: features(&[("rag", false), ("web_search", true)]),
        };
        let merged = effective_config(&plan, &tenant).unwrap();
        assert_eq!(
            merged,
            EffectiveConfig {
                model: "gpt-4o-mini".into(),
                max_tokens: 4000,
                rate_limit_per_minute: 60,
                features: features(&[("basic_chat", true), ("rag", false), ("web_search", true)]),
            }
        );
    }

    #[test]
    fn missing_keys_are_named() {
        let plan = PartialConfig {
            max_tokens: Some(1000),
            ..PartialConfig::default()
        };
        assert_eq!(
            effective_config(&plan, &PartialConfig::default()),
            Err(vec!["model", "rate_limit_per_minute"])
        );
    }
}
