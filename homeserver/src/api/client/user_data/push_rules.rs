//! `/pushrules/...`: the user's push rules, starting from the spec's
//! predefined rules. Only the `global` scope exists. Predefined rules
//! (IDs starting with `.`) can be enabled, disabled and given other
//! actions, but not created, moved relative to, or deleted.

use axum::extract::State;
use http::StatusCode;
use ruma::api::client::push::{
    PushRule, delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};
use ruma::api::error::ErrorKind;
use ruma::push::{InsertPushRuleError, RemovePushRuleError, RuleKind, Ruleset};

use super::{MAX_CONTENT_BYTES, MAX_KEY_BYTES};
use crate::api::auth::Authed;
use crate::api::error::ApiError;
use crate::api::ruma_wrapper::{Ruma, RumaResponse};
use crate::state::AppState;
use crate::storage::push_rules;

fn rule_not_found() -> ApiError {
    ApiError::not_found("The push rule was not found.")
}

/// A 400 as Synapse and the spec's example give it: `M_UNKNOWN`.
fn bad_rule(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message)
}

/// The rules must stay storable (and deliverable in sync).
fn check_size(rules: &Ruleset) -> Result<(), ApiError> {
    let size = serde_json::to_string(rules)
        .map_err(|e| ApiError::internal("cannot encode push rules", e))?
        .len();
    if size > MAX_CONTENT_BYTES {
        return Err(ApiError::too_large(format!(
            "Push rules would exceed {MAX_CONTENT_BYTES} bytes"
        )));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/pushrules/`
pub async fn get_all(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_req): Ruma<get_pushrules_all::v3::Request>,
) -> Result<RumaResponse<get_pushrules_all::v3::Response>, ApiError> {
    let rules = push_rules::get(state.db(), &auth.user_id).await?;
    Ok(RumaResponse(get_pushrules_all::v3::Response::new(rules)))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub async fn get_global(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(_req): Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<RumaResponse<get_pushrules_global_scope::v3::Response>, ApiError> {
    let rules = push_rules::get(state.db(), &auth.user_id).await?;
    Ok(RumaResponse(get_pushrules_global_scope::v3::Response::new(
        rules,
    )))
}

/// One rule of the user's rules, or 404.
async fn find(
    state: &AppState,
    auth: &Authed,
    kind: RuleKind,
    id: &str,
) -> Result<PushRule, ApiError> {
    let rules = push_rules::get(state.db(), &auth.user_id).await?;
    rules
        .get(kind, id)
        .map(PushRule::from)
        .ok_or_else(rule_not_found)
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn get_rule(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_pushrule::v3::Request>,
) -> Result<RumaResponse<get_pushrule::v3::Response>, ApiError> {
    let rule = find(&state, &auth, req.kind, &req.rule_id).await?;
    Ok(RumaResponse(get_pushrule::v3::Response::new(rule)))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`: creates a
/// rule or replaces one of the user's, placed by `before`/`after` (a new
/// rule without them becomes the most important of its kind, after
/// `.m.rule.master`).
pub async fn set_rule(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_pushrule::v3::Request>,
) -> Result<RumaResponse<set_pushrule::v3::Response>, ApiError> {
    if req.rule.rule_id().is_empty() || req.rule.rule_id().len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid_param(format!(
            "A rule ID must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    push_rules::update(state.db(), &auth.user_id, |rules| {
        rules
            .insert(req.rule, req.after.as_deref(), req.before.as_deref())
            .map_err(|e| match e {
                InsertPushRuleError::ServerDefaultRuleId => {
                    bad_rule("cannot add new rule_ids that start with '.'")
                }
                InsertPushRuleError::InvalidRuleId => {
                    ApiError::invalid_param("rule_id may not contain slashes")
                }
                InsertPushRuleError::UnknownRuleId => bad_rule("before/after rule not found"),
                other => bad_rule(other.to_string()),
            })?;
        check_size(rules)
    })
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(set_pushrule::v3::Response::new()))
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn delete_rule(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<delete_pushrule::v3::Request>,
) -> Result<RumaResponse<delete_pushrule::v3::Response>, ApiError> {
    push_rules::update(state.db(), &auth.user_id, |rules| {
        rules.remove(req.kind, &req.rule_id).map_err(|e| match e {
            RemovePushRuleError::ServerDefault => {
                bad_rule("Cannot delete a server-default push rule")
            }
            RemovePushRuleError::NotFound => rule_not_found(),
            other => bad_rule(other.to_string()),
        })
    })
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(delete_pushrule::v3::Response::new()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn get_enabled(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<get_pushrule_enabled::v3::Response>, ApiError> {
    let rule = find(&state, &auth, req.kind, &req.rule_id).await?;
    Ok(RumaResponse(get_pushrule_enabled::v3::Response::new(
        rule.enabled,
    )))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn set_enabled(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<set_pushrule_enabled::v3::Response>, ApiError> {
    push_rules::update(state.db(), &auth.user_id, |rules| {
        rules
            .set_enabled(req.kind, &req.rule_id, req.enabled)
            .map_err(|_| rule_not_found())
    })
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(set_pushrule_enabled::v3::Response::new()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn get_actions(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<get_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<get_pushrule_actions::v3::Response>, ApiError> {
    let rule = find(&state, &auth, req.kind, &req.rule_id).await?;
    Ok(RumaResponse(get_pushrule_actions::v3::Response::new(
        rule.actions,
    )))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn set_actions(
    State(state): State<AppState>,
    auth: Authed,
    Ruma(req): Ruma<set_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<set_pushrule_actions::v3::Response>, ApiError> {
    push_rules::update(state.db(), &auth.user_id, |rules| {
        rules
            .set_actions(req.kind, &req.rule_id, req.actions)
            .map_err(|_| rule_not_found())?;
        check_size(rules)
    })
    .await?;
    // Long-polling syncs of the user deliver the change at once.
    state.notifier().wake_user(&auth.user_id);
    Ok(RumaResponse(set_pushrule_actions::v3::Response::new()))
}
