import Foundation

/// A fault `FaultProxy` can inject into one request.
public enum FaultKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Sleeps a random 0...`FaultPlan.maxLatency` before handling the request (combines with the
    /// others: it is drawn independently of them).
    case latency
    /// Closes the client's connection without forwarding: the request never reached the server.
    case dropBeforeSend
    /// Forwards the request, lets the server apply it, then closes the client's connection without
    /// answering: the client cannot know whether the write happened.
    case dropAfterSend
    /// Answers with the service's throttling error without forwarding: S3 `503 SlowDown`,
    /// DynamoDB `400 ThrottlingException`.
    case throttle
    /// Answers `500 InternalError` without forwarding.
    case serverError
    /// Forwards the request, lets the server apply it, then answers `500 InternalError` instead of
    /// the server's answer (AWS can do this).
    case serverErrorAfterApply

    public var description: String { rawValue }

    /// The faults that exclude one another (all but `latency`), in the order they are drawn.
    public static let exclusive: [FaultKind] = [
        .dropBeforeSend, .dropAfterSend, .throttle, .serverError, .serverErrorAfterApply,
    ]
}

/// Which service a request is for, as the proxy tells them apart.
public enum FaultTarget: String, Sendable, Hashable, CaseIterable {
    /// A request with `X-Amz-Target: DynamoDB_...`.
    case dynamoDB
    /// Anything else but IAM/STS form posts: S3, path-style.
    case s3
    /// IAM, STS and other form-encoded query APIs (`Action=...`).
    case other
}

/// What faults `FaultProxy` injects, per request, with what probability.
///
/// Each request gets one independent draw for `latency` and one draw among the exclusive kinds,
/// whose probabilities must add up to at most 1. Only requests for `targets` (and, when given,
/// `operations`, e.g. `PutObject`, `PutItem`; see `FaultProxy.classify`) are faulted.
public struct FaultPlan: Sendable, Hashable {
    public var probabilities: [FaultKind: Double]
    public var maxLatency: Duration
    public var targets: Set<FaultTarget>
    /// Operation names to fault; nil: every operation.
    public var operations: Set<String>?
    /// At most this many requests are faulted under the plan (counted from `FaultProxy.start` or
    /// `setPlan`); nil: no limit. `maxFaults: 1` faults the first request only, so that a retry
    /// gets through.
    public var maxFaults: Int?

    public init(
        _ probabilities: [FaultKind: Double] = [:], maxLatency: Duration = .milliseconds(50),
        targets: Set<FaultTarget> = Set(FaultTarget.allCases), operations: Set<String>? = nil,
        maxFaults: Int? = nil
    ) {
        self.probabilities = probabilities
        self.maxLatency = maxLatency
        self.targets = targets
        self.operations = operations
        self.maxFaults = maxFaults
    }

    /// No faults: a plain forwarding proxy.
    public static let none = FaultPlan()

    /// One fault on every request (that the filters select).
    public static func always(
        _ kind: FaultKind, maxLatency: Duration = .milliseconds(50),
        targets: Set<FaultTarget> = Set(FaultTarget.allCases), operations: Set<String>? = nil,
        maxFaults: Int? = nil
    ) -> FaultPlan {
        FaultPlan(
            [kind: 1], maxLatency: maxLatency, targets: targets, operations: operations, maxFaults: maxFaults)
    }

    /// Every kind at probability `p` (latency included, drawn separately).
    public static func mixed(_ p: Double, maxLatency: Duration = .milliseconds(50)) -> FaultPlan {
        FaultPlan(
            Dictionary(uniqueKeysWithValues: FaultKind.allCases.map { ($0, p) }), maxLatency: maxLatency)
    }

    public func probability(of kind: FaultKind) -> Double { probabilities[kind] ?? 0 }

    /// Throws unless every probability is in 0...1 and the exclusive ones add up to at most 1.
    public func validate() throws {
        for (kind, p) in probabilities where !(0...1).contains(p) {
            throw FaultPlanError("probability of \(kind) is \(p), not in 0...1")
        }
        let sum = FaultKind.exclusive.reduce(0) { $0 + probability(of: $1) }
        if sum > 1 + 1e-9 {
            throw FaultPlanError("the exclusive faults' probabilities add up to \(sum) > 1")
        }
        if maxLatency < .zero { throw FaultPlanError("maxLatency is negative") }
    }

    /// What happens to request number `n` (0-based, in order of arrival), deterministically from
    /// `seed` and `n`.
    public func decide(seed: UInt64, request n: Int, target: FaultTarget, operation: String)
        -> FaultDecision
    {
        var rng = SeededRandom(seed: seed ^ (UInt64(truncatingIfNeeded: n) &* 0xD1B5_4A32_D192_ED03))
        let latencyDraw = Double.random(in: 0..<1, using: &rng)
        let latencyAmount = Double.random(in: 0...1, using: &rng)
        let faultDraw = Double.random(in: 0..<1, using: &rng)
        guard targets.contains(target), operations.map({ $0.contains(operation) }) ?? true else {
            return FaultDecision(latency: nil, fault: nil)
        }
        var latency: Duration?
        if latencyDraw < probability(of: .latency) {
            let nanos =
                maxLatency.components.seconds * 1_000_000_000
                + maxLatency.components.attoseconds / 1_000_000_000
            latency = .nanoseconds(Int64(Double(nanos) * latencyAmount))
        }
        var cumulative = 0.0
        for kind in FaultKind.exclusive {
            cumulative += probability(of: kind)
            if faultDraw < cumulative { return FaultDecision(latency: latency, fault: kind) }
        }
        return FaultDecision(latency: latency, fault: nil)
    }
}

/// The faults drawn for one request.
public struct FaultDecision: Sendable, Hashable {
    /// Sleep this long first (the `latency` fault), or nil.
    public var latency: Duration?
    /// The exclusive fault, or nil to forward the request and return the answer.
    public var fault: FaultKind?
}

public struct FaultPlanError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
