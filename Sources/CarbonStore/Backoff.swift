/// Exponential backoff with full jitter: attempt n waits a random time in `0...min(cap, base * 2^n)`.
/// A pure value: the random source is passed in, so schedules are testable without sleeping.
public struct Backoff: Sendable, Hashable {
    public var base: Duration
    public var cap: Duration
    public private(set) var attempt: Int = 0

    public init(base: Duration = .milliseconds(2), cap: Duration = .milliseconds(200)) {
        self.base = base
        self.cap = cap
    }

    /// The upper bound of the next delay, before jitter.
    public var ceiling: Duration {
        let capNanos = cap.nanoseconds
        var nanos = base.nanoseconds
        for _ in 0..<min(attempt, 62) {
            if nanos >= capNanos { break }
            nanos = nanos.multipliedReportingOverflow(by: 2).overflow ? Int64.max : nanos * 2
        }
        return .nanoseconds(min(nanos, capNanos))
    }

    /// The next delay, and advances the attempt count.
    public mutating func next(using rng: inout some RandomNumberGenerator) -> Duration {
        let nanos = ceiling.nanoseconds
        attempt += 1
        return .nanoseconds(nanos <= 0 ? 0 : Int64.random(in: 0...nanos, using: &rng))
    }

    public mutating func next() -> Duration {
        var rng = SystemRandomNumberGenerator()
        return next(using: &rng)
    }
}

/// Polls `tryOnce` with backoff until it succeeds or `wait` has passed. The cap is short: a file
/// lock is held for a few milliseconds (one update), and a waiter that sleeps much longer than
/// that leaves the lock idle and lets other processes' waiters pass it again and again (the p99
/// lock wait of 8 processes on one user, docs/BENCHMARKS.md).
func pollUntil<T>(
    wait: Duration, backoff: Backoff = Backoff(base: .milliseconds(1), cap: .milliseconds(8)),
    _ tryOnce: () async throws -> T?
) async throws -> T? {
    let clock = ContinuousClock()
    let deadline = clock.now + wait
    var backoff = backoff
    while true {
        if let value = try await tryOnce() { return value }
        let now = clock.now
        if now >= deadline { return nil }
        let delay = min(backoff.next(), deadline - now)
        try await Task.sleep(for: max(delay, .microseconds(100)))
    }
}
