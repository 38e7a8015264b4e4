//! SDK errors classified into the domain's [`AwsError`].

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use spot_domain::{AwsError, AwsErrorKind};

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceededException",
    "TransactionInProgressException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    // The first Spot launch in an account could not create EC2's Spot service-linked role.
    "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "OptInRequired",
];

/// Classifies `err` from `operation`.
pub(crate) fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_ref(operation, &err)
}

fn classify_ref<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // A member role that cannot be assumed surfaces as a dispatch failure of the call that needed
    // its credentials; report the AssumeRole answer itself (AccessDenied is not transient).
    if let SdkError::DispatchFailure(_) = err
        && let Some(assume) = assume_role_failure(err)
    {
        return assume;
    }
    let code = err.code().map(str::to_owned);
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| DisplayErrorContext(err).to_string());
    let kind = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsErrorKind::Transient
        }
        SdkError::ServiceError(service) => match code.as_deref() {
            Some(c) if THROTTLING.contains(&c) => AwsErrorKind::Transient,
            Some(c) if DENIED.contains(&c) => AwsErrorKind::AccessDenied,
            _ if service.raw().status().is_server_error() => AwsErrorKind::Transient,
            _ => AwsErrorKind::Rejected,
        },
        _ => AwsErrorKind::Rejected,
    };
    AwsError::new(kind, operation, code, message)
}

fn assume_role_failure(err: &(dyn std::error::Error + 'static)) -> Option<AwsError> {
    let mut next = err.source();
    while let Some(e) = next {
        if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some(classify_ref("AssumeRole", sts));
        }
        next = e.source();
    }
    None
}

pub(crate) fn invalid_data(operation: &str, message: impl Into<String>) -> AwsError {
    AwsError::new(AwsErrorKind::InvalidData, operation, None, message)
}
