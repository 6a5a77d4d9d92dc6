import CarbonModel
import CarbonStore
import Foundation

/// The verdict of a torture run.
public struct TortureReport: Sendable, Codable, CustomStringConvertible {
    public var label = ""
    public var seconds = 0.0
    public var workers = 0
    public var users = 0
    public var invoked = 0
    public var acknowledged = 0
    public var failed = 0
    public var unknown = 0
    /// Still running when the run ended (a killed worker's last operation).
    public var pending = 0
    /// Acknowledged operations missing from the files: must be 0.
    public var lost = 0
    /// Operations present more than once: must be 0.
    public var duplicated = 0
    /// Operations present that no worker invoked, or in another user's file: must be 0.
    public var phantom = 0
    /// Operations reported as failed (nothing written) but present: must be 0.
    public var failedButPresent = 0
    /// Unknown or pending operations that did land (allowed: their outcome was unknown).
    public var unknownPresent = 0
    /// User files that do not decode: must be 0.
    public var unreadable = 0
    /// Temporary files of crashed writers (path: only; allowed, removable by verify).
    public var temporaryFiles = 0
    public var faults: [String: Int] = [:]
    /// A few of the lost operations, for the log.
    public var lostSample: [String] = []

    public var passed: Bool {
        lost == 0 && duplicated == 0 && phantom == 0 && failedButPresent == 0 && unreadable == 0
    }

    public var description: String {
        let faultText = faults.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
            separator: " ")
        return
            "\(label): \(String(format: "%.0f", seconds)) s, \(workers) workers, \(users) users, faults [\(faultText)]: invoked \(invoked), acknowledged \(acknowledged), failed \(failed), unknown \(unknown), pending \(pending); lost \(lost), duplicated \(duplicated), phantom \(phantom), failed-but-present \(failedButPresent), unreadable \(unreadable); unknown-that-landed \(unknownPresent), temp files \(temporaryFiles)"
    }
}

/// Reads every user file and compares it with the workers' histories.
public enum TortureChecker {
    /// With `listStorage`, also every user the storage lists (to find files no worker should have
    /// written); without, the workers' users only.
    public static func check(store: Store, logDirectory: String, users: Int, listStorage: Bool = true)
        async throws
        -> TortureReport
    {
        let history = try History.read(directory: logDirectory)
        var report = TortureReport()
        report.users = users
        report.invoked = history.invoked.count
        for outcome in history.outcome.values {
            switch outcome {
            case .ok: report.acknowledged += 1
            case .fail: report.failed += 1
            case .unknown: report.unknown += 1
            case .pending: report.pending += 1
            }
        }
        var present: [String: Int] = [:]
        var presentUser: [String: String] = [:]
        var ids = Set<String>()
        if listStorage {
            for try await id in store.allUsers() { ids.insert(id) }
        }
        for n in 0..<users { ids.insert(TortureWorker.userID(n)) }
        for user in ids.sorted() {
            do {
                guard let record = try await store.read(user) else { continue }
                for t in record.transactions {
                    present[t.id, default: 0] += 1
                    presentUser[t.id] = user
                }
            } catch {
                report.unreadable += 1
            }
        }
        for (op, count) in present {
            if count > 1 { report.duplicated += 1 }
            guard let user = history.invoked[op], user == presentUser[op] else {
                report.phantom += 1
                continue
            }
            switch history.outcome[op] {
            case .fail?: report.failedButPresent += 1
            case .unknown?, .pending?: report.unknownPresent += 1
            default: break
            }
        }
        for (op, outcome) in history.outcome where outcome == .ok && present[op] == nil {
            report.lost += 1
            if report.lostSample.count < 5 { report.lostSample.append(op) }
        }
        if let path = store.storage as? PathStorage {
            report.temporaryFiles = try path.temporaryFiles().count
        }
        return report
    }
}
