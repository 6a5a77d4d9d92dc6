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
