//! Images the source (phase `create`), then reports the image's state (phase `check`) until it is
//! available; the state machine waits between checks.

use spot_domain::AwsErrorKind;
use spot_domain::ports::{AccountRegistry, SwitchFleet, SwitchFleets};
use spot_domain::saga::{ImageStep, Reach, StepError, StepInput, errors};
use tracing::info;

pub struct Imager<R, F> {
    pub reach: Reach<R, F>,
    /// Skip the reboot: faster, but the disk may not be consistent.
    pub no_reboot: bool,
}

impl<R: AccountRegistry, F: SwitchFleets> Imager<R, F> {
    pub async fn handle(&self, input: StepInput) -> Result<ImageStep, StepError> {
        let (fleet, _) = self.reach.fleet(&input.state.request).await?;
        match input.phase.as_deref() {
            Some("create") => {
                let image_id = fleet
                    .image(
                        &input.execution,
                        &input.state.request.instance_id,
                        self.no_reboot,
                    )
                    .await
                    .map_err(|e| match e.kind {
                        // EC2 refused to image the source (state, limits, ...): the switch cannot go on.
                        AwsErrorKind::Rejected => {
                            StepError::new(errors::IMAGE_FAILED, e.to_string())
                        }
                        _ => e.into(),
                    })?;
                info!(switch_id = %input.execution, image_id = %image_id, "image requested");
                Ok(ImageStep {
                    image_id,
                    state: "pending".into(),
                    checks: 0,
                    snapshot_ids: Vec::new(),
                })
            }
            Some("check") => {
                let previous = input
                    .state
                    .image
                    .as_ref()
                    .ok_or_else(|| StepError::new("InvalidRequest", "no image to check"))?;
                let limit = input
                    .state
                    .plan
                    .as_ref()
                    .map_or(1, |p| p.settings.image_checks);
                let failed = |why: String| {
                    StepError::new(
                        errors::IMAGE_FAILED,
                        format!("image {}: {why}", previous.image_id),
                    )
                };
                let Some((state, snapshot_ids)) = fleet.image_state(&previous.image_id).await?
                else {
                    return Err(failed("no longer exists".into()));
                };
                let checks = previous.checks + 1;
                match state.as_str() {
                    "available" => Ok(ImageStep {
                        state,
                        checks,
                        snapshot_ids,
                        ..previous.clone()
                    }),
                    "pending" if checks < limit => Ok(ImageStep {
                        state,
                        checks,
                        snapshot_ids,
                        ..previous.clone()
                    }),
                    "pending" => Err(failed(format!("still pending after {checks} checks"))),
                    other => Err(failed(format!("state {other}"))),
                }
            }
            other => Err(StepError::new(
                "InvalidRequest",
                format!("phase {other:?} is neither create nor check"),
            )),
        }
    }
}
