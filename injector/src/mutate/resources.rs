//! The agent's resources: a request above its limit is denied with the annotation's name.

use super::{Deny, invalid};
use crate::annotations::{self, PodRequest};
use crate::settings::Settings;

/// Denies a request above its limit here, with the annotation's name, rather than letting
/// the API server reject the Pod with a message about a container the user did not write.
pub(super) fn check_resources(req: &PodRequest, s: &Settings) -> Result<(), Deny> {
    let r = &s.resources;
    let pairs = [
        (
            "cpu",
            &req.cpu_request,
            Some(&r.cpu_request),
            &req.cpu_limit,
            r.cpu_limit.as_ref(),
        ),
        (
            "memory",
            &req.memory_request,
            Some(&r.memory_request),
            &req.memory_limit,
            r.memory_limit.as_ref(),
        ),
    ];
    for (what, req_ann, req_default, lim_ann, lim_default) in pairs {
        let request = req_ann.as_ref().or(req_default);
        let limit = lim_ann.as_ref().or(lim_default);
        let (Some(request), Some(limit)) = (request, limit) else {
            continue;
        };
        let (Some(rq), Some(lm)) = (
            annotations::quantity_value(request),
            annotations::quantity_value(limit),
        ) else {
            continue;
        };
        if rq > lm {
            let (key, value) = if req_ann.is_some() {
                (format!("{what}-request"), request)
            } else {
                (format!("{what}-limit"), limit)
            };
            return Err(invalid(
                &key,
                value,
                format!(
                    "the agent's {what} request ({request}) would exceed its limit ({limit}); \
                     set vaultlet.io/{what}-request and vaultlet.io/{what}-limit consistently"
                ),
            )
            .into());
        }
    }
    Ok(())
}
