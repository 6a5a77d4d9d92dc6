import CarbonModel
import CarbonStore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A torture worker: updates random users of a small set until its deadline, appending one
/// transaction whose id is a fresh operation id per update, and logs every operation.
public enum TortureWorker {
    public static func userID(_ n: Int) -> String { "torture-user-\(n)" }

    /// Runs until `duration` has passed. `windowFile`, when given, holds "1" while the worker is
    /// between its lease check and its conditional write, so a coordinator can stop it right there.
    public static func run(store: Store, workerID: String, users: Int, log: HistoryLog, duration: Duration)
        async
    {
        let deadline = ContinuousClock.now + duration
        var seq = 0
        let eur = CurrencyCode("EUR")!
        while ContinuousClock.now < deadline {
            seq += 1
            let op = "\(workerID)-\(seq)"
            let user = userID(Int.random(in: 0..<max(users, 1)))
            log.append("invoke \(op) \(user)")
            let txn = Transaction(
                id: op, time: Timestamp.now(), amount: Money(minorUnits: Int64(seq), currency: eur),
                merchant: workerID)
            do {
                let result = try await store.update(user) { try $0.upsert(txn) }
                log.append("ok \(op) \(result.record.revision)")
            } catch {
                log.append("\(classify(error)) \(op) \(String(describing: error).prefix(200))")
            }
        }
    }

    /// Whether an error means the update definitely did not happen, or that its outcome is unknown.
    public static func classify(_ error: any Error) -> History.Outcome {
        guard let e = error as? CarbonStoreError else { return .unknown }
        switch e.kind {
        // Raised before anything was written, or after the fence refused the write.
        case .lockTimeout, .leaseExpired, .conflict, .invalidInput, .corrupt, .notFound: return .fail
        // An I/O or network failure may have happened after the write reached storage.
        case .unavailable, .storageFailure, .permissionDenied: return .unknown
        }
    }
}
