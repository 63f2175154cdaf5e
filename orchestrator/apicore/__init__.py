"""The HTTP API client core: auth strategies, retries as data, rate limits, capped answers.

A leaf below the service clients (Imagen now, Imagga and imgix next); it imports only the
product's root error and the retry policy.
"""

from orchestrator.apicore.auth import ApiKeyHeader, Auth, BasicAuth, BearerToken
from orchestrator.apicore.client import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    ERROR_BODY_BYTES,
    MAX_ANSWER_BYTES,
    Answer,
    ApiClient,
    Call,
    ErrorText,
    FilePart,
    OnRetry,
    RateLimit,
    default_error_text,
)
from orchestrator.apicore.errors import (
    AnswerTooLarge,
    ApiAmbiguous,
    ApiBadRequest,
    ApiCredentialsRefused,
    ApiError,
    ApiNotFound,
    ApiRefused,
    ApiUnavailable,
    MalformedAnswer,
)
from orchestrator.apicore.jsonsafe import MAX_JSON_DEPTH

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "ERROR_BODY_BYTES",
    "MAX_ANSWER_BYTES",
    "MAX_JSON_DEPTH",
    "Answer",
    "AnswerTooLarge",
    "ApiAmbiguous",
    "ApiBadRequest",
    "ApiClient",
    "ApiCredentialsRefused",
    "ApiError",
    "ApiKeyHeader",
    "ApiNotFound",
    "ApiRefused",
    "ApiUnavailable",
    "Auth",
    "BasicAuth",
    "BearerToken",
    "Call",
    "ErrorText",
    "FilePart",
    "MalformedAnswer",
    "OnRetry",
    "RateLimit",
    "default_error_text",
]
