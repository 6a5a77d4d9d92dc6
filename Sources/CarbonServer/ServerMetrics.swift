import CarbonStore
import CoreMetrics
import Logging
import Metrics
import Prometheus

/// The service's metrics, through swift-metrics into one Prometheus registry of its own (so that
/// two services in one process, as in the tests, count apart). `GET /metrics` renders it.
public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    let lockWait: CoreMetrics.Timer
    let lockTimeouts: CoreMetrics.Counter
    let fenceConflicts: CoreMetrics.Counter
    let bytesWritten: CoreMetrics.Counter
    let damagedTails: CoreMetrics.Counter

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let seconds: [Duration] = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        factory.defaultDurationHistogramBuckets = seconds
        self.factory = factory
        lockWait = CoreMetrics.Timer(label: "carbonstore_lock_wait_seconds", dimensions: [], factory: factory)
        lockTimeouts = CoreMetrics.Counter(
            label: "carbonstore_lock_timeouts_total", dimensions: [], factory: factory)
        fenceConflicts = CoreMetrics.Counter(
            label: "carbonstore_fence_conflicts_total", dimensions: [], factory: factory)
        bytesWritten = CoreMetrics.Counter(
            label: "carbonstore_bytes_written_total", dimensions: [], factory: factory)
        damagedTails = CoreMetrics.Counter(
            label: "carbonstore_damaged_tails_total", dimensions: [], factory: factory)
        // Every kind has its series from the start, at 0, so that rates and alerts see it.
        for kind in Self.errorKinds { storageError(kind: kind, count: 0) }
    }

    static let errorKinds: [ErrorKind] = [
        .invalidInput, .notFound, .conflict, .corrupt, .lockTimeout, .leaseExpired, .unavailable,
        .storageFailure,
        .permissionDenied,
    ]

    /// The engine's events, counted here.
    public var storeEvents: StoreEvents { storeEvents(logger: nil) }

    /// The engine's events, counted here; a damaged tail is also logged (a warning naming the
    /// file), so that an operator knows which file to look at.
    public func storeEvents(logger: Logger?) -> StoreEvents {
        StoreEvents(
            lockAcquired: { [lockWait] _, waited in lockWait.recordNanoseconds(waited.nanoseconds) },
            lockTimedOut: { [lockWait, lockTimeouts] _, waited in
                lockWait.recordNanoseconds(waited.nanoseconds)
                lockTimeouts.increment()
            },
            fenceConflict: { [fenceConflicts] _ in fenceConflicts.increment() },
            bytesWritten: { [bytesWritten] _, count in bytesWritten.increment(by: count) },
            damagedTail: { [damagedTails] _, location, offset, length in
                damagedTails.increment()
                logger?.warning(
                    "damaged tail: bytes after the valid content that are not one torn append; the record served is the one before them and writes to the user are refused",
                    metadata: [
                        "location": .string(location), "offset": .stringConvertible(offset),
                        "length": .stringConvertible(length),
                    ])
            })
    }

    func request(method: String, route: String, status: Int, duration: Duration) {
        let dimensions = [("method", method), ("route", route), ("status", String(status))]
        CoreMetrics.Counter(
            label: "carbonstore_http_requests_total", dimensions: dimensions, factory: factory
        ).increment()
        CoreMetrics.Timer(
            label: "carbonstore_http_request_duration_seconds", dimensions: dimensions, factory: factory
        )
        .recordNanoseconds(duration.nanoseconds)
    }

    func storageError(kind: ErrorKind, count: Int = 1) {
        CoreMetrics.Counter(
            label: "carbonstore_storage_errors_total", dimensions: [("kind", kind.rawValue)], factory: factory
        ).increment(by: count)
    }

    /// The Prometheus text exposition of every metric.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
