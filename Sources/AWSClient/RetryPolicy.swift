/// How AWS calls are retried: exponential backoff with full jitter, bounded attempts, as the AWS
/// SDKs' "standard" mode does. A pure value; the delay source is injectable for tests.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// Extra attempts granted for throttling, which lasts longer than a transient fault.
    public var throttlingBaseDelay: Duration

    public init(
        maxAttempts: Int = 4, baseDelay: Duration = .milliseconds(25), maxDelay: Duration = .seconds(2),
        throttlingBaseDelay: Duration = .milliseconds(100)
    ) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.throttlingBaseDelay = throttlingBaseDelay
    }

    public static let standard = RetryPolicy()

    /// What to do after attempt `attempt` (1-based) failed with `error`.
    public enum Decision: Sendable, Hashable {
        case retry(after: Duration)
        case giveUp
    }

    public func decide(
        attempt: Int, error: any Error, idempotent: Bool,
        random: (ClosedRange<Int64>) -> Int64 = { Int64.random(in: $0) }
    ) -> Decision {
        guard attempt < maxAttempts else { return .giveUp }
        let base: Duration
        switch error {
        case let e as AWSError:
            guard e.isRetryable else { return .giveUp }
            base = e.isThrottling ? throttlingBaseDelay : baseDelay
        case let e as TransportError:
            // A request that may have reached AWS is repeated only if repeating it is harmless.
            guard idempotent || !e.mayHaveBeenSent else { return .giveUp }
            base = baseDelay
        default:
            return .giveUp
        }
        let ceiling = min(maxDelay, base * (1 << min(attempt - 1, 20)))
        let nanos =
            ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .retry(after: .nanoseconds(random(0...max(nanos, 0))))
    }
}

extension RetryPolicy {
    /// The AWS SDKs' retry modes, as `retry_mode` in the shared config file and AWS_RETRY_MODE name
    /// them.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// Each SDK's own rules; here CarbonStore's: 4 attempts unless `max_attempts` says otherwise.
        case legacy
        /// The rules shared by the SDKs: 3 attempts unless `max_attempts` says otherwise.
        case standard
        /// Standard mode with client-side rate limiting in the SDKs. CarbonStore does not limit its
        /// own rate: it retries as in standard mode (3 attempts unless `max_attempts` says otherwise).
        case adaptive

        /// Attempts in all when `max_attempts` is not set.
        public var defaultMaxAttempts: Int { self == .legacy ? RetryPolicy.standard.maxAttempts : 3 }
    }

    /// The policy that the environment and the shared config file ask for, as the AWS SDKs read
    /// them: the attempts from AWS_MAX_ATTEMPTS, else `max_attempts` in the profile's section of the
    /// config file; the mode from AWS_RETRY_MODE, else `retry_mode` there (`legacy` when neither is
    /// set). Delays are `standard`'s. Throws `AWSConfigurationError`, naming the setting and where it
    /// came from, for a value the SDKs would refuse.
    public static func resolve(environment: [String: String]) throws -> RetryPolicy {
        let profile = ProfileCredentialProvider(environment: environment)
        func setting(_ variable: String, _ key: String) -> (value: String, origin: String)? {
            if let value = environmentValue(environment, variable) { return (value, variable) }
            guard let value = profile.configValue(key) else { return nil }
            return (
                value,
                "\(key) in profile '\(profile.profileName)' of \(profile.configFilePath ?? "~/.aws/config")"
            )
        }
        var mode = Mode.legacy
        if let (value, origin) = setting("AWS_RETRY_MODE", "retry_mode") {
            guard let named = Mode(rawValue: value.lowercased()) else {
                throw AWSConfigurationError(
                    "invalid retry mode '\(oneLine(value, limit: 40))' (from \(origin)): expected standard, adaptive or legacy"
                )
            }
            mode = named
        }
        var policy = RetryPolicy.standard
        policy.maxAttempts = mode.defaultMaxAttempts
        if let (value, origin) = setting("AWS_MAX_ATTEMPTS", "max_attempts") {
            guard value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let attempts = Int(value),
                attempts >= 1
            else {
                throw AWSConfigurationError(
                    "invalid max attempts '\(oneLine(value, limit: 40))' (from \(origin)): expected a whole number of 1 or more, such as 5 (attempts in all, the first included: 1 retries nothing)"
                )
            }
            policy.maxAttempts = attempts
        }
        return policy
    }
}
