/// An error answer from an AWS service, with enough context to act on it: the service, the
/// operation, the resource, AWS's error code and message, and the request id for AWS support.
public struct AWSError: Error, Sendable, Hashable, CustomStringConvertible {
    public var service: String
    public var operation: String
    /// The bucket/key or table/item the request was about, for messages.
    public var resource: String
    public var statusCode: Int
    public var code: String
    public var message: String
    public var requestID: String?
    /// The bucket's region, when S3 said it (`x-amz-bucket-region`, on an answer about a bucket in
    /// another region).
    public var bucketRegion: String?

    public init(
        service: String, operation: String, resource: String, statusCode: Int, code: String, message: String,
        requestID: String?, bucketRegion: String? = nil
    ) {
        self.service = service
        self.operation = operation
        self.resource = resource
        self.statusCode = statusCode
        self.code = code
        // AWS's message is quoted in errors and logs: a secret a front end echoed (by its field's
        // name, or by its shape: a key id, a token) never is.
        self.message = SecretRedaction.redact(message)
        self.requestID = requestID
        // Shown in messages and advice: only a value shaped like a region name.
        self.bucketRegion = bucketRegion.flatMap { AWSConfiguration.isValidRegion($0) ? $0 : nil }
    }

    /// The bucket is in another region than the one the request was signed for.
    public var isWrongRegion: Bool {
        ["PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"].contains(
            code)
            || (bucketRegion != nil && statusCode == 301)
    }

    public var description: String {
        var s = "\(service) \(operation) \(resource) failed: \(code) (HTTP \(statusCode))"
        if !message.isEmpty { s += ": \(message)" }
        if let hint { s += "; \(hint)" }
        if let requestID { s += " [request id \(requestID)]" }
        return s
    }

    /// Throttling: the request may succeed after a pause.
    public var isThrottling: Bool {
        Self.throttlingCodes.contains(code) || statusCode == 429
    }

    /// Worth retrying as it is: throttling, server-side errors and timeouts.
    public var isRetryable: Bool {
        isThrottling || Self.transientCodes.contains(code) || [500, 502, 503, 504].contains(statusCode)
    }

    /// The credentials were refused (wrong key, wrong secret, expired token).
    public var isAuthenticationFailure: Bool {
        [
            "SignatureDoesNotMatch", "InvalidAccessKeyId", "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException",
            "MissingAuthenticationToken",
            "MissingAuthenticationTokenException", "IncompleteSignature", "IncompleteSignatureException",
            "AuthFailure",
        ].contains(code) || isClockSkew
    }

    /// The session token of temporary credentials has expired.
    public var isExpiredToken: Bool { code == "ExpiredToken" || code == "ExpiredTokenException" }

    /// The request's time, as signed, is too far from AWS's: this machine's clock is wrong.
    public var isClockSkew: Bool {
        ["RequestTimeTooSkewed", "RequestExpired", "SignatureExpired"].contains(code)
            || (code == "InvalidSignatureException"
                && message.localizedCaseInsensitiveContains("signature expired"))
    }

    public var isAccessDenied: Bool {
        code == "AccessDenied" || code == "AccessDeniedException"
            || (statusCode == 403 && !isAuthenticationFailure)
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete", "EC2ThrottledException",
    ]
    static let transientCodes: Set<String> = [
        "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable", "ServiceUnavailableException",
    ]

    /// What to do about it, for the codes an operator meets when setting up.
    public var hint: String? {
        if isClockSkew {
            return
                "this machine's clock differs from AWS's by more than AWS allows (15 minutes for a signature): synchronise it (chrony or NTP); the lock leases depend on it too"
        }
        switch code {
        case "SignatureDoesNotMatch", "InvalidSignatureException":
            return
                "the secret access key does not match the access key id: check AWS_SECRET_ACCESS_KEY (or the profile's aws_secret_access_key) and that this machine's clock is right"
        case "InvalidAccessKeyId", "UnrecognizedClientException", "InvalidClientTokenId":
            return
                "AWS does not know this access key id: check AWS_ACCESS_KEY_ID, AWS_PROFILE or the role in use"
        case "ExpiredToken", "ExpiredTokenException":
            return
                "the temporary credentials have expired, and were still expired after being fetched again: renew them at their source (a new AWS_SESSION_TOKEN or profile session; for a role, check its maximum session duration and this machine's clock)"
        case "AccessDenied", "AccessDeniedException":
            return
                "the credentials lack permission for this action: attach the policy printed by 'carbonstore aws policy' to the engine's role"
        case "NoSuchBucket":
            return
                "the bucket does not exist: create it with 'carbonstore aws setup', or fix the bucket name or region in the storage URI"
        case "ResourceNotFoundException":
            return
                "the DynamoDB table does not exist in this region: create it with 'carbonstore aws setup', or fix table= or region= in the storage URI"
        case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
            if let bucketRegion {
                return
                    "the bucket is in \(bucketRegion), another region: set region=\(bucketRegion) in the storage URI or AWS_REGION=\(bucketRegion)"
            }
            return
                "the bucket is in another region: set region= in the storage URI or AWS_REGION to the bucket's region"
        default:
            if isThrottling {
                return
                    "AWS is throttling requests: retried with backoff, then gave up; retry later, or allow more attempts with AWS_MAX_ATTEMPTS (or max_attempts in the AWS config file)"
            }
            return nil
        }
    }
}
